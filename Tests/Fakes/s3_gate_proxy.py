#!/usr/bin/env python3
"""A pass-through proxy in front of a real S3 endpoint that holds back chosen uploads, on 127.0.0.1 only.

  python3 s3_gate_proxy.py UPSTREAM_PORT HOLD_SUBSTRING

Every request is forwarded to 127.0.0.1:UPSTREAM_PORT as it came (the Host header too, so SigV4
signatures still verify), and its answer sent back. A PUT whose path contains HOLD_SUBSTRING is read
whole and then held, not forwarded, until the gate opens:

  POST /_gate/open     lets held and later PUTs through
  GET  /_gate/stats    {"held": n, "forwarded": [upstream status, ...]} of the PUTs held

This is how a test makes an upload last exactly as long as it needs (a delete lands meanwhile) without a
sleep. Prints "PORT <n>" on its first line of stdout once it listens.
"""
import http.client
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

upstream_port = int(sys.argv[1])
hold = sys.argv[2]
lock = threading.Lock()
gate = threading.Event()
stats = {"held": 0, "forwarded": []}
HOP = {"connection", "keep-alive", "transfer-encoding", "expect", "proxy-connection", "te", "upgrade"}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, body=b"", content_type="application/json"):
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Type", content_type)
        self.end_headers()
        self.wfile.write(body)

    def forward(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        held = self.command == "PUT" and hold in self.path
        if held:
            with lock:
                stats["held"] += 1
            gate.wait(120)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
        connection = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=60)
        try:
            connection.request(self.command, self.path, body=body, headers=headers)
            answer = connection.getresponse()
            data = answer.read()
        finally:
            connection.close()
        if held:
            with lock:
                stats["forwarded"].append(answer.status)
        self.send_response(answer.status)
        for key, value in answer.getheaders():
            if key.lower() not in HOP and key.lower() != "content-length":
                self.send_header(key, value)
        # A HEAD answer keeps the object's length (the client reads it) and has no body.
        length = answer.getheader("Content-Length") if self.command == "HEAD" else str(len(data))
        if length is not None:
            self.send_header("Content-Length", length)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def do_GET(self):
        if self.path == "/_gate/stats":
            with lock:
                self.reply(200, json.dumps(stats).encode())
        else:
            self.forward()

    def do_POST(self):
        if self.path == "/_gate/open":
            gate.set()
            self.reply(200, b"{}")
        else:
            self.forward()

    def do_PUT(self):
        self.forward()

    def do_HEAD(self):
        self.forward()

    def do_DELETE(self):
        self.forward()


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
print(f"PORT {server.server_address[1]}", flush=True)
server.serve_forever()
