#!/usr/bin/env bash
# deploy/ssh-deploy.sh against three simulated hosts on this machine (docs/deploy.md): network
# namespaces on a bridge the test creates (10.254.213.2-4), each with sshd in a private mount
# namespace (tests/deploy/ssh/hosts.sh). systemd is not PID 1 here, so each host's
# /usr/bin/systemctl is tests/deploy/ssh/systemctl, which runs the deployed units' real ExecStart.
# Replicas: deploy with the firewall applied + a request through the gateway; the gateway port
# answers from outside, a node port only from a cluster address; a second run changes and
# restarts nothing (pids); --dry-run changes nothing; a rolling redeploy under load fails no
# request (200+). Pipeline (fresh hosts): a two-stage cluster.yaml deployed, a request answered
# through head and tail, the stage port closed to outside. Static: systemd-analyze verify on
# the units, shellcheck. Usage: bash tests/deploy/test_ssh.sh [BUILD_DIR]   (needs root)
# shellcheck disable=SC2016  # remote commands are single-quoted on purpose
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BUILD="${1:-${STRATA_BUILD:-$REPO/build}}"
STRATA="${STRATA_BIN:-$BUILD/strata}"
T0=$SECONDS
[[ -x $STRATA ]] || { echo "test_ssh: $STRATA missing (build first)" >&2; exit 1; }
[[ $(id -u) == 0 ]] || { echo "test_ssh: needs root (namespaces, sshd)" >&2; exit 1; }

