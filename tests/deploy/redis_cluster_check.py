"""Driver of tests/deploy/test_redis_cluster.sh: a real 3-master Redis Cluster on loopback
(password auth), two gateways sharing their response cache through it in front of one node.
Checks sharing, the spread of keys over the masters, ASK and MOVED during a slot migration, a
killed master (requests still answered, quickly) and its restart (hits again). Every process
it starts is stopped in `finally`."""
import argparse
import functools
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "common"))
import procs  # noqa: E402
from procs import HOST, Proc, free_port, node_args, request, wait_for, write_cluster_yaml  # noqa: E402

PASS = "cluster-test-pass-7f3a"
N_PROMPTS = 24  # enough that all three masters get keys (all on two of three: p < 1e-4)


check = functools.partial(procs.check, fatal=True)  # a failed check ends the script


def cli(port, *args, check_rc=True):
    r = subprocess.run(["redis-cli", "-h", HOST, "-p", str(port), "-a", PASS, "--no-auth-warning",
                        *args], capture_output=True, text=True, timeout=20)
    if check_rc and r.returncode != 0:
        raise RuntimeError(f"redis-cli {args}: {r.stderr}")
    return r.stdout.strip()


class RedisNode:
    def __init__(self, work, i):
        self.port = free_port()
        self.bus_port = free_port()  # default port + 10000 may be taken or beyond 65535
        self.dir = f"{work}/redis{i}"
        os.makedirs(self.dir, exist_ok=True)
        self.proc = None
        self.start()

    def start(self):
        self.log = open(f"{self.dir}/log", "a")
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--cluster-port", str(self.bus_port),
             "--bind", HOST, "--dir", self.dir,
             "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
             "--cluster-node-timeout", "1500", "--cluster-require-full-coverage", "no",
             "--requirepass", PASS, "--masterauth", PASS, "--save", "", "--appendonly", "no"],
            stdout=self.log, stderr=subprocess.STDOUT)
        check(wait_for(lambda: cli(self.port, "PING", check_rc=False) == "PONG", 20),
              f"redis-server :{self.port} answers")

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def keys(self):
        out = cli(self.port, "--scan", "--pattern", "strata:cache:*")
        return set(out.split()) if out else set()

    def node_id(self):
        return cli(self.port, "CLUSTER", "MYID")


def metric(port, name):
    st, _, body = request(port, "GET", "/metrics", timeout=10)
    for line in body.get("_raw", "").splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def ask(port, prompt, max_tokens=4):
    body = {"messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens,
            "temperature": 0}
    t0 = time.monotonic()
    st, h, b = request(port, "POST", "/v1/chat/completions", body, timeout=60)
    return st, h.get("x-cache"), b, time.monotonic() - t0


def make_cluster(work):
    rs = [RedisNode(work, i) for i in range(3)]
    r = subprocess.run(["redis-cli", "-a", PASS, "--no-auth-warning", "--cluster", "create",
                        *[f"{HOST}:{n.port}" for n in rs], "--cluster-replicas", "0",
                        "--cluster-yes"], capture_output=True, text=True, timeout=60)
    check(r.returncode == 0, "redis-cli --cluster create (3 masters, requirepass)")
    check(wait_for(lambda: all("cluster_state:ok" in cli(n.port, "CLUSTER", "INFO") for n in rs), 30, 0.2),
          "cluster_state:ok on every master")
    return rs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--strata", required=True)
    ap.add_argument("--work", required=True)
    a = ap.parse_args()
    work = a.work
    model = f"{work}/tiny.gguf"
    subprocess.run([a.strata, "model", "synth", "--shape", "tiny-qwen2", "--type", "f32",
                    "--out", model], check=True, capture_output=True)
    open(f"{work}/redis.pass", "w").write(PASS + "\n")
    open(f"{work}/cache.key", "w").write("shared-seal-key-for-the-test-0123456789\n")
    rs, procs = [], []
    try:
        rs = make_cluster(work)
        np_ = free_port()
        procs.append(Proc(node_args(a.strata, model, np_, parallel=4), np_, "node"))
        seeds = ", ".join(f"'{HOST}:{n.port}'" for n in rs[:2])
        common = "redis_timeout_ms: 200, redis_retry_ms: 1000, hmac_key_file: cache.key, ttl_s: 600"
        gw_cache = {  # A: a seed list + password file; B: redis_cluster + a URL with user:password
            "gw-a": f"cache: {{redis_nodes: [{seeds}], redis_password_file: redis.pass, {common}}}",
            "gw-b": f"cache: {{redis_cluster: true, redis_url: 'redis://default:{PASS}@{HOST}:{rs[2].port}', {common}}}",
        }
        gws = {}
        for name, cache in gw_cache.items():
            gp = free_port()
            cfg = write_cluster_yaml(f"{work}/{name}.yaml", model, [{"name": "n0", "port": np_}], gp,
                                     "health: {interval_ms: 200, timeout_ms: 500}\n" + cache)
            gws[name] = Proc([a.strata, "gateway", "--config", cfg], gp, name, ready_path="/ready")
            procs.append(gws[name])
        run_checks(rs, gws["gw-a"].port, gws["gw-b"].port)
    finally:
        for p in reversed(procs):
            p.stop()
        for n in rs:
            n.kill()


