#!/usr/bin/env bash
# Installs Strata's build and test dependencies on Debian 12 (run as root), and the llama.cpp
# oracle (node-llama-cpp + its prebuilt linux-x64 binaries) into tests/conformance/node_modules.
# Idempotent: apt is skipped when every package is already installed, npm when the pinned
# versions are already in place.
#
#   sudo scripts/setup.sh              # everything (build + test dependencies, npm oracle)
#   sudo scripts/setup.sh --build-only # only what building the `strata` binary needs (no test
#                                      # packages, no npm): the first-run path and the image
#   scripts/setup.sh --no-apt          # only the npm part (no root needed)
#   scripts/setup.sh --no-npm          # only the apt part
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DO_APT=1
DO_NPM=1
BUILD_ONLY=0
for arg in "$@"; do
  case "$arg" in
    --no-apt) DO_APT=0 ;;
    --no-npm) DO_NPM=0 ;;
    --build-only) BUILD_ONLY=1; DO_NPM=0 ;;
    -h|--help) sed -n '2,12p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "setup.sh: unknown argument '$arg'" >&2; exit 2 ;;
  esac
done

# What building the `strata` binary needs (scripts/build.sh with -DSTRATA_TESTS=OFF).
BUILD_PACKAGES=(
  build-essential cmake ninja-build pkg-config python3 ca-certificates curl openssl
  nlohmann-json3-dev libcli11-dev libpcre2-dev libyaml-cpp-dev libssl-dev libboost-dev
  libhiredis-dev
)
# What the tests, sanitizer and fuzz builds and scripts/lint.sh need on top.
TEST_PACKAGES=(
  clang libclang-rt-dev libgtest-dev libbenchmark-dev redis-server iproute2
  clang-format clang-tidy shellcheck
  chromium prometheus python3-jsonschema
)
APT_PACKAGES=("${BUILD_PACKAGES[@]}")
if [[ "$BUILD_ONLY" -eq 0 ]]; then
  APT_PACKAGES+=("${TEST_PACKAGES[@]}")
fi
# node and npm may come from elsewhere (e.g. NodeSource's nodejs bundles npm and conflicts with
# Debian's npm package): only install Debian's when the commands are missing.
if [[ "$DO_NPM" -eq 1 ]]; then
  command -v node >/dev/null || APT_PACKAGES+=(nodejs)
  command -v npm >/dev/null || APT_PACKAGES+=(npm)
fi

if [[ "$DO_APT" -eq 1 ]]; then
  missing=()
  for p in "${APT_PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
      missing+=("$p")
    fi
  done
  if [[ ${#missing[@]} -eq 0 ]]; then
    echo "setup: apt packages already installed"
  else
    if [[ "$(id -u)" -ne 0 ]]; then
      echo "setup: must run as root to install: ${missing[*]}" >&2
      exit 1
    fi
    echo "setup: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
fi

if [[ "$DO_NPM" -eq 1 ]]; then
  CONF="$ROOT/tests/conformance"
  want="3.22.1"
  have_version() {  # prints the installed version of package $1, or nothing
    local pj="$CONF/node_modules/$1/package.json"
    if [[ -f "$pj" ]]; then
      node -e 'process.stdout.write(require(process.argv[1]).version)' "$pj" 2>/dev/null || true
    fi
  }
  if [[ "$(have_version node-llama-cpp)" == "$want" &&
        "$(have_version @node-llama-cpp/linux-x64)" == "$want" ]]; then
    echo "setup: node-llama-cpp $want already installed in $CONF/node_modules"
  else
    command -v npm >/dev/null || { echo "setup: npm not found" >&2; exit 1; }
    echo "setup: installing node-llama-cpp $want into $CONF/node_modules"
    # Prebuilt CPU binaries come from @node-llama-cpp/linux-x64 (a direct dependency); skip the
    # postinstall download/build and the optional GPU/other-platform binary packages.
    (cd "$CONF" && NODE_LLAMA_CPP_SKIP_DOWNLOAD=true npm install --omit=optional \
       --no-audit --no-fund --loglevel=error)
    [[ "$(have_version node-llama-cpp)" == "$want" ]] ||
      { echo "setup: node-llama-cpp install failed" >&2; exit 1; }
  fi
fi
if [[ "$DO_NPM" -eq 1 && ! -d "$ROOT/tests/dashboard/node_modules/playwright-core" ]]; then
  echo "setup: installing playwright-core for the dashboard browser test"
  (cd "$ROOT/tests/dashboard" && npm ci --no-audit --no-fund --loglevel=error)
fi
echo "setup: done"
