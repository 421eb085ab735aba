#!/usr/bin/env bash
# Performance at scale (issue 17): every hot path at 10k, 1M and 10M stored predictions, each beside its
# anchor measured in the same run, printed as one table.
#
#   bench/scale/run.sh
#
# For each size N it seeds (once) a database of N predictions as a year of use leaves them (bench/scale/
# seed-*.sql: 1-4 outputs each, mixed states, realistic ids, URLs and delivery bodies pruned after 7 days as
# the default retention does, plus 100,000 pending assets), starts the release daemon on it, and measures:
#   - lookups/s, p50/p99 (wrk, 64 connections) for uniformly random ids and for the most recent 1 %;
#     the daemon's peak RSS during them; disk reads per request (/proc/diskstats) and CPU per request, with
#     who spent it (the daemon, wrk, PostgreSQL and the rest), for these and for the pgbench -S anchor;
#   - anchor: pgbench -S, 64 clients, at the scale whose pgbench_accounts has as many rows as predictions
#     (N / 100,000, at least 1); and between the two, the lookup's own statement sent by pgbench (64 clients,
#     uniform ids): PostgreSQL's ceiling for this lookup with no daemon in between;
#   - `assets list` pages (GET /v1/assets?after=ID&limit=100, the same query as the command) at random
#     positions across the whole table, unfiltered and with state=failed (1 % of the rows), 4 connections;
#   - worker claim latency p50/p99: the workers' claim statement (ArchiveQueue.claim, the same SQL: one
#     autocommit statement that turns off the WAL flush wait for itself) from 8 pgbench clients
#     (= workers.count) while 100,000 assets are pending, saturated and at BENCH_CLAIM_RATE claims/s;
#     anchor: pgbench -S with the same 8 clients, saturated and at that rate; the claimed rows are put back;
#   - intake acks/s and p99 (wrk, 64 connections, distinct signed webhooks; their rows are removed after), with
#     PostgreSQL's WAL bytes, full-page images and blocks read per ack; then p50/p99 at BENCH_INTAKE_ACK_RATE
#     acks/s beside pgbench -N (16 clients) at the rate reached;
#   - the database's size.
# Ratios: each figure against its anchor, and against the same figure at the smallest size of the run.
#
# Environment (all optional):
#   BENCH_SIZES="10000 1000000 10000000"  sizes to measure (seeding on the shared 2-core VM at load 10-14:
#                          1M in 5 minutes, 10M in 47 minutes and 25 GB; seeded once, see BENCH_KEEP_CLUSTER)
#   BENCH_KEEP_CLUSTER=DIR keep the PostgreSQL cluster in DIR (created when missing, started when stopped,
#                          left running afterwards): seeded databases and pgbench tables are reused by the
#                          next run. Without it a throwaway cluster is made and removed.
#   BENCH_PG_SETTINGS=recommended|default   recommended (default): the README's PostgreSQL settings
#                          (scripts/pg-tune.sh); default: initdb's
#   BENCH_PG_SET="max_wal_size=16GB ..."   reloadable settings to try on top of those
#   BENCH_DURATION=15      seconds per lookup and pgbench -S measurement
#   BENCH_INTAKE_SECONDS=60  seconds of intake per size (each begins right after a CHECKPOINT)
#   BENCH_INTAKE_PREWARM=1   read intake's random-key indexes into shared_buffers first (steady state)
#   BENCH_INTAKE_WARMUP=0    seconds of intake after the CHECKPOINT and before the measured run
#   BENCH_INTAKE_RATE=8000 distinct webhooks written per second of intake (more than the daemon acknowledges
#                          on this machine; wrk resends the list, as duplicates, if it runs out; non-2xx
#                          answers are counted in the table)
#   BENCH_INTAKE_ACK_RATE=1000  acks/s for intake's latency at a rate (16 connections, after the saturated run;
#                          0: skip)
#   BENCH_SECONDS_SMALL=10 seconds per claim and list measurement
#   BENCH_CLAIM_RATE=400   claims per second (over 8 clients) for the claim measurement at the workers' rate
#   BENCH_POOL=8           database.pool_size (the default)
#   BENCH_CACHE_BYTES      api.lookup_cache_bytes (default: the daemon's default)
#   BENCH_ONLY="lookup list claim intake"   which measurements
#   BENCH_BINARY           afterimage binary (default: swift build -c release)
#   BENCH_DB_SUFFIX=_x     measure databases scale_N_x instead of scale_N (e.g. a copy made with CREATE
#                          DATABASE scale_1000000_x TEMPLATE scale_1000000, for a branch whose migrations
#                          the kept databases must not receive)
#   BENCH_BYTES_ANCHOR=1   also run pgbench -S at the scale whose pgbench_accounts (heap and primary key) is
#                          as large as what a lookup reads from (predictions, assets and the index that joins them),
#                          for sizes of 1M and more: rows of equal count are not of equal size (a prediction
#                          keeps its input, ~900 B; a pgbench row is ~120 B), and once the lookup tables
#                          outgrow memory the row-matched anchor still sits in shared_buffers. 10M needs
#                          pgbench scale ≈ 1,400 (21 GB, initialised once in the kept cluster).
#   BENCH_RESULTS=FILE     also keep the raw results (JSON) there
#   BENCH_PROFILE=DIR      perf record -g (system-wide, 10 s) during the uniform lookup run, one file per size
# Needs wrk, pgbench, psql (Debian: wrk, postgresql, postgresql-client).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
SIZES=${BENCH_SIZES:-10000 1000000 10000000}
DURATION=${BENCH_DURATION:-15}
INTAKE_SECONDS=${BENCH_INTAKE_SECONDS:-60}
SMALL=${BENCH_SECONDS_SMALL:-10}
CLAIM_RATE=${BENCH_CLAIM_RATE:-400}
POOL=${BENCH_POOL:-8}
ONLY=${BENCH_ONLY:-lookup list claim intake}
SETTINGS=${BENCH_PG_SETTINGS:-recommended}
for tool in wrk pgbench psql curl python3; do command -v $tool >/dev/null || { echo "bench: $tool is not installed" >&2; exit 1; }; done
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
report() { python3 bench/scale/report.py "$@"; }
say() { echo "bench: $*" >&2; }
wants() { [[ " $ONLY " == *" $1 "* ]]; }

