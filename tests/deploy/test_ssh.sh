#!/usr/bin/env bash
# deploy/ssh-deploy.sh against three simulated hosts on this machine (docs/deploy.md):
# sshd on 127.0.0.2-4, each in its own mount namespace with a private /etc (overlay), /opt and
# /srv and /var/lib, key-based auth with a throwaway key. systemd is not PID 1 here, so each host's
# /usr/bin/systemctl is tests/deploy/ssh/systemctl, which runs the deployed units' real ExecStart.
# Checks: deploy + a request through the gateway; a second run changes and restarts nothing
# (pids); --dry-run changes nothing; a rolling redeploy under load fails no request;
# systemd-analyze verify on the units; nft -c on the rendered rules; shellcheck.
# Usage: bash tests/deploy/test_ssh.sh [BUILD_DIR]   (needs root)
# shellcheck disable=SC2016  # remote commands are single-quoted on purpose
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BUILD="${1:-${STRATA_BUILD:-$REPO/build}}"
STRATA="$BUILD/strata"
T0=$SECONDS
[[ -x $STRATA ]] || { echo "test_ssh: $STRATA missing (build first)" >&2; exit 1; }
[[ $(id -u) == 0 ]] || { echo "test_ssh: needs root (mount namespaces, sshd)" >&2; exit 1; }

