#!/usr/bin/env bash
# Deploys a Strata cluster described by cluster.yaml to plain hosts over ssh (docs/deploy.md):
# copies the binary, the config, its secrets (0600), env files, systemd units and nftables rules
# to every host (rsync --checksum: an unchanged file is not touched), installs the runtime
# packages that are missing, and restarts what changed one node at a time, waiting until the node
# is healthy and the gateway routes to it again before the next; the gateway host comes last.
# shellcheck source-path=SCRIPTDIR disable=SC2034,SC1091,SC2317  # globals used by the sourced lib/*.sh (shellcheck -x follows them)
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: deploy/ssh-deploy.sh --config cluster.yaml --binary PATH [options]
  --config FILE        the cluster description (secrets it names are read next to it)
  --binary PATH        the strata binary to install as /opt/strata/bin/strata
  --gateway-host HOST  host that runs the gateway (default: gateway.listen when not 0.0.0.0)
  --model FILE         copy this GGUF to model.path on every node host
  --env-dir DIR        ship DIR/node.env, DIR/node-NAME.env, DIR/gateway.env (mode 0600)
  --hosts H1,H2        only these hosts (as written in cluster.yaml / --gateway-host)
  --user USER          ssh user (default: root; else sudo is used)   --port N   ssh port
  --key FILE           ssh identity file     --ssh-option OPT   extra ssh -o option (repeatable)
  --admin-sources LIST who may reach ssh through the firewall (default: 0.0.0.0/0)
  --no-firewall        do not apply the nftables rules (the file is still installed)
  --no-packages        do not install missing runtime packages
  --dry-run            print what would change, change nothing
EOF
}

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CONFIG="" BINARY="" GATEWAY_HOST="" MODEL="" ENV_DIR="" ONLY="" SSH_USER=root SSH_PORT=22
KEY="" ADMIN_SOURCES="0.0.0.0/0" FIREWALL=1 PACKAGES=1 DRY=0 SSH_OPTS=()
PKGS=(libssl3 libyaml-cpp0.7 libhiredis0.14 libpcre2-8-0 curl rsync nftables util-linux)

while [[ $# -gt 0 ]]; do
  case $1 in
    --config) CONFIG=$2; shift ;;
    --binary) BINARY=$2; shift ;;
    --gateway-host) GATEWAY_HOST=$2; shift ;;
    --model) MODEL=$2; shift ;;
    --env-dir) ENV_DIR=$2; shift ;;
    --hosts) ONLY=$2; shift ;;
    --user) SSH_USER=$2; shift ;;
    --port) SSH_PORT=$2; shift ;;
    --key) KEY=$2; shift ;;
    --ssh-option) SSH_OPTS+=(-o "$2"); shift ;;
    --admin-sources) ADMIN_SOURCES=$2; shift ;;
    --no-firewall) FIREWALL=0 ;;
    --no-packages) PACKAGES=0 ;;
    --dry-run) DRY=1 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "ssh-deploy: unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done
[[ -n $CONFIG && -n $BINARY ]] || { usage >&2; exit 2; }
[[ -f $CONFIG && -x $BINARY ]] || { echo "ssh-deploy: $CONFIG or $BINARY missing" >&2; exit 2; }
[[ -z $MODEL || -f $MODEL ]] || { echo "ssh-deploy: model $MODEL missing" >&2; exit 2; }

log() { echo "ssh-deploy: $* [${SECONDS}s]"; }
WORK=$(mktemp -d "${TMPDIR:-/tmp}/ssh-deploy.XXXXXX")
SSH=(ssh -p "$SSH_PORT" -o BatchMode=yes -o ConnectTimeout=10 -o ControlMaster=auto
     -o "ControlPath=$WORK/cm-%h" -o ControlPersist=120 "${SSH_OPTS[@]}")
[[ -n $KEY ]] && SSH+=(-i "$KEY" -o IdentitiesOnly=yes)
SUDO=""; [[ $SSH_USER == root ]] || SUDO="sudo -n"
cleanup() {
  local s
  for s in "$WORK"/cm-*; do
    if [[ -S $s ]]; then "${SSH[@]}" -o "ControlPath=$s" -O exit x 2>/dev/null || true; fi
  done
  rm -rf "$WORK"
  return 0
}
trap cleanup EXIT
trap "exit 130" INT TERM
trap 'echo "ssh-deploy: failed (line $LINENO: $BASH_COMMAND)" >&2' ERR

remote() { local h=$1; shift; "${SSH[@]}" "$SSH_USER@$h" "$SUDO bash -c $(printf '%q' "$*")"; }

