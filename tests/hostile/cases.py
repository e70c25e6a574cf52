"""The hostile-HTTP cases of hostile_test.py: raw-socket exchanges and their verdicts.

A case is Case(name, kind, build): build(port) performs the exchange against one server and
returns an Outcome. kind says what passes:
  json   well-formed HTTP, hostile JSON: a 4xx with an OpenAI error envelope
  http   broken HTTP: a 4xx, or the connection closed/reset without an answer
  inject header injection: a 4xx/closed, or a 2xx whose response carries no injected header
         and echoes no control character
"""
import json
import socket
import time

HOST = "127.0.0.1"
INJECTED = b"injected-by-hostile"


class Outcome:
    """kind: status | closed | reset | hang | connect-failed | garbage."""

    def __init__(self, kind, status=None, head=b"", body=b"", note=""):
        self.kind, self.status, self.head, self.body, self.note = kind, status, head, body, note

    def __str__(self):
        s = str(self.status) if self.kind == "status" else self.kind
        return s + (f" ({self.note})" if self.note else "")


def read_response(s, timeout):
    """Reads the first response on s until it is complete, EOF, a reset or the deadline."""
    deadline = time.time() + timeout
    data = b""
    while True:
        left = deadline - time.time()
        head_end = data.find(b"\r\n\r\n")
        if head_end >= 0:
            head, body = data[:head_end], data[head_end + 4:]
            cl = _content_length(head)
            if cl is not None and len(body) >= cl:
                return _parsed(head, body[:cl])
        if left <= 0:
            if head_end >= 0:
                return _parsed(data[:head_end], data[head_end + 4:], "incomplete body")
            return Outcome("hang", note=f"no answer in {timeout:.0f}s") if not data else \
                Outcome("garbage", body=data)
        s.settimeout(left)
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            continue
        except ConnectionResetError:
            if data:
                break
            return Outcome("reset")
        except OSError as e:
            return Outcome("reset", note=str(e)) if not data else _finish(data)
        if not chunk:
            break
        data += chunk
    return _finish(data)


def _finish(data):
    if not data:
        return Outcome("closed")
    head_end = data.find(b"\r\n\r\n")
    if head_end < 0:
        return Outcome("garbage", body=data[:200])
    return _parsed(data[:head_end], data[head_end + 4:])


def _content_length(head):
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            try:
                return int(v.strip())
            except ValueError:
                return None
    return None


def _parsed(head, body, note=""):
    parts = head.split(b" ", 2)
    try:
        status = int(parts[1])
    except (IndexError, ValueError):
        return Outcome("garbage", head=head, body=body)
    return Outcome("status", status, head, body, note)


def exchange(port, data, half_close=False, timeout=10):
    """Sends data on a fresh connection (optionally half-closing it) and reads one answer."""
    try:
        s = socket.create_connection((HOST, port), timeout=5)
    except OSError as e:
        return Outcome("connect-failed", note=str(e))
    with s:
        try:
            s.sendall(data)
            if half_close:
                s.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server may have answered and closed already: read what it sent
        return read_response(s, timeout)


def abrupt(port, data):
    """Sends data and closes at once (RST if unread): the outcome is the server's survival."""
    try:
        with socket.create_connection((HOST, port), timeout=5) as s:
            s.sendall(data)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    except OSError as e:
        return Outcome("connect-failed", note=str(e))
    return Outcome("closed", note="by the client")


def http_request(method, path, body=b"", headers=None, version=b"HTTP/1.1"):
    """Raw request bytes; headers: list of (name, value) bytes pairs, sent as given."""
    lines = [method.encode() + b" " + path.encode() + b" " + version, b"Host: 127.0.0.1"]
    for k, v in headers or []:
        lines.append(k + b": " + v)
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def post(body, path="/v1/completions", extra_headers=None):
    """A well-formed POST with Connection: close."""
    h = [(b"Content-Type", b"application/json"), (b"Content-Length", str(len(body)).encode()),
         (b"Connection", b"close")] + (extra_headers or [])
    return http_request("POST", path, body, h)


def j(obj):
    return json.dumps(obj).encode()


CHAT = "/v1/chat/completions"


def chat_body(**kw):
    return j(dict({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}, **kw))


def comp_body(**kw):
    return j(dict({"prompt": "Hello", "max_tokens": 4}, **kw))


def nested(n, kind):
    if kind == "array":
        return b"[" * n + b"1" + b"]" * n
    return b'{"a":' * n + b"1" + b"}" * n


class Case:
    def __init__(self, name, kind, build):
        self.name, self.kind, self.build = name, kind, build


