#!/usr/bin/env python3
"""Integration test of constrained decoding and thinking budgets (issue 15): a real node (and a
gateway in front of one) serving a tiny random-weight model with the real 151,936-token Qwen2
vocabulary and DeepSeek-R1's chat template, so the thinking block opens in the prompt.

- 5 JSON Schemas x 20 seeded chat requests with a thinking budget: every `content` parses and
  validates with python3-jsonschema (an independent validator); `reasoning_content` is
  non-empty and the thinking took at most the budget (counted from the returned token ids).
- a GBNF grammar (completions: constrained from the first token; chat: after </think>): every
  answer matches an independent Python regex.
- an unsupported schema keyword, a bad grammar and two constraints at once: 400 naming them.
- streamed == non-streamed for the same seed; server maximum --reasoning-budget; the budget
  message; reasoning_effort; ignore_eos; the same through a gateway.
"""
import concurrent.futures as cf
import http.client
import json
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common"))
from procs import FAILS, HOST, Proc, check, check_cases, free_port, node_args, request, test_args  # noqa: E402
from sse import read_sse  # noqa: E402

import jsonschema  # noqa: E402  (Debian: python3-jsonschema)

HERE = os.path.dirname(os.path.abspath(__file__))
VOCAB = os.path.join(HERE, "..", "data", "vocab", "ggml-vocab-qwen2.gguf")
BUDGET = 16
SERVER_MAX = 24
MESSAGE = "Time to answer."

SCHEMAS = [
    {"type": "object", "properties": {
        "name": {"type": "string", "maxLength": 12},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "member": {"type": "boolean"}},
     "required": ["name", "age"], "additionalProperties": False},
    {"type": "object", "properties": {
        "date": {"type": "string", "format": "date"},
        "id": {"type": "string", "format": "uuid"},
        "status": {"enum": ["open", "closed", None]}},
     "required": ["date", "id", "status"]},
    {"type": "array", "items": {"type": "integer", "minimum": -50, "maximum": 50},
     "minItems": 1, "maxItems": 4},
    {"$defs": {"pt": {"type": "object", "properties": {
        "x": {"type": "number", "minimum": -10, "maximum": 10},
        "y": {"type": ["integer", "null"]}}, "required": ["x", "y"]}},
     "type": "object", "properties": {
        "kind": {"const": "polygon"},
        "points": {"type": "array", "items": {"$ref": "#/$defs/pt"}, "minItems": 2, "maxItems": 3}},
     "required": ["kind", "points"]},
    {"anyOf": [
        {"type": "object", "properties": {"ok": {"const": True},
                                          "value": {"type": "string", "minLength": 1, "maxLength": 8}},
         "required": ["ok", "value"], "additionalProperties": False},
        {"type": "object", "properties": {"ok": {"const": False},
                                          "code": {"type": "integer", "minimum": 400, "maximum": 599}},
         "required": ["ok", "code"], "additionalProperties": False}]},
]

GBNF = r'''# yes, no, or a number; then a Greek word
root ::= "answer: " ( "yes" | "no" | num ) " " greek "."
num  ::= [1-9] [0-9]{0,3}
greek ::= [α-ω]{2,5}
'''
GBNF_RE = re.compile(r"answer: (yes|no|[1-9][0-9]{0,3}) [α-ω]{2,5}\.")


def chat_body(i, schema_field, **extra):
    body = {"messages": [{"role": "user", "content": f"Give me JSON number {i}."}],
            "max_tokens": 600, "seed": 1000 + i, "temperature": 1.0,
            "thinking_budget": BUDGET, "return_token_ids": True}
    body.update(schema_field)
    body.update(extra)
    return body


def schema_field(k, schema):
    # Both request shapes: OpenAI's response_format and llama-server's top-level json_schema.
    if k % 2 == 0:
        return {"response_format": {"type": "json_schema",
                                    "json_schema": {"name": f"s{k}", "schema": schema, "strict": True}}}
    return {"json_schema": schema}


def post(port, path, body, timeout=120):
    return request(port, "POST", path, body, timeout=timeout)


def stream(port, path, body):
    c = http.client.HTTPConnection(HOST, port, timeout=120)
    c.request("POST", path, json.dumps(dict(body, stream=True)), {"Content-Type": "application/json"})
    r = c.getresponse()
    events, done = read_sse(r)
    c.close()
    return r.status, events, done


def think_close_id(port):
    """The `</think>` token id: with a budget of 0 it is the first generated token."""
    st, _, j = post(port, "/v1/chat/completions", chat_body(0, {}, thinking_budget=0, max_tokens=2))
    return j["choices"][0]["token_ids"][0] if st == 200 else None


def thinking_tokens(ids, close):
    return ids.index(close) if close in ids else None


