#!/usr/bin/env python3
"""Conformance of `top_logprobs` with llama.cpp (issue 15): for a synthesized conformance model
(the real 151,936-token Qwen2 vocabulary, weights that make every layer move the logits), the
top-k token ids and log-probabilities a `strata node` returns for the next token after a prompt
must agree with llama.cpp's logits for the same prompt (node-llama-cpp, oracle.mjs --logprobs:
log-softmax over the whole vocabulary) within 1e-3.

Strata's side: /v1/completions with the prompt as token ids (the oracle's, BOS included),
max_tokens 1, temperature 0, logprobs K and return_tokens_as_token_ids (entries named
"token_id:ID"), once per checked prefix of each prompt.

Q8_0 (and Q4_0) models agree to ~1e-7: both engines quantize the activations to Q8_0 and the
dot products are exact. F32 and F16 weights differ by up to ~1e-3 and ~4e-3 here (rounding of
the activations and summation order: llama.cpp multiplies F16 weights with activations
rounded to F16); greedy outputs still agree (ctest conformance). Measured with --types.

usage: logprobs_test.py --strata PATH [--workdir DIR] [--types q8_0]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "common"))
import procs  # noqa: E402
from procs import check  # noqa: E402

TOL = 1e-3
TOP_K = 5
PROMPTS = [
    "The quick brown fox jumps over the lazy dog, and then it",
    "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n",
    "请用中文解释一下量子计算的基本原理。",
]
STRIDE = 4  # prefixes checked: the whole prompt, then every STRIDE-th token back
POSITIONS = 4  # at most, per prompt


def oracle(model, work):
    prompts = os.path.join(work, "prompts.json")
    with open(prompts, "w") as f:
        json.dump(PROMPTS, f)
    out = subprocess.run(["node", os.path.join(HERE, "oracle.mjs"), "--model", model,
                          "--prompts", prompts, "--n-predict", "0", "--logits", "--logprobs",
                          "--top-k", str(TOP_K), "--stride", str(STRIDE)],
                         check=True, capture_output=True, text=True, timeout=120).stdout
    return json.loads(out)["results"]


def strata_top(port, ids):
    body = {"prompt": ids, "max_tokens": 1, "temperature": 0, "logprobs": TOP_K,
            "return_tokens_as_token_ids": True}
    st, _, j = procs.request(port, "POST", "/v1/completions", body)
    if st != 200:
        return None, f"status {st}: {j}"
    tops = j["choices"][0]["logprobs"]["top_logprobs"][0]  # an object: order by logprob
    got = [(int(k.split(":", 1)[1]), v) for k, v in tops.items()]
    return sorted(got, key=lambda t: (-t[1], t[0])), None


def max_diff(got, want):
    lp = dict(want)
    return max((abs(g - lp[i]) for i, g in got if i in lp), default=0.0)


def compare(got, want):
    """Why strata's top-k (id, logprob) differs from llama.cpp's, or None. Ranks may swap only
    between entries whose log-probabilities are within the tolerance."""
    if len(got) != len(want):
        return f"{len(got)} entries, llama.cpp {len(want)}"
    lp_want = dict(want)
    for rank, ((gi, gl), (wi, wl)) in enumerate(zip(got, want)):
        if abs(gl - wl) > TOL:
            return f"rank {rank}: logprob {gl:.6f} vs llama.cpp {wl:.6f}"
        if gi != wi:
            tied = abs(wl - lp_want.get(gi, float("-inf"))) <= TOL
            last_tie = rank == len(want) - 1 and abs(gl - wl) <= TOL
            if not (tied or last_tie):
                return f"rank {rank}: id {gi} vs llama.cpp {wi}"
    return None


def check_model(strata, work, dtype):
    model = os.path.join(work, f"conf-logprobs-{dtype}.gguf")
    subprocess.run([strata, "model", "synth", "--shape", "tiny-qwen2", "--type", dtype,
                    "--seed", "42", "--out", model], check=True, capture_output=True)
    want = oracle(model, work)
    port = procs.free_port()
    node = procs.Proc(procs.node_args(strata, model, port, parallel=1, ctx=512), port,
                      f"node {dtype}")
    bad, n, worst = [], 0, 0.0
    try:
        for p, r in enumerate(want):
            toks = r["tokens"]
            for end in range(len(toks), 1, -STRIDE)[:POSITIONS]:
                got, err = strata_top(node.port, toks[:end])
                why = err or compare(got, r["top_logprobs"][end - 1])
                if not err:
                    worst = max(worst, max_diff(got, r["top_logprobs"][end - 1]))
                n += 1
                if why:
                    bad.append(f"prompt {p}, {end} tokens: {why}\n      strata {got}\n"
                               f"      llama.cpp {r['top_logprobs'][end - 1]}")
    finally:
        _, san = node.stop_checked()
        check(not san, f"{dtype}: no sanitizer reports")
    for b in bad[:5]:
        print("   ", b)
    check(not bad and n > 0, f"{dtype}: top-{TOP_K} ids and logprobs within {TOL} of llama.cpp "
                             f"({n - len(bad)}/{n} positions, largest difference {worst:.1e})")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--strata", required=True)
    ap.add_argument("--workdir")
    ap.add_argument("--types", default="q8_0")
    a = ap.parse_args()
    work = a.workdir or tempfile.mkdtemp(prefix="strata_logprobs_")
    os.makedirs(work, exist_ok=True)
    t0 = time.time()
    for dtype in a.types.split(","):
        check_model(a.strata, work, dtype)
    print(f"logprobs conformance: {time.time() - t0:.1f} s, {len(procs.FAILS)} failed")
    return 1 if procs.FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
