#!/usr/bin/env python3
"""Writes N distinct signed Replicate webhooks for wrk, one line each: id TAB timestamp TAB signature TAB body.

Each is a succeeded prediction with one output URL, so intake does its full work: the raw delivery,
the prediction upsert, one asset, NOTIFY. Timestamps are "now": use the file within 5 minutes.
"""
import base64, hashlib, hmac, json, sys, time, uuid

secret, count, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
key = base64.b64decode(secret.removeprefix("whsec_"))
ts = str(int(time.time()))
with open(out, "w") as f:
    for i in range(count):
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
        f.write(f"{wid}\t{ts}\tv1,{sig}\t{body}\n")
