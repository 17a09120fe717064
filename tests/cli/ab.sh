#!/usr/bin/env bash
# ab.sh — CLI checks of `moerun ab` on the tiny-qwen3moe fixture: a plan with
# two moerun configs (KV f16 vs q8_0) x 2 workloads x 2 repetitions writes
# results.jsonl, report.md, report.html (well-formed, with SVG charts) and
# summary.json; a run killed midway (timeout) is completed by --resume with the
# expected number of runs, each once, also after a torn last line; a config
# that fails is recorded as an error, not a crash of ab; bad plans and bad
# flags exit 2 with a message; an endpoint config against `moerun serve`
# (when this build has the server and libcurl). Skips (77) without the model.
set -u
BIN=${MOERUN_BIN:-./build/moerun}
SHARED=${MOERUN_SHARED:-../shared}
M=$(cd "$(dirname "$SHARED/fixtures/models/x")" 2>/dev/null && pwd)/tiny-qwen3moe.gguf
if [ ! -f "$M" ]; then
    echo "SKIP: tiny-qwen3moe.gguf not found (set MOERUN_SHARED to the shared fixtures folder)"
    exit 77
fi
if [ ! -x "$BIN" ]; then
    echo "FAIL: moerun binary '$BIN' not found (set MOERUN_BIN)"
    exit 1
fi
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
if ! command -v python3 >/dev/null; then
    echo "SKIP: python3 is needed to check the outputs"
    exit 77
fi
T=$(mktemp -d)
SRV_PID=
trap '[ -n "$SRV_PID" ] && kill $SRV_PID 2>/dev/null; rm -rf "$T"' EXIT
cd "$T"
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
ok() { echo "ok: $*"; }
runs() { local n; n=$(grep -c '"type":"run"' "$1" 2>/dev/null); echo "${n:-0}"; }

if ! "$BIN" run -m "$M" -p hi -n 1 -t 1 >/dev/null 2>"$T/probe.err"; then
    echo "SKIP: the engine cannot run $M yet: $(tail -1 "$T/probe.err")"
    exit 77
fi

cat >plan.json <<JSON
{"name": "kv f16 vs q8_0", "model": "$M", "baseline": "kv-f16", "reps": 2, "warmup": 1,
 "configs": [{"name": "kv-f16", "args": "-ctk f16 -ctv f16 -t 1 -c 512"},
             {"name": "kv-q8", "args": "-ctk q8_0 -ctv q8_0 -t 1 -c 512"}],
 "workloads": [{"builtin": "short", "n_predict": 8}, {"builtin": "multi-turn", "n_predict": 4}],
 "gates": ["tg >= 1", "pp >= 1", "errors == 0", "rss <= 4GiB", "vram <= 117GB"]}
JSON

# 1. a full run
if "$BIN" ab plan.json --out out >out.txt 2>err.txt; then ok "ab ran"; else fail "ab exit $?: $(tail -3 err.txt)"; fi
for f in results.jsonl report.md report.html summary.json; do
    [ -s "out/$f" ] && ok "out/$f written" || fail "out/$f missing"
done
[ "$(runs out/results.jsonl)" = 12 ] && ok "12 runs recorded (2x2x(2+1))" || fail "runs: $(runs out/results.jsonl)"
grep -q "Recommendation" out/report.md && grep -q "| short | kv-q8 | 2 |" out/report.md && ok "report.md tables" \
    || fail "report.md content"
python3 - out <<'PY' && ok "report.html is well-formed XML with SVG charts; summary.json and results parse" || fail "html/json check"
import json, sys, xml.dom.minidom as m
d = sys.argv[1]
doc = m.parse(d + "/report.html")
svgs = doc.getElementsByTagName("svg")
assert len(svgs) >= 4, len(svgs)
assert doc.getElementsByTagName("rect"), "no bars"
s = json.load(open(d + "/summary.json"))
assert len(s["configs"]) == 2 and s["recommendation"]
lines = [json.loads(l) for l in open(d + "/results.jsonl")]
assert lines[0]["type"] == "header" and lines[0]["plan_hash"]
for r in lines[1:]:
    assert r["ok"], r
    assert r["commit"] and r["argv"][0] == "ab" and "-ctk" in r["argv"], r
    assert r["peak_rss"] > 0 and r["vram"] is None and r["tg_tps"] > 0 and r["ttft_ms"] > 0
