#!/usr/bin/env python3
"""test_svg.py — the sweep chart is well-formed SVG and carries what a reader needs.

Writes synthetic sweep JSON files (no model needed), renders them with
`moerun sweep --plot A.json [B.json] --svg out.svg`, parses the result with
xml.etree and checks: an <svg> root with a viewBox, one PP and one TG line per
series, every plotted point inside its panel, axis labels with units, a legend
entry per series, the title, and XML escaping of odd characters in labels.
Skips (exit 77) when the moerun binary is not available.
"""
import json
import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

NS = "{http://www.w3.org/2000/svg}"


def fail(msg):
    print("FAIL:", msg)
    sys.exit(1)


def write_sweep(path, label, pp0, tg0, n=12, ub=512):
    rows = []
    for i in range(n):
        n_kv = i * ub
        rows.append({"pp": ub, "tg": 128, "n_kv": n_kv, "t_pp": ub / (pp0 / (1 + 0.05 * i)),
                     "speed_pp": pp0 / (1 + 0.05 * i), "t_tg": 128 / (tg0 / (1 + 0.03 * i)),
                     "speed_tg": tg0 / (1 + 0.03 * i)})
    with open(path, "w") as f:
        json.dump({"label": label, "title": f"{label}: sweep -c {n * ub} -ub {ub}",
                   "subtitle": "test machine", "rows": rows}, f)


def render(binary, out, *inputs):
    r = subprocess.run([binary, "sweep", "--plot", *inputs, "--svg", out], capture_output=True, text=True)
    if r.returncode != 0:
        fail(f"moerun sweep --plot exited {r.returncode}: {r.stderr.strip()}")
    try:
        return ET.parse(out).getroot()
    except ET.ParseError as e:
        fail(f"{out} is not well-formed XML: {e}")


def check_chart(root, n_series, labels):
    if root.tag != NS + "svg":
        fail(f"root is {root.tag}, expected svg")
    vb = [float(x) for x in root.get("viewBox", "").split()]
    if len(vb) != 4 or vb[2] <= 0 or vb[3] <= 0:
        fail(f"bad viewBox {root.get('viewBox')}")
    lines = root.findall(f".//{NS}polyline")
    if len(lines) != 2 * n_series:
        fail(f"{len(lines)} polylines, expected {2 * n_series}")
    for g in ("panel-pp", "panel-tg"):
        panel = root.find(f".//{NS}g[@id='{g}']")
        if panel is None:
            fail(f"no {g}")
        frame = panel.find(f"{NS}rect")
        x0, y0 = float(frame.get("x")), float(frame.get("y"))
        x1, y1 = x0 + float(frame.get("width")), y0 + float(frame.get("height"))
        for pl in panel.findall(f"{NS}polyline"):
            pts = [tuple(map(float, p.split(","))) for p in pl.get("points").split()]
            if len(pts) < 2:
                fail(f"{g}: line with {len(pts)} points")
            for x, y in pts:
                if not (x0 - 0.5 <= x <= x1 + 0.5 and y0 - 0.5 <= y <= y1 + 0.5):
                    fail(f"{g}: point {x},{y} outside the panel {x0},{y0}-{x1},{y1}")
            xs = [p[0] for p in pts]
            if xs != sorted(xs):
                fail(f"{g}: x not increasing")
    texts = [t.text or "" for t in root.iter(f"{NS}text")]
    alltext = " | ".join(texts)
    for want in ("KV cache depth N_KV (tokens)", "PP speed (tokens/s)", "TG speed (tokens/s)"):
        if want not in texts:
            fail(f"missing axis label {want!r} in {alltext}")
    legend = root.find(f".//{NS}g[@id='legend']")
    if legend is None:
        fail("no legend")
    ltexts = [t.text for t in legend.iter(f"{NS}text")]
    for l in labels:
        if l not in ltexts:
            fail(f"legend lacks {l!r}: {ltexts}")
    # ticks: numeric labels on both axes
    nums = [t for t in texts if t.replace(".", "").replace("k", "").isdigit()]
    if len(nums) < 6:
        fail(f"too few tick labels: {nums}")


def main():
    binary = os.environ.get("MOERUN_BIN", "./build/moerun")
    if not os.access(binary, os.X_OK):
        print(f"SKIP: moerun binary {binary} not found (set MOERUN_BIN)")
        return 77
    with tempfile.TemporaryDirectory() as d:
        a, b = os.path.join(d, "a.json"), os.path.join(d, "b.json")
        write_sweep(a, "model-a.gguf (t=8)", 400.0, 40.0)
        write_sweep(b, 'odd <label> & "quotes"', 300.0, 55.0, n=8)
        root = render(binary, os.path.join(d, "one.svg"), a)
        check_chart(root, 1, ["model-a.gguf (t=8)"])
        title = " ".join(t.text or "" for t in root.iter(f"{NS}text"))
        if "sweep -c 6144 -ub 512" not in title or "test machine" not in title:
            fail(f"title/subtitle missing: {title}")
        root = render(binary, os.path.join(d, "two.svg"), a, b)
        check_chart(root, 2, ["model-a.gguf (t=8)", 'odd <label> & "quotes"'])
    print("ok: sweep SVG charts are well-formed and labelled")
    return 0


if __name__ == "__main__":
    sys.exit(main())
