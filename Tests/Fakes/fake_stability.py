#!/usr/bin/env python3
"""A fake Stability AI results API for the integration tests, on 127.0.0.1 only.

  python3 fake_stability.py API_KEY

  GET /v2beta/results/ID      requires "Authorization: Bearer API_KEY" (else 401, Stability's error shape).
                              Answers from the script set for ID, one entry per request, the last repeating:
                                202   {"id", "status": "in-progress"} (+ Retry-After when the script has one)
                                200   the bytes of ID (sha256 chain of "ID:i", cut to size), with
                                      Content-Type, finish-reason and seed headers
                                4xx/5xx  {"id", "name", "errors": [...]} (429 as Stability's rate limit)
                              An id without a script answers 404.
  POST /_script               {"id", "script": "202,202,200", "size": N, "type": "image/png",
                               "finish_reason": "SUCCESS", "seed": "123", "retry_after": "1"}
  GET /_stats                 {"counts": {id: n}, "unauthorized": n}

Prints "PORT <n>" on its first line of stdout once it listens.
"""
import hashlib
import json
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

API_KEY = sys.argv[1] if len(sys.argv) > 1 else "sk-test"
lock = threading.Lock()
scripts, counts = {}, {}
unauthorized = [0]

MESSAGES = {
    401: ("unauthorized", "Missing or invalid API key"),
    403: ("forbidden", "Your account is not allowed to access this resource"),
    404: ("not_found", "Generation not found or expired"),
    429: ("rate_limit_exceeded", "You have exceeded the rate limit of 150 requests within a 10 second period; try again in 60 seconds"),
    500: ("internal_error", "An unexpected server error occurred"),
}


def result_bytes(name, size):
    out = bytearray()
    i = 0
    while len(out) < size:
        out += hashlib.sha256(f"{name}:{i}".encode()).digest()
        i += 1
    return bytes(out[:size])


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send_body(self, code, body, headers=()):
        self.send_response(code)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def send_json(self, code, obj, headers=()):
        self.send_body(code, json.dumps(obj).encode(), [("Content-Type", "application/json")] + list(headers))

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        if self.path == "/_script":
            spec = json.loads(body)
            with lock:
                scripts[spec["id"]] = spec
                counts.pop(spec["id"], None)
            self.send_json(200, {"ok": True})
        else:
            self.send_json(404, {"error": "unknown"})

    def do_GET(self):
        if self.path == "/_stats":
            with lock:
                self.send_json(200, {"counts": dict(counts), "unauthorized": unauthorized[0]})
            return
        prefix = "/v2beta/results/"
        if not self.path.startswith(prefix):
            self.send_json(404, {"error": "unknown"})
            return
        gid = self.path[len(prefix):]
        if self.headers.get("Authorization") != f"Bearer {API_KEY}":
            with lock:
                unauthorized[0] += 1
            name, message = MESSAGES[401]
            self.send_json(401, {"id": gid, "name": name, "errors": [message]})
            return
        with lock:
            counts[gid] = counts.get(gid, 0) + 1
            n = counts[gid]
            spec = scripts.get(gid)
        if spec is None:
            name, message = MESSAGES[404]
            self.send_json(404, {"id": gid, "name": name, "errors": [message]})
            return
        steps = [s.strip() for s in spec["script"].split(",")]
        status = int(steps[min(n, len(steps)) - 1])
        if status == 202:
            headers = [("Retry-After", spec["retry_after"])] if "retry_after" in spec else []
            self.send_json(202, {"id": gid, "status": "in-progress"}, headers)
        elif status == 200:
            headers = [("Content-Type", spec.get("type", "image/png")),
                       ("finish-reason", spec.get("finish_reason", "SUCCESS")),
                       ("seed", str(spec.get("seed", "0")))]
            self.send_body(200, result_bytes(gid, int(spec.get("size", 1024))), headers)
        else:
            name, message = MESSAGES.get(status, ("error", "error"))
            headers = [("Retry-After", "60")] if status == 429 else []
            self.send_json(status, {"id": gid, "name": name, "errors": [message]}, headers)


def main():
    # The test runner's threads block most signals and children inherit that mask: unblock them so
    # SIGTERM ends this server.
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(f"PORT {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
