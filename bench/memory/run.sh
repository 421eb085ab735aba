#!/usr/bin/env bash
# Memory under large bodies (issue 13, points 1 and 2): 24 concurrent 60 MiB POSTs to the Stability route
# (limit 64 MiB), unsigned, with forged signatures, and genuinely signed (accepted and recorded: decoded
# into the spool and copied to deliveries.body). For each trial it prints the daemon's idle RSS and its
# peak RSS during the trial side by side (the kernel's VmHWM, reset before each trial through
# /proc/PID/clear_refs), the growth and the ratio peak/idle, and what the clients were answered. The
# issue's target, for all three: growth well under 128 MiB.
#
#   bench/memory/run.sh [CLIENTS] [MIB_PER_BODY] [MODES]       (defaults: 24 60 "unsigned forged genuine")
#
# Needs: the release binary (swift build -c release), python3, root or the daemon's owner (clear_refs).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
clients=${1:-24}
mib=${2:-60}
modes=${3:-unsigned forged genuine}
bin=$(swift build -c release --show-bin-path)/afterimage
[ -x "$bin" ] || swift build -c release --product afterimage

work=$(mktemp -d /tmp/afterimage-bench.XXXXXX); chmod 755 "$work"
cleanup() { [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; scripts/pg.sh stop "$work/pg" >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pg_port=$(free_port); http_port=$(free_port)
scripts/pg.sh start "$work/pg" "$pg_port" bench >/dev/null
url=$(scripts/pg.sh url "$work/pg" "$pg_port" bench)
secret="whsec_$(head -c 24 /dev/urandom | base64)"

# No workers and an unreachable bucket: only intake runs. Everything else at its default, in particular
# http.max_inflight_body_bytes (256 MiB) and http.stability_max_body_bytes (64 MiB).
AFTERIMAGE_DATABASE_URL=$url AFTERIMAGE_HTTP_PORT=$http_port AFTERIMAGE_WORKERS_COUNT=0 \
AFTERIMAGE_STORAGE_ENDPOINT=http://127.0.0.1:9 AFTERIMAGE_STORAGE_BUCKET=b AFTERIMAGE_STORAGE_ACCESS_KEY_ID=a \
AFTERIMAGE_STORAGE_SECRET_ACCESS_KEY=s AFTERIMAGE_STABILITY_WEBHOOK_SECRET=$secret AFTERIMAGE_LOG_LEVEL=warning \
AFTERIMAGE_WORKERS_SPOOL_DIR=$work/spool \
  "$bin" serve > "$work/daemon.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do curl -sf "127.0.0.1:$http_port/healthz" >/dev/null && break; sleep 0.1; done
curl -sf "127.0.0.1:$http_port/healthz" >/dev/null || { cat "$work/daemon.log"; exit 1; }

kib() { awk -v k="$1" '$1 == k":" {print $2}' "/proc/$pid/status"; }
echo "$clients concurrent POSTs of $mib MiB to /v1/webhooks/stability (release build, default limits)"
printf '%-9s %10s %10s %10s %8s\n' trial "idle RSS" "peak RSS" growth peak/idle
for mode in $modes; do
  sleep 1
  idle=$(kib VmRSS)
  echo 5 > "/proc/$pid/clear_refs"   # VmHWM := current RSS
  python3 bench/memory/big_posts.py "$http_port" /v1/webhooks/stability "$mode" "$clients" $((mib << 20)) "$secret" > "$work/answers.txt"
  peak=$(kib VmHWM)
  printf '%-9s %7d MiB %7d MiB %7d MiB %8.2f\n' "$mode" $((idle / 1024)) $((peak / 1024)) $(((peak - idle) / 1024)) \
    "$(python3 -c "print($peak / $idle)")"
  cat "$work/answers.txt"
done
kill -0 "$pid" 2>/dev/null || { echo "the daemon died:"; cat "$work/daemon.log"; exit 1; }
