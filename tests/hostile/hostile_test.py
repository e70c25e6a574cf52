#!/usr/bin/env python3
"""Hostile-HTTP acceptance test (issue 11): a real `strata node` (synthesized tiny model) and a
real `strata gateway` in front of it, both driven by the cases of cases.py over raw sockets,
plus slow clients (slowloris), 2,000 idle connections and a flood of unauthenticated 8 MiB
bodies against a node and a gateway configured with API keys.

Every case must get a 4xx (or a closed connection for broken HTTP), both processes must stay up
(a crashed one is restarted so the remaining cases still mean something), and a greedy request
afterwards must answer exactly as the baseline taken at the start. Prints a table case ->
result per server and exits 1 listing the failed cases.

usage: hostile_test.py --strata PATH [--workdir DIR] [--only SUBSTRING]
"""
import os
import resource
import socket
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "common"))
sys.path.insert(0, HERE)
import cases as C  # noqa: E402
import procs  # noqa: E402
from procs import FAST_HEALTH, Proc, free_port, node_args, request, wait_for, write_cluster_yaml  # noqa: E402

API_KEY = "sk-hostile-" + "0123456789abcdef" * 2
BASELINE = {"prompt": "The hostile test baseline", "max_tokens": 16, "temperature": 0}
# The read deadline of both servers today (node --idle-timeout default 30 s, gateway 30 s),
# plus slack for a loaded machine: a slowloris connection must be closed before this.
SLOWLORIS_LIMIT_S = 45
FLOOD_CLIENTS = 16
FLOOD_BODY = 8 << 20


class Server:
    """One target (the node or the gateway) and its baseline answer."""

    def __init__(self, label, proc):
        self.label, self.proc = label, proc
        self.port = proc.port
        self.baseline = None

    def base(self):
        """The baseline request's text. A 503/429 (a connection cap still counting sockets the
        previous case just closed) is retried for up to 5 s."""
        deadline = time.time() + 5
        while True:
            st, _, j = request(self.port, "POST", "/v1/completions", BASELINE, timeout=30)
            if st not in (429, 503) or time.time() > deadline:
                break
            time.sleep(0.2)
        if st != 200:
            return f"status {st}: {str(j)[:100]}"
        return j["choices"][0]["text"]


class Harness:
    def __init__(self, strata, work):
        self.strata, self.work = strata, work
        self.model = os.path.join(work, "hostile-tiny.gguf")
        subprocess.run([strata, "model", "synth", "--shape", "tiny-qwen2", "--type", "f32",
                        "--out", self.model], check=True, capture_output=True)
        self.procs = []
        self.node = self._node("node")
        self.keynode = self._node("node-with-key", "--api-key", API_KEY)
        self.gw = self._gateway("gateway", "")
        self.keygw = self._gateway("gateway-with-keys", f"api_keys:\n  - {{key: {API_KEY}, name: k1}}\n")
        self.targets = [Server("node", self.node), Server("gateway", self.gw)]
        for t in self.targets:
            t.baseline = t.base()
        self.crashes, self.restarts = [], {}

    def _node(self, name, *extra):
        port = free_port()
        p = Proc(node_args(self.strata, self.model, port, *extra, ctx=512), port, name)
        self.procs.append(p)
        return p

    def _gateway(self, name, yaml):
        port = free_port()
        cfg = write_cluster_yaml(os.path.join(self.work, name + ".yaml"), self.model,
                                 [{"name": "n0", "port": self.node.port}], port, FAST_HEALTH + yaml)
        p = Proc([self.strata, "gateway", "--config", cfg], port, name, ready_path="/ready")
        self.procs.append(p)
        return p

    def stop(self):
        for p in reversed(self.procs):
            p.stop()


def backend_errors(h):
    """(errors, circuit) of the gateway's backend, from /api/cluster."""
    try:
        b = request(h.gw.port, "GET", "/api/cluster", timeout=5)[2]["backends"][0]
        return b.get("errors", 0), b.get("circuit", "?")
    except Exception:  # noqa: BLE001
        return None, "?"


def blamed_backend(h, target, before):
    """A hostile client must not be counted as a failure of the healthy node behind the gateway
    (else a few requests open its circuit). Returns the problems; waits for the circuit to close."""
    if target.label != "gateway" or before[0] is None:
        return []
    after = backend_errors(h)
    if after[0] is None or after[0] <= before[0]:
        return []
    wait_for(lambda: backend_errors(h)[1] == "closed", 5)
    return [f"gateway counted it as {after[0] - before[0]} failure(s) of node n0 (circuit {after[1]})"]


