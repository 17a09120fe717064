#!/usr/bin/env bash
# bench.sh — CLI checks of `moerun bench` and `moerun sweep` on the tiny-qwen3
# fixture model: every output format parsed back (json, jsonl, csv, md), depth
# and pg tests, --compare, --bandwidth, the sweep table/JSON/SVG, --plot, and
# exit code 2 for bad flags. Skips (exit 77) when the model is absent or the
# engine cannot load it yet. Uses a private cache dir and a small bandwidth
# buffer so it stays quick on a shared machine.
set -u
BIN=${MOERUN_BIN:-./build/moerun}
SHARED=${MOERUN_SHARED:-../shared}
M=$SHARED/fixtures/models/tiny-qwen3.gguf
if [ ! -f "$M" ]; then
    echo "SKIP: $M not found (set MOERUN_SHARED to the shared fixtures folder)"
    exit 77
fi
if [ ! -x "$BIN" ]; then
    echo "FAIL: moerun binary '$BIN' not found (set MOERUN_BIN)"
    exit 1
fi
if ! command -v python3 >/dev/null; then
    echo "SKIP: python3 is needed to parse the outputs"
    exit 77
fi
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
export XDG_CACHE_HOME=$T/cache
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
ok() { echo "ok: $*"; }

# The engine must be able to run the model; otherwise skip (not a bench failure).
if ! "$BIN" bench -m "$M" -p 0 -n 1 -r 1 -t 1 --no-bandwidth -o jsonl >"$T/probe" 2>"$T/probe.err"; then
    echo "SKIP: the engine cannot run $M yet: $(tail -1 "$T/probe.err")"
    exit 77
fi

# expect_rc RC NAME -- ARGS...: run moerun, check the exit code, keep out/err
expect_rc() {
    local want=$1 name=$2
    shift 3
    "$BIN" "$@" >"$T/out" 2>"$T/err" </dev/null
    local rc=$?
    if [ "$rc" -ne "$want" ]; then
        fail "$name: exit $rc, expected $want (moerun $*)"
        sed 's/^/    /' "$T/err" | tail -5
        return 1
    fi
    ok "$name"
}

BW="--bandwidth-gbs 10"

# ---- bench -o json ----------------------------------------------------------------
if expect_rc 0 "bench json" -- bench -m "$M" -p 16 -n 4 -r 2 -t 1 $BW -o json; then
    cp "$T/out" "$T/a.json"
    python3 - "$T/a.json" <<'EOF' && ok "bench json fields" || fail "bench json fields"
import json, sys
d = json.load(open(sys.argv[1]))
assert isinstance(d, list) and len(d) == 2, f"expected 2 records, got {len(d)}"
tests = sorted(r["test"] for r in d)
assert tests == ["pp16", "tg4"], tests
need = ["model_filename", "model_type", "model_size", "model_n_params", "n_threads", "n_batch", "n_ubatch",
        "type_k", "type_v", "flash_attn", "n_gpu_layers", "n_cpu_moe", "override_tensors", "n_prompt", "n_gen",
        "n_depth", "avg_ts", "stddev_ts", "avg_ns", "samples_ts", "samples_ns", "roofline", "bandwidth_gbs",
        "weight_bytes_per_token", "peak_rss_bytes", "date", "command", "build", "machine", "backends"]
for r in d:
    miss = [k for k in need if k not in r]
    assert not miss, f"missing {miss}"
    assert r["model_filename"] == "tiny-qwen3.gguf"
    assert r["model_size"] > 0 and r["model_n_params"] > 0
    assert r["avg_ts"] > 0 and r["avg_ns"] > 0, r["avg_ts"]
    assert len(r["samples_ts"]) == 2 and all(x > 0 for x in r["samples_ts"])
    assert r["peak_rss_bytes"] > 0
    assert r["bandwidth_gbs"] == 10
    for k in ("version", "commit", "compiler", "cpu_features", "cuda"):
        assert k in r["build"], k
    for k in ("cpu_model", "cores_physical", "ram_bytes"):
        assert k in r["machine"], k
    assert r["machine"]["cores_physical"] >= 1 and r["machine"]["ram_bytes"] > 0
    assert len(r["date"]) >= 20 and r["date"][4] == "-" and "T" in r["date"], r["date"]
