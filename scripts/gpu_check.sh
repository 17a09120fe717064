#!/usr/bin/env bash
# The device checks of issue #8, on a machine with an NVIDIA GPU:
#   1. build with CUDA for the local GPU's architecture (sm_90 on H100/H200), or take the
#      binaries prepared here by scripts/gpu_bundle.sh (GPU_BUNDLE=.gpu: no build on the device)
#   2. cuda_ops: every kernel against the CPU reference (normalised error), then --bench
#   3. test_gpu_types: synthetic Q3_K_M / Q2_K / IQ4_XS / IQ4_NL / BF16 models on the GPU
#      against the CPU and the emulation; test_gpu_golden: the golden suite on the GPU (-ngl 99,
#      -ngl 2, -cmoe, a two-device split with the GPU listed twice)
#   4. moerun bench on the synthetic qwen3moe-30b-a3b: full offload (also pp512 at depth 8192, tiled
#      and split prompt attention), and -cmoe (pp512 with the experts streamed, and on the CPU); then the same under MOERUN_CUDA_PROFILE=1 (kernels vs
#      idle gaps per op, with and without graphs)
# Every step logs to $OUT (default /tmp/gpu_check) and the script goes on after a failure;
# the summary at the end lists each step's exit status and time.
#
# The device machine starts bare, reaches no package registry (its image may lack libpcre2,
# jansson, libunistring) and does not get ../shared. So, prepared here first:
#   scripts/gpu_bundle.sh --shared ../shared    (.gpu: binaries + libraries; .gpu-fx1..4: fixtures)
# then, on a lent device, one call after another while the machine is warm (30 s):
#   1. carry [".gpu", ".gpu-fx1"]   GPU_BUNDLE=.gpu FX=.gpu-fx1 scripts/gpu_check.sh test
#      (tiny-qwen3moe: full offload, -ngl 2, -cmoe, -ts 1,1, graphs; tiny-llama)
#   2. carry [".gpu"]               GPU_BUNDLE=.gpu scripts/gpu_check.sh bench     (~6 min)
#   3. carry [".gpu-fx2"]           GPU_BUNDLE=.gpu FX=.gpu-fx2 scripts/gpu_check.sh golden
#   4. carry [".gpu-fx3"], 5. carry [".gpu-fx4"]: the same (MLA V3 + gemma3; qwen3next)
#   (a call that finds the machine cold must carry .gpu again). Fixtures otherwise:
#   $MOERUN_SHARED, else ../shared or ./shared. Without a bundle: "build" first (~3 min).
#   scripts/gpu_check.sh [build] [test] [golden] [bench] [all]   (default all)
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
if [ -n "${FX:-}" ]; then # a fixture set of gpu_bundle.sh: models of other sets are skipped
  export MOERUN_SHARED=$(cd "$FX/shared" && pwd) MOERUN_GOLDEN_SUBSET=1
fi
if [ -z "${MOERUN_SHARED:-}" ]; then
  for d in ../shared ./shared; do [ -d "$d/fixtures" ] && export MOERUN_SHARED=$(cd "$d" && pwd) && break; done
