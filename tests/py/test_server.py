#!/usr/bin/env python3
"""test_server.py — acceptance tests of `moerun serve` (run by ctest as py_test_server):
starts the server on a free loopback port with a tiny fixture model (-np 4 -c 2048) and
checks the OpenAI routes with curl, the official openai client and stdlib http.client,
/health and /metrics, 8 concurrent streams, disconnect cancellation, bad input, context
overflow, the queue bound and SIGTERM. Exits 77 when the fixtures or openai are absent.
The helpers at the top are shared with tests/py/load_server.py."""
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
def skip(msg):
    print("SKIP: " + msg)
    sys.exit(77)


def find_model():
    shared = os.environ.get("MOERUN_SHARED", "../shared")
    for name in ("tiny-qwen3moe.gguf", "tiny-qwen3.gguf"):
        p = os.path.join(shared, "fixtures", "models", name)
        if os.path.exists(p):
            return p
    return None


def find_bin():
    b = os.environ.get("MOERUN_BIN")
    if b and os.path.exists(b):
        return b
    return None


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Server:
    """A `moerun serve` child process; stderr goes to a temp file (a pipe
    could fill up and block the server)."""

    def __init__(self, binary, model, args=(), startup_timeout=60):
        self.port = free_port()
        self.log = tempfile.NamedTemporaryFile(prefix="moerun-serve-", suffix=".log", delete=False)
        cmd = [binary, "serve", "-m", model, "--host", "127.0.0.1", "--port", str(self.port)] + list(args)
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=self.log)
        deadline = time.time() + startup_timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("server exited with %d:\n%s" % (self.proc.returncode, self.log_text()))
            try:
                st, _, body = request(self.port, "GET", "/health", timeout=2)
                if st == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        self.kill()
        raise RuntimeError("server did not become healthy in %ds:\n%s" % (startup_timeout, self.log_text()))

    def log_text(self):
        with open(self.log.name, "r", errors="replace") as f:
            return f.read()

    def stop(self, sig=15, timeout=15):
        """Send sig and wait; returns the exit code (None if it had to be killed)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                return None
        return self.proc.returncode

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def cleanup(self):
        self.kill()
        try:
            os.unlink(self.log.name)
        except OSError:
            pass

    def rss_kb(self):
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0


def request(port, method, path, body=None, headers=None, timeout=60):
    """One HTTP request; body may be a dict (sent as JSON), str or bytes.
    Returns (status, headers dict lower-cased, body bytes)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        h = {"Content-Type": "application/json"}
        h.update(headers or {})
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
        if isinstance(body, str):
            body = body.encode()
        c.request(method, path, body=body, headers=h)
        r = c.getresponse()
        data = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data
    finally:
        c.close()


def post_json(port, path, body, timeout=120):
    st, h, data = request(port, "POST", path, body, timeout=timeout)
    try:
        return st, json.loads(data)
    except ValueError:
        return st, {"_raw": data.decode(errors="replace")}


def parse_sse(data):
    """SSE body -> (list of JSON events, saw_done)."""
    events, done = [], False
    for block in data.decode().split("\n\n"):
        block = block.strip()
        if not block:
            continue
        assert block.startswith("data: "), block[:80]
        payload = block[6:]
        if payload == "[DONE]":
            done = True
        else:
            events.append(json.loads(payload))
    return events, done


def stream(port, path, body, timeout=120):
    """A streaming request read to the end: (status, events, saw_done)."""
    body = dict(body, stream=True)
    st, h, data = request(port, "POST", path, body, timeout=timeout)
    if st != 200:
        return st, [json.loads(data)], False
    assert h.get("content-type", "").startswith("text/event-stream"), h
    ev, done = parse_sse(data)
    return st, ev, done


def chunk_text(ev):
    """Text of one stream chunk (chat delta content or completion text)."""
    if not ev.get("choices"):
        return ""
    c = ev["choices"][0]
    if "delta" in c:
        return c["delta"].get("content") or ""
    return c.get("text") or ""


def metrics(port):
    """/metrics -> {name{labels}: float}."""
    st, _, data = request(port, "GET", "/metrics", timeout=10)
    assert st == 200
    out = {}
    for line in data.decode().splitlines():
        if not line or line.startswith("#"):
            continue
        k, v = line.rsplit(" ", 1)
        out[k] = float(v)
    return out


def health(port):
    st, _, data = request(port, "GET", "/health", timeout=10)
    return json.loads(data)


