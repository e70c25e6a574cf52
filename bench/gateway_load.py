#!/usr/bin/env python3
"""Load tool for the gateway (issue 6); works against a `strata node` just as well.

Two modes (stdlib only):

  stream    N concurrent streaming requests (default 1000) to one URL, each read to the end of
            its SSE stream. Reports successes, errors by kind, TTFT and total latency
            percentiles, the peak number of streams open at once, and -- with --pid -- the
            server process's thread count, RSS and open file descriptors sampled from /proc
            during the run.

  overhead  M sequential non-streaming requests to URL A and to URL B (e.g. the gateway and the
            node behind it), interleaved A,B / B,A so that drift cancels, each pair with the
            same fresh prompt. Reports both latency distributions and the median of the
            per-pair differences A - B.

Examples:
  python3 bench/gateway_load.py stream --url http://127.0.0.1:8080 -n 1000 --pid $(pgrep -n strata)
  python3 bench/gateway_load.py stream --url http://127.0.0.1:8080 --endpoint completions -n 200
  python3 bench/gateway_load.py overhead --url-a http://127.0.0.1:8080 --url-b http://127.0.0.1:9001 -m 300

Exit status: 0 when every request succeeded, 1 otherwise (so scripts can assert on it).
"""
import argparse
import asyncio
import http.client
import json
import os
import resource
import ssl
import statistics
import sys
import time
import urllib.parse

PATHS = {"chat": "/v1/chat/completions", "completions": "/v1/completions"}