def test_schemas(port, close):
    jobs = []
    with cf.ThreadPoolExecutor(4) as ex:
        for k, schema in enumerate(SCHEMAS):
            for i in range(20):
                jobs.append((k, i, ex.submit(post, port, "/v1/chat/completions",
                                             chat_body(i, schema_field(k, schema)))))
        bad = []
        for k, i, fut in jobs:
            st, _, j = fut.result()
            why = None
            if st != 200:
                why = f"status {st}: {j}"
            else:
                msg = j["choices"][0]["message"]
                ids = j["choices"][0]["token_ids"]
                n_think = thinking_tokens(ids, close)
                try:
                    jsonschema.validate(json.loads(msg["content"]), SCHEMAS[k])
                except (ValueError, jsonschema.ValidationError) as e:
                    why = f"content {msg['content']!r} does not validate: {str(e)[:200]}"
                if not why and not msg.get("reasoning_content"):
                    why = "empty reasoning_content"
                if not why and (n_think is None or n_think > BUDGET):
                    why = f"thinking took {n_think} tokens (budget {BUDGET})"
                if not why and j["usage"]["completion_tokens_details"]["reasoning_tokens"] != n_think:
                    why = f"usage.reasoning_tokens {j['usage']} != {n_think}"
            if why:
                bad.append(f"schema {k} request {i}: {why}")
    check_cases(bad, 100, f"5 schemas x 20 requests: every content validates, thinking <= {BUDGET} "
                "tokens", show=10)


def test_grammar(port):
    bad = []
    with cf.ThreadPoolExecutor(4) as ex:
        futs = [ex.submit(post, port, "/v1/completions",
                          {"prompt": f"Question {i}:", "grammar": GBNF, "max_tokens": 60,
                           "seed": i, "temperature": 1.0}) for i in range(12)]
        futs += [ex.submit(post, port, "/v1/chat/completions",
                           {"messages": [{"role": "user", "content": f"Q{i}"}], "grammar": GBNF,
                            "max_tokens": 100, "seed": i, "thinking_budget": 8})
                 for i in range(8)]
        for f in futs:
            st, _, j = f.result()
            text = None
            if st == 200:
                ch = j["choices"][0]
                text = ch["text"] if "text" in ch else ch["message"]["content"]
            if st != 200 or not GBNF_RE.fullmatch(text):
                bad.append(f"{st} {text!r} {j if st != 200 else ''}")
    check_cases(bad, 20, "GBNF grammar: every answer matches the regex")


def test_refusals(port):
    st, _, j = post(port, "/v1/chat/completions",
                    chat_body(1, {"json_schema": {"type": "string", "pattern": "^a+$"}}))
    check(st == 400 and "'pattern'" in j["error"]["message"],
          f"unsupported keyword: 400 naming it ({st} {j.get('error', {}).get('message')})")
    st, _, j = post(port, "/v1/completions", {"prompt": "x", "grammar": "root ::= \"a\" \\q"})
    check(st == 400 and "line 1, column" in j["error"]["message"],
          f"bad grammar: 400 with line and column ({st} {j.get('error', {}).get('message')})")
    st, _, j = post(port, "/v1/completions", {"prompt": "x", "grammar": "root ::= \"a\"",
                                              "response_format": {"type": "json_object"}})
    check(st == 400 and "at most one" in j["error"]["message"], f"two constraints: 400 ({st})")
    st, _, j = post(port, "/v1/chat/completions", chat_body(1, {}, reasoning_effort="extreme"))
    check(st == 400 and "reasoning_effort" in j["error"]["message"], f"bad reasoning_effort: 400 ({st})")


def test_stream_equals(port):
    for k in (0, 3):
        body = chat_body(7, schema_field(k, SCHEMAS[k]))
        body.pop("return_token_ids")
        st, _, j = post(port, "/v1/chat/completions", body)
        sst, events, done = stream(port, "/v1/chat/completions", body)
        reasoning = "".join(e["choices"][0]["delta"].get("reasoning_content", "")
                            for e in events if e.get("choices"))
        content = "".join(e["choices"][0]["delta"].get("content", "") or ""
                          for e in events if e.get("choices"))
        msg = j["choices"][0]["message"]
        check(st == 200 and sst == 200 and done and reasoning == msg["reasoning_content"]
              and content == msg["content"], f"schema {k}: streamed == non-streamed")
    body = {"prompt": "Question 3:", "grammar": GBNF, "max_tokens": 60, "seed": 3}
    st, _, j = post(port, "/v1/completions", body)
    sst, events, done = stream(port, "/v1/completions", body)
    text = "".join(e["choices"][0]["text"] for e in events if e.get("choices"))
    check(st == 200 and done and text == j["choices"][0]["text"], "grammar: streamed == non-streamed")


