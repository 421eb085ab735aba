#!/usr/bin/env bash
# `make test`: every test, against a throwaway PostgreSQL and SeaweedFS on free loopback ports.
# Both servers are stopped and their files removed whatever happens; the exit status is swift test's.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
scripts/setup.sh
export WEED="$root/.venv/bin/weed"
# Every import declared for its target (a missing one builds only by luck of the build order).
python3 scripts/check-imports.py

work=$(mktemp -d /tmp/afterimage-test.XXXXXX)
chmod 755 "$work"   # the cluster runs as `postgres` when we are root and must reach its folder
cleanup() {
  scripts/s3.sh stop "$work/s3" >/dev/null 2>&1 || true
  scripts/pg.sh stop "$work/pg" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

# A free port (and, for SeaweedFS, a run of 12 free ports from its base).
free_ports() {
  python3 - "$1" <<'PY'
import random, socket, sys
n = int(sys.argv[1])
def free(p):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p)); return True
    except OSError:
        return False
    finally:
        s.close()
for _ in range(500):
    base = random.randint(20000, 50000)
    if all(free(base + i) for i in range(n)):
        print(base); break
else:
    sys.exit("no free ports")
PY
}

PG_PORT=$(free_ports 1)
scripts/pg.sh start "$work/pg" "$PG_PORT" afterimage_test
S3_PORT=$(free_ports 12)
S3_ACCESS=test$RANDOM
S3_SECRET=$(head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n')
scripts/s3.sh start "$work/s3" "$S3_PORT" "$S3_ACCESS" "$S3_SECRET" afterimage-test

export AFTERIMAGE_TEST_DATABASE_URL=$(scripts/pg.sh url "$work/pg" "$PG_PORT" afterimage_test)
export AFTERIMAGE_TEST_S3_ENDPOINT="http://127.0.0.1:$S3_PORT"
export AFTERIMAGE_TEST_S3_REGION=us-east-1
export AFTERIMAGE_TEST_S3_BUCKET=afterimage-test
export AFTERIMAGE_TEST_S3_ACCESS_KEY_ID=$S3_ACCESS
export AFTERIMAGE_TEST_S3_SECRET_ACCESS_KEY=$S3_SECRET

swift build --build-tests
export AFTERIMAGE_BINARY="$(swift build --show-bin-path)/afterimage"

# The unit under a real systemd (IntegrationTests.NspawnServiceTests) needs the installable binary
# (`make build`'s, Swift runtime linked in; debug here, to keep CI short) and the container root
# (scripts/nspawn.sh, cached outside the repository). Both are made when this run may include that
# suite: no --filter, or a --filter pattern that matches or names it. When the root cannot be made the
# suite fails and says why; it is never skipped.
includes_nspawn=1
filters=()
for ((i = 1; i <= $#; i++)); do
  case "${!i}" in
    --filter) j=$((i + 1)); filters+=("${!j:-}") ;;
    --filter=*) filters+=("${!i#--filter=}") ;;
  esac
done
if [ ${#filters[@]} -gt 0 ]; then
  includes_nspawn=0
  for pattern in "${filters[@]}"; do
    if [[ "IntegrationTests.NspawnServiceTests" =~ $pattern || "$pattern" == *NspawnServiceTests* ]]; then
      includes_nspawn=1
    fi
  done
fi
if [ "$includes_nspawn" = 1 ]; then
  make -s build CONFIGURATION=debug
  export AFTERIMAGE_STATIC_BINARY="$root/.build-static/debug/afterimage"
  if nspawn_root=$(scripts/nspawn.sh root 2>"$work/nspawn.err"); then
    cat "$work/nspawn.err" >&2
    export AFTERIMAGE_NSPAWN_ROOT=$nspawn_root
  else
    cat "$work/nspawn.err" >&2
    AFTERIMAGE_NSPAWN_UNAVAILABLE=$(tail -n 1 "$work/nspawn.err")
    export AFTERIMAGE_NSPAWN_UNAVAILABLE
  fi
fi

swift test --skip-build "$@"