def after_case(h, target):
    """The baseline on the target, then the liveness of every process (a crash can take a moment
    to show: after a failed baseline, wait up to 3 s for a process to exit). A dead process is
    restarted. Returns the problems."""
    problems = []
    try:
        got = target.base()
    except Exception as e:  # noqa: BLE001
        got = f"exception {type(e).__name__}: {e}"
    if got != target.baseline:
        wait_for(lambda: any(not p.running() for p in h.procs), 3)
    dead = [p for p in h.procs if not p.running()]
    for p in sorted(dead, key=lambda p: "gateway" in p.name):
        problems.append(f"CRASH {p.name} (exit {p.proc.returncode})")
        h.crashes.append((p.name, p.proc.returncode, p.output()[-800:]))
        h.restarts[p.name] = h.restarts.get(p.name, 0) + 1
        p.start(wait=True)
    if dead:
        wait_for(lambda: request(h.gw.port, "GET", "/ready", timeout=2)[0] == 200, 10)
        try:
            got = target.base()
        except Exception as e:  # noqa: BLE001
            got = f"exception {type(e).__name__}: {e}"
    if got != target.baseline:
        problems.append(f"baseline differs afterwards: {got[:80]!r}")
    return problems


# --- special cases -------------------------------------------------------------------------

def slowloris(port, result):
    """One header byte per second; records how long until the server closes the connection."""
    data = b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 200
    t0 = time.time()
    try:
        s = socket.create_connection((C.HOST, port), timeout=5)
    except OSError as e:
        result["text"] = f"connect failed: {e}"
        return
    with s:
        for i, b in enumerate(data):
            s.settimeout(1.0)
            try:
                chunk = s.recv(4096)
                first = chunk.split(b"\r\n")[0].decode(errors="replace")
                result["text"] = f"closed after {time.time() - t0:.1f}s" + (f" with '{first}'" if chunk else "")
                result["ok"] = time.time() - t0 <= SLOWLORIS_LIMIT_S
                return
            except socket.timeout:
                pass
            except OSError:
                result["text"], result["ok"] = f"reset after {time.time() - t0:.1f}s", time.time() - t0 <= SLOWLORIS_LIMIT_S
                return
            if time.time() - t0 > SLOWLORIS_LIMIT_S + 5:
                break
            try:
                s.send(bytes([b]))
            except OSError:
                result["text"], result["ok"] = f"send failed after {time.time() - t0:.1f}s", True
                return
    result["text"] = f"still open after {time.time() - t0:.0f}s (hang)"
    result["ok"] = False


def idle_connections(port, n=2000):
    socks, failed = [], 0
    for _ in range(n):
        try:
            socks.append(socket.create_connection((C.HOST, port), timeout=5))
        except OSError:
            failed += 1
    time.sleep(1.0)
    # Informational: is another client served meanwhile? (Per-address caps may refuse it.)
    try:
        st = request(port, "POST", "/v1/completions", BASELINE, timeout=10)[0]
    except Exception as e:  # noqa: BLE001
        st = type(e).__name__
    closed = 0
    for s in socks:
        s.setblocking(False)
        try:
            if s.recv(1) == b"":
                closed += 1
        except BlockingIOError:
            pass
        except OSError:
            closed += 1
        s.close()
    return C.Outcome("status" if isinstance(st, int) else "closed", st if isinstance(st, int) else None,
                     note=f"{len(socks)} open, {failed} refused, {closed} closed by server, "
                          f"request meanwhile: {st}")


def flood_one(port, body, out, i):
    """Headers of an unauthenticated 8 MiB POST, then wait up to 2 s for the answer before
    sending the body."""
    hdr = C.http_request("POST", "/v1/completions", b"", [(b"Content-Type", b"application/json"),
                                                          (b"Content-Length", str(len(body)).encode())])
    try:
        s = socket.create_connection((C.HOST, port), timeout=10)
    except OSError as e:
        out[i] = ("connect failed", str(e))
        return
    with s:
        s.sendall(hdr)
        o = C.read_response(s, 2.0)
        if o.kind == "status":
            out[i] = ("early", o.status)
            return
        if o.kind in ("closed", "reset"):
            out[i] = ("early-" + o.kind, None)
            return
        try:
            s.settimeout(20)
            s.sendall(body)
        except OSError as e:
            out[i] = ("send failed", str(e))
            return
        o = C.read_response(s, 20)
        out[i] = ("after body", o.status if o.kind == "status" else o.kind)


def flood(port):
    body = b'{"prompt":"' + b"x" * (FLOOD_BODY - 14) + b'"}'
    out = [None] * FLOOD_CLIENTS
    t0 = time.time()
    ts = [threading.Thread(target=flood_one, args=(port, body, out, i)) for i in range(FLOOD_CLIENTS)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    early401 = sum(1 for o in out if o == ("early", 401))
    kinds = {}
    for o in out:
        kinds[f"{o[0]} {o[1]}"] = kinds.get(f"{o[0]} {o[1]}", 0) + 1
    ok = early401 == FLOOD_CLIENTS
    return ok, f"{early401}/{FLOOD_CLIENTS} got 401 before the body was sent ({kinds}, {time.time() - t0:.1f}s)"


def rss_mib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) // 1024
    except OSError:
        pass
    return -1


