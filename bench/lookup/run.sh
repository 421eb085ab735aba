#!/usr/bin/env bash
# Lookup benchmark: lookups per second of stored predictions at 64 connections (wrk), side by side in the
# same run with `pgbench -S` (select-only) at 64 clients on the same PostgreSQL server.
#
#   bench/lookup/run.sh
#
# Environment (all optional):
#   BENCH_N=10000          predictions seeded (one stored asset each; rows only, lookups never touch S3)
#   BENCH_DURATION=20      seconds per measurement
#   BENCH_CONNECTIONS=64   wrk connections and pgbench clients
#   BENCH_POOL=4           daemon database.pool_size (4 = twice the cores of the 2-core VM the figures come from;
#                          16 there gives the same throughput with a p99 ten times worse, see README.md)
#   BENCH_DATABASE_URL     reuse this server (a database `afterimage_bench` and `pgbench_bench` are created
#                          on it) instead of a private cluster from scripts/pg.sh
#   BENCH_S3_ENDPOINT BENCH_S3_BUCKET BENCH_S3_ACCESS_KEY_ID BENCH_S3_SECRET_ACCESS_KEY
#                          reuse this bucket instead of a private SeaweedFS from scripts/s3.sh
#   BENCH_BINARY           afterimage binary to run (default: `swift build -c release`)
#   BENCH_PROFILE=FILE     also record a system-wide `perf record -g` of 10 s of the wrk run into FILE
#   BENCH_WRK_NICE=N       run wrk (the measured run) at this nice value, e.g. -10, so that the load generator
#                          is not starved by the daemon's 64 connection threads on a small machine (its latency
#                          figures include its own scheduling delays otherwise); needs root for negative values
# Needs wrk and pgbench (Debian: wrk, postgresql-client).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
N=${BENCH_N:-10000}
DURATION=${BENCH_DURATION:-20}
CONNECTIONS=${BENCH_CONNECTIONS:-64}
POOL=${BENCH_POOL:-4}
for tool in wrk pgbench psql; do command -v $tool >/dev/null || { echo "bench: $tool is not installed" >&2; exit 1; }; done