need=()
for p in openssh-server openssh-client rsync nftables curl util-linux iproute2 shellcheck; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || need+=("$p")
done
if ((${#need[@]})); then
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
fi

W=$(mktemp -d /tmp/test-ssh.XXXXXX)
fail() { echo "test_ssh: FAIL: $*" >&2; exit 1; }
say() { echo "test_ssh: $* ($((SECONDS - T0)) s)"; }
# shellcheck source=tests/deploy/ssh/hosts.sh
source "$REPO/tests/deploy/ssh/hosts.sh"
cleanup() {
  local p
  [[ -n ${LOAD_PID:-} ]] && kill "$LOAD_PID" 2>/dev/null
  for p in /proc/[0-9]*; do  # a deploy still running (its command line names $W)
    grep -qF "$W" "$p/cmdline" 2>/dev/null && kill -TERM "${p#/proc/}" 2>/dev/null
  done
  hosts_down
  sleep 0.5
  [[ -n ${KEEP:-} ]] || rm -rf "$W"
  return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM

SSH=(ssh -p "$SSH_PORT" -i "$W/id" -o IdentitiesOnly=yes -o BatchMode=yes
     -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR)
on() { local h=$1; shift; "${SSH[@]}" "root@$h" "$@"; }
GW_PORT=8000 NODE_PORT=8080 STAGE_PORT=9090
client() { python3 "$REPO/tests/deploy/ssh/client.py" "$@"; }
chat() { client chat "${HOSTS[0]}" "$GW_PORT"; }

strip -o "$W/strata" "$STRATA"  # a release binary: the test copies it 3 times
"$STRATA" model synth --shape tiny-qwen2 --type f32 -o "$W/tiny.gguf" >/dev/null
mkdir -p "$W/cfg" "$W/env"
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$W/cfg/node.key"
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$W/cfg/cluster.key"
echo 'STRATA_NODE_ARGS=--api-key-file /etc/strata/node.key' >"$W/env/node.env"
gateway_yaml() {
  cat <<EOF
gateway:
  listen: ${HOSTS[0]}:$GW_PORT
  node_api_key_file: node.key
  access_log: false
  health: {interval_ms: 200, timeout_ms: 1000, unhealthy_threshold: 1, healthy_threshold: 1}
  circuit_breaker: {failure_threshold: 1, open_ms: 500}
  retry: {max_attempts: 3, backoff_ms: 10, max_backoff_ms: 100, unavailable_timeout_ms: 5000}
EOF
}
DEPLOY=(timeout 600 bash ${TRACE:+-x} "$REPO/deploy/ssh-deploy.sh" --config "$W/cfg/cluster.yaml"
        --binary "$W/strata" --model "$W/tiny.gguf" --env-dir "$W/env" --key "$W/id"
        --port "$SSH_PORT" --ssh-option StrictHostKeyChecking=no
        --ssh-option UserKnownHostsFile=/dev/null --ssh-option LogLevel=ERROR)

pids() { local h; for h in "${HOSTS[@]}"; do
  on "$h" 'for u in strata-gateway.service strata-node@node-a.service strata-node@node-b.service; do
    [ -f /etc/systemd/system/${u%%@*}@.service ] || [ -f /etc/systemd/system/$u ] || continue
    systemctl is-active -q $u && echo "$u=$(systemctl show -p MainPID --value $u)"; done' | tr '\n' ' '
  done; }

# check_firewall NODE_HOST_INDEX PORT...: the gateway port answers from outside (this machine
# is not a cluster address); each PORT of that host's node is dropped from outside (curl times
# out: no answer at all, not a refusal) and answers from the gateway host (a cluster address).
check_firewall() {
  local i=$1 h=${HOSTS[$1]} port rc
  shift
  in_host "$i" nft list table inet strata >/dev/null || fail "no table inet strata on $h"
  curl -fsS -m 5 -o /dev/null "http://${HOSTS[0]}:$GW_PORT/health" || fail "gateway port closed"
  for port in "$@"; do
    rc=0; curl -sS -m 2 -o /dev/null "http://$h:$port/" 2>/dev/null || rc=$?
    [[ $rc == 28 ]] || fail "$h:$port from outside: curl exit $rc, expected 28 (dropped)"
    in_host 0 bash -c "exec 3<>/dev/tcp/$h/$port" || fail "$h:$port from the gateway host"
  done
  say "firewall: ${HOSTS[0]}:$GW_PORT open, $h:{$*} only from cluster addresses"
}

# --- Replicas: gateway on host 0, node-a and node-b on hosts 1 and 2 --------------------------
hosts_up 3
say "3 hosts up"
{
  echo "model: {path: /opt/strata/models/tiny.gguf, name: tiny}"
  echo "nodes:"
  for n in a b; do
    h=${HOSTS[1]}; [[ $n == b ]] && h=${HOSTS[2]}
    echo "  - {name: node-$n, host: $h, port: $NODE_PORT, parallel: 4, ctx: 512, threads: 1, memory: 1GiB}"
  done
  gateway_yaml
} >"$W/cfg/cluster.yaml"

"${DEPLOY[@]}" 2>&1 | tee "$W/deploy1.log" || fail "first deploy"
say "first deploy ok"
grep -q "${HOSTS[0]}: start strata-gateway.service" "$W/deploy1.log" || fail "gateway not started"
grep -q "${HOSTS[1]}: applying firewall rules" "$W/deploy1.log" || fail "firewall not applied"
on "${HOSTS[1]}" 'stat -c "%a %U" /etc/strata/node.key' | grep -qx "600 strata" ||
  fail "secret not 0600 strata"
on "${HOSTS[0]}" 'test ! -e /etc/systemd/system/strata-node@.service' || fail "node unit on gateway host"
# The stand-in ran the unit's own ExecStart, as user strata, with node.env's arguments.
on "${HOSTS[1]}" 'p=$(systemctl show -p MainPID --value strata-node@node-a); ps -o user= -p $p
  tr "\0" " " </proc/$p/cmdline; echo' >"$W/node-a.ps"
[[ $(head -1 "$W/node-a.ps") == strata ]] || fail "node does not run as user strata"
grep -qx '/opt/strata/bin/strata node --config /etc/strata/cluster.yaml --name node-a --api-key-file /etc/strata/node.key ' \
  <(tail -1 "$W/node-a.ps") || fail "node command line: $(tail -1 "$W/node-a.ps")"
chat || fail "request through the gateway"
check_firewall 1 "$NODE_PORT"
P1=$(pids); say "pids $P1"
[[ $(grep -o '=' <<<"$P1" | wc -l) == 3 ]] || fail "expected 3 services, got: $P1"

# --- Second run: no changes ---------------------------------------------------------------------
"${DEPLOY[@]}" >"$W/deploy2.log" 2>&1 || { cat "$W/deploy2.log"; fail "second deploy"; }
grep -q "ssh-deploy: no changes" "$W/deploy2.log" || { cat "$W/deploy2.log"; fail "second run changed something"; }
[[ $(pids) == "$P1" ]] || fail "second run restarted something: $(pids) vs $P1"
say "second run: no changes, same pids"

# --- A node setting changes: --dry-run first, then a rolling redeploy under load ------------------
echo 'STRATA_NODE_ARGS=--api-key-file /etc/strata/node.key --max-queue 512' >"$W/env/node.env"
before=$(on "${HOSTS[1]}" 'sha256sum /etc/strata/node.env')
"${DEPLOY[@]}" --dry-run >"$W/dry.log" 2>&1 || { cat "$W/dry.log"; fail "dry run"; }
grep -q "would update /etc/strata/node.env" "$W/dry.log" || { cat "$W/dry.log"; fail "dry run silent"; }
grep -q "would restart strata-node@node-a.service" "$W/dry.log" || fail "dry run: no restart planned"
[[ $(on "${HOSTS[1]}" 'sha256sum /etc/strata/node.env') == "$before" ]] || fail "dry run changed a file"
[[ $(pids) == "$P1" ]] || fail "dry run restarted something"
say "dry run ok, nothing changed"

client load "${HOSTS[0]}" "$GW_PORT" "$W/load.json" &
LOAD_PID=$!
sleep 2
t=$SECONDS
"${DEPLOY[@]}" >"$W/deploy3.log" 2>&1 || { cat "$W/deploy3.log"; fail "rolling deploy"; }
say "rolling redeploy done in $((SECONDS - t)) s"
touch "$W/load.json.stop"
wait "$LOAD_PID"; LOAD_PID=""
cat "$W/deploy3.log"
python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print("test_ssh: load:", r)
sys.exit(0 if r["failed"] == 0 and r["ok"] >= 200 else 1)' "$W/load.json" || fail "requests failed"
P3=$(pids)
unit_pid() { tr ' ' '\n' <<<"$1" | grep "^$2"; }
[[ $(unit_pid "$P3" strata-gateway) == "$(unit_pid "$P1" strata-gateway)" ]] ||
  fail "gateway restarted for a node-only change"
[[ $(unit_pid "$P3" strata-node@node-a) != "$(unit_pid "$P1" strata-node@node-a)" &&
   $(unit_pid "$P3" strata-node@node-b) != "$(unit_pid "$P1" strata-node@node-b)" ]] ||
  fail "nodes not restarted: $P3"
grep -n "restart strata-node" "$W/deploy3.log" | head -2
chat || fail "request after the redeploy"

# --- Static checks on the installed files ---------------------------------------------------------
on "${HOSTS[1]}" 'cd /etc/systemd/system && cp strata-node@.service /srv/strata-node@node-a.service &&
  cp /etc/systemd/system/strata-firewall.service /srv/ &&
  SYSTEMD_LOG_LEVEL=warning systemd-analyze verify /srv/strata-node@node-a.service /srv/strata-firewall.service' ||
  fail "systemd-analyze verify (node)"
# The one-node unit for manual installs (not deployed by the script): verified on a node host.
on "${HOSTS[1]}" "cp $REPO/deploy/systemd/strata-node.service /srv/ &&
  SYSTEMD_LOG_LEVEL=warning systemd-analyze verify /srv/strata-node.service" ||
  fail "systemd-analyze verify (strata-node.service)"
on "${HOSTS[0]}" 'systemd-analyze verify /etc/systemd/system/strata-gateway.service' ||
  fail "systemd-analyze verify (gateway)"
hosts_down
say "replica part PASS"

# --- Pipeline on fresh hosts: stage-head on host 1, stage-tail on host 2 ---------------------------
hosts_up 3
{
  echo "model: {path: /opt/strata/models/tiny.gguf, name: tiny}"
  echo "cluster: {secret_file: cluster.key}"
  echo "nodes:"
  echo "  - {name: stage-head, host: ${HOSTS[1]}, port: $NODE_PORT, stage_port: $STAGE_PORT, layers: auto,"
  echo "     memory: 1GiB, next: stage-tail, parallel: 4, ctx: 512, threads: 1}"
  echo "  - {name: stage-tail, host: ${HOSTS[2]}, port: $NODE_PORT, stage_port: $STAGE_PORT, layers: auto,"
  echo "     memory: 1GiB, parallel: 4, ctx: 512, threads: 1}"
  gateway_yaml
} >"$W/cfg/cluster.yaml"
echo 'STRATA_NODE_ARGS=--api-key-file /etc/strata/node.key' >"$W/env/node.env"
"${DEPLOY[@]}" >"$W/deploy-p.log" 2>&1 || { cat "$W/deploy-p.log"; fail "pipeline deploy"; }
cat "$W/deploy-p.log"
say "pipeline deployed"
on "${HOSTS[2]}" 'stat -c "%a %U" /etc/strata/cluster.key' | grep -qx "600 strata" ||
  fail "cluster secret not 0600 strata"
chat || fail "request through the pipeline"
on "${HOSTS[0]}" "curl -fsS http://${HOSTS[0]}:$GW_PORT/api/cluster" | grep -q '"pipeline"' ||
  fail "the gateway does not see a pipeline"
check_firewall 2 "$NODE_PORT" "$STAGE_PORT"
hosts_down

shellcheck -x "$REPO"/deploy/ssh-deploy.sh "$REPO"/deploy/lib/*.sh "$REPO"/tests/deploy/ssh/systemctl \
  "$REPO"/tests/deploy/ssh/hosts.sh "$REPO"/tests/deploy/test_ssh.sh || fail "shellcheck"
say "PASS"
