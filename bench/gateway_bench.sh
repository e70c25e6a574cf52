#!/usr/bin/env bash
# Gateway load benchmark (issue 6): 1,000 concurrent streaming connections through
# `strata gateway` (threads, RSS, descriptors sampled from /proc), and the latency the gateway
# adds over calling the node directly (interleaved sequential requests, median difference).
#
#   bench/gateway_bench.sh [STRATA_BIN] [N_STREAMS] [N_PAIRS]     (N_STREAMS 0: latency only)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STRATA="${1:-$ROOT/build/strata}"
N="${2:-1000}"
PAIRS="${3:-300}"
WORK="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 1 300); do curl -sf "$1" >/dev/null && return 0; sleep 0.1; done; echo "not ready: $1" >&2; return 1; }

"$STRATA" model synth --shape tiny-qwen2 --type q8_0 --out "$WORK/tiny.gguf" >/dev/null
NODE_PORT=$(free_port); GW_PORT=$(free_port)
"$STRATA" node --model "$WORK/tiny.gguf" --port "$NODE_PORT" --parallel 16 --threads 1 \
  --max-queue 4000 --ctx 256 2>"$WORK/node.log" &
cat > "$WORK/cluster.yaml" <<YAML
model: {path: $WORK/tiny.gguf, name: tiny}
nodes:
  - {name: n1, host: 127.0.0.1, port: $NODE_PORT}
gateway:
  listen: 127.0.0.1:$GW_PORT
  threads: 2
  access_log: false
  admission: {max_concurrent: 2000, max_queue: 2000, queue_timeout_ms: 60000}
YAML
"$STRATA" gateway --config "$WORK/cluster.yaml" 2>"$WORK/gw.log" &
GW_PID=$!
wait_http "http://127.0.0.1:$NODE_PORT/health"
wait_http "http://127.0.0.1:$GW_PORT/ready"

if [ "$N" -gt 0 ]; then  # N_STREAMS 0: only the added latency
  echo "== $N concurrent streaming requests through the gateway"
  python3 "$ROOT/bench/gateway_load.py" stream --url "http://127.0.0.1:$GW_PORT" -n "$N" \
    --max-tokens 4 --pid "$GW_PID" --unique
fi
echo "== latency added by the gateway: $PAIRS interleaved pairs (gateway vs node)"
python3 "$ROOT/bench/gateway_load.py" overhead --url-a "http://127.0.0.1:$GW_PORT" \
  --url-b "http://127.0.0.1:$NODE_PORT" -m "$PAIRS"
