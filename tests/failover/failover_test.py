#!/usr/bin/env python3
"""A pipeline stage's death loses no request (issue 17): real `strata node` processes (replica,
2-stage pipelines) and a gateway on loopback with a synthesized tiny model.

A. Gateway + one replica + one 2-stage pipeline: `kill -9` of the tail, then of the head, in the
   middle of streams served by the pipeline (chat greedy, chat seeded, completions), then 8
   concurrent streams with the tail killed under them: every stream completes identical to the
   undisturbed run, with one stream id and no error event.
B. A pipeline alone: the tail killed mid-stream and restarted after 2 s -> the in-flight
   requests finish identical (the head replays them into the re-formed pipeline); restarted
   after the grace period -> they end with an error event within grace + 1 s.

usage: failover_test.py --strata PATH [--workdir DIR]
"""
import http.client
import json
import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common"))
from sse import read_sse, stream_texts  # noqa: E402
import procs  # noqa: E402
from procs import check, free_port, request, summary, wait_for  # noqa: E402

SECRET = "failover-test-secret-" + "0123456789abcdef" * 4  # >= 32 bytes


class Proc(procs.Proc):
    """A strata process with the pipeline's cluster secret in its environment."""

    def __init__(self, args, port, name, wait=True):
        super().__init__(args, port, name, env={"STRATA_CLUSTER_SECRET": SECRET}, wait=wait)


def node_args(strata, model, port, *extra):
    return procs.node_args(strata, model, port, *extra, parallel=8, ctx=1024)


class Pipeline:
    """A 2-stage pipeline: head (layers 0-2, HTTP) -> tail (layers 3-5)."""

    def __init__(self, strata, model, grace_ms):
        self.tail_port, self.stage_port, self.port = free_port(), free_port(), free_port()
        self.tail = Proc(node_args(strata, model, self.tail_port, "--layers", "3-5",
                                   "--stage-port", str(self.stage_port)), self.tail_port, "tail")
        self.head = Proc(node_args(strata, model, self.port, "--layers", "0-2", "--next",
                                   f"127.0.0.1:{self.stage_port}", "--stage-grace-ms",
                                   str(grace_ms)), self.port, "head")

    def stop(self):
        self.head.stop()
        self.tail.stop()


def stream(port, path, body, headers=None, on_event=None):
    """(backend header, events, saw_done)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    h = {"Content-Type": "application/json"}
    h.update(headers or {})
    c.request("POST", path, body=json.dumps(dict(body, stream=True)).encode(), headers=h)
    r = c.getresponse()
    if r.status != 200:
        return None, [{"error": {"status": r.status, "body": r.read().decode(errors="replace")}}], False
    backend = r.getheader("X-Strata-Backend")
    events, done = read_sse(r, on_event, strict=False)
    c.close()
    return backend, events, done


def run_concurrently(jobs):
    """jobs: list of callables; returns their results (or exceptions) in order."""
    return procs.map_parallel(lambda i: jobs[i](), len(jobs))[0]


CHAT = "/v1/chat/completions"
COMPL = "/v1/completions"
CASES = [
    ("chat greedy", CHAT, {"messages": [{"role": "user", "content": "Tell me a long story"}],
                           "max_tokens": 300, "temperature": 0, "ignore_eos": True}),
    ("chat seeded", CHAT, {"messages": [{"role": "user", "content": "Tell me another story"}],
                           "max_tokens": 300, "temperature": 0.8, "seed": 31337, "top_k": 0,
                           "presence_penalty": 0.2, "ignore_eos": True}),
    ("completions", COMPL, {"prompt": "The story goes", "max_tokens": 300, "temperature": 0,
                            "ignore_eos": True}),
]


def metric(port, name):
    """Sum of a metric's samples whose line starts with `name` (labels included in name)."""
    _, _, m = request(port, "GET", "/metrics")
    total = 0.0
    for line in m["_raw"].splitlines():
        if line.startswith(name) and not line.startswith("#"):
            total += float(line.split()[-1])
    return total


def kill_mid_streams(gp, cases, headers, victim, at=5):
    """Streams `cases` at once through `gp`, kills `victim` once every stream has `at` events
    (so each is mid-stream); returns [(backend, events, done)] and whether the kill happened."""
    killed = threading.Event()
    lock = threading.Lock()
    counts = [0] * len(cases)

    def on_event(i, evs):
        with lock:
            counts[i] = len(evs)
            if min(counts) >= at and not killed.is_set():
                victim.kill()
                killed.set()
    jobs = [lambda i=i, p=p, b=b: stream(gp, p, b, headers, lambda evs, i=i: on_event(i, evs))
            for i, (_, p, b) in enumerate(cases)]
    return run_concurrently(jobs), killed.is_set()


