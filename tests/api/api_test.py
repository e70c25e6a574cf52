#!/usr/bin/env python3
"""Integration test of the reasoning-model API of `strata node` (docs/api.md): the chat
template in use (/v1/models, /health, --chat-template, fallback), thinking off, tools in the
prompt, tool-call markup parsed into tool_calls (whole, streamed, and by the official `openai`
npm client), tool_choice required / a named function enforced by the grammar engine, logprobs
shapes, n choices sharing one prefill, best_of refused.

A tiny random-weight model with the real qwen2 vocabulary does not write tool-call markup by
itself: for tool_choice auto the markup is put in front of the answer with continue_token_ids
(the ids of a continued answer; markup that was never shown is parsed like fresh output) and
max_tokens 0. tool_choice required and named functions make the random weights write it: the
constraint holds whatever the weights (arguments checked with python3-jsonschema).

usage: api_test.py --strata PATH [--workdir DIR]
"""
import argparse
import concurrent.futures as cf
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

import jsonschema  # noqa: E402  (Debian: python3-jsonschema)

DATA = os.path.join(HERE, "..", "data")
QWEN_TEMPLATE = os.path.join(DATA, "templates", "Qwen-Qwen2.5-7B-Instruct.jinja")
VOCAB = os.path.join(DATA, "vocab", "ggml-vocab-qwen2.gguf")
NPM_DIR = os.path.join(os.environ.get("STRATA_CI_CACHE", "/var/cache/strata-ci"), "npm")

TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Weather of a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}]
# Two tools with bounded arguments (random weights end them within max_tokens).
FORCED_TOOLS = [
    {"type": "function", "function": {
        "name": "get_weather", "description": "Weather of a city.",
        "parameters": {"type": "object", "properties": {
            "city": {"type": "string", "minLength": 1, "maxLength": 12},
            "unit": {"enum": ["celsius", "fahrenheit"]}},
            "required": ["city"], "additionalProperties": False}}},
    {"type": "function", "function": {
        "name": "set_alarm", "description": "Sets an alarm.",
        "parameters": {"type": "object", "properties": {
            "hour": {"type": "integer", "minimum": 0, "maximum": 23},
            "minute": {"type": "integer", "minimum": 0, "maximum": 59},
            "days": {"type": "array", "items": {"enum": ["mon", "tue", "wed"]}, "maxItems": 2}},
            "required": ["hour", "minute"]}}},
]
SCHEMA_OF = {t["function"]["name"]: t["function"]["parameters"] for t in FORCED_TOOLS}
MARKUP = ('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
          '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>')


def user(text):
    return [{"role": "user", "content": text}]


def post(node, path, body):
    st, _, j = procs.request(node.port, "POST", path, body)
    return st, j


def stream(node, path, body):
    """The SSE events of a streamed request, parsed (the [DONE] marker excluded)."""
    st, _, raw = procs.request(node.port, "POST", path, dict(body, stream=True), raw=True)
    events = []
    for line in raw.decode().splitlines():
        if line.startswith("data: ") and line != "data: [DONE]":
            events.append(json.loads(line[6:]))
    return st, events