PY
grep -q "moerun ab: \[1/12\]" err.txt && ok "progress lines" || fail "no progress lines"

# 2. interrupted run + --resume
sed -e 's/"reps": 2, "warmup": 1/"reps": 5, "warmup": 1/' plan.json >plan2.json
# interrupt once a couple of runs are recorded (however slow this build is)
"$BIN" ab plan2.json --out out2 >/dev/null 2>err2.txt &
abpid=$!
for _ in $(seq 1 600); do
    [ "$(runs out2/results.jsonl)" -ge 2 ] && break
    kill -0 $abpid 2>/dev/null || break
    sleep 0.2
done
kill -TERM $abpid 2>/dev/null
wait $abpid
rc=$?
n1=$(runs out2/results.jsonl)
if [ $rc -ne 0 ] && [ "$n1" -lt 24 ]; then ok "killed midway (rc $rc) with $n1 of 24 runs kept"
else fail "the run was not interrupted (rc $rc, $n1 runs)"; fi
if "$BIN" ab plan2.json --out out2 >/dev/null 2>err3.txt; then fail "a second run without --resume must refuse"
else grep -q -- "--resume" err3.txt && ok "refuses to overwrite without --resume" || fail "message: $(cat err3.txt)"; fi
printf '{"type":"run","key":"kv-f16|sho' >>out2/results.jsonl   # a torn last line
if "$BIN" ab plan2.json --out out2 --resume >/dev/null 2>err4.txt; then ok "--resume completed"
else fail "--resume exit $?: $(tail -2 err4.txt)"; fi
grep -q "resuming" err4.txt && ok "resume message" || fail "no resume message"
[ "$(runs out2/results.jsonl)" = 24 ] && ok "24 runs after resume" || fail "after resume: $(runs out2/results.jsonl)"
python3 - out2/results.jsonl <<'PY' && ok "each run once, file intact" || fail "duplicates or broken lines"
import json, sys
keys = [json.loads(l)["key"] for l in open(sys.argv[1]) if '"type":"run"' in l]
assert len(keys) == len(set(keys)) == 24, (len(keys), len(set(keys)))
PY
[ -s out2/report.html ] && ok "report after resume" || fail "no report after resume"
sed -e 's/"reps": 5/"reps": 6/' plan2.json >plan3.json
"$BIN" ab plan3.json --out out2 --resume >/dev/null 2>err5.txt
[ $? = 2 ] && grep -q "different plan" err5.txt && ok "resume with another plan refused" || fail "plan hash check: $(cat err5.txt)"

# 3. a failing config is an error record, not a crash of ab
cat >plan4.json <<JSON
{"model": "$M", "reps": 1, "warmup": 0,
 "configs": [{"name": "ok", "args": "-t 1"}, {"name": "tiny-ctx", "args": "-t 1 -c 8"}],
 "workloads": [{"builtin": "short", "n_predict": 4}], "gates": ["errors == 0"]}
JSON
if "$BIN" ab plan4.json --out out4 >out4.txt 2>err6.txt; then ok "ab survives a failing config"; else fail "ab exit $?"; fi
grep -q '"ok":false' out4/results.jsonl && grep -q "context" out4/report.md && grep -q "| tiny-ctx | \`errors == 0\` | 1 | FAIL |" out4/report.md \
    && ok "the failure is recorded with its message and fails the gate" || fail "error record: $(grep -c ok out4/results.jsonl)"
"$BIN" ab plan4.json --out out4 --report --fail-on-gates >/dev/null 2>&1
[ $? = 1 ] && ok "--fail-on-gates exits 1" || fail "--fail-on-gates"

# 4. bad plans and flags
echo '{"model": "x", "configs": [{"name": "a", "args": "-ctk f17"}]}' >bad1.json
"$BIN" ab bad1.json --out bad1 >/dev/null 2>e1.txt; rc=$?
[ $rc = 2 ] && grep -q "config 'a'" e1.txt && ok "bad engine flag: exit 2, names the config" || fail "bad flag rc $rc: $(cat e1.txt)"
echo '{"model": "x", "configs": [{"name": "a"}], "gates": ["speed >= 1"]}' >bad2.json
"$BIN" ab bad2.json >/dev/null 2>e2.txt; rc=$?
[ $rc = 2 ] && grep -q "unknown metric 'speed'" e2.txt && ok "bad gate: exit 2" || fail "bad gate rc $rc: $(cat e2.txt)"
printf 'model = "x"\n[[config]\nname = "a"\n' >bad3.toml
"$BIN" ab bad3.toml >/dev/null 2>e3.txt; rc=$?
[ $rc = 2 ] && grep -q "bad3.toml:2" e3.txt && ok "bad TOML: exit 2 with line" || fail "bad toml rc $rc: $(cat e3.txt)"
"$BIN" ab >/dev/null 2>&1; [ $? = 2 ] && ok "no plan: exit 2" || fail "no plan"
"$BIN" ab --help | grep -q "PLAN.toml" && ok "--help" || fail "--help"
n=$("$BIN" ab plan.json --dry-run | wc -l)
[ "$n" = 12 ] && ok "--dry-run lists 12 runs" || fail "--dry-run: $n"

