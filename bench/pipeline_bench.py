#!/usr/bin/env python3
"""Benchmark of pipeline mode (issue 5): memory per stage, throughput, bytes on the wire.

For 1, 2 and 3 stages (separate `strata node` processes on this machine) it measures:
  - resident memory (VmRSS) of every stage after a warm-up request;
  - generation throughput: one stream, and the aggregate of 2/4/8 concurrent streams
    (completion tokens / wall second, temperature 0, fixed max_tokens);
  - with --link: the same through an emulated link between stages (default 1 Gbit/s, 0.5 ms
    one way), and the bytes that crossed each hop per generated token, for F32 and Q8
    activations;
  - the accuracy effect of Q8 activations: greedy continuations compared with F32.

The link emulator is a user-space TCP relay between consecutive stages (one thread per
direction; each chunk is released at max(arrival + delay, previous release + size / rate)).
The kernel of the development machine lacks sch_netem, so `tc netem` is not available; see
docs/performance.md.

Stdlib only. Example:
  python3 bench/pipeline_bench.py --strata build/strata --model /tmp/r1q15-q8.gguf --link
"""
import argparse
import json
import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "common"))
import procs  # noqa: E402
from procs import free_port  # noqa: E402

SECRET = "pipeline-bench-secret-0123456789abcdef"  # >= 32 bytes
PROMPTS = [
    "Explain how a suspension bridge carries its load.",
    "Write a short poem about copper lanterns at night.",
    "List three uses of a prism in physics experiments.",
    "Why do glaciers move, and how fast can they go?",
    "Describe the water cycle to a ten year old.",
    "What is the difference between a canyon and a valley?",
    "Summarize the rules of chess in four sentences.",
    "How does a falcon see prey from high above?",
]


class Relay:
    """TCP relay emulating a link: one-way delay and a rate limit per direction."""

    def __init__(self, target_port, delay_s, rate_bps):
        self.target_port = target_port
        self.delay_s = delay_s
        self.rate = rate_bps / 8.0  # bytes per second
        self.bytes = [0, 0]  # downstream (towards target), upstream
        self.lock = threading.Lock()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def reset_counts(self):
        with self.lock:
            self.bytes = [0, 0]

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            try:
                t = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                c.close()
                continue
            for s in (c, t):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._pipe(c, t, 0)
            self._pipe(t, c, 1)

    def _pipe(self, src, dst, direction):
        import collections
        q = collections.deque()
        cv = threading.Condition()
        state = {"closed": False}

        def reader():
            while True:
                try:
                    data = src.recv(1 << 16)
                except OSError:
                    data = b""
                with cv:
                    if not data:
                        state["closed"] = True
                    else:
                        q.append((time.perf_counter(), data))
                    cv.notify()
                if not data:
                    return

        def writer():
            free_at = 0.0
            while True:
                with cv:
                    while not q and not state["closed"]:
                        cv.wait()
                    if not q:
                        break
                    arrived, data = q.popleft()
                release = max(arrived + self.delay_s, free_at + len(data) / self.rate)
                free_at = release
                while True:
                    left = release - time.perf_counter()
                    if left <= 0:
                        break
                    time.sleep(left)
                try:
                    dst.sendall(data)
                except OSError:
                    break
                with self.lock:
                    self.bytes[direction] += len(data)
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

        threading.Thread(target=reader, daemon=True).start()
        threading.Thread(target=writer, daemon=True).start()


class Stage(procs.Proc):
    def __init__(self, args, first, last, next_port, activations, with_stage_port):
        self.http_port = free_port()
        self.stage_port = free_port() if with_stage_port else None
        cmd = procs.node_args(args.strata, args.model, self.http_port, threads=args.threads,
                              parallel=args.parallel, ctx=args.ctx)
        if not (first == 0 and last == args.n_layers - 1):
            cmd += ["--layers", f"{first}-{last}", "--activations", activations]
        if self.stage_port:
            cmd += ["--stage-port", str(self.stage_port)]
        if next_port:
            cmd += ["--next", f"127.0.0.1:{next_port}"]
        self.layers = f"{first}-{last}"
        # The secret from the environment, not the command line (visible in ps).
        super().__init__(cmd, self.http_port, f"stage {self.layers}",
                         env={"STRATA_CLUSTER_SECRET": SECRET}, wait=False)

    def wait_ready(self, timeout=600):
        super().wait_ready(timeout)

    def rss_mib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
        return 0.0


