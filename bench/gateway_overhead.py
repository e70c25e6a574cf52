#!/usr/bin/env python3
"""Latency added by one or more gateways over calling the node directly, measured together.

Sends rounds of sequential 1-token completions (keep-alive clients, stdlib only): each round
sends the same fresh prompt to the node and to every gateway URL, in a rotating order so that
drift and ordering effects cancel. Reports, per gateway, the median of the per-round
differences gateway - node. Measuring several gateways (e.g. an old and a new build in front
of the same node) in the same rounds compares them under the same machine noise.

  python3 bench/gateway_overhead.py --node http://127.0.0.1:9001 \\
      --gateway old=http://127.0.0.1:8080 --gateway new=http://127.0.0.1:8081 -m 300
bench/gateway_bench.sh runs the usual setup (one node, one gateway) with gateway_load.py.
"""
import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gateway_load import KeepAliveClient  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--node", required=True, help="the node's base URL")
    ap.add_argument("--gateway", action="append", required=True, help="NAME=URL (repeatable)")
    ap.add_argument("-m", type=int, default=300, help="rounds (default 300)")
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--endpoint", default="/v1/completions")
    a = ap.parse_args()
    names = ["node"] + [g.split("=", 1)[0] for g in a.gateway]
    clients = [KeepAliveClient(a.node, "", False)] + [
        KeepAliveClient(g.split("=", 1)[1], "", False) for g in a.gateway]
    lat = {n: [] for n in names}
    diffs = {n: [] for n in names[1:]}
    errors = 0
    nonce = int(time.time())
    for i in range(-a.warmup, a.m):
        body = json.dumps({"prompt": f"{nonce}-{i} Tell me a story.", "max_tokens": 1,
                           "temperature": 0}).encode()
        got = {}
        for k in range(len(names)):  # rotating order
            j = (i + k) % len(names)
            status, _, dt = clients[j].post(a.endpoint, body)
            if status == 200:
                got[names[j]] = dt
        if i < 0:
            continue
        if len(got) != len(names):
            errors += 1
            continue
        for n in names:
            lat[n].append(got[n])
        for n in names[1:]:
            diffs[n].append(got[n] - got["node"])
    print(f"{a.m} rounds of {len(names)} sequential 1-token requests ({a.endpoint}), "
          f"{errors} with errors")
    for n in names:
        print(f"  {n:<10} median {statistics.median(lat[n]) * 1000:8.3f} ms")
    for n in names[1:]:
        print(f"  {n:<10} added: median per round {statistics.median(diffs[n]) * 1000:+.3f} ms")
    return 0 if errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
