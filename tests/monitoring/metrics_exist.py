#!/usr/bin/env python3
"""Every metric that deploy/monitoring's Grafana dashboard and alert rules query must exist on a
live `strata gateway` or `strata node` (real processes on loopback, synthesized tiny model).

usage: metrics_exist.py --strata PATH --workdir DIR [--pending m1,m2,...]

--pending names metrics another branch is adding (issue 14's resource monitoring): when one is
missing it is reported as MISSING (pending) without failing; present, it is checked as any other.
"""
import json
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common"))
from procs import FAST_HEALTH, Proc, free_port, node_args, request, test_args  # noqa: E402
from procs import write_cluster_yaml  # noqa: E402

MON = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "deploy", "monitoring")
NAME = re.compile(r"\b((?:strata|process)_[a-zA-Z0-9_]+)")


def queried_metrics():
    """{metric: [where used]} from the Grafana panels' and the alert rules' expressions."""
    used = {}
    with open(os.path.join(MON, "grafana-dashboard.json")) as f:
        dash = json.load(f)
    assert dash.get("panels"), "dashboard has no panels"
    for p in dash["panels"]:
        assert p.get("targets"), f"panel {p.get('title')} has no query"
        for t in p["targets"]:
            for m in NAME.findall(t["expr"]):
                used.setdefault(m, []).append("grafana: " + p["title"])
    with open(os.path.join(MON, "alerts.yml")) as f:
        rule = None
        for line in f:
            s = line.strip()
            if s.startswith("- alert:"):
                rule = s.split(":", 1)[1].strip()
            elif rule and not s.startswith(("summary:", "description:")):
                for m in NAME.findall(s):
                    used.setdefault(m, []).append("alert: " + rule)
    return used


def exposed(port):
    st, _, body = request(port, "GET", "/metrics")
    assert st == 200, f"/metrics on {port}: {st}"
    names = set()
    for line in body["_raw"].splitlines():
        if line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, 1)[0])
    return names


def main():
    a, work = test_args("strata-metrics-", lambda ap: ap.add_argument("--pending", default=""))
    pending = {m for m in a.pending.split(",") if m}
    used = queried_metrics()
    model = os.path.join(work, "model.gguf")
    subprocess.run([a.strata, "model", "synth", "--shape", "tiny-qwen2", "--type", "f32", "--layers", "2",
                    "--out", model], check=True, capture_output=True)
    ports = [free_port(), free_port()]
    nodes = [Proc(node_args(a.strata, model, p), p, f"node{i}") for i, p in enumerate(ports)]
    gport = free_port()
    cfg = write_cluster_yaml(os.path.join(work, "cluster.yaml"), model,
                             [{"name": f"n{i}", "port": p} for i, p in enumerate(ports)], gport, FAST_HEALTH)
    gw = Proc([a.strata, "gateway", "--config", cfg], gport, "gateway", ready_path="/ready")
    try:
        # One streamed request so that every histogram has observations.
        st, _, _ = request(gport, "POST", "/v1/completions",
                           {"prompt": "hello", "max_tokens": 4, "temperature": 0})
        assert st == 200, st
        have = exposed(gport) | exposed(ports[0]) | exposed(ports[1])
    finally:
        gw.stop()
        for n in nodes:
            n.stop()
    fails = 0
    for m in sorted(used):
        where = "; ".join(sorted(set(used[m])))
        if m in have:
            print(f"ok      {m}")
        elif m in pending:
            print(f"MISSING {m} (pending: issue 14 resource monitoring, dash branch) <- {where}")
        else:
            print(f"MISSING {m} <- {where}")
            fails += 1
    print(f"{len(used)} metrics queried, {fails} missing")
    sys.exit(1 if fails else 0)


if __name__ == "__main__":
    main()
