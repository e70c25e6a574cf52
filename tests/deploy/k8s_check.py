"""Driver of tests/deploy/test_k8s.sh: reads the rendered overlays (JSON written by
k8s_validate.mjs) and the binary side by side — flags in args against `strata node|gateway
--help`, ports, Services, selectors, mounts, secrets, cluster.yaml against the args — then
starts a real node and gateway with the manifests' args and hits their probe paths."""
import argparse
import importlib
import json
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "common"))
procs = importlib.import_module("procs")
check = procs.check


def help_flags(strata, sub):
    out = subprocess.run([strata, sub, "--help"], capture_output=True, text=True).stdout
    return set(re.findall(r"(--[a-z][a-z0-9-]*)", out))


def load_yaml(text):
    """cluster.yaml text -> dict: PyYAML when present, else the npm `yaml` package."""
    try:
        import yaml  # noqa: PLC0415
        return yaml.safe_load(text)
    except ImportError:
        mod = os.environ["K8S_VALIDATE_MODULES"]
        js = ("const Y=require(process.env.M+'/yaml');let s='';process.stdin.on('data',d=>s+=d);"
              "process.stdin.on('end',()=>console.log(JSON.stringify(Y.parse(s))))")
        r = subprocess.run(["node", "-e", js], input=text, capture_output=True, text=True,
                           env=dict(os.environ, M=mod), check=True)
        return json.loads(r.stdout)


def arg_value(args, flag):
    return args[args.index(flag) + 1] if flag in args else None


class Overlay:
    def __init__(self, name, objects):
        self.name = name
        self.objs = objects
        self.by_kind = {}
        for o in objects:
            self.by_kind.setdefault(o["kind"], []).append(o)
        cms = self.by_kind.get("ConfigMap", [])
        self.cluster = load_yaml(cms[0]["data"]["cluster.yaml"]) if cms else {}
        self.secret_keys = set()
        for s in self.by_kind.get("Secret", []):
            self.secret_keys |= set((s.get("stringData") or {}).keys()) | set((s.get("data") or {}).keys())

    def kind(self, k):
        return self.by_kind.get(k, [])


def matches(selector, labels):
    return all(labels.get(k) == v for k, v in selector.items())


def check_overlay(ov, node_flags, gw_flags):
    n = ov.name
    services = {s["metadata"]["name"]: s for s in ov.kind("Service")}
    deps = ov.kind("Deployment")
    check(deps and services, f"{n}: has Deployments and Services")
    cm_names = {c["metadata"]["name"] for c in ov.kind("ConfigMap")}
    node_by_host = {nd["host"]: nd for nd in ov.cluster.get("nodes", [])}
    model_path = ov.cluster["model"]["path"]
    for d in deps:
        dn = d["metadata"]["name"]
        pod = d["spec"]["template"]
        check(matches(d["spec"]["selector"]["matchLabels"], pod["metadata"]["labels"]),
              f"{n}/{dn}: selector matches the pod labels")
        vols = {v["name"]: v for v in pod["spec"].get("volumes", [])}
        for v in vols.values():
            if "configMap" in v:
                check(v["configMap"]["name"] in cm_names, f"{n}/{dn}: ConfigMap {v['configMap']['name']} exists")
            if "secret" in v:
                check(v["secret"]["secretName"] in {s["metadata"]["name"] for s in ov.kind("Secret")},
                      f"{n}/{dn}: Secret {v['secret']['secretName']} exists")
        for c in pod["spec"]["containers"]:
            args = c["args"]
            role = args[0]
            flags = node_flags if role == "node" else gw_flags
            used = [a for a in args if a.startswith("--")]
            unknown = [a for a in used if a not in flags]
            check(role in ("node", "gateway") and not unknown,
                  f"{n}/{dn}: `strata {role}` knows every flag in args {unknown or ''}")
            ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
            mounts = [m["mountPath"] for m in c.get("volumeMounts", [])]
            check(all(m["name"] in vols for m in c.get("volumeMounts", [])), f"{n}/{dn}: mounts name volumes")
            for a in args:  # files the args point at are mounted, secrets have the key
                if a.startswith("/etc/strata/secrets/"):
                    check(a.split("/")[-1] in ov.secret_keys, f"{n}/{dn}: secret key {a.split('/')[-1]} exists")
            if role == "node":
                check_node(ov, dn, d, c, args, ports, mounts, services, node_by_host, model_path)
            else:
                check_gateway(ov, dn, c, args, ports, mounts)
    for s in services.values():
        sel = s["spec"]["selector"]
        targets = [d for d in deps if matches(sel, d["spec"]["template"]["metadata"]["labels"])]
        check(len(targets) == 1, f"{n}: Service {s['metadata']['name']} selects one Deployment")
        for p in s["spec"]["ports"]:
            names = {q["name"] for t in targets for c in t["spec"]["template"]["spec"]["containers"]
                     for q in c.get("ports", [])}
            check(p["targetPort"] in names, f"{n}: Service {s['metadata']['name']} port {p['port']} -> named container port {p['targetPort']}")
    for pdb in ov.kind("PodDisruptionBudget"):
        sel = pdb["spec"]["selector"]["matchLabels"]
        check(any(matches(sel, d["spec"]["template"]["metadata"]["labels"]) for d in deps),
              f"{n}: PDB {pdb['metadata']['name']} selects pods")
    for h in ov.kind("HorizontalPodAutoscaler"):
        ref = h["spec"]["scaleTargetRef"]["name"]
        check(any(d["metadata"]["name"] == ref for d in deps), f"{n}: HPA targets Deployment {ref}")


