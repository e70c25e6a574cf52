#!/usr/bin/env python3
"""Integration test of pipeline mode: `strata node --layers A-B --next HOST:PORT --stage-port P`
stages as separate processes on loopback with a synthesized tiny model. Checks that 2- and
3-stage pipelines generate exactly what a single node does (greedy and seeded, concurrent and
streaming), that killing the middle stage mid-stream ends the stream with an error within about
a second and that the pipeline serves again once the stage is restarted, and that garbage and
unauthenticated bytes sent to a stage port do not disturb it.

usage: pipeline_test.py --strata PATH [--workdir DIR]
"""
import http.client
import json
import os
import socket
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common"))
import procs  # noqa: E402
from procs import check, free_port, summary  # noqa: E402
from sse import read_sse  # noqa: E402

SECRET = "pipeline-test-secret-0123456789abcdef"  # >= 32 bytes


class Node(procs.Proc):
    """A `strata node` (1 thread, 4 slots, 512 positions) with the test's cluster secret."""

    def __init__(self, strata, model, *extra, port=None, wait=True):
        self.strata, self.model, self.extra = strata, model, extra
        self.port = port or free_port()
        super().__init__(self.command(), self.port, f"node :{self.port}",
                         env={"STRATA_CLUSTER_SECRET": SECRET, "STRATA_LOG": "info"},
                         wait=wait, timeout=30)

    def command(self):
        return [self.strata, "node", "--model", self.model, "--port", str(self.port), "--threads",
                "1", "--parallel", "4", "--ctx", "512", *self.extra]

    def get(self, path):
        """(status, parsed JSON or the text)."""
        st, _, body = procs.request(self.port, "GET", path, timeout=30)
        return st, body["_raw"] if set(body) == {"_raw"} else body

    def post(self, path, body, timeout=60):
        st, _, j = procs.request(self.port, "POST", path, body, timeout=timeout)
        return st, j

    def stream(self, path, body, on_event=None, timeout=60):
        """Returns (text, events, saw_done, error_event)."""
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        c.request("POST", path, body=json.dumps(dict(body, stream=True)).encode(),
                  headers={"Content-Type": "application/json"})
        r = c.getresponse()
        assert r.status == 200, (r.status, r.read())
        events, done = read_sse(r, (lambda evs: on_event(len(evs))) if on_event else None)
        c.close()
        text, error = "", None
        for ev in events:
            if "error" in ev:
                error = ev
            elif ev.get("choices"):
                text += ev["choices"][0].get("text") or ""
        return text, events, done, error

    def stop(self):
        if not self.running():
            return
        rc, bad = self.stop_checked(20)
        check(rc == 0 and not bad, f"node on port {self.port} stops cleanly (exit {rc})")
        if bad:
            print("\n".join(bad[:20]))


def complete(node, prompt, n=24, **kw):
    body = {"prompt": prompt, "max_tokens": n, "temperature": 0}
    body.update(kw)
    st, j = node.post("/v1/completions", body)
    assert st == 200, (st, j)
    return j["choices"][0]["text"]


PROMPTS = ["Hello world", "The quick brown fox", "Once upon a time there was"]
SEEDED = {"temperature": 0.9, "top_k": 20, "seed": 1234, "repeat_penalty": 1.1}


def reference(node):
    ref = {}
    for p in PROMPTS:
        ref[("greedy", p)] = complete(node, p)
        ref[("seeded", p)] = complete(node, p, **SEEDED)
    ref["stream"] = node.stream("/v1/completions", {"prompt": PROMPTS[0], "max_tokens": 24,
                                                    "temperature": 0})[0]
    return ref


def concurrent(node, prompts, **kw):
    return procs.map_parallel(lambda i: complete(node, prompts[i], **kw), len(prompts))[0]


def check_pipeline(name, head, ref):
    st, h = head.get("/health")
    check(st == 200 and h.get("role") == "head", f"{name}: head /health says role head")
    for p in PROMPTS:
        check(complete(head, p) == ref[("greedy", p)], f"{name}: greedy '{p}' == single node")
        check(complete(head, p, **SEEDED) == ref[("seeded", p)], f"{name}: seeded '{p}' == single node")
    got = concurrent(head, PROMPTS)
    check(got == [ref[("greedy", p)] for p in PROMPTS], f"{name}: 3 concurrent greedy == single node")
    got = concurrent(head, PROMPTS, **SEEDED)
    check(got == [ref[("seeded", p)] for p in PROMPTS], f"{name}: 3 concurrent seeded == single node")
    text, _, done, err = head.stream("/v1/completions", {"prompt": PROMPTS[0], "max_tokens": 24,
                                                        "temperature": 0})
    check(done and err is None and text == ref["stream"], f"{name}: streaming == single node")


