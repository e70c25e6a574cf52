#!/usr/bin/env python3
"""Benchmark of speculative decoding (issue 18, docs/speculative.md): decode tok/s of one
stream with and without drafting, and total throughput of N concurrent streams.

Two nodes run side by side on loopback (A: plain, B: with --model-draft DRAFT or
--spec-type ngram-simple); the requests alternate A-B-B-A for --rounds rounds, one node busy
at a time, and the figures are medians and ratios B/A. Decode tok/s is measured on the stream
(SSE): (tokens - 1) / (time of last token - time of first token), so the prompt does not
count. The acceptance rate comes from B's /metrics (strata_spec_*).

Random-weight models have low acceptance: the draft mode reports it honestly; the n-gram mode
on a repetitive prompt shows the mechanism. Stdlib only. Example:
  python3 bench/spec_bench.py --strata build/strata --model /work/models/r1-qwen-1.5b-q8_0.gguf \\
      --mode ngram --rounds 3
  python3 bench/spec_bench.py --strata build/strata --model M.gguf --draft D.gguf --mode draft
  (add --split 0-15,16-27 for 2-stage pipelines whose head drafts)
"""
import argparse
import http.client
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "common"))
import procs  # noqa: E402
from procs import free_port  # noqa: E402
from sse import read_sse  # noqa: E402

REPETITIVE = ("Repeat after me exactly, ten times: the quick brown fox jumps over the lazy dog. "
              + "the quick brown fox jumps over the lazy dog. " * 6)
PLAIN = "Write a short story about a lighthouse keeper who finds a message in a bottle."


