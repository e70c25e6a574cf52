"""ctest `dashboard`: the gateway's dashboard in a real browser (Debian chromium driven by npm
playwright-core, dashboard_test.mjs) against a live cluster (gateway + 2 nodes on a synthesized
tiny model, started with tests/common/procs.py), and the resource warnings of node and gateway.

- open gateway: both nodes shown healthy; a chat in the playground streams the reasoning into
  its collapsible block and the answer apart; kill -9 of one node -> shown unhealthy within the
  health interval; screenshots (wide, narrow, node down) under the workdir.
- gateway with API keys and an admin key: the page asks for the keys, then works.
- resource warnings: thresholds below current use -> warning in the log, /health, /metrics of a
  node and of the gateway; with routing.avoid_memory_pressure the gateway skips that node.

Test-only packages, installed here when missing: Debian `chromium`, npm `playwright-core`
(tests/dashboard/package-lock.json).
"""
import argparse
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "common"))
from procs import (FAILS, FAST_HEALTH, Proc, check, free_port, node_args, request,  # noqa: E402
                   summary, wait_for, write_cluster_yaml)

HEALTH_MS = 300


def ensure_packages():
    if not os.path.exists("/usr/bin/chromium"):
        subprocess.run(["apt-get", "install", "-y", "chromium"], check=True,
                       stdout=subprocess.DEVNULL)
    if not os.path.isdir(os.path.join(HERE, "node_modules", "playwright-core")):
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=HERE, check=True)


def closing_model(strata, work):
    """A synthesized tiny R1-style model whose output row of `</think>` is scaled up, so that
    its (random) reasoning ends after some tokens and an answer follows, as a real R1 model's
    does. The node and its reasoning split are unchanged."""
    path = os.path.join(work, "dash-tiny.gguf")
    if os.path.exists(path):
        return path
    raw = path + ".raw"
    subprocess.run([strata, "model", "synth", "--shape", "tiny-qwen2", "--type", "f32", "--out",
                    raw], check=True, capture_output=True)
    info = subprocess.run([strata, "inspect", raw], check=True, capture_output=True, text=True).stdout
    data = int(re.search(r"data at (\d+)", info).group(1))
    m = re.search(r"^\s*output\.weight\s+F32\s+\[(\d+), (\d+)\] offset (\d+)", info, re.M)
    n_embd, offset = int(m.group(1)), int(m.group(3))
    tok = json.loads(subprocess.run([strata, "tokenize", "--model", raw, "--text", "</think>"],
                                    check=True, capture_output=True, text=True).stdout)
    assert len(tok) == 1, tok
    with open(raw, "r+b") as f:
        pos = data + offset + tok[0] * n_embd * 4
        f.seek(pos)
        row = struct.unpack(f"<{n_embd}f", f.read(n_embd * 4))
        f.seek(pos)
        f.write(struct.pack(f"<{n_embd}f", *[x * 3.0 for x in row]))
    os.replace(raw, path)
    return path


def start_gateway(strata, work, name, model, nodes, extra_yaml=""):
    port = free_port()
    cfg = write_cluster_yaml(os.path.join(work, name + ".yaml"), model, nodes, port,
                             FAST_HEALTH.replace("interval_ms: 100", f"interval_ms: {HEALTH_MS}")
                             + extra_yaml)
    return Proc([strata, "gateway", "--config", cfg], port, "gateway " + name)


