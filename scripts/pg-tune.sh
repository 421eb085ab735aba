#!/usr/bin/env bash
# The PostgreSQL settings the README recommends for Afterimage ("PostgreSQL settings"), applied to a private
# cluster of scripts/pg.sh with ALTER SYSTEM, and the cluster restarted when they changed (shared_buffers
# takes effect only at start). `make run` and bench/scale use it; the tests' throwaway clusters do not.
#
#   scripts/pg-tune.sh apply DIR PORT     apply, restart if anything changed
#   scripts/pg-tune.sh reset DIR PORT     back to initdb's settings (ALTER SYSTEM RESET ALL), restart if needed
#   scripts/pg-tune.sh print              the settings for this machine, one `name = value` a line
#
# Sized from this machine's memory, as for a server that runs PostgreSQL beside the daemon:
#   shared_buffers        a quarter of RAM, at most 8 GB: the lookup's index and heap pages stay in
#                         PostgreSQL's own cache instead of being copied in from the kernel's on every miss
#   effective_cache_size  three quarters of RAM: the planner may count on the kernel's cache too
#   random_page_cost      1.1: SSD or cached storage, where a random read costs about what a sequential one does
#   effective_io_concurrency 200: SSD
#   max_wal_size          4 GB, checkpoint_timeout 15 min: fewer checkpoints, so fewer full-page images in
#                         the WAL after each (intake writes to random pages of three tables' indexes)
#   wal_compression       lz4: smaller full-page images for the same reason
#   autovacuum_vacuum_scale_factor / _insert_scale_factor 0.02: on tables of millions of rows the defaults
#                         (20 %) let dead tuples and unset visibility bits pile up for weeks between vacuums
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PGBIN=${PGBIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}

settings() {
  local ram_mb shared
  ram_mb=$(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo)
  shared=$(( ram_mb / 4 )); [ "$shared" -le 8192 ] || shared=8192
  cat <<CONF
shared_buffers = ${shared}MB
effective_cache_size = $(( ram_mb * 3 / 4 ))MB
random_page_cost = 1.1
effective_io_concurrency = 200
max_wal_size = 4GB
checkpoint_timeout = 15min
wal_compression = lz4
autovacuum_vacuum_scale_factor = 0.02
autovacuum_vacuum_insert_scale_factor = 0.02
CONF
}

cmd=${1:?usage: pg-tune.sh apply|reset DIR PORT | print}
[ "$cmd" = print ] && { settings; exit 0; }
dir=${2:?DIR}; port=${3:?PORT}
url="postgresql://afterimage@127.0.0.1:$port/postgres"
auto() { "$PGBIN/psql" "$url" -tAc "SELECT coalesce(string_agg(name || '=' || setting, ' ' ORDER BY name), '') FROM pg_file_settings WHERE sourcefile LIKE '%postgresql.auto.conf'"; }
before=$(auto)
case "$cmd" in
apply)
  while IFS='=' read -r name value; do
    name=$(echo "$name" | tr -d ' '); value=$(echo "$value" | sed 's/^ *//; s/ *$//')
    "$PGBIN/psql" "$url" -qc "ALTER SYSTEM SET $name = '$value'" 2>/dev/null \
      || echo "pg-tune: this server refuses $name = $value; left as it was" >&2
  done < <(settings)
  ;;
reset) "$PGBIN/psql" "$url" -qc "ALTER SYSTEM RESET ALL" ;;
*) echo "usage: pg-tune.sh apply|reset DIR PORT | print" >&2; exit 64 ;;
esac
if [ "$(auto)" != "$before" ]; then
  echo "pg-tune: PostgreSQL settings changed ($cmd): restarting the cluster" >&2
  "$root/scripts/pg.sh" stop "$dir" >/dev/null
  "$root/scripts/pg.sh" start "$dir" "$port" postgres >/dev/null
fi
