#!/usr/bin/env bash
# Cross-compiles the kernel library and its unit tests for aarch64 and runs them under
# qemu-user: proves the NEON path (src/kernels/kernels_neon.cc) builds and matches the scalar
# twins. Builds only base + tensor + kernels (+ GoogleTest from Debian's source package), as a
# small CMake project generated in the build directory that reuses the modules' own
# CMakeLists.txt files with cmake/aarch64-linux-gnu.cmake.
#
#   scripts/check-neon.sh [BUILD_DIR]     (default: build-arm)
#
# Two variants are built and tested, each in its own subdirectory:
#   dotprod: -march=armv8.2-a+dotprod   (Q8_0 dot products with SDOT / vdotq_s32)
#   base:    -march=armv8-a             (Q8_0 dot products with vmull_s8 / vpadalq)
# STRATA_NEON_VARIANTS="dotprod" limits the run to one of them. Installs the cross compiler,
# qemu-user and googletest's sources with apt when they are missing.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${1:-$ROOT/build-arm}"
VARIANTS="${STRATA_NEON_VARIANTS:-dotprod base}"
GTEST_SRC=/usr/src/googletest
SYSROOT=/usr/aarch64-linux-gnu
start=$SECONDS

need=()
command -v aarch64-linux-gnu-g++ >/dev/null || need+=(g++-aarch64-linux-gnu)
command -v qemu-aarch64 >/dev/null || need+=(qemu-user)
[ -f "$GTEST_SRC/CMakeLists.txt" ] || need+=(googletest)
command -v ninja >/dev/null || need+=(ninja-build)
if [ ${#need[@]} -gt 0 ]; then
  echo "== installing ${need[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi

# The generated project: the same strata_test() contract as the top-level CMakeLists.txt, but
# with GoogleTest built from source for the target and no other third-party dependency.
mkdir -p "$BUILD/project"
cat > "$BUILD/project/CMakeLists.txt" <<CMAKE
cmake_minimum_required(VERSION 3.25)
project(strata_neon_check C CXX)
set(CMAKE_CXX_STANDARD 20)
set(CMAKE_CXX_STANDARD_REQUIRED ON)
add_compile_options(-Wall -Wextra -Wno-unused-parameter -O2)
find_package(Threads REQUIRED)
set(STRATA_TESTS ON)
enable_testing()
set(BUILD_GMOCK OFF CACHE BOOL "" FORCE)
set(INSTALL_GTEST OFF CACHE BOOL "" FORCE)
add_subdirectory($GTEST_SRC googletest EXCLUDE_FROM_ALL)
if(NOT TARGET GTest::gtest_main)
  add_library(GTest::gtest_main ALIAS gtest_main)
endif()
function(strata_test name)
  cmake_parse_arguments(T "" "" "SOURCES;LIBS" \${ARGN})
  add_executable(\${name} EXCLUDE_FROM_ALL \${T_SOURCES})
  target_link_libraries(\${name} PRIVATE \${T_LIBS} GTest::gtest_main)
  target_compile_definitions(\${name} PRIVATE STRATA_TEST_DATA="$ROOT/tests/data")
  add_test(NAME \${name} COMMAND \${name})
endfunction()
include_directories($ROOT/src)
add_subdirectory($ROOT/src/base base)
add_subdirectory($ROOT/src/tensor tensor)
add_subdirectory($ROOT/src/kernels kernels)
CMAKE

declare -A MARCH=([dotprod]="armv8.2-a+dotprod" [base]="armv8-a")
status=0
for v in $VARIANTS; do
  march="${MARCH[$v]:?unknown variant $v (use dotprod or base)}"
  dir="$BUILD/$v"
  t0=$SECONDS
  echo "== $v: configure + build (-march=$march)"
  cmake -S "$BUILD/project" -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_TOOLCHAIN_FILE="$ROOT/cmake/aarch64-linux-gnu.cmake" \
    -DCMAKE_CXX_FLAGS="-march=$march" -DCMAKE_C_FLAGS="-march=$march" >/dev/null
  ninja -C "$dir" -j"${STRATA_JOBS:-2}" kernels_test
  echo "== $v: kernels_test under qemu-aarch64"
  if ! (cd "$dir/kernels" && qemu-aarch64 -L "$SYSROOT" ./kernels_test --gtest_brief=1); then
    echo "!! $v: kernels_test FAILED"
    status=1
  fi
  echo "== $v: $((SECONDS - t0)) s"
done
echo "== check-neon: $([ $status = 0 ] && echo PASS || echo FAIL) in $((SECONDS - start)) s"
exit $status
