"""`strata pull`, `strata models` and `--model REF` against a loopback hub stand-in
(hub_standin.py): hf:// and OWNER/REPO:QUANT references, plain URLs, redirects to a CDN on
another port, LFS SHA-256 checks, resumed downloads, refusals (wrong SHA-256, not a GGUF,
unsupported architecture, 404), a slow and a stalled server, HF_ENDPOINT with a mirror prefix,
HF_TOKEN, and TLS with a self-signed certificate via SSL_CERT_FILE. Never the network.

Usage: pull_test.py --strata BUILD/strata --workdir DIR
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common"))
import hub_standin  # noqa: E402

REPO = "deepseek-ai/R1-Distill-Tiny-GGUF"
FAILURES = []


def check(cond, what, detail=""):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        FAILURES.append(what)
        if detail:
            print("     " + detail[-3000:], flush=True)


def synth(strata, path, seed, arch="qwen2"):
    subprocess.run([strata, "model", "synth", "--arch", arch, "--layers", "1", "--hidden", "32",
                    "--ffn", "64", "--heads", "2", "--kv-heads", "1", "--type", "q8_0",
                    "--seed", str(seed), "--out", path], check=True, capture_output=True)
    with open(path, "rb") as f:
        return f.read()


def with_arch(data, arch):
    """The same GGUF with general.architecture renamed (same length), so the reader accepts it
    and the model config refuses it."""
    key = b"general.architecture"
    at = data.index(key) + len(key) + 4 + 8  # value type (u32) + string length (u64)
    old = data[at:at + 5]
    assert old == b"qwen2", old
    return data[:at] + arch + data[at + 5:]


class Env:
    def __init__(self, strata, work, hub):
        self.strata, self.work, self.hub = strata, work, hub
        self.models = os.path.join(work, "models")

    def run(self, *args, env=None, timeout=60):
        e = dict(os.environ, HF_ENDPOINT=self.hub.endpoint, STRATA_MODELS=self.models)
        e.pop("HF_TOKEN", None)
        e.update(env or {})
        t0 = time.time()
        p = subprocess.run([self.strata, *args], capture_output=True, text=True, env=e,
                           timeout=timeout)
        return p.returncode, p.stdout, p.stderr, time.time() - t0

    def path(self, rel):
        return os.path.join(self.models, rel)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def test_hf_file_and_token(t, blobs):
    n0 = len(t.hub.requests())
    rc, out, err, _ = t.run("pull", f"hf://{REPO}/R1-Tiny-Q4_K_M.gguf",
                            env={"HF_TOKEN": "hf_secret123"})
    dest = t.path(f"{REPO}/R1-Tiny-Q4_K_M.gguf")
    check(rc == 0 and out.strip() == dest, "hf:// pull prints the installed path", err + out)
    check(os.path.exists(dest) and read(dest) == blobs["seed1"], "hf:// pull: bytes identical")
    check(not os.path.exists(dest + ".part"), "hf:// pull: no .part left")
    check("verified" in err, "hf:// pull: SHA-256 verified against X-Linked-Etag", err)
    side = json.load(open(dest + ".source.json"))
    check(side.get("ref") == f"hf://{REPO}/R1-Tiny-Q4_K_M.gguf", "sidecar records the reference")
    reqs = t.hub.requests()[n0:]
    hub_auth = [r["headers"].get("authorization") for r in reqs if r["server"] == "hub"]
    cdn_auth = [r["headers"].get("authorization") for r in reqs if r["server"] == "cdn"]
    check(hub_auth and all(a == "Bearer hf_secret123" for a in hub_auth),
          "HF_TOKEN sent as Bearer to the hub", str(hub_auth))
    check(cdn_auth and all(a is None for a in cdn_auth),
          "Authorization not sent to the cross-host CDN", str(cdn_auth))
    rc, _, err, _ = t.run("pull", f"hf://{REPO}/R1-Tiny-Q4_K_M.gguf")
    check(rc == 0 and "already present" in err, "second pull: already present", err)


def test_quant_pick(t, blobs):
    rc, out, err, _ = t.run("pull", f"{REPO}:q8_0")
    dest = t.path(f"{REPO}/R1-Tiny-Q8_0.gguf")
    check(rc == 0 and out.strip() == dest and read(dest) == blobs["seed2"],
          "OWNER/REPO:QUANT picks the Q8_0 file (case-insensitive)", err)
    check("picked R1-Tiny-Q8_0.gguf" in err, "the picked file is named", err)
    listing = [r for r in t.hub.requests("hub") if "/api/models/" + REPO + "/tree/main" in r["path"]]
    check(bool(listing), "the file list came from /api/models/{repo}/tree/{rev}")
    rc, _, err, _ = t.run("pull", f"{REPO}:Q2_K")
    check(rc != 0 and "available quantizations" in err and "Q4_K_M" in err and "Q8_0" in err,
          "unknown quant: error lists the available ones", err)
    rc, _, err, _ = t.run("pull", f"{REPO}:F16")
    check(rc != 0 and "split" in err, "split-only quant refused with a merge hint", err)


def test_renamed_repo(t, blobs):
    t.hub.renames["old-owner/old-name"] = REPO
    n0 = len(t.hub.requests())
    rc, out, err, _ = t.run("pull", "hf://old-owner/old-name/R1-Tiny-Q8_0.gguf",
                            env={"HF_TOKEN": "hf_tok"})
    check(rc == 0 and read(out.strip()) == blobs["seed2"],
          "relative redirect (renamed repository) followed", err)
    hub_auth = [r["headers"].get("authorization") for r in t.hub.requests()[n0:]
                if r["server"] == "hub"]
    check(len(hub_auth) == 2 and all(a == "Bearer hf_tok" for a in hub_auth),
          "token kept on the same-host relative redirect", str(hub_auth))


def test_concurrent(t, blobs):
    t.hub.repos[REPO]["R1-Tiny-twice.gguf"].rate = 16 << 20
    e = dict(os.environ, HF_ENDPOINT=t.hub.endpoint, STRATA_MODELS=t.models)
    ps = [subprocess.Popen([t.strata, "pull", f"hf://{REPO}/R1-Tiny-twice.gguf"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=e)
          for _ in range(2)]
    res = [p.communicate(timeout=60) + (p.returncode,) for p in ps]
    dest = t.path(f"{REPO}/R1-Tiny-twice.gguf")
    check(all(r[2] == 0 and r[0].strip() == dest for r in res) and
          read(dest) == blobs["seed1"] and sum("already present" in r[1] for r in res) == 1,
          "two concurrent pulls of one file: one downloads, the other waits and reuses it",
          str(res)[-2000:])


def test_node_model_ref(t):
    import procs
    port = procs.free_port()
    e = {"HF_ENDPOINT": t.hub.endpoint, "STRATA_MODELS": t.models}
    node = procs.Proc(procs.node_args(t.strata, f"{REPO}:Q8_0", port), port, "node", env=e,
                      wait=False)
    try:
        node.wait_ready(60)
        ok = procs.request(port, "GET", "/health")[0] == 200
    except RuntimeError as ex:
        ok = False
        print(ex)
    finally:
        node.stop()
    check(ok, "node --model OWNER/REPO:QUANT serves the pulled model")


def test_url(t, blobs):
    url = f"http://127.0.0.1:{t.hub.cdn_port}/files/direct.gguf"
    rc, out, err, _ = t.run("pull", url)
    dest = t.path(f"127.0.0.1_{t.hub.cdn_port}/direct.gguf")
    check(rc == 0 and out.strip() == dest and read(dest) == blobs["seed1"], "plain URL pull", err)
    check("publishes no SHA-256" in err, "plain URL: says no SHA-256 was published", err)


def test_resume(t, blobs):
    b = t.hub.repos[REPO]["R1-Tiny-resume.gguf"]
    b.drop_after = 3 << 20
    ref = f"hf://{REPO}/R1-Tiny-resume.gguf"
    dest = t.path(f"{REPO}/R1-Tiny-resume.gguf")
    rc, _, err, _ = t.run("pull", ref)
    part = dest + ".part"
    check(rc != 0 and os.path.exists(part) and os.path.getsize(part) == 3 << 20,
          "interrupted download fails and keeps 3 MiB in .part", err)
    check("run again to resume" in err, "interruption message says how to resume", err)
    n0 = len(t.hub.requests())
    rc, _, err, _ = t.run("pull", ref)
    ranges = [r["headers"].get("range") for r in t.hub.requests()[n0:] if r["server"] == "cdn"]
    check(f"bytes={3 << 20}-" in ranges, "resume sends Range from the kept bytes", str(ranges))
    check(rc == 0 and read(dest) == blobs["seed2"] and "verified" in err,
          "resumed download complete and verified", err)


def test_range_ignored(t, blobs):
    b = t.hub.repos[REPO]["R1-Tiny-norange.gguf"]
    b.drop_after = 1 << 20
    ref = f"hf://{REPO}/R1-Tiny-norange.gguf"
    rc, _, _, _ = t.run("pull", ref)
    b.ignore_range = True
    rc2, _, err, _ = t.run("pull", ref)
    dest = t.path(f"{REPO}/R1-Tiny-norange.gguf")
    check(rc != 0 and rc2 == 0 and "restarting from 0" in err and read(dest) == blobs["seed1"],
          "server ignoring Range (200): download restarts and completes", err)


def test_refusals(t):
    for name, expect, what in [
            ("R1-Tiny-corrupt.gguf", "SHA-256 mismatch", "wrong published SHA-256 refused"),
            ("R1-Tiny-junk.gguf", "not a valid GGUF", "not-a-GGUF refused"),
            ("R1-Tiny-mamba.gguf", "unsupported architecture", "unsupported arch refused")]:
        rc, _, err, _ = t.run("pull", f"hf://{REPO}/{name}")
        dest = t.path(f"{REPO}/{name}")
        check(rc != 0 and expect in err and not os.path.exists(dest) and
              not os.path.exists(dest + ".part"), what + " (nothing left behind)", err)
    rc, _, err, _ = t.run("pull", f"hf://{REPO}/missing.gguf")
    check(rc != 0 and "HTTP 404" in err, "404: clear error", err)
    rc, _, err, _ = t.run("pull", "nobody/nothing:Q4_K_M")
    check(rc != 0 and "HTTP 404" in err and "listing" in err, "unknown repo: 404 on listing", err)


def test_slow_and_stall(t, blobs):
    b = t.hub.repos[REPO]["R1-Tiny-slow.gguf"]
    b.rate = 8 << 20  # 16 MiB in ~2 s
    rc, _, err, secs = t.run("pull", f"hf://{REPO}/R1-Tiny-slow.gguf")
    lines = [ln for ln in err.splitlines() if "%" in ln and "/s" in ln and "ETA" in ln]
    check(rc == 0 and len(lines) >= 3, f"slow server: completes with plain progress lines "
          f"({len(lines)} lines, {secs:.1f} s)", err)
    s = t.hub.repos[REPO]["R1-Tiny-stall.gguf"]
    s.stall = 6
    rc, _, err, secs = t.run("pull", f"hf://{REPO}/R1-Tiny-stall.gguf",
                             "--idle-timeout", "1")
    check(rc != 0 and "timed out" in err and secs < 5,
          f"stalled server: idle timeout honoured ({secs:.1f} s)", err)


def test_mirror_prefix(strata, work, blobs):
    mirror = hub_standin.Hub(prefix="/hf-mirror").start()
    mirror.add("mirror/repo", "m-Q8_0.gguf", blobs["seed1"])
    try:
        t = Env(strata, os.path.join(work, "mirror"), mirror)
        rc, out, err, _ = t.run("pull", "mirror/repo:Q8_0")
        check(rc == 0 and read(out.strip()) == blobs["seed1"],
              "HF_ENDPOINT with a path prefix (mirror) honoured", err)
        check(all(r["path"].startswith("/hf-mirror/") for r in mirror.requests("hub")),
              "every hub request went under the mirror prefix")
    finally:
        mirror.stop()


def test_tls(strata, work, blobs):
    if not shutil.which("openssl"):
        print("skip TLS: no openssl command")
        return
    cert, key = os.path.join(work, "cert.pem"), os.path.join(work, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-keyout", key, "-out", cert, "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    hub = hub_standin.Hub().start(tls_cert=cert, tls_key=key)
    hub.add("tls/repo", "t-Q8_0.gguf", blobs["seed1"])
    try:
        t = Env(strata, os.path.join(work, "tls"), hub)
        env = {"HF_ENDPOINT": hub.tls_endpoint, "SSL_CERT_FILE": cert}
        rc, out, err, _ = t.run("pull", "hf://tls/repo/t-Q8_0.gguf", env=env)
        check(rc == 0 and read(out.strip()) == blobs["seed1"],
              "TLS hub verified with SSL_CERT_FILE", err)
        env["SSL_CERT_FILE"] = "/dev/null"
        env["STRATA_MODELS"] = os.path.join(work, "tls2")
        rc, _, err, _ = t.run("pull", "hf://tls/repo/t-Q8_0.gguf", env=env)
        check(rc != 0 and "TLS" in err, "TLS: an unknown certificate is refused", err)
    finally:
        hub.stop()


def test_models_and_model_ref(t):
    rc, out, err, _ = t.run("models", "--json")
    models = json.loads(out) if rc == 0 else []
    by = {m["name"]: m for m in models}
    q8 = by.get(f"{REPO}/R1-Tiny-Q8_0.gguf", {})
    check(q8.get("arch") == "qwen2" and q8.get("quant") == "Q8_0" and
          q8.get("ref") == f"{REPO}:q8_0" and q8.get("size", 0) > 0,
          "strata models --json: name, arch, quant, ref, size", out + err)
    rc, out, _, _ = t.run("models")
    check(rc == 0 and "R1-Tiny-Q8_0.gguf" in out and "qwen2" in out, "strata models table")
    n0 = len(t.hub.requests())
    rc, out, err, _ = t.run("run", "--model", f"{REPO}:q8_0", "-p", "hi", "-n", "2",
                            "--temp", "0", "--json")
    check(rc == 0 and len(json.loads(out)["tokens"]) == 2 and len(t.hub.requests()) == n0,
          "run --model REF uses the pulled model without the network", err)
    rc, out, err, _ = t.run("run", "--model", f"hf://{REPO}/R1-Tiny-late.gguf", "-p", "hi",
                            "-n", "1", "--temp", "0", "--json")
    check(rc == 0 and os.path.exists(t.path(f"{REPO}/R1-Tiny-late.gguf")),
          "run --model hf://... pulls on first use", err)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--strata", required=True)
    ap.add_argument("--workdir", required=True)
    a = ap.parse_args()
    t0 = time.time()
    shutil.rmtree(a.workdir, ignore_errors=True)
    os.makedirs(a.workdir)
    blobs = {"seed1": synth(a.strata, os.path.join(a.workdir, "s1.gguf"), 1),
             "seed2": synth(a.strata, os.path.join(a.workdir, "s2.gguf"), 2)}
    hub = hub_standin.Hub().start()
    for name, data in [("R1-Tiny-Q4_K_M.gguf", blobs["seed1"]), ("R1-Tiny-Q8_0.gguf", blobs["seed2"]),
                       ("F16/R1-Tiny-F16-00001-of-00002.gguf", b"x"),
                       ("F16/R1-Tiny-F16-00002-of-00002.gguf", b"y"), ("README.md", b"# tiny"),
                       ("R1-Tiny-resume.gguf", blobs["seed2"]),
                       ("R1-Tiny-corrupt.gguf", blobs["seed1"]),
                       ("R1-Tiny-junk.gguf", os.urandom(1 << 20)),
                       ("R1-Tiny-mamba.gguf", with_arch(blobs["seed1"], b"mamba")),
                       ("R1-Tiny-slow.gguf", blobs["seed1"]),
                       ("R1-Tiny-stall.gguf", blobs["seed1"]),
                       ("R1-Tiny-late.gguf", blobs["seed1"]),
                       ("R1-Tiny-norange.gguf", blobs["seed1"]),
                       ("R1-Tiny-twice.gguf", blobs["seed1"])]:
        hub.add(REPO, name, data)
    hub.repos[REPO]["R1-Tiny-corrupt.gguf"].advertised_sha = "ab" * 32
    hub.files["direct.gguf"] = hub_standin.Blob(blobs["seed1"])
    t = Env(a.strata, a.workdir, hub)
    try:
        test_hf_file_and_token(t, blobs)
        test_quant_pick(t, blobs)
        test_url(t, blobs)
        test_renamed_repo(t, blobs)
        test_concurrent(t, blobs)
        test_resume(t, blobs)
        test_range_ignored(t, blobs)
        test_refusals(t)
        test_slow_and_stall(t, blobs)
        test_models_and_model_ref(t)
        test_node_model_ref(t)
        test_mirror_prefix(a.strata, a.workdir, blobs)
        test_tls(a.strata, a.workdir, blobs)
    finally:
        hub.stop()
    print(f"{len(FAILURES)} failure(s) in {time.time() - t0:.1f} s")
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