def wait_idle(port, timeout=5.0):
    """/health once every slot is idle and the KV cache empty (the engine
    frees a slot just after the client saw its last bytes), or the last
    /health seen when the timeout passes."""
    t0 = time.time()
    while True:
        h = health(port)
        if (h["slots_busy"] == 0 and h["kv_cache_tokens"] == 0 and h["queue_length"] == 0) or time.time() - t0 > timeout:
            return h
        time.sleep(0.01)


def open_stream(port, path, body):
    """Starts a streaming request on a raw socket and returns the socket after
    the response headers arrived (for disconnect tests)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    data = json.dumps(dict(body, stream=True)).encode()
    s.sendall(("POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
               "Content-Length: %d\r\nConnection: close\r\n\r\n" % (path, len(data))).encode() + data)
    buf = b""
    while b"\r\n\r\n" not in buf:
        got = s.recv(4096)
        if not got:
            break
        buf += got
    return s, buf


# ---- the acceptance tests ------------------------------------------------------------
FAILS = []


def check(cond, what):
    if cond:
        print("ok   " + what)
    else:
        print("FAIL " + what)
        FAILS.append(what)
    return cond


def usage_ok(u, max_tokens=None):
    good = u and u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"] and u["prompt_tokens"] > 0
    if max_tokens is not None:
        good = good and u["completion_tokens"] == max_tokens
    return bool(good)


CHAT = "/v1/chat/completions"
COMPL = "/v1/completions"
MSG = [{"role": "user", "content": "Tell me a story about a dragon."}]


def t_basic(port):
    h = health(port)
    check(h["status"] == "ok" and h["slots_total"] == 4 and h["slots_idle"] == 4 and h["kv_cache_tokens"] == 0
          and h["kv_cache_size"] == 2048 and h["n_ctx_slot"] == 512, "health at rest: %s" % h)
    st, r = post_json(port, CHAT, {"model": "tiny", "messages": MSG, "max_tokens": 8})
    check(st == 200 and r["object"] == "chat.completion" and r["id"].startswith("chatcmpl-")
          and isinstance(r["created"], int) and r["model"]
          and r["choices"][0]["message"]["role"] == "assistant"
          and isinstance(r["choices"][0]["message"]["content"], str)
          and r["choices"][0]["finish_reason"] in ("stop", "length")
          and usage_ok(r["usage"]) and r["usage"]["completion_tokens"] <= 8, "chat non-streaming: %s" % r)
    st, r = post_json(port, COMPL, {"prompt": "The quick brown fox", "max_tokens": 6, "ignore_eos": True})
    check(st == 200 and r["object"] == "text_completion" and isinstance(r["choices"][0]["text"], str)
          and r["choices"][0]["finish_reason"] == "length" and usage_ok(r["usage"], 6), "completion: %s" % r)
    st, ev, done = stream(port, COMPL, {"prompt": "The quick brown fox", "max_tokens": 5, "ignore_eos": True,
                                        "stream_options": {"include_usage": True}})
    check(st == 200 and done and ev[-1]["choices"] == [] and usage_ok(ev[-1]["usage"], 5)
          and ev[-2]["choices"][0]["finish_reason"] == "length", "completion streaming")
    st, _, data = request(port, "GET", "/v1/models")
    m = json.loads(data)
    check(st == 200 and m["object"] == "list" and m["data"][0]["object"] == "model" and m["data"][0]["id"],
          "/v1/models: %s" % m)
    st, r = post_json(port, "/tokenize", {"content": "Hello world", "with_pieces": True})
    check(st == 200 and len(r["tokens"]) >= 1 and "".join(p["piece"] for p in r["tokens"]) == "Hello world",
          "/tokenize with pieces: %s" % r)
    ids = [p["id"] for p in r["tokens"]]
    st, r = post_json(port, "/detokenize", {"tokens": ids})
    check(st == 200 and r["content"] == "Hello world", "/detokenize round trip: %s" % r)


def t_curl(port):
    if not shutil.which("curl"):
        print("note: curl not installed; curl checks skipped")
        return
    url = "http://127.0.0.1:%d%s" % (port, CHAT)
    body = json.dumps({"model": "x", "messages": MSG, "max_tokens": 6, "ignore_eos": True})
    out = subprocess.run(["curl", "-sS", "--max-time", "60", "-H", "Content-Type: application/json", "-d", body, url],
                         capture_output=True, timeout=90)
    r = json.loads(out.stdout)
    check(out.returncode == 0 and r["object"] == "chat.completion" and usage_ok(r["usage"], 6), "curl non-streaming")
    body = json.dumps({"messages": MSG, "max_tokens": 6, "ignore_eos": True, "stream": True,
                       "stream_options": {"include_usage": True}})
    out = subprocess.run(["curl", "-sSN", "--max-time", "60", "-H", "Content-Type: application/json", "-d", body, url],
                         capture_output=True, timeout=90)
    ev, done = parse_sse(out.stdout)
    check(out.returncode == 0 and done and ev[0]["choices"][0]["delta"].get("role") == "assistant"
          and all(e["object"] == "chat.completion.chunk" for e in ev) and usage_ok(ev[-1]["usage"], 6)
          and ev[-2]["choices"][0]["finish_reason"] == "length", "curl streaming (SSE, [DONE], usage)")


def t_openai(port):
    import openai
    client = openai.OpenAI(base_url="http://127.0.0.1:%d/v1" % port, api_key="none", max_retries=0, timeout=60)
    r = client.chat.completions.create(model="gpt-4o", messages=MSG, max_tokens=7, temperature=0.5, top_p=0.9,
                                       seed=1, extra_body={"ignore_eos": True})
    check(r.choices[0].finish_reason == "length" and r.usage.completion_tokens == 7
          and isinstance(r.choices[0].message.content, str), "openai client: chat (unknown model name accepted)")
    n, text, usage, finish = 0, "", None, None
    for ch in client.chat.completions.create(model="x", messages=MSG, max_tokens=9, stream=True,
                                             stream_options={"include_usage": True},
                                             extra_body={"ignore_eos": True}):
        n += 1
        if ch.usage:
            usage = ch.usage
        if ch.choices:
            text += ch.choices[0].delta.content or ""
            finish = ch.choices[0].finish_reason or finish
    check(usage is not None and usage.completion_tokens == 9 and finish == "length" and n >= 3,
          "openai client: chat streaming with include_usage")
    r = client.completions.create(model="x", prompt="Once upon a time", max_tokens=4,
                                  extra_body={"ignore_eos": True})
    check(r.choices[0].finish_reason == "length" and r.usage.completion_tokens == 4, "openai client: completions")
    ms = client.models.list()
    check(len(ms.data) == 1 and ms.data[0].id, "openai client: models.list")
    try:
        client.chat.completions.create(model="x", messages=MSG, n=2)
        check(False, "openai client: n=2 rejected")
    except openai.BadRequestError as e:
        check(e.status_code == 400, "openai client: n=2 -> BadRequestError")


def t_stop(port):
    base = {"prompt": "The quick brown fox", "max_tokens": 24, "temperature": 0, "ignore_eos": True}
    st, ev, done = stream(port, COMPL, base)
    chunks = [chunk_text(e) for e in ev if e.get("choices")]
    full = "".join(chunks)
    stop = None
    for i in range(len(chunks) - 1):  # a stop string that spans a token boundary
        if chunks[i] and chunks[i + 1]:
            cand = chunks[i][-1:] + chunks[i + 1][:2]
            if cand.strip():
                stop = cand
                break
    if not check(stop is not None, "stop test: found a stop string spanning tokens in %r" % full):
        return
    want = full[:full.find(stop)]
    st, r = post_json(port, COMPL, dict(base, stop=[stop, "zz-never-zz"]))
    check(st == 200 and r["choices"][0]["text"] == want and r["choices"][0]["finish_reason"] == "stop",
          "stop string cut (non-streaming): %r -> %r" % (stop, r["choices"][0]["text"]))
    st, ev, done = stream(port, COMPL, dict(base, stop=stop))
    got = "".join(chunk_text(e) for e in ev)
    fin = [e["choices"][0]["finish_reason"] for e in ev if e.get("choices") and e["choices"][0]["finish_reason"]]
    check(got == want and fin == ["stop"] and done, "stop string across token boundary (streaming): %r" % got)


def t_live_stats(port):
    # the previous test's slot may still be releasing: /health would show its
    # busy slot, and /metrics a moment later an idle server
    wait_idle(port)
    m0 = metrics(port)
    res = {}

    def run():
        res["r"] = stream(port, COMPL, {"prompt": "Once upon a time", "max_tokens": 400, "ignore_eos": True,
                                        "stream_options": {"include_usage": True}})

    th = threading.Thread(target=run)
    th.start()
    seen = None
    for _ in range(200):
        h = health(port)
        if h["slots_busy"] >= 1 and h["kv_cache_tokens"] > 0:
            seen = h
            break
        time.sleep(0.02)
    for _ in range(50):
        mid = metrics(port)
        if mid["moerun_slots_busy"] >= 1 and mid["moerun_kv_cache_tokens"] > 0:
            break
        time.sleep(0.02)
    th.join(120)
    check(seen is not None and 0 < seen["kv_cache_usage"] < 1, "/health shows a busy slot and KV usage while running")
    check(mid["moerun_slots_busy"] >= 1 and mid["moerun_kv_cache_tokens"] > 0, "/metrics shows slots busy and KV while running")
    # the request counter is bumped in the server's request-completed callback,
    # which may run just after the client has read the end of the stream
    for _ in range(250):
        m1 = metrics(port)
        if m1['moerun_requests_total{status="200"}'] > m0['moerun_requests_total{status="200"}']:
            break
        time.sleep(0.02)
    st, ev, done = res["r"]
    check(done and usage_ok(ev[-1]["usage"], 400), "long stream completes with usage")
    check(m1["moerun_generated_tokens_total"] - m0["moerun_generated_tokens_total"] >= 400
          and m1['moerun_requests_total{status="200"}'] > m0['moerun_requests_total{status="200"}']
          and m1["moerun_prompt_tokens_total"] > m0["moerun_prompt_tokens_total"]
          and m1["moerun_tokens_per_second"] > 0, "/metrics counters advance")
    h = wait_idle(port)
    check(h["slots_busy"] == 0 and h["kv_cache_tokens"] == 0, "slot and KV freed after the request: %s" % h)


def t_concurrent(port):
    st, ref = post_json(port, CHAT, {"messages": MSG, "max_tokens": 1})
    n_prompt = ref["usage"]["prompt_tokens"]
    results = [None] * 8

    def run(i):
        try:
            results[i] = stream(port, CHAT, {"messages": MSG, "max_tokens": 20 + 5 * i, "ignore_eos": True,
                                             "stream_options": {"include_usage": True}})
        except Exception as e:  # noqa: BLE001
            results[i] = e

    ths = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    [t.start() for t in ths]
    [t.join(180) for t in ths]
    ok = 0
    for i, r in enumerate(results):
        if isinstance(r, tuple):
            st, ev, done = r
            u = ev[-1].get("usage")
            if st == 200 and done and u and u["completion_tokens"] == 20 + 5 * i and u["prompt_tokens"] == n_prompt \
                    and u["total_tokens"] == n_prompt + 20 + 5 * i:
                ok += 1
            else:
                print("  client %d: status %s done %s usage %s" % (i, st, done, u))
        else:
            print("  client %d: %r" % (i, r))
    check(ok == 8, "8 concurrent streaming clients complete with correct usage (%d/8)" % ok)
    h = wait_idle(port)
    check(h["slots_busy"] == 0 and h["kv_cache_tokens"] == 0 and h["queue_length"] == 0, "all slots free afterwards: %s" % h)


def t_disconnect(port):
    m0 = metrics(port)
    s, head = open_stream(port, CHAT, {"messages": MSG, "max_tokens": 100000, "ignore_eos": True})
    got = b""
    for _ in range(50):
        got += s.recv(4096)
        if got.count(b"data: ") >= 3:
            break
    busy = health(port)["slots_busy"]
    s.close()
    t0 = time.time()
    freed = None
    while time.time() - t0 < 3:
        h = health(port)
        if h["slots_busy"] == 0 and h["kv_cache_tokens"] == 0:
            freed = time.time() - t0
            break
        time.sleep(0.01)
    m1 = metrics(port)
    check(b" 200 " in head.split(b"\r\n")[0] and busy == 1, "stream started (slot busy)")
    check(freed is not None, "disconnected stream frees its slot (%.3f s)" % (freed if freed is not None else -1))
    check(m1["moerun_requests_cancelled_total"] == m0["moerun_requests_cancelled_total"] + 1,
          "generation cancelled (not finished)")
    # a non-streaming request whose client leaves is cancelled too
    c = socket.create_connection(("127.0.0.1", port))
    body = json.dumps({"prompt": "x", "max_tokens": 100000, "ignore_eos": True}).encode()
    c.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
              % len(body) + body)
    time.sleep(0.3)
    c.close()
    t0 = time.time()
    while time.time() - t0 < 3 and health(port)["slots_busy"]:
        time.sleep(0.01)
    check(health(port)["slots_busy"] == 0 and metrics(port)["moerun_requests_cancelled_total"]
          == m0["moerun_requests_cancelled_total"] + 2, "disconnected non-streaming request is cancelled")


def err_of(st, body):
    e = body.get("error") if isinstance(body, dict) else None
    return e if isinstance(e, dict) and isinstance(e.get("message"), str) and "type" in e and "code" in e else None


def t_bad_input(port):
    cases = [
        ("malformed JSON", CHAT, b'{"messages": [', 400),
        ("not an object", CHAT, b"[1,2,3]", 400),
        ("empty body", CHAT, b"", 400),
        ("missing messages", CHAT, {"model": "x"}, 400),
        ("messages not an array", CHAT, {"messages": "hi"}, 400),
        ("message without role", CHAT, {"messages": [{"content": "hi"}]}, 400),
        ("max_tokens a string", CHAT, {"messages": MSG, "max_tokens": "ten"}, 400),
        ("temperature a string", CHAT, {"messages": MSG, "temperature": "hot"}, 400),
        ("stream not a bool", CHAT, {"messages": MSG, "stream": "yes"}, 400),
        ("stop a number", CHAT, {"messages": MSG, "stop": 3}, 400),
        ("n = 2", CHAT, {"messages": MSG, "n": 2}, 400),
        ("missing prompt", COMPL, {"max_tokens": 3}, 400),
        ("prompt a number", COMPL, {"prompt": 3}, 400),
        ("tokenize without content", "/tokenize", {}, 400),
        ("detokenize bad id", "/detokenize", {"tokens": [10 ** 9]}, 400),
    ]
    for name, path, body, want in cases:
        st, h, data = request(port, "POST", path, body)
        try:
            j = json.loads(data)
        except ValueError:
            j = None
        check(st == want and err_of(st, j) and j["error"]["type"] == "invalid_request_error",
              "bad input: %s -> %d %s" % (name, st, data[:120]))
    big = b'{"messages":[{"role":"user","content":"' + b"a" * (5 << 20) + b'"}]}'
    st, h, data = request(port, "POST", CHAT, big)
    check(st == 413 and err_of(st, json.loads(data)), "body over 4 MiB -> 413")
    st, h, data = request(port, "GET", "/v1/nope")
    check(st == 404 and err_of(st, json.loads(data)), "unknown route -> 404")
    st, h, data = request(port, "GET", CHAT)
    check(st == 405 and err_of(st, json.loads(data)) and "allow" in h, "GET on a POST route -> 405")
    st, h, data = request(port, "POST", "/health", {})
    check(st == 405, "POST on a GET route -> 405")
    st, r = post_json(port, CHAT, {"model": "no-such-model", "messages": MSG, "max_tokens": 2})
    check(st == 200 and r["model"], "unknown model name accepted")
    st, r = post_json(port, CHAT, {"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
                                   "max_tokens": 2, "temperature": 0, "stop": ["\n"], "seed": 5, "top_k": 5,
                                   "min_p": 0.1, "presence_penalty": 0.5, "frequency_penalty": 0.5})
    check(st == 200, "content parts and every sampling field accepted")
    check(health(port)["status"] == "ok", "server still healthy after bad input")


def t_context(port):
    st, r = post_json(port, COMPL, {"prompt": "hello " * 700, "max_tokens": 4})
    e = err_of(st, r)
    check(st == 400 and e and e["code"] == "context_length_exceeded", "prompt over the slot context -> 400 context_length_exceeded")
    st, r = post_json(port, CHAT, {"messages": [{"role": "user", "content": "word " * 700}]})
    e = err_of(st, r)
    check(st == 400 and e and e["code"] == "context_length_exceeded", "chat over the slot context -> 400")
    st, r = post_json(port, COMPL, {"prompt": "Once", "max_tokens": 100000, "ignore_eos": True})
    u = r.get("usage", {})
    check(st == 200 and r["choices"][0]["finish_reason"] == "length" and 512 <= u.get("total_tokens", 0) <= 513,
          "generation reaching the slot context ends with length: %s" % u)
    st, ev, done = stream(port, CHAT, {"messages": MSG, "max_tokens": 100000, "ignore_eos": True,
                                       "stream_options": {"include_usage": True}})
    fin = [e["choices"][0]["finish_reason"] for e in ev if e.get("choices") and e["choices"][0]["finish_reason"]]
    check(done and fin == ["length"] and 512 <= ev[-1]["usage"]["total_tokens"] <= 513, "streaming to the context end")
    h = wait_idle(port)
    check(h["slots_busy"] == 0 and h["kv_cache_tokens"] == 0, "slot freed after reaching the context: %s" % h)
    st, r = post_json(port, CHAT, {"messages": MSG, "max_tokens": 3})
    check(st == 200, "server still serves after context overflow")


def t_queue_and_sigterm(binary, model):
    srv = Server(binary, model, ["-np", "1", "-c", "4096", "--max-queue", "1"])
    try:
        port = srv.port
        body = {"messages": MSG, "max_tokens": 100000, "ignore_eos": True}
        s1, _ = open_stream(port, CHAT, body)  # holds the only slot
        s2, _ = None, None
        for _ in range(100):
            if health(port)["slots_busy"] == 1:
                break
            time.sleep(0.01)
        s2 = socket.create_connection(("127.0.0.1", port))  # queued
        data = json.dumps(dict(body, stream=True)).encode()
        s2.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                   b"Content-Length: %d\r\n\r\n" % len(data) + data)
        for _ in range(100):
            if health(port)["queue_length"] == 1:
                break
            time.sleep(0.01)
        st, h, data = request(port, "POST", CHAT, {"messages": MSG, "max_tokens": 2})
        check(st == 503 and "retry-after" in h and err_of(st, json.loads(data)), "queue full -> 503 with Retry-After")
        s2.close()
        t0 = time.time()
        while time.time() - t0 < 3 and health(port)["queue_length"] != 0:
            time.sleep(0.01)
        check(health(port)["queue_length"] == 0, "a queued client that leaves gives its queue place back")
        # SIGTERM with a stream running: exit 0 within the drain time
        t0 = time.time()
        rc = srv.stop(signal.SIGTERM, timeout=15)
        dt = time.time() - t0
        rest = b""
        s1.settimeout(5)
        try:
            while True:
                got = s1.recv(65536)
                if not got:
                    break
                rest += got
        except OSError:
            pass
        s1.close()
        check(rc == 0 and dt < 10, "SIGTERM drains and exits 0 (%.2f s, rc %s)" % (dt, rc))
        log = srv.log_text()
        check("draining" in log and "stopped" in log, "shutdown logged")
        try:
            request(port, "GET", "/health", timeout=2)
            check(False, "no longer listening after exit")
        except OSError:
            check(True, "no longer listening after exit")
    finally:
        srv.cleanup()


def main():
    binary, model = find_bin(), find_model()
    if not binary:
        skip("MOERUN_BIN not set or missing")
    if not model:
        skip("fixtures/models/tiny-qwen3moe.gguf not found (set MOERUN_SHARED)")
    try:
        import openai  # noqa: F401
    except ImportError:
        skip("the openai Python package is not installed (pip install openai)")
    st = subprocess.run([binary, "serve", "--help"], capture_output=True)
    if b"not available" in st.stderr or b"no server" in st.stderr:
        skip("this build has no server")
    srv = Server(binary, model, ["-np", "4", "-c", "2048"])
    try:
        port = srv.port
        for t in (t_basic, t_curl, t_openai, t_stop, t_live_stats, t_concurrent, t_disconnect, t_bad_input,
                  t_context):
            print("-- %s" % t.__name__)
            try:
                t(port)
            except Exception as e:  # noqa: BLE001
                import traceback
                traceback.print_exc()
                check(False, "%s raised %r" % (t.__name__, e))
        lines = [l for l in srv.log_text().splitlines() if l.startswith("moerun serve: ")]
        check(any("listening on http://127.0.0.1:" in l and "slots=4" in l for l in lines), "startup line")
        check(any(" POST /v1/chat/completions 200 prompt=" in l and " ms" in l for l in lines), "per-request log lines")
        rc = srv.stop(signal.SIGINT)
        check(rc == 0 and "SIGINT received" in srv.log_text(), "SIGINT on an idle server exits 0")
    finally:
        if FAILS:
            print("---- server log (tail) ----\n" + "\n".join(srv.log_text().splitlines()[-40:]))
        srv.cleanup()
    print("-- t_queue_and_sigterm")
    t_queue_and_sigterm(binary, model)
    print("%d failed" % len(FAILS))
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
