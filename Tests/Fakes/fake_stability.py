#!/usr/bin/env python3
"""A fake Stability AI results API for the integration tests, on 127.0.0.1 only.

  python3 fake_stability.py KEY[,KEY...]

  GET /v2beta/results/ID          (images) and
  GET /v2beta/audio/results/ID    (Stable Audio; a generation answers only at the path of its kind)
      require "Authorization: Bearer KEY" with one of the keys (else 401, Stability's error shape). Like
      Stability, a result can be read only with the key that created it (its "owner"): any other valid
      key gets 404. Answers from the script set for ID, one entry per owner request, the last repeating:
        202   {"id", "status": "in-progress"} (or the file "in_progress_file"; + Retry-After when scripted)
        200   the bytes of ID (sha256 chain of "ID:i", cut to size), with Content-Type, finish-reason and
              seed headers; or, when the request says "Accept: application/json" or the script says
              "format": "json", {"result": base64, "finish_reason", "seed"} (field name "json_field");
              or the file "body_file" as application/json
        4xx/5xx  {"id", "name", "errors": [...]} (429 as Stability's rate limit)
      An id without a script answers 404.
  POST /_script   {"id", "script": "202,202,200", "size": N, "type": "image/png", "finish_reason": "SUCCESS",
                   "seed": "123", "retry_after": "1", "kind": "image"|"audio", "owner": KEY,
                   "format": "bytes"|"json", "json_field": "result", "body_file": PATH, "in_progress_file": PATH}
  GET /_stats     {"counts": {id: n}, "unauthorized": n,
                   "requests": [{"id", "path", "key": index or -1, "accept", "status", "at": monotonic seconds,
                                 "wall": seconds since 1970}]}

Prints "PORT <n>" on its first line of stdout once it listens.
"""
import base64
import hashlib
import json
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

API_KEYS = (sys.argv[1] if len(sys.argv) > 1 else "sk-test").split(",")
lock = threading.Lock()
scripts, counts, owner_counts = {}, {}, {}
requests = []
unauthorized = [0]

MESSAGES = {
    401: ("unauthorized", "Missing or invalid API key"),
    403: ("forbidden", "Your account is not allowed to access this resource"),
    404: ("not_found", "Generation not found or expired"),
    429: ("rate_limit_exceeded", "You have exceeded the rate limit of 150 requests within a 10 second period; try again in 60 seconds"),
    500: ("internal_error", "An unexpected server error occurred"),
}
PATHS = {"/v2beta/results/": "image", "/v2beta/audio/results/": "audio"}


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

    def send_error_shape(self, code, gid, headers=()):
        name, message = MESSAGES.get(code, ("error", "error"))
        self.send_json(code, {"id": gid, "name": name, "errors": [message]}, headers)

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        if self.path == "/_script":
            spec = json.loads(body)
            with lock:
                scripts[spec["id"]] = spec
                counts.pop(spec["id"], None)
                owner_counts.pop(spec["id"], None)
            self.send_json(200, {"ok": True})
        else:
            self.send_json(404, {"error": "unknown"})

    def log_request_entry(self, gid, path, key, status):
        with lock:
            requests.append({"id": gid, "path": path, "key": key, "accept": self.headers.get("Accept"),
                             "status": status, "at": time.monotonic(), "wall": time.time()})

    def do_GET(self):
        if self.path == "/_stats":
            with lock:
                self.send_json(200, {"counts": dict(counts), "unauthorized": unauthorized[0], "requests": list(requests)})
            return
        prefix = next((p for p in PATHS if self.path.startswith(p)), None)
        if prefix is None:
            self.send_json(404, {"error": "unknown"})
            return
        gid = self.path[len(prefix):]
        authorization = self.headers.get("Authorization", "")
        key = API_KEYS.index(authorization[7:]) if authorization.startswith("Bearer ") and authorization[7:] in API_KEYS else -1
        if key < 0:
            with lock:
                unauthorized[0] += 1
            self.log_request_entry(gid, prefix, key, 401)
            self.send_error_shape(401, gid)
            return
        with lock:
            counts[gid] = counts.get(gid, 0) + 1
            spec = scripts.get(gid)
            owned = spec is not None and spec.get("owner", API_KEYS[0]) == API_KEYS[key] and PATHS[prefix] == spec.get("kind", "image")
            if owned:
                owner_counts[gid] = owner_counts.get(gid, 0) + 1
                n = owner_counts[gid]
        if not owned:
            # Unknown, another key's, or asked at the other kind's path: Stability says 404 to all three.
            self.log_request_entry(gid, prefix, key, 404)
            self.send_error_shape(404, gid)
            return
        steps = [s.strip() for s in spec["script"].split(",")]
        status = int(steps[min(n, len(steps)) - 1])
        self.log_request_entry(gid, prefix, key, status)
        if status == 202:
            headers = [("Retry-After", spec["retry_after"])] if "retry_after" in spec else []
            if "in_progress_file" in spec:
                with open(spec["in_progress_file"], "rb") as f:
                    self.send_body(202, f.read(), [("Content-Type", "application/json")] + headers)
            else:
                self.send_json(202, {"id": gid, "status": "in-progress"}, headers)
        elif status == 200:
            data = result_bytes(gid, int(spec.get("size", 1024)))
            if "body_file" in spec:
                with open(spec["body_file"], "rb") as f:
                    self.send_body(200, f.read(), [("Content-Type", "application/json")])
            elif spec.get("format") == "json" or self.headers.get("Accept") == "application/json":
                self.send_json(200, {spec.get("json_field", "result"): base64.b64encode(data).decode(),
                                     "finish_reason": spec.get("finish_reason", "SUCCESS"),
                                     "seed": int(spec.get("seed", "0"))})
            else:
                headers = [("Content-Type", spec.get("type", "image/png")),
                           ("finish-reason", spec.get("finish_reason", "SUCCESS")),
                           ("seed", str(spec.get("seed", "0")))]
                self.send_body(200, data, headers)
        else:
            headers = [("Retry-After", "60")] if status == 429 else []
            self.send_error_shape(status, gid, headers)


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