need=()
for p in openssh-server openssh-client rsync nftables curl util-linux shellcheck; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || need+=("$p")
done
if ((${#need[@]})); then
  apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
fi

W=$(mktemp -d /tmp/test-ssh.XXXXXX)
HOSTS=(127.0.0.2 127.0.0.3 127.0.0.4)
SSHD_PIDS=() HOST_NS=()
fail() { echo "test_ssh: FAIL: $*" >&2; exit 1; }
cleanup() {
  local ns p
  for p in "${SSHD_PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; done
  for ns in "${HOST_NS[@]}"; do  # every process in a host's mount namespace is ours
    for p in /proc/[0-9]*; do
      [[ $(readlink "$p/ns/mnt" 2>/dev/null) == "$ns" ]] && kill -KILL "${p#/proc/}" 2>/dev/null
    done
  done
  [[ -n ${LOAD_PID:-} ]] && kill "$LOAD_PID" 2>/dev/null
  for p in /proc/[0-9]*; do  # a deploy still running (its command line names $W)
    grep -qF "$W" "$p/cmdline" 2>/dev/null && kill -TERM "${p#/proc/}" 2>/dev/null
  done
  sleep 0.5
  [[ -n ${KEEP:-} ]] || rm -rf "$W"
  return 0
}
trap cleanup EXIT

py_free_port() { python3 -c "import sys; sys.path.insert(0, '$REPO/tests/common')
from procs import free_port; print(free_port())"; }
SSH_PORT=$(py_free_port)
GW_PORT=$(py_free_port)
NODE_PORT=$(py_free_port)

# --- Three hosts ------------------------------------------------------------------------------
ssh-keygen -q -t ed25519 -N "" -f "$W/id" -C test_ssh
ssh-keygen -q -t ed25519 -N "" -f "$W/host_key"
cp "$W/id.pub" "$W/authorized_keys"
mkdir -p /run/sshd
for i in 0 1 2; do
  h=${HOSTS[$i]} d="$W/host$i"
  mkdir -p "$d/etc-up" "$d/etc-work" "$d/lib-up" "$d/lib-work" "$d/opt" "$d/srv"
  cat > "$d/sshd_config" <<EOF
ListenAddress $h:$SSH_PORT
HostKey $W/host_key
AuthorizedKeysFile $W/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PidFile $d/sshd.pid
MaxSessions 64
MaxStartups 64
EOF
  unshare --mount --propagation private -- bash -c '
    set -e
    d=$1 repo=$2
    mount -t overlay overlay -o "lowerdir=/etc,upperdir=$d/etc-up,workdir=$d/etc-work" /etc
    mount -t overlay overlay -o "lowerdir=/var/lib,upperdir=$d/lib-up,workdir=$d/lib-work" /var/lib
    mount --bind "$d/opt" /opt
    mount --bind "$d/srv" /srv
    mount --bind "$repo/tests/deploy/ssh/systemctl" /usr/bin/systemctl
    exec /usr/sbin/sshd -D -f "$d/sshd_config" -E "$d/sshd.log"' _ "$d" "$REPO" &
  SSHD_PIDS+=($!)
done
SSH=(ssh -p "$SSH_PORT" -i "$W/id" -o IdentitiesOnly=yes -o BatchMode=yes
     -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR)
on() { local h=$1; shift; "${SSH[@]}" "root@$h" "$@"; }
for h in "${HOSTS[@]}"; do
  for _ in $(seq 100); do on "$h" true 2>/dev/null && break; sleep 0.1; done
  on "$h" true || fail "sshd on $h does not answer"
done
HOST_NS=()  # recorded now: cleanup finds the services by it even if an sshd is gone
for pid in "${SSHD_PIDS[@]}"; do HOST_NS+=("$(readlink "/proc/$pid/ns/mnt")"); done
echo "test_ssh: 3 hosts up ($((SECONDS - T0)) s)"

# --- The cluster: gateway on host 1, a replica on hosts 2 and 3 --------------------------------
strip -o "$W/strata" "$STRATA"  # a release binary: the test copies it 3 times
"$STRATA" model synth --shape tiny-qwen2 --type f32 -o "$W/tiny.gguf" >/dev/null
mkdir -p "$W/cfg" "$W/env"
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$W/cfg/node.key"
cat > "$W/cfg/cluster.yaml" <<EOF
model: {path: /opt/strata/models/tiny.gguf, name: tiny}
nodes:
  - {name: node-a, host: ${HOSTS[1]}, port: $NODE_PORT, parallel: 4, ctx: 512, threads: 1, memory: 1GiB}
  - {name: node-b, host: ${HOSTS[2]}, port: $NODE_PORT, parallel: 4, ctx: 512, threads: 1, memory: 1GiB}
gateway:
  listen: ${HOSTS[0]}:$GW_PORT
  node_api_key_file: node.key
  access_log: false
  health: {interval_ms: 200, timeout_ms: 1000, unhealthy_threshold: 1, healthy_threshold: 1}
  circuit_breaker: {failure_threshold: 1, open_ms: 500}
  retry: {max_attempts: 3, backoff_ms: 10, max_backoff_ms: 100, unavailable_timeout_ms: 5000}
EOF
echo 'STRATA_NODE_ARGS=--api-key-file /etc/strata/node.key' > "$W/env/node.env"
DEPLOY=(timeout 600 bash ${TRACE:+-x} "$REPO/deploy/ssh-deploy.sh" --config "$W/cfg/cluster.yaml" --binary "$W/strata"
        --model "$W/tiny.gguf" --env-dir "$W/env" --key "$W/id" --port "$SSH_PORT" --no-firewall
        --ssh-option StrictHostKeyChecking=no --ssh-option UserKnownHostsFile=/dev/null
        --ssh-option LogLevel=ERROR)

pids() { local i; for i in 0 1 2; do
  on "${HOSTS[$i]}" 'for u in strata-gateway.service strata-node@node-a.service strata-node@node-b.service; do
    [ -f /etc/systemd/system/${u%%@*}@.service ] || [ -f /etc/systemd/system/$u ] || continue
    systemctl is-active -q $u && echo "$u=$(systemctl show -p MainPID --value $u)"; done' | tr '\n' ' '
  done; }
chat() { python3 - "$REPO" "${HOSTS[0]}" "$GW_PORT" <<'EOF'
import sys
sys.path.insert(0, sys.argv[1] + "/tests/common")
import procs
procs.HOST = sys.argv[2]
st, _, body = procs.request(int(sys.argv[3]), "POST", "/v1/chat/completions",
    {"model": "tiny", "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]})
assert st == 200 and body["choices"][0]["message"], (st, body)
print("chat ok:", body["usage"])
EOF
}

t=$SECONDS
"${DEPLOY[@]}" 2>&1 | tee "$W/deploy1.log" || fail "first deploy"
echo "test_ssh: first deploy ok ($((SECONDS - t)) s)"
grep -q "127.0.0.2: start strata-gateway.service" "$W/deploy1.log" || fail "gateway not started"
on "${HOSTS[1]}" 'stat -c "%a %U" /etc/strata/node.key' | grep -qx "600 strata" ||
  fail "secret not 0600 strata"
on "${HOSTS[0]}" 'test ! -e /etc/systemd/system/strata-node@.service' || fail "node unit on gateway host"
on "${HOSTS[1]}" 'ps -o user= -p $(systemctl show -p MainPID --value strata-node@node-a)' |
  grep -qx strata || fail "node does not run as user strata"
chat || fail "request through the gateway"
P1=$(pids); echo "test_ssh: pids $P1"
[[ $(grep -o '=' <<< "$P1" | wc -l) == 3 ]] || fail "expected 3 services, got: $P1"

# --- Second run: no changes ---------------------------------------------------------------------
t=$SECONDS
"${DEPLOY[@]}" > "$W/deploy2.log" 2>&1 || { cat "$W/deploy2.log"; fail "second deploy"; }
grep -q "ssh-deploy: no changes" "$W/deploy2.log" || { cat "$W/deploy2.log"; fail "second run changed something"; }
[[ $(pids) == "$P1" ]] || fail "second run restarted something: $(pids) vs $P1"
echo "test_ssh: second run: no changes, same pids ($((SECONDS - t)) s)"

# --- A node setting changes: --dry-run first, then a rolling redeploy under load ------------------
echo 'STRATA_NODE_ARGS=--api-key-file /etc/strata/node.key --max-queue 512' > "$W/env/node.env"
before=$(on "${HOSTS[1]}" 'sha256sum /etc/strata/node.env')
"${DEPLOY[@]}" --dry-run > "$W/dry.log" 2>&1 || { cat "$W/dry.log"; fail "dry run"; }
grep -q "would update /etc/strata/node.env" "$W/dry.log" || { cat "$W/dry.log"; fail "dry run silent"; }
grep -q "would restart strata-node@node-a.service" "$W/dry.log" || fail "dry run: no restart planned"
[[ $(on "${HOSTS[1]}" 'sha256sum /etc/strata/node.env') == "$before" ]] || fail "dry run changed a file"
[[ $(pids) == "$P1" ]] || fail "dry run restarted something"
echo "test_ssh: dry run ok, nothing changed"

python3 - "$REPO" "${HOSTS[0]}" "$GW_PORT" "$W/load.json" <<'EOF' &
import json, os, sys, threading, time
sys.path.insert(0, sys.argv[1] + "/tests/common")
import procs
procs.HOST = sys.argv[2]
# Until the deploy is over (the stop file) and at least 240 sent; bounded: 5000 requests, 900 s.
port, stop, workers = int(sys.argv[3]), sys.argv[4] + ".stop", 4
res = {"ok": 0, "failed": 0, "errors": []}
lock, count, t0 = threading.Lock(), iter(range(5000)), time.time()
def worker():
    for i in count:
        if (os.path.exists(stop) and i >= 240) or time.time() - t0 > 900:
            break
        try:
            st, _, body = procs.request(port, "POST", "/v1/chat/completions", {"model": "tiny",
                "max_tokens": 8, "messages": [{"role": "user", "content": f"count {i}"}]}, timeout=30)
            good = st == 200 and body["choices"][0]["message"] is not None
            err = None if good else f"{st} {body}"
        except Exception as e:  # a refused or broken connection is a failed request
            good, err = False, repr(e)
        with lock:
            res["ok" if good else "failed"] += 1
            if err: res["errors"].append(err[:200])
        time.sleep(0.05)
ts = [threading.Thread(target=worker) for _ in range(workers)]
for t in ts: t.start()
for t in ts: t.join()
res["seconds"] = round(time.time() - t0, 1)
json.dump(res, open(sys.argv[4], "w"))
EOF
LOAD_PID=$!
sleep 2
t=$SECONDS
"${DEPLOY[@]}" > "$W/deploy3.log" 2>&1 || { cat "$W/deploy3.log"; fail "rolling deploy"; }
echo "test_ssh: rolling redeploy done ($((SECONDS - t)) s)"
touch "$W/load.json.stop"
wait "$LOAD_PID"; LOAD_PID=""
cat "$W/deploy3.log"
python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print("test_ssh: load:", r)
sys.exit(0 if r["failed"] == 0 and r["ok"] >= 200 else 1)' "$W/load.json" || fail "requests failed"
P3=$(pids)
gw() { tr ' ' '\n' <<< "$1" | grep '^strata-gateway'; }
na() { tr ' ' '\n' <<< "$1" | grep 'node-a'; }
nb() { tr ' ' '\n' <<< "$1" | grep 'node-b'; }
[[ $(gw "$P3") == "$(gw "$P1")" ]] || fail "gateway restarted for a node-only change"
[[ $(na "$P3") != "$(na "$P1")" && $(nb "$P3") != "$(nb "$P1")" ]] || fail "nodes not restarted: $P3"
grep -n "restart strata-node" "$W/deploy3.log" | head -2
chat || fail "request after the redeploy"

# --- Static checks --------------------------------------------------------------------------------
on "${HOSTS[1]}" 'cd /etc/systemd/system && cp strata-node@.service /srv/strata-node@node-a.service &&
  cp /etc/systemd/system/strata-firewall.service /srv/ &&
  SYSTEMD_LOG_LEVEL=warning systemd-analyze verify /srv/strata-node@node-a.service /srv/strata-firewall.service' ||
  fail "systemd-analyze verify (node)"
on "${HOSTS[0]}" 'systemd-analyze verify /etc/systemd/system/strata-gateway.service' ||
  fail "systemd-analyze verify (gateway)"
for i in 0 1; do
  on "${HOSTS[$i]}" 'nft -c -f /etc/strata/strata.nft' || fail "nft -c on ${HOSTS[$i]}"
done
on "${HOSTS[1]}" "grep -q 'ip saddr @cluster_v4 tcp dport { $NODE_PORT } accept' /etc/strata/strata.nft" ||
  fail "node port rule"
on "${HOSTS[0]}" "grep -q 'tcp dport $GW_PORT accept' /etc/strata/strata.nft" || fail "gateway port rule"
shellcheck "$REPO"/deploy/ssh-deploy.sh "$REPO"/deploy/lib/*.sh "$REPO"/tests/deploy/ssh/systemctl \
  "$REPO"/tests/deploy/test_ssh.sh || fail "shellcheck"
echo "test_ssh: PASS ($((SECONDS - T0)) s)"