def run_browser(cfg, nodes):
    """Runs dashboard_test.mjs; serves its KILL requests."""
    p = subprocess.Popen(["node", os.path.join(HERE, "dashboard_test.mjs"), json.dumps(cfg)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
    for line in p.stdout:
        line = line.rstrip("\n")
        if line.startswith("KILL "):
            nodes[line[5:]].kill()
            p.stdin.write("OK\n")
            p.stdin.flush()
            continue
        print("  [browser] " + line, flush=True)
        if line.startswith("not ok - "):
            FAILS.append("browser: " + line[9:])
    rc = p.wait(timeout=120)
    check(rc == 0, f"browser scenario {cfg['scenario']} exits 0 ({rc})")


def metric(port, name, headers=None):
    text = request(port, "GET", "/metrics", headers=headers)[2].get("_raw", "")
    m = re.search("^" + re.escape(name) + r" (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


def test_resource_warnings(strata, work, model, n0):
    """Thresholds below the current use: warning in the log, /health and /metrics of a node and
    of the gateway; the gateway avoids the node under memory pressure."""
    hot_port = free_port()
    hot = Proc(node_args(strata, model, hot_port, "--warn-memory-percent", "1",
                         "--resource-interval-ms", "200"), hot_port, "hot node")
    try:
        ok = wait_for(lambda: "memory" in request(hot_port, "GET", "/health")[2]
                      .get("resources", {}).get("warnings", []), 5)
        h = request(hot_port, "GET", "/health")[2].get("resources", {})
        check(ok and h.get("memory_pressure") is True and h.get("thresholds", {}).get("memory") == 1,
              f"node /health: resources.warnings has memory ({h.get('warnings')})")
        check(metric(hot_port, 'strata_resource_warning{resource="memory"}') == 1,
              "node /metrics: strata_resource_warning{resource=\"memory\"} 1")
        for name in ("strata_host_cpu_percent", "strata_host_memory_percent",
                     "strata_host_disk_percent", "strata_process_resident_bytes"):
            v = metric(hot_port, name)
            check(v is not None and v >= 0, f"node /metrics: {name} = {v}")
        check(re.search(r"resource warning: .*resource=memory .*threshold=1\.0", hot.output()) is not None,
              "node log: one structured memory warning")
        check(hot.output().count("resource=memory") == 1, "node log: the warning is logged once per crossing")
        # Normal thresholds on n0: no memory warning there.
        check(metric(n0[1], 'strata_resource_warning{resource="memory"}') == 0,
              "a node with the default 90% threshold shows no memory warning")
        gw = start_gateway(strata, work, "res", model, [{"name": "n0", "port": n0[1]},
                                                         {"name": "hot", "port": hot_port}],
                           "resources: {warn_memory_percent: 1, interval_ms: 200}\n"
                           "routing: {policy: round_robin, avoid_memory_pressure: true}\n")
        try:
            gp = gw.port
            gh = request(gp, "GET", "/health")[2].get("resources", {})
            check("memory" in gh.get("warnings", []), f"gateway /health: resources.warnings has memory ({gh.get('warnings')})")
            check(metric(gp, 'strata_resource_warning{resource="memory"}') == 1,
                  "gateway /metrics: strata_resource_warning{resource=\"memory\"} 1")
            check("resource=memory" in gw.output(), "gateway log: structured memory warning")
            wait_for(lambda: request(gp, "GET", "/api/cluster")[2]["healthy_backends"] == 2, 10)
            ok = wait_for(lambda: metric(gp, 'strata_gateway_backend_memory_pressure{backend="hot"}') == 1, 5)
            check(ok, "gateway /metrics: the node's memory pressure (strata_gateway_backend_memory_pressure)")
            served = set()
            for _ in range(6):
                st, hd, _ = request(gp, "POST", "/v1/completions", {"prompt": "hi", "max_tokens": 2})
                served.add(hd.get("x-strata-backend"))
            check(served == {"n0"}, f"avoid_memory_pressure: new work goes to the other node ({served})")
            ev = request(gp, "GET", "/api/dashboard")[2].get("events", [])
            check(any(e["kind"] == "memory_pressure" and e["backend"] == "hot" for e in ev),
                  "the dashboard's events list the node's memory pressure")
        finally:
            gw.stop()
    finally:
        hot.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--strata", required=True)
    ap.add_argument("--workdir", required=True)
    a = ap.parse_args()
    a.workdir = os.path.abspath(a.workdir)
    os.makedirs(a.workdir, exist_ok=True)
    shots = os.path.join(a.workdir, "screenshots")
    shutil.rmtree(shots, ignore_errors=True)
    os.makedirs(shots)
    t0 = time.time()
    ensure_packages()
    model = closing_model(a.strata, a.workdir)
    ports = {"n0": free_port(), "n1": free_port()}
    nodes = {n: Proc(node_args(a.strata, model, p), p, n) for n, p in ports.items()}
    gws = []
    try:
        node_list = [{"name": n, "port": p} for n, p in ports.items()]
        gw = start_gateway(a.strata, a.workdir, "open", model, node_list)
        gws.append(gw)
        run_browser({"url": f"http://127.0.0.1:{gw.port}", "scenario": "open", "shots": shots,
                     "unhealthy_within_ms": HEALTH_MS * 2 + 1000 + 500}, nodes)
        nodes["n1"].start()
        keyed = start_gateway(a.strata, a.workdir, "keys", model, node_list,
                              "admin_key: dash-admin-secret\n"
                              "api_keys:\n  - {key: dash-user-secret, name: tester}\n")
        gws.append(keyed)
        check(request(keyed.port, "GET", "/api/dashboard")[0] == 401, "/api/dashboard needs the admin key")
        check(request(keyed.port, "GET", "/")[0] == 200, "the page itself is open (nothing secret in it)")
        run_browser({"url": f"http://127.0.0.1:{keyed.port}", "scenario": "auth", "shots": shots,
                     "admin_key": "dash-admin-secret", "api_key": "dash-user-secret"}, nodes)
        test_resource_warnings(a.strata, a.workdir, model, ("n0", ports["n0"]))
    finally:
        for g in gws:
            g.stop()
        for n in nodes.values():
            n.stop()
    print(f"screenshots: {shots}  ({time.time() - t0:.1f} s)")
    sys.exit(summary("dashboard"))


if __name__ == "__main__":
    main()
