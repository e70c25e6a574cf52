"""Clients of tests/deploy/test_ssh.sh, run from outside the simulated hosts.

  client.py chat HOST PORT            one chat request through the gateway (exit 0 when answered)
  client.py load HOST PORT OUT        4 clients send requests until OUT.stop exists and at least
                                      240 were sent (bounded: 5000 requests, 900 s); writes
                                      {"ok", "failed", "errors", "seconds"} to OUT
"""
import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "common"))
import procs  # noqa: E402


def chat(port, content="hi", max_tokens=4, timeout=60):
    st, _, body = procs.request(port, "POST", "/v1/chat/completions", {
        "model": "tiny", "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": content}]}, timeout=timeout)
    ok = st == 200 and body["choices"][0]["message"] is not None
    return ok, body if ok else f"{st} {body}"


def load(port, out, workers=4, minimum=240):
    stop = out + ".stop"
    res = {"ok": 0, "failed": 0, "errors": []}
    lock, count, t0 = threading.Lock(), iter(range(5000)), time.time()

    def worker():
        for i in count:
            if (os.path.exists(stop) and i >= minimum) or time.time() - t0 > 900:
                break
            try:
                good, body = chat(port, f"count {i}", max_tokens=8, timeout=30)
                err = None if good else body
            except Exception as e:  # a refused or broken connection is a failed request
                good, err = False, repr(e)
            with lock:
                res["ok" if good else "failed"] += 1
                if err:
                    res["errors"].append(str(err)[:200])
            time.sleep(0.05)

    ts = [threading.Thread(target=worker) for _ in range(workers)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    res["seconds"] = round(time.time() - t0, 1)
    with open(out, "w") as f:
        json.dump(res, f)


def main():
    mode, procs.HOST, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if mode == "chat":
        ok, body = chat(port)
        print("chat ok:" if ok else "chat FAILED:", body["usage"] if ok else body)
        sys.exit(0 if ok else 1)
    load(port, sys.argv[4])


if __name__ == "__main__":
    main()
