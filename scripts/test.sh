#!/usr/bin/env bash
# Sets everything up and runs every test: unit tests, CLI integration tests and the llama.cpp
# conformance test on an optimized build; the unit and CLI tests again under
# AddressSanitizer + UndefinedBehaviorSanitizer; then the GGUF parser fuzzer for a bounded time.
#
#   scripts/test.sh            (STRATA_FUZZ_SECONDS=60 by default; 0 skips fuzzing,
#                               STRATA_SKIP_ASAN=1 skips the sanitizer pass)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

bash scripts/setup.sh

echo "== build (RelWithDebInfo)"
bash scripts/build.sh build -DSTRATA_FORCE_CONFORMANCE=ON
echo "== tests"
(cd build && ctest --output-on-failure --timeout 1500)

if [ "${STRATA_SKIP_ASAN:-0}" != 1 ]; then
  echo "== build (ASan + UBSan)"
  bash scripts/build.sh build-asan -DSTRATA_SANITIZE=ON
  echo "== tests under ASan + UBSan"
  (cd build-asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
     ctest --output-on-failure --timeout 1500 -E '^conformance')
fi

FUZZ_SECONDS="${STRATA_FUZZ_SECONDS:-60}"
if [ "$FUZZ_SECONDS" -gt 0 ]; then
  echo "== fuzzing the GGUF reader (${FUZZ_SECONDS}s), the tokenizers and the request bodies"
  STRATA_FUZZ_TOKENIZER_SECONDS="${STRATA_FUZZ_TOKENIZER_SECONDS:-30}" \
  STRATA_FUZZ_REQUEST_SECONDS="${STRATA_FUZZ_REQUEST_SECONDS:-20}" \
    bash scripts/run-fuzz.sh "$FUZZ_SECONDS"
fi
echo "== all tests passed"