work=$(mktemp -d /tmp/afterimage-bench.XXXXXX)
chmod 755 "$work"
daemon_pid=
cleanup() {
  [ -n "$daemon_pid" ] && kill "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null || true
  [ -z "${BENCH_S3_ENDPOINT:-}" ] && scripts/s3.sh stop "$work/s3" >/dev/null 2>&1 || true
  [ -z "${BENCH_DATABASE_URL:-}" ] && scripts/pg.sh stop "$work/pg" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

if [ -n "${BENCH_DATABASE_URL:-}" ]; then
  server=${BENCH_DATABASE_URL%/*}
  for db in afterimage_bench pgbench_bench; do
    psql "$server/postgres" -qc "DROP DATABASE IF EXISTS $db" -qc "CREATE DATABASE $db"
  done
else
  pg_port=$(free_port)
  scripts/pg.sh start "$work/pg" "$pg_port" afterimage_bench
  server="postgresql://afterimage@127.0.0.1:$pg_port"
  psql "$server/postgres" -qc "CREATE DATABASE pgbench_bench"
fi
DB_URL="$server/afterimage_bench"
PGBENCH_URL="$server/pgbench_bench"

if [ -n "${BENCH_S3_ENDPOINT:-}" ]; then
  S3_ENDPOINT=$BENCH_S3_ENDPOINT S3_BUCKET=$BENCH_S3_BUCKET
  S3_ACCESS=$BENCH_S3_ACCESS_KEY_ID S3_SECRET=$BENCH_S3_SECRET_ACCESS_KEY
else
  s3_port=$(python3 - <<'PY'
import random, socket
def free(p):
    s = socket.socket()
    try: s.bind(("127.0.0.1", p)); return True
    except OSError: return False
    finally: s.close()
for _ in range(500):
    b = random.randint(20000, 50000)
    if all(free(b + i) for i in range(12)): print(b); break
PY
)
  S3_ACCESS=bench S3_SECRET=$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n') S3_BUCKET=bench
  scripts/s3.sh start "$work/s3" "$s3_port" "$S3_ACCESS" "$S3_SECRET" "$S3_BUCKET"
  S3_ENDPOINT="http://127.0.0.1:$s3_port"
fi

if [ -n "${BENCH_BINARY:-}" ]; then
  binary=$BENCH_BINARY
else
  swift build -c release --product afterimage >&2
  binary="$(swift build -c release --show-bin-path)/afterimage"
fi

TOKEN="bench_$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
HTTP_PORT=$(free_port)
export AFTERIMAGE_DATABASE_URL=$DB_URL AFTERIMAGE_DATABASE_POOL_SIZE=$POOL AFTERIMAGE_HTTP_PORT=$HTTP_PORT \
  AFTERIMAGE_STORAGE_ENDPOINT=$S3_ENDPOINT AFTERIMAGE_STORAGE_BUCKET=$S3_BUCKET \
  AFTERIMAGE_STORAGE_ACCESS_KEY_ID=$S3_ACCESS AFTERIMAGE_STORAGE_SECRET_ACCESS_KEY=$S3_SECRET \
  AFTERIMAGE_API_TOKENS=$TOKEN AFTERIMAGE_WORKERS_COUNT=2 AFTERIMAGE_WORKERS_SPOOL_DIR="$work/spool" \
  AFTERIMAGE_LOG_LEVEL=notice AFTERIMAGE_HTTP_CONNECTION_LIMIT=512
"$binary" migrate >/dev/null

echo "bench: seeding $N stored predictions" >&2
psql "$DB_URL" -q -v ON_ERROR_STOP=1 <<SQL
INSERT INTO predictions (provider, id, status, model, version, input, created_at, started_at, completed_at)
SELECT 'replicate', 'bench-' || g, 'succeeded', 'bench/model', 'v1', '{"prompt": "a cat in a hat", "seed": 42}',
       now() - interval '2 minutes', now() - interval '1 minute', now()
FROM generate_series(1, $N) AS g;
INSERT INTO assets (provider, prediction_id, pointer, output_index, source_url, state, storage_key, size_bytes, sha256,
                    content_type, stored_at, attempts)
SELECT 'replicate', 'bench-' || g, '/0', 0, 'https://replicate.delivery/xezq/' || g || '/out-0.webp', 'stored',
       'replicate/bench-' || g || '/0.webp', 123456, md5(g::text) || md5(g::text), 'image/webp', now(), 1
FROM generate_series(1, $N) AS g;
VACUUM ANALYZE;
SQL
pgbench -q -i -s 10 "$PGBENCH_URL" >/dev/null 2>&1

"$binary" serve > "$work/daemon.log" 2>&1 &
daemon_pid=$!
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$HTTP_PORT/readyz" >/dev/null 2>&1 && break
  kill -0 "$daemon_pid" 2>/dev/null || { cat "$work/daemon.log" >&2; exit 1; }
  sleep 0.1
done
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$HTTP_PORT/v1/predictions/replicate/bench-1")
[ "$code" = 200 ] || { echo "bench: a lookup answered $code" >&2; cat "$work/daemon.log" >&2; exit 1; }

echo "bench: warming up" >&2
BENCH_N=$N BENCH_TOKEN=$TOKEN wrk -t2 -c"$CONNECTIONS" -d3s -s bench/lookup/lookup.lua "http://127.0.0.1:$HTTP_PORT" >/dev/null
echo "bench: wrk, $CONNECTIONS connections, ${DURATION}s" >&2
BENCH_N=$N BENCH_TOKEN=$TOKEN nice -n "${BENCH_WRK_NICE:-0}" wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --latency -s bench/lookup/lookup.lua \
  "http://127.0.0.1:$HTTP_PORT" > "$work/wrk.txt" &
wrk_pid=$!
if [ -n "${BENCH_PROFILE:-}" ]; then
  sleep 2
  perf record -a -g -F 499 -o "$BENCH_PROFILE" -- sleep 10 >/dev/null 2>&1 || echo "bench: perf record failed" >&2
fi
wait "$wrk_pid"
cat "$work/wrk.txt" >&2
echo "bench: pgbench -S, $CONNECTIONS clients, ${DURATION}s" >&2
pgbench -S -c "$CONNECTIONS" -j 2 -T "$DURATION" "$PGBENCH_URL" > "$work/pgbench.txt" 2>/dev/null
cat "$work/pgbench.txt" >&2

python3 - "$work/wrk.txt" "$work/pgbench.txt" <<'PY'
import re, sys
wrk = open(sys.argv[1]).read()
pg = open(sys.argv[2]).read()
def to_ms(value, unit):
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", wrk).group(1))
p50 = re.search(r"50%\s+([\d.]+)(us|ms|s)", wrk)
p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", wrk)
errors = re.search(r"Non-2xx or 3xx responses: (\d+)", wrk)
socket_errors = re.search(r"Socket errors: (.*)", wrk)
tps = float(re.search(r"tps = ([\d.]+) \(without initial connection time\)", pg).group(1))
pg_latency = re.search(r"latency average = ([\d.]+) ms", pg)
print(f"lookups/s (wrk, 64 connections):   {rps:,.0f}")
print(f"lookup latency p50 / p99:          {to_ms(*p50.groups()):.2f} ms / {to_ms(*p99.groups()):.2f} ms")
print(f"pgbench -S tps (64 clients):       {tps:,.0f}" + (f" (latency average {pg_latency.group(1)} ms)" if pg_latency else ""))
print(f"ratio lookups / pgbench:           {rps / tps:.2f}  (target >= 0.80; p99 target < 10 ms)")
if errors: print(f"NON-2xx responses: {errors.group(1)}")
if socket_errors: print(f"socket errors: {socket_errors.group(1)}")
PY
