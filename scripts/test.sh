#!/usr/bin/env bash
# Sets everything up and runs every ctest test on an optimized build (labels: unit = the C++
# GoogleTest binaries; integration = the strata binary as real processes on loopback: cli,
# node, pipeline, gateway, failover, hostile, chaos; conformance = against llama.cpp, forced on
# so a missing oracle fails); every test but conformance again under AddressSanitizer +
# UndefinedBehaviorSanitizer; then libFuzzer on the GGUF reader, the tokenizers and the
# request bodies for a bounded time (scripts/run-fuzz.sh); then the deployment tests
# (scripts/test-deploy.sh: real nginx, Redis Cluster, Kubernetes manifests, ssh deploy).
#
#   scripts/test.sh            (STRATA_FUZZ_SECONDS=60 by default; 0 skips fuzzing,
#                               STRATA_SKIP_ASAN=1 skips the sanitizer pass,
#                               STRATA_DEPLOY_SECTIONS="k8s nginx redis_cluster ssh" by default;
#                               "docker" adds the image build + compose test (long: it compiles
#                               the binary again inside the image), "none" skips them)
#   scripts/test.sh --quick    the edit-compile-test loop: build (build/) and the unit tests
#                              only (`ctest -L unit`); no setup, sanitizers or fuzzing
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

if [ "${1:-}" = "--quick" ]; then
  echo "== build (RelWithDebInfo)"
  bash scripts/build.sh build
  echo "== unit tests"
  (cd build && ctest --output-on-failure --timeout 300 -L unit -j"${STRATA_JOBS:-$(nproc)}")
  echo "== unit tests passed"
  exit 0
fi

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
     ctest --output-on-failure --timeout 1500 -E '^(conformance|chaos)')
fi

FUZZ_SECONDS="${STRATA_FUZZ_SECONDS:-60}"
if [ "$FUZZ_SECONDS" -gt 0 ]; then
  echo "== fuzzing the GGUF reader (${FUZZ_SECONDS}s), the tokenizers and the request bodies"
  STRATA_FUZZ_TOKENIZER_SECONDS="${STRATA_FUZZ_TOKENIZER_SECONDS:-30}" \
  STRATA_FUZZ_REQUEST_SECONDS="${STRATA_FUZZ_REQUEST_SECONDS:-20}" \
    bash scripts/run-fuzz.sh "$FUZZ_SECONDS"
fi
DEPLOY_SECTIONS="${STRATA_DEPLOY_SECTIONS:-k8s nginx redis_cluster ssh}"
if [ "$DEPLOY_SECTIONS" != none ]; then
  echo "== deployment tests: $DEPLOY_SECTIONS"
  # shellcheck disable=SC2086  # the sections are words
  STRATA_BIN="$ROOT/build/strata" bash scripts/test-deploy.sh $DEPLOY_SECTIONS
fi
echo "== all tests passed"
