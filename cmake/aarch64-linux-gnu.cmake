# CMake toolchain file: cross-compile for 64-bit ARM Linux with Debian's GNU cross toolchain
# (apt-get install g++-aarch64-linux-gnu). Binaries run on an ARMv8 machine, or here under
# qemu-user: qemu-aarch64 -L /usr/aarch64-linux-gnu ./binary
# Used by scripts/check-neon.sh. Pass -march=... through CMAKE_CXX_FLAGS (the default target is
# plain ARMv8-A: NEON without the SDOT dot-product extension).
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)

set(STRATA_CROSS_TRIPLE aarch64-linux-gnu)
set(CMAKE_C_COMPILER ${STRATA_CROSS_TRIPLE}-gcc)
set(CMAKE_CXX_COMPILER ${STRATA_CROSS_TRIPLE}-g++)

# Headers and libraries of the target come from the cross sysroot only; programs (cmake
# helpers, code generators) from the build machine.
set(CMAKE_FIND_ROOT_PATH /usr/${STRATA_CROSS_TRIPLE})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

# Lets ctest / add_test run the test binaries through qemu when it is installed.
find_program(STRATA_QEMU_AARCH64 qemu-aarch64)
if(STRATA_QEMU_AARCH64)
  set(CMAKE_CROSSCOMPILING_EMULATOR ${STRATA_QEMU_AARCH64} -L /usr/${STRATA_CROSS_TRIPLE})
endif()
