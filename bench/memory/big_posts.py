#!/usr/bin/env python3
"""N concurrent POSTs of SIZE-byte bodies to one route, over raw sockets so that a server that answers
before the body (401, 413, 503) is seen to do so: each client stops sending once an answer has arrived.

    big_posts.py PORT PATH MODE N SIZE [SECRET]

MODE: unsigned (no signature headers), forged (fresh, well-formed, wrong signature) or genuine (signed
with SECRET; the body is a Stability result {"image": base64} so it is accepted and recorded).
Prints one line per status: `status count` and the body bytes sent before the answer (min/max).
"""
import base64, hashlib, hmac, os, select, socket, sys, threading, time

port, path, mode, n, size = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
secret = sys.argv[6] if len(sys.argv) > 6 else ""

def body_for(index):
    if mode != "genuine":
        return b"{" + b"a" * (size - 1)
    # A valid Stability inline result: the base64 of distinct bytes per client, padded to `size`.
    raw_len = (size - 16) // 4 * 3
    seed = hashlib.sha256(str(index).encode()).digest()
    raw = (seed * (raw_len // len(seed) + 1))[:raw_len]
    return b'{"image":"' + base64.b64encode(raw) + b'"}'

def headers_for(index, body):
    now = str(int(time.time()))
    msg_id = "msg_bench_%d_%s" % (index, os.urandom(4).hex())
    if mode == "unsigned":
        return []
    if mode == "forged":
        return [("webhook-id", msg_id), ("webhook-timestamp", now),
                ("webhook-signature", "v1," + base64.b64encode(os.urandom(32)).decode())]
    key = base64.b64decode(secret[len("whsec_"):] if secret.startswith("whsec_") else secret)
    mac = hmac.new(key, ("%s.%s." % (msg_id, now)).encode() + body, hashlib.sha256).digest()
    return [("webhook-id", msg_id), ("webhook-timestamp", now), ("webhook-signature", "v1," + base64.b64encode(mac).decode())]

results = []
lock = threading.Lock()

def client(index, body):
    s = socket.create_connection(("127.0.0.1", port), timeout=120)
    head = "POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: %d\r\n" % (path, len(body))
    for name, value in headers_for(index, body):
        head += "%s: %s\r\n" % (name, value)
    s.sendall((head + "\r\n").encode())
    sent, piece = 0, 1 << 20
    view = memoryview(body)
    try:
        while sent < len(body):
            if select.select([s], [], [], 0)[0]:
                break  # answered (or closed) before the whole body went
            s.sendall(view[sent:sent + piece])
            sent += min(piece, len(body) - sent)
    except OSError:
        pass
    answer = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            answer += chunk
    except OSError:
        pass
    s.close()
    status = answer.split(b" ", 2)[1].decode() if answer.startswith(b"HTTP/1.") else "no-answer"
    with lock:
        results.append((status, sent))

bodies = [body_for(i) for i in range(n)] if mode == "genuine" else [body_for(0)] * n
threads = [threading.Thread(target=client, args=(i, bodies[i])) for i in range(n)]
for t in threads: t.start()
for t in threads: t.join()
by_status = {}
for status, sent in results:
    by_status.setdefault(status, []).append(sent)
for status in sorted(by_status):
    sent = by_status[status]
    print("  %s x%d (body bytes sent before the answer: %d..%d MiB)" % (status, len(sent), min(sent) >> 20, max(sent) >> 20))
