#!/usr/bin/env python3
"""Writes N distinct signed webhooks for wrk, one line each: route TAB header count TAB name TAB value ... TAB body.

  make_requests.py SECRET COUNT OUT                      Replicate, Standard Webhooks HMAC with SECRET (whsec_…)
  make_requests.py --ed25519 SEED_HEX COUNT OUT          Ideogram, Ed25519 with the key whose 32-byte seed is SEED_HEX
  make_requests.py --public-key SEED_HEX                 prints that key's public half, base64url (ideogram.public_keys)

Each is a finished generation with one output URL, so intake does its full work: the raw delivery, the
prediction upsert, one asset, NOTIFY. Timestamps are "now": use the file within 5 minutes. Ed25519 signing
uses the `cryptography` package (Debian's python3-cryptography).
"""
import base64, hashlib, hmac, json, sys, time, uuid


def ed25519_key(seed_hex):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    return Ed25519PrivateKey.from_private_bytes(bytes.fromhex(seed_hex))


def replicate(secret, count):
    key = base64.b64decode(secret.removeprefix("whsec_"))
    ts = str(int(time.time()))
    for _ in range(count):
        pid = f"bench{uuid.uuid4().hex[:20]}"
        body = json.dumps({
            "id": pid, "model": "bench/model", "version": "v1", "status": "succeeded",
            "input": {"prompt": "a lighthouse at dusk"}, "error": None, "data_removed": False,
            "output": [f"https://replicate.delivery/bench/{pid}/out-0.png"],
            "created_at": "2026-11-21T10:00:00.000Z", "completed_at": "2026-11-21T10:00:05.000Z",
            "metrics": {"predict_time": 4.2},
        }, separators=(",", ":"))
        wid = f"msg_{uuid.uuid4().hex}"
        sig = base64.b64encode(hmac.new(key, f"{wid}.{ts}.{body}".encode(), hashlib.sha256).digest()).decode()
        yield "/v1/webhooks/replicate", [("webhook-id", wid), ("webhook-timestamp", ts), ("webhook-signature", f"v1,{sig}")], body


def ideogram(seed_hex, count):
    key = ed25519_key(seed_hex)
    ts = str(int(time.time()))
    user = "dXNlcl9iZW5jaA"
    for _ in range(count):
        gid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        body = json.dumps({
            "generation_id": gid, "created": "2026-11-21T10:00:00Z",
            "data": [{"url": f"https://ideogram.ai/api/images/ephemeral/{gid}.png", "prompt": "a lighthouse at dusk",
                      "resolution": "1024x1024", "seed": 12345, "is_image_safe": True}],
        }, separators=(",", ":"))
        digest = hashlib.sha256(body.encode()).hexdigest()
        sig = key.sign(f"{gid}\n{user}\n{ts}\n{digest}".encode()).hex()
        yield "/v1/webhooks/ideogram", [("X-Ideogram-Webhook-Generation-Id", gid), ("X-Ideogram-Webhook-User-Id", user),
                                        ("X-Ideogram-Webhook-Timestamp", ts), ("X-Ideogram-Webhook-Key-Id", "bench"),
                                        ("X-Ideogram-Webhook-Signature", sig)], body


def main(argv):
    if argv[0] == "--public-key":
        from cryptography.hazmat.primitives import serialization
        raw = ed25519_key(argv[1]).public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        print(base64.urlsafe_b64encode(raw).decode().rstrip("="))
        return
    if argv[0] == "--ed25519":
        requests, count, out = ideogram(argv[1], int(argv[2])), int(argv[2]), argv[3]
    else:
        requests, count, out = replicate(argv[0], int(argv[1])), int(argv[1]), argv[2]
    with open(out, "w") as f:
        for route, headers, body in requests:
            fields = [route, str(len(headers))] + [part for header in headers for part in header] + [body]
            f.write("\t".join(fields) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
