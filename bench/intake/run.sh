#!/usr/bin/env bash
# Intake benchmark (issue 3): durable webhook acks per second at 64 connections, side by side with
# pgbench inserting one row per transaction at 64 clients, on the same private PostgreSQL, in the same run,
# alternating A B A B so the shared machine's noise falls on both. Each round measures the Replicate route
# (Standard Webhooks HMAC) and the Ideogram route (Ed25519 over a SHA-256 of the body, issue 15) one after
# the other, on the same daemon, and prints their ratio.
#
#   bench/intake/run.sh [SECONDS_PER_ROUND] [ROUNDS]
#   PATHS="hmac ed25519" (default) chooses the routes measured; PERF_SECONDS profiles the first of them.
#
# Needs: wrk (apt), pgbench (Debian's postgresql package), the release binary (swift build -c release).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
duration=${1:-15}
rounds=${2:-2}
command -v wrk >/dev/null || { echo "install wrk (apt-get install wrk)" >&2; exit 1; }
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
bin=$(swift build -c release --show-bin-path)/afterimage
[ -x "$bin" ] || swift build -c release --product afterimage

work=$(mktemp -d /tmp/afterimage-bench.XXXXXX); chmod 755 "$work"
cleanup() { [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; scripts/pg.sh stop "$work/pg" >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pg_port=$(free_port); http_port=$(free_port)
scripts/pg.sh start "$work/pg" "$pg_port" bench
url=$(scripts/pg.sh url "$work/pg" "$pg_port" bench)
if [ -n "${FLUSH_DELAY_US:-}" ]; then
  # A supplementary measurement, not the issue's: every WAL flush made to cost FLUSH_DELAY_US more, as on a
  # disk where a flush takes milliseconds (network block storage), by restarting the cluster under strace,
  # which delays the fdatasync/fsync calls only (seccomp filter: no other syscall stops). Both sides of
  # the comparison run on this same server.
  command -v strace >/dev/null || { echo "install strace (apt-get install strace)" >&2; exit 1; }
  scripts/pg.sh stop "$work/pg"
  owner=$(stat -c %U "$work/pg/data")
  as_owner() { if [ "$(id -u)" = 0 ]; then runuser -u "$owner" -- "$@"; else "$@"; fi; }
  as_owner strace -f --seccomp-bpf -qq -o /dev/null -e trace=fdatasync,fsync \
    -e inject=fdatasync:delay_exit="$FLUSH_DELAY_US" -e inject=fsync:delay_exit="$FLUSH_DELAY_US" \
    "$PGBIN/pg_ctl" -D "$work/pg/data" -l "$work/pg/data/server.log" -w -t 60 -o "-p $pg_port" start >/dev/null &
  for _ in $(seq 1 200); do "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$pg_port" && break; sleep 0.1; done
  echo "every WAL flush delayed by ${FLUSH_DELAY_US} µs (strace fault injection)"
fi
secret="whsec_$(head -c 24 /dev/urandom | base64)"
# Ideogram's key for the run: pinned in the daemon (ideogram.public_keys), so nothing is fetched.
ed25519_seed=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
ed25519_public=$(python3 bench/intake/make_requests.py --public-key "$ed25519_seed")
paths=${PATHS:-hmac ed25519}
make_requests() {  # PATH COUNT OUT
  case "$1" in
    hmac) python3 bench/intake/make_requests.py "$secret" "$2" "$3";;
    ed25519) python3 bench/intake/make_requests.py --ed25519 "$ed25519_seed" "$2" "$3";;
    *) echo "unknown path $1 (hmac, ed25519)" >&2; exit 1;;
  esac
}

AFTERIMAGE_DATABASE_URL=$url AFTERIMAGE_HTTP_PORT=$http_port AFTERIMAGE_WORKERS_COUNT=0 \
AFTERIMAGE_STORAGE_ENDPOINT=http://127.0.0.1:9 AFTERIMAGE_STORAGE_BUCKET=b AFTERIMAGE_STORAGE_ACCESS_KEY_ID=a \
AFTERIMAGE_STORAGE_SECRET_ACCESS_KEY=s AFTERIMAGE_REPLICATE_WEBHOOK_SECRET=$secret AFTERIMAGE_LOG_LEVEL=warning \
AFTERIMAGE_IDEOGRAM_PUBLIC_KEYS=$ed25519_public \
AFTERIMAGE_DATABASE_POOL_SIZE=${POOL:-16} AFTERIMAGE_WORKERS_SPOOL_DIR=$work/spool \
  "$bin" serve > "$work/daemon.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do curl -sf "127.0.0.1:$http_port/healthz" >/dev/null && break; sleep 0.1; done

"$PGBIN/psql" -q "$url" -c "CREATE TABLE bench_rows (id bigserial PRIMARY KEY, payload text NOT NULL, created_at timestamptz NOT NULL DEFAULT now())"
echo "INSERT INTO bench_rows (payload) VALUES ('{\"id\":\"bench\",\"status\":\"succeeded\"}');" > "$work/insert.sql"

