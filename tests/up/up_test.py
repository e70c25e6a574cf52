#!/usr/bin/env python3
"""`strata up` end to end (issue 12): the demo model, replica and pipeline topologies, streamed
and non-streamed chat through the gateway, a child killed -9 (reported; replica: the gateway
still answers; pipeline: the stage is restarted), SIGINT (nothing it started is left) and
`up` itself killed -9 (its children die with it). Real processes on loopback only.

  up_test.py --strata build/strata --workdir build/tests/up
"""
import argparse
import http.client
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common"))
from procs import HOST, free_port, request, wait_for  # noqa: E402
from sse import read_sse  # noqa: E402

CHAT = {"messages": [{"role": "user", "content": "Why is the sky blue?"}], "max_tokens": 8,
        "temperature": 0}


class Up:
    """One `strata up` process with its output in a file."""

    def __init__(self, strata, workdir, name, *extra):
        self.run_dir = os.path.join(workdir, name)
        shutil.rmtree(self.run_dir, ignore_errors=True)
        self.port = free_port()
        self.log_path = os.path.join(workdir, name + ".out")
        self.log = open(self.log_path, "wb")
        env = dict(os.environ, XDG_CACHE_HOME=os.path.join(workdir, "cache"))
        args = [strata, "up", "--port", str(self.port), "--run-dir", self.run_dir,
                "--threads", "2", "--ctx", "256", "--parallel", "2", "--timeout", "120", *extra]
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, env=env)

    def output(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def wait_output(self, pattern, timeout):
        if not wait_for(lambda: re.search(pattern, self.output()) or self.proc.poll() is not None,
                        timeout, step=0.1):
            raise AssertionError(f"no '{pattern}' within {timeout} s:\n" + self.output()[-3000:])
        if not re.search(pattern, self.output()):
            raise AssertionError(f"up exited ({self.proc.returncode}) before '{pattern}':\n" +
                                 self.output()[-3000:])

    def children(self):
        """pid -> cmdline of the processes whose command line names this run directory."""
        out = {}
        for d in os.listdir("/proc"):
            if not d.isdigit() or int(d) == self.proc.pid:
                continue
            try:
                with open(f"/proc/{d}/cmdline", "rb") as f:
                    cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
                with open(f"/proc/{d}/stat") as f:
                    state = f.read().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if self.run_dir in cmd and state != "Z":
                out[int(d)] = cmd
        return out

    def child_pid(self, name):
        for pid, cmd in self.children().items():
            if f"--name {name} " in cmd + " ":
                return pid
        raise AssertionError(f"no process for {name}: {self.children()}")


def chat(port, stream=False):
    body = dict(CHAT, stream=stream)
    if not stream:
        status, _, j = request(port, "POST", "/v1/chat/completions", body, timeout=60)
        assert status == 200, (status, j)
        assert j["choices"][0]["message"]["content"] is not None, j
        assert j["usage"]["completion_tokens"] >= 1, j
        return j
    c = http.client.HTTPConnection(HOST, port, timeout=60)
    try:
        c.request("POST", "/v1/chat/completions", body=json.dumps(body),
                  headers={"Content-Type": "application/json"})
        r = c.getresponse()
        assert r.status == 200, (r.status, r.read())
        events, done = read_sse(r)
    finally:
        c.close()
    assert done and events, events
    return events


def check_ready_banner(up):
    out = up.output()
    assert f"http://127.0.0.1:{up.port}" in out, out[-2000:]
    assert "RANDOM" in out and "MEANINGLESS" in out, "the demo warning is missing"
    assert "curl http://127.0.0.1" in out and "from openai import OpenAI" in out
    assert "import OpenAI from \"openai\"" in out and "Ctrl-C" in out
    mode = os.stat(os.path.join(up.run_dir, "cluster.secret")).st_mode
    assert stat.S_IMODE(mode) == 0o600, oct(mode)
    with open(os.path.join(up.run_dir, "cluster.secret")) as f:
        assert len(f.read().strip()) >= 32


def node_ports(up):
    with open(os.path.join(up.run_dir, "cluster.yaml")) as f:
        text = f.read()
    return [int(p) for p in re.findall(r"^    port: (\d+)$", text, re.M)]


def stop_and_check(up, sig):
    pids = up.children()
    assert len(pids) == 3, pids  # 2 nodes + the gateway
    up.proc.send_signal(sig)
    up.proc.wait(timeout=30)
    gone = wait_for(lambda: not up.children(), 10, step=0.1)
    assert gone, f"left after {signal.Signals(sig).name}: {up.children()}"
    def dead(pid):  # gone, or a zombie; a SIGKILLed process may take a moment to tear down
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
        except OSError:
            return True
    for pid in pids:
        assert wait_for(lambda: dead(pid), 15, step=0.1), f"pid {pid} still alive after {sig}"
    return up.proc.returncode


def test_replica(strata, workdir):
    t0 = time.time()
    up = Up(strata, workdir, "replica", "--nodes", "2")
    try:
        up.wait_output(r"strata up: ready", 150)
        print(f"replica: ready in {time.time() - t0:.1f} s (demo model synthesized first)")
        check_ready_banner(up)
        for port in node_ports(up):
            status, _, h = request(port, "GET", "/health")
            assert status == 200 and h.get("demo") is True and "random" in h["warning"], h
        nodes = [c for c in up.children().values() if " node " in c]
        # Two replicas on one machine share the file's pages instead of a copy each.
        assert len(nodes) == 2 and all("--mmap" in c.split() for c in nodes), nodes
        chat(up.port)
        chat(up.port, stream=True)
        victim = up.child_pid("node-1")
        os.kill(victim, signal.SIGKILL)
        up.wait_output(rf"node-1 \(pid {victim}\) exited with signal 9", 10)
        for _ in range(3):  # the gateway still answers, from node-0 (or node-1 restarted)
            chat(up.port)
        up.wait_output(r"restarting node-1", 10)
        rc = stop_and_check(up, signal.SIGINT)
        assert rc == 0, (rc, up.output()[-2000:])
        assert "stopped" in up.output()
    finally:
        if up.proc.poll() is None:
            up.proc.kill()
    print("replica: ok")


def test_pipeline(strata, workdir):
    up = Up(strata, workdir, "pipeline", "--mode", "pipeline", "--nodes", "2")
    try:
        up.wait_output(r"strata up: ready", 120)
        check_ready_banner(up)
        out = up.output()
        ranges = re.findall(r"node-\d\s+http://127.0.0.1:\d+\s+layers (\d+)-(\d+)", out)
        assert len(ranges) == 2, out[-2000:]
        assert ranges[0][0] == "0" and int(ranges[1][0]) == int(ranges[0][1]) + 1, ranges
        assert int(ranges[1][1]) == 7, ranges  # the demo model's 8 layers
        stages = [c for c in up.children().values() if " node " in c]
        assert stages and not any("--mmap" in c.split() for c in stages), stages  # own layers
        chat(up.port)
        chat(up.port, stream=True)
        victim = up.child_pid("node-1")
        os.kill(victim, signal.SIGKILL)
        up.wait_output(rf"node-1 \(pid {victim}\) exited with signal 9", 10)
        up.wait_output(r"restarting node-1", 10)
        # The restarted stage rejoins the pipeline: requests are answered again.
        ok = wait_for(lambda: request(up.port, "POST", "/v1/chat/completions", CHAT,
                                      timeout=30)[0] == 200, 40, step=0.5)
        assert ok, up.output()[-3000:]
        stop_and_check(up, signal.SIGKILL)  # `up` itself killed: its children die with it
    finally:
        if up.proc.poll() is None:
            up.proc.kill()
    print("pipeline: ok")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--strata", required=True)
    ap.add_argument("--workdir", required=True)
    a = ap.parse_args()
    os.makedirs(a.workdir, exist_ok=True)
    shutil.rmtree(os.path.join(a.workdir, "cache"), ignore_errors=True)  # a first run
    t0 = time.time()
    test_replica(os.path.abspath(a.strata), a.workdir)
    test_pipeline(os.path.abspath(a.strata), a.workdir)
    print(f"up_test: ok ({time.time() - t0:.1f} s)")


if __name__ == "__main__":
    main()
