#!/usr/bin/env python3
"""Real media files for the console's browser test, on 127.0.0.1 only: what a provider would serve.

  GET /image/NAME.png?size=N&hue=H   an N x N PNG (default 256), soft overlapping discs around hue H (0-360),
                                     made with zlib alone, so a browser decodes it (naturalWidth > 0)
  GET /audio/NAME.wav?hz=F           one second of a sine tone, 8 kHz mono 8-bit PCM WAV

Prints "PORT <n>" on its first line of stdout once it listens.
"""
import colorsys
import math
import signal
import struct
import sys
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse


def png(size, hue):
    """Discs of light in the hue's neighbourhood on a dark ground: an 'afterimage'."""
    discs = []
    for i in range(4):
        angle = (hue / 360.0 + i * 0.25) * 2 * math.pi
        cx = size * (0.5 + 0.28 * math.cos(angle))
        cy = size * (0.5 + 0.28 * math.sin(angle * 1.3))
        r, g, b = colorsys.hsv_to_rgb(((hue + i * 28) % 360) / 360.0, 0.65, 1.0)
        discs.append((cx, cy, size * (0.22 + 0.06 * i), (r, g, b)))
    base = colorsys.hsv_to_rgb(hue / 360.0, 0.5, 0.18)
    rows = bytearray()
    for y in range(size):
        rows.append(0)  # filter: none
        for x in range(size):
            red, green, blue = base
            for cx, cy, radius, (dr, dg, db) in discs:
                d = math.hypot(x - cx, y - cy) / radius
                if d < 1.0:
                    w = (1.0 - d * d) ** 2 * 0.8
                    red, green, blue = red + (dr - red) * w, green + (dg - green) * w, blue + (db - blue) * w
            rows += bytes((int(red * 255), int(green * 255), int(blue * 255)))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)  # 8-bit RGB
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes(rows), 9)) + chunk(b"IEND", b"")


def wav(hz):
    rate = 8000
    samples = bytes(int(128 + 100 * math.sin(2 * math.pi * hz * t / rate)) for t in range(rate))
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate, 1, 8)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(samples)) + samples
    return b"RIFF" + struct.pack("<I", len(body)) + body


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        url = urlparse(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        try:
            if url.path.startswith("/image/"):
                size = max(8, min(int(query.get("size", "256")), 1024))
                body, kind = png(size, float(query.get("hue", "200")) % 360), "image/png"
            elif url.path.startswith("/audio/"):
                body, kind = wav(float(query.get("hz", "440"))), "audio/wav"
            else:
                self.send_error(404)
                return
        except ValueError:
            self.send_error(400)
            return
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"PORT {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
