#!/usr/bin/env python3
"""Integration test of `strata gateway`: real `strata node` processes (synthesized tiny model)
and gateways on loopback, driven over HTTP (stdlib only, curl for TLS).

usage: gateway_test.py --strata PATH [--workdir DIR]
"""
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common"))
from sse import read_sse, stream_texts  # noqa: E402
import front_door  # noqa: E402
import procs  # noqa: E402
from procs import Proc, free_port, node_args, request, wait_for  # noqa: E402
from procs import check, summary  # noqa: E402



def stream(port, path, body, headers=None, on_event=None):
    """POSTs and parses the SSE reply: (status, headers, events, saw_done)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    h = {"Content-Type": "application/json"}
    h.update(headers or {})
    c.request("POST", path, body=json.dumps(body).encode(), headers=h)
    r = c.getresponse()
    hdrs = {k.lower(): v for k, v in r.getheaders()}
    if r.status != 200:
        return r.status, hdrs, [json.loads(r.read())], False
    events, done = read_sse(r, (lambda evs: on_event(len(evs))) if on_event else None)
    c.close()
    return 200, hdrs, events, done


def text_of(events):
    out = ""
    for e in events:
        for ch in e.get("choices", []):
            out += ch.get("text", "") or ch.get("delta", {}).get("content", "") or ""
    return out


def start_node(strata, model, port, name):
    return Proc(node_args(strata, model, port, ctx=2048), port, name)


def start_gateway(strata, work, name, nodes, gateway_yaml, tls=False):
    port = free_port()
    cfg = os.path.join(work, name + ".yaml")
    lines = ["model:", "  path: model.gguf", "nodes:"]
    for n, p in nodes:
        lines += [f"  - name: {n}", f"    port: {p}"]
    lines += ["gateway:", f"  listen: 127.0.0.1:{port}"]
    lines += ["  " + l for l in gateway_yaml.strip("\n").splitlines()]
    with open(cfg, "w") as f:
        f.write("\n".join(lines) + "\n")
    # A TLS gateway is not polled over plain HTTP: the test waits for it itself.
    return Proc([strata, "gateway", "--config", cfg], port, name,
                ready_path=None if tls else "/health")


def backend_states(port):
    _, _, j = request(port, "GET", "/api/cluster")
    return {b["name"]: b["state"] for b in j["backends"]}


HEALTH = """health: {interval_ms: 100, timeout_ms: 500, unhealthy_threshold: 1, healthy_threshold: 1}
circuit_breaker: {failure_threshold: 1, open_ms: 300}
retry: {max_attempts: 3, backoff_ms: 5, max_backoff_ms: 20, unavailable_timeout_ms: 1500}
"""


def main():
    a, work = procs.test_args("strata_gateway_test_")
    model = procs.synth_model(a.strata, os.path.join(work, "gw-tiny.gguf"), "f32")

    # Invalid config: the error names the line.
    bad = os.path.join(work, "bad.yaml")
    with open(bad, "w") as f:
        f.write("nodes:\n  - name: a\n    port: 70000\n")
    r = subprocess.run([a.strata, "gateway", "--config", bad], capture_output=True, text=True)
    check(r.returncode != 0 and "bad.yaml:3" in r.stderr, "invalid config names the line: " + r.stderr.strip())

    ports = [free_port() for _ in range(3)]
    names = ["n0", "n1", "n2"]
    nodes = {n: start_node(a.strata, model, p, n) for n, p in zip(names, ports)}
    gws = []
    try:
        run_tests(a, work, model, nodes, list(zip(names, ports)), gws)
    finally:
        for g in gws:
            g.stop()
        for n in nodes.values():
            n.stop()
    sys.exit(summary("gateway"))


def run_tests(a, work, model, nodes, node_list, gws):
    main_gw = start_gateway(a.strata, work, "main", node_list, HEALTH + """
