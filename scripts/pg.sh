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
#
# As root, DIR must be reachable by `postgres`. A clone under a private home directory (/root is 0700)
# is not, and opening the home directory up is not ours to do behind the user's back: the cluster then
# lives under $AFTERIMAGE_PG_RELOCATE_DIR (default /var/lib/postgresql/afterimage, beside postgres's own
# home), in a folder named after DIR, and DIR becomes a symbolic link to it. Remove both to start afresh:
#   rm -rf "$(readlink -f DIR)" DIR
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

# The server runs from / so that a caller's private working directory is never in its way.
as_owner() {
  if [ "$(id -u)" = 0 ]; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi
}

# Where the cluster lives when `postgres` cannot reach DIR (see above); prints nothing when it can.
relocation_target() {
  local parent
  parent=$(cd "$(dirname "$1")" && pwd -P)
  as_owner test -x "$parent" && return 0
  local base=${AFTERIMAGE_PG_RELOCATE_DIR:-/var/lib/postgresql/afterimage}
  local logical
  logical=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
  # Named after the clone (DIR's grandparent: /root/afterimage/.local/pg gives afterimage-…) and unique to DIR.
  local clone
  clone=$(printf %s "$(basename "$(dirname "$(dirname "$logical")")")" | tr -c 'A-Za-z0-9._-' '_')
  echo "$base/$clone-$(printf %s "$logical" | sha256sum | cut -c1-12)"
}

if [ "$cmd" = start ] && [ "$(id -u)" = 0 ] && [ ! -L "$dir" ]; then
  mkdir -p "$(dirname "$dir")"
  target=$(relocation_target "$dir")
  if [ -n "$target" ]; then
    if [ -d "$dir" ] && [ -n "$(ls -A "$dir")" ]; then
      echo "pg.sh: the postgres user cannot reach $dir (a directory above it is private) and it already holds files;" >&2
      echo "pg.sh: move them out of the way, or run: mv '$dir' '$target' && ln -s '$target' '$dir'" >&2
      exit 1
    fi
    [ -d "$dir" ] && rmdir "$dir"
    [ -d "$(dirname "$target")" ] || install -d -m 755 "$(dirname "$target")"
    install -d -o postgres -g postgres -m 700 "$target"
    ln -s "$target" "$dir"
    printf '%s\n' "$dir" > "$target/linked-from"
    echo "pg.sh: the postgres user cannot reach $(dirname "$dir") (a directory above it is private, and stays so):" >&2
    echo "pg.sh: the cluster lives in $target; $dir links to it" >&2
  fi
fi
mkdir -p "$dir"
# The physical path: `postgres` must never have to go through the link (or the private folders above it).
dir=$(cd -P "$dir" && pwd)

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