def metric(node, name):
    _, _, raw = procs.request(node.port, "GET", "/metrics", raw=True)
    for line in raw.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def template_checks(strata, work, node):
    _, _, models = procs.request(node.port, "GET", "/v1/models")
    tpl = models["data"][0]["meta"]["chat_template"]
    check(tpl == {"name": "chatml", "source": "gguf", "fallback": False},
          f"/v1/models reports the GGUF's chat template ({tpl})")
    _, _, health = procs.request(node.port, "GET", "/health")
    check(health.get("chat_template", {}).get("name") == "chatml", "/health reports it too")
    # A template nobody recognises: the node falls back to deepseek-r1 and says so.
    odd = os.path.join(work, "odd.jinja")
    with open(odd, "w") as f:
        f.write("{% for m in messages %}<start_of_turn>{{ m['content'] }}{% endfor %}")
    model = os.path.join(work, "odd.gguf")
    subprocess.run([strata, "model", "synth", "--shape", "tiny-qwen2", "--type", "q8_0",
                    "--layers", "2", "--vocab", VOCAB, "--template", odd, "--out", model],
                   check=True, capture_output=True)
    port = procs.free_port()
    fb = procs.Proc(procs.node_args(strata, model, port), port, "fallback node")
    try:
        _, _, h = procs.request(fb.port, "GET", "/health")
        t = h.get("chat_template", {})
        check(t.get("fallback") is True and t.get("name") == "deepseek-r1" and "note" in t,
              f"unrecognised template: announced fallback ({t})")
        check("fallback" in fb.output(), "the fallback is logged")
    finally:
        fb.stop_checked()
    # --chat-template chooses; thinking off adds R1's closed think block to the prompt.
    port = procs.free_port()
    r1 = procs.Proc(procs.node_args(strata, os.path.join(work, "qwen.gguf"), port,
                                    "--chat-template", "deepseek-r1"), port, "r1 node")
    try:
        _, _, m = procs.request(r1.port, "GET", "/v1/models")
        check(m["data"][0]["meta"]["chat_template"]["source"] == "flag", "--chat-template wins")
        base = {"messages": user("hi"), "max_tokens": 1}
        _, on = post(r1, "/v1/chat/completions", base)
        _, off = post(r1, "/v1/chat/completions", dict(base, think=False))
        _, off2 = post(r1, "/v1/chat/completions",
                       dict(base, chat_template_kwargs={"enable_thinking": False}))
        n_on, n_off = on["usage"]["prompt_tokens"], off["usage"]["prompt_tokens"]
        check(n_off > n_on and off2["usage"]["prompt_tokens"] == n_off,
              f"think:false / enable_thinking:false close the think block ({n_on} -> {n_off})")
        _, o = post(r1, "/v1/chat/completions", dict(base, think=False))
        check("reasoning_content" not in o["choices"][0]["message"],
              "thinking off: the answer is content only")
    finally:
        r1.stop_checked()


