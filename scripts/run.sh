#!/usr/bin/env bash
# `make run`: the daemon on an embedded local default. A private PostgreSQL cluster and a SeaweedFS S3
# server live under .local/ (git-ignored); data is kept between runs. Ctrl-C stops all of it.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
scripts/setup.sh

local_dir="$root/.local"
mkdir -p "$local_dir/spool"
chmod 755 "$local_dir"
PG_PORT=${AFTERIMAGE_RUN_PG_PORT:-15432}
S3_PORT=${AFTERIMAGE_RUN_S3_PORT:-18333}
BUCKET=afterimage

# Credentials for the local store, made once and kept with its data.
if [ ! -f "$local_dir/s3-credentials" ]; then
  umask 077
  printf 'ACCESS=local%s\nSECRET=%s\n' "$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')" \
    "$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')" > "$local_dir/s3-credentials"
  umask 022
fi
# shellcheck disable=SC1091
. "$local_dir/s3-credentials"
# An API token for the lookup API and the console (/ui/), made once; read it with `cat .local/api-token`.
if [ ! -f "$local_dir/api-token" ]; then
  (umask 077 && printf 'tok_%s\n' "$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')" > "$local_dir/api-token")
fi
API_TOKEN=$(cat "$local_dir/api-token")

echo "run: building (release)" >&2
swift build -c release --product afterimage
bin=$(swift build -c release --show-bin-path)/afterimage

cleanup() {
  trap - EXIT INT TERM
  [ -n "${daemon_pid:-}" ] && kill "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null || true
  scripts/s3.sh stop "$local_dir/s3" || true
  scripts/pg.sh stop "$local_dir/pg" || true
}
trap cleanup EXIT INT TERM

scripts/pg.sh start "$local_dir/pg" "$PG_PORT" afterimage
scripts/s3.sh start "$local_dir/s3" "$S3_PORT" "$ACCESS" "$SECRET" "$BUCKET"

umask 077
cat > "$local_dir/config.json" <<JSON
{
  "http": {"host": "127.0.0.1", "port": 8080},
  "database": {"url": "$(scripts/pg.sh url "$local_dir/pg" "$PG_PORT" afterimage)"},
  "storage": {"endpoint": "http://127.0.0.1:$S3_PORT", "region": "us-east-1", "bucket": "$BUCKET",
              "access_key_id": "$ACCESS", "secret_access_key": "$SECRET", "path_style": true},
  "workers": {"spool_dir": "$local_dir/spool"},
  "api": {"tokens": ["$API_TOKEN"]}
}
JSON
umask 022

"$bin" migrate --config "$local_dir/config.json"
echo "run: afterimage serve on http://127.0.0.1:8080 (Ctrl-C stops the daemon, PostgreSQL and SeaweedFS)" >&2
echo "run: console at http://127.0.0.1:8080/ui/ ; its API token is in .local/api-token" >&2
"$bin" serve --config "$local_dir/config.json" &
daemon_pid=$!
wait "$daemon_pid"
