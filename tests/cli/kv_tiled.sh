#!/usr/bin/env bash
# kv_tiled.sh — the tiled q8_0 KV cache (src/cpu/attn.h) end to end, against the row layout
# (MOERUN_KV_TILED=0), on a tiny qwen3moe with Qwen3-30B-A3B's 8 query heads per KV head:
#  - a 600-token prompt and 8 greedy tokens as a prompt (-ub 512: the cache writes into the tiles
#    and the multi-token kernel's reads of them): the same logits bit for bit;
#  - the same tokens one a step (-ub 1: the tiled decode kernel, split into parts past 512 cells):
#    within twice the distance between the row layout's own two paths (decode vs prompt), which
#    differ by their rounding only (this random net amplifies any rounding, see attn_mla.c).
# Needs AVX-512 VNNI (the only CPUs that take the layout); skipped (77) elsewhere.
set -u
BIN=${MOERUN_BIN:-moerun}
grep -qw avx512_vnni /proc/cpuinfo 2>/dev/null || { echo "skip: no AVX-512 VNNI here, the tiled layout is not taken"; exit 77; }
T=$(mktemp -d /tmp/moerun-cli-kvtiled-XXXXXX)
trap 'rm -rf "$T"' EXIT
fail=0
ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; fail=1; }

"$BIN" synth --preset tiny-qwen3moe-g8 --out "$T/m.gguf" -q >/dev/null || { echo "FAIL synth"; exit 1; }
ids=$(seq -s, 1 600)
common=(-m "$T/m.gguf" -ctk q8_0 -ctv q8_0 -fa on -t 2)
MOERUN_KV_TILED=0 "$BIN" logits "${common[@]}" --ids "$ids" -n 8 -ub 512 --json "$T/p.json" >/dev/null 2>&1 || bad "rows, prompt"
MOERUN_KV_TILED=0 "$BIN" logits "${common[@]}" --golden "$T/p.json" -ub 1 --json "$T/d.json" >/dev/null 2>&1 || bad "rows, decode"

# "top1=... med=... p80=... kl=..." of a run against a golden JSON
cmp_run() { # tiled ub golden
  MOERUN_KV_TILED=$1 "$BIN" logits "${common[@]}" --golden "$3" --compare -ub "$2" --json "$T/x.json" 2>&1 | grep 'top1=' | tail -1
}
field() { echo "$1" | sed -n "s/.*$2=\([0-9.]*\).*/\1/p"; }

s=$(cmp_run 1 512 "$T/p.json")
[ "$(field "$s" med)" = "0.0000" ] && [ "$(field "$s" kl)" = "0.0000" ] && [ "$(field "$s" top1)" = "1.0000" ] \
  && ok "prompt, tiled = rows: $s" || bad "prompt, tiled vs rows: '$s'"

ref=$(cmp_run 0 1 "$T/p.json")  # rows: decode vs prompt
s=$(cmp_run 1 1 "$T/d.json")    # decode: tiled vs rows
rm=$(field "$ref" med); tm=$(field "$s" med); tt=$(field "$s" top1); tk=$(field "$s" kl)
if [ -n "$rm" ] && [ -n "$tm" ] && awk -v t="$tm" -v r="$rm" -v top="$tt" -v kl="$tk" \
     'BEGIN { exit !(t <= 2 * r + 0.005 && top >= 0.99 && kl <= 0.02) }'; then
  ok "decode, tiled vs rows: $s (rows' decode vs prompt: $ref)"
else
  bad "decode, tiled vs rows: '$s' against rows' decode vs prompt '$ref'"
fi
[ $fail -eq 0 ] && echo "kv_tiled: all passed" || echo "kv_tiled: FAILED"
exit $fail