tg = [r for r in d if r["test"] == "tg4"][0]
assert tg["weight_bytes_per_token"] > 0, "no weight bytes per token"
assert tg["roofline"] is not None and tg["roofline"] > 0, tg["roofline"]
EOF
fi

# ---- -o jsonl with depth and pg, two thread counts ------------------------------------
if expect_rc 0 "bench jsonl depth/pg" -- bench -m "$M" -p 8 -n 2 -pg 8,2 -d 0,16 -r 1 -t 1,2 $BW -o jsonl; then
    cp "$T/out" "$T/b.jsonl"
    python3 - "$T/b.jsonl" <<'EOF' && ok "bench jsonl records" || fail "bench jsonl records"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
assert len(rows) == 12, len(rows)  # 3 shapes x 2 depths x 2 thread counts
names = {r["test"] for r in rows}
assert names == {"pp8", "tg2", "pp8+tg2", "pp8 @ d16", "tg2 @ d16", "pp8+tg2 @ d16"}, names
assert {r["n_threads"] for r in rows} == {1, 2}
assert all(r["avg_ts"] > 0 for r in rows)
# the roofline counts the KV rows decode steps read: more at depth 16 than at depth 0, none for a prompt
kv = {(r["test"], r["n_threads"]): r["kv_bytes_per_token"] for r in rows}
for t in (1, 2):
    assert kv[("tg2 @ d16", t)] > kv[("tg2", t)] > 0, kv
    assert kv[("pp8", t)] == 0, kv
EOF
fi

# ---- --interleave: depth filled once, repetitions in turn, depth ratios pair by pair ----------
if expect_rc 0 "bench --interleave" -- bench -m "$M" -p 8 -n 4 -d 0,16 -r 3 -t 1 $BW --interleave -o jsonl; then
    python3 - "$T/out" "$T/err" <<'EOF' && ok "bench --interleave ratios" || fail "bench --interleave ratios"
import json, re, statistics, sys
rows = {r["test"]: r for r in (json.loads(l) for l in open(sys.argv[1]) if l.strip())}
assert set(rows) == {"pp8", "tg4", "pp8 @ d16", "tg4 @ d16"}, set(rows)
assert all(len(r["samples_ts"]) == 3 for r in rows.values())
# the depth kept across repetitions: every repetition read the 16 cells (the same KV bytes as one fill)
assert rows["tg4 @ d16"]["kv_bytes_per_token"] > rows["tg4"]["kv_bytes_per_token"] > 0
err = open(sys.argv[2]).read()
for d, z in (("pp8 @ d16", "pp8"), ("tg4 @ d16", "tg4")):
    m = re.search(re.escape(f"{d} / {z}") + r", 1 thread\(s\): ([0-9.]+) \(([0-9.]+) - ([0-9.]+) over 3 pairs\)", err)
    assert m, (d, err)
    q = [a / b for a, b in zip(rows[d]["samples_ts"], rows[z]["samples_ts"])]
    want = (statistics.median(q), min(q), max(q))
    got = tuple(float(x) for x in m.groups())
    assert all(abs(g - w) <= 0.0005 + 1e-3 * w for g, w in zip(got, want)), (got, want)
EOF
fi
# settings that vary among the tests are named in the ratio lines
if expect_rc 0 "bench --interleave two V types" -- bench -m "$M" -p 0 -n 2 -d 0,8 -r 2 -t 1 -ctv f16,q8_0 -fa 1 $BW --interleave; then
    [ "$(grep -c 'tg2 @ d8 / tg2, 1 thread(s), -ctv \(f16\|q8_0\): ' "$T/err")" = 2 ] &&
        ok "ratio lines name the V type" || fail "ratio lines name the V type: $(tail -3 "$T/err")"
fi
# recurrent state (qwen3next): the rewind to the depth goes through a checkpoint
N=$SHARED/fixtures/models/tiny-qwen3next.gguf
if [ -f "$N" ]; then
    expect_rc 0 "bench recurrent depth rewind" -- bench -m "$N" -p 4 -n 2 -d 8 -r 2 -t 1 $BW
    expect_rc 0 "bench recurrent --interleave" -- bench -m "$N" -p 0 -n 2 -d 0,8 -r 2 -t 1 $BW --interleave
fi

