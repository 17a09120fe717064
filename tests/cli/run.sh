#!/usr/bin/env bash
# run.sh — CLI checks of `moerun run`, `moerun perplexity` and the shared flag
# parsing, on the tiny-qwen3 fixture model (skips, exit 77, when it is absent).
set -u
BIN=${MOERUN_BIN:-./build/moerun}
SHARED=${MOERUN_SHARED:-../shared}
SRC=${MOERUN_SRC:-.}
M=$SHARED/fixtures/models/tiny-qwen3.gguf
if [ ! -f "$M" ]; then
    echo "SKIP: $M not found (set MOERUN_SHARED to the shared fixtures folder)"
    exit 77
fi
if [ ! -x "$BIN" ]; then
    echo "FAIL: moerun binary '$BIN' not found (set MOERUN_BIN)"
    exit 1
fi
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
ok() { echo "ok: $*"; }

# expect_rc RC NAME -- ARGS...: run moerun, check the exit code, keep out/err
expect_rc() {
    local want=$1 name=$2
    shift 3
    "$BIN" "$@" >"$T/out" 2>"$T/err" </dev/null
    local rc=$?
    if [ "$rc" -ne "$want" ]; then
        fail "$name: exit $rc, expected $want (moerun $*)"
        sed 's/^/    stderr: /' "$T/err" | head -5
        return 1
    fi
    ok "$name (exit $rc)"
    return 0
}

# 1. basic generation: exit 0, output, speed line
if expect_rc 0 "run -n 8" -- run -m "$M" -p hello -n 8; then
    [ -s "$T/out" ] && [ "$(tr -d '[:space:]' <"$T/out" | wc -c)" -gt 0 ] || fail "run -n 8: no output"
    grep -q "prompt .* tokens .* t/s" "$T/err" && grep -q "generation 8 tokens .* t/s" "$T/err" ||
        fail "run -n 8: no speed line (stderr: $(cat "$T/err"))"
fi

# 2. a seed makes sampling reproducible
expect_rc 0 "seed 42 (1)" -- run -m "$M" -p "Once upon a time" -n 12 --temp 0.8 -s 42 && cp "$T/out" "$T/a"
expect_rc 0 "seed 42 (2)" -- run -m "$M" -p "Once upon a time" -n 12 --temp 0.8 -s 42 && cp "$T/out" "$T/b"
if [ -f "$T/a" ] && [ -f "$T/b" ]; then
    cmp -s "$T/a" "$T/b" && ok "same seed, same output" || fail "same seed gave different outputs"
fi
# greedy equals top-k 1
expect_rc 0 "greedy" -- run -m "$M" -p "The cat" -n 10 --temp 0 && cp "$T/out" "$T/g"
expect_rc 0 "top-k 1" -- run -m "$M" -p "The cat" -n 10 --top-k 1 -s 7 && cp "$T/out" "$T/k"
if [ -f "$T/g" ] && [ -f "$T/k" ]; then
    cmp -s "$T/g" "$T/k" && ok "top-k 1 equals greedy" || fail "top-k 1 differs from greedy"
fi

# 3. absurd flags are usage errors (exit 2) naming the flag
expect_rc 2 "-c -5" -- run -m "$M" -p hi -c -5 && { grep -q -- "-c" "$T/err" || fail "-c -5: message does not name the flag"; }
expect_rc 2 "-t 100000" -- run -m "$M" -p hi -t 100000
expect_rc 2 "-n abc" -- run -m "$M" -p hi -n abc && { grep -q "abc" "$T/err" || fail "-n abc: message does not quote the value"; }
expect_rc 2 "--temp nan" -- run -m "$M" -p hi --temp nan
expect_rc 2 "--top-p 2" -- run -m "$M" -p hi --top-p 2
expect_rc 2 "-ctk q9" -- run -m "$M" -p hi -ctk q9
expect_rc 2 "unknown flag" -- run -m "$M" -p hi --bogus-flag && { grep -q -- "--bogus-flag" "$T/err" || fail "unknown flag not named"; }
expect_rc 2 "missing value" -- run -m "$M" -p
expect_rc 2 "no prompt" -- run -m "$M"
expect_rc 2 "server flag on run" -- run -m "$M" -p hi --port 80
expect_rc 0 "--help" -- run --help && { grep -q -- "--repeat-penalty" "$T/out" || fail "help lacks the sampling flags"; }

# 4. a prompt longer than the context: clear error, exit 1
expect_rc 1 "prompt longer than -c 16" -- run -m "$M" -c 16 -n 4 \
    -p "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen" &&
    { grep -qi "context" "$T/err" || fail "long prompt: message does not mention the context"; }
# -n beyond the context stops with a message and exit 0
expect_rc 0 "-n past the context" -- run -m "$M" -c 16 -n 100 -p hello &&
    { grep -qi "context .* full" "$T/err" || fail "-n past the context: no message (stderr: $(cat "$T/err"))"; }

# 5. chat formatting (the tiny model has no template: name one; without, a clear error)
expect_rc 0 "--chat chatml" -- run -m "$M" -p hi -n 4 --chat --chat-template chatml -sys "Be brief."
expect_rc 1 "--chat without template" -- run -m "$M" -p hi -n 4 --chat &&
    { grep -q -- "--chat-template" "$T/err" || fail "no-template message does not say how to pass one"; }
expect_rc 1 "--chat-template unknown" -- run -m "$M" -p hi -n 4 --chat-template nosuch

# 6. perplexity on the sample text: a finite PPL
TXT=$SRC/data/ppl-sample.txt
if expect_rc 0 "perplexity" -- perplexity -m "$M" -f "$TXT" -c 128 -b 64 --chunks 4; then
    line=$(grep "Final estimate: PPL = " "$T/out")
    val=$(echo "$line" | sed -E 's/.*PPL = ([0-9.eE+-]+).*/\1/')
    if [ -z "$line" ] || ! awk -v v="$val" 'BEGIN { exit !(v + 0 > 1 && v == v + 0) }'; then
        fail "perplexity: no finite PPL ($line)"
    else
        ok "PPL = $val"
    fi
    grep -q '^\[1\][0-9]' "$T/out" || fail "perplexity: no per-chunk values"
fi
expect_rc 1 "perplexity text too short" -- perplexity -m "$M" -f "$TXT" -c 4096
expect_rc 2 "perplexity without -f" -- perplexity -m "$M"

if [ "$fails" -ne 0 ]; then
    echo "$fails check(s) failed"
    exit 1
fi
echo "all run/perplexity CLI checks passed"