fi
echo "fixtures: ${MOERUN_SHARED:-none (the golden suite will skip)}"
nvidia-smi --query-gpu=name,memory.total,memory.used,clocks.max.memory --format=csv > "$OUT/gpu.txt" 2>&1
cat "$OUT/gpu.txt"
arch=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d '.')
arch=${arch:-90}
B=build-cuda
if [ -n "${GPU_BUNDLE:-}" ]; then
  # binaries and libraries travel as one archive (gpu_bundle.sh); unpacked once per carried copy
  if [ -f "$GPU_BUNDLE/payload.tar.gz" ] && [ ! -x "$GPU_BUNDLE/bin/moerun" ]; then
    tar -C "$GPU_BUNDLE" -xzf "$GPU_BUNDLE/payload.tar.gz" || echo "!! could not unpack $GPU_BUNDLE/payload.tar.gz"
  fi
  B=$GPU_BUNDLE/bin
  # our libraries first, then wherever this machine keeps cuBLAS 13 (toolkit or pip wheels)
  ld=$(cd "$GPU_BUNDLE/lib" && pwd)
  for f in $(find /usr/local /usr/lib /opt -name 'libcublas.so.13*' 2>/dev/null | head -4); do
    ld=$ld:$(dirname "$f")
  done
  export LD_LIBRARY_PATH=$ld${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  echo "bundle of commit $(cat "$GPU_BUNDLE/commit" 2>/dev/null), LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
  ldd "$B/moerun" | tee "$OUT/ldd.txt" | grep "not found" && echo "!! libraries missing: see ldd.txt"
  [ "$arch" = 90 ] || echo "!! the bundle is built for sm_90, this GPU is sm_$arch: rebuild it (--arch $arch)"
elif want build; then
  step cmake cmake -B build-cuda -G Ninja -DCMAKE_BUILD_TYPE=Release -DMOERUN_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="$arch"
  step build ninja -C build-cuda -j"$(nproc)" moerun test_cuda_ops test_cuda_emul test_gpu_golden test_gpu_types
fi
golden() {
  step "gpu_golden$1" env MOERUN_CUDA_SYNC=${MOERUN_CUDA_SYNC:-0} $B/test_gpu_golden
  # a failure: the same without the fused decode ops and without graphs, to tell which is at fault
  if ! tail -n 3 "$OUT/gpu_golden$1.log" | grep -q " 0 failed"; then
    step "gpu_golden${1}_nofuse" env MOERUN_CUDA_FUSE=0 $B/test_gpu_golden
    step "gpu_golden${1}_nograph" env MOERUN_CUDA_GRAPH=0 $B/test_gpu_golden
  fi
}
if want test; then
  step cuda_emul $B/test_cuda_emul
  step cuda_ops $B/test_cuda_ops
  step cuda_bench $B/test_cuda_ops --bench
  step gpu_types $B/test_gpu_types
  golden ""
elif [[ "$what" == *" golden "* ]]; then
  set_name=$(basename "${FX:-all}")
  golden "_${set_name#.}"
fi
if want bench; then
  model=${SYNTH_MODEL:-/tmp/q3.gguf}
  [ -f "$model" ] || step synth $B/moerun synth --preset qwen3moe-30b-a3b --out "$model" -q
  step bench_full $B/moerun bench -m "$model" -ngl 99 -p 512 -n 128 -r 3 -o md
  # prompts at depth: the tiled prompt attention against the split kernel (MOERUN_CUDA_FA_TILE=0)
  step bench_depth $B/moerun bench -m "$model" -ngl 99 -fa 1 -p 512 -n 32 -d 8192 -r 2 -o md
  step bench_depth_split env MOERUN_CUDA_FA_TILE=0 $B/moerun bench -m "$model" -ngl 99 -fa 1 -p 512 -n 0 -d 8192 -r 2 -o md
  # the fused decode ops against their parts (same results; the launches saved)
  step bench_nofuse env MOERUN_CUDA_FUSE=0 $B/moerun bench -m "$model" -ngl 99 -p 0 -n 128 -r 3 -o md
  step bench_cmoe $B/moerun bench -m "$model" -ngl 99 -cmoe 1 -t "$(nproc)" -p 512 -n 128 -r 2 -o md
  # the same prompt with the RAM experts computed by the CPU instead of streamed to the GPU
  step bench_cmoe_cpu env MOERUN_OFFLOAD_MIN_BATCH=0 $B/moerun bench -m "$model" -ngl 99 -cmoe 1 -t "$(nproc)" -p 512 -n 0 -r 1 -o md
  # streamed from page-locked file pages (GGUF layout, so not repacked for the CPU), -ub 512 and 2048
  step bench_cmoe_pin env MOERUN_PIN_EXPERTS=1 MOERUN_LOG=info $B/moerun bench -m "$model" -ngl 99 -cmoe 1 -nr 1 -t "$(nproc)" -p 2048 -ub 512,2048 -n 0 -r 1 -o md
  # where the device time goes: kernels vs idle gaps, per op (graphs on: a decode step is one op)
  step prof_graph env MOERUN_CUDA_PROFILE=1 $B/moerun bench -m "$model" -ngl 99 -p 0 -n 64 -r 1 -o md
  step prof_eager env MOERUN_CUDA_PROFILE=1 MOERUN_CUDA_GRAPH=0 $B/moerun bench -m "$model" -ngl 99 -p 512 -n 64 -r 1 -o md
  step prof_cmoe env MOERUN_CUDA_PROFILE=1 $B/moerun bench -m "$model" -ngl 99 -cmoe 1 -t "$(nproc)" -p 0 -n 32 -r 1 -o md
fi
# not in "all" (a third call): Qwen3-Next's device path on 8 layers of the 80B-A3B shape (2 attention,
# 6 delta-net layers; experts Q4_K, 7.7 GiB): speed with and without the fused ops, and per op
if [[ "$what" == *" next "* ]]; then
  nmodel=${NEXT_MODEL:-/tmp/qwen3next-80b-8l.gguf}
  [ -f "$nmodel" ] || step synth_next $B/moerun synth --preset qwen3-next-80b-a3b --layers 8 --exps-type q4_k --out "$nmodel" -q
  step next_bench $B/moerun bench -m "$nmodel" -ngl 99 -p 512 -n 128 -r 3 -o md
  step next_nofuse env MOERUN_CUDA_FUSE=0 $B/moerun bench -m "$nmodel" -ngl 99 -p 0 -n 128 -r 3 -o md
  step next_prof env MOERUN_CUDA_PROFILE=1 MOERUN_CUDA_GRAPH=0 $B/moerun bench -m "$nmodel" -ngl 99 -p 512 -n 64 -r 1 -o md
fi
echo "== summary ($OUT)"
printf '%s\n' "${summary[@]}" | tee "$OUT/summary.txt"
# at most 8 files come back from a device call: every log of this call in one file
logs="$OUT/logs-$(date +%H%M%S).txt"
for f in "$OUT"/*.txt "$OUT"/*.log; do
  [[ -f "$f" && "$f" != "$OUT"/logs-* ]] || continue # earlier calls' logs, and this one
  echo "=== $(basename "$f")"; cat "$f"; rm -f "$f"
done > "$logs"
