#!/usr/bin/env bash
# What would bring the claim's p99 under 5 ms: an experiment on a schema the daemon does not have (issue 17).
#
#   bench/scale/claim-lease.sh SERVER_URL [SOURCE_DB]
#
# Today a claim moves its asset from `pending` to `in_flight`. `state` is in the key or the predicate of most of
# the assets indexes, so the update cannot be HOT: every claim writes a new row version and an entry in six
# indexes (EXPLAIN (ANALYZE, WAL): 8 WAL records). The alternative measured here leaves `state` alone: a claim
# only writes the lease columns (token, holder, expiry, attempts), which no index holds, so with room on the
# page (fillfactor 80) the update is HOT: one heap record, no index entry. "In flight" would then mean
# "pending with a lease that has not run out", and an expired lease is simply claimable again; the claim skips
# leased rows by a heap check. Both designs run on copies of SOURCE_DB (default scale_10000, a bench/scale
# database with 100,000 pending assets; claims are flat in the table's size) prepared alike: the pending rows
# rewritten into fresh pages and vacuumed; the lease design also drops assets_leased_idx and sets fillfactor 80
# first.
#
# Each client alternates a claim and the worker's `markStored` of what it claimed (the statements of
# ArchiveQueue: the claim with its no-flush-wait CTE, the store with full durability), 8 clients (workers.count)
# at BENCH_CLAIM_RATE claims/s and as many stores; rounds alternate the designs (A B A B ...), each from the
# queue as seeded and after a CHECKPOINT. Reported: claim and store p50/p99 per round (pgbench -l, latency
# from the scheduled start, and the claim's also less its schedule lag), and one claim's WAL records,
# full-page images and bytes (EXPLAIN (ANALYZE, WAL)) in each design.
#
# Environment: BENCH_CLAIM_RATE=400, BENCH_SECONDS=30 per round, BENCH_ROUNDS=2 per design.
# The copies (claim_current, claim_lease) are dropped at the end.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
server=${1:?usage: claim-lease.sh SERVER_URL [SOURCE_DB]}
source_db=${2:-scale_10000}
rate=${BENCH_CLAIM_RATE:-400}
seconds=${BENCH_SECONDS:-30}
rounds=${BENCH_ROUNDS:-2}
work=$(mktemp -d /tmp/claim-lease.XXXXXX)
cleanup() {
  for design in current lease; do psql "$server/postgres" -qc "DROP DATABASE IF EXISTS claim_$design" >/dev/null 2>&1 || true; done
  rm -rf "$work"
}
trap cleanup EXIT INT TERM
say() { echo "claim-lease: $*" >&2; }

# The claim and the store, per design. :asset and :token are pgbench variables, set from the claim by \gset.
claim_current="WITH no_flush_wait AS MATERIALIZED (SELECT set_config('synchronous_commit', 'off', true)), next AS (
    SELECT id FROM assets WHERE state = 'pending' AND next_attempt_at <= now()
    ORDER BY deadline NULLS LAST, id LIMIT 1 FOR UPDATE SKIP LOCKED)
UPDATE assets AS a SET state = 'in_flight', claim_token = gen_random_uuid(), claimed_by = 'bench-lease',
    lease_expires_at = now() + make_interval(secs => 30), attempts = a.attempts + 1, updated_at = now()
FROM next, no_flush_wait WHERE a.id = next.id
RETURNING a.id AS asset, a.claim_token AS token, a.provider, a.prediction_id, a.output_index, a.source_url, a.deadline,
          a.attempts, a.spool_path, a.spool_sha256, a.spool_size, a.content_type, a.source_kind"
claim_lease="WITH no_flush_wait AS MATERIALIZED (SELECT set_config('synchronous_commit', 'off', true)), next AS (
    SELECT id FROM assets WHERE state = 'pending' AND next_attempt_at <= now()
      AND (lease_expires_at IS NULL OR lease_expires_at < now())
    ORDER BY deadline NULLS LAST, id LIMIT 1 FOR UPDATE SKIP LOCKED)
UPDATE assets AS a SET claim_token = gen_random_uuid(), claimed_by = 'bench-lease',
    lease_expires_at = now() + make_interval(secs => 30), attempts = a.attempts + 1, updated_at = now()
FROM next, no_flush_wait WHERE a.id = next.id
RETURNING a.id AS asset, a.claim_token AS token, a.provider, a.prediction_id, a.output_index, a.source_url, a.deadline,
          a.attempts, a.spool_path, a.spool_sha256, a.spool_size, a.content_type, a.source_kind"
store="UPDATE assets SET state = 'stored', storage_key = 'bench/' || id, size_bytes = 204800, sha256 = repeat('0', 64),
    content_type = 'image/webp', etag = 'e', stored_at = now(), claim_token = NULL, claimed_by = NULL, lease_expires_at = NULL,
    spool_path = NULL, last_error = NULL, failure_reason = NULL, updated_at = now()
WHERE id = :asset AND claim_token = :token
RETURNING extract(epoch FROM stored_at - created_at)::float8, coalesce(stored_at > deadline, false)"