def check_node(ov, dn, d, c, args, ports, mounts, services, node_by_host, model_path):
    n = ov.name
    check(str(ports.get("http")) == arg_value(args, "--port"), f"{n}/{dn}: containerPort http == --port")
    if "--stage-port" in args:
        check(str(ports.get("stage")) == arg_value(args, "--stage-port"), f"{n}/{dn}: containerPort stage == --stage-port")
    check(arg_value(args, "--host") == "0.0.0.0", f"{n}/{dn}: listens on all addresses")
    check(arg_value(args, "--model") == model_path and any(model_path.startswith(m + "/") for m in mounts),
          f"{n}/{dn}: --model is cluster.yaml's model.path, on a mounted volume")
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        check(c.get(probe, {}).get("httpGet", {}).get("path") == "/health", f"{n}/{dn}: {probe} on /health")
    # The Service selecting this Deployment is the cluster.yaml host of this node.
    labels = d["spec"]["template"]["metadata"]["labels"]
    svc = [s for s in services.values() if matches(s["spec"]["selector"], labels)]
    spec = node_by_host.get(svc[0]["metadata"]["name"]) if svc else None
    check(spec is not None, f"{n}/{dn}: its Service is a node host in cluster.yaml")
    if not spec:
        return
    sp = {p["name"]: p["port"] for p in svc[0]["spec"]["ports"]}
    check(sp.get("http") == spec["port"], f"{n}/{dn}: cluster.yaml port == Service http port")
    for key, flag in (("parallel", "--parallel"), ("ctx", "--ctx"), ("layers", "--layers"),
                      ("stage_port", "--stage-port")):
        if key in spec:
            check(str(spec[key]) == arg_value(args, flag), f"{n}/{dn}: {flag} == cluster.yaml {key}")
    if "next" in spec:
        nxt = next(x for x in ov.cluster["nodes"] if x["name"] == spec["next"])
        check(arg_value(args, "--next") == f"{nxt['host']}:{nxt['stage_port']}",
              f"{n}/{dn}: --next is the next stage's Service:stage_port")
        nsvc = services.get(nxt["host"], {"spec": {"ports": []}})
        check(any(p["port"] == nxt["stage_port"] and p["name"] == "stage" for p in nsvc["spec"]["ports"]),
              f"{n}/{dn}: the next stage's Service exposes the stage port")
    if "--cluster-secret-file" in args or "next" in spec:
        check(ov.cluster.get("cluster", {}).get("secret_file") == arg_value(args, "--cluster-secret-file"),
              f"{n}/{dn}: --cluster-secret-file is cluster.yaml's cluster.secret_file")
    check(arg_value(args, "--api-key-file") == ov.cluster["gateway"].get("node_api_key_file"),
          f"{n}/{dn}: --api-key-file is the gateway's node_api_key_file")


def check_gateway(ov, dn, c, args, ports, mounts):
    n = ov.name
    listen = ov.cluster["gateway"]["listen"]
    check(listen.endswith(f":{ports.get('http')}"), f"{n}/{dn}: containerPort http == gateway.listen")
    check(arg_value(args, "--config") in mounts, f"{n}/{dn}: --config is mounted")
    check(c["readinessProbe"]["httpGet"]["path"] == "/ready" and c["livenessProbe"]["httpGet"]["path"] == "/health",
          f"{n}/{dn}: readiness /ready, liveness /health")


def local_cluster_yaml(ov, work, node_port, gw_port):
    """The overlay's cluster.yaml with Service hosts -> 127.0.0.1 and the first node's port, the
    mounted secrets -> temporary files (content only), so that the real binaries run it."""
    text = ov.raw
    ports = iter([node_port] + [node_port + 1 + i for i in range(len(ov.cluster["nodes"]))])
    text = re.sub(r"host: [a-z0-9-]+, port: \d+", lambda m: f"host: 127.0.0.1, port: {next(ports)}", text)
    text = text.replace("/etc/strata/secrets/", f"{work}/secrets/")
    text = re.sub(r"listen: [0-9.]+:\d+", f"listen: 127.0.0.1:{gw_port}", text)
    path = f"{work}/{ov.name}-cluster.yaml"
    open(path, "w").write(text)
    return path


