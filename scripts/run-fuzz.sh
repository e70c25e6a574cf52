#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan + UBSan) into build-fuzz/ and fuzzes the GGUF
# reader for a bounded time from a seed corpus generated at run time, then the request-body
# validation of the node and of the gateway (tests/fuzz/seeds/request, tests/fuzz/request.dict).
#
#   scripts/run-fuzz.sh [SECONDS]        (default 60)
#
# Environment: STRATA_FUZZ_BUILD (build dir, default <repo>/build-fuzz), STRATA_FUZZ_JOBS
# (ninja -j, default 2), STRATA_FUZZ_TOKENIZER_SECONDS (also run tokenizer_fuzz for that long
# when it was built; default 0 = skip), STRATA_FUZZ_REQUEST_SECONDS (time for each of
# node_request_fuzz and gateway_request_fuzz; default: SECONDS; 0 = skip).
# Exit status: 0 when no crash was found; non-zero when the build fails or the fuzzer finds a
# crash, leak, timeout or OOM (the reproducer is left in $BUILD/fuzz-artifacts/).
set -euo pipefail

SECONDS_TO_RUN="${1:-60}"
if ! [[ "$SECONDS_TO_RUN" =~ ^[0-9]+$ ]] || [[ "$SECONDS_TO_RUN" -lt 1 ]]; then
  echo "usage: $0 [SECONDS]" >&2
  exit 2
fi
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${STRATA_FUZZ_BUILD:-$ROOT/build-fuzz}"
JOBS="${STRATA_FUZZ_JOBS:-2}"
TOK_SECONDS="${STRATA_FUZZ_TOKENIZER_SECONDS:-0}"
REQ_SECONDS="${STRATA_FUZZ_REQUEST_SECONDS:-$SECONDS_TO_RUN}"

command -v clang++ >/dev/null || { echo "run-fuzz: clang++ not found (run scripts/setup.sh)" >&2; exit 2; }

echo "== configuring $BUILD"
cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_COMPILER=clang++ -DSTRATA_FUZZ=ON -DSTRATA_TESTS=OFF >/dev/null
echo "== building gguf_fuzz"
ninja -C "$BUILD" -j"$JOBS" gguf_fuzz gguf_seed_gen

FUZZ_BIN="$BUILD/tests/fuzz/gguf_fuzz"
SEEDS="$BUILD/fuzz-seeds/gguf"
CORPUS="$BUILD/fuzz-corpus/gguf"      # grows across runs; seeds are regenerated each run
ARTIFACTS="$BUILD/fuzz-artifacts"
rm -rf "$SEEDS"
mkdir -p "$SEEDS" "$CORPUS" "$ARTIFACTS"

VOCAB="$ROOT/tests/data/vocab/ggml-vocab-llama-spm.gguf"
if [[ -f "$VOCAB" ]]; then
  "$BUILD/tests/fuzz/gguf_seed_gen" "$SEEDS" "$VOCAB"
  cp "$VOCAB" "$SEEDS/"
else
  echo "run-fuzz: note: $VOCAB missing; using generated seeds only" >&2
  "$BUILD/tests/fuzz/gguf_seed_gen" "$SEEDS"
fi

# libFuzzer exits non-zero on any crash/sanitizer report/timeout/OOM.
run_fuzzer() {
  local bin="$1" secs="$2"; shift 2
  echo "== fuzzing $(basename "$bin") for ${secs}s"
  "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=1048576 \
    -print_final_stats=1 -artifact_prefix="$ARTIFACTS/$(basename "$bin")-" "$@"
}

status=0
run_fuzzer "$FUZZ_BIN" "$SECONDS_TO_RUN" "$CORPUS" "$SEEDS" || status=$?

if [[ "$status" -eq 0 && "$TOK_SECONDS" -gt 0 && -f "$ROOT/tests/fuzz/tokenizer_fuzz.cc" ]]; then
  ninja -C "$BUILD" -j"$JOBS" tokenizer_fuzz
  mkdir -p "$BUILD/fuzz-corpus/tokenizer"
  run_fuzzer "$BUILD/tests/fuzz/tokenizer_fuzz" "$TOK_SECONDS" "$BUILD/fuzz-corpus/tokenizer" \
    || status=$?
fi

for target in node_request_fuzz gateway_request_fuzz; do
  [[ "$status" -eq 0 && "$REQ_SECONDS" -gt 0 ]] || break
  ninja -C "$BUILD" -j"$JOBS" "$target"
  mkdir -p "$BUILD/fuzz-corpus/$target"
  run_fuzzer "$BUILD/tests/fuzz/$target" "$REQ_SECONDS" -dict="$ROOT/tests/fuzz/request.dict" \
    "$BUILD/fuzz-corpus/$target" "$ROOT/tests/fuzz/seeds/request" || status=$?
done

if [[ "$status" -ne 0 ]]; then
  echo "run-fuzz: FAILED (exit $status); reproducers:" >&2
  ls -l "$ARTIFACTS" >&2 || true
  exit "$status"
fi
echo "run-fuzz: OK, no crashes in ${SECONDS_TO_RUN}s"
