#!/usr/bin/env bash
# Retention benchmark (issue 19): do intake and lookups slow down while the retention loop prunes raw
# delivery bodies? On one private PostgreSQL, a backlog of old, settled deliveries is seeded (Replicate-like
# ~1.3 KB bodies, and Stability-like bodies of a few MiB of base64, all received 8 days ago or earlier, their
# outputs stored); then, alternating A B A B in the same run:
#   A  retention.delivery_bodies = 0 (pruning off)
#   B  retention.delivery_bodies at its default (7 days)
# both with retention.interval = 1, so B prunes the backlog while it is measured. Before each side the
# backlog is put back as seeded (bodies restored, the walk's position and the tally reset, VACUUM), so both
# start from the same table. Each side measures intake (bench/intake's signed Replicate webhooks with wrk,
# acks/s, p99, PostgreSQL CPU per ack) and then lookups (bench/lookup's wrk script, lookups/s, p99), on one
# daemon; each round ends with the anchors the intake and lookup benchmarks use (pgbench inserting one row
# per transaction, and pgbench -S, 64 clients each).
#
#   bench/retention/run.sh [SECONDS_PER_MEASUREMENT] [ROUNDS]
#
# Environment (optional): REPLICATE_ROWS=200000, STABILITY_ROWS=200, STABILITY_MIB=2, POOL=8 (database.pool_size),
#   RETENTION_INTERVAL=1 (retention.interval on both sides; the default of the daemon is 60),
#   BENCH_BINARY (default: the release build, `swift build -c release --product afterimage`).
# Needs: wrk, pgbench, psql (Debian's postgresql packages).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
duration=${1:-15}
rounds=${2:-2}
replicate_rows=${REPLICATE_ROWS:-200000}
stability_rows=${STABILITY_ROWS:-200}
stability_mib=${STABILITY_MIB:-2}
for tool in wrk; do command -v $tool >/dev/null || { echo "bench: install $tool" >&2; exit 1; }; done
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
psql() { "$PGBIN/psql" "$@"; }
if [ -n "${BENCH_BINARY:-}" ]; then
  bin=$BENCH_BINARY
else
  bin=$(swift build -c release --show-bin-path)/afterimage
  [ -x "$bin" ] || swift build -c release --product afterimage
fi

