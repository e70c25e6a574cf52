"""A loopback stand-in for the Hugging Face Hub, for tests/pull/pull_test.py. Stdlib only.

Two HTTP servers (threads): the "hub" (file listing, resolve with redirects) and a "CDN" on
another port that serves the blobs with Range support. The hub's answers follow the public API
(docs/pull.md): GET /api/models/{repo}/tree/{rev} lists files with lfs.oid (the SHA-256);
GET /{repo}/resolve/{rev}/{path} answers 302 to the CDN with X-Linked-Etag and X-Linked-Size.

Per-blob misbehaviour for the tests: drop the connection after N bytes (once), serve slowly,
stall, advertise a wrong SHA-256. Every request is logged (server, path, headers).
"""
import hashlib
import json
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOST = "127.0.0.1"


class Blob:
    def __init__(self, data):
        self.data = data
        self.sha = hashlib.sha256(data).hexdigest()
        self.drop_after = None  # close the connection after this many body bytes, once
        self.rate = None        # bytes per second
        self.stall = 0.0        # seconds to wait after the headers
        self.advertised_sha = None  # a wrong published SHA-256
        self.ignore_range = False   # answer 200 with the whole file to a Range request


class Hub:
    def __init__(self, prefix=""):
        self.repos = {}   # "owner/repo" -> {path: Blob}
        self.files = {}   # direct URL files on the CDN: name -> Blob
        self.log = []
        self.lock = threading.Lock()
        self.prefix = prefix  # a mirror's path prefix (HF_ENDPOINT=http://host:port/prefix)
        self.renames = {}     # old "owner/repo" -> new: resolve answers a relative 307
        self.servers = []

    def add(self, repo, path, data):
        b = Blob(data)
        self.repos.setdefault(repo, {})[path] = b
        return b

    def record(self, server, handler):
        with self.lock:
            self.log.append({"server": server, "path": handler.path,
                             "headers": {k.lower(): v for k, v in handler.headers.items()}})

    def requests(self, server=None):
        with self.lock:
            return [e for e in self.log if server is None or e["server"] == server]

    def start(self, tls_cert=None, tls_key=None):
        self.cdn = self._serve("cdn", CdnHandler)
        self.hub = self._serve("hub", HubHandler)
        self.cdn_port = self.cdn.server_address[1]
        self.hub_port = self.hub.server_address[1]
        self.endpoint = f"http://{HOST}:{self.hub_port}{self.prefix}"
        if tls_cert:
            self.tls = self._serve("hub-tls", HubHandler)
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(tls_cert, tls_key)
            self.tls.socket = ctx.wrap_socket(self.tls.socket, server_side=True)
            self.tls_endpoint = f"https://{HOST}:{self.tls.server_address[1]}{self.prefix}"
        for s in self.servers:
            threading.Thread(target=s.serve_forever, daemon=True).start()
        return self

    def _serve(self, name, handler):
        srv = QuietServer((HOST, 0), handler)
        srv.daemon_threads = True
        srv.hub, srv.name = self, name
        self.servers.append(srv)
        return srv

    def stop(self):
        for s in self.servers:
            s.shutdown()
            s.server_close()


class QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        pass  # clients that give up mid-body (timeouts, refusals) are part of the tests


class Base(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send_json(self, code, obj, extra=None):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)


class HubHandler(Base):
    def do_GET(self):
        hub = self.server.hub
        hub.record(self.server.name, self)
        path = self.path.split("?")[0]
        if hub.prefix:
            if not path.startswith(hub.prefix + "/"):
                return self.send_json(404, {"error": "not under the mirror prefix"})
            path = path[len(hub.prefix):]
        parts = path.strip("/").split("/")
        if parts[:2] == ["api", "models"] and len(parts) >= 6 and parts[4] == "tree":
            return self.tree("/".join(parts[2:4]))
        if len(parts) >= 5 and parts[2] == "resolve":
            return self.resolve("/".join(parts[:2]), "/".join(parts[4:]))
        self.send_json(404, {"error": "Not Found"})

    def tree(self, repo):
        files = self.server.hub.repos.get(repo)
        if files is None:
            return self.send_json(404, {"error": "Repository not found"},
                                  {"X-Error-Code": "RepoNotFound"})
        out = []
        for p, b in sorted(files.items()):
            sha = b.advertised_sha or b.sha
            out.append({"type": "file", "oid": hashlib.sha1(b.data).hexdigest(), "size": 134,
                        "path": p, "lfs": {"oid": sha, "size": len(b.data), "pointerSize": 134}})
        self.send_json(200, out)

    def resolve(self, repo, path):
        hub = self.server.hub
        if repo in hub.renames:  # a renamed repository: relative redirect on the hub itself
            self.send_response(307)
            self.send_header("Location", self.path.replace("/" + repo + "/", "/" + hub.renames[repo] + "/", 1))
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        b = hub.repos.get(repo, {}).get(path)
        if b is None:
            return self.send_json(404, {"error": "Entry not found"},
                                  {"X-Error-Code": "EntryNotFound"})
        sha = b.advertised_sha or b.sha
        self.send_response(302)
        # Blobs are addressed by their object id (two files may hold the same bytes but
        # misbehave differently).
        self.send_header("Location", f"http://{HOST}:{self.server.hub.cdn_port}/blobs/{id(b):x}")
        self.send_header("X-Linked-Etag", f'"{sha}"')
        self.send_header("X-Linked-Size", str(len(b.data)))
        self.send_header("X-Repo-Commit", "0" * 40)
        self.send_header("ETag", '"0123abcd"')
        self.send_header("Content-Length", "0")
        self.end_headers()


class CdnHandler(Base):
    def do_GET(self):
        hub = self.server.hub
        hub.record("cdn", self)
        path = self.path.split("?")[0]
        blob = None
        if path.startswith("/blobs/"):
            key = path[len("/blobs/"):]
            blob = next((b for r in hub.repos.values() for b in r.values()
                         if f"{id(b):x}" == key), None)
        elif path.startswith("/files/"):
            blob = hub.files.get(path[len("/files/"):])
        if blob is None:
            return self.send_json(404, {"error": "no such blob"})
        self.send_blob(blob)

    def send_blob(self, b):
        data, start = b.data, 0
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes=") and rng.endswith("-") and not b.ignore_range:
            start = int(rng[6:-1])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data) - start))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        body = memoryview(data)[start:]
        if b.stall:
            time.sleep(b.stall)
        if b.drop_after is not None:
            n, b.drop_after = b.drop_after, None
            self.wfile.write(body[:n])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(2)
            return
        chunk = 64 << 10
        for i in range(0, len(body), chunk):
            self.wfile.write(body[i:i + chunk])
            if b.rate:
                time.sleep(chunk / b.rate)