def json_case(name, body, path="/v1/completions"):
    return Case(name, "json", lambda port: exchange(port, post(body, path)))


def raw_case(name, data, half_close=False, kind="http"):
    return Case(name, kind, lambda port: exchange(port, data, half_close=half_close))


def json_cases():
    cs = []
    for n in (100000, 65):
        for kind in ("array", "object"):
            cs.append(json_case(f"nest {kind} {n} in extra field",
                                b'{"prompt":"x","max_tokens":2,"a":' + nested(n, kind) + b"}"))
    cs.append(json_case("nest array 100000 as prompt",
                        b'{"max_tokens":2,"prompt":' + nested(100000, "array") + b"}"))
    cs.append(json_case("nest object 100000 in message", b'{"max_tokens":2,"messages":[{"role":"user",'
                        b'"content":"x","x":' + nested(100000, "object") + b"}]}", CHAT))
    cs.append(json_case("nest array 100000 as body", nested(100000, "array")))
    types = [("stream 'yes'", comp_body(stream="yes")), ("max_tokens '10'", comp_body(max_tokens="10")),
             ("prompt 123", comp_body(prompt=123)), ("temperature 'hot'", comp_body(temperature="hot")),
             ("continue_token_ids 'x'", comp_body(continue_token_ids="x")),
             ("stop 5", comp_body(stop=5)), ("seed 'abc'", comp_body(seed="abc")),
             ("top_k [1]", comp_body(top_k=[1])), ("stream_options 1", comp_body(stream=True, stream_options=1)),
             ("body is []", b"[]"), ("body is null", b"null"), ("body is a string", b'"x"')]
    cs += [json_case("type: " + n, b) for n, b in types]
    chat_types = [("messages {}", j({"messages": {}, "max_tokens": 4})),
                  ("messages [1]", j({"messages": [1], "max_tokens": 4})),
                  ("message content 5", j({"messages": [{"role": "user", "content": 5}], "max_tokens": 4})),
                  ("message role 7", j({"messages": [{"role": 7, "content": "x"}], "max_tokens": 4})),
                  ("chat stream 'yes'", chat_body(stream="yes"))]
    cs += [json_case("type: " + n, b, CHAT) for n, b in chat_types]
    ranges = [("max_tokens -1", comp_body(max_tokens=-1)), ("max_tokens 1e300", b'{"prompt":"x","max_tokens":1e300}'),
              ("max_tokens 2^64+1", b'{"prompt":"x","max_tokens":18446744073709551617}'),
              ("max_tokens 1e30 digits", b'{"prompt":"x","max_tokens":' + b"9" * 30 + b"}"),
              ("temperature -5", comp_body(temperature=-5)), ("top_p 7", comp_body(top_p=7)),
              ("temperature 1e309 (inf)", b'{"prompt":"x","max_tokens":2,"temperature":1e309}'),
              ("top_k -2^63", comp_body(top_k=-(2 ** 63))),
              ("streamed, max_tokens -1", comp_body(stream=True, max_tokens=-1))]
    cs += [json_case("range: " + n, b) for n, b in ranges]
    cs.append(json_case("invalid UTF-8 in prompt", b'{"prompt":"ab\xff\xfe\xc0\x80","max_tokens":2}'))
    cs.append(json_case("lone surrogate in prompt", b'{"prompt":"a\\ud800b","max_tokens":2}'))
    cs.append(json_case("invalid UTF-8 in chat content",
                        b'{"messages":[{"role":"user","content":"\xed\xa0\x80"}],"max_tokens":2}', CHAT))
    for ids in ([999999999], [-1], [2 ** 31]):
        cs.append(json_case(f"continue_token_ids {ids}", comp_body(continue_token_ids=ids)))
    cs.append(json_case("chat continue_token_ids [999999999]", chat_body(continue_token_ids=[999999999]), CHAT))
    return cs


