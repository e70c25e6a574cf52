"""Driver of tests/deploy/test_nginx.sh: deploy/nginx/strata.conf rendered for loopback in front
of two real gateways and a node. Every process it starts is stopped in `finally`."""
import argparse
import functools
import http.client
import json
import os
import re
import socket
import ssl
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "common"))
import procs  # noqa: E402
from procs import FAST_HEALTH, HOST, Proc, free_port, node_args, wait_for, write_cluster_yaml  # noqa: E402

SERVER_NAME = "strata.example.com"


check = functools.partial(procs.check, fatal=True)  # a failed check ends the script


def directives(text):
    """The directive names of an nginx config, in order (comments dropped)."""
    out = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line and line != "}":
            out.append(re.split(r"[\s{;]", line, 1)[0])
    return out


def render(conf, work, ports, gateways):
    """deploy/nginx/strata.conf with loopback ports, the test certificate and webroot. Only
    addresses and paths change; the IPv6 listens are dropped (loopback v4 only)."""
    text = open(conf).read()
    text = text.replace("10.0.0.31:8000", f"{HOST}:{gateways[0]}")
    text = text.replace("10.0.0.32:8000", f"{HOST}:{gateways[1]}")
    text = re.sub(r"\n\s*listen \[::\]:(80|443)( ssl)?;", "", text)
    text = text.replace("listen 80;", f"listen {HOST}:{ports['http']};")
    text = text.replace("listen 443 ssl;", f"listen {HOST}:{ports['https']} ssl;")
    text = text.replace(f"/etc/letsencrypt/live/{SERVER_NAME}/", f"{work}/tls/")
    text = text.replace("/var/www/letsencrypt", f"{work}/www")
    want = directives(open(conf).read())
    got = directives(text)
    dropped_v6 = len(want) - len(got)
    check(dropped_v6 == 2 and [d for d in want if d != "listen"] == [d for d in got if d != "listen"],
          "test config has the directives of deploy/nginx/strata.conf (only ports/paths changed)")
    temp = "\n".join(f"  {k}_temp_path {work}/tmp/{k};" for k in
                     ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    main = f"""worker_processes 2;
pid {work}/nginx.pid;
error_log {work}/error.log info;
events {{ worker_connections 512; }}
http {{
  access_log {work}/access.log;
{temp}
  include {work}/strata.conf;
}}
"""
    open(f"{work}/strata.conf", "w").write(text)
    open(f"{work}/nginx.conf", "w").write(main)
    return f"{work}/nginx.conf"


class _TlsConn(http.client.HTTPSConnection):
    """HTTPS to 127.0.0.1 that verifies the certificate for SERVER_NAME (SNI and hostname)."""

    def connect(self):
        sock = socket.create_connection((self.host, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=SERVER_NAME)


def https(port, work, method, path, body=None, timeout=60):
    ctx = ssl.create_default_context(cafile=f"{work}/tls/fullchain.pem")
    c = _TlsConn(HOST, port, timeout=timeout, context=ctx)
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    c.request(method, path, body=data, headers={"Content-Type": "application/json"})
    return c, c.getresponse()


def sse_timing(port, work, max_tokens):
    """Streams a chat answer through nginx: (arrival time of each data event, total time)."""
    body = {"messages": [{"role": "user", "content": "stream me"}], "max_tokens": max_tokens,
            "stream": True, "temperature": 0.7}
    t0 = time.monotonic()
    c, r = https(port, work, "POST", "/v1/chat/completions", body)
    check(r.status == 200, f"SSE through nginx: HTTP {r.status}")
    check(r.getheader("X-Accel-Buffering") == "no", "nginx adds X-Accel-Buffering: no")
    times = []
    while True:
        line = r.readline()
        if not line or line.startswith(b"data: [DONE]"):
            break
        if line.startswith(b"data:"):
            times.append(time.monotonic() - t0)
    c.close()
    return times, time.monotonic() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--strata", required=True)
    ap.add_argument("--conf", required=True)
    ap.add_argument("--work", required=True)
    a = ap.parse_args()
    work = a.work
    for d in ("tls", "www/.well-known/acme-challenge", "tmp"):
        os.makedirs(f"{work}/{d}", exist_ok=True)
    os.chmod(work, 0o755)
    for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        os.makedirs(f"{work}/tmp/{k}", exist_ok=True)
        os.chmod(f"{work}/tmp/{k}", 0o777)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", f"/CN={SERVER_NAME}", "-addext", f"subjectAltName=DNS:{SERVER_NAME}",
                    "-keyout", f"{work}/tls/privkey.pem", "-out", f"{work}/tls/fullchain.pem"],
                   check=True, capture_output=True)
    model = f"{work}/tiny.gguf"
    subprocess.run([a.strata, "model", "synth", "--shape", "tiny-qwen2", "--type", "f32",
                    "--out", model], check=True, capture_output=True)
    procs = []
    nginx = None
    try:
        np_ = free_port()
        procs.append(Proc(node_args(a.strata, model, np_, parallel=4), np_, "node"))
        gws = []
        for name in ("gw-a", "gw-b"):
            gp = free_port()
            cfg = write_cluster_yaml(f"{work}/{name}.yaml", model, [{"name": "n0", "port": np_}],
                                     gp, FAST_HEALTH)
            gws.append(Proc([a.strata, "gateway", "--config", cfg], gp, name, ready_path="/ready"))
            procs.append(gws[-1])
        ports = {"http": free_port(), "https": free_port()}
        conf = render(a.conf, work, ports, [g.port for g in gws])
        t = subprocess.run(["nginx", "-t", "-p", work, "-e", f"{work}/error.log", "-c", conf],
                           capture_output=True, text=True)
        check(t.returncode == 0, "nginx -t accepts the rendered config " + t.stderr.strip()[-300:])
        nginx = subprocess.Popen(["nginx", "-p", work, "-e", f"{work}/error.log", "-c", conf,
                                  "-g", "daemon off;"])
        check(wait_for(lambda: socket.create_connection((HOST, ports["https"]), 1).close() or True, 20),
              "nginx listens")
        run_checks(work, ports, gws)
    finally:
        if nginx and nginx.poll() is None:
            nginx.terminate()
            try:
                nginx.wait(10)
            except subprocess.TimeoutExpired:
                nginx.kill()
                nginx.wait()
        for p in procs:
            p.stop()