def percentile(values, p):
    """Linear-interpolated percentile of a list (p in [0, 100]); None when empty."""
    if not values:
        return None
    v = sorted(values)
    k = (len(v) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


def fmt_ms(x):
    return "-" if x is None else f"{x * 1000:.1f}"


def dist_line(name, values):
    ps = [percentile(values, p) for p in (50, 90, 99)]
    mx = max(values) if values else None
    return (f"{name:<14} p50 {fmt_ms(ps[0]):>9} ms   p90 {fmt_ms(ps[1]):>9} ms   "
            f"p99 {fmt_ms(ps[2]):>9} ms   max {fmt_ms(mx):>9} ms   (n={len(values)})")


def dist_json(values):
    return {"n": len(values), "p50_ms": None if not values else percentile(values, 50) * 1000,
            "p90_ms": None if not values else percentile(values, 90) * 1000,
            "p99_ms": None if not values else percentile(values, 99) * 1000,
            "max_ms": None if not values else max(values) * 1000}


def request_body(args, endpoint, prompt, stream):
    body = {"max_tokens": args.max_tokens, "temperature": args.temperature, "stream": stream}
    if args.model:
        body["model"] = args.model
    if endpoint == "chat":
        body["messages"] = [{"role": "user", "content": prompt}]
    else:
        body["prompt"] = prompt
    return json.dumps(body).encode()


def raise_fd_limit(needed):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else max(soft, needed)
    if soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        except (ValueError, OSError):
            pass
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        print(f"warning: open-file limit {soft} < {needed} needed", file=sys.stderr)


# ---------------------------------------------------------------------------------------------
# stream mode


class SseReader:
    """Splits an SSE byte stream into `data:` payloads (events end at a blank line)."""

    def __init__(self):
        self.buf = b""
        self.data = []

    def feed(self, chunk):
        self.buf += chunk
        out = []
        while True:
            nl = self.buf.find(b"\n")
            if nl < 0:
                return out
            line = self.buf[:nl].rstrip(b"\r")
            self.buf = self.buf[nl + 1:]
            if not line:
                if self.data:
                    out.append(b"\n".join(self.data).decode(errors="replace"))
                    self.data = []
            elif line.startswith(b"data:"):
                self.data.append(line[5:].lstrip(b" "))


def has_token(event, endpoint):
    choices = event.get("choices") or []
    if not choices:
        return False
    c = choices[0]
    if endpoint == "chat":
        d = c.get("delta") or {}
        return bool(d.get("content") or d.get("reasoning_content"))
    return bool(c.get("text"))


class Stats:
    def __init__(self):
        self.ok = 0
        self.errors = {}
        self.ttft = []
        self.total = []
        self.tokens = 0
        self.open = 0
        self.peak_open = 0

    def error(self, kind):
        self.errors[kind] = self.errors.get(kind, 0) + 1


async def read_headers(reader):
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("closed before the response")
    parts = status_line.decode(errors="replace").split(" ", 2)
    status = int(parts[1])
    headers = {}
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        k, _, v = line.decode(errors="replace").partition(":")
        headers[k.strip().lower()] = v.strip()
    return status, headers


async def body_chunks(reader, headers):
    """Yields the response body as it arrives (chunked, Content-Length, or until EOF)."""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        while True:
            size_line = await reader.readline()
            if not size_line:
                raise ConnectionError("stream cut in a chunk header")
            size = int(size_line.split(b";")[0].strip(), 16)
            if size == 0:
                while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return
            data = await reader.readexactly(size + 2)
            yield data[:-2]
    elif "content-length" in headers:
        left = int(headers["content-length"])
        while left > 0:
            data = await reader.read(min(left, 65536))
            if not data:
                raise ConnectionError("body cut short")
            left -= len(data)
            yield data
    else:
        while True:
            data = await reader.read(65536)
            if not data:
                return
            yield data


async def one_stream(i, args, target, stats):
    endpoint = args.endpoint
    prompt = f"{args.prompt} (request {i})" if args.unique else args.prompt
    body = request_body(args, endpoint, prompt, True)
    head = (f"POST {target['path']} HTTP/1.1\r\nHost: {target['host']}:{target['port']}\r\n"
            f"Content-Type: application/json\r\nAccept: text/event-stream\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n")
    if args.api_key:
        head += f"Authorization: Bearer {args.api_key}\r\n"
    payload = (head + "\r\n").encode() + body
    t0 = time.perf_counter()
    writer = None
    opened = False
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(target["host"], target["port"], ssl=target["ssl"],
                                    limit=1 << 20), args.connect_timeout)
        stats.open += 1
        opened = True
        stats.peak_open = max(stats.peak_open, stats.open)
        writer.write(payload)
        await writer.drain()
        status, headers = await read_headers(reader)
        if status != 200:
            stats.error(f"http {status}")
            return
        sse = SseReader()
        first = None
        done = False
        failed = None
        async for chunk in body_chunks(reader, headers):
            for data in sse.feed(chunk):
                if data == "[DONE]":
                    done = True
                    continue
                try:
                    ev = json.loads(data)
                except ValueError:
                    failed = "bad event json"
                    continue
                if "error" in ev:
                    failed = "error event"
                elif has_token(ev, endpoint):
                    stats.tokens += 1
                    if first is None:
                        first = time.perf_counter()
        if failed:
            stats.error(failed)
        elif not done:
            stats.error("no [DONE]")
        else:
            stats.ok += 1
            stats.total.append(time.perf_counter() - t0)
            if first is not None:
                stats.ttft.append(first - t0)
    except asyncio.TimeoutError:
        stats.error("connect timeout")
    except (ConnectionError, OSError, asyncio.IncompleteReadError, ValueError) as e:
        stats.error(type(e).__name__)
    finally:
        if opened:
            stats.open -= 1
        if writer is not None:
            writer.close()


