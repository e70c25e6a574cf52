#!/usr/bin/env bash
# The same `strata loadtest` against a strata node and llama.cpp's llama-server on the same GGUF,
# thread count and slot count, one after the other, and a side-by-side markdown table
# (TTFT, TPOT, ITL, E2E, throughput per concurrency level) on stdout: paste it into
# docs/performance.md.
#
#   bench/loadtest-compare.sh --model M [--strata BIN] [--llama-server BIN] [--threads 2]
#       [--concurrency 1,2,4] [--requests 16] [--prompt-tokens 128] [--output-tokens 64]
#       [--rounds 2]   (interleaved: round 1 strata then llama-server, round 2 the reverse, ...)
#
# llama-server: --llama-server, else $LLAMA_SERVER, else it is built once (into
# bench/.llama-server/, cached) from the llama.cpp source that the npm package node-llama-cpp
# bundles (tests/conformance/node_modules/node-llama-cpp/llama/gitRelease.bundle; scripts/setup.sh
# installs it). That build takes long on a small machine (ggml + llama + the server).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STRATA="$ROOT/build/strata"; LLAMA_SERVER="${LLAMA_SERVER:-}"; MODEL=""; THREADS=2
CONC="1,2,4"; REQS=16; PTOK=128; OTOK=64; ROUNDS=2
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
    --rounds) ROUNDS=$2; shift 2 ;;
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

start_strata() {
  P=$(free_port)
  "$STRATA" node --model "$MODEL" --port "$P" --threads "$THREADS" --parallel "$MAXC" --ctx "$CTX" 2>>"$W/strata.log" &
  PID=$!
  wait_ready "http://127.0.0.1:$P" /health
}
start_llama() {
  P=$(free_port)
  "$LLAMA_SERVER" -m "$MODEL" --host 127.0.0.1 --port "$P" -t "$THREADS" -np "$MAXC" -c $((CTX * MAXC)) \
    2>>"$W/llama.log" >&2 &
  PID=$!
  wait_ready "http://127.0.0.1:$P" /health
}
stop_server() { kill "$PID"; wait "$PID" 2>/dev/null || true; PID=""; }
one() {  # NAME ROUND
  echo "$1, round $2: $THREADS threads, $MAXC slots" >&2
  if [ "$1" = strata ]; then start_strata; else start_llama; fi
  run_load "$1-$2" "http://127.0.0.1:$P"
  stop_server
}
# Interleaved A-B-B-A...: odd rounds run strata first, even rounds llama-server first, so that a
# drift in the machine's speed weighs on both alike.
for r in $(seq 1 "$ROUNDS"); do
  if [ $((r % 2)) = 1 ]; then one strata "$r"; one llama "$r"; else one llama "$r"; one strata "$r"; fi
done

python3 - "$W" "$MODEL" "$THREADS" "$CONC" "$REQS" "$PTOK" "$OTOK" "$ROUNDS" <<'PY'
import json, os, statistics, sys
w, model, threads, conc, reqs, ptok, otok, rounds = sys.argv[1:]
rounds = int(rounds)
def load(name):
    return [json.load(open(os.path.join(w, f"{name}-{r}.json")))["levels"] for r in range(1, rounds + 1)]
runs = {"strata": load("strata"), "llama-server": load("llama")}
def med(name, i, get):  # median over the rounds of one figure at concurrency level i
    return statistics.median(get(run[i]) for run in runs[name])
figs = [("out tok/s", lambda lv: lv["output_throughput"], "{:.1f}"),
        ("req/s", lambda lv: lv["request_throughput"], "{:.2f}"),
        ("TTFT p50 ms", lambda lv: lv["ttft_ms"]["p50"], "{:.1f}"),
        ("TTFT p99 ms", lambda lv: lv["ttft_ms"]["p99"], "{:.1f}"),
        ("TPOT mean ms", lambda lv: lv["tpot_ms"]["mean"], "{:.1f}"),
        ("ITL p99 ms", lambda lv: lv["itl_ms"]["p99"], "{:.1f}"),
        ("E2E p50 ms", lambda lv: lv["e2el_ms"]["p50"], "{:.1f}")]
print(f"`strata loadtest --concurrency {conc} --requests {reqs} --prompt-tokens {ptok} "
      f"--output-tokens {otok} --ignore-eos`, model `{os.path.basename(model)}`, {threads} threads "
      f"each, chat completions, streamed; medians of {rounds} interleaved rounds "
      f"(A-B-B-A...).\n")
print("| c | server | ok | " + " | ".join(f[0] for f in figs) + " |")
print("|---|---|---|" + "---|" * len(figs))
for i, lv0 in enumerate(runs["strata"][0]):
    for name in ("strata", "llama-server"):
        ok = sum(run[i]["completed"] for run in runs[name])
        total = sum(run[i]["requests"] for run in runs[name])
        cells = [fmt.format(med(name, i, get)) for _, get, fmt in figs]
        print(f"| {lv0['concurrency']} | {name} | {ok}/{total} | " + " | ".join(cells) + " |")
    ratio = med("strata", i, figs[0][1]) / med("llama-server", i, figs[0][1])
    tpot = med("llama-server", i, figs[4][1]) / med("strata", i, figs[4][1])
    print(f"| {lv0['concurrency']} | **strata ÷ llama** | | **{ratio:.2f}×** | | | | "
          f"{tpot:.2f}× faster | | |")
PY
