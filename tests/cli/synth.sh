#!/usr/bin/env bash
# synth.sh — `moerun synth`: tiny presets write files that parse (and `moerun info`
# describes, when that command is built); --dry-run of qwen3moe-30b-a3b matches the
# real Q4_K_M file (17.28 GiB, 30.53 B params) within 1 %; usage errors exit 2.
set -u
BIN=${MOERUN_BIN:-moerun}
T=$(mktemp -d /tmp/moerun-cli-synth-XXXXXX)
trap 'rm -rf "$T"' EXIT
fail=0
ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; fail=1; }

# --- help and usage errors
"$BIN" synth --help | grep -q "qwen3moe-30b-a3b" && ok "--help lists presets" || bad "--help"
"$BIN" synth --preset nope --out "$T/x.gguf" 2>"$T/err"; rc=$?
[ $rc -eq 2 ] && grep -q "unknown preset 'nope'" "$T/err" && grep -q "tiny-qwen3moe" "$T/err" \
  && ok "unknown preset exits 2 and lists presets" || bad "unknown preset (rc $rc): $(cat "$T/err")"
"$BIN" synth --preset tiny-llama 2>/dev/null; [ $? -eq 2 ] && ok "missing --out exits 2" || bad "missing --out"
"$BIN" synth --preset tiny-llama --out "$T/x.gguf" --layers 0 2>/dev/null; [ $? -eq 2 ] && ok "--layers 0 exits 2" || bad "--layers 0"
"$BIN" synth --bogus 2>/dev/null; [ $? -eq 2 ] && ok "unknown option exits 2" || bad "unknown option"
"$BIN" synth --preset tiny-llama --out /nonexistent-dir/x.gguf 2>"$T/err"; rc=$?
[ $rc -eq 1 ] && grep -q "/nonexistent-dir/x.gguf" "$T/err" && ok "unwritable output exits 1" || bad "unwritable (rc $rc)"
"$BIN" synth --preset tiny-llama --out "$T/x.gguf" --vocab "$T/none.gguf" 2>/dev/null; [ $? -eq 1 ] && ok "missing --vocab exits 1" || bad "missing --vocab"

# --- tiny presets write, parse, and are deterministic
have_info=0
"$BIN" info --help >/dev/null 2>&1 && have_info=1
for p in tiny-qwen3moe tiny-deepseek2 tiny-llama tiny-qwen3next; do
  if ! "$BIN" synth --preset "$p" --out "$T/$p.gguf" -q >"$T/out" 2>&1; then bad "synth $p: $(cat "$T/out")"; continue; fi
  size=$(stat -c %s "$T/$p.gguf")
  [ "$size" -gt 1000000 ] && [ "$size" -lt 20000000 ] && ok "$p: $size bytes" || bad "$p size $size"
  if [ $have_info -eq 1 ]; then
    if "$BIN" info "$T/$p.gguf" >"$T/info" 2>&1; then
      grep -q "architecture" "$T/info" && ok "$p: moerun info" || bad "$p: info output lacks architecture"
      # info agrees with synth --dry-run on bytes and parameters
      "$BIN" synth --preset "$p" --dry-run >"$T/dry"
      db=$(sed -n 's/^file size:.*(\([0-9]*\) bytes)/\1/p' "$T/dry"); dp=$(sed -n 's/^params:.*(\([0-9]*\))/\1/p' "$T/dry")
      grep -q "($db bytes)" "$T/info" && [ "$db" = "$size" ] && ok "$p: size $db bytes (info, dry-run, file agree)" || bad "$p: size info/dry-run/file differ ($db, $size)"
      grep -q "($dp)" "$T/info" && ok "$p: $dp params (info = dry-run)" || bad "$p: params differ ($dp)"
    else bad "$p: moerun info failed: $(head -3 "$T/info")"; fi
  fi
