#!/usr/bin/env bash
# First run on a fresh machine: installs the build dependencies only (no test packages, no npm),
# builds only the `strata` binary, brings up a gateway in front of two compute nodes serving the
# demo model (random weights, so its text is meaningless; synthesized on first use, no download),
# sends one chat request through the gateway and keeps the cluster running until Ctrl-C.
#
#   bash scripts/demo.sh ["your prompt"]
#   STRATA_UP_ARGS="--mode pipeline" bash scripts/demo.sh     # any `strata up` options
#   STRATA_DEMO_PORT=8000 (gateway port), STRATA_BUILD_DIR=build
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BUILD="${STRATA_BUILD_DIR:-build}"
PORT="${STRATA_DEMO_PORT:-8000}"
PROMPT="${1:-Why is the sky blue?}"

if [[ "$(id -u)" -eq 0 ]]; then
  bash scripts/setup.sh --build-only
else
  sudo bash scripts/setup.sh --build-only
fi
# Release (the same -O2 code as RelWithDebInfo, without -g) and a unity build: the fastest cold
# build of `strata`. scripts/build.sh and scripts/test.sh set every one of these options again.
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DSTRATA_TESTS=OFF -DSTRATA_UNITY=ON \
  >/dev/null
ninja -C "$BUILD" -j"${STRATA_JOBS:-$(nproc)}" strata

# shellcheck disable=SC2086  # STRATA_UP_ARGS is a list of options
"$BUILD/strata" up --port "$PORT" ${STRATA_UP_ARGS:-} &
UP=$!
stop() { kill -TERM "$UP" 2>/dev/null || true; wait "$UP" || true; }
trap 'stop; exit 130' INT TERM

ready=0
for _ in $(seq 1 600); do
  if ! kill -0 "$UP" 2>/dev/null; then wait "$UP" || true; echo "demo: strata up exited" >&2; exit 1; fi
  if curl -fsS "http://127.0.0.1:$PORT/ready" 2>/dev/null | grep -q '"ready":true'; then
    ready=1
    break
  fi
  sleep 0.5
done
[[ "$ready" -eq 1 ]] || { echo "demo: the gateway was not ready after 300 s" >&2; stop; exit 1; }

body=$(python3 -c 'import json, sys; print(json.dumps({"messages": [{"role": "user",
  "content": sys.argv[1]}], "max_tokens": 48, "temperature": 0.7, "seed": 42}))' "$PROMPT")
echo
echo "demo: POST http://127.0.0.1:$PORT/v1/chat/completions  ($PROMPT)"
curl -fsS "http://127.0.0.1:$PORT/v1/chat/completions" -H 'Content-Type: application/json' \
  -d "$body" | python3 -c 'import json, sys; r = json.load(sys.stdin); m = r["choices"][0]["message"]
print("demo: answer (DEMO MODEL, RANDOM WEIGHTS: MEANINGLESS TEXT):")
print("  reasoning:", repr(m.get("reasoning_content") or "")[:300])
print("  content:  ", repr(m.get("content") or "")[:300])
print("demo:", r["usage"]["completion_tokens"], "tokens")'
echo
echo "demo: the cluster keeps running: send it requests (see the snippets above)."
echo "demo: stop it with Ctrl-C."
wait "$UP"