cache: {max_entries: 100, ttl_s: 60}
admission: {max_body_bytes: 64KiB}
""")
    gws.append(main_gw)
    gp = main_gw.port
    check(wait_for(lambda: request(gp, "GET", "/ready")[0] == 200, 10), "/ready turns 200")
    wait_for(lambda: request(gp, "GET", "/api/cluster")[2]["healthy_backends"] == 3, 5)
    st, _, j = request(gp, "GET", "/api/cluster")
    check(st == 200 and len(j["backends"]) == 3 and
          all(b["state"] == "healthy" and b["mode"] == "replica" for b in j["backends"]),
          "/api/cluster lists 3 healthy replicas")
    st, _, j = request(gp, "GET", "/v1/models")
    check(st == 200 and j["data"][0]["object"] == "model", "/v1/models proxied")

    # The plan's call, with the serving node named, and the request id passed through.
    st, h, j = request(gp, "POST", "/api/inference",
                       {"prompt": "Hello there", "max_length": 8, "temperature": 0},
                       {"X-Request-Id": "test-req-1"})
    check(st == 200 and "response" in j and j.get("node") in nodes, f"/api/inference answers with node ({j.get('node')})")
    check(h.get("x-request-id") == "test-req-1", "X-Request-Id passed through")
    st, h, _ = request(gp, "POST", "/api/inference", {"prompt": "x", "max_length": 2})
    check(h.get("x-request-id", "").startswith("gw-"), "X-Request-Id generated")
    st, _, j = request(gp, "POST", "/api/inference", {"max_length": 2})
    check(st == 400, "missing prompt -> 400")

    # Streaming equals the direct node's greedy output.
    body = {"prompt": "Once upon a time", "max_tokens": 24, "temperature": 0, "stream": True}
    _, _, direct, _ = stream(node_list[0][1], "/v1/completions", body)
    st, h, evs, done = stream(gp, "/v1/completions", body)
    check(st == 200 and done and text_of(evs) == text_of(direct) and len(evs) >= 2,
          f"completions stream proxied ({len(evs)} events, identical text)")
    chat = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 12, "temperature": 0,
            "stream": True}
    st, h, evs, done = stream(gp, "/v1/chat/completions", chat)
    check(st == 200 and done and evs and evs[0]["object"] == "chat.completion.chunk",
          "chat stream proxied")
    st, _, j = request(gp, "POST", "/v1/chat/completions", dict(chat, stream=False))
    check(st == 200 and j.get("object") == "chat.completion", "chat non-stream proxied")

    # Hostile input.
    st, _, j = request(gp, "POST", "/v1/completions", b"{not json")
    check(st == 400 and "error" in j and "message" in j["error"], "malformed JSON -> 400 envelope")
    st, _, j = request(gp, "POST", "/v1/completions", {"prompt": "x" * 100000})
    check(st == 413, f"oversized body -> 413 (got {st})")
    st, _, _ = request(gp, "GET", "/nope")
    check(st == 404, "unknown path -> 404")
    # A node's own 404 (unknown model) reaches the client as 404, streamed or not.
    for streamed in (False, True):
        st, _, j = request(gp, "POST", "/v1/chat/completions",
                           dict(chat, model="no-such-model", stream=streamed))
        code = j.get("error", {}).get("code") if isinstance(j, dict) else None
        check(st == 404 and code == "model_not_found",
              f"unknown model -> 404 model_not_found (stream={streamed}; got {st} {code})")
    check(request(gp, "GET", "/health")[0] == 200, "gateway still serves after hostile input")

    # Cache: deterministic requests hit the second time; others are not cached.
    det = {"prompt": "cache me", "max_tokens": 6, "temperature": 0}
    st1, h1, j1 = request(gp, "POST", "/v1/completions", det)
    st2, h2, j2 = request(gp, "POST", "/v1/completions", det)
    check(h1.get("x-cache") == "MISS" and h2.get("x-cache") == "HIT" and j1 == j2,
          f"cache MISS then HIT with the same body ({h1.get('x-cache')}, {h2.get('x-cache')})")
    _, h3, _ = request(gp, "POST", "/v1/completions", {"prompt": "no", "max_tokens": 3, "temperature": 0.9})
    check("x-cache" not in h3, "non-deterministic request bypasses the cache")
    # (an id outside the vocabulary passes the gateway's checks; the node answers 400)
    bad = {"prompt": "cache err", "max_tokens": 3, "temperature": 0, "continue_token_ids": [10 ** 7]}
    st_e, _, e1 = request(gp, "POST", "/v1/completions", bad)
    _, h4, _ = request(gp, "POST", "/v1/completions", bad)
    check(st_e == 400 and h4.get("x-cache") == "MISS", f"errors are not cached ({st_e})")
    _, h5, e5 = request(gp, "POST", "/v1/completions", {"prompt": "cache err", "max_tokens": -5,
                                                        "temperature": 0})
    check("x-cache" not in h5 and "max_tokens" in e5["error"]["message"],
          "a body the gateway refuses never reaches the cache")

    # Least outstanding: concurrent long streams spread over distinct backends.
    seen = []
    lock = threading.Lock()

    def long_stream():
        st, h, evs, done = stream(gp, "/v1/completions", {"prompt": "spread", "max_tokens": 300,
                                                          "temperature": 0, "stream": True})
        with lock:
            seen.append(h.get("x-strata-backend"))
    ts = [threading.Thread(target=long_stream) for _ in range(3)]
    for t in ts:
        t.start()
        time.sleep(0.02)
    for t in ts:
        t.join()
    check(len(set(seen)) == 3, f"least_outstanding spreads 3 concurrent streams: {seen}")

    # Failover: kill -9 the serving replica mid-stream; the stream completes unchanged.
    fo = {"prompt": "The story goes", "max_tokens": 400, "temperature": 0, "stream": True}
    _, _, ref, _ = stream(node_list[1][1], "/v1/completions", fo)
    served = {}

    def killer(n):
        if n == 5 and "victim" not in served:
            served["victim"] = True
            nodes[served["backend"]].kill()

    c = http.client.HTTPConnection("127.0.0.1", gp, timeout=60)
    c.request("POST", "/v1/completions", body=json.dumps(fo).encode(),
              headers={"Content-Type": "application/json"})
    r = c.getresponse()
    served["backend"] = r.getheader("X-Strata-Backend")
    evs, done = read_sse(r, lambda evs: killer(len(evs)), strict=False)
    c.close()
    got, want = text_of(evs), text_of(ref)
    check(done and got == want,
          f"kill -9 mid-stream: stream completes and equals the undisturbed output "
          f"({len(got)} vs {len(want)} chars, first diff at "
          f"{next((i for i in range(min(len(got), len(want))) if got[i] != want[i]), min(len(got), len(want)))})")
    check(len({e["id"] for e in evs}) == 1, "one stream id across the failover")
    _, _, m = request(gp, "GET", "/metrics")
    metrics = m["_raw"]
    fails = re.search(r"strata_gateway_failovers_total (\d+)", metrics)
    check(fails and int(fails.group(1)) >= 1, "the failover was counted (mid-stream kill happened)")
    victim = served["backend"]
    check(wait_for(lambda: backend_states(gp)[victim] == "unhealthy", 5), f"killed {victim} ejected")
    # Requests keep working meanwhile.
    ok = all(request(gp, "POST", "/api/inference", {"prompt": "still", "max_length": 3})[0] == 200
             for _ in range(6))
    check(ok, "requests succeed while a replica is down")
    port = dict(node_list)[victim]
    nodes[victim] = start_node(a.strata, model, port, victim)
    check(wait_for(lambda: backend_states(gp)[victim] == "healthy", 5), f"restarted {victim} re-admitted")
    for needle in ["strata_gateway_backend_requests_total{backend=\"n0\"}",
                   "strata_gateway_backend_latency_seconds_bucket", "strata_gateway_backend_ttft_seconds_bucket",
                   "strata_gateway_healthy_backends 3", "strata_gateway_queue_depth", "strata_gateway_cache_hit_ratio"]:
        check(needle in request(gp, "GET", "/metrics")[2]["_raw"], "metrics has " + needle)

    # Round robin: even distribution.
    rr = start_gateway(a.strata, work, "rr", node_list, HEALTH + "routing: {policy: round_robin}\n")
    gws.append(rr)
    wait_for(lambda: request(rr.port, "GET", "/api/cluster")[2]["healthy_backends"] == 3, 5)
    counts = {}
    for i in range(30):
        _, _, j = request(rr.port, "POST", "/api/inference", {"prompt": f"rr {i}", "max_length": 2})
        counts[j.get("node")] = counts.get(j.get("node"), 0) + 1
    check(sorted(counts.values()) == [10, 10, 10], f"round_robin is even: {counts}")

    # Affinity: a session sticks to one backend; sessions spread.
    af = start_gateway(a.strata, work, "aff", node_list, HEALTH + "routing: {policy: affinity, affinity_prefix_chars: 24}\n")
    gws.append(af)
    wait_for(lambda: request(af.port, "GET", "/api/cluster")[2]["healthy_backends"] == 3, 5)
    owners = {}
    sticky = True
    for s in range(12):
        got = set()
        for k in range(4):
            _, _, j = request(af.port, "POST", "/api/inference", {"prompt": f"turn {k}", "max_length": 2},
                              {"X-Session-Id": f"sess-{s}"})
            got.add(j.get("node"))
        sticky = sticky and len(got) == 1
        owners[s] = got.pop()
    check(sticky, "affinity: every session stays on one backend")
    check(len(set(owners.values())) >= 2, f"affinity: sessions spread ({sorted(set(owners.values()))})")
    same_prefix = {request(af.port, "POST", "/api/inference",
                           {"prompt": "A long shared system prompt. turn " + str(k), "max_length": 2})[2].get("node")
                   for k in range(3)}
    check(len(same_prefix) == 1, "affinity: a shared prompt prefix sticks")

    # API keys: 401 without a key, 429 + Retry-After past the per-minute limit.
    keys = start_gateway(a.strata, work, "keys", node_list, HEALTH + """