def check_streams(what, cases, results, refs):
    ok = 0
    for (name, _, _), res, ref in zip(cases, results, refs):
        if not isinstance(res, tuple) or len(res) != 3:  # an exception
            check(False, f"{what}: {name}: {res}")
            continue
        backend, evs, done = res
        errors = [e for e in evs if "error" in e]
        same = stream_texts(evs) == ref
        ids = {e.get("id") for e in evs if "id" in e}
        good = done and same and not errors and len(ids) == 1
        ok += good
        if not good:
            got, want = stream_texts(evs), ref
            check(False, f"{what}: {name}: done={done} identical={same} errors={errors[:1]} "
                         f"ids={len(ids)} ({len(got[1])} vs {len(want[1])} chars, backend {backend})")
    check(ok == len(cases), f"{what}: {ok}/{len(cases)} streams complete identical to the undisturbed "
                            "run, one stream id, no error event")


def gateway_yaml(work, gport, replica_port, pipe):
    cfg = os.path.join(work, "failover.yaml")
    with open(cfg, "w") as f:
        f.write(f"""model:
  path: model.gguf
nodes:
  - name: r
    port: {replica_port}
  - name: h
    port: {pipe.port}
    next: t
  - name: t
    port: {pipe.tail_port}
    stage_port: {pipe.stage_port}
gateway:
  listen: 127.0.0.1:{gport}
  routing: {{policy: affinity, affinity_min_load: 1000}}
  health: {{interval_ms: 100, timeout_ms: 500, unhealthy_threshold: 1, healthy_threshold: 1}}
  circuit_breaker: {{failure_threshold: 100, open_ms: 300}}
  retry: {{max_attempts: 3, backoff_ms: 5, max_backoff_ms: 20, unavailable_timeout_ms: 5000}}
""")
    return cfg


def cluster_backend(gp, name):
    _, _, j = request(gp, "GET", "/api/cluster")
    return next((b for b in j.get("backends", []) if b["name"] == name), {})


def test_gateway(strata, work, model, replica, refs):
    pipe = Pipeline(strata, model, grace_ms=1000)
    gport = free_port()
    gw = None
    try:
        gw = Proc([strata, "gateway", "--config", gateway_yaml(work, gport, replica.port, pipe)],
                  gport, "gateway")
        check(wait_for(lambda: request(gport, "GET", "/api/cluster")[2].get("healthy_backends") == 2, 10),
              "gateway: replica and pipeline healthy")
        h = cluster_backend(gport, "h")
        stages = h.get("stages", [])
        check(h.get("mode") == "pipeline" and len(stages) == 2 and
              [s.get("layers") for s in stages] == ["0-2", "3-5"] and
              all(s.get("state") == "up" for s in stages),
              f"/api/cluster shows the pipeline's stages ({h.get('mode')}, {stages})")
        check(cluster_backend(gport, "r").get("mode") == "replica", "/api/cluster: r is a replica")
        # A session id that the affinity ring gives to the pipeline.
        session = None
        for i in range(64):
            st, hd, _ = request(gport, "POST", COMPL, {"prompt": "x", "max_tokens": 1},
                                {"X-Session-Id": f"s{i}"})
            if st == 200 and hd.get("x-strata-backend") == "h":
                session = {"X-Session-Id": f"s{i}"}
                break
        check(session is not None, "a session routed to the pipeline")
        if session is None:
            return
        # kill -9 of the tail (not restarted in time: the head's grace ends, it ends the streams
        # with a retryable error event, the gateway continues them on the replica), then of the
        # head (broken streams). The seeded stream runs alone: a replica batching several
        # continuations evaluates their rows together, which rounds differently from one row
        # at a time (greedy output does not notice, seeded sampling would).
        for victim, cause in (("tail", "error_event"), ("head", "stream_broken")):
            metric_name = f'strata_gateway_failovers_by_cause_total{{cause="{cause}"}}'
            before = metric(gport, metric_name)
            for group in ([CASES[0], CASES[2]], [CASES[1]]):
                names = ", ".join(n for n, _, _ in group)
                proc = getattr(pipe, victim)
                results, killed = kill_mid_streams(gport, group, session, proc)
                check(killed and all(isinstance(r, tuple) and r[0] == "h" for r in results),
                      f"{victim} kill ({names}): served by the pipeline, {victim} killed mid-stream")
                check_streams(f"{victim} kill", group, results, [refs[n] for n, _, _ in group])
                if victim == "tail" and len(group) == 2:
                    check(wait_for(lambda: any(s.get("state") == "down" for s in
                                               cluster_backend(gport, "h").get("stages", [])), 5),
                          "/api/cluster shows the dead stage down")
                proc.start()
                check(wait_for(lambda: cluster_backend(gport, "h").get("state") == "healthy", 10),
                      f"pipeline healthy again after the {victim}'s restart")
            after = metric(gport, metric_name)
            check(after - before >= 3, f"{victim} kill: failovers counted as {cause} ({after - before:.0f})")

        # 3. 8 concurrent streams, the tail killed under them.
        cases8 = [(f"stream {i}", COMPL, {"prompt": f"Story number {i} begins", "max_tokens": 200,
                                          "temperature": 0, "ignore_eos": True}) for i in range(8)]
        results, killed = kill_mid_streams(gport, cases8, session, pipe.tail)
        check(killed and sum(isinstance(r, tuple) and r[0] == "h" for r in results) == 8,
              "8 streams: all served by the pipeline, the tail killed mid-stream")
        check_streams("8 concurrent, tail killed", cases8, results, [refs[n] for n, _, _ in cases8])
    finally:
        if gw:
            gw.stop()
        pipe.stop()