def read_proc(pid):
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("Threads:"):
                    out["threads"] = int(line.split()[1])
                elif line.startswith("VmRSS:"):
                    out["rss_mb"] = int(line.split()[1]) / 1024.0
        out["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        pass
    return out


async def sample_pid(pid, period_s, samples, stop):
    while not stop.is_set():
        s = read_proc(pid)
        if s:
            samples.append(s)
        try:
            await asyncio.wait_for(stop.wait(), period_s)
        except asyncio.TimeoutError:
            pass


def parse_url(url, path):
    u = urllib.parse.urlsplit(url)
    if u.scheme not in ("http", "https"):
        raise SystemExit(f"bad url {url!r}: expected http[s]://host:port")
    ctx = None
    if u.scheme == "https":
        ctx = ssl.create_default_context()
        if os.environ.get("GATEWAY_LOAD_INSECURE"):
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
    return {"host": u.hostname, "port": u.port or (443 if u.scheme == "https" else 80),
            "path": (u.path.rstrip("/") if u.path not in ("", "/") else "") + path, "ssl": ctx}


async def run_stream(args):
    target = parse_url(args.url, PATHS[args.endpoint])
    raise_fd_limit(args.n + 64)
    stats = Stats()
    samples = []
    stop = asyncio.Event()
    sampler = None
    if args.pid:
        samples.append(read_proc(args.pid))
        sampler = asyncio.create_task(sample_pid(args.pid, args.sample_ms / 1000.0, samples, stop))
    t0 = time.perf_counter()
    tasks = []
    for i in range(args.n):
        if args.ramp_s > 0 and i:
            await asyncio.sleep(args.ramp_s / args.n)
        tasks.append(asyncio.create_task(one_stream(i, args, target, stats)))
    try:
        await asyncio.wait_for(asyncio.gather(*tasks), args.timeout)
    except asyncio.TimeoutError:
        for t in tasks:
            if not t.done():
                t.cancel()
                stats.error("run timeout")
    wall = time.perf_counter() - t0
    stop.set()
    if sampler:
        await sampler
        samples.append(read_proc(args.pid))
    samples = [s for s in samples if s]

    errors = sum(stats.errors.values())
    print(f"stream  {args.url}{PATHS[args.endpoint]}  n={args.n}  max_tokens={args.max_tokens}")
    print(f"ok {stats.ok}   errors {errors}  {json.dumps(stats.errors) if errors else ''}")
    print(f"peak open streams {stats.peak_open}   wall {wall:.2f} s   "
          f"token events {stats.tokens} ({stats.tokens / wall:.1f}/s)")
    print(dist_line("TTFT", stats.ttft))
    print(dist_line("total", stats.total))
    proc = None
    if samples:
        def rng(k):
            vals = [s[k] for s in samples if k in s]
            return (min(vals), max(vals), vals[-1]) if vals else (None, None, None)
        th, rss, fds = rng("threads"), rng("rss_mb"), rng("fds")
        proc = {"samples": len(samples), "threads": th, "rss_mb": rss, "fds": fds}
        print(f"pid {args.pid}: threads min/max/end {th[0]}/{th[1]}/{th[2]}   "
              f"RSS MB {rss[0]:.1f}/{rss[1]:.1f}/{rss[2]:.1f}   fds {fds[0]}/{fds[1]}/{fds[2]}"
              f"   ({len(samples)} samples)")
    result = {"mode": "stream", "url": args.url, "endpoint": args.endpoint, "n": args.n,
              "ok": stats.ok, "errors": stats.errors, "peak_open": stats.peak_open,
              "wall_s": wall, "ttft": dist_json(stats.ttft), "total": dist_json(stats.total),
              "proc": proc}
    return result, errors == 0 and stats.ok == args.n


# ---------------------------------------------------------------------------------------------
# overhead mode


class KeepAliveClient:
    """One persistent HTTP/1.1 connection, reopened when the server closed it."""

    def __init__(self, url, api_key, new_conn):
        self.t = parse_url(url, "")
        self.url = url
        self.api_key = api_key
        self.new_conn = new_conn
        self.conn = None

    def _connect(self):
        if self.t["ssl"]:
            return http.client.HTTPSConnection(self.t["host"], self.t["port"], timeout=120,
                                               context=self.t["ssl"])
        return http.client.HTTPConnection(self.t["host"], self.t["port"], timeout=120)

    def post(self, path, body):
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        for attempt in range(2):
            if self.conn is None or self.new_conn:
                if self.conn is not None:
                    self.conn.close()
                self.conn = self._connect()
            try:
                t0 = time.perf_counter()
                self.conn.request("POST", self.t["path"] + path, body=body, headers=headers)
                r = self.conn.getresponse()
                data = r.read()
                dt = time.perf_counter() - t0
                if r.getheader("connection", "").lower() == "close":
                    self.conn.close()
                    self.conn = None
                return r.status, data, dt
            except (OSError, http.client.HTTPException) as e:
                self.conn.close()
                self.conn = None
                # Only a kept-alive connection the server closed meanwhile is worth a retry.
                stale = isinstance(e, (http.client.RemoteDisconnected, BrokenPipeError,
                                       ConnectionResetError))
                if attempt or not stale:
                    raise
        raise RuntimeError("unreachable")


def run_overhead(args):
    path = PATHS[args.endpoint]
    a = KeepAliveClient(args.url_a, args.api_key_a or args.api_key, args.new_conn)
    b = KeepAliveClient(args.url_b, args.api_key_b, args.new_conn)
    lat = {"A": [], "B": []}
    diffs = []
    errors = {"A": 0, "B": 0}
    nonce = int(time.time())
    for i in range(-args.warmup, args.m):
        # A fresh prompt per pair, its unique part first, so neither side gets prompt-cache
        # or response-cache hits from earlier pairs.
        prompt = f"{nonce}-{i} {args.prompt}"
        body = request_body(args, args.endpoint, prompt, False)
        order = ("A", "B") if i % 2 == 0 else ("B", "A")
        got = {}
        for side in order:
            client = a if side == "A" else b
            try:
                status, _, dt = client.post(path, body)
            except (OSError, http.client.HTTPException):
                status, dt = 0, None
            if status != 200:
                if i >= 0:
                    errors[side] += 1
                continue
            got[side] = dt
        if i < 0 or len(got) != 2:
            continue
        lat["A"].append(got["A"])
        lat["B"].append(got["B"])
        diffs.append(got["A"] - got["B"])
    med = statistics.median(diffs) if diffs else None
    print(f"overhead  {args.m} pairs ({args.warmup} warm-up)  {path}  max_tokens={args.max_tokens}"
          f"  {'new connection per request' if args.new_conn else 'keep-alive'}")
    print(f"A = {args.url_a}   B = {args.url_b}")
    print(dist_line("A", lat["A"]))
    print(dist_line("B", lat["B"]))
    if diffs:
        print(f"median(A - B) per pair: {med * 1000:+.3f} ms   "
              f"median(A) - median(B): "
              f"{(statistics.median(lat['A']) - statistics.median(lat['B'])) * 1000:+.3f} ms   "
              f"mean(A - B): {statistics.fmean(diffs) * 1000:+.3f} ms")
    print(f"errors A {errors['A']}  B {errors['B']}")
    result = {"mode": "overhead", "url_a": args.url_a, "url_b": args.url_b, "pairs": len(diffs),
              "a": dist_json(lat["A"]), "b": dist_json(lat["B"]),
              "median_diff_ms": None if med is None else med * 1000, "errors": errors}
    return result, errors["A"] == 0 and errors["B"] == 0 and bool(diffs)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n", 2)[2])
    sub = ap.add_subparsers(dest="mode", required=True)

    def common(p):
        p.add_argument("--endpoint", choices=sorted(PATHS), default="chat")
        p.add_argument("--prompt", default="Tell me a short story about a lighthouse.")
        p.add_argument("--max-tokens", type=int, default=None,
                       help="default: 16 for stream, 1 for overhead")
        p.add_argument("--temperature", type=float, default=0.0)
        p.add_argument("--model", default="", help="the request's \"model\" (default: none)")
        p.add_argument("--json", default="", help="also write the results to this JSON file")

    s = sub.add_parser("stream", help="N concurrent streaming requests")
    common(s)
    s.add_argument("--url", required=True, help="base URL, e.g. http://127.0.0.1:8080")
    s.add_argument("-n", type=int, default=1000, help="concurrent streams (default 1000)")
    s.add_argument("--api-key", default="")
    s.add_argument("--unique", action="store_true",
                   help="append the request number to each prompt (defeats response caches)")
    s.add_argument("--ramp-s", type=float, default=0.0, help="spread the starts over this long")
    s.add_argument("--timeout", type=float, default=600.0, help="whole-run limit in seconds")
    s.add_argument("--connect-timeout", type=float, default=30.0)
    s.add_argument("--pid", type=int, default=0, help="sample this process's /proc during the run")
    s.add_argument("--sample-ms", type=float, default=100.0)

    o = sub.add_parser("overhead", help="latency of URL A minus URL B, sequential, interleaved")
    common(o)
    o.add_argument("--url-a", required=True, help="e.g. the gateway")
    o.add_argument("--url-b", required=True, help="e.g. the node behind it")
    o.add_argument("-m", type=int, default=200, help="request pairs (default 200)")
    o.add_argument("--warmup", type=int, default=5)
    o.add_argument("--api-key", default="", help="sent to A (and to B only via --api-key-b)")
    o.add_argument("--api-key-a", default="")
    o.add_argument("--api-key-b", default="")
    o.add_argument("--new-conn", action="store_true", help="a new connection per request")
    args = ap.parse_args()
    if args.max_tokens is None:
        args.max_tokens = 16 if args.mode == "stream" else 1

    if args.mode == "stream":
        result, ok = asyncio.run(run_stream(args))
    else:
        result, ok = run_overhead(args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