def run_checks(rs, ga, gb):
    for g in (ga, gb):
        check(metric(g, "strata_gateway_cache_backend_up") == 1, f"gateway :{g} cache backend up")
    prompts = [f"shared cache prompt {i}" for i in range(N_PROMPTS)]
    first = {}
    misses_a = hits_b = 0
    for p in prompts:
        st, xc, body, _ = ask(ga, p)
        misses_a += st == 200 and xc == "MISS"
        first[p] = body
    for p in prompts:
        st, xc, body, _ = ask(gb, p)
        hits_b += st == 200 and xc == "HIT" and body == first[p]
    check(misses_a == N_PROMPTS, f"gateway A: {misses_a}/{N_PROMPTS} misses (stored)")
    check(hits_b == N_PROMPTS, f"gateway B: {hits_b}/{N_PROMPTS} hits with A's answers")
    sizes = [len(n.keys()) for n in rs]
    check(sum(sizes) == N_PROMPTS and all(s > 0 for s in sizes), f"keys on every master: {sizes}")
    migrate_one_slot(rs, ga, gb)
    kill_and_restart(rs, ga, gb, prompts)


def migrate_one_slot(rs, ga, gb):
    """A fresh entry's slot moves from its master to another: B (stale map) gets ASK while the
    slot migrates, A gets MOVED once it has moved; both still hit."""
    before = set().union(*(n.keys() for n in rs))
    st, xc, body, _ = ask(ga, "the migrating prompt")
    new = set().union(*(n.keys() for n in rs)) - before
    check(st == 200 and xc == "MISS" and len(new) == 1, "a new entry stored")
    key = new.pop()
    src = next(n for n in rs if key in n.keys())
    dst = next(n for n in rs if n is not src)
    slot = cli(src.port, "CLUSTER", "KEYSLOT", key)
    src_id, dst_id = src.node_id(), dst.node_id()
    cli(dst.port, "CLUSTER", "SETSLOT", slot, "IMPORTING", src_id)
    cli(src.port, "CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id)
    out = cli(src.port, "MIGRATE", HOST, str(dst.port), "", "0", "5000", "AUTH", PASS, "KEYS", key)
    check(out == "OK" and key in dst.keys(), f"slot {slot}: key migrated :{src.port} -> :{dst.port}")
    r0 = metric(gb, "strata_gateway_cache_redirects_total")
    st, xc, b2, _ = ask(gb, "the migrating prompt")
    check(st == 200 and xc == "HIT" and b2 == body, f"during the migration gateway B hits ({xc})")
    check(metric(gb, "strata_gateway_cache_redirects_total") > r0, "gateway B followed ASK")
    for n in rs:
        cli(n.port, "CLUSTER", "SETSLOT", slot, "NODE", dst_id)
    r0 = metric(ga, "strata_gateway_cache_redirects_total")
    st, xc, b3, _ = ask(ga, "the migrating prompt")
    check(st == 200 and xc == "HIT" and b3 == body, f"after the move gateway A hits ({xc})")
    r1 = metric(ga, "strata_gateway_cache_redirects_total")
    check(r1 > r0, "gateway A followed MOVED (stale slot map)")
    time.sleep(0.6)  # past the refresh rate limit: the map was reloaded
    ask(ga, "the migrating prompt")
    check(metric(ga, "strata_gateway_cache_redirects_total") == r1, "A's slot map is updated: no more redirects")


def kill_and_restart(rs, ga, gb, prompts):
    victim = rs[2]
    victim_keys = len(victim.keys())
    errors0 = metric(ga, "strata_gateway_cache_errors_total")
    victim.kill()
    t0 = time.monotonic()
    results = [ask(ga, p) for p in prompts]
    wall = time.monotonic() - t0
    ok = sum(r[0] == 200 for r in results)
    hits = sum(r[1] == "HIT" for r in results)
    hit_lat = sorted(r[3] for r in results if r[1] == "HIT")
    print(f"     master :{victim.port} killed ({victim_keys} keys): {ok}/{len(prompts)} answered, "
          f"{hits} hits, {len(prompts) - hits} misses/bypasses in {wall:.2f} s; slowest request "
          f"{max(r[3] for r in results) * 1000:.0f} ms, median hit {hit_lat[len(hit_lat) // 2] * 1000:.1f} ms")
    check(ok == len(prompts), "a master down: every request answered")
    check(0 < hits <= len(prompts) - victim_keys, "the other masters still serve hits")
    check(max(r[3] for r in results) < 2.0, "no request waits long on the dead master")
    check(metric(ga, "strata_gateway_cache_errors_total") > errors0, "gateway A counts the cache errors")
    victim.start()
    check(wait_for(lambda: all("cluster_state:ok" in cli(n.port, "CLUSTER", "INFO") for n in rs), 30, 0.2),
          "restarted master rejoined (cluster_state:ok)")
    time.sleep(1.2)  # redis_retry_ms: the gateways try the master again
    for p in prompts:
        ask(ga, p)  # refills the restarted (empty) master
    hits_b = sum(ask(gb, p)[1] == "HIT" for p in prompts)
    check(hits_b == len(prompts) and len(victim.keys()) > 0,
          f"after the restart: {hits_b}/{len(prompts)} hits on B, {len(victim.keys())} keys on the restarted master")
    check(metric(ga, "strata_gateway_cache_backend_up") == 1, "gateway A reports the cache up again")


if __name__ == "__main__":
    main()