done
"$BIN" synth --preset tiny-llama --out "$T/a.gguf" --seed 9 -q >/dev/null
"$BIN" synth --preset tiny-llama --out "$T/b.gguf" --seed 9 -q >/dev/null
"$BIN" synth --preset tiny-llama --out "$T/c.gguf" --seed 10 -q >/dev/null
cmp -s "$T/a.gguf" "$T/b.gguf" && ok "same seed, same file" || bad "not deterministic"
cmp -s "$T/a.gguf" "$T/c.gguf" && bad "seed ignored" || ok "other seed, other file"
"$BIN" synth --preset deepseek-v3 --layers 2 --dry-run >"$T/v3" && grep -q "^layers: *2" "$T/v3" && ok "--layers with --dry-run" || bad "v3 --layers 2"

# keys: parse with python if available (independent of our reader)
if command -v python3 >/dev/null; then
python3 - "$T/tiny-qwen3moe.gguf" <<'PY' && ok "independent parse: keys and tensors" || bad "independent parse"
import struct, sys
f = open(sys.argv[1], 'rb').read()
assert f[:4] == b'GGUF'
ver, nt, nkv = struct.unpack_from('<IQQ', f, 4)
pos = 24
def s():
    global pos
    n, = struct.unpack_from('<Q', f, pos); pos += 8
    v = f[pos:pos+n].decode('utf-8', 'replace'); pos += n; return v
size = {0:1,1:1,2:2,3:2,4:4,5:4,6:4,7:1,10:8,11:8,12:8}
def val(t):
    global pos
    if t == 8: return s()
    if t == 9:
        at, n = struct.unpack_from('<IQ', f, pos); pos += 12
        return [val(at) for _ in range(n)]
    fmt = {0:'B',1:'b',2:'H',3:'h',4:'I',5:'i',6:'f',7:'?',10:'Q',11:'q',12:'d'}[t]
    v, = struct.unpack_from('<' + fmt, f, pos); pos += size[t]; return v
kv = {}
for _ in range(nkv):
    k = s(); t, = struct.unpack_from('<I', f, pos); pos += 4; kv[k] = val(t)
names = []
for _ in range(nt):
    n = s(); nd, = struct.unpack_from('<I', f, pos); pos += 4 + 8 * nd + 4 + 8; names.append(n)
need = ['general.architecture', 'general.name', 'general.file_type', 'qwen3moe.block_count', 'qwen3moe.context_length',
        'qwen3moe.embedding_length', 'qwen3moe.feed_forward_length', 'qwen3moe.attention.head_count',
        'qwen3moe.attention.head_count_kv', 'qwen3moe.attention.key_length', 'qwen3moe.attention.value_length',
        'qwen3moe.attention.layer_norm_rms_epsilon', 'qwen3moe.rope.freq_base', 'qwen3moe.expert_count',
        'qwen3moe.expert_used_count', 'qwen3moe.expert_feed_forward_length', 'tokenizer.ggml.model',
        'tokenizer.ggml.tokens', 'tokenizer.ggml.merges', 'tokenizer.ggml.eos_token_id']
missing = [k for k in need if k not in kv]
assert not missing, missing
assert kv['general.architecture'] == 'qwen3moe' and kv['qwen3moe.expert_count'] == 8
assert len(kv['tokenizer.ggml.tokens']) == 8192
assert 'blk.3.ffn_down_exps.weight' in names and 'token_embd.weight' in names
PY
fi

# --- the full Qwen3-30B-A3B Q4_K_M, without writing 17 GiB
"$BIN" synth --preset qwen3moe-30b-a3b --dry-run >"$T/dry" || bad "dry-run failed"
cat "$T/dry"
bytes=$(sed -n 's/^file size:.*(\([0-9]*\) bytes)/\1/p' "$T/dry")
params=$(sed -n 's/^params:.*(\([0-9]*\))/\1/p' "$T/dry")
python3 -c "import sys; g=$bytes/2**30; b=$params/1e9; print('%.2f GiB %.2f B' % (g, b)); sys.exit(0 if abs(g/17.28-1) < 0.01 and abs(b/30.53-1) < 0.01 else 1)" \
  && ok "qwen3moe-30b-a3b: 17.28 GiB / 30.53 B within 1 %" || bad "qwen3moe-30b-a3b size/params: $bytes bytes, $params params"
[ -e "$T/x.gguf" ] && bad "dry-run wrote a file" || true

