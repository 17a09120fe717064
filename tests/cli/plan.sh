#!/usr/bin/env bash
# plan.sh — the placement plan printed for -ngl / -cmoe / -ot / -ts / -dev, and the
# out-of-memory error before loading (pretend devices via MOERUN_FAKE_VRAM).
set -u
BIN=${MOERUN_BIN:-./build/moerun}
SHARED=${MOERUN_SHARED:-../shared}
M=$SHARED/fixtures/models/tiny-qwen3moe.gguf
[ -f "$M" ] || { echo "SKIP: $M not found (set MOERUN_SHARED)"; exit 77; }
pass=0; fail=0
check() { if eval "$2"; then pass=$((pass+1)); echo "ok: $1"; else fail=$((fail+1)); echo "FAIL: $1"; fi; }
# no device: neither a GPU (CUDA_VISIBLE_DEVICES) nor cudasim's CPU one (a -DMOERUN_CUDA_SIM build)
err=$(CUDA_VISIBLE_DEVICES=-1 CUDASIM_DEVICES=0 "$BIN" run -m "$M" -p hi -n 2 -ngl 99 -cmoe 2>&1 >/dev/null); rc=$?
check "no device: runs, exit 0" '[ $rc -eq 0 ]'
check "no device: plan printed" 'grep -q "placement plan" <<<"$err"'
check "no device: says everything runs on the CPU" 'grep -q "runs on the CPU" <<<"$err"'
err=$(MOERUN_FAKE_VRAM=1GiB,1GiB "$BIN" run -m "$M" -p hi -n 2 -ngl 99 -ts 3,1 2>&1 >/dev/null); rc=$?
check "fake devices: plan over CUDA0 and CUDA1" 'grep -q "CUDA0" <<<"$err" && grep -q "CUDA1" <<<"$err"'
check "fake devices: exit 0" '[ $rc -eq 0 ]'
err=$(MOERUN_FAKE_VRAM=4MiB "$BIN" run -m "$M" -p hi -n 2 -ngl 99 2>&1 >/dev/null); rc=$?
check "too small: exit 1" '[ $rc -eq 1 ]'
check "too small: names the device and suggests a fix" 'grep -q "CUDA0: not enough memory" <<<"$err" && grep -q -E -- "try |lower " <<<"$err"'
err=$("$BIN" run -m "$M" -p hi -n 2 -ngl 99 -ot '([=CPU' 2>&1 >/dev/null); rc=$?
check "bad -ot regex: exit 1 with a message" '[ $rc -ne 0 ] && [ -n "$err" ]'
# -dev: only the named device takes layers; an unknown one is an error before loading
err=$(MOERUN_FAKE_VRAM=1GiB,1GiB "$BIN" run -m "$M" -p hi -n 2 -ngl 99 -dev CUDA1 2>&1 >/dev/null); rc=$?
check "-dev CUDA1: exit 0, layers on CUDA1 only" '[ $rc -eq 0 ] && grep -q "over CUDA1 (100%)" <<<"$err"'
err=$(MOERUN_FAKE_VRAM=1GiB,1GiB "$BIN" run -m "$M" -p hi -n 2 -ngl 99 -dev CUDA7 2>&1 >/dev/null); rc=$?
check "-dev CUDA7: exit 1, names the device" '[ $rc -eq 1 ] && grep -q "unknown device .CUDA7." <<<"$err"'
err=$(MOERUN_CUDA_EMU=2 MOERUN_CUDA_PROFILE=1 "$BIN" run -m "$M" -p hi -n 2 -ngl 99 -dev CUDA1 2>&1 >/dev/null); rc=$?
check "-dev CUDA1 on 2 emulated devices: runs there" '[ $rc -eq 0 ] && grep -q "gpu profile: device 1 (emu)" <<<"$err" && ! grep -q "gpu profile: device 0" <<<"$err"'
err=$(MOERUN_CUDA_EMU=2 "$BIN" bench -m "$M" -ngl 99 -ts 3/1 -p 4 -n 0 -r 1 -t 1 --no-bandwidth 2>&1 >/dev/null); rc=$?
check "bench -ts 3/1: split 75/25 over two devices" '[ $rc -eq 0 ] && grep -q "over CUDA0 (75%), CUDA1 (25%)" <<<"$err"'
# bench -cmoe 0,1 on the emulated device: two configurations, n_cpu_moe 0 and -1 (all experts)
out=$(MOERUN_CUDA_EMU=1 "$BIN" bench -m "$M" -ngl 99 -cmoe 0,1 -p 8 -n 2 -r 1 -t 1 --no-bandwidth -o csv 2>/dev/null); rc=$?
check "bench -cmoe 0,1: exit 0" '[ $rc -eq 0 ]'
vals=$(python3 -c 'import csv,sys; print(" ".join(sorted({r["n_cpu_moe"] for r in csv.DictReader(sys.stdin)})))' <<<"$out")
check "bench -cmoe 0,1: n_cpu_moe 0 and -1 rows" '[ "$vals" = "-1 0" ]'
# -cmoe streams the RAM experts of 32+ token micro-batches to the device: the plan says so, the
# profile shows the uploads and grouped matvecs; MOERUN_OFFLOAD_MIN_BATCH=0 turns it off
P=$(python3 -c 'print(" ".join(["hello world"] * 24))')
err=$(MOERUN_CUDA_EMU=1 MOERUN_CUDA_PROFILE=1 "$BIN" run -m "$M" -p "$P" -n 1 -ngl 99 -cmoe 2>&1 >/dev/null); rc=$?
check "-cmoe, a 48-token prompt: exit 0, the stream buffer in the plan" '[ $rc -eq 0 ] && grep -q "32 tokens or more stream each layer.s RAM experts to CUDA0" <<<"$err"'
check "-cmoe, a 48-token prompt: grouped expert matvecs on the device" 'grep -q "gpu profile: *moe_gate_up_q8_grp .* calls" <<<"$err"'
err=$(MOERUN_OFFLOAD_MIN_BATCH=0 MOERUN_CUDA_EMU=1 MOERUN_CUDA_PROFILE=1 "$BIN" run -m "$M" -p "$P" -n 1 -ngl 99 -cmoe 2>&1 >/dev/null); rc=$?
check "MOERUN_OFFLOAD_MIN_BATCH=0: no stream buffer, no expert matvecs on the device" '[ $rc -eq 0 ] && ! grep -q "RAM experts to CUDA0" <<<"$err" && ! grep -q "moe_gate_up_q8_grp" <<<"$err"'
err=$(MOERUN_PIN_EXPERTS=1 MOERUN_LOG=info MOERUN_CUDA_EMU=1 "$BIN" run -m "$M" -p "$P" -n 1 -ngl 99 -cmoe -nr 2>&1 >/dev/null); rc=$?
check "MOERUN_PIN_EXPERTS=1 --no-repack: runs, the mapped experts page-locked" '[ $rc -eq 0 ] && grep -q "page-locked in [1-9][0-9]* ranges" <<<"$err"'
err=$(MOERUN_CUDA_EMU=1 "$BIN" bench -m "$M" -ngl 99 -cmoe 1 -p 40 -n 0 -r 1 -t 1 --no-bandwidth 2>&1 >/dev/null); rc=$?
check "bench -cmoe -p 40: the streamed bytes per token and their rate" '[ $rc -eq 0 ] && grep -q "pp40: RAM experts streamed to the devices: .* per token, .* GB/s" <<<"$err"'
# MOERUN_CUDA_PROFILE: the per-op report of the device, with kernels, copies and gaps
err=$(MOERUN_CUDA_EMU=1 MOERUN_CUDA_PROFILE=1 MOERUN_CUDA_GRAPH=0 "$BIN" run -m "$M" -p hi -n 4 -ngl 99 -cmoe 2>&1 >/dev/null); rc=$?
check "profile: exit 0" '[ $rc -eq 0 ]'
check "profile: kernels, copies and gaps of device 0" 'grep -q "gpu profile: device 0 (emu): [0-9]* ops; kernels .* copies .* idle gaps" <<<"$err"'
check "profile: per-op lines" 'grep -q "gpu profile: *matvec .* calls" <<<"$err" && grep -q "gpu profile: *attn .* calls" <<<"$err"'
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