if [ -n "${PERF_SECONDS:-}" ]; then
  # Profile the daemon under load instead of measuring: perf samples (cpu-clock) while wrk runs.
  make_requests "${paths%% *}" $(((PERF_SECONDS + 4) * 25000)) "$work/requests.tsv"
  wrk -t2 -c64 -d$((PERF_SECONDS + 4))s -s bench/intake/webhooks.lua "http://127.0.0.1:$http_port" -- "$work/requests.tsv" 2 > "$work/wrk.txt" &
  wrk_pid=$!
  sleep 2
  perf record -F 999 -g -p "$pid" -o "${PERF_OUT:-/tmp/afterimage-intake.perf}" -- sleep "$PERF_SECONDS" 2>/dev/null
  wait "$wrk_pid"  # not the daemon, which runs until the trap stops it
  grep Requests "$work/wrk.txt"
  exit 0
fi
# CPU accounting from /proc, in clock ticks: a process's own time, and PostgreSQL's as the postmaster's
# (with the backends it has reaped) plus its live backends'. Per ack and per pgbench transaction, this shows
# where the machine's two cores go on each side.
postmaster=$(head -1 "$work/pg/data/postmaster.pid")
tick=$(getconf CLK_TCK)
proc_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
pg_ticks() {
  local total children
  total=$(awk '{print $14 + $15 + $16 + $17}' "/proc/$postmaster/stat")
  for child in $(pgrep -P "$postmaster"); do total=$((total + $(proc_ticks "$child"))); done
  echo "$total"
}
per_unit() { python3 -c "print(round(($2) * 1e6 / $tick / max(1, $1)))"; }

for round in $(seq 1 "$rounds"); do
  # More distinct webhooks than a round can send (25,000/s): a wrapped list would resend, and measure, duplicates.
  requests=${REQUESTS:-$((duration * 25000))}
  declare -A rps_of=()
  for path in $paths; do
    make_requests "$path" "$requests" "$work/requests.tsv"
    before=$("$PGBIN/psql" -tAq "$url" -c "SELECT count(*) FROM deliveries")
    daemon0=$(proc_ticks "$pid"); pg0=$(pg_ticks)
    wrk -t2 -c64 -d"${duration}s" --latency -s bench/intake/webhooks.lua "http://127.0.0.1:$http_port" -- "$work/requests.tsv" 2 > "$work/wrk.txt"
    daemon1=$(proc_ticks "$pid"); pg1=$(pg_ticks)
    after=$("$PGBIN/psql" -tAq "$url" -c "SELECT count(*) FROM deliveries")
    rps=$(awk '/Requests\/sec/ {print $2}' "$work/wrk.txt")
    p99=$(awk '$1=="99%" {print $2}' "$work/wrk.txt")
    p50=$(awk '$1=="50%" {print $2}' "$work/wrk.txt")
    non200=$(awk '/Non-2xx/ {print $5}' "$work/wrk.txt"); non200=${non200:-0}
    sent=$(awk '/requests in/ {print $1}' "$work/wrk.txt")
    [ "$sent" -le "$requests" ] || echo "warning: wrk sent $sent requests from a list of $requests; the rest were duplicates" >&2
    acks=$((after - before))
    rps_of[$path]=$rps
    echo "round $round $path CPU: per ack, daemon $(per_unit "$acks" "$daemon1 - $daemon0") µs and PostgreSQL $(per_unit "$acks" "$pg1 - $pg0") µs"
    echo "round $round $path: afterimage ${rps} acks/s (p50 ${p50}, p99 ${p99}, non-200 ${non200}, requests ${sent}, rows committed ${acks})"
  done
  children=$(pgrep -c -P "$postmaster"); pgb0=$(pg_ticks)
  "$PGBIN/pgbench" -n -c 64 -j 2 -T "$duration" -f "$work/insert.sql" "$url" > "$work/pgbench.txt" 2>&1
  # pgbench's backends count once the postmaster has reaped them (their time moves to its cutime).
  for _ in $(seq 1 100); do [ "$(pgrep -c -P "$postmaster")" -le "$children" ] && break; sleep 0.05; done
  pgb1=$(pg_ticks)
  tps=$(awk '/^tps/ {print $3; exit}' "$work/pgbench.txt")
  transactions=$(awk '/number of transactions actually processed/ {print $NF}' "$work/pgbench.txt")
  pglat=$(awk '/latency average/ {print $4 " " $5}' "$work/pgbench.txt")
  echo "round $round pgbench: ${tps} tps (avg ${pglat}); PostgreSQL $(per_unit "$transactions" "$pgb1 - $pgb0") µs per transaction"
  line="round $round ratios:"
  for path in $paths; do line="$line $path/pgbench $(python3 -c "print(round(${rps_of[$path]} / $tps, 2))")"; done
  if [ -n "${rps_of[hmac]:-}" ] && [ -n "${rps_of[ed25519]:-}" ]; then
    line="$line | ed25519/hmac $(python3 -c "print(round(${rps_of[ed25519]} / ${rps_of[hmac]}, 2))")"
  fi
  echo "$line"
done