def http_cases():
    body = comp_body()
    ct = (b"Content-Type", b"application/json")
    close = (b"Connection", b"close")
    h = lambda *hs: [ct, close, *hs]  # noqa: E731
    cs = [
        Case("truncated body (CL 1000, 10 sent, abrupt close)", "http",
             lambda port: abrupt(port, http_request("POST", "/v1/completions", body[:10],
                                                    h((b"Content-Length", b"1000"))))),
        raw_case("truncated body (CL 1000, 10 sent, half-close)",
                 http_request("POST", "/v1/completions", body[:10], h((b"Content-Length", b"1000"))), True),
        raw_case("CL shorter than body",
                 http_request("POST", "/v1/completions", body, h((b"Content-Length", b"5")))),
        raw_case("CL not a number", http_request("POST", "/v1/completions", body, h((b"Content-Length", b"12abc")))),
        raw_case("CL negative", http_request("POST", "/v1/completions", body, h((b"Content-Length", b"-1")))),
        raw_case("CL twice, different", http_request("POST", "/v1/completions", body,
                                                     h((b"Content-Length", str(len(body)).encode()),
                                                       (b"Content-Length", b"3")))),
        raw_case("CL 10^25", http_request("POST", "/v1/completions", body,
                                          h((b"Content-Length", b"1" + b"0" * 25)))),
        raw_case("chunked: size 'zz'", http_request("POST", "/v1/completions", b"zz\r\n" + body + b"\r\n0\r\n\r\n",
                                                   h((b"Transfer-Encoding", b"chunked")))),
        raw_case("chunked: data longer than size",
                 http_request("POST", "/v1/completions", b"3\r\n" + body + b"\r\n0\r\n\r\n",
                              h((b"Transfer-Encoding", b"chunked")))),
        raw_case("chunked: size 2^72", http_request("POST", "/v1/completions", b"ffffffffffffffffff\r\nab",
                                                   h((b"Transfer-Encoding", b"chunked")))),
        raw_case("chunked: no last chunk, half-close",
                 http_request("POST", "/v1/completions", b"%x\r\n" % len(body) + body + b"\r\n",
                              h((b"Transfer-Encoding", b"chunked"))), True),
        raw_case("CL + TE chunked together",
                 http_request("POST", "/v1/completions", b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n",
                              h((b"Content-Length", b"4"), (b"Transfer-Encoding", b"chunked")))),
        raw_case("TE 'xchunked'", http_request("POST", "/v1/completions", body,
                                              h((b"Transfer-Encoding", b"xchunked"),
                                                (b"Content-Length", str(len(body)).encode())))),
        raw_case("request line garbage", b"\x16\x03\x01GARBAGE\r\n\r\n"),
        raw_case("header 70 KiB", http_request("GET", "/health", b"", [(b"X-Big", b"a" * (70 << 10)), close])),
        raw_case("10,000 headers (60 KB)", http_request("GET", "/health", b"",
                                                      [(b"a", b"b")] * 10000 + [close])),
        raw_case("target 100 KiB", http_request("GET", "/health?" + "q" * (100 << 10), b"", [close])),
        raw_case("NUL in header value", http_request("GET", "/health", b"", [(b"X-Foo", b"a\x00b"), close])),
    ]
    inj = b"X-Request-Id"
    cs += [
        raw_case("X-Request-Id with bare CR",
                 post(body, extra_headers=[(inj, b"abc\r" + INJECTED + b": 1")]), kind="inject"),
        raw_case("X-Request-Id with bare LF",
                 post(body, extra_headers=[(inj, b"abc\n" + INJECTED + b": 1")]), kind="inject"),
        raw_case("X-Request-Id obs-fold",
                 post(body, extra_headers=[(inj, b"abc\r\n " + INJECTED + b": 1")]), kind="inject"),
        raw_case("X-Request-Id with control chars",
                 post(body, extra_headers=[(inj, b"a\x01b\x7fc\x1b[31m")]), kind="inject"),
        raw_case("X-Session-Id with bare CR",
                 post(body, extra_headers=[(b"X-Session-Id", b"s\r" + INJECTED + b": 1")]), kind="inject"),
    ]
    return cs


def judge(case, o):
    """(passed, text) for one outcome."""
    text = str(o)
    if o.kind == "status" and 400 <= o.status < 500:
        if case.kind == "json":
            try:
                env = json.loads(o.body)
                ok = isinstance(env.get("error"), dict) and bool(env["error"].get("message"))
            except (ValueError, AttributeError):
                ok = False
            return ok, text if ok else text + " without an error envelope"
        return True, text
    if case.kind in ("http", "inject") and o.kind in ("closed", "reset"):
        return True, text
    if case.kind == "inject" and o.kind == "status" and 200 <= o.status < 300:
        lines = o.head.lower().split(b"\r\n")
        bad = [ln for ln in lines if ln.startswith(INJECTED)]
        rid = [ln for ln in lines if ln.startswith(b"x-request-id:")]
        ctl = any(c < 0x20 or c == 0x7f for ln in rid for c in ln[13:].strip())
        if bad:
            return False, text + " with the injected header in the response"
        if ctl:
            return False, text + " echoing control characters in X-Request-Id"
        return True, text + " (sanitized)"
    if o.kind == "status":
        return False, text + " (expected 4xx): " + o.body[:90].decode(errors="replace")
    return False, text