def test_budgets(port, close):
    for req_budget, want in ((None, SERVER_MAX), (100, SERVER_MAX), (5, 5)):
        body = chat_body(3, {}, max_tokens=60)
        if req_budget is None:
            body.pop("thinking_budget")
        else:
            body["thinking_budget"] = req_budget
        st, _, j = post(port, "/v1/chat/completions", body)
        n = thinking_tokens(j["choices"][0]["token_ids"], close) if st == 200 else None
        check(n is not None and n <= want and
              j["usage"]["completion_tokens_details"]["reasoning_tokens"] == n,
              f"thinking_budget {req_budget} with --reasoning-budget {SERVER_MAX}: {n} <= {want}")
    body = chat_body(4, {}, max_tokens=30)
    body.pop("thinking_budget")
    body["reasoning_effort"] = "low"  # 256, lowered to the server's maximum
    st, _, j = post(port, "/v1/chat/completions", body)
    check(st == 200 and j["usage"]["completion_tokens_details"]["reasoning_tokens"] <= SERVER_MAX,
          "reasoning_effort low, capped by the server maximum")
    st, _, j = post(port, "/v1/completions", {"prompt": "Hello", "max_tokens": 40, "seed": 5,
                                              "ignore_eos": True})
    check(st == 200 and j["usage"]["completion_tokens"] == 40, "ignore_eos: max_tokens reached")


def test_gateway(strata, work, model):
    nport = free_port()
    node = Proc(node_args(strata, model, nport, "--reasoning-budget-message", MESSAGE, parallel=2),
                nport, "gw-node")
    gport = free_port()
    cfg = os.path.join(work, "gateway.yaml")
    with open(cfg, "w") as f:
        f.write(f"model:\n  path: {model}\nnodes:\n  - name: n1\n    port: {nport}\n"
                f"gateway:\n  listen: {HOST}:{gport}\n")
    gw = Proc([strata, "gateway", "--config", cfg], gport, "gateway")
    try:
        ok = 0
        for i in range(3):
            st, _, j = post(gport, "/v1/chat/completions", chat_body(i, schema_field(i, SCHEMAS[i])))
            if st == 200:
                msg = j["choices"][0]["message"]
                try:
                    jsonschema.validate(json.loads(msg["content"]), SCHEMAS[i])
                    ok += msg["reasoning_content"].rstrip().endswith(MESSAGE)
                except (ValueError, jsonschema.ValidationError):
                    pass
        check(ok == 3, f"gateway: constrained answers validate, budget message closes the "
                       f"thinking ({ok}/3)")
        st, _, j = post(gport, "/v1/chat/completions",
                        chat_body(1, {"json_schema": {"type": "string", "format": "ipv4"}}))
        check(st == 400 and "format" in j.get("error", {}).get("message", ""),
              f"gateway: the node's 400 passes through ({st})")
        sst, events, done = stream(gport, "/v1/chat/completions", chat_body(2, schema_field(2, SCHEMAS[2])))
        content = "".join(e["choices"][0]["delta"].get("content", "") or "" for e in events if e.get("choices"))
        try:
            jsonschema.validate(json.loads(content), SCHEMAS[2])
            valid = True
        except (ValueError, jsonschema.ValidationError):
            valid = False
        check(sst == 200 and done and valid, "gateway: streamed constrained answer validates")
    finally:
        for p in (gw, node):
            rc, san = p.stop_checked()
            check(not san, f"{p.name}: no sanitizer reports" + ("" if not san else f": {san[:3]}"))


def main():
    a, work = test_args("strata-reasoning-")
    t0 = time.time()
    model = os.path.join(work, "tiny-r1-qwen2.gguf")
    if not os.path.exists(model):
        subprocess.run([a.strata, "model", "synth", "--shape", "tiny-qwen2", "--type", "q8_0",
                        "--vocab", VOCAB, "-o", model], check=True, capture_output=True)
    port = free_port()
    node = Proc(node_args(a.strata, model, port, "--reasoning-budget", str(SERVER_MAX),
                          parallel=4, ctx=1024), port, "node")
    try:
        close = think_close_id(port)
        check(close is not None, f"the </think> token id: {close}")
        test_refusals(port)
        test_schemas(port, close)
        test_grammar(port)
        test_stream_equals(port)
        test_budgets(port, close)
    finally:
        rc, san = node.stop_checked()
        check(not san, "node: no sanitizer reports" + ("" if not san else f": {san[:3]}"))
    test_gateway(a.strata, work, model)
    print(f"reasoning test: {time.time() - t0:.1f} s, {len(FAILS)} failed")
    sys.exit(1 if FAILS else 0)


if __name__ == "__main__":
    main()
