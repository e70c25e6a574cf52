#!/usr/bin/env python3
"""Renders the reference chat templates with jinja2 and writes golden.json.

The Jinja environment mirrors how Hugging Face transformers renders chat templates:
sandboxed, trim_blocks=True, lstrip_blocks=True, a raise_exception() global, bos_token
passed as a variable, tools=None. chat_template_test.cc compares strata::RenderChat with
every case stored here.

Templates in this folder:
  deepseek-ai-DeepSeek-R1-Distill-Llama-8B.jinja  (also used by the Qwen distills)
  meta-llama-Llama-3.1-8B-Instruct.jinja
  Qwen-Qwen2.5-7B-Instruct.jinja
  ggml-vocab-qwen2.jinja  tokenizer.chat_template of /work/shared/vocab/ggml-vocab-qwen2.gguf
                          (re-extract with --extract-gguf PATH)

Usage: python3 render_golden.py [--extract-gguf path/to/ggml-vocab-qwen2.gguf]
"""

import json
import os
import struct
import sys

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

HERE = os.path.dirname(os.path.abspath(__file__))

# file name -> (family name as strata::ChatFamilyName, BOS text of that model)
TEMPLATES = {
    "deepseek-ai-DeepSeek-R1-Distill-Llama-8B.jinja": ("deepseek-r1", "<｜begin▁of▁sentence｜>"),
    "meta-llama-Llama-3.1-8B-Instruct.jinja": ("llama3", "<|begin_of_text|>"),
    "Qwen-Qwen2.5-7B-Instruct.jinja": ("chatml", ""),
    "ggml-vocab-qwen2.jinja": ("chatml", ""),
    # Variants of the R1 distills' template that GGUFs ship: the first published one (no
    # "<think>\n" in the generation prompt) and the corrected tool-call layout (as in
    # llama.cpp's models/templates/deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja).
    "deepseek-r1-original-no-think.jinja": ("deepseek-r1", "<｜begin▁of▁sentence｜>"),
    "deepseek-r1-tool-calls-fixed.jinja": ("deepseek-r1", "<｜begin▁of▁sentence｜>"),
}
# Templates that render tools: the tool conversations below are rendered with them.
TOOL_TEMPLATES = {
    "deepseek-ai-DeepSeek-R1-Distill-Llama-8B.jinja",
    "meta-llama-Llama-3.1-8B-Instruct.jinja",
    "Qwen-Qwen2.5-7B-Instruct.jinja",
    "deepseek-r1-original-no-think.jinja",
    "deepseek-r1-tool-calls-fixed.jinja",
}


def extract_gguf_template(path):
    """Reads the tokenizer.chat_template string from a GGUF file's metadata."""
    data = open(path, "rb").read()
    if data[:4] != b"GGUF":
        raise SystemExit(f"{path}: not a GGUF file")
    off = 8  # magic + version
    _n_tensors, n_kv = struct.unpack_from("<QQ", data, off)
    off += 16
    scalar = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}

    def read_str(o):
        (n,) = struct.unpack_from("<Q", data, o)
        return data[o + 8:o + 8 + n], o + 8 + n

    def skip_value(t, o):
        if t in scalar:
            return o + scalar[t]
        if t == 8:
            return read_str(o)[1]
        if t == 9:
            et, n = struct.unpack_from("<IQ", data, o)
            o += 12
            for _ in range(n):
                o = skip_value(et, o)
            return o
        raise SystemExit(f"unknown GGUF type {t}")

    for _ in range(n_kv):
        key, off = read_str(off)
        (t,) = struct.unpack_from("<I", data, off)
        off += 4
        if key == b"tokenizer.chat_template" and t == 8:
            return read_str(off)[0].decode("utf-8")
        off = skip_value(t, off)
    raise SystemExit(f"{path}: no tokenizer.chat_template")


def make_env():
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent,
                          separators=separators, sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    return env


def m(role, content):
    return {"role": role, "content": content}


# Conversations rendered with every template, with and without the generation prompt.
CONVERSATIONS = {
    "single_user": [m("user", "Hello!")],
    "system_user": [m("system", "You are a terse assistant."), m("user", "What is 2+2?")],
    "multi_turn": [
        m("user", "Hi there"),
        m("assistant", "Hello! How can I help?"),
        m("user", "Tell me a joke."),
    ],
    "system_multi_turn": [
        m("system", "Be kind."),
        m("user", "Q1"),
        m("assistant", "A1"),
        m("user", "Q2"),
        m("assistant", "A2"),
        m("user", "Q3"),
    ],
    "assistant_think": [
        m("user", "What is 3*4?"),
        m("assistant", "<think>\nThree times four is twelve.\n</think>\n\nThe answer is 12."),
        m("user", "And 5*6?"),
    ],
    "assistant_two_think_blocks": [
        m("user", "q"),
        m("assistant", "<think>a</think>middle<think>b</think> final answer"),
        m("user", "next"),
    ],
    "assistant_think_unclosed": [
        m("user", "q"),
        m("assistant", "<think>never closed, kept as is"),
        m("user", "next"),
    ],
    "ends_with_assistant": [
        m("system", "sys"),
        m("user", "Hi"),
        m("assistant", "<think>x</think>Hello."),
    ],
    "whitespace_trim": [
        m("system", "  \n\tSystem with spaces \n "),
        m("user", "\u3000\u00a0 padded user text \u2003\n"),
        m("assistant", "\n answer with\ninner\nlines \r\n"),
        m("user", "\x1c\x85 odd spaces \u2029"),
    ],
    "system_in_middle": [
        m("user", "first"),
        m("system", "late system"),
        m("user", "second"),
    ],
    "two_systems": [
        m("system", "sys one"),
        m("system", "sys two"),
        m("user", "u"),
    ],
    "empty_contents": [m("system", ""), m("user", ""), m("assistant", ""), m("user", "")],
    "jinja_lookalike_and_unicode": [
        m("user", "{{ bos_token }} {% if x %}y{% endif %} 'quotes' \"dq\" \\n naïve 日本語 🙂"),
        m("assistant", "<|im_end|> literal specials <｜User｜> stay text"),
        m("user", "ok"),
    ],
    "only_system": [m("system", "just a system prompt")],
    "empty": [],
}