class Victim:
    """kill() kills the process at `at[0]` and, when restart_after is set, starts it again then."""

    def __init__(self, proc, restart_after=None):
        self.proc, self.restart_after, self.at = proc, restart_after, []

    def kill(self):
        self.proc.kill()
        self.at.append(time.time())
        if self.restart_after is not None:
            threading.Timer(self.restart_after, lambda: self.proc.start(wait=False)).start()


def test_replay_restart(strata, model, refs):
    cases = [CASES[1], CASES[2]]
    pipe = Pipeline(strata, model, grace_ms=10000)
    try:
        victim = Victim(pipe.tail, restart_after=2.0)
        t0 = time.time()
        # Late enough that each replay re-evaluates dozens of generated ids.
        results, killed = kill_mid_streams(pipe.port, cases, {}, victim, at=30)
        dt = time.time() - t0
        check(killed, "replay: the tail was killed mid-stream")
        check_streams("replay (tail back after 2 s)", cases, results, [refs[n] for n, _, _ in cases])
        check(dt < 15, f"replay: the streams paused, never hung ({dt:.1f} s in all)")
        replays = metric(pipe.port, "strata_pipeline_replays_total")
        tokens = metric(pipe.port, "strata_pipeline_replayed_tokens_total")
        secs = metric(pipe.port, "strata_pipeline_replay_seconds_total")
        check(replays >= 2 and tokens >= 2 * 25 and secs > 0,
              f"replay metrics on the head ({replays:.0f} replays, {tokens:.0f} tokens, {secs:.2f} s)")
        time.sleep(0.5)
        pipe.tail.wait_ready()
    finally:
        pipe.stop()

    grace = 3.0
    pipe = Pipeline(strata, model, grace_ms=int(grace * 1000))
    try:
        victim = Victim(pipe.tail)
        results, killed = kill_mid_streams(pipe.port, cases, {}, victim)
        late = time.time() - victim.at[0] if victim.at else 99
        check(killed, "past grace: the tail was killed mid-stream")
        for (name, _, _), res in zip(cases, results):
            evs = res[1] if isinstance(res, tuple) else []
            errs = [e for e in evs if "error" in e]
            code = errs[0]["error"].get("code") if errs else None
            check(errs and code == "pipeline_stage_failed" and late < grace + 1,
                  f"past grace: {name} ends with a retryable error event ({code}), the streams "
                  f"{late:.2f} s after the kill (grace {grace:.0f} s)")
        st, _, j = request(pipe.port, "POST", COMPL, {"prompt": "abc", "max_tokens": 4})
        check(st == 502 and j.get("error", {}).get("code") == "pipeline_stage_failed",
              f"non-streamed request while the tail is down: 502 pipeline_stage_failed ({st})")
        pipe.tail.start()
        check(wait_for(lambda: request(pipe.port, "GET", "/health")[2].get("next_connected") is True, 10),
              "the head reconnects to the restarted tail")
        b = CASES[2][2]
        st, _, j = request(pipe.port, "POST", COMPL, dict(b, max_tokens=40))
        check(st == 200 and j["choices"][0]["text"] == refs["completions"][1][:len(j["choices"][0]["text"])],
              "after the restart the pipeline serves identical output")
        # A head stopped while it waits for a dead stage does not wait out the grace period.
        pipe.tail.kill()
        t = threading.Thread(target=lambda: stream(pipe.port, COMPL, CASES[2][2]))
        t.start()
        time.sleep(0.5)
        t0 = time.time()
        pipe.head.proc.terminate()
        try:
            rc = pipe.head.proc.wait(10)
        except subprocess.TimeoutExpired:
            rc = "timeout"
        dt = time.time() - t0
        t.join()
        check(rc == 0 and dt < grace, f"a head stopped during an outage exits at once (exit {rc}, {dt:.2f} s)")
    finally:
        pipe.stop()


def main():
    a, work = procs.test_args("strata_failover_test_")
    model = procs.synth_model(a.strata, os.path.join(work, "model.gguf"), "f32", "--layers", "6")
    t0 = time.time()
    rport = free_port()
    replica = Proc(node_args(a.strata, model, rport), rport, "replica")
    try:
        refs = {}
        cases8 = [(f"stream {i}", COMPL, {"prompt": f"Story number {i} begins", "max_tokens": 200,
                                          "temperature": 0, "ignore_eos": True}) for i in range(8)]
        for name, path, body in CASES + cases8:
            _, evs, done = stream(rport, path, body)
            refs[name] = stream_texts(evs)
            assert done and len(refs[name][0]) + len(refs[name][1]) > 100, (name, refs[name])
        test_gateway(a.strata, work, model, replica, refs)
        test_replay_restart(a.strata, model, refs)
    finally:
        replica.stop()
    print(f"{time.time() - t0:.1f} s")
    sys.exit(summary("failover"))


if __name__ == "__main__":
    main()