def tool_checks(strata, model, node):
    base = {"messages": user("Weather in Paris?"), "max_tokens": 1, "temperature": 0}
    _, plain = post(node, "/v1/chat/completions", base)
    _, with_tools = post(node, "/v1/chat/completions", dict(base, tools=TOOLS))
    _, none = post(node, "/v1/chat/completions", dict(base, tools=TOOLS, tool_choice="none"))
    p0, p1 = plain["usage"]["prompt_tokens"], with_tools["usage"]["prompt_tokens"]
    check(p1 > p0 + 50, f"tools are rendered into the prompt ({p0} -> {p1} tokens)")
    check(none["usage"]["prompt_tokens"] == p0, "tool_choice none renders no tools")
    st, r = post(node, "/v1/chat/completions",
                 dict(base, tools=TOOLS, tool_choice="required", grammar='root ::= "a"'))
    check(st == 400 and "cannot be combined" in r["error"]["message"],
          "tool_choice required with a grammar -> 400")
    st, r = post(node, "/v1/chat/completions",
                 dict(base, tool_choice={"type": "function", "function": {"name": "nope"}},
                      tools=TOOLS))
    check(st == 400 and "nope" in r["error"]["message"], "an unknown named function -> 400")
    bad_tools = [{"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"s": {"type": "string", "pattern": "a+"}}}}}]
    st, r = post(node, "/v1/chat/completions", dict(base, tools=bad_tools, tool_choice="required"))
    check(st == 400 and "'pattern'" in r["error"]["message"],
          f"tool_choice required, unsupported schema keyword: 400 naming it ({st} {r})")
    # A conversation with a call and its result renders (role tool, assistant tool_calls).
    convo = user("Weather?") + [
        {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function",
         "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}]
    st, r = post(node, "/v1/chat/completions", dict(base, messages=convo, tools=TOOLS))
    check(st == 200 and r["usage"]["prompt_tokens"] > p1, "tool results render back")

    ids = json.loads(subprocess.run([strata, "tokenize", "-m", model, "--text", MARKUP],
                                    check=True, capture_output=True, text=True).stdout)
    body = dict(base, tools=TOOLS, max_tokens=0, continue_token_ids=ids)
    st, r = post(node, "/v1/chat/completions", body)
    msg = r["choices"][0]["message"] if st == 200 else {}
    calls = msg.get("tool_calls", [])
    check(st == 200 and len(calls) == 2, f"whole answer: two tool calls parsed ({st} {msg})")
    if calls:
        check(all(c["id"].startswith("call_") and c["type"] == "function" for c in calls),
              "call ids and types")
        check([json.loads(c["function"]["arguments"]) for c in calls] ==
              [{"city": "Paris"}, {"city": "Oslo"}], "arguments are JSON strings")
        check(r["choices"][0]["finish_reason"] == "tool_calls", "finish_reason tool_calls")
        check(not (msg.get("content") or ""), "no markup in content")
    st, r = post(node, "/v1/chat/completions", dict(body, parallel_tool_calls=False))
    check(len(r["choices"][0]["message"].get("tool_calls", [])) == 1,
          "parallel_tool_calls false keeps one call")
    st, events = stream(node, "/v1/chat/completions", body)
    deltas = [c for e in events for ch in e.get("choices", [])
              for c in ch.get("delta", {}).get("tool_calls", [])]
    text = "".join(ch["delta"].get("content") or "" for e in events for ch in e.get("choices", []))
    check([d["index"] for d in deltas] == [0, 1] and
          [d["function"]["name"] for d in deltas] == ["get_weather"] * 2,
          f"streamed: one delta per call with its index ({deltas})")
    check("<tool_call>" not in text, "streamed: no markup in content")
    finish = [ch["finish_reason"] for e in events for ch in e.get("choices", [])
              if ch.get("finish_reason")]
    check(finish == ["tool_calls"], f"streamed finish_reason ({finish})")
    openai_client_check(node, body)
    forced_call_checks(node, "chatml markup", 20, False)
    openai_client_check(node, forced_body(3, "required", parallel_tool_calls=False), forced=True)


def openai_client_check(node, body, forced=False):
    if not os.path.isfile(os.path.join(NPM_DIR, "node_modules", "openai", "package.json")):
        os.makedirs(NPM_DIR, exist_ok=True)
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--loglevel=error",
                        "--prefix", NPM_DIR, "openai"], check=False, capture_output=True)
    env = dict(os.environ, NODE_PATH=os.path.join(NPM_DIR, "node_modules"))
    body = dict(body)
    body["model"] = procs.request(node.port, "GET", "/v1/models")[2]["data"][0]["id"]
    r = subprocess.run(["node", os.path.join(HERE, "openai_tools.cjs"),
                        f"http://{procs.HOST}:{node.port}/v1", json.dumps(body)],
                       capture_output=True, text=True, env=env, timeout=60)
    try:
        out = json.loads(r.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        out = {"error": r.stdout + r.stderr}
    calls = out.get("tool_calls", [])
    if forced:
        ok = len(calls) == 1 and out.get("finish") == "tool_calls"
        if ok:
            f = calls[0]["function"]
            try:
                jsonschema.validate(json.loads(f["arguments"]), SCHEMA_OF[f["name"]])
            except (KeyError, ValueError, jsonschema.ValidationError):
                ok = False
        check(ok, f"the openai npm client parses a streamed forced call (required) ({out})")
        return
    check([c["function"]["name"] for c in calls] == ["get_weather"] * 2 and
          json.loads(calls[1]["function"]["arguments"]) == {"city": "Oslo"},
          f"the openai npm client assembles the streamed tool calls ({out})")


def forced_body(i, choice, **extra):
    body = {"messages": user(f"Request {i}: call a tool."), "tools": FORCED_TOOLS,
            "tool_choice": choice, "max_tokens": 300, "seed": 500 + i, "temperature": 1.0,
            "parallel_tool_calls": i % 2 == 0}
    body.update(extra)
    return body


def forced_choice(i):
    """Requests alternate "required" and a named function (each of the two in turn)."""
    if i % 2 == 0:
        return "required", None
    name = FORCED_TOOLS[(i // 2) % 2]["function"]["name"]
    return {"type": "function", "function": {"name": name}}, name


def call_problem(st, r, name, thinking):
    """Why an answer to a forced tool call is wrong, or None."""
    if st != 200:
        return f"status {st}: {r}"
    ch = r["choices"][0]
    msg = ch["message"]
    calls = msg.get("tool_calls") or []
    if ch["finish_reason"] != "tool_calls" or len(calls) != 1:
        return f"finish {ch['finish_reason']}, {len(calls)} calls: {msg}"
    f = calls[0]["function"]
    if f["name"] not in SCHEMA_OF or (name and f["name"] != name):
        return f"called {f['name']!r} (wanted {name or 'any tool'})"
    try:
        jsonschema.validate(json.loads(f["arguments"]), SCHEMA_OF[f["name"]])
    except (ValueError, jsonschema.ValidationError) as e:
        return f"arguments {f['arguments']!r} do not validate: {str(e)[:160]}"
    if msg.get("content"):
        return f"content leaks: {msg['content']!r}"
    if thinking and not msg.get("reasoning_content"):
        return "no reasoning_content"
    return None


def forced_call_checks(node, label, n, thinking, **extra):
    """n seeded requests, required and named in turn: each answer is one valid call."""
    bad = []
    with cf.ThreadPoolExecutor(4) as ex:
        jobs = []
        for i in range(n):
            choice, name = forced_choice(i)
            jobs.append((i, name, ex.submit(post, node, "/v1/chat/completions",
                                            forced_body(i, choice, **extra))))
        for i, name, fut in jobs:
            st, r = fut.result()
            why = call_problem(st, r, name, thinking)
            if why:
                bad.append(f"request {i}: {why}")
    procs.check_cases(bad, n, f"{label}: tool_choice required / named: one valid tool call each")
    # Streamed == non-streamed for the same seed (ids aside); the deltas carry the call.
    for i in (0, 1):
        choice, name = forced_choice(i)
        body = forced_body(i, choice, **extra)
        _, r = post(node, "/v1/chat/completions", body)
        _, events = stream(node, "/v1/chat/completions", body)
        deltas = [c for e in events for ch in e.get("choices", [])
                  for c in ch.get("delta", {}).get("tool_calls", [])]
        got = [(d["function"]["name"], d["function"]["arguments"]) for d in deltas]
        calls = r["choices"][0]["message"].get("tool_calls") or []
        want = [(c["function"]["name"], c["function"]["arguments"]) for c in calls]
        text = "".join(ch["delta"].get("content") or "" for e in events
                       for ch in e.get("choices", []))
        reasoning = "".join(ch["delta"].get("reasoning_content") or "" for e in events
                            for ch in e.get("choices", []))
        finish = [ch["finish_reason"] for e in events for ch in e.get("choices", [])
                  if ch.get("finish_reason")]
        check(got == want and len(got) == 1 and not text and finish == ["tool_calls"] and
              reasoning == (r["choices"][0]["message"].get("reasoning_content") or ""),
              f"{label}: streamed == non-streamed for seed {500 + i} ({got} vs {want}, "
              f"content {text!r}, finish {finish})")


def forced_r1_checks(strata, work):
    """The DeepSeek-R1 template: the call follows the thinking, closed by the budget."""
    port = procs.free_port()
    r1 = procs.Proc(procs.node_args(strata, os.path.join(work, "qwen.gguf"), port,
                                    "--chat-template", "deepseek-r1", parallel=4, ctx=1024),
                    port, "r1 node")
    try:
        forced_call_checks(r1, "deepseek-r1 markup after thinking", 20, True, thinking_budget=8)
    finally:
        r1.stop_checked()


def logprob_checks(node):
    body = {"messages": user("Hello"), "max_tokens": 6, "temperature": 0,
            "logprobs": True, "top_logprobs": 3}
    st, r = post(node, "/v1/chat/completions", body)
    content = r["choices"][0]["logprobs"]["content"] if st == 200 else []
    check(len(content) == r.get("usage", {}).get("completion_tokens"),
          f"chat: one logprob entry per token ({len(content)})")
    ok = all(len(e["top_logprobs"]) == 3 and e["logprob"] <= 0 and
             e["top_logprobs"][0]["logprob"] >= e["top_logprobs"][1]["logprob"] >= e["top_logprobs"][2]["logprob"]
             and abs(e["top_logprobs"][0]["logprob"] - e["logprob"]) < 1e-6  # greedy: the best
             and bytes(e["bytes"]).decode(errors="replace") == e["token"]
             for e in content)
    check(ok and content, "chat: top_logprobs sorted, greedy token is the best, bytes")
    st, events = stream(node, "/v1/chat/completions", body)
    n_stream = sum(len((ch.get("logprobs") or {}).get("content", []))
                   for e in events for ch in e.get("choices", []))
    check(n_stream == len(content), f"streamed chat logprobs: {n_stream} entries")
    st, r = post(node, "/v1/completions", {"prompt": "Once", "max_tokens": 4, "temperature": 0,
                                           "logprobs": 2})
    lp = r["choices"][0]["logprobs"] if st == 200 else {}
    check(set(lp) == {"tokens", "token_logprobs", "top_logprobs", "text_offset"} and
          len(lp["tokens"]) == 4 and all(len(t) <= 2 for t in lp["top_logprobs"]),
          "completions: legacy logprobs shape")
    st, r = post(node, "/v1/completions", {"prompt": "Once upon", "max_tokens": 2, "echo": True})
    check(st == 200 and r["choices"][0]["text"].startswith("Once upon"), "echo")
    st, r = post(node, "/v1/completions", {"prompt": "x", "best_of": 2})
    check(st == 400 and "best_of" in r["error"]["message"], "best_of -> 400")


def choice_checks(node):
    before = metric(node, "strata_prompt_prefills_total")
    body = {"messages": user("Tell me something new " * 8), "max_tokens": 5, "n": 4,
            "seed": 42, "temperature": 1.0}
    st, r = post(node, "/v1/chat/completions", body)
    after = metric(node, "strata_prompt_prefills_total")
    check(st == 200 and [c["index"] for c in r["choices"]] == [0, 1, 2, 3], "n=4: four choices")
    check(after - before == 1, f"n=4: the prompt is prefilled once ({before} -> {after})")
    # Reproducible for the same prompt-cache state: a prompt evaluated in one chunk and its
    # last token evaluated alone give logits that differ in the last bits (an engine property
    # that the prompt cache has for n = 1 too), so the runs compared both hit the cache.
    _, r = post(node, "/v1/chat/completions", body)
    texts = [(c["message"].get("reasoning_content", ""), c["message"]["content"])
             for c in r["choices"]]
    _, again = post(node, "/v1/chat/completions", body)
    check(texts == [(c["message"].get("reasoning_content", ""), c["message"]["content"])
                    for c in again["choices"]], "n=4 with a seed is reproducible")
    _, single = post(node, "/v1/chat/completions", dict(body, n=1, seed=44))
    m = single["choices"][0]["message"]
    check((m.get("reasoning_content", ""), m["content"]) == texts[2],
          "choice i is seeded seed+i (choice 2 == a single request with seed 44)")
    st, events = stream(node, "/v1/chat/completions", dict(body, stream_options={"include_usage": True}))
    idx = {ch["index"] for e in events for ch in e.get("choices", [])}
    fins = [ch["index"] for e in events for ch in e.get("choices", []) if ch.get("finish_reason")]
    usage = [e["usage"] for e in events if e.get("usage")]
    check(idx == {0, 1, 2, 3} and sorted(fins) == [0, 1, 2, 3], "streamed n=4: every index ends")
    check(usage and usage[-1]["completion_tokens"] == r["usage"]["completion_tokens"],
          "streamed n=4: usage sums the choices as the whole answer does")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--strata", required=True)
    ap.add_argument("--workdir")
    a = ap.parse_args()
    work = a.workdir or tempfile.mkdtemp(prefix="strata_api_test_")
    os.makedirs(work, exist_ok=True)
    model = os.path.join(work, "qwen.gguf")
    subprocess.run([a.strata, "model", "synth", "--shape", "tiny-qwen2", "--type", "q8_0",
                    "--layers", "2", "--vocab", VOCAB, "--template", QWEN_TEMPLATE,
                    "--out", model], check=True, capture_output=True)
    t0 = time.time()
    port = procs.free_port()
    node = procs.Proc(procs.node_args(a.strata, model, port, parallel=4, ctx=1024), port, "node")
    try:
        template_checks(a.strata, work, node)
        tool_checks(a.strata, model, node)
        forced_r1_checks(a.strata, work)
        logprob_checks(node)
        choice_checks(node)
    finally:
        rc, san = node.stop_checked()
        check(not san, "no sanitizer reports")
    print(f"api test: {time.time() - t0:.1f} s, {len(procs.FAILS)} failed")
    return 1 if procs.FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