for design in current lease; do
  psql "$server/postgres" -qc "DROP DATABASE IF EXISTS claim_$design" -qc "CREATE DATABASE claim_$design TEMPLATE $source_db"
  extra=""
  [ "$design" = lease ] && extra="DROP INDEX assets_leased_idx; ALTER TABLE assets SET (fillfactor = 80);"
  psql "$server/claim_$design" -q -v ON_ERROR_STOP=1 -c "$extra UPDATE assets SET updated_at = updated_at WHERE state = 'pending'" \
    -c "VACUUM (ANALYZE) assets"
  claim_var="claim_$design"
  # One script: a claim when phase is 0 (its id and token kept by \gset), else the store of that claim.
  # Transactions alternate per client, so even transaction numbers in the log are claims, odd ones stores.
  cat > "$work/$design.sql" <<SQL
\\if :phase = 0
${!claim_var}
\\gset
\\set phase 1
\\else
$store;
\\set phase 0
\\endif
SQL
  # One claim's WAL, as EXPLAIN (ANALYZE, WAL) counts it (the row is put back after).
  psql "$server/claim_$design" -tA -v ON_ERROR_STOP=1 -c "EXPLAIN (ANALYZE, BUFFERS, WAL, FORMAT JSON) ${!claim_var}" > "$work/$design-explain.json"
  psql "$server/claim_$design" -q -c "UPDATE assets SET state = 'pending', claim_token = NULL, claimed_by = NULL, lease_expires_at = NULL
      WHERE claimed_by = 'bench-lease'"
done

results=$work/results.txt
for round in $(seq 1 "$rounds"); do
  for design in current lease; do
    psql "$server/claim_$design" -qc "CHECKPOINT"
    rm -f "$work"/log.*
    say "round $round, $design: 8 clients, $rate claims/s and as many stores, ${seconds} s"
    (cd "$work" && pgbench -n -M prepared -c 8 -j 2 -T "$seconds" -R $(( rate * 2 )) -D phase=0 -f "$design.sql" -l \
        --log-prefix="$work/log" "$server/claim_$design" > "$work/pgbench.txt" 2>&1) || { cat "$work/pgbench.txt" >&2; exit 1; }
    python3 - "$here" "$work" "$design" "$round" >> "$results" <<'PY'
import glob, json, sys
sys.path.insert(0, sys.argv[1])
from report import percentile  # bench/scale/report.py
work, design, rnd = sys.argv[2:]
# pgbench -R -l: client transaction_no latency_us script epoch epoch_us schedule_lag_us. The latency counts from
# the scheduled start (a client still busy with its last store delays its next claim); less the lag it is the
# statement's own time.
claims, stores, own = [], [], []
for path in glob.glob(work + "/log.*"):
    for line in open(path):
        f = line.split()
        if len(f) >= 7 and f[2].isdigit():
            if int(f[1]) % 2 == 0:
                claims.append(int(f[2]) / 1000.0)
                own.append((int(f[2]) - int(f[6])) / 1000.0)
            else:
                stores.append(int(f[2]) / 1000.0)
pct = lambda v, q: percentile(v, q) if v else float("nan")
print(json.dumps({"design": design, "round": int(rnd), "claims": len(claims), "claim_p50": pct(claims, .5), "claim_p99": pct(claims, .99),
                  "own_p50": pct(own, .5), "own_p99": pct(own, .99),
                  "stores": len(stores), "store_p50": pct(stores, .5), "store_p99": pct(stores, .99)}))
PY
    # The next round starts from the queue as seeded (see run.sh's reset_claims: claims taken from the head
    # leave the assets backing off in front of the next due one).
    psql "$server/claim_$design" -q -c "UPDATE assets SET state = 'pending', storage_key = NULL, size_bytes = NULL, sha256 = NULL,
        content_type = NULL, etag = NULL, stored_at = NULL, claim_token = NULL, claimed_by = NULL, lease_expires_at = NULL,
        attempts = greatest(attempts - 1, 0) WHERE storage_key LIKE 'bench/%' OR claimed_by = 'bench-lease'" -c "VACUUM assets"
  done
done

echo
echo "claim-lease: $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), source $source_db, $rate claims/s"
python3 - "$results" "$work" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print("| design | round | claims | claim p50 ms | claim p99 ms | less schedule lag: p50 | p99 | stores | store p50 ms | store p99 ms |")
print("|---|---|---|---|---|---|---|---|---|---|")
for r in rows:
    print(f"| {r['design']} | {r['round']} | {r['claims']:,} | {r['claim_p50']:.2f} | {r['claim_p99']:.2f} | {r['own_p50']:.2f} | {r['own_p99']:.2f} "
          f"| {r['stores']:,} | {r['store_p50']:.2f} | {r['store_p99']:.2f} |")
for design in ("current", "lease"):
    plan = json.load(open(f"{sys.argv[2]}/{design}-explain.json"))[0]
    p = plan["Plan"]
    print(f"{design}: one claim {plan['Execution Time']:.2f} ms, WAL records {p.get('WAL Records')}, full-page images {p.get('WAL FPI')}, "
          f"WAL bytes {p.get('WAL Bytes')}")
PY