def live_checks(strata, overlays, work):
    os.makedirs(f"{work}/secrets", exist_ok=True)
    for k in overlays[0].secret_keys:
        open(f"{work}/secrets/{k}", "w").write("k8s-test-" + k + "-0123456789abcdef0123456789abcdef")
    model = f"{work}/tiny.gguf"
    subprocess.run([strata, "model", "synth", "--shape", "tiny-qwen2", "--type", "f32", "--out", model],
                   check=True, capture_output=True)
    for ov in overlays:  # the ConfigMaps are valid cluster.yaml for the binary
        ov.raw = ov.kind("ConfigMap")[0]["data"]["cluster.yaml"]
        p = local_cluster_yaml(ov, work, 18080, 18000)
        r = subprocess.run([strata, "gateway", "--config", p, "--check"], capture_output=True, text=True)
        check(r.returncode == 0, f"{ov.name}: `strata gateway --check` accepts the ConfigMap's cluster.yaml {r.stderr.strip()[-200:]}")
    rep = next(o for o in overlays if o.name == "replica")
    dep = next(d for d in rep.kind("Deployment") if d["spec"]["template"]["spec"]["containers"][0]["args"][0] == "node")
    c = dep["spec"]["template"]["spec"]["containers"][0]
    args = list(c["args"])
    np_, gp = procs.free_port(), procs.free_port()
    args[args.index("--model") + 1] = model
    args[args.index("--host") + 1] = "127.0.0.1"
    args[args.index("--port") + 1] = str(np_)
    args[args.index("--threads") + 1] = "1"
    args[args.index("--ctx") + 1] = "512"
    args[args.index("--api-key-file") + 1] = f"{work}/secrets/node-api-key"
    running = []
    try:
        node = procs.Proc([strata] + args, np_, "node", wait=False)
        running.append(node)
        first = None  # the first answer of the health endpoint: loading (503) or loaded (200)
        if procs.wait_for(lambda: procs.alive(np_), 60, 0.01):
            first = procs.request(np_, "GET", "/health", timeout=5)
        check(first is not None and (first[0] == 503 and first[2].get("status") == "loading"
                                     or first[0] == 200 and first[2].get("model_loaded")),
              f"node /health while starting: {first and first[0]} {first and first[2].get('status')}")
        node.wait_ready(60)
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            st, _, body = procs.request(np_, "GET", c[probe]["httpGet"]["path"], timeout=5)
            check(st == 200 and body.get("model_loaded") is True, f"node {probe} {c[probe]['httpGet']['path']}: {st}, model loaded")
        check(procs.request(np_, "GET", "/healthz", timeout=5)[0] != 200, "a wrong probe path would fail (/healthz)")
        rep.raw = rep.kind("ConfigMap")[0]["data"]["cluster.yaml"]
        cfg = local_cluster_yaml(rep, work, np_, gp)
        gdep = next(d for d in rep.kind("Deployment") if d["metadata"]["name"] == "strata-gateway")
        gc = gdep["spec"]["template"]["spec"]["containers"][0]
        gargs = list(gc["args"])
        gargs[gargs.index("--config") + 1] = cfg
        gw = procs.Proc([strata] + gargs, gp, "gateway", ready_path="/ready")
        running.append(gw)
        for probe in ("readinessProbe", "livenessProbe"):
            st = procs.request(gp, "GET", gc[probe]["httpGet"]["path"], timeout=5)[0]
            check(st == 200, f"gateway {probe} {gc[probe]['httpGet']['path']}: {st}")
        st, _, body = procs.request(gp, "POST", "/v1/chat/completions",
                                    {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 3})
        check(st == 200 and body.get("choices"), f"gateway -> node with the mounted node api key: {st}")
    finally:
        for p in reversed(running):
            p.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--strata", required=True)
    ap.add_argument("--json-dir", required=True)
    ap.add_argument("overlays", nargs="+")
    a = ap.parse_args()
    node_flags, gw_flags = help_flags(a.strata, "node"), help_flags(a.strata, "gateway")
    check("--stage-port" in node_flags and "--config" in gw_flags, "parsed `strata node|gateway --help`")
    overlays = []
    for name in a.overlays:
        objs = json.load(open(f"{a.json_dir}/{name}.yaml.json"))
        ov = Overlay(name, objs)
        overlays.append(ov)
        check_overlay(ov, node_flags, gw_flags)
    with tempfile.TemporaryDirectory(prefix="strata-k8s-") as work:
        live_checks(a.strata, overlays, work)
    sys.exit(procs.summary("k8s"))


if __name__ == "__main__":
    main()