def pipelined_flood(proc, mib=64):
    """A streamed generation, and meanwhile 64 MiB of pipelined bytes on the same connection:
    the server must not buffer them (cap then close, stop reading, or discard: its RSS grows by
    less than half of what was sent)."""
    req = C.post(C.comp_body(max_tokens=400, temperature=0, stream=True)).replace(
        b"Connection: close", b"Connection: keep-alive")
    before = rss_mib(proc.proc.pid)
    try:
        s = socket.create_connection((C.HOST, proc.port), timeout=5)
    except OSError as e:
        return False, f"connect failed: {e}"
    sent, t0 = 0, time.time()
    junk = b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"X: " + b"a" * (1 << 20) + b"\r\n"
    with s:
        s.sendall(req)
        s.settimeout(10)
        try:
            while sent < (mib << 20):
                s.sendall(junk)
                sent += len(junk)
        except OSError as e:
            how = f"cut after {sent >> 20} MiB ({type(e).__name__})"
        else:
            how = f"all {sent >> 20} MiB accepted in {time.time() - t0:.1f}s"
        grown = rss_mib(proc.proc.pid) - before
    ok = sent < (mib << 20) or grown < mib // 2
    return ok, f"{how}; server RSS +{grown} MiB"


# --- runner ----------------------------------------------------------------------------------

def main():
    a, work = procs.test_args("strata_hostile_", lambda ap: ap.add_argument(
        "--only", default="", help="run only the cases whose name contains this"))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))
    t_start = time.time()
    h = Harness(a.strata, work)
    rows, fails = [], []
    try:
        bad = [t for t in h.targets if t.baseline.startswith("status")]
        if bad:
            print("baseline request failed:", [(t.label, t.baseline) for t in bad])
            sys.exit(1)
        print(f"baseline: {h.targets[0].baseline!r} (gateway identical: "
              f"{h.targets[0].baseline == h.targets[1].baseline})", flush=True)
        if backend_errors(h)[0] is None:
            record(rows, fails, "gateway /api/cluster readable (backend blame check)", "gateway", False,
                   "unreadable: the check that client errors are not counted against n0 cannot run")
        run_all(h, a.only, rows, fails)
    finally:
        h.stop()
    print_table(rows)
    for name, rc, tail in h.crashes:
        print(f"\n--- {name} crashed (exit {rc}); last output:\n{tail}")
    print(f"\n{len(rows)} cases x servers in {time.time() - t_start:.0f}s")
    if fails:
        print(f"\n{len(fails)} FAILED:\n  " + "\n  ".join(fails))
        sys.exit(1)
    print("all hostile cases passed")


def record(rows, fails, name, label, ok, text):
    rows.append((name, label, ok, text))
    print(("ok   " if ok else "FAIL ") + f"{label:8} {name}: {text}", flush=True)
    if not ok:
        fails.append(f"{label}: {name}: {text}")


def run_all(h, only, rows, fails):
    for case in C.json_cases() + C.http_cases():
        if only and only not in case.name:
            continue
        for t in h.targets:
            before = backend_errors(h)
            o = case.build(t.port)
            ok, text = C.judge(case, o)
            problems = blamed_backend(h, t, before) + after_case(h, t)
            record(rows, fails, case.name, t.label, ok and not problems, "; ".join([text] + problems))
    # Slow clients run while the idle-connection and flood cases run (a restart of the server
    # meanwhile makes the slowloris result meaningless: reported as a failure).
    lorises = []
    if not only or "slowloris" in only:
        for t in h.targets:
            res = {"ok": False, "text": "did not finish"}
            th = threading.Thread(target=slowloris, args=(t.port, res), daemon=True)
            th.start()
            lorises.append((t, res, th, h.restarts.get(t.proc.name, 0)))
    if not only or "idle" in only:
        for t in h.targets:
            o = idle_connections(t.port)
            problems = after_case(h, t)
            record(rows, fails, "2,000 idle connections", t.label, not problems,
                   "; ".join([o.note] + problems))
    if not only or "pipelined" in only:
        for t in h.targets:
            ok, text = pipelined_flood(t.proc)
            problems = after_case(h, t)
            record(rows, fails, "64 MiB pipelined during a stream", t.label, ok and not problems,
                   "; ".join([text] + problems))
    if not only or "flood" in only:
        for label, p, t in (("node", h.keynode, h.targets[0]), ("gateway", h.keygw, h.targets[1])):
            ok, text = flood(p.port)
            problems = after_case(h, t)
            record(rows, fails, "unauthenticated 8 MiB bodies x16", label, ok and not problems,
                   "; ".join([text] + problems))
    for t, res, th, restarts in lorises:
        th.join(SLOWLORIS_LIMIT_S + 10)
        problems = after_case(h, t)
        if h.restarts.get(t.proc.name, 0) != restarts:
            problems.append(f"{t.proc.name} was restarted during the slowloris: inconclusive")
        record(rows, fails, "slowloris (1 header byte/s)", t.label, res["ok"] and not problems,
               "; ".join([res["text"]] + problems))


def print_table(rows):
    by_case = {}
    for name, label, ok, text in rows:
        by_case.setdefault(name, {})[label] = ("ok   " if ok else "FAIL ") + text
    w = max((len(n) for n in by_case), default=10)
    print(f"\n{'case':{w}} | {'node':50} | gateway")
    print("-" * (w + 110))
    for name, res in by_case.items():
        print(f"{name:{w}} | {res.get('node', '-')[:50]:50} | {res.get('gateway', '-')[:80]}")


if __name__ == "__main__":
    main()
