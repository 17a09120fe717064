#!/usr/bin/env bash
# Builds and runs the whole test suite (ctest). Fixtures are read from ../shared
# (tests that need them skip with a message when it is absent).
#   scripts/test.sh            release build + ctest
#   scripts/test.sh --sanitize ASan+UBSan build + ctest; this build also runs the CUDA backend's
#                              kernels on the CPU (-DMOERUN_CUDA_SIM=ON, tests/cudasim): cudasim's
#                              own test, test_cuda_ops and the GPU golden suite on them
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
jobs=$(nproc 2>/dev/null || echo 2)
if [ "${1:-}" = "--sanitize" ]; then
  dir=build-asan
  cmake -B $dir -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMOERUN_SANITIZE=ON -DMOERUN_CUDA=OFF -DMOERUN_CUDA_SIM=ON \
    -DMOERUN_WERROR=ON >/dev/null
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  export MOERUN_TEST_QUICK=1
else
  dir=build
  cmake -B $dir -G Ninja -DCMAKE_BUILD_TYPE=Release -DMOERUN_WERROR=ON >/dev/null
fi
ninja -C $dir -j"$jobs"
cd $dir && ctest --output-on-failure -j"$jobs"