def stream_decode(port, prompt, max_tokens):
    """(decode tok/s, completion tokens) of one streamed greedy completion."""
    c = http.client.HTTPConnection(procs.HOST, port, timeout=900)
    body = {"prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "stream": True}
    c.request("POST", "/v1/completions", body=json.dumps(body).encode(),
              headers={"Content-Type": "application/json"})
    r = c.getresponse()
    assert r.status == 200, r.read()
    times = []

    def on_event(evs):
        if evs[-1].get("choices") and evs[-1]["choices"][0].get("text"):
            times.append(time.perf_counter())
        return False

    events, _ = read_sse(r, on_event)
    c.close()
    n = len(times)
    # Several tokens can arrive in one burst (accepted drafts): the span counts them all.
    return ((n - 1) / (times[-1] - times[0]) if n > 1 and times[-1] > times[0] else 0.0), n


def streams_throughput(port, prompt, max_tokens, n):
    done = [0] * n

    def worker(i):
        st, _, out = procs.request(port, "POST", "/v1/completions",
                                   {"prompt": f"{i}: {prompt}", "max_tokens": max_tokens,
                                    "temperature": 0}, timeout=900)
        assert st == 200, out
        done[i] = out["usage"]["completion_tokens"]

    wall = procs.run_parallel(worker, n)
    return sum(done) / wall


def spec_metrics(port):
    _, _, body = procs.request(port, "GET", "/metrics")
    m = {}
    for ln in body.get("_raw", "").splitlines():
        if ln.startswith("strata_spec_"):
            k, _, v = ln.partition(" ")
            m[k] = float(v)
    return m


SECRET = "spec-bench-secret-0123456789abcdef0123"


def start(a, name, extra, stages):
    """The node `name` answers requests: one whole-model node, or with --split the head of a
    2-stage pipeline (its tail goes into `stages`); `extra` (the speculative flags) goes to
    the node or the head."""
    ctx = dict(threads=a.threads, parallel=a.parallel, ctx=2048)
    if not a.split:
        port = free_port()
        return procs.Proc(procs.node_args(a.strata, a.model, port, *extra, **ctx), port, name,
                          timeout=900)
    head_layers, tail_layers = a.split.split(",")
    env = {"STRATA_CLUSTER_SECRET": SECRET}
    sp, tport, hport = free_port(), free_port(), free_port()
    stages.append(procs.Proc(procs.node_args(a.strata, a.model, tport, "--layers", tail_layers,
                                             "--stage-port", str(sp), **ctx),
                             tport, name + " tail", env=env, timeout=900))
    return procs.Proc(procs.node_args(a.strata, a.model, hport, "--layers", head_layers, "--next",
                                      f"127.0.0.1:{sp}", *extra, **ctx),
                      hport, name + " head", env=env, timeout=900)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--strata", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--draft", default="", help="draft model (mode draft)")
    ap.add_argument("--mode", choices=["draft", "ngram"], default="ngram")
    ap.add_argument("--prompt", choices=["repetitive", "plain"], default=None,
                    help="default: repetitive for ngram, plain for draft")
    ap.add_argument("--prompt-text", default="",
                    help="this prompt instead (e.g. text in the trained model's domain)")
    ap.add_argument("--draft-max", type=int, default=8)
    ap.add_argument("--draft-p-min", type=float, default=0.75)
    ap.add_argument("--draft-vocab", type=int, default=0,
                    help="the draft proposes only ids below this (node --draft-vocab; 0: all)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--parallel", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=2, help="A-B-B-A rounds")
    ap.add_argument("--streams", type=int, default=0, help="also N concurrent streams (0: no)")
    ap.add_argument("--split", default="",
                    help="pipeline mode: A and B are each 2 stages, e.g. 0-15,16-27 (the head "
                         "drafts); --threads per stage")
    a = ap.parse_args()
    prompt_kind = a.prompt or ("repetitive" if a.mode == "ngram" else "plain")
    prompt = REPETITIVE if prompt_kind == "repetitive" else PLAIN
    if a.prompt_text:
        prompt, prompt_kind = a.prompt_text, "given"
    spec = (["--model-draft", a.draft, "--draft-p-min", str(a.draft_p_min),
             "--draft-vocab", str(a.draft_vocab)] if a.mode == "draft"
            else ["--spec-type", "ngram-simple"]) + ["--draft-max", str(a.draft_max)]
    nodes, stages = {}, []
    for name, extra in (("A", []), ("B", spec)):
        nodes[name] = start(a, name, extra, stages)
    print(f"load: {os.getloadavg()}; mode {a.mode}, prompt {prompt_kind}, "
          f"draft-max {a.draft_max}, draft-vocab {a.draft_vocab}, {a.tokens} tokens, {a.threads} threads"
          + (f", pipeline {a.split}" if a.split else ""), flush=True)
    try:
        for n in nodes.values():  # warm-up (page-in, first allocation)
            stream_decode(n.port, prompt, 8)
        base = spec_metrics(nodes["B"].port)
        tps = {"A": [], "B": []}
        for rnd in range(a.rounds):
            for name in "ABBA":
                t, k = stream_decode(nodes[name].port, prompt, a.tokens)
                tps[name].append(t)
                print(f"  round {rnd} {name}: {t:.2f} tok/s ({k} tokens)", flush=True)
        m = spec_metrics(nodes["B"].port)
        drafted = m["strata_spec_draft_tokens_total"] - base.get("strata_spec_draft_tokens_total", 0)
        accepted = (m["strata_spec_accepted_tokens_total"]
                    - base.get("strata_spec_accepted_tokens_total", 0))
        verify = m["strata_spec_verify_steps_total"] - base.get("strata_spec_verify_steps_total", 0)
        ma, mb = statistics.median(tps["A"]), statistics.median(tps["B"])
        print(f"single stream decode: plain {ma:.2f} tok/s, speculative {mb:.2f} tok/s, "
              f"ratio {mb / ma:.3f}x; acceptance {accepted / max(drafted, 1):.3f} "
              f"({accepted:.0f}/{drafted:.0f}), tokens per verify step "
              f"{(accepted + verify) / max(verify, 1):.2f}", flush=True)
        if a.streams > 0:
            thr = {"A": [], "B": []}
            base = spec_metrics(nodes["B"].port)
            for name in "ABBA":
                thr[name].append(streams_throughput(nodes[name].port, prompt, a.tokens // 2,
                                                    a.streams))
            m = spec_metrics(nodes["B"].port)
            d = {k.replace("strata_spec_", "").replace("_total", ""): m[k] - base.get(k, 0)
                 for k in m if k.endswith("_total")}
            ta, tb = statistics.median(thr["A"]), statistics.median(thr["B"])
            print(f"{a.streams} streams: plain {ta:.2f} tok/s, speculative {tb:.2f} tok/s, "
                  f"ratio {tb / ta:.3f}x; B's speculation meanwhile: "
                  + ", ".join(f"{k} {v:.0f}" for k, v in sorted(d.items())), flush=True)
        print(f"load after: {os.getloadavg()}", flush=True)
    finally:
        for n in [*nodes.values(), *stages]:
            n.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
