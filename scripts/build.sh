#!/usr/bin/env bash
# Configures and builds Strata. Usage: scripts/build.sh [BUILD_DIR] [extra cmake args...]
# Defaults (later arguments override them): RelWithDebInfo, tests on, a unity build (sources
# compiled in batches: a much faster cold build; STRATA_UNITY=OFF in the environment compiles
# one file at a time, the faster edit-compile loop).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${1:-$ROOT/build}"
shift || true
cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSTRATA_TESTS=ON \
  -DSTRATA_UNITY="${STRATA_UNITY:-ON}" "$@" >/dev/null
ninja -C "$BUILD" -j"${STRATA_JOBS:-$(nproc)}"