# ---- a measured bandwidth: one per repetition, probes outside the peak RSS ---------------
if expect_rc 0 "bench given bandwidth" -- bench -m "$M" -p 0 -n 4 -r 3 -t 2 $BW -o json &&
    cp "$T/out" "$T/given.json" &&
    expect_rc 0 "bench measured bandwidth" -- bench -m "$M" -p 0 -n 4 -r 3 -t 2 -o json; then
    python3 - "$T/out" "$T/given.json" <<'EOF' && ok "bench per-repetition roofline" || fail "bench per-repetition roofline"
import json, sys
(r,) = json.load(open(sys.argv[1]))
(g,) = json.load(open(sys.argv[2]))
assert g["samples_bw"] == [] and g["roofline"] == g["roofline_best"], g
bw, ts = r["samples_bw"], r["samples_ts"]
assert len(bw) == 3 and all(x > 0 for x in bw), bw
assert r["bandwidth_gbs"] >= max(bw), (r["bandwidth_gbs"], bw)
bpt = r["weight_bytes_per_token"] + r["kv_bytes_per_token"]
f = sorted(bpt * t / 1e9 / b for t, b in zip(ts, bw))
assert abs(r["roofline"] - f[1]) <= 1e-9 * f[1], (r["roofline"], f)
best = bpt * r["avg_ts"] / 1e9 / r["bandwidth_gbs"]
assert abs(r["roofline_best"] - best) <= 1e-6 * best, (r["roofline_best"], best)
# the probes map 256 MiB each: the peak RSS of the run without them, give or take, shows they did not count
assert 0 < r["peak_rss_bytes"] < g["peak_rss_bytes"] + (128 << 20), (r["peak_rss_bytes"], g["peak_rss_bytes"])
EOF
fi

# ---- -o csv ---------------------------------------------------------------------------
if expect_rc 0 "bench csv" -- bench -m "$M" -p 16 -n 4 -r 2 -t 1 $BW -o csv; then
    python3 - "$T/out" <<'EOF' && ok "bench csv parses" || fail "bench csv parses"
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
assert len(rows) == 2, len(rows)
for r in rows:
    assert float(r["avg_ts"]) > 0 and int(r["model_size"]) > 0
    assert len(r["samples_ts"].split(";")) == 2
    assert r["model_filename"] == "tiny-qwen3.gguf"
    assert r["test"] in ("pp16", "tg4")
EOF
fi

# ---- -o md (default) ---------------------------------------------------------------------
if expect_rc 0 "bench md" -- bench -m "$M" -p 16 -n 4 -r 2 -t 1 -ub 8 $BW; then
    python3 - "$T/out" <<'EOF' && ok "bench md table" || fail "bench md table"
import sys
lines = [l for l in open(sys.argv[1]) if l.startswith("|")]
assert len(lines) == 4, lines
cells = [len(l.split("|")) for l in lines]
assert len(set(cells)) == 1, cells
hdr = [c.strip() for c in lines[0].split("|")]
for k in ("model", "size", "params", "backend", "threads", "n_ubatch", "test", "t/s", "roofline", "peak RSS"):
    assert k in hdr, (k, hdr)
row = [c.strip() for c in lines[2].split("|")]
assert row[hdr.index("test")] == "pp16", row
ts = row[hdr.index("t/s")]
assert "±" in ts and float(ts.split("±")[0]) > 0, ts
EOF
fi

# ---- --compare ------------------------------------------------------------------------------
if [ -f "$T/a.json" ] && [ -f "$T/b.jsonl" ]; then
    if expect_rc 0 "bench compare" -- bench --compare "$T/a.json" "$T/a.json"; then
        grep -q "1.000" "$T/out" && grep -q "+0.0%" "$T/out" && ok "compare same file: ratio 1" ||
            fail "compare same file: $(cat "$T/out")"
    fi
    # a.json (t=1, d=0) vs b.jsonl: pp16/tg4 vs pp8/tg2 do not match
    expect_rc 1 "bench compare without matches" -- bench --compare "$T/a.json" "$T/b.jsonl"
fi
expect_rc 1 "bench compare missing file" -- bench --compare "$T/none.json" "$T/none2.json"

# ---- --bandwidth ------------------------------------------------------------------------------
if expect_rc 0 "bench bandwidth" -- bench --bandwidth -t 1 --bandwidth-mib 64; then
    grep -Eq "threads +1: +[0-9.]+ GB/s" "$T/out" && ok "bandwidth printed" || fail "bandwidth output: $(cat "$T/out")"
    [ -s "$T/cache/moerun/bandwidth.tsv" ] && ok "bandwidth cached" || fail "no bandwidth cache file"