work=$(mktemp -d /tmp/afterimage-scale.XXXXXX)
chmod 755 "$work"
results=$work/results.json
daemon_pid=
rss_pid=
cleanup() {
  [ -n "$rss_pid" ] && kill "$rss_pid" 2>/dev/null || true
  [ -n "$daemon_pid" ] && kill "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null || true
  [ -z "${BENCH_KEEP_CLUSTER:-}" ] && scripts/pg.sh stop "$cluster" >/dev/null 2>&1 || true
  [ -n "${BENCH_RESULTS:-}" ] && [ -f "$results" ] && cp "$results" "$BENCH_RESULTS"
  rm -rf "$work"
}
trap cleanup EXIT INT TERM
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# --- the cluster: kept (BENCH_KEEP_CLUSTER) or throwaway; its port is remembered beside it
if [ -n "${BENCH_KEEP_CLUSTER:-}" ]; then
  cluster=$BENCH_KEEP_CLUSTER
  mkdir -p "$cluster"; chmod 755 "$cluster"
  [ -f "$cluster.port" ] || free_port > "$cluster.port"
  pg_port=$(cat "$cluster.port")
else
  cluster=$work/pg
  pg_port=$(free_port)
fi
scripts/pg.sh start "$cluster" "$pg_port" postgres >/dev/null
server="postgresql://afterimage@127.0.0.1:$pg_port"
if [ "$SETTINGS" = recommended ]; then scripts/pg-tune.sh apply "$cluster" "$pg_port"; else scripts/pg-tune.sh reset "$cluster" "$pg_port"; fi
# BENCH_PG_SET="name=value ...": settings to try on top (reloadable ones: ALTER SYSTEM, then a reload); the
# next run's pg-tune.sh puts back those it manages.
for setting in ${BENCH_PG_SET:-}; do
  psql "postgresql://afterimage@127.0.0.1:$pg_port/postgres" -qc "ALTER SYSTEM SET ${setting%%=*} = '${setting#*=}'"
done
[ -z "${BENCH_PG_SET:-}" ] || psql "postgresql://afterimage@127.0.0.1:$pg_port/postgres" -qc "SELECT pg_reload_conf()" >/dev/null
say "PostgreSQL: $(psql "$server/postgres" -tAc "SELECT string_agg(name || '=' || current_setting(name), ', ') FROM unnest(ARRAY['shared_buffers','effective_cache_size','random_page_cost','work_mem','max_wal_size','checkpoint_timeout']) name")"

if [ -n "${BENCH_BINARY:-}" ]; then
  binary=$BENCH_BINARY
else
  swift build -c release --product afterimage >&2
  binary="$(swift build -c release --show-bin-path)/afterimage"
fi
TOKEN="bench_$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
SECRET="whsec_$(head -c 24 /dev/urandom | base64)"

# wal_level for seeding: minimal while the seed files write (a table truncated in the same transaction is then
# written to its files without WAL), back to the default (replica) for the measurements. Both need a restart.
seed_wal() {
  [ "$(psql "$server/postgres" -tAc "SHOW wal_level")" = "$1" ] && return 0
  if [ "$1" = minimal ]; then
    psql "$server/postgres" -qc "ALTER SYSTEM SET wal_level = minimal" -qc "ALTER SYSTEM SET max_wal_senders = 0"
  else
    psql "$server/postgres" -qc "ALTER SYSTEM RESET wal_level" -qc "ALTER SYSTEM RESET max_wal_senders"
  fi
  scripts/pg.sh stop "$cluster" >/dev/null
  scripts/pg.sh start "$cluster" "$pg_port" postgres >/dev/null
}

