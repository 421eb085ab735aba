#!/usr/bin/env python3
"""A fake Replicate API for the reconciliation tests, on 127.0.0.1 only.

The test loads predictions (newest first) and a script of behaviours; the fake serves them the way
api.replicate.com does, and counts every request so tests can assert what was asked and when.

  GET  /v1/predictions[?created_after=T][&cursor=N]
                        {"results": [...page_size predictions...], "next": URL|null, "previous": URL|null}
                        newest first; created_after filters; `next` is an absolute URL with a cursor
  GET  /v1/predictions/ID
                        one prediction (the "current" override if loaded, else the listed one), 404 if unknown
  GET  /v1/webhooks/default/secret
                        {"key": WEBHOOK_SECRET} (the loaded "webhook_secret")
       all three need "Authorization: Bearer TOKEN" (else 401 {"detail": ...})
  POST /_load           {"token": T, "webhook_secret": "whsec_...", "page_size": N, "predictions": [...], "current": {id: prediction},
                         "throttle_first": K, "retry_after": "1",   -> the first K list requests answer 429
                                                                        (retry_after null: without Retry-After)
                         "fail_first": K,                            -> the first K list requests answer 503
                         "gate_pages": [cursor, ...],                -> those pages wait for POST /_open
                         "next_origin": "http://host:port"}          -> `next` points there instead
  POST /_open           opens the gates (waiting requests proceed; later ones pass at once)
  GET  /_stats          {"list": n, "pages": {cursor: n}, "get": {id: n}, "unauthorized": n, "throttled": n,
                         "failed": n, "waiting": n, "times": [unix time of each list request]}

Prints "PORT <n>" on its first line of stdout once it listens.
"""
import json
import signal
import sys
import threading
import time
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

lock = threading.Lock()
gate = threading.Event()
config = {"token": "", "webhook_secret": "", "page_size": 100, "predictions": [], "current": {}, "throttle_first": 0,
          "retry_after": "1", "fail_first": 0, "gate_pages": [], "next_origin": None}
stats = {}


def reset_stats():
    stats.clear()
    stats.update({"list": 0, "pages": {}, "get": {}, "unauthorized": 0, "throttled": 0, "failed": 0,
                  "waiting": 0, "times": []})


reset_stats()


def parse_time(text):
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send_json(self, code, obj, headers=()):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def read_json(self):
        length = int(self.headers.get("Content-Length", "0"))
        return json.loads(self.rfile.read(length) or b"{}")

    def do_POST(self):
        if self.path == "/_load":
            loaded = self.read_json()
            with lock:
                config.update(loaded)
                reset_stats()
                gate.clear()
            self.send_json(200, {"ok": True})
        elif self.path == "/_open":
            gate.set()
            self.send_json(200, {"ok": True})
        else:
            self.send_json(404, {"detail": "Not found."})

    def do_GET(self):
        url = urlparse(self.path)
        if url.path == "/_stats":
            with lock:
                self.send_json(200, stats)
            return
        if not url.path.startswith("/v1/predictions") and url.path != "/v1/webhooks/default/secret":
            self.send_json(404, {"detail": "Not found."})
            return
        with lock:
            token = config["token"]
        if self.headers.get("Authorization", "") != f"Bearer {token}":
            with lock:
                stats["unauthorized"] += 1
            self.send_json(401, {"title": "Unauthenticated", "detail": "You did not pass a valid authentication token",
                                 "status": 401})
            return
        if url.path == "/v1/webhooks/default/secret":
            with lock:
                stats["secret"] = stats.get("secret", 0) + 1
                key = config["webhook_secret"]
            self.send_json(200, {"key": key})
        elif url.path in ("/v1/predictions", "/v1/predictions/"):
            self.list_page(parse_qs(url.query))
        else:
            self.one(url.path[len("/v1/predictions/"):])

    def list_page(self, query):
        cursor = int(query.get("cursor", ["0"])[-1])
        with lock:
            stats["list"] += 1
            stats["times"].append(time.time())
            n = stats["list"]
            throttled = n <= config["throttle_first"]
            failed = not throttled and n <= config["throttle_first"] + config["fail_first"]
            gated = cursor in config["gate_pages"]
            if throttled:
                stats["throttled"] += 1
            elif failed:
                stats["failed"] += 1
            else:
                stats["pages"][str(cursor)] = stats["pages"].get(str(cursor), 0) + 1
            size = config["page_size"]
            predictions = list(config["predictions"])
            origin = config["next_origin"] or f"http://127.0.0.1:{self.server.server_address[1]}"
        if throttled:
            # retry_after null: no Retry-After header, only Replicate's body text.
            headers = [("Retry-After", config["retry_after"])] if config["retry_after"] is not None else []
            self.send_json(429, {"title": "Request was throttled.", "detail": "Request was throttled. Your rate limit resets in ~30s.",
                                 "status": 429}, headers)
            return
        if failed:
            self.send_json(503, {"detail": "Service unavailable"})
            return
        if gated and not gate.is_set():
            with lock:
                stats["waiting"] += 1
            gate.wait(timeout=60)
        if "created_after" in query:
            after = parse_time(query["created_after"][-1])
            predictions = [p for p in predictions if parse_time(p["created_at"]) >= after]
        page = predictions[cursor:cursor + size]
        more = cursor + size < len(predictions)
        after_q = f"&created_after={query['created_after'][-1]}" if "created_after" in query else ""
        self.send_json(200, {
            "results": page,
            "next": f"{origin}/v1/predictions?cursor={cursor + size}{after_q}" if more else None,
            "previous": None,
        })

    def one(self, prediction_id):
        with lock:
            stats["get"][prediction_id] = stats["get"].get(prediction_id, 0) + 1
            found = config["current"].get(prediction_id) or next(
                (p for p in config["predictions"] if p.get("id") == prediction_id), None)
        if found is None:
            self.send_json(404, {"detail": "Not found."})
        else:
            self.send_json(200, found)


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