def splits(n_layers, k):
    bounds = [round(i * n_layers / k) for i in range(k + 1)]
    return [(bounds[i], bounds[i + 1] - 1) for i in range(k)]


def start_pipeline(args, k, activations, link):
    """Starts k stages, last first; returns (stages, relays). stages[0] is the head."""
    ranges = splits(args.n_layers, k)
    stages, relays = [], []
    next_port = None
    for i in reversed(range(k)):
        first, last = ranges[i]
        st = Stage(args, first, last, next_port, activations, with_stage_port=(i > 0))
        stages.insert(0, st)
        if i > 0:
            st.wait_ready()
            target = st.stage_port
            if link:
                r = Relay(target, args.delay_ms / 1000.0, args.rate_gbit * 1e9)
                relays.insert(0, r)
                target = r.port
            next_port = target
    stages[0].wait_ready()
    return stages, relays


def complete(port, prompt, max_tokens, timeout=900):
    body = {"prompt": prompt, "max_tokens": max_tokens, "temperature": 0}
    st, _, j = procs.request(port, "POST", "/v1/completions", body, timeout=timeout)
    if st != 200:
        raise RuntimeError(f"HTTP {st}: {str(j)[:300]}")
    return j["choices"][0]["text"], j["usage"]["completion_tokens"]


def throughput(port, n_streams, max_tokens):
    results, wall = procs.map_parallel(
        lambda i: complete(port, PROMPTS[i % len(PROMPTS)], max_tokens), n_streams, strict=True)
    tokens = sum(r[1] for r in results)
    return tokens / wall, tokens


def run_config(args, k, activations, link, report):
    stages, relays = start_pipeline(args, k, activations, link)
    try:
        complete(stages[0].http_port, PROMPTS[0], 8)  # warm-up: touches every stage's weights
        rss = [round(s.rss_mib(), 1) for s in stages]
        row = {"stages": k, "activations": activations,
               "link": f"{args.rate_gbit} Gbit/s, {args.delay_ms} ms" if link else "loopback",
               "layers": [s.layers for s in stages], "rss_mib": rss, "tokens_per_s": {}}
        for n in args.streams:
            for r in relays:
                r.reset_counts()
            tps, tokens = throughput(stages[0].http_port, n, args.max_tokens)
            row["tokens_per_s"][n] = round(tps, 2)
            if relays:
                row.setdefault("wire_bytes_per_token", {})[n] = [
                    round((r.bytes[0] + r.bytes[1]) / max(tokens, 1)) for r in relays]
            print(f"  {k} stage(s) {activations} {row['link']}: {n} stream(s) {tps:.2f} tok/s",
                  flush=True)
        report.append(row)
        return row
    finally:
        for s in stages:
            s.stop()


def accuracy(args):
    """Greedy continuations with Q8 activations vs F32 over 2 stages."""
    outs = {}
    for act in ("f32", "q8"):
        stages, _ = start_pipeline(args, 2, act, link=False)
        try:
            outs[act] = [complete(stages[0].http_port, p, args.max_tokens)[0] for p in PROMPTS]
        finally:
            for s in stages:
                s.stop()
    same = sum(a == b for a, b in zip(outs["f32"], outs["q8"]))
    prefix = []
    for a, b in zip(outs["f32"], outs["q8"]):
        n = 0
        while n < min(len(a), len(b)) and a[n] == b[n]:
            n += 1
        prefix.append(n / max(len(a), 1))
    return {"prompts": len(PROMPTS), "identical": same,
            "mean_common_prefix_share": round(sum(prefix) / len(prefix), 3)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--strata", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--n-layers", type=int, default=28)
    ap.add_argument("--stages", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--streams", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--parallel", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ctx", type=int, default=512)
    ap.add_argument("--link", action="store_true", help="also measure through an emulated link")
    ap.add_argument("--rate-gbit", type=float, default=1.0)
    ap.add_argument("--delay-ms", type=float, default=0.5)
    ap.add_argument("--accuracy", action="store_true", help="compare Q8 with F32 activations")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()

    report = []
    for k in args.stages:
        run_config(args, k, "f32", False, report)
    if args.link:
        for k in args.stages:
            if k > 1:
                for act in ("f32", "q8"):
                    run_config(args, k, act, True, report)
    result = {"configs": report}
    if args.accuracy:
        result["q8_accuracy"] = accuracy(args)
        print("  q8 vs f32:", result["q8_accuracy"], flush=True)
    print(json.dumps(result, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
