#!/usr/bin/env bash
# `make run`: the daemon on an embedded local default. A private PostgreSQL cluster and a SeaweedFS S3
# server live under .local/ (git-ignored); data is kept between runs. Ctrl-C stops all of it.
#
# Local credentials (a webhook secret per provider, an API token) are made on the first run, kept in
# .local/credentials/ (one file per key, named like the key as in $CREDENTIALS_DIRECTORY, mode 0600) and
# written into .local/config.json, which is made afresh at every start from the defaults below and every
# file in .local/credentials/ (so a file you add there, replicate-api_token say, reaches the daemon too).
#
# Environment:
#   AFTERIMAGE_BINARY        run this afterimage executable instead of building the release one (the tests
#                            pass their debug build)
#   AFTERIMAGE_RUN_HTTP_PORT / AFTERIMAGE_RUN_PG_PORT / AFTERIMAGE_RUN_S3_PORT   ports (8080, 15432, 18333)
#   AFTERIMAGE_RUN_PG_TUNE=0  keep initdb's PostgreSQL settings instead of the recommended ones (scripts/pg-tune.sh)
#   AFTERIMAGE_*             any configuration key, as for `afterimage serve`
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
scripts/setup.sh

local_dir="$root/.local"
credentials_dir="$local_dir/credentials"
mkdir -p "$local_dir/spool"
# As root, PostgreSQL runs as `postgres` and needs to pass through .local/ (scripts/pg.sh keeps the cluster
# elsewhere, behind a link, when a directory above the clone is private). The secrets inside are 0600/0700.
chmod 755 "$local_dir"
HTTP_PORT=${AFTERIMAGE_RUN_HTTP_PORT:-8080}
PG_PORT=${AFTERIMAGE_RUN_PG_PORT:-15432}
S3_PORT=${AFTERIMAGE_RUN_S3_PORT:-18333}
BUCKET=afterimage

random_hex() { head -c "$1" /dev/urandom | od -An -tx1 | tr -d ' \n'; }

# Credentials for the local store, made once and kept with its data.
if [ ! -f "$local_dir/s3-credentials" ]; then
  (umask 077 && printf 'ACCESS=local%s\nSECRET=%s\n' "$(random_hex 6)" "$(random_hex 24)" > "$local_dir/s3-credentials")
fi
# shellcheck disable=SC1091
. "$local_dir/s3-credentials"

# The credentials `make run` makes for you: a file in .local/credentials/ (named like the configuration
# key, `-` between its parts) and what to put in it. Add a line here for a new provider's webhook secret or
# another token key.
generated_credentials=(
  "replicate-webhook_secret whsec"
  "stability-webhook_secret whsec"
  "api-tokens token"
  "api-archive_tokens token"
)
new_credentials=()
(umask 077 && mkdir -p "$credentials_dir")
chmod 700 "$credentials_dir"
# An earlier make run kept its API token in .local/api-token: it moves here as it is (a console may be signed in with it).
if [ -s "$local_dir/api-token" ] && [ ! -e "$credentials_dir/api-tokens" ]; then
  mv "$local_dir/api-token" "$credentials_dir/api-tokens"
fi
for entry in "${generated_credentials[@]}"; do
  read -r name kind <<<"$entry"
  file="$credentials_dir/$name"
  [ -s "$file" ] && continue
  case "$kind" in
    whsec) value="whsec_$(head -c 32 /dev/urandom | base64 -w0)";;  # Standard Webhooks: whsec_ + base64
    token) value="tok_$(random_hex 24)";;
    *) echo "run: unknown credential kind $kind" >&2; exit 1;;
  esac
  (umask 077 && printf '%s\n' "$value" > "$file")
  new_credentials+=("$name")
