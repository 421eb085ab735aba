#!/usr/bin/env bash
# A private PostgreSQL cluster on loopback, owned by a non-root user (initdb refuses root).
#
#   scripts/pg.sh start DIR PORT [DBNAME]   initdb on first use, start, create DBNAME; waits until ready
#   scripts/pg.sh stop DIR                  fast shutdown, waits
#   scripts/pg.sh url DIR PORT [DBNAME]     prints the libpq URI
#
# As root the cluster runs as the `postgres` system user (created by Debian's postgresql
# package), so DIR is made theirs. Authentication is `trust` on 127.0.0.1 only: the cluster is a
# local default for `make run` and the tests, never a production database.
set -euo pipefail
# Close every inherited descriptor above stderr before starting a server that outlives this script:
# a caller's pipe or socket kept open by the server would make the caller wait for ever (Foundation's
# Process on Linux learns of a child's exit from a socket the child inherits).
for fd in /proc/$$/fd/*; do
  fd=${fd##*/}
  [ "$fd" -gt 2 ] 2>/dev/null && eval "exec $fd>&-" 2>/dev/null || true
done
PGBIN=${PGBIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}
[ -x "$PGBIN/initdb" ] || { echo "pg.sh: PostgreSQL server binaries not found (apt install postgresql)" >&2; exit 1; }
PGUSER_NAME=afterimage

cmd=${1:?usage: pg.sh start|stop|url DIR [PORT] [DBNAME]}
dir=${2:?usage: pg.sh start|stop|url DIR [PORT] [DBNAME]}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)

as_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

case "$cmd" in
start)
  port=${3:?port}; db=${4:-afterimage}
  if [ "$(id -u)" = 0 ]; then chown postgres:postgres "$dir"; chmod 700 "$dir"; fi
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    as_owner "$PGBIN/initdb" -D "$dir/data" -U "$PGUSER_NAME" --auth=trust -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 \
      || { cat "$dir/initdb.log" >&2; exit 1; }
    cat >> "$dir/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
max_connections = 300
CONF
  fi
  if ! as_owner "$PGBIN/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
    as_owner "$PGBIN/pg_ctl" -D "$dir/data" -l "$dir/data/server.log" -w -t 60 -o "-p $port" start >/dev/null \
      || { tail -20 "$dir/data/server.log" >&2; exit 1; }
  fi
  exists=$("$PGBIN/psql" -h 127.0.0.1 -p "$port" -U "$PGUSER_NAME" -d postgres -tAc \
    "select 1 from pg_database where datname = '$db'")
  [ "$exists" = 1 ] || "$PGBIN/createdb" -h 127.0.0.1 -p "$port" -U "$PGUSER_NAME" "$db"
  ;;
stop)
  if [ -f "$dir/data/postmaster.pid" ]; then
    as_owner "$PGBIN/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >/dev/null || true
  fi
  ;;
url)
  echo "postgresql://$PGUSER_NAME@127.0.0.1:${3:?port}/${4:-afterimage}"
  ;;
*) echo "usage: pg.sh start|stop|url DIR [PORT] [DBNAME]" >&2; exit 64;;
esac