def run_checks(work, ports, gws):
    # ACME webroot and the redirect on port 80.
    open(f"{work}/www/.well-known/acme-challenge/tok123", "w").write("tok123.thumb")
    c = http.client.HTTPConnection(HOST, ports["http"], timeout=10)
    c.request("GET", "/.well-known/acme-challenge/tok123")
    r = c.getresponse()
    check(r.status == 200 and r.read() == b"tok123.thumb", "port 80 serves the ACME challenge")
    c.request("GET", "/v1/models")
    r = c.getresponse()
    r.read()
    check(r.status == 301 and r.getheader("Location", "").startswith("https://"),
          f"port 80 redirects to https ({r.status} {r.getheader('Location')})")
    c.close()
    # TLS (the certificate verifies for the server name) through to the gateways.
    c, r = https(ports["https"], work, "GET", "/ready")
    check(r.status == 200 and json.loads(r.read())["ready"], "GET /ready over TLS via nginx")
    c.close()
    c, r = https(ports["https"], work, "POST", "/v1/chat/completions", b"x" * (9 << 20))
    check(r.status == 413, f"a body over 8m is refused by nginx ({r.status})")
    c.close()
    # SSE: events arrive as they are generated, not at the end.
    times, total = sse_timing(ports["https"], work, 40)
    spread = sum(1 for i in range(1, len(times)) if times[i] - times[i - 1] > 0.001)
    print(f"     SSE: {len(times)} events, first at {times[0]*1000:.0f} ms, last at "
          f"{times[-1]*1000:.0f} ms, total {total*1000:.0f} ms, {spread} separate arrivals")
    check(len(times) >= 10 and times[0] < 0.5 * times[-1] and spread >= len(times) // 3,
          "SSE passes through chunk by chunk (first event long before the last)")
    # One gateway killed: nginx sends the requests to the other.
    gws[0].kill()
    ok = 0
    for i in range(12):
        body = {"messages": [{"role": "user", "content": f"after kill {i}"}], "max_tokens": 4,
                "stream": i % 2 == 1}
        c, r = https(ports["https"], work, "POST", "/v1/chat/completions", body)
        text = r.read()
        ok += r.status == 200 and (b"[DONE]" in text if i % 2 else b"choices" in text)
        c.close()
    check(ok == 12, f"gateway A killed: {ok}/12 requests answered through nginx")


if __name__ == "__main__":
    main()