# --- pgbench -S on as many bytes as the lookups read from (BENCH_BYTES_ANCHOR=1)
# Reads completed by the block device under the cluster (/proc/diskstats): what a request costs the disk
# once the working set outgrows memory. Per request = delta / requests, for a lookup run and its anchors.
disk_reads() {
  local dev; dev=$(basename "$(df --output=source "$cluster" | tail -1)")
  awk -v d="$dev" '$3 == d {print $4}' /proc/diskstats
}

# CPU time per request: the whole machine's busy time (/proc/stat, in 10 ms ticks) over a measured run, and
# the part of it that one process took (/proc/PID/stat utime + stime) or a load generator took (its rusage,
# /usr/bin/time). On 2 cores a saturated run is bound by the sum: this says which program spends it.
busy_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }
process_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rusage_ticks() { awk '{printf "%d", ($1 + $2) * 100}' "$1"; }

bytes_anchor() {
  local n=$1 url=$2 row_scale=$3 row_db=$4
  local lookup_bytes per_scale bytes_scale
  lookup_bytes=$(psql "$url" -tAc "SELECT pg_total_relation_size('predictions') + pg_relation_size('assets')
      + (SELECT coalesce(sum(pg_relation_size(indexrelid)), 0) FROM pg_index WHERE indrelid = 'assets'::regclass
         AND indexrelid::regclass::text = 'assets_provider_prediction_index_key')")
  per_scale=$(psql "$server/$row_db" -tAc "SELECT pg_total_relation_size('pgbench_accounts') / $row_scale")
  bytes_scale=$(( (lookup_bytes + per_scale - 1) / per_scale ))
  # The lookup tables grow a little from run to run (intake's rows are deleted, their space stays): a kept
  # pgbench database within 1 % of that scale is used rather than initialising 17 GB again.
  local kept
  kept=$(psql "$server/postgres" -tAc "SELECT substr(datname, 10)::int FROM pg_database WHERE datname ~ '^pgbench_s[0-9]+$'
      AND abs(substr(datname, 10)::int - $bytes_scale) * 100 <= $bytes_scale ORDER BY abs(substr(datname, 10)::int - $bytes_scale) LIMIT 1")
  [ -n "$kept" ] && bytes_scale=$kept
  local db=pgbench_s$bytes_scale
  if [ "$(psql "$server/postgres" -tAc "SELECT count(*) FROM pg_database WHERE datname = '$db'")" != 1 ]; then
    say "pgbench -i -s $bytes_scale (as many bytes as the lookup tables of $n: $((lookup_bytes / 1048576)) MiB)"
    local t0=$SECONDS
    seed_wal minimal
    psql "$server/postgres" -qc "CREATE DATABASE $db"
    pgbench -q -i -I dtGvp -s "$bytes_scale" "$server/$db" >/dev/null 2>&1 || { psql "$server/postgres" -qc "DROP DATABASE $db"; seed_wal replica; say "pgbench -i -s $bytes_scale failed"; exit 1; }
    seed_wal replica
    say "pgbench scale $bytes_scale initialised in $((SECONDS - t0)) s"
  fi
  say "$n: pgbench -S -c 64 -j 2 at scale $bytes_scale (bytes), 3 s warm-up + ${DURATION} s"
  pgbench -S -c 64 -j 2 -T 3 "$server/$db" >/dev/null 2>&1
  local reads0; reads0=$(disk_reads)
  rm -f "$work"/byteslog.*
  (cd "$work" && pgbench -S -c 64 -j 2 -T "$DURATION" -l --log-prefix="$work/byteslog" "$server/$db" > "$work/pgbench-bytes.txt" 2>/dev/null)
  local reads=$(( $(disk_reads) - reads0 ))
  report add "$results" "$n" pgbench_select_bytes "$(report pgbench "$work/pgbench-bytes.txt" "$work/byteslog")" \
    scale="$bytes_scale" mib=$((bytes_scale * per_scale / 1048576)) lookup_mib=$((lookup_bytes / 1048576)) disk_reads="$reads" seconds="$DURATION"
}

# Puts back the assets the claim measurement took, and vacuums the queue's index of their old entries.
reset_claims() {
  psql "$1" -q -c "UPDATE assets SET state = 'pending', claim_token = NULL, claimed_by = NULL, lease_expires_at = NULL,
                   attempts = attempts - 1 WHERE claimed_by = 'bench-scale' AND state = 'in_flight'" -c "VACUUM assets"
}

# --- one size
measure() {
  local n=$1 db=scale_$1${BENCH_DB_SUFFIX:-}
  local url="$server/$db"
  local scale=$(( n / 100000 )); [ "$scale" -ge 1 ] || scale=1
  local pgdb=pgbench_s$scale
  [ "$(psql "$server/postgres" -tAc "SELECT count(*) FROM pg_database WHERE datname = '$db'")" = 1 ] || psql "$server/postgres" -qc "CREATE DATABASE $db"
  AFTERIMAGE_DATABASE_URL=$url AFTERIMAGE_STORAGE_ENDPOINT=http://127.0.0.1:9 AFTERIMAGE_STORAGE_BUCKET=b \
    AFTERIMAGE_STORAGE_ACCESS_KEY_ID=a AFTERIMAGE_STORAGE_SECRET_ACCESS_KEY=s AFTERIMAGE_LOG_LEVEL=warning "$binary" migrate >/dev/null
  local seeded=0
  [ "$(psql "$url" -tAc "SELECT to_regclass('bench_seed') IS NOT NULL")" = t ] && seeded=$(psql "$url" -tAc "SELECT coalesce(max(n), 0) FROM bench_seed")
  if [ "$seeded" != "$n" ]; then
    [ "$(psql "$url" -tAc "SELECT count(*) FROM predictions")" = 0 ] || { say "$db holds rows but no finished seed of $n: drop it (DROP DATABASE $db) and run again"; exit 1; }
    say "seeding $n predictions into $db"
    local t0=$SECONDS
    seed_wal minimal
    # One session per table, side by side (2 cores: PostgreSQL's work per row is the cost, not the disk).
    local part pids=() failed=0
    for part in predictions assets deliveries; do
      psql "$url" -q -v n="$n" -f "bench/scale/seed-$part.sql" > "$work/seed-$part.log" 2>&1 &
      pids+=($!)
    done
    for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
    [ "$failed" = 0 ] || { cat "$work"/seed-*.log >&2; say "seeding $db failed: drop it (DROP DATABASE $db) and run again"; exit 1; }
    psql "$url" -q -v n="$n" -f bench/scale/seed-finish.sql >&2
    seed_wal replica
    psql "$url" -qc "VACUUM (ANALYZE)" -qc "CHECKPOINT"
    say "seeded $n in $((SECONDS - t0)) s"
  fi
  if [ "$(psql "$server/postgres" -tAc "SELECT count(*) FROM pg_database WHERE datname = '$pgdb'")" != 1 ]; then
    say "pgbench -i -s $scale"
    psql "$server/postgres" -qc "CREATE DATABASE $pgdb"
    pgbench -q -i -s "$scale" "$server/$pgdb" >/dev/null 2>&1
  fi
  psql "$url" -qc "VACUUM (ANALYZE)"
  local max_asset
  max_asset=$(psql "$url" -tAc "SELECT max(id) FROM assets")

  local http_port; http_port=$(free_port)
  env AFTERIMAGE_DATABASE_URL="$url" AFTERIMAGE_DATABASE_POOL_SIZE="$POOL" AFTERIMAGE_HTTP_PORT="$http_port" \
    AFTERIMAGE_STORAGE_ENDPOINT=http://127.0.0.1:9 AFTERIMAGE_STORAGE_BUCKET=b AFTERIMAGE_STORAGE_ACCESS_KEY_ID=a \
    AFTERIMAGE_STORAGE_SECRET_ACCESS_KEY=s AFTERIMAGE_API_TOKENS="$TOKEN" AFTERIMAGE_REPLICATE_WEBHOOK_SECRET="$SECRET" \
    AFTERIMAGE_WORKERS_COUNT=0 AFTERIMAGE_WORKERS_SPOOL_DIR="$work/spool" AFTERIMAGE_LOG_LEVEL=warning \
    AFTERIMAGE_HTTP_CONNECTION_LIMIT=512 ${BENCH_CACHE_BYTES:+AFTERIMAGE_API_LOOKUP_CACHE_BYTES=$BENCH_CACHE_BYTES} \
    "$binary" serve > "$work/daemon-$n.log" 2>&1 &
  daemon_pid=$!
  for _ in $(seq 1 200); do
    curl -fsS "http://127.0.0.1:$http_port/readyz" >/dev/null 2>&1 && break
    kill -0 "$daemon_pid" 2>/dev/null || { cat "$work/daemon-$n.log" >&2; exit 1; }
    sleep 0.1
  done
  local base="http://127.0.0.1:$http_port"
  local probe; probe=$(python3 -c "print('%010dq%010dabcde' % ((1 * 7919) % 1000000007, 1))")
  code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" "$base/v1/predictions/replicate/$probe")
  [ "$code" = 200 ] || { say "a lookup answered $code"; cat "$work/daemon-$n.log" >&2; exit 1; }

  if wants lookup; then
    local idle_rss; idle_rss=$(awk '/VmRSS/ {print int($2 / 1024)}' "/proc/$daemon_pid/status")
    ( peak=0; while kill -0 "$daemon_pid" 2>/dev/null; do
        r=$(awk '/VmRSS/ {print $2}' "/proc/$daemon_pid/status" 2>/dev/null || echo 0)
        [ "${r:-0}" -gt "$peak" ] && peak=$r && echo $((peak / 1024)) > "$work/rss-peak"
        sleep 0.2; done ) &
    rss_pid=$!
    local hot_from=$(( n - n / 100 + 1 ))
    for kind in uniform hot; do
      local from=1; [ "$kind" = hot ] && from=$hot_from
      say "$n: lookups, $kind ids ($from..$n), 3 s warm-up + ${DURATION} s"
      BENCH_FROM=$from BENCH_TO=$n BENCH_TOKEN=$TOKEN wrk -t2 -c64 -d3s -s bench/scale/scale.lua "$base" >/dev/null
      local reads0; reads0=$(disk_reads)
      local busy0 daemon0; busy0=$(busy_ticks); daemon0=$(process_ticks "$daemon_pid")
      BENCH_FROM=$from BENCH_TO=$n BENCH_TOKEN=$TOKEN /usr/bin/time -f "%U %S" -o "$work/wrk-$kind.cpu" \
        wrk -t2 -c64 -d"${DURATION}s" --latency -s bench/scale/scale.lua "$base" > "$work/wrk-$kind.txt" &
      local wrk_pid=$!
      if [ -n "${BENCH_PROFILE:-}" ] && [ "$kind" = uniform ]; then
        mkdir -p "$BENCH_PROFILE"; sleep 2
        perf record -a -g -F 499 -o "$BENCH_PROFILE/lookup-$n.perf" -- sleep 10 >/dev/null 2>&1 || say "perf record failed"
      fi
      wait "$wrk_pid"
      local reads=$(( $(disk_reads) - reads0 ))
      report add "$results" "$n" "lookup_$kind" "$(report wrk "$work/wrk-$kind.txt")" disk_reads="$reads" \
        busy_ticks=$(( $(busy_ticks) - busy0 )) daemon_ticks=$(( $(process_ticks "$daemon_pid") - daemon0 )) \
        client_ticks="$(rusage_ticks "$work/wrk-$kind.cpu")"
    done
    kill "$rss_pid" 2>/dev/null; wait "$rss_pid" 2>/dev/null || true; rss_pid=
    # PostgreSQL's own ceiling for the lookup: LookupStore.predictionSQL (the same statement, prepared) sent
    # by pgbench, 64 clients, uniform ids, with no daemon in between. The daemon's figure over this one is
    # what HTTP, the cache and the pool cost; this one over pgbench -S is what the two-table read costs.
    cat > "$work/lookup.sql" <<SQL
\set g random(1, $n)
SELECT p.status, p.model, p.version, p.input::text, p.error, p.data_removed, p.created_at, p.started_at,
       p.completed_at, p.first_seen_at, p.updated_at,
       a.id, a.provider, a.prediction_id, a.output_index, a.pointer, a.state, a.attempts, a.size_bytes, a.sha256,
       a.content_type, a.storage_key, a.failure_reason, a.created_at, a.updated_at, a.stored_at,
       greatest(0, ceil(extract(epoch FROM a.next_attempt_at - now())))::bigint,
       a.source_kind, CASE WHEN a.source_kind = 'url' THEN a.source_url END, a.finish_reason, a.seed, p.deleted_at
FROM predictions p LEFT JOIN assets a ON a.provider = p.provider AND a.prediction_id = p.id
WHERE p.provider = 'replicate' AND p.id = lpad(((:g::bigint * 7919) % 1000000007)::text, 10, '0') || 'q' || lpad(:g::text, 10, '0') || 'abcde'
ORDER BY a.output_index, a.id;
SQL
    say "$n: the lookup statement from pgbench, 64 clients, uniform ids, 3 s warm-up + ${DURATION} s"
    pgbench -n -M prepared -c 64 -j 2 -T 3 -f "$work/lookup.sql" "$url" >/dev/null 2>&1
    local reads0; reads0=$(disk_reads)
    (cd "$work" && pgbench -n -M prepared -c 64 -j 2 -T "$DURATION" -f lookup.sql "$url" > "$work/pgbench-lookup.txt" 2>&1) \
      || { cat "$work/pgbench-lookup.txt" >&2; exit 1; }
    report add "$results" "$n" lookup_sql "$(report pgbench "$work/pgbench-lookup.txt")" disk_reads=$(( $(disk_reads) - reads0 )) seconds="$DURATION"
    local cache_mib
    cache_mib=$(python3 -c "print(round(int('${BENCH_CACHE_BYTES:-16777216}') / 1048576))")
    report add "$results" "$n" lookup_rss "{\"idle_mib\": $idle_rss, \"peak_mib\": $(cat "$work/rss-peak" 2>/dev/null || echo 0), \"cache_mib\": $cache_mib}"
    say "$n: pgbench -S -c 64 -j 2 at scale $scale, 3 s warm-up + ${DURATION} s"
    pgbench -S -c 64 -j 2 -T 3 "$server/$pgdb" >/dev/null 2>&1
    local reads0; reads0=$(disk_reads)
    local busy0; busy0=$(busy_ticks)
    rm -f "$work"/selectlog64.*
    (cd "$work" && /usr/bin/time -f "%U %S" -o "$work/pgbench.cpu" \
      pgbench -S -c 64 -j 2 -T "$DURATION" -l --log-prefix="$work/selectlog64" "$server/$pgdb" > "$work/pgbench.txt" 2>/dev/null)
    local reads=$(( $(disk_reads) - reads0 ))
    report add "$results" "$n" pgbench_select "$(report pgbench "$work/pgbench.txt" "$work/selectlog64")" \
      scale="$scale" disk_reads="$reads" seconds="$DURATION" busy_ticks=$(( $(busy_ticks) - busy0 )) \
      client_ticks="$(rusage_ticks "$work/pgbench.cpu")"
  fi

  if wants list; then
    for kind in list list_failed; do
      local state=""; [ "$kind" = list_failed ] && state=failed
      say "$n: assets list pages ${state:+(state=$state) }at random positions, 4 connections, ${SMALL} s"
      BENCH_MODE=list BENCH_STATE=$state BENCH_FROM=1 BENCH_TO="$max_asset" BENCH_TOKEN=$TOKEN \
        wrk -t2 -c4 -d"${SMALL}s" --latency -s bench/scale/scale.lua "$base" > "$work/wrk-$kind.txt"
      report add "$results" "$n" "$kind" "$(report wrk "$work/wrk-$kind.txt")"
    done
  fi

  if wants claim; then
    # ArchiveQueue.claim's statement, as the workers send it: prepared, one round trip, the WAL flush wait
    # turned off for its own transaction by the no_flush_wait CTE (the token is the daemon's $1).
    cat > "$work/claim.sql" <<'SQL'
WITH no_flush_wait AS MATERIALIZED (SELECT set_config('synchronous_commit', 'off', true)), next AS (
    SELECT id FROM assets
    WHERE state = 'pending' AND next_attempt_at <= now()
    ORDER BY deadline NULLS LAST, id
    LIMIT 1
    FOR UPDATE SKIP LOCKED
)
UPDATE assets AS a
SET state = 'in_flight', claim_token = gen_random_uuid(), claimed_by = 'bench-scale',
    lease_expires_at = now() + make_interval(secs => 30), attempts = a.attempts + 1, updated_at = now()
FROM next, no_flush_wait WHERE a.id = next.id
RETURNING a.id, a.provider, a.prediction_id, a.output_index, a.source_url, a.deadline, a.attempts,
          a.spool_path, a.spool_sha256, a.spool_size, a.content_type, a.source_kind;
SQL
    local pending; pending=$(psql "$url" -tAc "SELECT count(*) FROM assets WHERE state = 'pending'")
    say "$n: claims, 8 clients, ${SMALL} s, $pending pending"
    rm -f "$work"/claimlog.*
    (cd "$work" && pgbench -n -M prepared -c 8 -j 2 -T "$SMALL" -f claim.sql -l --log-prefix="$work/claimlog" "$url" > "$work/claim.txt" 2>&1) \
      || { cat "$work/claim.txt" >&2; exit 1; }
    report add "$results" "$n" claim "$(report pglog "$work/claimlog")" clients=8 pending="$pending"
    # Each claim run starts from the queue as seeded. Without this the rate run came after the saturated one
    # had taken ~30,000 due assets from the head, leaving the assets backing off among them (10 % of the
    # queue, passed over inside the index on every claim) in front of the first due one: a different queue,
    # and claims that cost more for it (10,000 backing off in front: 410 buffers, 3 ms per claim).
    reset_claims "$url"
    # The same statement at a rate the workers could ask for it (BENCH_CLAIM_RATE claims/s over the 8 clients,
    # default 400: twice what the 1,000 × 200 KB archive benchmark stores per second on an idle day), so the
    # figure is what one claim costs rather than how a saturated 2-core machine queues eight clients.
    # pgbench -R logs each claim's latency from its scheduled start, schedule lag included.
    say "$n: claims at ${CLAIM_RATE}/s, 8 clients, ${SMALL} s"
    rm -f "$work"/claimratelog.*
    (cd "$work" && pgbench -n -M prepared -c 8 -j 2 -T "$SMALL" -R "$CLAIM_RATE" -f claim.sql -l --log-prefix="$work/claimratelog" "$url" > "$work/claim-rate.txt" 2>&1) \
      || { cat "$work/claim-rate.txt" >&2; exit 1; }
    report add "$results" "$n" claim_rate "$(report pglog "$work/claimratelog")" clients=8 rate="$CLAIM_RATE"
    # Anchor for both: pgbench's own select-only transaction with the same 8 clients, saturated and at the
    # same rate, on its table of this size: the latency this machine gives the cheapest statement there is.
    for mode in saturated rate; do
      local rate_flag=(); [ "$mode" = rate ] && rate_flag=(-R "$CLAIM_RATE")
      rm -f "$work"/selectlog.*
      (cd "$work" && pgbench -n -M prepared -S -c 8 -j 2 -T "$SMALL" "${rate_flag[@]}" -l --log-prefix="$work/selectlog" "$server/$pgdb" > "$work/select-8.txt" 2>&1) \
        || { cat "$work/select-8.txt" >&2; exit 1; }
      report add "$results" "$n" "claim_anchor_$mode" "$(report pglog "$work/selectlog")" clients=8 scale="$scale"
    done
    reset_claims "$url"
  fi

  if wants intake; then
    # Enough distinct webhooks for the run at BENCH_INTAKE_RATE acks/s; their timestamps must still be within
    # the signature's 5-minute tolerance when sent, so the file is written right before the run and no larger
    # than needed (a loaded machine writes a million lines in minutes: the last ones would then be refused).
    local requests=$(( INTAKE_SECONDS * ${BENCH_INTAKE_RATE:-8000} ))
    # BENCH_INTAKE_PREWARM=1: first read the five indexes intake inserts into at random positions (provider
    # ids and webhook ids) into shared_buffers, as a daemon that has been taking webhooks for a while has
    # them; otherwise the run starts with whatever the earlier measurements left there.
    if [ "${BENCH_INTAKE_PREWARM:-0}" = 1 ]; then
      say "$n: prewarming intake's random-key indexes"
      psql "$url" -q -v ON_ERROR_STOP=1 -c "CREATE EXTENSION IF NOT EXISTS pg_prewarm" \
        -c "SELECT pg_prewarm(i) FROM unnest(ARRAY['predictions_pkey', 'deliveries_provider_webhook_id_key', 'deliveries_prediction_idx',
              'assets_provider_prediction_pointer_key', 'assets_provider_prediction_index_key']::regclass[]) i" >/dev/null
    fi
    # Every size starts at the same point of the checkpoint cycle: just after one, where each page first
    # written costs a full-page image in the WAL. BENCH_INTAKE_WARMUP=SECONDS then takes webhooks for that
    # long before the measured run (steady state: the pages intake touches are cached and most have had their
    # image since the checkpoint); its rows are removed with the run's.
    psql "$url" -qc "CHECKPOINT"
    local since; since=$(psql "$url" -tAc "SELECT now()")
    local warmup=${BENCH_INTAKE_WARMUP:-0}
    if [ "$warmup" -gt 0 ]; then
      say "$n: intake warm-up, writing $(( warmup * ${BENCH_INTAKE_RATE:-8000} )) signed webhooks"
      python3 bench/intake/make_requests.py "$SECRET" "$(( warmup * ${BENCH_INTAKE_RATE:-8000} ))" "$work/warmup.tsv"
      say "$n: intake warm-up, 64 connections, ${warmup} s"
      wrk -t2 -c64 -d"${warmup}s" --latency -s bench/intake/webhooks.lua "$base" -- "$work/warmup.tsv" 2 > "$work/wrk-warmup.txt"
      report add "$results" "$n" intake_warmup "$(report wrk "$work/wrk-warmup.txt")"
      rm -f "$work/warmup.tsv"
    fi
    # Enough distinct webhooks for the run at BENCH_INTAKE_RATE acks/s; their timestamps must still be within
    # the signature's 5-minute tolerance when sent, so the file is written right before the run and no larger
    # than needed (a loaded machine writes a million lines in minutes: the last ones would then be refused).
    say "$n: intake, writing $requests signed webhooks"
    python3 bench/intake/make_requests.py "$SECRET" "$requests" "$work/requests.tsv"
    # What PostgreSQL did for the acks (the profile of intake's cost per size): WAL records, full-page
    # images and bytes (pg_stat_wal), blocks read from outside shared_buffers and found in it
    # (pg_stat_database), checkpoints, all as deltas over the run.
    local pgstats="SELECT json_build_object('wal_records', w.wal_records, 'wal_fpi', w.wal_fpi, 'wal_bytes', w.wal_bytes,
        'blks_read', d.blks_read, 'blks_hit', d.blks_hit, 'checkpoints', b.checkpoints_timed + b.checkpoints_req)
      FROM pg_stat_wal w, pg_stat_database d, pg_stat_bgwriter b WHERE d.datname = current_database()"
    local before; before=$(psql "$url" -tAc "$pgstats")
    say "$n: intake, 64 connections, ${INTAKE_SECONDS} s"
    wrk -t2 -c64 -d"${INTAKE_SECONDS}s" --latency -s bench/intake/webhooks.lua "$base" -- "$work/requests.tsv" 2 > "$work/wrk-intake.txt"
    local after; after=$(psql "$url" -tAc "$pgstats")
    report add "$results" "$n" intake "$(report wrk "$work/wrk-intake.txt")"
    report add "$results" "$n" intake_pg "$(python3 -c "
