#!/usr/bin/env python3
"""Tool-calling chat templates against real engines:

1. jinja_tools.mjs: the templates rendered by @huggingface/jinja must equal the jinja2
   renderings that chat_template_test checks Strata's C++ rendering against.
2. With --strata: the prompt a `strata node` builds for each of those conversations (tools in
   the prompt, assistant tool calls, `role: tool` results, generation prompt), as token ids
   (`return_token_ids` gives `prompt_token_ids`), must equal the @huggingface/jinja rendering
   tokenized by llama.cpp (node-llama-cpp, `tokenize(text, specialTokens=true)`, through
   tests/conformance/tokenize_oracle.mjs) on a model with the checkpoint's vocabulary.

Installs @huggingface/jinja into $STRATA_CI_CACHE/npm (default /var/cache/strata-ci/npm) when it
is missing. Without node-llama-cpp, step 2 is skipped unless --require-oracle (CI) is given.

usage: jinja_tools.py [--strata PATH --workdir DIR [--require-oracle]]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "common"))
import procs  # noqa: E402
from procs import check  # noqa: E402

NPM_DIR = os.path.join(os.environ.get("STRATA_CI_CACHE", "/var/cache/strata-ci"), "npm")
DATA = os.path.join(HERE, "..", "data")
CONFORMANCE = os.path.join(HERE, "..", "conformance")
# The model each template is checked on: the checkpoint's vocabulary and specials.
MODELS = {
    "Qwen-Qwen2.5-7B-Instruct.jinja": ("ggml-vocab-qwen2.gguf", "tiny-qwen2", False),
    "deepseek-r1-original-no-think.jinja": ("ggml-vocab-qwen2.gguf", "tiny-qwen2", True),
    "deepseek-r1-tool-calls-fixed.jinja": ("ggml-vocab-qwen2.gguf", "tiny-qwen2", True),
    "deepseek-ai-DeepSeek-R1-Distill-Llama-8B.jinja": ("ggml-vocab-llama-bpe.gguf", "tiny-llama",
                                                       True),
    "meta-llama-Llama-3.1-8B-Instruct.jinja": ("ggml-vocab-llama-bpe.gguf", "tiny-llama", False),
}


def ensure(package):
    if os.path.isfile(os.path.join(NPM_DIR, "node_modules", package, "package.json")):
        return
    os.makedirs(NPM_DIR, exist_ok=True)
    subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--loglevel=error",
                    "--prefix", NPM_DIR, package], check=True)


def oracle_found():
    d = os.environ.get("NODE_LLAMA_CPP_DIR")
    if d and os.path.isfile(os.path.join(d, "dist", "index.js")):
        return True
    return os.path.isdir(os.path.join(CONFORMANCE, "node_modules", "node-llama-cpp"))


def llama_tokens(jobs, work):
    """[(model, texts)] -> per job, llama.cpp's tokenize(text, specialTokens=true) of each
    text (one node-llama-cpp process: loading it takes most of the time)."""
    path = os.path.join(work, "jobs.json")
    with open(path, "w") as f:
        json.dump([{"model": m, "texts": t} for m, t in jobs], f)
    out = subprocess.run(["node", os.path.join(CONFORMANCE, "tokenize_oracle.mjs"), "--jobs",
                          path], check=True, capture_output=True, text=True, timeout=120).stdout
    return [[r["special"] for r in job] for job in json.loads(out)]


def strata_prompt(port, case):
    body = {"messages": case["messages"], "tools": case["tools"], "max_tokens": 0,
            "return_token_ids": True}
    st, _, j = procs.request(port, "POST", "/v1/chat/completions", body)
    return j.get("prompt_token_ids") if st == 200 else f"status {st}: {j}"


def token_checks(strata, work, renders):
    golden = json.load(open(os.path.join(DATA, "templates", "golden.json")))
    cases = {(c["template"], c["name"]): c for c in golden["cases"]
             if c.get("tools") and c["add_generation_prompt"] and c["expected"] is not None}
    jobs = []
    for tpl, (vocab, shape, r1) in MODELS.items():
        todo = [r for r in renders if r["template"] == tpl and r["add_generation_prompt"]]
        model = os.path.join(work, tpl.replace(".jinja", ".gguf"))
        # Small layers: only the vocabulary and the template matter here.
        subprocess.run([strata, "model", "synth", "--shape", shape, "--type", "q8_0",
                        "--layers", "1", "--hidden", "64", "--ffn", "64", "--heads", "2",
                        "--kv-heads", "1", "--vocab", os.path.join(DATA, "vocab", vocab),
                        "--template", os.path.join(DATA, "templates", tpl), "--out", model]
                       + ([] if r1 else ["--no-r1-tokens"]), check=True, capture_output=True)
        jobs.append((tpl, model, todo))
    tokens = llama_tokens([(m, [r["text"] for r in todo]) for _, m, todo in jobs], work)
    n_checked = 0
    for (tpl, model, todo), want in zip(jobs, tokens):
        port = procs.free_port()
        node = procs.Proc(procs.node_args(strata, model, port, parallel=1, ctx=2048), port,
                          f"node {tpl}")
        try:
            for r, ids in zip(todo, want):
                got = strata_prompt(node.port, cases[(tpl, r["name"])])
                n_checked += 1
                check(got == ids, f"{tpl} / {r['name']}: Strata's prompt ids == llama.cpp's "
                                  f"tokens of the Jinja rendering ({len(ids)} tokens)"
                                  + ("" if got == ids else f"\n  strata {got}\n  llama.cpp {ids}"))
        finally:
            _, san = node.stop_checked()
            check(not san, f"{tpl}: no sanitizer reports")
    check(n_checked >= 15, f"{n_checked} tool conversations tokenized by llama.cpp")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--strata")
    ap.add_argument("--workdir")
    ap.add_argument("--require-oracle", action="store_true")
    a = ap.parse_args()
    work = a.workdir or tempfile.mkdtemp(prefix="strata_jinja_tools_")
    os.makedirs(work, exist_ok=True)
    ensure("@huggingface/jinja")
    env = dict(os.environ, NODE_PATH=os.path.join(NPM_DIR, "node_modules"))
    dump = os.path.join(work, "renders.json")
    rc = subprocess.run(["node", os.path.join(HERE, "jinja_tools.mjs"), "--dump", dump],
                        env=env).returncode
    check(rc == 0, "@huggingface/jinja renders the tool cases as jinja2 does")
    if a.strata and oracle_found():
        token_checks(a.strata, work, json.load(open(dump)))
    elif a.strata:
        check(not a.require_oracle, "node-llama-cpp is missing: llama.cpp tokenization not checked")
        print("node-llama-cpp missing: the llama.cpp tokenization check is skipped")
    print(f"chat tools conformance: {len(procs.FAILS)} failed")
    return 1 if procs.FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
