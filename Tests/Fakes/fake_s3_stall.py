#!/usr/bin/env python3
"""An S3 endpoint whose uploads never finish, for the bounded-stop tests, on 127.0.0.1 only.

  HEAD /BUCKET                          200 (readiness passes)
  POST /BUCKET/KEY?uploads              200 with an UploadId (CreateMultipartUpload)
  PUT  /BUCKET/KEY[?partNumber&uploadId] counted, then nothing: the body is never read and no answer
                                        is sent, so the client's upload stalls until it gives up
  DELETE /BUCKET/KEY?uploadId=ID        204, the upload id is recorded (AbortMultipartUpload)
  GET  /_stats                          {"puts": n, "parts": n, "uploads": [ids], "aborted": [ids]}

Signatures are not checked. Prints "PORT <n>" on its first line of stdout once it listens.
"""
import json
import signal
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

lock = threading.Lock()
stats = {"puts": 0, "parts": 0, "uploads": [], "aborted": []}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, status, body=b"", content_type="application/xml"):
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        if body:
            self.send_header("Content-Type", content_type)
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self):
        self.answer(200)

    def do_GET(self):
        if urlparse(self.path).path == "/_stats":
            with lock:
                body = json.dumps(stats).encode()
            self.answer(200, body, "application/json")
        else:
            self.answer(404)

    def do_POST(self):
        query = parse_qs(urlparse(self.path).query, keep_blank_values=True)
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        if "uploads" in query:
            upload_id = "stall-" + uuid.uuid4().hex
            with lock:
                stats["uploads"].append(upload_id)
            xml = ("<InitiateMultipartUploadResult><Bucket>b</Bucket><Key>k</Key>"
                   f"<UploadId>{upload_id}</UploadId></InitiateMultipartUploadResult>").encode()
            self.answer(200, xml)
        else:
            self.answer(500, b"<Error><Code>InternalError</Code></Error>")

    def do_PUT(self):
        query = parse_qs(urlparse(self.path).query)
        with lock:
            stats["parts" if "partNumber" in query else "puts"] += 1
        # Never read, never answer; the client aborts (or its low-speed limit ends it after a minute).
        time.sleep(300)
        self.close_connection = True

    def do_DELETE(self):
        query = parse_qs(urlparse(self.path).query)
        with lock:
            stats["aborted"].extend(query.get("uploadId", []))
        self.answer(204)


def main():
    # The test runner's threads block most signals and children inherit that mask: unblock them so
    # the test can end this process.
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(f"PORT {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