work=$(mktemp -d /tmp/afterimage-bench.XXXXXX); chmod 755 "$work"
pid=
stop_daemon() { if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; pid=; fi; }
cleanup() { stop_daemon; scripts/pg.sh stop "$work/pg" >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pg_port=$(free_port); http_port=$(free_port)
scripts/pg.sh start "$work/pg" "$pg_port" bench
url=$(scripts/pg.sh url "$work/pg" "$pg_port" bench)
server=${url%/*}
psql -q "$server/postgres" -c "CREATE DATABASE pgbench_bench"
anchor_url="$server/pgbench_bench"
secret="whsec_$(head -c 24 /dev/urandom | base64)"
token="bench_$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"

export AFTERIMAGE_DATABASE_URL=$url AFTERIMAGE_HTTP_PORT=$http_port AFTERIMAGE_WORKERS_COUNT=0 \
  AFTERIMAGE_STORAGE_ENDPOINT=http://127.0.0.1:9 AFTERIMAGE_STORAGE_BUCKET=b AFTERIMAGE_STORAGE_ACCESS_KEY_ID=a \
  AFTERIMAGE_STORAGE_SECRET_ACCESS_KEY=s AFTERIMAGE_REPLICATE_WEBHOOK_SECRET=$secret AFTERIMAGE_LOG_LEVEL=notice \
  AFTERIMAGE_API_TOKENS=$token AFTERIMAGE_DATABASE_POOL_SIZE=${POOL:-8} AFTERIMAGE_WORKERS_SPOOL_DIR=$work/spool \
  AFTERIMAGE_HTTP_CONNECTION_LIMIT=512 AFTERIMAGE_RETENTION_INTERVAL=${RETENTION_INTERVAL:-1}
"$bin" migrate >/dev/null

echo "bench: seeding $replicate_rows Replicate-like and $stability_rows Stability-like (${stability_mib} MiB) settled deliveries" >&2
seed_started=$(date +%s)
psql -q -v ON_ERROR_STOP=1 "$url" <<SQL
-- The lookup set: Replicate predictions bench-1..N, one stored output each.
INSERT INTO predictions (provider, id, status, model, version, input, created_at, started_at, completed_at, first_seen_at)
SELECT 'replicate', 'bench-' || g, 'succeeded', 'black-forest-labs/flux-schnell', 'v1',
       jsonb_build_object('prompt', 'a lighthouse at dusk, oil on canvas', 'seed', g),
       now() - interval '9 days', now() - interval '9 days', now() - interval '9 days', now() - interval '9 days'
FROM generate_series(1, $replicate_rows) g;
INSERT INTO assets (provider, prediction_id, pointer, output_index, source_url, state, storage_key, size_bytes, sha256,
                    content_type, stored_at, attempts)
SELECT 'replicate', 'bench-' || g, '/output/0', 0, 'https://replicate.delivery/xezq/' || md5(g::text) || '/out-0.webp', 'stored',
       'replicate/bench-' || g || '/0.webp', 123456, md5(g::text) || md5(g::text), 'image/webp', now() - interval '9 days', 1
FROM generate_series(1, $replicate_rows) g;
-- Their webhook bodies, shaped like Replicate's (about 1.3 KB), received 8 to 20 days ago.
INSERT INTO deliveries (provider, webhook_id, body, received_at, outcome, prediction_id)
SELECT 'replicate', 'msg_seed_' || g, convert_to(jsonb_build_object(
         'id', 'bench-' || g, 'model', 'black-forest-labs/flux-schnell',
         'version', 'bf2f2e683d03a9549f484a37a0df1581514b28426ab6f4a3bd5d7b0a6b2ab2b3', 'status', 'succeeded',
         'input', jsonb_build_object('prompt', 'a lighthouse at dusk, oil on canvas, dramatic light, seed ' || g,
                                     'num_outputs', 1, 'aspect_ratio', '1:1', 'output_format', 'webp', 'output_quality', 80,
                                     'go_fast', true, 'megapixels', '1', 'num_inference_steps', 4),
         'output', jsonb_build_array('https://replicate.delivery/xezq/' || md5(g::text) || '/out-0.webp'),
         'logs', 'Using seed: ' || g || E'\n' || 'running quantized prediction' || E'\n'
                 || repeat('100%|██████████| 4/4 [00:00<00:00,  9.41it/s]' || E'\n', 2) || 'Total safe images: 1 out of 1',
         'error', NULL, 'data_removed', false, 'source', 'api',
         'urls', jsonb_build_object('get', 'https://api.replicate.com/v1/predictions/' || md5(g::text),
                                    'cancel', 'https://api.replicate.com/v1/predictions/' || md5(g::text) || '/cancel',
                                    'stream', 'https://stream.replicate.com/v1/files/' || md5(g::text || 's')),
         'metrics', jsonb_build_object('predict_time', 0.93, 'image_count', 1, 'total_time', 1.42),
         'webhook', 'https://afterimage.example.com/v1/webhooks/replicate', 'webhook_events_filter', jsonb_build_array('completed'),
         'created_at', to_char(now() - interval '8 days' - g * interval '3 seconds', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
         'started_at', to_char(now() - interval '8 days' - g * interval '3 seconds', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
         'completed_at', to_char(now() - interval '8 days' - g * interval '3 seconds', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))::text, 'UTF8'),
       now() - interval '8 days' - g * interval '3 seconds', 'accepted', 'bench-' || g
FROM generate_series(1, $replicate_rows) g;
-- Stability's inline results: a few MiB of base64 of random (incompressible) bytes each.
INSERT INTO predictions (provider, id, status, created_at, completed_at, first_seen_at)
SELECT 'stability', 'stab-' || g, 'succeeded', now() - interval '9 days', now() - interval '9 days', now() - interval '9 days'
FROM generate_series(1, $stability_rows) g;
INSERT INTO assets (provider, prediction_id, pointer, output_index, source_url, state, storage_key, size_bytes, sha256,
                    content_type, stored_at, attempts)
SELECT 'stability', 'stab-' || g, '/artifacts/0/base64', 0, 'inline:stab-' || g, 'stored', 'stability/stab-' || g || '/0.png',
       3 << 19, md5(g::text) || md5(g::text), 'image/png', now() - interval '9 days', 1
FROM generate_series(1, $stability_rows) g;
INSERT INTO deliveries (provider, webhook_id, body, received_at, outcome, prediction_id)
SELECT 'stability', 'stab-' || g || ':seed', convert_to('{"artifacts":[{"base64":"'
         || (SELECT translate(encode(decode(string_agg(md5(g::text || '/' || i || '/' || random()::text), ''), 'hex'), 'base64'), E'\n', '')
             FROM generate_series(1, $stability_mib * 49152) i)
         || '","seed":' || g || ',"finishReason":"SUCCESS"}]}', 'UTF8'),
       now() - interval '8 days' - g * interval '7 minutes', 'accepted', 'stab-' || g
FROM generate_series(1, $stability_rows) g;
-- What is put back before each side: the backlog as seeded.
CREATE TABLE bench_bodies AS SELECT id, body FROM deliveries;
ALTER TABLE bench_bodies ADD PRIMARY KEY (id);
SQL
psql -tAq "$url" -c "SELECT provider, count(*), round(avg(octet_length(body))), pg_size_pretty(sum(octet_length(body))) FROM deliveries GROUP BY 1 ORDER BY 1" \
  | sed 's/^/bench: seeded /' >&2
echo "bench: seeded in $(( $(date +%s) - seed_started )) s" >&2
"$PGBIN/pgbench" -q -i -s 10 "$anchor_url" >/dev/null 2>&1
psql -q "$anchor_url" -c "CREATE TABLE bench_rows (id bigserial PRIMARY KEY, payload text NOT NULL, created_at timestamptz NOT NULL DEFAULT now())"
echo "INSERT INTO bench_rows (payload) VALUES ('{\"id\":\"bench\",\"status\":\"succeeded\"}');" > "$work/insert.sql"

# The backlog as seeded: bodies back, the walk's position and the tally from the start. The rows intake
# added stay (the table grows as a busy one does; they are young, so the walk never reads them): deleting
# deliveries makes PostgreSQL check each against assets.delivery_id, which has no index, and takes minutes.
restore() {
  psql -q -v ON_ERROR_STOP=1 "$url" <<'SQL'
UPDATE deliveries d SET body = b.body, body_pruned_at = NULL, body_sha256 = NULL, body_size = NULL
FROM bench_bodies b WHERE b.id = d.id AND d.body_pruned_at IS NOT NULL;
UPDATE lifecycle_cursors SET position = 0, position_at = NULL, held_back_at = NULL, held_back_from = NULL, rescanned_at = now();
UPDATE body_bytes_tally SET kept_bytes = 0, through_at = '-infinity', through_id = 0;
DELETE FROM body_bytes_pruned;
SQL
  psql -q "$url" -c "VACUUM ANALYZE deliveries" -c "VACUUM ANALYZE assets" -c "VACUUM ANALYZE predictions" -c "CHECKPOINT"
}

postmaster=$(head -1 "$work/pg/data/postmaster.pid")
tick=$(getconf CLK_TCK)
proc_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
pg_ticks() {
  local total
  total=$(awk '{print $14 + $15 + $16 + $17}' "/proc/$postmaster/stat")
  for child in $(pgrep -P "$postmaster"); do total=$((total + $(proc_ticks "$child"))); done
  echo "$total"
}
per_unit() { python3 -c "print(round(($2) * 1e6 / $tick / max(1, $1)))"; }
pruned() { psql -tAq "$url" -c "SELECT count(*) FROM deliveries WHERE body_pruned_at IS NOT NULL"; }
wrk_field() { awk -v k="$2" '$1==k {print $2}' "$1"; }

results="$work/results.tsv"
: > "$results"
measure() {  # ROUND SIDE(off|on) BODIES_SECONDS
  local round=$1 side=$2
  restore
  python3 bench/intake/make_requests.py "$secret" $((duration * 25000)) "$work/requests.tsv"
  AFTERIMAGE_RETENTION_DELIVERY_BODIES=$3 "$bin" serve > "$work/daemon-$side-$round.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 100); do curl -sf "127.0.0.1:$http_port/healthz" >/dev/null && break; sleep 0.1; done
  BENCH_N=$replicate_rows BENCH_TOKEN=$token wrk -t2 -c64 -d3s -s bench/lookup/lookup.lua "http://127.0.0.1:$http_port" >/dev/null
  local p0; p0=$(pruned)
  local before d0 g0 d1 g1 after
  before=$(psql -tAq "$url" -c "SELECT count(*) FROM deliveries")
  d0=$(proc_ticks "$pid"); g0=$(pg_ticks)
  wrk -t2 -c64 -d"${duration}s" --latency -s bench/intake/webhooks.lua "http://127.0.0.1:$http_port" -- "$work/requests.tsv" 2 > "$work/intake.txt"
  d1=$(proc_ticks "$pid"); g1=$(pg_ticks)
  after=$(psql -tAq "$url" -c "SELECT count(*) FROM deliveries")
  local acks=$((after - before)) p1; p1=$(pruned)
  BENCH_N=$replicate_rows BENCH_TOKEN=$token wrk -t2 -c64 -d"${duration}s" --latency -s bench/lookup/lookup.lua \
    "http://127.0.0.1:$http_port" > "$work/lookup.txt"
  local p2; p2=$(pruned)
  local errors; errors=$(cat "$work/intake.txt" "$work/lookup.txt" | awk '/Non-2xx/ {s += $5} END {print s + 0}')
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$side" \
    "$(awk '/Requests\/sec/ {print $2}' "$work/intake.txt")" "$(wrk_field "$work/intake.txt" 99%)" \
    "$(per_unit "$acks" "$g1 - $g0")" "$(per_unit "$acks" "$d1 - $d0")" \
    "$(awk '/Requests\/sec/ {print $2}' "$work/lookup.txt")" "$(wrk_field "$work/lookup.txt" 99%)" \
    "$((p1 - p0))/$((p2 - p1))" "$errors" >> "$results"
  echo "round $round $side: load average $(cut -d" " -f1-3 /proc/loadavg)"
  tail -1 "$results" | awk -F'\t' '{printf "round %s %-3s: intake %s acks/s (p99 %s, PostgreSQL %s µs and daemon %s µs per ack) | lookups %s/s (p99 %s) | bodies pruned during intake/lookups %s | non-2xx %s\n", $1, $2, $3, $4, $5, $6, $7, $8, $9, $10}'
  stop_daemon
}

for round in $(seq 1 "$rounds"); do
  measure "$round" off 0
  measure "$round" on 604800
  "$PGBIN/pgbench" -n -c 64 -j 2 -T "$duration" -f "$work/insert.sql" "$anchor_url" > "$work/pgbench-insert.txt" 2>&1
  "$PGBIN/pgbench" -S -n -c 64 -j 2 -T "$duration" "$anchor_url" > "$work/pgbench-select.txt" 2>&1
  printf '%s\tanchor\t%s\t%s\n' "$round" "$(awk '/^tps/ {print $3; exit}' "$work/pgbench-insert.txt")" \
    "$(awk '/^tps/ {print $3; exit}' "$work/pgbench-select.txt")" >> "$results"
  echo "round $round anchors: pgbench insert $(tail -1 "$results" | cut -f3) tps, pgbench -S $(tail -1 "$results" | cut -f4) tps"
done

python3 - "$results" <<'PY'
import sys
rows = [line.rstrip("\n").split("\t") for line in open(sys.argv[1])]
def ms(v):
    for unit, f in (("us", 0.001), ("ms", 1.0), ("s", 1000.0)):
        if v.endswith(unit): return float(v[: -len(unit)]) * f
    return float("nan")
print("\nround | intake on/off | intake p99 off → on | intake/pgbench-insert off, on | lookups on/off | lookup p99 off → on | lookups/pgbench -S off, on")
for r in sorted({row[0] for row in rows}, key=int):
    side = {row[1]: row for row in rows if row[0] == r}
    off, on, anchor = side["off"], side["on"], side["anchor"]
    ins, sel = float(anchor[2]), float(anchor[3])
    print(f"{r} | {float(on[2]) / float(off[2]):.2f} | {ms(off[3]):.1f} → {ms(on[3]):.1f} ms | "
          f"{float(off[2]) / ins:.2f}, {float(on[2]) / ins:.2f} | {float(on[6]) / float(off[6]):.2f} | "
          f"{ms(off[7]):.1f} → {ms(on[7]):.1f} ms | {float(off[6]) / sel:.2f}, {float(on[6]) / sel:.2f}")
PY
