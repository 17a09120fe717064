#!/usr/bin/env python3
"""load_server.py — bounded load test of `moerun serve` (not run by ctest).

Starts the server on a free loopback port (tiny fixture model unless --model),
runs --requests requests from --clients concurrent keep-alive clients (a mix of
chat/completions, streaming and not, small max_tokens), and reports
requests/s, generated tokens/s, p50/p99 latency, errors by status and the RSS
growth of the server after a warm-up (VmRSS from /proc/PID/status).

  MOERUN_BIN=build/moerun MOERUN_SHARED=../shared python3 tests/py/load_server.py \
      [--requests 2000] [--clients 16] [--max-tokens 8] [--np 4] [--ctx 2048]
Exit status 1 when a request failed or RSS grew more than --max-rss-growth-mb.
"""
import argparse
import http.client
import json
import os
import random
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_server import Server, find_bin, find_model, parse_sse, skip  # noqa: E402

PROMPTS = ["Tell me a story about a dragon.", "What is the capital of France?", "Write a haiku about the sea.",
           "Explain mixture-of-experts models in one sentence.", "List three colours.", "Hello!"]


def one_request(conn, i, max_tokens, stream_frac, rng):
    chat = i % 2 == 0
    stream = rng.random() < stream_frac
    body = {"max_tokens": max_tokens, "temperature": 0.7, "seed": i, "ignore_eos": rng.random() < 0.5}
    if chat:
        body["messages"] = [{"role": "user", "content": rng.choice(PROMPTS)}]
        path = "/v1/chat/completions"
    else:
        body["prompt"] = rng.choice(PROMPTS)
        path = "/v1/completions"
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    conn.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
    r = conn.getresponse()
    data = r.read()
    if r.status != 200:
        return r.status, 0
    if stream:
        ev, done = parse_sse(data)
        if not done or not ev or "usage" not in ev[-1]:
            return -1, 0
        return 200, ev[-1]["usage"]["completion_tokens"]
    return 200, json.loads(data)["usage"]["completion_tokens"]


def run_phase(port, n_requests, n_clients, max_tokens, stream_frac, seed):
    lock = threading.Lock()
    nxt = [0]
    lat, statuses, toks = [], {}, [0]

    def client(cid):
        rng = random.Random(seed * 1000 + cid)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        while True:
            with lock:
                if nxt[0] >= n_requests:
                    break
                i = nxt[0]
                nxt[0] += 1
            t0 = time.perf_counter()
            try:
                st, nt = one_request(conn, i, max_tokens, stream_frac, rng)
            except (OSError, http.client.HTTPException, ValueError):
                st, nt = -2, 0
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
            dt = time.perf_counter() - t0
            with lock:
                lat.append(dt)
                statuses[st] = statuses.get(st, 0) + 1
                toks[0] += nt
        conn.close()

    t0 = time.perf_counter()
    ths = [threading.Thread(target=client, args=(c,)) for c in range(n_clients)]
    [t.start() for t in ths]
    [t.join() for t in ths]
    wall = time.perf_counter() - t0
    lat.sort()
    return {"wall_s": wall, "requests": len(lat), "statuses": statuses, "gen_tokens": toks[0],
            "req_per_s": len(lat) / wall, "tok_per_s": toks[0] / wall,
            "p50_ms": 1e3 * lat[len(lat) // 2] if lat else 0, "p99_ms": 1e3 * lat[min(len(lat) - 1, int(len(lat) * 0.99))] if lat else 0}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--max-tokens", type=int, default=8)
    ap.add_argument("--np", type=int, default=4)
    ap.add_argument("--ctx", type=int, default=2048)
    ap.add_argument("--stream-fraction", type=float, default=0.5)
    ap.add_argument("--model")
    ap.add_argument("--max-rss-growth-mb", type=float, default=64)
    ap.add_argument("--server-args", default="", help="extra flags for moerun serve")
    a = ap.parse_args()
    binary, model = find_bin(), a.model or find_model()
    if not binary or not model:
        skip("MOERUN_BIN or the fixture model is missing")
    srv = Server(binary, model, ["-np", str(a.np), "-c", str(a.ctx), "--max-queue", str(max(64, a.clients))]
                 + a.server_args.split())
    try:
        rss0 = srv.rss_kb()
        w = run_phase(srv.port, a.warmup, a.clients, a.max_tokens, a.stream_fraction, 1)
        rss1 = srv.rss_kb()
        r = run_phase(srv.port, a.requests, a.clients, a.max_tokens, a.stream_fraction, 2)
        rss2 = srv.rss_kb()
        rc = srv.stop(signal.SIGTERM)
        print("server: %s -np %d -c %d; clients %d; max_tokens %d; stream fraction %.2f"
              % (os.path.basename(model), a.np, a.ctx, a.clients, a.max_tokens, a.stream_fraction))
        print("warm-up: %d requests in %.1f s" % (w["requests"], w["wall_s"]))
        print("load:    %d requests in %.1f s  statuses %s" % (r["requests"], r["wall_s"], r["statuses"]))
        print("         %.1f requests/s, %.1f generated tokens/s, latency p50 %.1f ms, p99 %.1f ms"
              % (r["req_per_s"], r["tok_per_s"], r["p50_ms"], r["p99_ms"]))
        growth = (rss2 - rss1) / 1024.0
        print("RSS: start %.1f MiB, after warm-up %.1f MiB, after load %.1f MiB (growth after warm-up %+.1f MiB)"
              % (rss0 / 1024.0, rss1 / 1024.0, rss2 / 1024.0, growth))
        print("SIGTERM exit code: %s" % rc)
        bad = sum(v for k, v in r["statuses"].items() if k != 200) + sum(v for k, v in w["statuses"].items() if k != 200)
        ok = bad == 0 and growth <= a.max_rss_growth_mb and rc == 0
        print("RESULT: %s" % ("ok" if ok else "FAIL"))
        return 0 if ok else 1
    finally:
        srv.cleanup()


if __name__ == "__main__":
    sys.exit(main())