fi

# ---- bad flags: exit 2 ---------------------------------------------------------------------------
expect_rc 2 "bench no model" -- bench -p 16
expect_rc 2 "bench unknown flag" -- bench -m "$M" --frobnicate
expect_rc 2 "bench bad list" -- bench -m "$M" -t 1,x
expect_rc 2 "bench bad -o" -- bench -m "$M" -o yaml
expect_rc 2 "bench bad -ctk" -- bench -m "$M" -ctk q9_9
expect_rc 2 "bench bad -pg" -- bench -m "$M" -pg 16
expect_rc 2 "bench missing value" -- bench -m "$M" -r
expect_rc 2 "bench bad -r" -- bench -m "$M" -r 0
expect_rc 2 "bench no tests" -- bench -m "$M" -p 0 -n 0 $BW
expect_rc 0 "bench help" -- bench --help
expect_rc 1 "bench missing model file" -- bench -m "$T/nope.gguf" -p 8 -n 0 -r 1 $BW

# ---- sweep ------------------------------------------------------------------------------------
if expect_rc 0 "sweep" -- sweep -m "$M" -c 64 -ub 16 -n 4 -t 1 --json "$T/s.json" --svg "$T/s.svg"; then
    python3 - "$T/out" "$T/s.json" "$T/s.svg" <<'EOF' && ok "sweep table, json, svg" || fail "sweep table, json, svg"
import json, sys
import xml.etree.ElementTree as ET
lines = [l for l in open(sys.argv[1]) if l.startswith("|")]
hdr = [c.strip() for c in lines[0].split("|")[1:-1]]
assert hdr == ["PP", "TG", "N_KV", "T_PP s", "S_PP t/s", "T_TG s", "S_TG t/s"], hdr
rows = [[c.strip() for c in l.split("|")[1:-1]] for l in lines[2:]]
assert [int(r[2]) for r in rows] == [0, 16, 32, 48], rows
assert all(int(r[0]) == 16 and int(r[1]) == 4 and float(r[4]) > 0 and float(r[6]) > 0 for r in rows), rows
d = json.load(open(sys.argv[2]))
assert [r["n_kv"] for r in d["rows"]] == [0, 16, 32, 48]
assert all(r["speed_pp"] > 0 and r["speed_tg"] > 0 and r["t_pp"] > 0 for r in d["rows"])
for k in ("params", "build", "machine", "date", "model_filename", "title"):
    assert k in d, k
assert d["params"]["n_ubatch"] == 16 and d["params"]["n_ctx"] == 64 and d["params"]["n_gen"] == 4
root = ET.parse(sys.argv[3]).getroot()
assert root.tag.endswith("svg"), root.tag
ns = "{http://www.w3.org/2000/svg}"
assert len(root.findall(f".//{ns}polyline")) == 2
texts = " ".join(t.text or "" for t in root.iter(f"{ns}text"))
assert "KV cache depth" in texts and "tokens/s" in texts and "tiny-qwen3.gguf" in texts, texts
EOF
fi
if expect_rc 0 "sweep jsonl" -- sweep -m "$M" -c 32 -ub 16 -n 2 -t 1 -o jsonl; then
    python3 -c "
import json,sys
rows=[json.loads(l) for l in open('$T/out') if l.strip()]
assert [r['n_kv'] for r in rows]==[0,16], rows
" && ok "sweep jsonl rows" || fail "sweep jsonl rows"
fi
if [ -f "$T/s.json" ]; then
    expect_rc 0 "sweep --plot" -- sweep --plot "$T/s.json" "$T/s.json" --svg "$T/p.svg" &&
        python3 -c "import xml.etree.ElementTree as E; E.parse('$T/p.svg')" && ok "plot svg parses" ||
        fail "plot svg"
fi
expect_rc 2 "sweep no model" -- sweep -c 64
expect_rc 2 "sweep bad -o" -- sweep -m "$M" -o xml
expect_rc 2 "sweep --plot without --svg" -- sweep --plot "$T/s.json"
expect_rc 2 "sweep ctx smaller than ubatch" -- sweep -m "$M" -c 16 -ub 32 -t 1

if [ "$fails" -ne 0 ]; then
    echo "$fails check(s) failed"
    exit 1
fi
echo "all bench/sweep checks passed"
