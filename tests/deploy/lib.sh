# Shared helpers for the deploy test sections (tests/deploy/test_*.sh), sourced, not run.
# Every section runs as its own bash process from scripts/test-deploy.sh (or alone).
# shellcheck shell=bash

DEPLOY_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# Downloads and built artefacts that survive between runs (base images, npm packages).
DEPLOY_CACHE="${STRATA_CI_CACHE:-/var/cache/strata-ci}"
export DEPLOY_ROOT DEPLOY_CACHE

log() { printf '[%s %s] %s\n' "$(date -u +%H:%M:%S)" "${DEPLOY_SECTION:-deploy}" "$*" >&2; }
fail() { log "FAIL: $*"; exit 1; }

# on_exit CMD...: run CMD when the section exits (last registered runs first), e.g.
#   on_exit docker rm -f "$cid"
_DEPLOY_CLEANUPS=()
_deploy_run_cleanups() {
  local rc=$? i
  for ((i = ${#_DEPLOY_CLEANUPS[@]} - 1; i >= 0; i--)); do
    eval "${_DEPLOY_CLEANUPS[$i]}" || true
  done
  return "$rc"
}
on_exit() {
  local q
  printf -v q '%q ' "$@"
  _DEPLOY_CLEANUPS+=("$q")
}
trap _deploy_run_cleanups EXIT
trap 'exit 130' INT TERM

# need_pkgs PKG...: apt-get install the Debian packages that are missing (idempotent).
need_pkgs() {
  local p missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
      missing+=("$p")
  done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  [[ "$(id -u)" -eq 0 ]] || fail "must run as root to install: ${missing[*]}"
  log "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" \
    >/dev/null
}

# need_npm DIR PKG@VERSION...: npm install into DIR/node_modules unless already there.
need_npm() {
  local dir="$1" spec name missing=()
  shift
  for spec in "$@"; do
    name="${spec%@*}"
    [[ -f "$dir/node_modules/$name/package.json" ]] || missing+=("$spec")
  done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  mkdir -p "$dir"
  log "npm install ${missing[*]} into $dir"
  (cd "$dir" && { [[ -f package.json ]] || echo '{"private": true}' >package.json; } &&
    npm install --no-audit --no-fund --loglevel=error "${missing[@]}" >/dev/null)
}

# free_port: prints a TCP port free on loopback right now.
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_http URL [TIMEOUT_S] [CURL_ARGS...]: waits until URL answers 2xx; 1 on timeout.
wait_http() {
  local url="$1" timeout="${2:-60}" deadline
  shift 2 || shift $#
  deadline=$((SECONDS + timeout))
  until curl -fsS -o /dev/null --max-time 2 "$@" "$url" 2>/dev/null; do
    ((SECONDS < deadline)) || { log "timeout after ${timeout}s waiting for $url"; return 1; }
    sleep 0.5
  done
}

# timed LABEL CMD...: runs CMD and logs its wall time.
timed() {
  local label="$1" t0=$SECONDS rc=0
  shift
  "$@" || rc=$?
  log "$label: $((SECONDS - t0)) s (rc $rc)"
  return "$rc"
}
