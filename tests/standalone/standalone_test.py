"""The `strata` binary copied alone to another folder works without the source tree: `model
synth`, `run`, `node`, `gateway` and `up`, each started from the copy with the current folder
elsewhere, in a private mount namespace where the source tree (and the build folder inside
it) is hidden under an empty tmpfs, so that no path compiled into the binary can be read.

  standalone_test.py --strata build/strata --source .
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common"))
from procs import Proc, check, free_port, node_args, request, summary, write_cluster_yaml  # noqa: E402

# Hides $0 (the source tree), enters $1 (the current folder), then runs the rest.
HIDE = 'mount -t tmpfs strata-hidden "$0" && cd "$1" && shift && exec "$@"'


def hidden(source, cwd, argv):
    return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", HIDE, source,
            cwd, *argv]


def completes(port, path="/v1/completions"):
    st, _, body = request(port, "POST", path, {"prompt": "Hello", "max_tokens": 4,
                                               "temperature": 0}, timeout=60)
    return st == 200 and isinstance(body, dict) and len(body.get("choices", [])) == 1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--strata", required=True)
    ap.add_argument("--source", required=True, help="the source tree to hide")
    a = ap.parse_args()
    source = os.path.realpath(a.source)
    top = tempfile.mkdtemp(prefix="strata_standalone_")  # outside the source tree
    t0 = time.time()
    try:
        bindir, cwd = os.path.join(top, "bin"), os.path.join(top, "cwd")
        os.makedirs(bindir)
        os.makedirs(cwd)
        strata = shutil.copy(a.strata, os.path.join(bindir, "strata"))
        env = {k: v for k, v in os.environ.items() if not k.startswith("STRATA_")}
        env["XDG_CACHE_HOME"] = os.path.join(top, "cache")

        def run(*argv):
            return subprocess.run(hidden(source, cwd, [strata, *argv]), env=env,
                                  capture_output=True, text=True, timeout=120)

        r = subprocess.run(hidden(source, cwd, ["sh", "-c", 'test -z "$(ls -A "$0")"', source]),
                           env=env)
        check(r.returncode == 0, "the source tree is hidden in the test's mount namespace")
        r = run("model", "synth", "--shape", "tiny-qwen2", "--type", "q8_0", "--layers", "2",
                "--out", "m.gguf")
        model = os.path.join(cwd, "m.gguf")
        ok = r.returncode == 0 and os.path.exists(model) and os.path.getsize(model) > 0
        check(ok, "model synth (vocabulary and template embedded)" + ("" if ok else r.stderr[-500:]))
        r = run("run", "--model", "m.gguf", "--prompt", "Hello", "--max-tokens", "4",
                "--temperature", "0", "--json", "--ctx", "128")
        ok = r.returncode == 0 and '"tokens"' in r.stdout
        check(ok, "run" + ("" if ok else ": " + r.stderr[-500:]))
        np, gp, up_port = free_port(), free_port(), free_port()
        node = Proc(hidden(source, cwd, node_args(strata, "m.gguf", np, ctx=128)), np, "node",
                    env=env)
        try:
            check(completes(np), "node answers a completion")
            write_cluster_yaml(os.path.join(cwd, "cluster.yaml"), model,
                               [{"name": "n0", "port": np}], gp)
            gw = Proc(hidden(source, cwd, [strata, "gateway", "--config", "cluster.yaml"]), gp,
                      "gateway", ready_path="/ready", env=env)
            try:
                check(completes(gp), "gateway proxies a completion to the node")
            finally:
                check(gw.stop() == 0, "gateway stops cleanly")
        finally:
            check(node.stop() == 0, "node stops cleanly")
        up = Proc(hidden(source, cwd, [strata, "up", "--model", model, "--nodes", "1",
                                       "--port", str(up_port), "--run-dir", "up-run",
                                       "--threads", "1", "--ctx", "128", "--parallel", "2"]),
                  up_port, "up", ready_path="/ready", env=env, timeout=120)
        try:
            check(completes(up_port), "up serves a completion through its gateway")
        finally:
            up.stop()
    finally:
        shutil.rmtree(top, ignore_errors=True)
    print(f"{time.time() - t0:.1f} s")
    return summary("standalone")


if __name__ == "__main__":
    sys.exit(main())
