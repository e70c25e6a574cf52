#!/usr/bin/env python3
"""Integration test of `strata node`: starts real nodes on loopback with a synthesized tiny
model and drives every endpoint over HTTP (stdlib only; streams are read as SSE line by line,
and once through `curl -N`).

usage: node_integration_test.py --strata PATH [--workdir DIR]
"""
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common"))
import front_door  # noqa: E402
import procs  # noqa: E402
from procs import check, free_port, summary, wait_for  # noqa: E402
from sse import read_sse  # noqa: E402



class Node(procs.Proc):
    """A `strata node` on a free port, healthy on return (saw_loading: /health answered 503
    "loading" before 200)."""

    def __init__(self, strata, model, *extra):
        port = free_port()
        super().__init__([strata, "node", "--model", model, "--port", str(port), "--threads", "2",
                          *extra], port, "node", timeout=30)

    def conn(self, timeout=60):
        return http.client.HTTPConnection(procs.HOST, self.port, timeout=timeout)

    def request(self, method, path, body=None, headers=None, raw=False):
        return procs.request(self.port, method, path, body, headers, raw=raw)

    def post(self, path, body, headers=None):
        st, h, j = self.request("POST", path, body, headers)
        return st, j

    def stream(self, path, body, headers=None, stop_after=None):
        """POSTs and parses the SSE reply: returns (events as parsed JSON, saw_done)."""
        c = self.conn()
        h = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        h.update(headers or {})
        c.request("POST", path, body=json.dumps(body).encode(), headers=h)
        r = c.getresponse()
        assert r.status == 200, (r.status, r.read())
        assert r.getheader("Content-Type").startswith("text/event-stream")
        stop = (lambda evs: len(evs) >= stop_after) if stop_after is not None else None
        events, done = read_sse(r, stop)
        if stop_after is not None and len(events) >= stop_after and not done:
            c.sock.shutdown(socket.SHUT_RDWR)  # vanish mid-stream
            r.close()
        c.close()
        return events, done

    def stop(self):
        # SIGTERM is a graceful stop: the node must exit 0 without sanitizer reports (leaks
        # are reported at exit, so a sanitizer build checks shutdown here too).
        rc, bad = self.stop_checked(30)
        check(rc == 0 and not bad, f"node stops cleanly (exit {rc})")
        if bad:
            print("\n".join(bad[:20]))


def strata_run(strata, model, prompt, n, chat=False):
    cmd = [strata, "run", "-m", model, "-p", prompt, "-n", str(n), "--temperature", "0", "--json",
           "--threads", "2"]
    if chat:
        cmd.append("--chat")
    out = subprocess.run(cmd, check=True, capture_output=True).stdout
    return json.loads(out)


def main():
    a, work = procs.test_args("strata_node_test_")
    # The layer count is explicit: the health check asserts it, independent of the shape's
    # default.
    model = procs.synth_model(a.strata, os.path.join(work, "node-tiny.gguf"), "q8_0",
                              "--layers", "4")
    t0 = time.time()
    node = Node(a.strata, model, "--parallel", "4", "--ctx", "1024")
    try:
        run_main_checks(a.strata, model, node)
        run_continuation_checks(a.strata, model, node)
        node3 = Node(a.strata, model, "--parallel", "1", "--ctx", "1024",
                     "--parse-special-in-content")
        try:
            run_special_token_checks(a.strata, model, node, node3)
        finally:
            node3.stop()
    finally:
        node.stop()
    node2 = Node(a.strata, model, "--parallel", "1", "--ctx", "2048", "--max-queue", "0",
                 "--api-key", "sekrit", "--reasoning-format", "none", "--admin-key", "adm-secret",
                 "--max-connections-per-client", "8", "--read-timeout", "1", "--alias", "r1-test")
    try:
        run_admission_checks(node2)
        run_front_door_checks(node2)
    finally:
        node2.stop()
    print(f"{time.time() - t0:.1f} s")
    return summary("node")