TOOLS = [
    {"type": "function", "function": {
        "name": "get_weather", "description": "Current weather in a city.",
        "parameters": {"type": "object", "properties": {
            "city": {"type": "string", "description": "City name, e.g. Zürich"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
            "required": ["city"]}}},
    {"type": "function", "function": {
        "name": "add", "description": "Adds two integers.",
        "parameters": {"type": "object", "properties": {
            "a": {"type": "integer"}, "b": {"type": "integer"}}, "required": ["a", "b"],
            "additionalProperties": False}}},
]


def call(cid, name, args):
    return {"id": cid, "type": "function", "function": {"name": name, "arguments": args}}


def tool(cid, content):
    return {"role": "tool", "tool_call_id": cid, "content": content}


# Conversations rendered with tools (OpenAI's shapes: arguments are JSON strings).
TOOL_CONVERSATIONS = {
    "tools_user_only": [m("user", "Weather in Paris?")],
    "tools_system_call_result": [
        m("system", "Use tools."),
        m("user", "Weather in Paris?"),
        {"role": "assistant", "content": None,
         "tool_calls": [call("call_1", "get_weather", '{"city": "Paris"}')]},
        tool("call_1", '{"temp": 21, "sky": "clear"}'),
    ],
    "tools_two_calls_two_results_answer": [
        m("user", "Add 1+2 and 3+4"),
        {"role": "assistant", "content": None,
         "tool_calls": [call("call_a", "add", '{"a": 1, "b": 2}'),
                        call("call_b", "add", '{"a": 3, "b": 4}')]},
        tool("call_a", "3"),
        tool("call_b", "7"),
        m("assistant", "The sums are 3 and 7."),
        m("user", "Thanks \"quoted\" ünïcode"),
    ],
    "tools_second_call_turn": [
        m("user", "Weather in Rome?"),
        {"role": "assistant", "content": None,
         "tool_calls": [call("call_x", "get_weather", '{"city": "Rome"}')]},
        tool("call_x", "sunny"),
        m("user", "And Oslo?"),
        {"role": "assistant", "content": None,
         "tool_calls": [call("call_y", "get_weather", '{"city": "Oslo", "unit": "celsius"}')]},
        tool("call_y", "rain"),
    ],
}


def jinja_messages(fname, messages):
    """Qwen and Llama print arguments with tojson: they expect objects (as llama.cpp and
    vLLM pass them); DeepSeek concatenates the string."""
    if fname.startswith("deepseek"):
        return messages
    out = []
    for msg in messages:
        msg = dict(msg)
        if msg.get("tool_calls"):
            msg["tool_calls"] = [
                {**c, "function": {**c["function"],
                                   "arguments": json.loads(c["function"]["arguments"])}}
                for c in msg["tool_calls"]]
        out.append(msg)
    return out


def render_case(tmpl, fname, name, messages, add_gen, bos, tools):
    case = {"template": fname, "name": name, "messages": messages,
            "add_generation_prompt": add_gen, "bos_token": bos}
    if tools:
        case["tools"] = tools
    try:
        case["expected"] = tmpl.render(
            messages=jinja_messages(fname, messages), tools=tools, documents=None,
            add_generation_prompt=add_gen, bos_token=bos, eos_token="</s>")
    except jinja2.exceptions.TemplateError as e:  # includes UndefinedError
        case["expected"] = None
        case["jinja_error"] = f"{type(e).__name__}: {e}"
    return case


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--extract-gguf":
        text = extract_gguf_template(sys.argv[2])
        with open(os.path.join(HERE, "ggml-vocab-qwen2.jinja"), "w", encoding="utf-8") as f:
            f.write(text)
    env = make_env()
    templates = {}
    cases = []
    for fname, (family, bos) in TEMPLATES.items():
        source = open(os.path.join(HERE, fname), encoding="utf-8").read()
        templates[fname] = {"family": family}
        tmpl = env.from_string(source)
        for name, messages in CONVERSATIONS.items():
            for add_gen in (False, True):
                cases.append(render_case(tmpl, fname, name, messages, add_gen, bos, None))
        if fname not in TOOL_TEMPLATES:
            continue
        for name, messages in TOOL_CONVERSATIONS.items():
            for add_gen in (False, True):
                cases.append(render_case(tmpl, fname, name, messages, add_gen, bos, TOOLS))
    out = {"generator": "render_golden.py (jinja2 %s)" % jinja2.__version__,
           "templates": templates, "cases": cases}
    with open(os.path.join(HERE, "golden.json"), "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"wrote {len(cases)} cases")


if __name__ == "__main__":
    main()