# --- The cluster, parsed by strata itself --------------------------------------------------
"$BINARY" config hosts --config "$CONFIG" > "$WORK/cluster.json"
CONFIG_DIR=$(cd "$(dirname "$CONFIG")" && pwd)
# One python3 run turns it into shell assignments (quoted): GW_LISTEN_HOST, GW_PORT, MODEL_PATH,
# NODES ("name host port stage_port memory" per node, in file order), FILES (the files the
# config names, relative to its directory when they are in it: those are shipped to
# /etc/strata; others must already be on the hosts), TLS_FILES (as installed: a change only
# reloads the gateway, SIGHUP), PROBE_WAIT_MS (two gateway health probes).
eval "$(python3 - "$WORK/cluster.json" "$CONFIG_DIR/" <<'EOF_PY'
import json, shlex, sys
c, d = json.load(open(sys.argv[1])), sys.argv[2]
g = c["gateway"]
rel = lambda f: f[len(d):] if f.startswith(d) else f
var = lambda k, v: print(f"{k}={shlex.quote(str(v))}")
arr = lambda k, vs: print(f"{k}=(" + " ".join(shlex.quote(v) for v in vs) + ")")
var("GW_LISTEN_HOST", g["listen_host"])
var("GW_PORT", g["listen_port"])
var("MODEL_PATH", c["model"]["path"])
arr("NODES", ["%s %s %d %d %d" % (n["name"], n["host"], n["port"], n["stage_port"], n["memory"])
              for n in c["nodes"]])
arr("FILES", [rel(f) for f in c["files"]])
var("TLS_FILES", " ".join(f if f.startswith("/") and not f.startswith(d) else "/etc/strata/" + rel(f)
                          for f in (g["tls_cert"], g["tls_key"]) if f))
var("PROBE_WAIT_MS", g["health_interval_ms"] * (g["healthy_threshold"] + 1))
EOF_PY
)"
if [[ -z $GATEWAY_HOST ]]; then
  [[ $GW_LISTEN_HOST != 0.0.0.0 && $GW_LISTEN_HOST != "::" ]] ||
    { echo "ssh-deploy: gateway.listen is $GW_LISTEN_HOST: give --gateway-host" >&2; exit 2; }
  GATEWAY_HOST=$GW_LISTEN_HOST
fi
HOSTS=()
add_host() { local h; for h in "${HOSTS[@]}"; do [[ $h == "$1" ]] && return; done; HOSTS+=("$1"); }
for n in "${NODES[@]}"; do read -r _ h _ <<< "$n"; add_host "$h"; done
add_host "$GATEWAY_HOST"
selected() { [[ -z $ONLY || ",$ONLY," == *",$1,"* ]]; }

# shellcheck source=lib/stage.sh
source "$ROOT/lib/stage.sh"
# shellcheck source=lib/roll.sh
source "$ROOT/lib/roll.sh"

# --- Phase 1: every host gets its files, all hosts at once; nothing restarts yet ------------
declare -A RESTART=() RELOAD_GW=() FW=()
DRYRUN=(); ((DRY)) && DRYRUN=(--dry-run)
CHANGED=0
phase1_host() {  # HOST (in a subshell): its log and findings go to $WORK/HOST.{log,state}
  stage_host "$1"
  prepare_host "$1"
  sync_host "$1"
  printf 'CHANGED_H=%q RESTART_H=%q RELOAD_H=%q FW_H=%q\n' "$CHANGED" "${RESTART["$1"]:-}" \
    "${RELOAD_GW["$1"]:-}" "${FW["$1"]:-}" >"$WORK/$1.state"
}
JOBS=()
for h in "${HOSTS[@]}"; do
  selected "$h" || continue
  phase1_host "$h" >"$WORK/$h.log" 2>&1 &
  JOBS+=("$!:$h")
done
FAILED=0
for j in "${JOBS[@]}"; do  # the logs in host order, each once its host is done
  h=${j#*:}
  wait "${j%%:*}" || FAILED=1
  cat "$WORK/$h.log"
  [[ -f $WORK/$h.state ]] || { FAILED=1; continue; }
  CHANGED_H=0 RESTART_H="" RELOAD_H="" FW_H=""
  # shellcheck source=/dev/null  # written by phase1_host above
  source "$WORK/$h.state"
  ((CHANGED_H)) && CHANGED=1
  [[ -n $RESTART_H ]] && RESTART["$h"]=$RESTART_H
  [[ -n $RELOAD_H ]] && RELOAD_GW["$h"]=$RELOAD_H
  [[ -n $FW_H ]] && FW["$h"]=$FW_H
done
((FAILED == 0)) || { echo "ssh-deploy: preparing the hosts failed (above)" >&2; exit 1; }

# --- Phase 2: rolling restart, nodes first (one at a time), the gateway last ----------------
for h in "${HOSTS[@]}"; do
  [[ $h == "$GATEWAY_HOST" ]] && continue
  selected "$h" || continue
  roll_host "$h"
done
if selected "$GATEWAY_HOST"; then roll_host "$GATEWAY_HOST"; fi
if ((CHANGED == 0)); then log "no changes"; fi
if ((DRY)); then log "dry run: nothing was changed"; fi
exit 0