def run_main_checks(strata, model, node):
    # --- health, models
    st, _, h = node.request("GET", "/health")
    check(st == 200 and h["status"] == "healthy" and h["model_loaded"] is True, "health healthy")
    check(h["slots_total"] == 4 and h["slots_busy"] == 0 and h["layers"] == 4
          and h["memory_usage"] > 1 << 20, "health fields")
    st, _, m = node.request("GET", "/v1/models")
    check(st == 200 and m["object"] == "list" and m["data"][0]["id"] == "node-tiny.gguf",
          "/v1/models")
    mid = m["data"][0]["id"]

    # --- /inference and greedy equality with `strata run`
    ref = strata_run(strata, model, "Hello world", 16)
    st, j = node.post("/inference", {"prompt": "Hello world", "max_length": 16, "temperature": 0})
    check(st == 200 and j["response"] == ref["text"], "/inference greedy == strata run")
    check(j["prompt_tokens"] == len(ref["prompt_tokens"]) and j["completion_tokens"] == 16
          and j["model"] == mid and j["inference_time"] > 0, "/inference fields")
    st, j = node.post("/inference", {"max_length": 3})
    check(st == 400 and j == {"error": "No prompt provided"}, "/inference missing prompt")
    st, j = node.post("/inference", {"prompt": ""})
    check(st == 400 and j == {"error": "No prompt provided"}, "/inference empty prompt")

    st, j = node.post("/v1/completions", {"prompt": "Hello world", "max_tokens": 16,
                                          "temperature": 0, "model": mid, "unknown_field": [1]})
    check(st == 200 and j["choices"][0]["text"] == ref["text"]
          and j["choices"][0]["finish_reason"] == "length" and j["object"] == "text_completion",
          "/v1/completions greedy == strata run")
    check(j["usage"] == {"prompt_tokens": len(ref["prompt_tokens"]),
                         "completion_tokens": 16,
                         "total_tokens": len(ref["prompt_tokens"]) + 16}, "completion usage")

    # --- chat: template, reasoning split (generation starts inside <think>)
    cref = strata_run(strata, model, "What is 2+2?", 12, chat=True)
    body = {"messages": [{"role": "user", "content": "What is 2+2?"}], "max_tokens": 12,
            "temperature": 0}
    st, j = node.post("/v1/chat/completions", body)
    msg = j["choices"][0]["message"]
    raw = cref["text"]
    if "</think>" in raw:
        want_r, want_c = raw.split("</think>", 1)[0], raw.split("</think>", 1)[1].lstrip()
    else:
        want_r, want_c = raw, ""
    check(st == 200 and j["object"] == "chat.completion" and msg["role"] == "assistant",
          "chat shape")
    check(msg.get("reasoning_content", "") == want_r and msg["content"] == want_c,
          "chat greedy == strata run --chat, split into reasoning_content/content")
    check(j["usage"]["prompt_tokens"] == len(cref["prompt_tokens"]), "chat prompt tokens (one BOS)")

    # streamed chat equals the non-streamed one
    sbody = dict(body, stream=True, stream_options={"include_usage": True})
    events, done = node.stream("/v1/chat/completions", sbody)
    check(done, "chat stream ends with [DONE]")
    check(all(e["object"] == "chat.completion.chunk" for e in events), "chunk objects")
    r = "".join(e["choices"][0]["delta"].get("reasoning_content", "") for e in events if e["choices"])
    c = "".join(e["choices"][0]["delta"].get("content", "") for e in events if e["choices"])
    check(r == want_r and c == want_c, "streamed chat text == non-streamed")
    fin = [e for e in events if e["choices"] and e["choices"][0]["finish_reason"]]
    check(len(fin) == 1 and fin[0]["choices"][0]["finish_reason"] == "length", "stream finish_reason")
    check(events[-1]["choices"] == [] and events[-1]["usage"]["completion_tokens"] == 12
          and events[-1]["usage"]["total_tokens"] == len(cref["prompt_tokens"]) + 12,
          "include_usage final chunk")
    check(events[0]["choices"][0]["delta"].get("role") == "assistant", "first delta has role")

    # text completion stream through curl -N
    if shutil.which("curl"):
        out = subprocess.run(["curl", "-sN", "--max-time", "30", f"http://127.0.0.1:{node.port}/v1/completions",
                              "-H", "Content-Type: application/json", "-d",
                              json.dumps({"prompt": "Hello world", "max_tokens": 16,
                                          "temperature": 0, "stream": True})],
                             capture_output=True, check=True).stdout.decode()
        parts = [p for p in out.split("\n\n") if p]
        check(parts[-1] == "data: [DONE]" and all(p.startswith("data: ") for p in parts),
              "curl -N SSE framing")
        evs = [json.loads(p[6:]) for p in parts[:-1]]
        check("".join(e["choices"][0]["text"] for e in evs) == ref["text"]
              and evs[-1]["choices"][0]["finish_reason"] == "length"
              and all(e["object"] == "text_completion" for e in evs), "curl stream text == strata run")

    # --- stop strings (never leak, also across streamed pieces)
    full = ref["text"]
    stop = full[len(full) // 2: len(full) // 2 + 3]
    want = full[: full.find(stop)]
    st, j = node.post("/v1/completions", {"prompt": "Hello world", "max_tokens": 16,
                                          "temperature": 0, "stop": ["zzzqqq", stop]})
    check(st == 200 and j["choices"][0]["text"] == want and j["choices"][0]["finish_reason"] == "stop",
          "stop string cuts the text")
    events, done = node.stream("/v1/completions", {"prompt": "Hello world", "max_tokens": 16,
                                                   "temperature": 0, "stop": stop, "stream": True})
    check(done and "".join(e["choices"][0]["text"] for e in events) == want, "stop string in stream")

    # --- seeds
    sb = {"prompt": "Once upon", "max_tokens": 12, "temperature": 1.0, "top_k": 0, "top_p": 1,
          "min_p": 0}
    outs = [node.post("/v1/completions", dict(sb, seed=s))[1]["choices"][0]["text"]
            for s in (7, 7, 8, 9)]
    check(outs[0] == outs[1], "same seed -> same text")
    check(outs[2] != outs[0] or outs[3] != outs[0], "other seeds -> other text")

    # --- concurrent requests: each equals its solo greedy output
    prompts = ["The cat", "A B C D", "Numbers 1 2 3", "Why is the sky"]
    solos = [node.post("/v1/completions", {"prompt": p, "max_tokens": 20, "temperature": 0})[1]
             ["choices"][0]["text"] for p in prompts]
    results = [None] * 4

    def worker(i):
        results[i] = node.post("/v1/completions", {"prompt": prompts[i], "max_tokens": 20,
                                                   "temperature": 0})[1]["choices"][0]["text"]
    ths = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    [t.start() for t in ths]
    [t.join() for t in ths]
    check(results == solos, "4 concurrent greedy requests == their solo outputs")

    # --- hostile input
    def err(st, j, code):
        return st == code and isinstance(j.get("error"), dict) and j["error"].get("message") and \
            "type" in j["error"] and "code" in j["error"]
    st, _, j = node.request("POST", "/v1/completions", b"{not json")
    check(err(st, j, 400), "bad JSON -> 400 envelope")
    st, j = node.post("/v1/completions", {"prompt": "x", "max_tokens": "ten"})
    check(err(st, j, 400), "wrong type -> 400")
    st, j = node.post("/v1/chat/completions", {"messages": "hi"})
    check(err(st, j, 400), "messages wrong type -> 400")
    st, j = node.post("/v1/completions", {"prompt": "x", "n": 9})
    check(err(st, j, 400) and "n" in j["error"]["message"], "n=9 -> 400")
    st, _, j = node.request("POST", "/v1/completions", b'{"prompt": "\xff\xfe bad"}')
    check(err(st, j, 400), "invalid UTF-8 -> 400")
    st, j = node.post("/v1/completions", {"prompt": "x", "model": "gpt-17"})
    check(err(st, j, 404), "unknown model -> 404")
    st, _, j = node.request("GET", "/nope")
    check(err(st, j, 404), "unknown path -> 404")
    st, j = node.post("/v1/completions", {"prompt": "word " * 1500, "max_tokens": 4})
    check(err(st, j, 400) and "1024" in j["error"]["message"], "prompt too long -> 400 with numbers")
    # deep nesting (about 200 KB, 100,000 levels) is refused while parsing
    for what, inner in (("arrays", "[" * 100000 + "]" * 100000),
                        ("objects", '{"a":' * 100000 + "1" + "}" * 100000)):
        st, _, j = node.request("POST", "/v1/completions",
                                ('{"prompt":"x","a":' + inner + "}").encode())
        check(err(st, j, 400) and j["error"]["code"] == "json_too_deep",
              f"100,000 nested {what} -> 400 json_too_deep")
    st, _, j = node.request("POST", "/v1/completions",
                            ('{"prompt":"x","max_tokens":1,"a":' + "[" * 63 + "]" * 63 +
                             "}").encode())
    check(st == 200, f"64 levels of nesting accepted ({st})")
    for body, field in (({"prompt": "x", "stream": "yes"}, "stream"),
                        ({"prompt": "x", "stream_options": {"include_usage": 1}}, "include_usage"),
                        ({"prompt": "x", "temperature": -1}, "temperature"),
                        ({"prompt": "x", "top_p": 1.5}, "top_p"),
                        ({"prompt": "x", "max_tokens": 10 ** 12}, "max_tokens"),
                        ({"prompt": "x", "seed": "s"}, "seed"),
                        ({"prompt": "x", "return_token_ids": "y"}, "return_token_ids")):
        st, j = node.post("/v1/completions", dict(body, max_tokens=body.get("max_tokens", 2)))
        check(err(st, j, 400) and field in j["error"]["message"],
              f"{json.dumps(body)[:50]} -> 400 naming '{field}'")
    st, _, j = node.request("POST", "/v1/completions", b'{"prompt":"x","max_tokens":1e999}')
    check(err(st, j, 400), "number beyond double -> 400")
    check(node.proc.poll() is None, "node still running after hostile bodies")

    # 100 MB body: refused with 413 as soon as the header is read
    s = socket.create_connection(("127.0.0.1", node.port), timeout=10)
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: 104857600\r\n\r\n" + b"{" * 65536)
    resp = b""
    try:
        while b"\r\n\r\n" not in resp:
            d = s.recv(65536)
            if not d:
                break
            resp += d
    except OSError:
        pass
    s.close()
    check(resp.startswith(b"HTTP/1.1 413"), "100 MB body -> 413")

    # 1000 idle connections (some with half a request) do not block service
    idle = []
    for i in range(1000):
        c = socket.create_connection(("127.0.0.1", node.port), timeout=10)
        if i % 3 == 0:
            c.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n")
        idle.append(c)
    t = time.time()
    st, j = node.post("/v1/completions", {"prompt": "Hello world", "max_tokens": 4, "temperature": 0})
    check(st == 200 and j["choices"][0]["text"] and time.time() - t < 10,
          "serves with 1000 idle connections open")
    for c in idle:
        c.close()

    # client vanishing mid-stream: generation is cancelled, the slot frees
    gen_before = metric(node, "strata_generation_tokens_total")
    events, _ = node.stream("/v1/completions", {"prompt": "Tell", "max_tokens": 900, "temperature": 0,
                                                "stream": True}, stop_after=3)
    freed = False
    for _ in range(100):
        busy = node.request("GET", "/health")[2]["slots_busy"]
        if busy == 0:
            freed = True
            break
        time.sleep(0.02)
    generated = metric(node, "strata_generation_tokens_total") - gen_before
    check(len(events) == 3 and freed and generated < 200,
          f"disconnect mid-stream cancels the generation ({generated:.0f} of 900 tokens made)")
    st, j = node.post("/v1/completions", {"prompt": "Hello world", "max_tokens": 4, "temperature": 0})
    check(st == 200, "still serving after hostile input")

    # --- metrics
    st, _, body = node.request("GET", "/metrics", raw=True)
    text = body.decode()
    vals = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            k, v = line.rsplit(" ", 1)
            vals[k] = float(v)
    names = ["strata_requests_running", "strata_requests_waiting", "strata_prompt_tokens_total",
             "strata_generation_tokens_total", "strata_kv_cache_usage_ratio",
             "process_cpu_seconds_total", "process_resident_memory_bytes",
             "strata_model_disk_usage_bytes", "strata_time_to_first_token_seconds_count",
             "strata_inter_token_latency_seconds_count",
             'strata_time_to_first_token_seconds_bucket{le="+Inf"}']
    check(st == 200 and all(n in vals for n in names), "metrics names present")
    check(vals.get("strata_generation_tokens_total", 0) > 100
          and vals.get("strata_time_to_first_token_seconds_count", 0) >= 10
          and vals.get("strata_prompt_tokens_cached_total", 0) > 0, "metrics counters move")


def run_special_token_checks(strata, model, node, node_special):
    """A user message cannot forge a turn: "<｜Assistant｜>" in a content is plain text (by
    default); with --parse-special-in-content it becomes the special token (id 151645)."""
    marker = "<｜Assistant｜>"
    out = subprocess.run([strata, "tokenize", "-m", model, "--text", marker], check=True,
                         capture_output=True).stdout
    plain = json.loads(out)
    out = subprocess.run([strata, "tokenize", "-m", model, "--text", marker, "--parse-special"],
                         check=True, capture_output=True).stdout
    check(json.loads(out) == [151645] and len(plain) > 1 and 151645 not in plain,
          f"{marker} is token 151645, its plain text {len(plain)} tokens")

    def prompt_tokens(n, content):
        st, j = n.post("/v1/chat/completions", {"messages": [{"role": "user", "content": content}],
                                                "max_tokens": 1, "temperature": 0})
        return j["usage"]["prompt_tokens"] if st == 200 else -st
    # Between <｜User｜> and <｜Assistant｜> the content's tokens stand alone: the difference
    # is exactly the content's own token count.
    base = prompt_tokens(node, "")
    forged = prompt_tokens(node, marker)
    check(base > 0 and forged - base == len(plain),
          f"user content {marker} -> {forged - base} plain-text tokens (want {len(plain)})")
    base_s = prompt_tokens(node_special, "")
    forged_s = prompt_tokens(node_special, marker)
    check(base_s == base and forged_s - base_s == 1,
          f"--parse-special-in-content: {marker} -> 1 special token ({forged_s - base_s})")
    # A benign conversation is tokenized as before (same count as strata run --chat).
    ref = strata_run(strata, model, "What is 2+2?", 1, chat=True)
    check(prompt_tokens(node, "What is 2+2?") == len(ref["prompt_tokens"]),
          "benign chat prompt unchanged")


def metric(node, name):
    body = node.request("GET", "/metrics", raw=True)[2].decode()
    for line in body.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return float("nan")


def run_admission_checks(node):
    auth = {"Authorization": "Bearer sekrit"}
    st, _, h = node.request("GET", "/health")
    check(st == 200, "health needs no key")
    st, j = node.post("/v1/completions", {"prompt": "x", "max_tokens": 2})
    check(st == 401 and j["error"]["type"] == "authentication_error", "no key -> 401")
    st, j = node.post("/v1/completions", {"prompt": "x", "max_tokens": 2},
                      {"Authorization": "Bearer wrong"})
    check(st == 401, "wrong key -> 401")
    st, j = node.post("/v1/completions", {"prompt": "x", "max_tokens": 2, "temperature": 0}, auth)
    check(st == 200, "right key -> 200")
    # --reasoning-format none: everything in content
    st, j = node.post("/v1/chat/completions", {"messages": [{"role": "user", "content": "Hi"}],
                                               "max_tokens": 6, "temperature": 0}, auth)
    check(st == 200 and "reasoning_content" not in j["choices"][0]["message"]
          and j["choices"][0]["message"]["content"], "reasoning-format none keeps content")

    # one slot, no queue: a second request while one runs gets 503 + Retry-After
    c = node.conn()
    c.request("POST", "/v1/completions", body=json.dumps(
        {"prompt": "Tell", "max_tokens": 1500, "temperature": 0, "stream": True}).encode(),
        headers=dict(auth, **{"Content-Type": "application/json"}))
    r = c.getresponse()
    r.readline()  # generation is running
    st, hdr, j = node.request("POST", "/v1/completions", {"prompt": "y", "max_tokens": 2}, auth)
    check(st == 503 and hdr.get("retry-after") and j["error"]["message"], "full queue -> 503 Retry-After")
    c.sock.shutdown(socket.SHUT_RDWR)  # the client goes away (the response still holds the fd)
    r.close()
    c.close()
    ok = wait_for(lambda: node.post("/v1/completions", {"prompt": "y", "max_tokens": 2}, auth)[0] == 200,
                  10, step=0.02)
    check(ok, "slot frees after the client left")


def run_front_door_checks(node):
    """Authentication before the body, the admin key, connection caps, the read deadline and
    the bound on bytes pipelined during a generation (node started with --api-key sekrit,
    --admin-key adm-secret, --max-connections-per-client 8, --read-timeout 1, one slot)."""
    auth = {"Authorization": "Bearer sekrit"}
    # --alias r1-test: the served id; the file name still names the model too.
    st, _, m = node.request("GET", "/v1/models", headers=auth)
    check(st == 200 and m["data"][0]["id"] == "r1-test", "/v1/models id is the --alias")
    for name, want in (("r1-test", 200), ("node-tiny.gguf", 200), ("other", 404)):
        st, _ = node.post("/v1/completions", {"model": name, "prompt": "x", "max_tokens": 1}, auth)
        check(st == want, f"model '{name}' -> {want} ({st})")
    st, dt = front_door.announce_body(node.port, "/v1/completions")
    check(st == 401 and dt < 3, f"no key, 8 MiB announced, no body sent -> 401 after the headers ({st}, {dt:.2f}s)")
    st, _, _ = node.request("GET", "/metrics", headers=auth)
    check(st == 401, "/metrics with the API key but not the admin key -> 401")
    st, _, m = node.request("GET", "/metrics", headers={"Authorization": "Bearer adm-secret"})
    check(st == 200 and "strata_http_connections" in m.get("_raw", ""), "/metrics with the admin key -> 200")
    closed = front_door.slow_headers(node.port, interval=0.1, limit_s=6)
    check(closed is not None and closed < 3, f"trickled headers closed at the read deadline ({closed})")
    socks = front_door.idle_flood(node.port, 200)
    try:
        time.sleep(0.3)
        st, j = node.post("/v1/completions", {"prompt": "x", "max_tokens": 2}, auth)
        check(st == 200, f"a request gets through while {len(socks)} idle connections are open ({st})")
    finally:
        front_door.close_all(socks)
    # A client sending more than 1 MiB ahead while its request runs is cut off.
    body = json.dumps({"prompt": "Tell", "max_tokens": 1500, "temperature": 0, "stream": True})
    s = socket.create_connection(("127.0.0.1", node.port), timeout=10)
    s.sendall((f"POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sekrit\r\n"
               f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n{body}").encode())
    got = s.recv(4096)
    try:
        s.sendall(b"x" * (2 << 20))
    except OSError:
        pass
    data = got
    try:
        while True:
            b = s.recv(65536)
            if not b:
                break
            data += b
    except OSError:
        pass
    s.close()
    check(b" 200 " in got and b"[DONE]" not in data, "over 1 MiB pipelined during a stream: cancelled and closed")
    ok = wait_for(lambda: node.post("/v1/completions", {"prompt": "y", "max_tokens": 2}, auth)[0] == 200,
                  10, step=0.05)
    check(ok, "the slot frees after the pipelining cut")


def generate(node, path, body, stream):
    """One request with return_token_ids: (ids, texts, finish, usage, headers, cuts). texts is
    (reasoning, content) for chat, ("", text) for completions; cuts[i] = (number of ids, texts)
    after the i-th event that carried ids (the points where a stream can be cut and continued)."""
    chat = path.endswith("chat/completions")
    body = dict(body, return_token_ids=True, stream=stream)
    if not stream:
        st, hdr, j = node.request("POST", path, body)
        assert st == 200, (st, j)
        ch = j["choices"][0]
        if chat:
            texts = (ch["message"].get("reasoning_content", ""), ch["message"]["content"])
        else:
            texts = ("", ch["text"])
        return ch["token_ids"], texts, ch["finish_reason"], j["usage"], hdr, []
    c = node.conn()
    c.request("POST", path, body=json.dumps(dict(body, stream_options={"include_usage": True})).encode(),
              headers={"Content-Type": "application/json"})
    r = c.getresponse()
    assert r.status == 200, (r.status, r.read())
    hdr = {k.lower(): v for k, v in r.getheaders()}
    ids, rs, cs, finish, usage, cuts = [], "", "", None, None, []
    ids_missing = 0
    for line in r.read().decode().split("\n"):
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        e = json.loads(line[6:])
        if not e["choices"]:
            usage = e["usage"]
            continue
        ch = e["choices"][0]
        if chat:
            t_r, t_c = ch["delta"].get("reasoning_content", ""), ch["delta"].get("content", "")
        else:
            t_r, t_c = "", ch["text"]
        rs, cs = rs + t_r, cs + t_c
        if (t_r or t_c) and "token_ids" not in ch:
            ids_missing += 1
        if "token_ids" in ch:
            ids += ch["token_ids"]
            if ch["token_ids"] and not ch["finish_reason"]:
                cuts.append((len(ids), (rs, cs)))
        if ch["finish_reason"]:
            finish = ch["finish_reason"]
    c.close()
    assert ids_missing == 0, f"{ids_missing} text chunks without token_ids"
    return ids, (rs, cs), finish, usage, hdr, cuts


def run_continuation_checks(strata, model, node):
    """return_token_ids / continue_token_ids: continuing from any cut of an undisturbed run
    reproduces the rest of it exactly (greedy and seeded sampling with penalties, streamed and
    not, completions and chat with the reasoning split, stop strings)."""
    n = 28
    seeded = {"temperature": 0.8, "seed": 4242, "top_k": 0, "top_p": 0.95, "min_p": 0.02,
              "presence_penalty": 0.4, "frequency_penalty": 0.3, "repeat_penalty": 1.1}
    comp = ("/v1/completions", {"prompt": "Continue this story", "max_tokens": n})
    chat = ("/v1/chat/completions", {"messages": [{"role": "user", "content": "Tell me more"}],
                                     "max_tokens": n})
    # The tiny model never writes </think> itself: runs that start from continued ids containing
    # it (a reasoning part, </think>, maybe the answer's start) make runs whose splitter changed
    # state before the cut points, including the whitespace skipped after </think>.
    def tokenize(text):
        out = subprocess.run([strata, "tokenize", "-m", model, "--parse-special", "--text", text],
                             check=True, capture_output=True, text=True).stdout
        return json.loads(out)
    think_a = tokenize("Hmm, let me see.</think>")
    think_b = tokenize("Hmm.</think>\n\nThe answer")
    cases = [("completions greedy", comp[0], dict(comp[1], temperature=0)),
             ("completions seeded", comp[0], dict(comp[1], **seeded)),
             ("chat greedy", chat[0], dict(chat[1], temperature=0)),
             ("chat seeded", chat[0], dict(chat[1], **seeded))]
    cases.append(("chat greedy after </think>", chat[0], dict(chat[1], temperature=0,
                                                             continue_token_ids=think_a)))
    cases.append(("chat seeded after </think> + answer start", chat[0],
                  dict(chat[1], continue_token_ids=think_b, **seeded)))
    # A stop string from the middle of a run: its prefix is held back while it may still match.
    ids0, (_, t0), _, _, _, _ = generate(node, comp[0], dict(comp[1], **seeded), False)
    stop = t0[len(t0) // 2:len(t0) // 2 + 3]
    if len(stop) == 3:
        cases.append(("completions seeded with stop", comp[0], dict(comp[1], stop=[stop], **seeded)))
    for name, path, body in cases:
        base = body.get("continue_token_ids", [])
        ids, texts, finish, usage, hdr, cuts = generate(node, path, body, True)
        if base:
            check(texts[0] == "" and texts[1] and hdr.get("x-strata-continued") == str(len(base)),
                  f"{name}: the continued </think> ended the reasoning (all new text is content)")
        nids, ntexts, nfinish, nusage, _, _ = generate(node, path, body, False)
        check(ids == nids and texts == ntexts and finish == nfinish and usage == nusage
              and len(ids) == usage["completion_tokens"] and len(ids) > 3,
              f"{name}: token_ids cover the output ({len(ids)} ids, {len(cuts)} cut points), "
              f"streamed == non-streamed")
        ok_ids, ok_text, ok_hdr, tried = True, True, True, 0
        points = sorted({cuts[i][0] for i in range(0, len(cuts), max(1, len(cuts) // 5))}
                        | {cuts[-1][0]} if cuts else set())
        for k in points:
            if k >= len(ids):
                continue
            prefix = next(t for kk, t in cuts if kk == k)
            cont = dict(body, continue_token_ids=base + ids[:k], max_tokens=n - k)
            for stream in (True, False):
                cids, ctexts, cfinish, cusage, chdr, _ = generate(node, path, cont, stream)
                tried += 1
                ok_ids &= cids == ids[k:] and cfinish == finish
                ok_ids &= cusage["completion_tokens"] == len(ids) - k
                ok_ids &= cusage["prompt_tokens"] == usage["prompt_tokens"]
                ok_hdr &= chdr.get("x-strata-continued") == str(len(base) + k)
                ok_text &= (prefix[0] + ctexts[0], prefix[1] + ctexts[1]) == texts
                if not (ok_ids and ok_text):
                    print(f"  cut {k} stream={stream}: {cids} vs {ids[k:]}; {ctexts!r} vs {texts!r} after {prefix!r}")
                    break
        check(tried >= 4 and ok_ids and ok_hdr,
              f"{name}: continuing at {points} gives the same remaining ids, usage and header")
        check(tried >= 4 and ok_text, f"{name}: the continuation's text completes the undisturbed text")
    # A cut that is not at an event boundary still yields the same ids.
    path, body = cases[1][1], cases[1][2]
    ids, _, _, _, _, _ = generate(node, path, body, False)
    same = all(generate(node, path, dict(body, continue_token_ids=ids[:k], max_tokens=n - k),
                        False)[0] == ids[k:] for k in (1, 2, 3, len(ids) - 1))
    check(same, "seeded continuation from arbitrary cuts (1, 2, 3, n-1) gives the same ids")
    # Invalid ids -> 400.
    for bad, what in (([10 ** 7], "out of the vocabulary"), ([-1], "negative"), ("x", "not a list"),
                      ([1.5], "not integers")):
        st, j = node.post(path, dict(body, continue_token_ids=bad))
        check(st == 400 and j["error"]["type"] == "invalid_request_error",
              f"continue_token_ids {what} -> 400 ({j.get('error', {}).get('message')})")
    # Continuing past the end: max_tokens 0 new tokens finishes at once with length.
    cids, _, cfinish, cusage, _, _ = generate(node, path, dict(body, continue_token_ids=ids[:5],
                                                                max_tokens=0), False)
    check(cids == [] and cfinish == "length" and cusage["completion_tokens"] == 0,
          "max_tokens counts new tokens only (0: none)")


if __name__ == "__main__":
    sys.exit(main())
