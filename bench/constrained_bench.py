#!/usr/bin/env python3
"""Benchmark of constrained decoding (issue 15): decode tokens/s of one stream with a JSON
schema active against the same request without it, on a real node over loopback.

A-B-B-A rounds (A: unconstrained, B: the schema), each a streamed /v1/completions request with
ignore_eos and a fixed seed; decode tok/s = (tokens - 1) / (time of the last token - time of
the first), so prefill and the first mask do not count; and the node's CPU time per token
(/proc), which other processes on the cores disturb far less than wall time. Prints each run,
the machine's load average before and after, and B/A of the means.

Stdlib only. Example:
  python3 bench/constrained_bench.py --strata build/strata --model /tmp/r1q15-q8.gguf
The model is synthesized (`strata model synth --shape r1-qwen-1.5b --type q8_0` with the real
Qwen2 vocabulary of tests/data) when --model does not exist.
"""
import argparse
import http.client
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "common"))
import procs  # noqa: E402

SCHEMA = {"type": "object", "properties": {
    "items": {"type": "array", "items": {"type": "object", "properties": {
        "name": {"type": "string"}, "qty": {"type": "integer"},
        "tags": {"type": "array", "items": {"type": "string"}}},
        "required": ["name", "qty", "tags"]}, "minItems": 50}},
    "required": ["items"]}  # at least 50 items: the answer outlasts --tokens


def cpu_seconds(pid):
    """User + system CPU time of a process (all its threads), from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(port, tokens, seed, constrained):
    body = {"prompt": "List the items in the warehouse as JSON:", "max_tokens": tokens,
            "seed": seed, "temperature": 0.8, "ignore_eos": True, "stream": True}
    if constrained:
        body["json_schema"] = SCHEMA
    c = http.client.HTTPConnection(procs.HOST, port, timeout=1800)
    c.request("POST", "/v1/completions", json.dumps(body), {"Content-Type": "application/json"})
    r = c.getresponse()
    times, text = [], ""
    while True:
        line = r.readline()
        if not line or line.startswith(b"data: [DONE]"):
            break
        if line.startswith(b"data: "):
            ev = json.loads(line[6:])
            if ev.get("choices") and ev["choices"][0].get("text"):
                times.append(time.perf_counter())
                text += ev["choices"][0]["text"]
    c.close()
    n = len(times)
    return (n - 1) / (times[-1] - times[0]) if n > 1 else 0.0, n, text


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--strata", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args()
    if not os.path.exists(a.model):
        subprocess.run([a.strata, "model", "synth", "--shape", "r1-qwen-1.5b", "--type", "q8_0",
                        "--vocab", os.path.join(HERE, "..", "tests", "data", "vocab",
                                                "ggml-vocab-qwen2.gguf"), "-o", a.model], check=True)
    port = procs.free_port()
    node = procs.Proc(procs.node_args(a.strata, a.model, port, threads=a.threads, parallel=1,
                                      ctx=1024), port, "node", timeout=600)
    load0 = os.getloadavg()
    res = {False: [], True: []}
    cpu = {False: [], True: []}  # node CPU ms per generated token
    try:
        run(port, 8, 1, True)  # warm-up: weights paged in, the grammar compiled
        for r in range(a.rounds):
            for constrained in (False, True, True, False):
                c0 = cpu_seconds(node.proc.pid)
                tps, n, text = run(port, a.tokens, 100 + r, constrained)
                cpu_ms = 1000 * (cpu_seconds(node.proc.pid) - c0) / max(n, 1)
                res[constrained].append(tps)
                cpu[constrained].append(cpu_ms)
                sample = "  " + repr(text[:60]) if constrained else ""
                print(f"round {r} {'B schema' if constrained else 'A free  '}: {tps:6.2f} tok/s, "
                      f"{cpu_ms:7.1f} CPU ms/token ({n} tokens){sample}", flush=True)
    finally:
        node.stop()
    load1 = os.getloadavg()
    mean = {k: sum(v) / len(v) for k, v in res.items()}
    mcpu = {k: sum(v) / len(v) for k, v in cpu.items()}
    print(f"load average {load0[0]:.1f} -> {load1[0]:.1f} on {os.cpu_count()} cores")
    print(f"unconstrained {mean[False]:.2f} tok/s, JSON schema {mean[True]:.2f} tok/s, "
          f"ratio {mean[True] / mean[False]:.3f}")
    # CPU time per token is what the constraint adds (masks, their walks on the helper thread),
    # and is far less disturbed than wall time by other processes on the cores.
    print(f"node CPU per token: unconstrained {mcpu[False]:.1f} ms, JSON schema "
          f"{mcpu[True]:.1f} ms, speed ratio {mcpu[False] / mcpu[True]:.3f}")


if __name__ == "__main__":
    main()
