#!/usr/bin/env bash
# The same `strata loadtest` against a strata node and llama.cpp's llama-server on the same GGUF,
# thread count and slot count, one after the other, and a side-by-side markdown table
# (TTFT, TPOT, ITL, E2E, throughput per concurrency level) on stdout: paste it into
# docs/performance.md.
#
#   bench/loadtest-compare.sh --model M [--strata BIN] [--llama-server BIN] [--threads 2]
#       [--concurrency 1,2,4] [--requests 16] [--prompt-tokens 128] [--output-tokens 64]
#
# llama-server: --llama-server, else $LLAMA_SERVER, else it is built once (into
# bench/.llama-server/, cached) from the llama.cpp source that the npm package node-llama-cpp
# bundles (tests/conformance/node_modules/node-llama-cpp/llama/gitRelease.bundle; scripts/setup.sh
# installs it). That build takes long on a small machine (ggml + llama + the server).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STRATA="$ROOT/build/strata"; LLAMA_SERVER="${LLAMA_SERVER:-}"; MODEL=""; THREADS=2
CONC="1,2,4"; REQS=16; PTOK=128; OTOK=64
while [ $# -gt 0 ]; do
  case "$1" in
    --model|-m) MODEL=$2; shift 2 ;;
    --strata) STRATA=$2; shift 2 ;;
    --llama-server) LLAMA_SERVER=$2; shift 2 ;;
    --threads|-t) THREADS=$2; shift 2 ;;
    --concurrency|-c) CONC=$2; shift 2 ;;
    --requests|-n) REQS=$2; shift 2 ;;
    --prompt-tokens) PTOK=$2; shift 2 ;;
    --output-tokens) OTOK=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -n "$MODEL" ] || { echo "usage: $0 --model M [--strata BIN] [--llama-server BIN] [--threads T]" >&2; exit 2; }
[ -x "$STRATA" ] || { echo "strata binary not found: $STRATA (pass --strata)" >&2; exit 2; }

build_llama_server() {
  local bundle="$ROOT/tests/conformance/node_modules/node-llama-cpp/llama/gitRelease.bundle"
  local dir="$ROOT/bench/.llama-server"
  [ -x "$dir/build/bin/llama-server" ] && { echo "$dir/build/bin/llama-server"; return; }
  [ -f "$bundle" ] || { echo "no llama.cpp source: $bundle (run scripts/setup.sh) or pass --llama-server" >&2; exit 2; }
  [ -d "$dir/src" ] || git clone -q "$bundle" "$dir/src" >&2
  cmake -S "$dir/src" -B "$dir/build" -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF \
    -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=ON -DGGML_NATIVE=ON >&2
  cmake --build "$dir/build" --target llama-server -j"$(nproc)" >&2
  echo "$dir/build/bin/llama-server"
}
[ -n "$LLAMA_SERVER" ] || LLAMA_SERVER="$(build_llama_server)"

W=$(mktemp -d /tmp/strata-ltcmp-XXXXXX)
PID=""
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; rm -rf "$W"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_ready() {  # URL PATH
  for _ in $(seq 1 600); do
    curl -sf "$1$2" >/dev/null 2>&1 && return 0
    kill -0 "$PID" 2>/dev/null || { echo "server exited" >&2; return 1; }
    sleep 0.2
  done
  echo "server not ready" >&2; return 1
}
MAXC=$(tr ',' '\n' <<<"$CONC" | sort -n | tail -1)
CTX=$((PTOK + OTOK + 64))
run_load() {  # NAME URL
  "$STRATA" loadtest --url "$2" --concurrency "$CONC" --requests "$REQS" --prompt-tokens "$PTOK" \
    --output-tokens "$OTOK" --ignore-eos --no-progress --json "$W/$1.json" --svg "$W/$1.svg" >&2
}

P=$(free_port)
echo "strata node: $THREADS threads, $MAXC slots" >&2
"$STRATA" node --model "$MODEL" --port "$P" --threads "$THREADS" --parallel "$MAXC" --ctx "$CTX" 2>"$W/strata.log" &
PID=$!
wait_ready "http://127.0.0.1:$P" /health
run_load strata "http://127.0.0.1:$P"
kill "$PID"; wait "$PID" 2>/dev/null || true; PID=""

P=$(free_port)
echo "llama-server: $THREADS threads, $MAXC slots" >&2
"$LLAMA_SERVER" -m "$MODEL" --host 127.0.0.1 --port "$P" -t "$THREADS" -np "$MAXC" -c $((CTX * MAXC)) \
  2>"$W/llama.log" >&2 &
PID=$!
wait_ready "http://127.0.0.1:$P" /health
run_load llama "http://127.0.0.1:$P"
kill "$PID"; wait "$PID" 2>/dev/null || true; PID=""

python3 - "$W" "$MODEL" "$THREADS" "$CONC" "$REQS" "$PTOK" "$OTOK" <<'PY'
import json, os, sys
w, model, threads, conc, reqs, ptok, otok = sys.argv[1:]
s = json.load(open(os.path.join(w, "strata.json")))["levels"]
l = json.load(open(os.path.join(w, "llama.json")))["levels"]
print(f"`strata loadtest --concurrency {conc} --requests {reqs} --prompt-tokens {ptok} "
      f"--output-tokens {otok} --ignore-eos`, model `{os.path.basename(model)}`, {threads} threads "
      f"each, chat completions, streamed.\n")
print("| c | server | ok | out tok/s | req/s | TTFT p50 ms | TTFT p99 ms | TPOT mean ms | ITL p99 ms | E2E p50 ms |")
print("|---|---|---|---|---|---|---|---|---|---|")
for a, b in zip(s, l):
    for name, lv in (("strata", a), ("llama-server", b)):
        print(f"| {lv['concurrency']} | {name} | {lv['completed']}/{lv['requests']} | {lv['output_throughput']:.1f} | "
              f"{lv['request_throughput']:.2f} | {lv['ttft_ms']['p50']:.1f} | {lv['ttft_ms']['p99']:.1f} | "
              f"{lv['tpot_ms']['mean']:.1f} | {lv['itl_ms']['p99']:.1f} | {lv['e2el_ms']['p50']:.1f} |")
PY