def hello_frame():
    payload = struct.pack("<I", 2) + os.urandom(32)
    return struct.pack("<IIHH", 0x31505453, len(payload), 1, 0) + payload


def attack(port):
    """Garbage, oversized, unauthenticated and wrong-secret traffic to a stage port."""
    blobs = [os.urandom(200), b"GET / HTTP/1.1\r\n\r\n",
             struct.pack("<IIHH", 0x31505453, 1 << 30, 1, 0),        # oversized frame
             struct.pack("<IIHH", 0x31505453, 30, 5, 0) + os.urandom(30),  # Forward, no handshake
             hello_frame() + struct.pack("<IIHH", 0x31505453, 100, 3, 0) + os.urandom(100)]
    for b in blobs:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=3) as s:
                s.sendall(b)
                s.settimeout(3)
                try:
                    s.recv(4096)
                except OSError:
                    pass
        except OSError:
            pass


def main():
    a, work = procs.test_args("strata_pipeline_test_")
    model = procs.synth_model(a.strata, os.path.join(work, "pipeline-tiny.gguf"), "q8_0",
                              "--layers", "6")
    t0 = time.time()

    single = Node(a.strata, model)
    try:
        ref = reference(single)
    finally:
        single.stop()

    # --- 2 stages: 0-2 | 3-5
    nodes = []
    try:
        sp = free_port()
        tail = Node(a.strata, model, "--layers", "3-5", "--stage-port", str(sp))
        nodes.append(tail)
        st, h = tail.get("/health")
        check(st == 200 and h.get("role") == "tail" and h.get("layers") == 3,
              f"tail /health reports its layers ({h})")
        st, j = tail.post("/v1/completions", {"prompt": "x", "max_tokens": 2})
        check(st == 503 and "head" in json.dumps(j), "a non-head stage refuses inference with 503")
        head = Node(a.strata, model, "--layers", "0-2", "--next", f"127.0.0.1:{sp}")
        nodes.append(head)
        check_pipeline("2 stages", head, ref)
        st, m = head.get("/metrics")
        check(st == 200 and "strata_stage_bytes_sent_per_token" in m and
              "strata_stage_compute_seconds_per_token" in m and "strata_stage_hop_rtt_seconds" in m,
              "head /metrics has per-stage metrics")
        st, m = tail.get("/metrics")
        check(st == 200 and "strata_stage_compute_seconds_per_token" in m, "tail /metrics has stage metrics")
    finally:
        for n in reversed(nodes):
            n.stop()

    # --- 3 stages: 0-1 | 2-3 | 4-5
    nodes = []
    try:
        tail_port, mid_port = free_port(), free_port()
        tail = Node(a.strata, model, "--layers", "4-5", "--stage-port", str(tail_port))
        nodes.append(tail)
        mid = Node(a.strata, model, "--layers", "2-3", "--stage-port", str(mid_port),
                   "--next", f"127.0.0.1:{tail_port}")
        nodes.append(mid)
        # Grace 0: requests fail as soon as a stage does (no replay; see tests/failover).
        head = Node(a.strata, model, "--layers", "0-1", "--next", f"127.0.0.1:{mid_port}",
                    "--stage-grace-ms", "0")
        nodes.append(head)
        check_pipeline("3 stages", head, ref)

        # Garbage and unauthenticated bytes to both stage ports: the pipeline keeps serving.
        attack(mid_port)
        attack(tail_port)
        check(complete(head, PROMPTS[1]) == ref[("greedy", PROMPTS[1])],
              "3 stages: still identical after garbage/unauthenticated connections")
        st, m = mid.get("/metrics")
        rejected = [l for l in m.splitlines() if l.startswith("strata_stage_connections_rejected_total")]
        check(rejected and float(rejected[0].split()[1]) >= 4, f"middle stage counted rejected connections ({rejected})")

        # Kill the middle stage mid-stream: the stream ends with an error event within ~1 s.
        killed_at = [None]

        def on_event(n):
            if n == 3 and killed_at[0] is None:
                mid.kill()
                killed_at[0] = time.time()
        _, events, done, err = head.stream(
            "/v1/completions", {"prompt": PROMPTS[2], "max_tokens": 400, "temperature": 0,
                                "ignore_eos": True}, on_event=on_event)
        ended = time.time()
        check(killed_at[0] is not None, "middle stage killed mid-stream")
        check(err is not None, f"stream ended with an error event ({err})")
        if killed_at[0] is not None:
            check(ended - killed_at[0] < 1.5, f"error within ~1 s of the kill ({ended - killed_at[0]:.2f} s)")
        st, j = head.post("/v1/completions", {"prompt": "abc", "max_tokens": 4}, timeout=10)
        check(st >= 500 and "error" in j, f"request while the stage is down fails clearly ({st})")

        # Restart it: the head reconnects by itself and serves identical output again.
        mid.start(wait=True)
        deadline = time.time() + 15
        ok = False
        while time.time() < deadline and not ok:
            st, h = head.get("/health")
            ok = h.get("next_connected") is True
            time.sleep(0.1)
        check(ok, "head reconnected to the restarted middle stage")
        check(complete(head, PROMPTS[0]) == ref[("greedy", PROMPTS[0])],
              "after restart: greedy output == single node (prompt cache re-prefilled)")
        got = concurrent(head, PROMPTS)
        check(got == [ref[("greedy", p)] for p in PROMPTS], "after restart: concurrent == single node")
    finally:
        for n in reversed(nodes):
            n.stop()

    check_config_pipeline(a.strata, work, model, ref)

    print(f"{time.time() - t0:.1f} s")
    return summary("pipeline")