api_keys:
  - {key: sk-alpha, name: alpha, requests_per_minute: 3}
  - {key: sk-beta, name: beta}
""")
    gws.append(keys)
    st, h, j = request(keys.port, "POST", "/api/inference", {"prompt": "x", "max_length": 2})
    check(st == 401 and j["error"]["type"] == "authentication_error", "no key -> 401")
    st, _, _ = request(keys.port, "POST", "/api/inference", {"prompt": "x", "max_length": 2},
                       {"Authorization": "Bearer wrong"})
    check(st == 401, "bad key -> 401")
    sts = [request(keys.port, "POST", "/api/inference", {"prompt": "x", "max_length": 2},
                   {"Authorization": "Bearer sk-alpha"}) for _ in range(4)]
    check([s[0] for s in sts] == [200, 200, 200, 429] and "retry-after" in sts[3][1],
          f"requests_per_minute: 3 pass, the 4th gets 429 + Retry-After ({[s[0] for s in sts]})")
    st, _, _ = request(keys.port, "POST", "/api/inference", {"prompt": "x", "max_length": 2},
                       {"Authorization": "Bearer sk-beta"})
    check(st == 200, "another key is unaffected")

    # TLS with a self-signed certificate, verified by curl.
    cert, key = os.path.join(work, "cert.pem"), os.path.join(work, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                    "-out", cert, "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   check=True, capture_output=True)
    tls = start_gateway(a.strata, work, "tls", node_list,
                        HEALTH + f"tls_cert: {cert}\ntls_key: {key}\n", tls=True)
    gws.append(tls)
    ok = False
    for _ in range(100):
        r = subprocess.run(["curl", "-sS", "--cacert", cert, f"https://127.0.0.1:{tls.port}/health"],
                           capture_output=True, text=True)
        if r.returncode == 0:
            ok = '"ok"' in r.stdout
            break
        time.sleep(0.05)
    check(ok, "TLS /health through curl --cacert")
    time.sleep(0.5)
    r = subprocess.run(["curl", "-sS", "-N", "--cacert", cert, "-H", "Content-Type: application/json",
                        "-d", json.dumps({"prompt": "tls", "max_tokens": 5, "temperature": 0, "stream": True}),
                        f"https://127.0.0.1:{tls.port}/v1/completions"], capture_output=True, text=True)
    check(r.returncode == 0 and r.stdout.rstrip().endswith("data: [DONE]"), "TLS streaming through curl")
    r = subprocess.run(["curl", "-sS", f"https://127.0.0.1:{tls.port}/health"], capture_output=True, text=True)
    check(r.returncode != 0, "curl without the CA refuses the self-signed certificate")
    # SIGHUP reloads the certificate; a broken pair keeps the previous one.
    cert2, key2 = os.path.join(work, "cert2.pem"), os.path.join(work, "key2.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key2,
                    "-out", cert2, "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   check=True, capture_output=True)
    with open(cert2) as f:
        new_cert = f.read()
    with open(key2) as f:
        new_key = f.read()
    with open(cert, "w") as f:
        f.write(new_cert)
    with open(key, "w") as f:
        f.write(new_key)
    tls.proc.send_signal(signal.SIGHUP)
    ok = wait_for(lambda: subprocess.run(["curl", "-sS", "--cacert", cert2, f"https://127.0.0.1:{tls.port}/health"],
                                         capture_output=True).returncode == 0, 5)
    check(ok, "SIGHUP: new connections get the reloaded certificate")
    with open(key, "w") as f:
        f.write("not a key\n")
    tls.proc.send_signal(signal.SIGHUP)
    check(wait_for(lambda: "TLS reload failed" in tls.output(), 5), "SIGHUP with a broken key: the failure is logged")
    r = subprocess.run(["curl", "-sS", "--cacert", cert2, f"https://127.0.0.1:{tls.port}/health"],
                       capture_output=True, text=True)
    check(r.returncode == 0 and '"ok"' in r.stdout, "after a failed reload the previous certificate still serves")
    r = subprocess.run(["curl", "-sS", "--cacert", cert2, "--tlsv1.2", "--tls-max", "1.2", "--ciphers",
                        "AES128-SHA", f"https://127.0.0.1:{tls.port}/health"], capture_output=True, text=True)
    check(r.returncode != 0, "TLS 1.2 without ECDHE/AEAD (AES128-SHA) is refused")

    # All backends dead -> 503 envelope within the configured timeout.
    dead = start_gateway(a.strata, work, "dead", [("d0", free_port()), ("d1", free_port())],
                         HEALTH.replace("unavailable_timeout_ms: 1500", "unavailable_timeout_ms: 800"),
                         tls=True)
    gws.append(dead)
    wait_for(lambda: request(dead.port, "GET", "/health")[0] == 200 if _alive(dead.port) else False, 10)
    st, _, _ = request(dead.port, "GET", "/ready")
    check(st == 503, "/ready is 503 with no healthy backend")
    t0 = time.time()
    st, h, j = request(dead.port, "POST", "/v1/completions", {"prompt": "x", "max_tokens": 2})
    dt = time.time() - t0
    check(st == 503 and "error" in j and j["error"].get("type") and dt < 3,
          f"all dead -> 503 envelope in {dt:.2f}s")
    st, _, j = stream(dead.port, "/v1/chat/completions", chat)[:3]
    check(st == 503, "all dead, streaming -> 503")

    # Access log: one JSON line per request.
    lines = [l for l in main_gw.output().splitlines() if l.startswith("{")]
    parsed = [json.loads(l) for l in lines]
    check(any(p.get("request_id") == "test-req-1" and p.get("status") == 200 for p in parsed),
          f"access log has JSON lines with the request id ({len(parsed)} lines)")

    test_chat_stream_failover(a, work, model, nodes, node_list, gws)
    test_node_api_key(a, work, model, gws)
    test_redis_cache_outage(a, work, node_list, gws)
    test_slow_clients(a, work, node_list, gws)
    test_front_door(a, work, node_list, gws)
    test_hostile_bodies(a, work, nodes, node_list, gws)


def metric(port, name):
    _, _, parsed = request(port, "GET", "/metrics")
    for line in parsed.get("_raw", "").splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def test_node_api_key(a, work, model, gws):
    """A node started with --api-key-file serves the gateway that has gateway.node_api_key_file
    (and reuses pooled connections to it); a gateway without the key gets backend errors."""
    key_file = os.path.join(work, "node.key")
    with open(key_file, "w") as f:
        f.write("node-key-0123456789abcdef0123456789\n")
    port = free_port()
    node = Proc(node_args(a.strata, model, port, "--api-key-file", key_file, parallel=2), port,
                "keyed")
    try:
        body = {"prompt": "Hello", "max_tokens": 2, "temperature": 0}
        st, _, _ = request(port, "POST", "/v1/completions", body)
        check(st == 401, f"node with --api-key-file refuses a request without the key ({st})")
        with_key = start_gateway(a.strata, work, "keyed", [("k0", port)], HEALTH +
                                 "node_api_key_file: node.key\n")
        gws.append(with_key)
        check(wait_for(lambda: request(with_key.port, "GET", "/ready")[0] == 200, 10),
              "keyed gateway ready")
        codes = [request(with_key.port, "POST", "/v1/completions", body)[0] for _ in range(5)]
        check(codes == [200] * 5, f"gateway with node_api_key_file is served ({codes})")
        reused = metric(with_key.port, "strata_gateway_upstream_reused_total")
        check(reused is not None and reused >= 3,
              f"sequential requests reuse pooled upstream connections ({reused})")
        without = start_gateway(a.strata, work, "unkeyed", [("k0", port)], HEALTH)
        gws.append(without)
        check(wait_for(lambda: request(without.port, "GET", "/ready")[0] == 200, 10),
              "unkeyed gateway ready")
        st, _, j = request(without.port, "POST", "/v1/completions", body)
        msg = json.dumps(j)
        check(st >= 500 and "401" in msg,
              f"gateway without the node key gets a backend error ({st} {msg[:160]})")
    finally:
        node.stop()


def test_chat_stream_failover(a, work, model, nodes, node_list, gws):
    """kill -9 of the serving replica mid-stream of a CHAT request: the gateway continues it on
    another replica with the token ids streamed so far (continue_token_ids), and the client's
    stream equals the undisturbed one, for greedy and for seeded sampling."""
    gw = start_gateway(a.strata, work, "chatfo", node_list, HEALTH)
    gws.append(gw)
    gp = gw.port
    ports = dict(node_list)
    for cname, extra in (("greedy", {"temperature": 0}),
                         ("seeded t=0.8", {"temperature": 0.8, "seed": 31337, "top_k": 0,
                                           "presence_penalty": 0.2})):
        check(wait_for(lambda: request(gp, "GET", "/api/cluster")[2]["healthy_backends"] == 3, 10),
              f"chat failover ({cname}): 3 healthy backends")
        body = dict({"messages": [{"role": "user", "content": "Tell me a long story"}],
                     "max_tokens": 300, "stream": True}, **extra)
        _, _, ref, ref_done = stream(node_list[0][1], "/v1/chat/completions", body)
        want = stream_texts(ref)
        served = {}
        c = http.client.HTTPConnection("127.0.0.1", gp, timeout=60)
        c.request("POST", "/v1/chat/completions", body=json.dumps(body).encode(),
                  headers={"Content-Type": "application/json"})
        r = c.getresponse()
        victim = r.getheader("X-Strata-Backend")
        def kill_at_6(evs):
            if len(evs) == 6 and "killed" not in served:
                served["killed"] = True
                nodes[victim].kill()

        evs, done = read_sse(r, kill_at_6, strict=False)
        c.close()
        got = stream_texts(evs)
        check(ref_done and sum(len(t) for t in want) > 50, f"chat failover ({cname}): reference is long")
        check("killed" in served and done and got == want and not any("error" in e for e in evs),
              f"chat failover ({cname}): kill -9 of {victim} mid-stream, the stream completes and "
              f"equals the undisturbed output ({len(got[0])}+{len(got[1])} vs "
              f"{len(want[0])}+{len(want[1])} chars)")
        check(len({e["id"] for e in evs}) == 1 and
              sum(1 for e in evs if e["choices"] and e["choices"][0].get("finish_reason")) == 1,
              f"chat failover ({cname}): one stream id and one finish chunk")
        check(not any("token_ids" in ch for e in evs for ch in e.get("choices", [])),
              f"chat failover ({cname}): token ids not shown to a client that did not ask")
        m = re.search(r"strata_gateway_failovers_total (\d+)", request(gp, "GET", "/metrics")[2]["_raw"])
        failovers = int(m.group(1)) if m else 0
        check(failovers > served.get("failovers_before", 0) and failovers >= (1 if cname == "greedy" else 2),
              f"chat failover ({cname}): the failover happened ({failovers} so far)")
        nodes[victim] = start_node(a.strata, model, ports[victim], victim)


def start_redis(port):
    return subprocess.Popen(["redis-server", "--port", str(port), "--save", "", "--appendonly", "no",
                             "--bind", "127.0.0.1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_redis_cache_outage(a, work, node_list, gws):
    """Two gateways share a real redis-server; stopping Redis mid-test loses no request."""
    import shutil
    if shutil.which("redis-server") is None:
        check(False, "redis-server is installed (scripts/setup.sh installs it)")
        return
    rport = free_port()
    redis = start_redis(rport)
    try:
        check(wait_for(lambda: _alive(rport), 10), "redis-server started")
        # The gateways share the key sealing the Redis entries (else each uses its own).
        with open(os.path.join(work, "cache.key"), "w") as f:
            f.write("cache-hmac-key-0123456789abcdef\n")
        cache = (f"cache: {{redis_url: 'redis://127.0.0.1:{rport}', ttl_s: 60, "
                 "redis_timeout_ms: 200, redis_retry_ms: 300, hmac_key_file: cache.key}")
        g1 = start_gateway(a.strata, work, "redis1", node_list, HEALTH + cache)
        g2 = start_gateway(a.strata, work, "redis2", node_list, HEALTH + cache)
        gws += [g1, g2]
        for g in (g1, g2):
            wait_for(lambda: request(g.port, "GET", "/ready")[0] == 200, 10)
        body = {"prompt": "Redis shared cache", "max_tokens": 8, "temperature": 0}
        st1, h1, j1 = request(g1.port, "POST", "/v1/completions", body)
        st2, h2, j2 = request(g2.port, "POST", "/v1/completions", body)
        check(st1 == 200 and st2 == 200 and h1.get("x-cache") == "MISS" and
              h2.get("x-cache") == "HIT" and j1["choices"] == j2["choices"],
              f"Redis cache shared by two gateways ({h1.get('x-cache')}, {h2.get('x-cache')})")
        redis.kill()
        redis.wait()
        results = []
        t0 = time.time()
        for i in range(12):
            b = dict(body, prompt=f"Redis down {i % 4}")
            st, h, j = request((g1 if i % 2 else g2).port, "POST", "/v1/completions", b)
            results.append(st == 200 and j["choices"][0]["text"] is not None)
        dt = time.time() - t0
        check(all(results), f"Redis stopped mid-test: {sum(results)}/12 requests answered ({dt:.2f}s)")
        redis = start_redis(rport)
        check(wait_for(lambda: _alive(rport), 10), "redis-server restarted")
        time.sleep(0.5)
        b = dict(body, prompt="Redis back")
        seen = []
        ok = wait_for(lambda: seen.append(request(g1.port, "POST", "/v1/completions", b)[1].get("x-cache"))
                      or seen[-1] == "HIT", 10)
        check(ok, f"cache recovers when Redis returns ({seen[-3:]})")
    finally:
        redis.kill()
        redis.wait()


def test_slow_clients(a, work, node_list, gws):
    """Slow clients (headers trickled byte by byte, bodies never finished) hold no one else up."""
    gw = start_gateway(a.strata, work, "slow", node_list, HEALTH)
    gws.append(gw)
    wait_for(lambda: request(gw.port, "GET", "/ready")[0] == 200, 10)
    slow = []
    for i in range(50):
        s = socket.create_connection(("127.0.0.1", gw.port))
        s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n{")
        slow.append(s)
    for i in range(50):
        s = socket.create_connection(("127.0.0.1", gw.port))
        s.sendall(b"GET /hea")
        slow.append(s)
    t0 = time.time()
    oks = 0
    for i in range(5):
        st, _, j = request(gw.port, "POST", "/v1/completions",
                           {"prompt": f"fast client {i}", "max_tokens": 4, "temperature": 0})
        oks += st == 200
    dt = time.time() - t0
    check(oks == 5 and dt < 10, f"100 slow clients connected: other users served ({oks}/5 in {dt:.2f}s)")
    st, _, j = request(gw.port, "POST", "/v1/completions", b'{"prompt": ', timeout=10)
    check(st == 400, "truncated JSON body -> 400")
    for s in slow:
        s.close()


def test_front_door(a, work, node_list, gws):
    """Authentication before the body, the admin key, connection caps, the read deadline."""
    fd = start_gateway(a.strata, work, "frontdoor", node_list, HEALTH + """
