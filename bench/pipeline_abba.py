#!/usr/bin/env python3
"""Pipeline throughput against one node, interleaved A-B-B-A (issue 18).

A: one `strata node` holding every layer; B: a pipeline of stages (`--split`, e.g. 0-15,16-27:
the split `strata plan` picks) on this machine. Both are started once and stay up; for every
stream count the aggregate completion tokens per wall second of N concurrent *streaming*
clients (`"stream": true`, temperature 0, fixed max_tokens, tokens counted from the SSE
chunks) is measured in the order A, B, B, A (--rounds times), and the ratio B/A is the median
of the per-round ratios (so slow drift of the machine cancels). Every text B streams must equal
A's for the same prompt (greedy: a pipeline generates exactly what one node does).

Stdlib only. Example (1 thread per process, the issue's setting):
  python3 bench/pipeline_abba.py --strata build/strata --model r1q15-q8.gguf \\
      --split 0-15,16-27 --threads 1 --streams 1 4 8 --json out.json
"""
import argparse
import http.client
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "common"))
import procs  # noqa: E402
from pipeline_bench import PROMPTS, Stage  # noqa: E402


def start_single(args):
    st = Stage(args, 0, args.n_layers - 1, None, "f32", with_stage_port=False)
    st.wait_ready()
    return [st]


def start_pipeline(args):
    ranges = [tuple(int(x) for x in r.split("-")) for r in args.split.split(",")]
    stages, next_port = [], None
    for i in reversed(range(len(ranges))):
        first, last = ranges[i]
        st = Stage(args, first, last, next_port, args.activations, with_stage_port=(i > 0))
        stages.insert(0, st)
        if i > 0:
            st.wait_ready()
        next_port = st.stage_port
    stages[0].wait_ready()
    return stages


def stream(port, prompt, max_tokens, timeout=900):
    """One streaming completion: (text, tokens) from the SSE chunks."""
    body = json.dumps({"prompt": prompt, "max_tokens": max_tokens, "temperature": 0,
                       "stream": True,
                       "stream_options": {"include_usage": True}}).encode()
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("POST", "/v1/completions", body=body, headers={"Content-Type": "application/json"})
        r = c.getresponse()
        if r.status != 200:
            raise RuntimeError(f"HTTP {r.status}: {r.read()[:300]!r}")
        text, tokens = [], 0
        for raw in r:
            line = raw.decode().strip()
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            j = json.loads(line[6:])
            if "error" in j:
                raise RuntimeError(str(j["error"]))
            for ch in j.get("choices", []):
                if ch.get("text") is not None:
                    text.append(ch["text"])
            if j.get("usage"):
                tokens = j["usage"]["completion_tokens"]
        return "".join(text), tokens
    finally:
        c.close()


def measure(port, n, max_tokens):
    """Aggregate tokens/s of n concurrent streams, and their texts."""
    out, wall = procs.map_parallel(
        lambda i: stream(port, PROMPTS[i % len(PROMPTS)], max_tokens), n, strict=True)
    return sum(o[1] for o in out) / wall, [o[0] for o in out]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--strata", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--n-layers", type=int, default=28)
    ap.add_argument("--split", default="0-15,16-27", help="stage layer ranges, inclusive")
    ap.add_argument("--streams", type=int, nargs="+", default=[1, 4, 8])
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=1, help="A-B-B-A rounds per stream count")
    ap.add_argument("--parallel", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--ctx", type=int, default=512)
    ap.add_argument("--activations", default="f32")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()

    single = start_single(args)
    pipe = start_pipeline(args)
    ports = {"A": single[0].http_port, "B": pipe[0].http_port}
    results = {"split": args.split, "threads": args.threads, "max_tokens": args.max_tokens,
               "uptime": open("/proc/loadavg").read().split()[:3], "streams": {}}
    try:
        for p in ports.values():  # warm-up: touches every process's weights
            stream(p, PROMPTS[0], 8)
        for n in args.streams:
            tps = {"A": [], "B": []}
            texts = {}
            for _ in range(args.rounds):
                for cfg in "ABBA":
                    t, txt = measure(ports[cfg], n, args.max_tokens)
                    tps[cfg].append(t)
                    texts.setdefault(cfg, txt)
                    print(f"  {n} stream(s) {cfg}: {t:.2f} tok/s", flush=True)
            ratios = [(tps["B"][2 * i] + tps["B"][2 * i + 1]) / (tps["A"][2 * i] + tps["A"][2 * i + 1])
                      for i in range(args.rounds)]
            same = texts["A"] == texts["B"]
            results["streams"][n] = {"single_tok_s": [round(x, 2) for x in tps["A"]],
                                     "pipeline_tok_s": [round(x, 2) for x in tps["B"]],
                                     "ratio": round(statistics.median(ratios), 3),
                                     "identical_output": same}
            print(f"{n} stream(s): pipeline / single = {statistics.median(ratios):.3f}"
                  f" (output identical: {same})", flush=True)
    finally:
        for s in single + pipe:
            s.stop()
    results["uptime_end"] = open("/proc/loadavg").read().split()[:3]
    print(json.dumps(results, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0 if all(v["identical_output"] for v in results["streams"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