done
chmod 600 "$credentials_dir"/*

if [ -n "${AFTERIMAGE_BINARY:-}" ]; then
  bin=$AFTERIMAGE_BINARY
  [ -x "$bin" ] || { echo "run: AFTERIMAGE_BINARY=$bin is not an executable file" >&2; exit 1; }
  echo "run: using $bin (AFTERIMAGE_BINARY: no build)" >&2
else
  echo "run: building (release)" >&2
  swift build -c release --product afterimage
  bin=$(swift build -c release --show-bin-path)/afterimage
fi

cleanup() {
  trap - EXIT INT TERM
  [ -n "${daemon_pid:-}" ] && kill "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null || true
  scripts/s3.sh stop "$local_dir/s3" || true
  scripts/pg.sh stop "$local_dir/pg" || true
}
trap cleanup EXIT INT TERM

scripts/pg.sh start "$local_dir/pg" "$PG_PORT" afterimage
# The README's recommended PostgreSQL settings (scripts/pg-tune.sh: shared_buffers a quarter of RAM, …);
# AFTERIMAGE_RUN_PG_TUNE=0 leaves initdb's.
if [ "${AFTERIMAGE_RUN_PG_TUNE:-1}" != 0 ]; then scripts/pg-tune.sh apply "$local_dir/pg" "$PG_PORT"; fi
scripts/s3.sh start "$local_dir/s3" "$S3_PORT" "$ACCESS" "$SECRET" "$BUCKET"

# The configuration: the local defaults, then every credential file as its key (a file's content is the
# value; lists such as api.tokens may hold several entries separated by spaces or new lines).
(umask 077 && HTTP_PORT=$HTTP_PORT S3_PORT=$S3_PORT BUCKET=$BUCKET ACCESS=$ACCESS SECRET=$SECRET \
  DATABASE_URL=$(scripts/pg.sh url "$local_dir/pg" "$PG_PORT" afterimage) SPOOL="$local_dir/spool" \
  python3 - "$local_dir/config.json.new" "$credentials_dir" <<'PY'
import json, os, re, sys
env = os.environ
config = {
    "http": {"host": "127.0.0.1", "port": int(env["HTTP_PORT"])},
    "database": {"url": env["DATABASE_URL"]},
    "storage": {"endpoint": f"http://127.0.0.1:{env['S3_PORT']}", "region": "us-east-1", "bucket": env["BUCKET"],
                "access_key_id": env["ACCESS"], "secret_access_key": env["SECRET"], "path_style": True},
    "workers": {"spool_dir": env["SPOOL"]},
}
path, credentials = sys.argv[1], sys.argv[2]
for name in sorted(os.listdir(credentials)):
    match = re.fullmatch(r"([a-z0-9]+)-([a-z0-9_]+)", name)
    if match:
        with open(os.path.join(credentials, name)) as f:
            config.setdefault(match[1], {})[match[2]] = " ".join(f.read().split())
with open(path, "w") as f:
    json.dump(config, f, indent=2)
    f.write("\n")
PY
)
mv "$local_dir/config.json.new" "$local_dir/config.json"

"$bin" migrate --config "$local_dir/config.json"

# Said once: the values when they were just made, where they live every time.
rel=${credentials_dir#"$root"/}
if [ ${#new_credentials[@]} -gt 0 ]; then
  echo "run: made local credentials (shown this once; kept in $rel/, mode 0600, and in .local/config.json):" >&2
  for name in "${new_credentials[@]}"; do
    printf 'run:   %-26s %s  (%s)\n' "${name/-/.}" "$(cat "$credentials_dir/$name")" "$rel/$name" >&2
  done
else
  echo "run: local credentials reused from $rel/ ($(cd "$credentials_dir" && ls | tr '\n' ' ' | sed 's/ $//'))" >&2
fi
echo "run: lookups need the API token: curl -H \"Authorization: Bearer \$(cat $rel/api-tokens)\" http://127.0.0.1:$HTTP_PORT/v1/predictions/replicate/ID" >&2
echo "run: console at http://127.0.0.1:$HTTP_PORT/ui/ (sign in with the API token); try it all from another terminal with: make demo" >&2
echo "run: afterimage serve on http://127.0.0.1:$HTTP_PORT (Ctrl-C stops the daemon, PostgreSQL and SeaweedFS)" >&2
"$bin" serve --config "$local_dir/config.json" &
daemon_pid=$!
wait "$daemon_pid"
