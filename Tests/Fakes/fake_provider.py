#!/usr/bin/env python3
"""A fake provider for the integration tests, on 127.0.0.1 only.

Serves output files whose bytes are a pure function of their name (so a test can recompute them),
with behaviours chosen by query parameters, and counts every request so tests can assert that a file
was downloaded exactly once, or never.

  GET /files/NAME?size=N            N deterministic bytes (sha256 chain of NAME), Content-Length set
     &type=image/png                Content-Type (default application/octet-stream)
     &status=404                    answer this status instead (body "nope")
     &delay_ms=N                    wait before answering
     &rate=BYTES_PER_S              pace the body (slow bodies; also lets a test kill the client mid-transfer)
     &chunked=1                     no Content-Length
     &redirect=URL                  302 to URL
     &fail_first=K                  answer 503 to the first K requests for this path
  GET /_stats                       {"counts": {path: n}, "active": {path: n}, "started": {path: n},
                                     "completed": {path: n}, "authorization": {path: [value, ...]}}
                                    (completed: whole body sent; authorization: the Authorization header
                                    of each request for the path, "" when there was none)
  POST /_reset                      clears the counters
  GET /jwks.json                    the key set last given to POST /_jwks (a provider's published webhook keys,
                                    as Ideogram and fal serve theirs); 404 until one is given; counted in /_stats
  POST /_jwks                       replaces that key set with the body

Arguments: [PORT [HOST]] (default: any free port on 127.0.0.1; another loopback address such as
127.0.0.2 gives a second host name for the same machine).

Prints "PORT <n>" on its first line of stdout once it listens.
"""
import hashlib
import json
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

lock = threading.Lock()
counts, active, started, completed, authorization = {}, {}, {}, {}, {}
jwks = {"body": None}


def file_bytes(name, size):
    """Deterministic content: blocks of sha256(name:i). Mirrored by the Swift tests."""
    out = bytearray()
    i = 0
    while len(out) < size:
        out += hashlib.sha256(f"{name}:{i}".encode()).digest()
        i += 1
    return bytes(out[:size])


def stream_blocks(name, size):
    i = 0
    sent = 0
    buf = bytearray()
    while sent < size:
        while len(buf) < 65536 and sent + len(buf) < size:
            buf += hashlib.sha256(f"{name}:{i}".encode()).digest()
            i += 1
        take = min(len(buf), size - sent)
        yield bytes(buf[:take])
        del buf[:take]
        sent += take


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send_json(self, code, obj):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        if self.path == "/_jwks":
            length = int(self.headers.get("Content-Length", "0"))
            with lock:
                jwks["body"] = self.rfile.read(length)
            self.send_json(200, {"ok": True})
        elif self.path == "/_reset":
            with lock:
                counts.clear(); active.clear(); started.clear(); completed.clear(); authorization.clear()
            self.send_json(200, {"ok": True})
        else:
            self.send_json(404, {"error": "unknown"})

    def do_GET(self):
        url = urlparse(self.path)
        if url.path == "/_stats":
            with lock:
                self.send_json(200, {"counts": dict(counts), "active": dict(active), "started": dict(started),
                                     "completed": dict(completed), "authorization": dict(authorization)})
            return
        if url.path == "/jwks.json":
            with lock:
                counts[url.path] = counts.get(url.path, 0) + 1
                body = jwks["body"]
            if body is None:
                self.send_json(404, {"error": "no key set yet"})
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        if not url.path.startswith("/files/"):
            self.send_json(404, {"error": "unknown"})
            return
        q = {k: v[-1] for k, v in parse_qs(url.query).items()}
        name = url.path[len("/files/"):]
        with lock:
            counts[url.path] = counts.get(url.path, 0) + 1
            n = counts[url.path]
            authorization.setdefault(url.path, []).append(self.headers.get("Authorization", ""))
        if "delay_ms" in q:
            time.sleep(int(q["delay_ms"]) / 1000)
        if "redirect" in q:
            self.send_response(302)
            self.send_header("Location", q["redirect"])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        status = int(q.get("status", "200"))
        if n <= int(q.get("fail_first", "0")):
            status = 503
        if status != 200:
            body = b"nope"
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        size = int(q.get("size", "1024"))
        self.send_response(200)
        self.send_header("Content-Type", q.get("type", "application/octet-stream"))
        chunked = q.get("chunked") == "1"
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(size))
        self.end_headers()
        rate = float(q.get("rate", "0"))
        with lock:
            active[url.path] = active.get(url.path, 0) + 1
            started[url.path] = started.get(url.path, 0) + 1
        t0 = time.monotonic()
        sent = 0
        try:
            for block in stream_blocks(name, size):
                if chunked:
                    self.wfile.write(b"%x\r\n" % len(block) + block + b"\r\n")
                else:
                    self.wfile.write(block)
                sent += len(block)
                if rate > 0:
                    ahead = sent / rate - (time.monotonic() - t0)
                    if ahead > 0:
                        time.sleep(ahead)
            if chunked:
                self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
            with lock:
                completed[url.path] = completed.get(url.path, 0) + 1
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        finally:
            with lock:
                active[url.path] -= 1


def main():
    # The test runner's threads block most signals and children inherit that mask: unblock them so
    # SIGTERM ends this server.
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    host = sys.argv[2] if len(sys.argv) > 2 else "127.0.0.1"
    server = ThreadingHTTPServer((host, int(sys.argv[1]) if len(sys.argv) > 1 else 0), Handler)
    server.daemon_threads = True
    print(f"PORT {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
