#!/usr/bin/env bash
# gpu_large.sh — the GPU executor at the batch sizes users crash other engines with: a 4096-token
# micro-batch (-b 4096 -ub 4096) at context 8192, on the host emulation of the device backend
# (MOERUN_CUDA_EMU; its "device" buffers are host allocations, so the sanitizer job catches any
# buffer sized for fewer tokens, cells or (token, expert) pairs), held to the CPU's logits of the
# same prompt and greedy steps at the fixtures' bars for the model family:
#  - tiny-llama across two devices (-ts 1,1: the hidden state copied between them);
#  - tiny-qwen3moe fully offloaded (8192 (token, expert) pairs sorted by expert).
# Needs ../shared/fixtures (skipped, 77, without it).
set -u
BIN=${MOERUN_BIN:-moerun}
SHARED=${MOERUN_SHARED:-../shared}
MD="$SHARED/fixtures/models"
[ -f "$MD/tiny-llama.gguf" ] && [ -f "$MD/tiny-qwen3moe.gguf" ] || { echo "skip: $MD not found (set MOERUN_SHARED)"; exit 77; }
T=$(mktemp -d /tmp/moerun-cli-gpularge-XXXXXX)
trap 'rm -rf "$T"' EXIT
fail=0
ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; fail=1; }
field() { echo "$1" | sed -n "s/.*$2=\([0-9.]*\).*/\1/p"; }

ids=$(python3 -c "print(','.join(str((i * 7919 + 13) % 2000 + 100) for i in range(4096)))")
common=(-c 8192 -b 4096 -ub 4096 -t 2)
# model, devices, placement flags, bars: top-1 median p80 KL (test_golden's families)
check() {
  local model=$1 ndev=$2 place=$3 top=$4 med=$5 p80=$6 kl=$7
  local m="$MD/$model.gguf" name="$model $place"
  if ! "$BIN" logits -m "$m" "${common[@]}" --ids "$ids" -n 4 --json "$T/cpu.json" >"$T/cpu.log" 2>&1; then
    bad "$name: CPU run: $(tail -2 "$T/cpu.log")"; return
  fi
  # shellcheck disable=SC2086
  MOERUN_CUDA_EMU=$ndev "$BIN" logits -m "$m" $place "${common[@]}" --golden "$T/cpu.json" --compare \
    --json "$T/dev.json" >"$T/dev.log" 2>&1
  local rc=$? s
  s=$(grep 'top1=' "$T/dev.log" | tail -1)
  if [ $rc -ne 0 ] || [ -z "$s" ]; then bad "$name: device run (rc $rc): $(tail -3 "$T/dev.log")"; return; fi
  grep -q "running the layers placed on devices with the emu backend" "$T/dev.log" || { bad "$name: not on the emulated devices"; return; }
  if awk -v t="$(field "$s" top1)" -v m="$(field "$s" med)" -v p="$(field "$s" p80)" -v k="$(field "$s" kl)" \
       -v T="$top" -v M="$med" -v P="$p80" -v K="$kl" 'BEGIN { exit !(t >= T && m <= M && p <= P && k <= K) }' \
     && echo "$s" | grep -q "greedy=ok"; then
    ok "$name, 4096-token ubatch at -c 8192: $s"
  else
    bad "$name, 4096-token ubatch: '$s' (bars $top $med $p80 $kl)"
  fi
}
check tiny-llama 2 "-ngl 99 -ts 1,1" 0.95 0.04 0.10 0.01
check tiny-qwen3moe 1 "-ngl 99" 0.80 0.12 0.20 0.35
exit $fail
