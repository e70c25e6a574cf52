"""Front-door checks shared by the node and gateway tests: raw-socket clients for
authentication before the body, slow headers, and floods of idle connections (loopback only,
bounded in count and time)."""
import socket
import time


def raw_exchange(port, data, timeout=5.0):
    """Sends data, returns (what the server answered until it closed or timeout, seconds)."""
    t0 = time.time()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        s.settimeout(timeout)
        try:
            while True:
                b = s.recv(65536)
                if not b:
                    break
                out += b
        except (socket.timeout, ConnectionResetError):
            pass
    return out.decode(errors="replace"), time.time() - t0


def status_of(answer):
    """The status code of a raw HTTP answer (0: none)."""
    parts = answer.split(" ", 2)
    return int(parts[1]) if len(parts) > 1 and answer.startswith("HTTP/") and parts[1].isdigit() else 0


def announce_body(port, path, length=8 << 20, headers=""):
    """POSTs headers announcing a large body and sends none of it: (status, seconds)."""
    req = (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
           f"Content-Length: {length}\r\n{headers}\r\n").encode()
    answer, dt = raw_exchange(port, req, timeout=5)
    return status_of(answer), dt


def slow_headers(port, interval=0.1, limit_s=10.0):
    """Trickles one header byte per interval; returns the seconds until the server closed
    (None: still open after limit_s)."""
    t0 = time.time()
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        while time.time() - t0 < limit_s:
            try:
                s.sendall(b"a")
                s.settimeout(interval)
                if s.recv(1) == b"":
                    return time.time() - t0
            except socket.timeout:
                continue
            except OSError:
                return time.time() - t0
    return None


def idle_flood(port, n):
    """Opens n idle connections (as many as the server takes); returns the open sockets."""
    socks = []
    for _ in range(n):
        try:
            socks.append(socket.create_connection(("127.0.0.1", port), timeout=2))
        except OSError:
            break
    return socks


def close_all(socks):
    for s in socks:
        try:
            s.close()
        except OSError:
            pass
