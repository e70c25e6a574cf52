#!/usr/bin/env bash
# Sets everything up, runs the lint checks (scripts/lint.sh --ci: clang-format, shellcheck)
# and every ctest test on an optimized build (labels: unit = the C++
# GoogleTest binaries; integration = the strata binary as real processes on loopback: cli,
# node, pipeline, gateway, failover, hostile, chaos; conformance = against llama.cpp, forced on
# so a missing oracle fails); every test but conformance again under AddressSanitizer +
# UndefinedBehaviorSanitizer; then libFuzzer on the GGUF reader, the tokenizers and the
# request bodies for a bounded time (scripts/run-fuzz.sh); then the deployment tests
# (scripts/test-deploy.sh: real nginx, Redis Cluster, Kubernetes manifests, ssh deploy,
# the Docker image + compose).
#
#   scripts/test.sh            (STRATA_FUZZ_SECONDS=60 by default; 0 skips fuzzing,
#                               STRATA_SKIP_ASAN=1 skips the sanitizer pass,
#                               STRATA_DEPLOY_SECTIONS="k8s nginx redis_cluster ssh docker" by
#                               default ("docker" builds the image: a unity Release build of
#                               `strata` inside it), "none" skips them)
#   scripts/test.sh --quick    the edit-compile-test loop: build (build/) and the unit tests
#                              only (`ctest -L unit`); no setup, sanitizers or fuzzing
# At the end it prints the wall time of each section (setup, build, tests, asan build, ...).
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

# Wall seconds per section, printed at the end (also when a section fails).
TIMES=()
timed() {  # NAME CMD...
  local t0=$SECONDS rc=0 name=$1 note=""
  shift
  "$@" || rc=$?
  ((rc == 0)) || note="  FAILED (exit $rc)"
  TIMES+=("$(printf '%-12s %5d s%s' "$name" $((SECONDS - t0)) "$note")")
  return "$rc"
}
trap 'echo "== timing (total $SECONDS s)"; printf "  %s\n" "${TIMES[@]}"' EXIT

timed setup bash scripts/setup.sh
# clang-format --dry-run on every C++ file and shellcheck on every script (STRATA_LINT_FORMAT=0
# leaves out the format part, e.g. for a quick local run on a tree mid-edit).
echo "== lint: clang-format and shellcheck (scripts/lint.sh --ci)"
timed lint env STRATA_LINT_FORMAT="${STRATA_LINT_FORMAT:-1}" bash scripts/lint.sh --ci

# The optimized build: Release (the -O2 code of RelWithDebInfo, no -g: faster), unity like the
# ASan build (-g1 for its reports): CI's time goes to tests, not to parsing Boost 200 times.
# The one-file-at-a-time build (STRATA_UNITY=OFF) is the developers' edit-compile loop.
echo "== build (Release)"
timed build bash scripts/build.sh build -DCMAKE_BUILD_TYPE=Release -DSTRATA_FORCE_CONFORMANCE=ON
echo "== tests"
timed tests ctest --test-dir build --no-tests=error --output-on-failure --timeout 1500

if [ "${STRATA_SKIP_ASAN:-0}" != 1 ]; then
  echo "== build (ASan + UBSan)"
  timed "asan build" bash scripts/build.sh build-asan -DSTRATA_SANITIZE=ON
  echo "== tests under ASan + UBSan"
  timed "asan tests" env ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
     ctest --test-dir build-asan --no-tests=error --output-on-failure --timeout 1500 -E '^(conformance|chaos)'
fi

FUZZ_SECONDS="${STRATA_FUZZ_SECONDS:-60}"
if [ "$FUZZ_SECONDS" -gt 0 ]; then
  echo "== fuzzing the GGUF reader (${FUZZ_SECONDS}s), the tokenizers and the request bodies"
  timed fuzz env STRATA_FUZZ_TOKENIZER_SECONDS="${STRATA_FUZZ_TOKENIZER_SECONDS:-30}" \
    STRATA_FUZZ_REQUEST_SECONDS="${STRATA_FUZZ_REQUEST_SECONDS:-20}" \
    bash scripts/run-fuzz.sh "$FUZZ_SECONDS"
fi
DEPLOY_SECTIONS="${STRATA_DEPLOY_SECTIONS:-k8s nginx redis_cluster ssh docker}"
if [ "$DEPLOY_SECTIONS" != none ]; then
  echo "== deployment tests: $DEPLOY_SECTIONS"
  # shellcheck disable=SC2086  # the sections are words
  timed deploy env STRATA_BIN="$ROOT/build/strata" bash scripts/test-deploy.sh $DEPLOY_SECTIONS
fi
echo "== all tests passed"
