"""Real `strata` processes on loopback for the Python tests and benches: free ports, a process
wrapper that waits until the server answers and checks for sanitizer reports when it stops,
plain HTTP calls, cluster.yaml writing. The one helper module: tests and benches import it
instead of keeping their own copies.

Only 127.0.0.1 is used. Stdlib only.
"""
import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

HOST = "127.0.0.1"

# Line by line even into ctest's pipe: a test killed by its timeout still shows how far it got.
sys.stdout.reconfigure(line_buffering=True)


def free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def request(port, method, path, body=None, headers=None, timeout=60, raw=False):
    """One HTTP request on a fresh connection: (status, lower-cased headers, parsed JSON or
    {"_raw": text}; with raw=True the body bytes). A dict body is sent as JSON."""
    c = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
        h = {"Content-Type": "application/json"}
        h.update(headers or {})
        c.request(method, path, body=data, headers=h)
        r = c.getresponse()
        payload = r.read()
    finally:
        c.close()
    hdrs = {k.lower(): v for k, v in r.getheaders()}
    if raw:
        return r.status, hdrs, payload
    try:
        parsed = json.loads(payload)
    except ValueError:
        parsed = {"_raw": payload.decode(errors="replace")}
    return r.status, hdrs, parsed


def alive(port):
    try:
        socket.create_connection((HOST, port), timeout=1).close()
        return True
    except OSError:
        return False


def wait_for(cond, timeout, step=0.05):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if cond():
                return True
        except OSError:
            pass
        time.sleep(step)
    return False


# Lines of a process's output that are sanitizer reports (ASan, UBSan, LSan).
SANITIZER_MARKERS = ("Sanitizer", "runtime error:")


def sanitizer_lines(output):
    return [ln for ln in output.splitlines() if any(m in ln for m in SANITIZER_MARKERS)]


class Proc:
    """A `strata` process whose output goes to a temporary file. start() (re)starts it and, when
    ready_path is set, waits until GET ready_path on port answers 200 (saw_loading: it answered
    503 "loading" first). stop_checked() stops it and returns its exit status and any
    sanitizer report lines."""

    def __init__(self, args, port, name, ready_path="/health", env=None, wait=True, timeout=60):
        self.args, self.port, self.name, self.ready_path = args, port, name, ready_path
        self.env = dict(os.environ, **(env or {}))
        self.proc = None
        self.saw_loading = False
        self.start(wait, timeout)

    def start(self, wait=True, timeout=60):
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(self.args, stdout=self.log, stderr=subprocess.STDOUT,
                                     env=self.env)
        if wait and self.ready_path:
            self.wait_ready(timeout)

    def wait_ready(self, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited ({self.proc.returncode}): " + self.output()[-2000:])
            try:
                st, _, body = request(self.port, "GET", self.ready_path, timeout=2)
                if st == 503 and isinstance(body, dict) and body.get("status") == "loading":
                    self.saw_loading = True
                if st == 200:
                    return
            except (OSError, http.client.HTTPException):
                pass
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not become ready: " + self.output()[-2000:])

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def output(self):
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def kill(self):
        """kill -9."""
        if self.running():
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait()

    def stop(self, timeout=20):
        if self.running():
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode if self.proc is not None else None

    def stop_checked(self, timeout=30):
        """SIGTERM (kill -9 after timeout): (exit status or "timeout", sanitizer report lines)."""
        rc = "not started"
        if self.proc is not None:
            self.proc.terminate()
            try:
                rc = self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                rc = "timeout"
        return rc, sanitizer_lines(self.output())


def node_args(strata, model, port, *extra, threads=1, parallel=4, ctx=512):
    return [strata, "node", "--model", model, "--port", str(port), "--threads", str(threads),
            "--parallel", str(parallel), "--ctx", str(ctx), *extra]


def write_cluster_yaml(path, model, nodes, gateway_port, gateway_yaml="", secret=None):
    """nodes: list of dicts (name, port and optionally stage_port, layers, next). Returns path."""
    lines = ["model:", f"  path: {model}"]
    if secret:
        lines += ["cluster:", f"  secret: '{secret}'"]
    lines.append("nodes:")
    for n in nodes:
        lines.append(f"  - name: {n['name']}")
        for k in ("port", "stage_port", "layers", "next"):
            if k in n:
                lines.append(f"    {k}: {n[k]}")
    lines += ["gateway:", f"  listen: {HOST}:{gateway_port}"]
    lines += ["  " + ln for ln in gateway_yaml.strip("\n").splitlines()]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


# Fast health checks and retries for tests: a killed backend is out within ~100 ms.
FAST_HEALTH = """health: {interval_ms: 100, timeout_ms: 500, unhealthy_threshold: 1, healthy_threshold: 1}
circuit_breaker: {failure_threshold: 1, open_ms: 300}
retry: {max_attempts: 3, backoff_ms: 5, max_backoff_ms: 20, unavailable_timeout_ms: 1500}
"""


def run_parallel(worker, n):
    """Runs worker(i) for i in 0..n-1 on n threads at once; returns the wall time in seconds."""
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - t0


def map_parallel(fn, n, strict=False):
    """Runs fn(i) for i in 0..n-1 on n threads at once. Returns (results, wall seconds):
    results[i] is what fn(i) returned, or the exception it raised. strict: raise a
    RuntimeError naming the first three exceptions instead."""
    results = [None] * n

    def run(i):
        try:
            results[i] = fn(i)
        except Exception as e:  # noqa: BLE001 - handed to the caller
            results[i] = e

    wall = run_parallel(run, n)
    errors = [str(r) for r in results if isinstance(r, Exception)]
    if strict and errors:
        raise RuntimeError("; ".join(errors[:3]))
    return results, wall


def test_args(prefix, extra=None):
    """The command line every integration test takes (--strata BINARY, --workdir DIR; `extra`
    adds a test's own options to the parser) and its work folder, created: --workdir, or a
    fresh temporary folder named after `prefix`. Returns (args, work)."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--strata", required=True)
    ap.add_argument("--workdir", default=None)
    if extra:
        extra(ap)
    a = ap.parse_args()
    work = a.workdir or tempfile.mkdtemp(prefix=prefix)
    os.makedirs(work, exist_ok=True)
    return a, work


def synth_model(strata, path, dtype, *extra, shape="tiny-qwen2"):
    """Writes a synthetic model (`strata model synth`, `extra` flags such as "--layers", "6")
    to `path` and returns the path."""
    subprocess.run([strata, "model", "synth", "--shape", shape, "--type", dtype, *extra,
                    "--out", path], check=True, capture_output=True)
    return path


# The failed checks of a test script; `check` prints one line per check and records failures.
FAILS = []


def check(cond, what, fatal=False):
    """Prints "ok" or "FAIL" and the check; a failure is recorded in FAILS, or with fatal=True
    ends the script at once (exit status 1)."""
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        if fatal:
            raise SystemExit(1)
        FAILS.append(what)


def check_cases(bad, n, what, show=5):
    """One check over n cases whose problems are the lines in `bad`: prints the first `show` of
    them, then checks that there are none, "(passed/n)" after `what`."""
    for b in bad[:show]:
        print("   ", b)
    check(not bad, f"{what} ({n - len(bad)}/{n})")


def summary(name):
    """The end of a test script: lists the failed checks; returns the exit status (0: all
    `name` checks passed)."""
    if FAILS:
        print(f"\n{len(FAILS)} FAILED:\n  " + "\n  ".join(FAILS), flush=True)
        return 1
    print(f"\nall {name} checks passed", flush=True)
    return 0