class ConfigNode(Node):
    """`strata node --config FILE --name NAME`: every other setting comes from the file."""

    def __init__(self, strata, config, name, port):
        self.config, self.node_name = config, name
        super().__init__(strata, None, port=port)

    def command(self):
        return [self.strata, "node", "--config", self.config, "--name", self.node_name]

    def start(self, wait=True, timeout=30):
        self.env.pop("STRATA_CLUSTER_SECRET", None)  # the file holds the secret
        super().start(wait, timeout)


def write_cluster(path, model, head_port, tail_port, stage_port, memory="1GiB"):
    with open(path, "w") as f:
        f.write(f"""model:
  path: {os.path.basename(model)}
cluster:
  secret: {SECRET}
nodes:
  - name: head
    port: {head_port}
    layers: auto
    next: tail
    memory: {memory}
    speed: 2.0
    threads: 1
    parallel: 4
    ctx: 512
  - name: tail
    port: {tail_port}
    stage_port: {stage_port}
    layers: auto
    memory: {memory}
    speed: 1.0
    threads: 1
    parallel: 4
    ctx: 512
""")


def check_config_pipeline(strata, work, model, ref):
    """A 2-stage pipeline started from one cluster.yaml with layers: auto: both nodes compute the
    same plan (the one `strata plan` prints), take their own ranges, and generate exactly what a
    single node does. A plan that does not fit stops the node with the planner's message."""
    cfg = os.path.join(work, "cluster-auto.yaml")
    head_port, tail_port, stage_port = free_port(), free_port(), free_port()
    write_cluster(cfg, model, head_port, tail_port, stage_port)
    plan = json.loads(subprocess.run(
        [strata, "plan", "--model", model, "--nodes", "head:mem=1GiB,speed=2", "tail:mem=1GiB,speed=1",
         "--ctx", "512", "--parallel", "4", "--json"], check=True, capture_output=True).stdout)
    want = {s["node"]: (s["first"], s["last"] - 1) for s in plan["stages"]}
    nodes = []
    try:
        tail = ConfigNode(strata, cfg, "tail", tail_port)
        nodes.append(tail)
        head = ConfigNode(strata, cfg, "head", head_port)
        nodes.append(head)
        got = {}
        for name, n in (("head", head), ("tail", tail)):
            st, h = n.get("/health")
            got[name] = (h.get("first_layer"), h.get("last_layer"))
        check(got == want and got["head"][1] + 1 == got["tail"][0] and got["tail"][1] == 5,
              f"config pipeline: layers auto == strata plan's split ({got} vs {want})")
        check_pipeline("config pipeline (layers auto)", head, ref)
    finally:
        for n in reversed(nodes):
            n.stop()
    # Does not fit: exit 1 with the planner's message.
    small = os.path.join(work, "cluster-small.yaml")
    write_cluster(small, model, free_port(), free_port(), free_port(), memory="1MiB")
    r = subprocess.run([strata, "node", "--config", small, "--name", "head"], capture_output=True,
                       text=True, timeout=60)
    check(r.returncode == 1 and "does not fit" in r.stderr,
          f"config pipeline: a plan that does not fit -> exit 1 ({r.returncode}: {r.stderr.strip()[:200]})")
    r = subprocess.run([strata, "node", "--config", small, "--name", "nobody"], capture_output=True,
                       text=True, timeout=60)
    check(r.returncode == 1 and "nobody" in r.stderr, "config pipeline: an unknown --name -> exit 1")


if __name__ == "__main__":
    sys.exit(main())