# 5. TOML plan
cat >plan.toml <<TOML
name = "toml plan"
model = "$M"
reps = 1
warmup = 0
[[config]]
name = "f16"
args = "-t 1 -c 512"
[[workload]]
builtin = "short"
n_predict = 4
TOML
"$BIN" ab plan.toml --out out5 >/dev/null 2>err7.txt && [ "$(runs out5/results.jsonl)" = 1 ] && ok "TOML plan runs" \
    || fail "TOML plan: $(tail -2 err7.txt)"

# 6. an endpoint config against moerun serve (when available)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
if "$BIN" serve --help >/dev/null 2>&1; then
    "$BIN" serve -m "$M" -t 1 --host 127.0.0.1 --port "$PORT" 2>srv.log &
    SRV_PID=$!
    for _ in $(seq 100); do grep -q "listening" srv.log 2>/dev/null && break; sleep 0.1; done
    cat >plan6.json <<JSON
{"model": "$M", "reps": 1, "warmup": 0, "baseline": "local",
 "configs": [{"name": "local", "args": "-t 1"}, {"name": "server", "url": "http://127.0.0.1:$PORT"}],
 "workloads": [{"builtin": "short", "n_predict": 4}, {"builtin": "multi-turn", "n_predict": 4}]}
JSON
    if "$BIN" ab plan6.json --out out6 >/dev/null 2>err8.txt; then
        python3 - out6/results.jsonl <<'PY' && ok "endpoint config measured over HTTP (TTFT, tokens)" || fail "endpoint records: $(grep server out6/results.jsonl | head -2)"
import json, sys
rs = [json.loads(l) for l in open(sys.argv[1]) if '"type":"run"' in l]
ep = [r for r in rs if r["config"] == "server"]
assert len(ep) == 2 and all(r["ok"] for r in ep), ep
assert all(r["ttft_ms"] > 0 and r["n_gen"] >= 1 for r in ep), ep
PY
    else fail "ab with an endpoint: $(tail -2 err8.txt)"; fi
    kill $SRV_PID 2>/dev/null; wait $SRV_PID 2>/dev/null; SRV_PID=
else
    echo "note: no server in this build; endpoint check skipped"
fi

# 9. VRAM of a config whose layers run on a device (the host emulation, MOERUN_CUDA_EMU=1)
cat >plan9.json <<JSON
{"name": "cpu vs device", "model": "$M", "baseline": "cpu", "reps": 1, "warmup": 0,
 "configs": [{"name": "cpu", "args": "-t 1 -c 256"}, {"name": "dev", "args": "-ngl 99 -t 1 -c 256"}],
 "workloads": [{"builtin": "short", "n_predict": 2}], "gates": ["vram <= 1GiB"]}
JSON
if MOERUN_CUDA_EMU=1 "$BIN" ab plan9.json --out out9 >/dev/null 2>err9.txt; then
    python3 - out9/results.jsonl <<'PY' && ok "VRAM recorded for the device config, none for the CPU one" || fail "vram: $(grep '"type":"run"' out9/results.jsonl | head -2)"
import json, sys
rs = [json.loads(l) for l in open(sys.argv[1]) if '"type":"run"' in l]
by = {r["config"]: r for r in rs}
assert by["cpu"]["vram"] is None, by["cpu"]
assert by["dev"]["vram"] > 1e6, by["dev"]
PY
    grep -q "| dev | .* MiB |" out9/report.md && ok "report.md shows the VRAM" || fail "report.md VRAM: $(grep -A4 '## Memory' out9/report.md)"
else fail "ab with an emulated device: $(tail -2 err9.txt)"; fi

echo "$fails failure(s)"
[ $fails = 0 ]