import json, sys
b, a = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(json.dumps({k: float(a[k]) - float(b[k]) for k in a}))" "$before" "$after")"
    rm -f "$work/requests.tsv"
    # The p99 target is a latency, which a saturated run (64 connections queueing on 2 cores) does not show:
    # new webhooks of the same shapes at about BENCH_INTAKE_ACK_RATE acks/s, from 16 connections that each
    # pause 16,000 / rate ms, less the 4 ms an ack takes at that rate, after every answer (wrk's delay(); the
    # rate reached is reported beside it). Anchor: pgbench's write transaction (-N: an update, a select and an
    # insert, committed with the WAL flush as an ack is) from 16 clients at the rate reached, on its table of
    # this size: the latency this machine gives a small durable write.
    local ack_rate=${BENCH_INTAKE_ACK_RATE:-1000}
    if [ "$ack_rate" -gt 0 ]; then
      local pause=$(( 16000 / ack_rate - 4 )); [ "$pause" -ge 1 ] || pause=1
      say "$n: intake at ${ack_rate}/s, writing $(( INTAKE_SECONDS * ack_rate )) signed webhooks"
      python3 bench/intake/make_requests.py "$SECRET" "$(( INTAKE_SECONDS * ack_rate ))" "$work/requests.tsv"
      say "$n: intake at ${ack_rate}/s, 16 connections, ${INTAKE_SECONDS} s"
      wrk -t2 -c16 -d"${INTAKE_SECONDS}s" --latency -s bench/intake/webhooks.lua "$base" -- "$work/requests.tsv" 2 "$pause" \
        > "$work/wrk-intake-rate.txt"
      report add "$results" "$n" intake_rate "$(report wrk "$work/wrk-intake-rate.txt")" rate="$ack_rate"
      rm -f "$work/requests.tsv"
      local reached; reached=$(python3 -c "import json; print(max(1, round(json.load(open('$results'))['$n']['intake_rate']['rps'])))")
      say "$n: pgbench -N, 16 clients at ${reached}/s, ${INTAKE_SECONDS} s"
      rm -f "$work"/writelog.*
      (cd "$work" && pgbench -n -M prepared -N -c 16 -j 2 -T "$INTAKE_SECONDS" -R "$reached" -l --log-prefix="$work/writelog" "$server/$pgdb" \
        > "$work/pgbench-write.txt" 2>&1) || { cat "$work/pgbench-write.txt" >&2; exit 1; }
      report add "$results" "$n" intake_rate_anchor "$(report pglog "$work/writelog")" rate="$reached" scale="$scale"
    fi
    # The webhooks' rows go (bench ids start with "bench"; seeded ones with digits), so the size stays N.
    # session_replication_role skips the foreign-key check of assets.delivery_id for each deleted delivery
    # (a scan of assets per row: the column has no index, and these deliveries' assets are gone already).
    psql "$url" -q -v ON_ERROR_STOP=1 -c "SET session_replication_role = replica" -c "DELETE FROM assets WHERE prediction_id LIKE 'bench%'" \
      -c "DELETE FROM predictions WHERE id LIKE 'bench%'" -c "DELETE FROM deliveries WHERE received_at >= '$since'" \
      -c "VACUUM (ANALYZE) assets, predictions, deliveries"
  fi

  kill "$daemon_pid" 2>/dev/null; wait "$daemon_pid" 2>/dev/null || true; daemon_pid=
  report add "$results" "$n" size "$(psql "$url" -tAc "SELECT json_build_object(
      'database_mib', pg_database_size(current_database()) / 1048576,
      'predictions_mib', pg_total_relation_size('predictions') / 1048576,
      'assets_mib', pg_total_relation_size('assets') / 1048576,
      'deliveries_mib', pg_total_relation_size('deliveries') / 1048576,
      'pgbench_mib', (SELECT pg_database_size('$pgdb') / 1048576))")"
  # Last: reading 20 GB at random leaves the caches cold for whatever would come after it.
  if wants lookup && [ "${BENCH_BYTES_ANCHOR:-0}" = 1 ] && [ "$n" -ge 1000000 ]; then bytes_anchor "$n" "$url" "$scale" "$pgdb"; fi
}

seed_wal replica   # a seed cut short leaves the kept cluster at wal_level = minimal
for n in $SIZES; do measure "$n"; done
echo
echo "bench/scale: $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), PostgreSQL settings: $SETTINGS, pool $POOL"
report table "$results"
