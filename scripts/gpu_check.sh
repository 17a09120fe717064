#!/usr/bin/env bash
# The device checks of issue #8 in one run, on a machine with an NVIDIA GPU:
#   1. build with CUDA for the local GPU's architecture (sm_90 on H100/H200)
#   2. cuda_ops: every kernel against the CPU reference (normalised error), then --bench
#   3. test_gpu_golden: the golden suite on the GPU (-ngl 99, -ngl 2, -cmoe, a two-device
#      split with the GPU listed twice)
#   4. moerun bench on the synthetic qwen3moe-30b-a3b: full offload, and -cmoe; then the same
#      under MOERUN_CUDA_PROFILE=1 (kernels vs idle gaps per op, with and without graphs)
# Every step logs to $OUT (default /tmp/gpu_check) and the script goes on after a failure;
# the summary at the end lists each step's exit status and time. Fixtures: $MOERUN_SHARED,
# else ../shared or ./shared. Budget: about 3 min build, 1 min tests, 2 min synth, 3 min bench,
# 2 min profiled benches: more than one 10-minute device call, so run it as two calls in a row
# while the machine is warm (the build stays in build-cuda):
#   scripts/gpu_check.sh build test      then      scripts/gpu_check.sh bench
#   scripts/gpu_check.sh [build] [test] [bench] [all]   (default all)
#   scripts/gpu_check.sh next    (Qwen3-Next on 8 layers of its 80B shape; not part of all)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
export PATH=/usr/local/cuda/bin:$PATH
what=" ${*:-all} "
want() { [[ "$what" == *" all "* || "$what" == *" $1 "* ]]; }
summary=()
step() { # name command...
  local name=$1; shift
  local t0=$(date +%s.%N)
  echo "== $name: $*"
  "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  local dt=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{print b-a}')
  tail -n 25 "$OUT/$name.log"
  summary+=("$(printf '%-14s rc=%-3s %7.1f s' "$name" "$rc" "$dt")")
}
if [ -z "${MOERUN_SHARED:-}" ]; then
  for d in ../shared ./shared; do [ -d "$d/fixtures" ] && export MOERUN_SHARED=$(cd "$d" && pwd) && break; done
fi
nvidia-smi --query-gpu=name,memory.total,memory.used,clocks.max.memory --format=csv > "$OUT/gpu.txt" 2>&1
cat "$OUT/gpu.txt"
arch=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d '.')
arch=${arch:-90}
if want build; then
  step cmake cmake -B build-cuda -G Ninja -DCMAKE_BUILD_TYPE=Release -DMOERUN_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="$arch"
  step build ninja -C build-cuda -j"$(nproc)" moerun test_cuda_ops test_cuda_emul test_gpu_golden test_golden
fi
if want test; then
  step cuda_emul build-cuda/test_cuda_emul
  step cuda_ops build-cuda/test_cuda_ops
  step cuda_bench build-cuda/test_cuda_ops --bench
  step gpu_golden env MOERUN_CUDA_SYNC=${MOERUN_CUDA_SYNC:-0} build-cuda/test_gpu_golden
  # a failure: the same without the fused decode ops and without graphs, to tell which is at fault
  if ! tail -n 3 "$OUT/gpu_golden.log" | grep -q " 0 failed"; then
    step gpu_golden_nofuse env MOERUN_CUDA_FUSE=0 build-cuda/test_gpu_golden
    step gpu_golden_nograph env MOERUN_CUDA_GRAPH=0 build-cuda/test_gpu_golden
  fi
fi
if want bench; then
  model=${SYNTH_MODEL:-/tmp/q3.gguf}
  [ -f "$model" ] || step synth build-cuda/moerun synth --preset qwen3moe-30b-a3b --out "$model" -q
  step bench_full build-cuda/moerun bench -m "$model" -ngl 99 -p 512 -n 128 -r 3 -o md
  # the fused decode ops against their parts (same results; the launches saved)
  step bench_nofuse env MOERUN_CUDA_FUSE=0 build-cuda/moerun bench -m "$model" -ngl 99 -p 0 -n 128 -r 3 -o md
  step bench_cmoe build-cuda/moerun bench -m "$model" -ngl 99 -cmoe 1 -t "$(nproc)" -p 512 -n 128 -r 2 -o md
  # where the device time goes: kernels vs idle gaps, per op (graphs on: a decode step is one op)
  step prof_graph env MOERUN_CUDA_PROFILE=1 build-cuda/moerun bench -m "$model" -ngl 99 -p 0 -n 64 -r 1 -o md
  step prof_eager env MOERUN_CUDA_PROFILE=1 MOERUN_CUDA_GRAPH=0 build-cuda/moerun bench -m "$model" -ngl 99 -p 512 -n 64 -r 1 -o md
  step prof_cmoe env MOERUN_CUDA_PROFILE=1 build-cuda/moerun bench -m "$model" -ngl 99 -cmoe 1 -t "$(nproc)" -p 0 -n 32 -r 1 -o md
fi
# not in "all" (a third call): Qwen3-Next's device path on 8 layers of the 80B-A3B shape (2 attention,
# 6 delta-net layers; experts Q4_K, 7.7 GiB): speed with and without the fused ops, and per op
if [[ "$what" == *" next "* ]]; then
  nmodel=${NEXT_MODEL:-/tmp/qwen3next-80b-8l.gguf}
  [ -f "$nmodel" ] || step synth_next build-cuda/moerun synth --preset qwen3-next-80b-a3b --layers 8 --exps-type q4_k --out "$nmodel" -q
  step next_bench build-cuda/moerun bench -m "$nmodel" -ngl 99 -p 512 -n 128 -r 3 -o md
  step next_nofuse env MOERUN_CUDA_FUSE=0 build-cuda/moerun bench -m "$nmodel" -ngl 99 -p 0 -n 128 -r 3 -o md
  step next_prof env MOERUN_CUDA_PROFILE=1 MOERUN_CUDA_GRAPH=0 build-cuda/moerun bench -m "$nmodel" -ngl 99 -p 512 -n 64 -r 1 -o md
fi
echo "== summary ($OUT)"
printf '%s\n' "${summary[@]}"
