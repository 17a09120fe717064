#!/usr/bin/env bash
# Prepare, on this machine (no GPU needed), everything a device call of issue #8 needs, so the
# lent minutes go to tests and benchmarks instead of a build that may not even work there:
#   - the device machine starts bare and reaches no package registry: our build needs
#     libpcre2, jansson and libunistring, which its image may lack. So the binaries are built
#     here (CUDA for sm_90: H100 and H200; no server, no libcurl: neither is used there) and
#     travel with their non-system shared libraries;
#   - ../shared does not travel, and its models (150 MB) are more than one call may carry
#     (64 MiB with the working tree), so the golden fixtures go in sets of at most ~48 MB.
# Output (all ignored by git, under .gpu*):
#   .gpu/payload.tar.gz  bin/: moerun test_cuda_ops test_cuda_emul test_gpu_golden test_gpu_types
#                  (stripped), lib/ (below); gpu_check.sh unpacks it
#                  lib/: their shared libraries other than glibc, libstdc++/libgcc and cuBLAS
#                  (cuBLAS is too large to carry; gpu_check.sh finds the device's)
#   .gpu-fxN/shared/fixtures/{models,golden,golden-qwen3next}   fixture set N (1-4)
# Then, on the device (scripts/gpu_check.sh tells which call carries what):
#   carry [".gpu", ".gpu-fx1"]  GPU_BUNDLE=.gpu FX=.gpu-fx1 scripts/gpu_check.sh test
# Usage: scripts/gpu_bundle.sh [--shared DIR] [--arch 90]
set -euo pipefail
cd "$(dirname "$0")/.."
shared=${MOERUN_SHARED:-../shared}
arch=90
while [ $# -gt 0 ]; do
  case $1 in
    --shared) shared=$2; shift 2 ;;
    --arch) arch=$2; shift 2 ;;
    *) echo "usage: $0 [--shared DIR] [--arch SM]" >&2; exit 2 ;;
  esac
done
[ -d "$shared/fixtures/models" ] || { echo "gpu_bundle: no fixtures under $shared (use --shared)" >&2; exit 1; }
command -v nvcc > /dev/null || export PATH=/usr/local/cuda/bin:$PATH

bins="moerun test_cuda_ops test_cuda_emul test_gpu_golden test_gpu_types"
cmake -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DMOERUN_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="$arch" \
  -DMOERUN_SERVER=OFF -DMOERUN_CURL=OFF > /dev/null
ninja -C build-gpu $bins

rm -rf .gpu .gpu-fx[0-9]
mkdir -p .gpu/bin .gpu/lib
for b in $bins; do strip -o ".gpu/bin/$b" "build-gpu/$b"; done
git describe --always --dirty --abbrev=12 > .gpu/commit
# shared libraries: all but the C library family, the C++/gcc runtime (the device's are as new
# or newer) and cuBLAS (hundreds of MB; the device has its own, found at run time)
skip='^(linux-vdso|ld-linux|libc|libm|libdl|libpthread|librt|libresolv|libstdc\+\+|libgcc_s|libcublas|libcublasLt|libcuda)\.'
for b in $bins; do ldd "build-gpu/$b"; done | awk '/=>/ && $3 ~ /^\// {print $3}' | sort -u | while read -r lib; do
  base=$(basename "$lib")
  [[ "$base" =~ $skip ]] && continue
  cp -L "$lib" ".gpu/lib/$base"
done

# fixture sets: each set's models + their golden files, ~48 MB at most (with .gpu: < 64 MiB)
sets=("tiny-qwen3moe tiny-llama" "tiny-deepseek2-lite tiny-qwen3" "tiny-deepseek3 tiny-gemma3" "tiny-qwen3next")
# every fixture model must be in a set: one left out would only be skipped on the device
for f in "$shared"/fixtures/models/*.gguf; do
  m=$(basename "$f" .gguf)
  [[ " ${sets[*]} " == *" $m "* ]] || { echo "gpu_bundle: $m is in no fixture set (edit sets=)" >&2; exit 1; }
done
n=0
for set in "${sets[@]}"; do
  n=$((n + 1))
  d=.gpu-fx$n/shared/fixtures
  mkdir -p "$d/models" "$d/golden" "$d/golden-qwen3next"
  for m in $set; do
    cp "$shared/fixtures/models/$m.gguf" "$d/models/"
    for g in golden golden-qwen3next; do
      compgen -G "$shared/fixtures/$g/$m.*" > /dev/null && cp "$shared/fixtures/$g/$m".* "$d/$g/"
    done
  done
done
# the binaries share most of their bytes (each links the whole engine and its kernels): carried
# as one gzip'd tar (about 7 of 20 MB), which gpu_check.sh unpacks on the device
tar -C .gpu -czf .gpu/payload.tar.gz bin lib && rm -rf .gpu/bin .gpu/lib
du -sh .gpu .gpu-fx*
# a call carries .gpu, one set and the working tree (~3 MB): 64 MiB in all
gkb=$(du -sk .gpu | cut -f1)
for d in .gpu-fx*; do
  kb=$(du -sk "$d" | cut -f1)
  [ $((kb + gkb)) -le 60000 ] || { echo "gpu_bundle: .gpu + $d is $((kb + gkb)) KiB: too large for one call" >&2; exit 1; }
done
echo "gpu_bundle: ready for commit $(cat .gpu/commit); see scripts/gpu_check.sh for the calls"