admin_key: adm-secret
max_connections: 64
max_connections_per_client: 8
request_read_timeout_ms: 1000
api_keys:
  - {key: sk-front-door-key}
""")
    gws.append(fd)
    p = fd.port
    auth = {"Authorization": "Bearer sk-front-door-key"}
    st, dt = front_door.announce_body(p, "/v1/completions")
    check(st == 401 and dt < 3, f"no key, 8 MiB announced, no body sent -> 401 after the headers ({st}, {dt:.2f}s)")
    st, dt = front_door.announce_body(p, "/v1/completions", headers="Authorization: Bearer nope\r\n")
    check(st == 401, f"bad key, body never sent -> 401 ({st})")
    st, _, j = request(p, "POST", "/v1/completions", {"prompt": "x", "max_tokens": 2}, auth)
    check(st == 200, f"a valid key still gets through ({st})")
    # Admin surface.
    check(request(p, "GET", "/metrics")[0] == 401, "/metrics without the admin key -> 401")
    check(request(p, "GET", "/api/cluster", headers=auth)[0] == 401, "/api/cluster with an API key (not admin) -> 401")
    st, _, m = request(p, "GET", "/metrics", headers={"Authorization": "Bearer adm-secret"})
    check(st == 200 and "strata_gateway_connections" in m["_raw"], "/metrics with the admin key -> 200")
    check(request(p, "GET", "/health")[0] == 200, "/health stays open with an admin key")
    # A slow client cannot hold a connection past the read deadline.
    closed = front_door.slow_headers(p, interval=0.1, limit_s=6)
    check(closed is not None and closed < 3, f"trickled headers closed at the read deadline ({closed})")
    # Idle connections over the caps do not lock out a real request.
    socks = front_door.idle_flood(p, 200)
    try:
        time.sleep(0.3)
        st, _, _ = request(p, "POST", "/v1/completions", {"prompt": "x", "max_tokens": 2}, auth)
        check(st == 200, f"a request gets through while {len(socks)} idle connections are open ({st})")
    finally:
        front_door.close_all(socks)
    check(request(p, "GET", "/health")[0] == 200, "gateway alive after the idle flood")
    log = fd.output()
    check('"key":"key-' in log and "sk-f" not in log,
          "a key without a name is logged as key-<hash>, never a prefix of the key")


def test_hostile_bodies(a, work, nodes, node_list, gws):
    """Deep nesting and wrong field types: a 400 envelope, never a crash or a reset."""
    gw = start_gateway(a.strata, work, "hostile", node_list, HEALTH)
    gws.append(gw)
    wait_for(lambda: request(gw.port, "GET", "/ready")[0] == 200, 10)
    gp = gw.port

    def refused(st, j, code=None):
        e = j.get("error") if isinstance(j, dict) else None
        return (st == 400 and isinstance(e, dict) and e.get("message") and
                e.get("type") == "invalid_request_error" and (code is None or e.get("code") == code))

    n = 100000  # about 200 KB: the body that used to overflow the gateway's stack
    for what, inner in (("arrays", "[" * n + "]" * n), ("objects", '{"a":' * n + "1" + "}" * n)):
        body = ('{"prompt":"x","a":' + inner + "}").encode()
        t0 = time.time()
        st, _, j = request(gp, "POST", "/v1/completions", body, timeout=30)
        check(refused(st, j, "json_too_deep") and time.time() - t0 < 5,
              f"{n} nested {what} -> 400 json_too_deep ({st})")
    st, _, j = request(gp, "POST", "/v1/chat/completions",
                       ('{"messages":' + "[" * 65 + "]" * 65 + "}").encode())
    check(refused(st, j, "json_too_deep"), "65 levels in messages -> 400")
    cases = [
        ("/v1/completions", {"prompt": "x", "stream": "yes"}, "stream"),
        ("/v1/completions", {"prompt": "x", "stream": 1}, "stream"),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "stream": "yes"},
         "stream"),
        ("/v1/completions", {"prompt": "x", "max_tokens": "5"}, "max_tokens"),
        ("/v1/completions", {"prompt": "x", "max_tokens": -1}, "max_tokens"),
        ("/v1/completions", {"prompt": "x", "temperature": "hot"}, "temperature"),
        ("/v1/completions", {"prompt": "x", "temperature": 1e300}, "temperature"),
        ("/v1/completions", {"prompt": "x", "top_p": 7}, "top_p"),
        ("/v1/completions", {"prompt": "x", "model": 5}, "model"),
        ("/v1/completions", {"prompt": "x", "return_token_ids": "yes"}, "return_token_ids"),
        ("/v1/completions", {"prompt": "x", "continue_token_ids": [-1]}, "continue_token_ids"),
        ("/v1/completions", {"prompt": "x", "stream_options": {"include_usage": "y"}},
         "include_usage"),
        ("/v1/chat/completions", {"messages": [{"role": 3, "content": "x"}]}, "role"),
        ("/api/inference", {"prompt": "x", "max_length": "many"}, "max_length"),
    ]
    for path, body, field in cases:
        st, _, j = request(gp, "POST", path, body, timeout=30)
        check(refused(st, j) and field in j["error"]["message"],
              f"{path} {json.dumps(body)[:60]} -> 400 naming '{field}' ({st})")
    st, _, j = request(gp, "POST", "/v1/completions", b'{"prompt":"x","t":1e999}')
    check(refused(st, j, "invalid_json"), "number beyond double -> 400 invalid_json")
    # null fields are absent, as at the nodes.
    st, _, j = request(gp, "POST", "/v1/completions",
                       {"prompt": "x", "max_tokens": 2, "temperature": 0, "stream": None,
                        "model": None, "return_token_ids": None})
    check(st == 200 and j.get("object") == "text_completion", f"null fields accepted ({st})")
    # Straight at a node too (the node parses with the same limits).
    live = [(nm, p) for nm, p in node_list if nodes[nm].proc.poll() is None]
    np_ = live[0][1]
    st, _, j = request(np_, "POST", "/v1/completions",
                       ('{"prompt":"x","a":' + "[" * n + "]" * n + "}").encode(), timeout=30)
    check(refused(st, j, "json_too_deep"), f"node: {n} nested arrays -> 400 ({st})")
    st, _, j = request(np_, "POST", "/v1/completions", {"prompt": "x", "stream": "yes"})
    check(refused(st, j) and "stream" in j["error"]["message"], "node: stream 'yes' -> 400")
    # Both still up, and a normal request answers as before.
    check(gw.proc.poll() is None and all(nodes[nm].proc.poll() is None for nm, _ in live),
          "gateway and nodes still running after hostile bodies")
    st, _, j = request(gp, "POST", "/v1/completions",
                       {"prompt": "after", "max_tokens": 3, "temperature": 0})
    check(st == 200 and j["usage"]["completion_tokens"] == 3, "normal request after hostile bodies")

    # Token accounting: a stream's real usage is known to the gateway (it asks the node), and
    # the client sees the usage chunk only when it asked for it.
    sb = {"prompt": "count me", "max_tokens": 7, "temperature": 0, "stream": True}
    st, h, evs, done = stream(gp, "/v1/completions", sb, {"X-Request-Id": "usage-plain"})
    check(st == 200 and done and evs and all("usage" not in e for e in evs),
          "stream without include_usage: no usage in any event")
    st, h, evs2, done = stream(gp, "/v1/completions",
                               dict(sb, stream_options={"include_usage": True}))
    check(st == 200 and done and evs2[-1]["choices"] == [] and
          evs2[-1]["usage"]["completion_tokens"] == 7 and text_of(evs2) == text_of(evs),
          "stream with include_usage: usage chunk passed on")
    time.sleep(0.2)
    logged = [json.loads(l) for l in gw.output().splitlines()
              if l.startswith("{") and "usage-plain" in l]
    check(logged and logged[-1].get("completion_tokens") == 7,
          f"stream without include_usage billed its real completion tokens ({logged[-1:]})")


def _alive(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


if __name__ == "__main__":
    main()