# --- --exps-type: low-bit experts (the 8-row kernels of Q2_K/Q3_K/IQ4_XS at model level)
"$BIN" synth --preset tiny-qwen3moe --exps-type q9_z --out "$T/x.gguf" 2>/dev/null; [ $? -eq 2 ] && ok "--exps-type unknown exits 2" || bad "--exps-type unknown"
"$BIN" synth --preset tiny-qwen3moe --exps-type f32 --out "$T/x.gguf" 2>/dev/null; [ $? -eq 2 ] && ok "--exps-type f32 exits 2" || bad "--exps-type f32"
for ty in q2_k q3_k iq4_xs; do
  if ! "$BIN" synth --preset tiny-qwen3moe --exps-type $ty --out "$T/e_$ty.gguf" -q >"$T/out" 2>&1; then bad "synth --exps-type $ty: $(cat "$T/out")"; continue; fi
  if [ $have_info -eq 1 ]; then
    n=$("$BIN" info "$T/e_$ty.gguf" --tensors 2>/dev/null | grep "_exps.weight" | grep -ci " $ty ")
    [ "$n" = 12 ] && ok "--exps-type $ty: 12 expert tensors of $ty" || bad "--exps-type $ty: $n expert tensors of $ty"
  fi
  # the SIMD 8-row kernels (default) against the scalar reference forward (MOERUN_REF=1), first position
  if "$BIN" logits --help >/dev/null 2>&1; then
    "$BIN" logits -m "$T/e_$ty.gguf" --ids 1,2,3,4 --json "$T/a.json" >/dev/null 2>&1 &&
    MOERUN_REF=1 "$BIN" logits -m "$T/e_$ty.gguf" --ids 1,2,3,4 --json "$T/b.json" >/dev/null 2>&1 &&
    python3 - "$T/a.json" "$T/b.json" <<'PY' && ok "--exps-type $ty: SIMD logits = scalar reference" || bad "--exps-type $ty: SIMD vs reference logits"
import json, sys, math
a, b = (json.load(open(f)) for f in sys.argv[1:3])
ta, tb = dict(map(tuple, a['top'][0])), dict(map(tuple, b['top'][0]))
common = [t for t in ta if t in tb]
err = max(abs(ta[t] - tb[t]) for t in common)
print('  top-32 at position 0: %d common, max |diff| %.2e' % (len(common), err))
sys.exit(0 if len(common) >= 28 and err < 1e-3 and all(math.isfinite(v) for v in ta.values()) else 1)
PY
  fi
done
# --- --ftype: a file type's mix (the types per tensor: test_synth; on the device path: test_gpu_types)
"$BIN" synth --preset tiny-qwen3moe --ftype q3_k_s --dry-run >/dev/null 2>&1; [ $? -eq 2 ] && ok "--ftype unknown exits 2" || bad "--ftype unknown"
"$BIN" synth --preset tiny-qwen3moe --ftype 2>/dev/null; [ $? -eq 2 ] && ok "--ftype without a value exits 2" || bad "--ftype without a value"
"$BIN" synth --preset tiny-qwen3moe --ftype Q3_K_M --dry-run >"$T/ft" 2>&1
grep -q "^file type:  q3_k_m" "$T/ft" && grep -q "^  Q3_K " "$T/ft" && ! grep -q "^  Q4_K .* 14 tensors" "$T/ft" \
  && ok "--ftype Q3_K_M --dry-run: q3_k_m, Q3_K weights" || bad "--ftype Q3_K_M --dry-run: $(cat "$T/ft")"
if "$BIN" synth --preset tiny-qwen3moe --ftype bf16 --out "$T/bf.gguf" -q >"$T/out" 2>&1 && [ $have_info -eq 1 ]; then
  n=$("$BIN" info "$T/bf.gguf" --tensors 2>/dev/null | grep "\.weight " | grep -c " BF16 ")
  [ "$n" = 29 ] && ok "--ftype bf16: 29 BF16 matrices" || bad "--ftype bf16: $n BF16 matrices"
fi
[ -c /dev/null ] && ok "/dev/null intact" || bad "/dev/null damaged"

exit $fail
