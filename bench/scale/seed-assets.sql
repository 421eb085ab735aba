-- bench/scale: the assets, then the 100,000 pending ones (see seed-functions.sql for what the rows are).
\ir seed-functions.sql

BEGIN;
TRUNCATE assets;
\echo seed: assets
INSERT INTO assets (provider, prediction_id, pointer, output_index, source_url, state, deadline, attempts, next_attempt_at,
                    storage_key, size_bytes, sha256, content_type, etag, stored_at, failure_reason, created_at, updated_at)
SELECT 'replicate', pg_temp.bench_id(g), '/' || o, o,
       'https://replicate.delivery/xezq/' || pg_temp.bench_token(g, o) || '/out-' || o || '.webp',
       st, t + interval '1 hour', CASE st WHEN 'stored' THEN 1 ELSE 5 END, t,
       CASE st WHEN 'stored' THEN 'replicate/' || pg_temp.bench_id(g) || '/' || o || '.webp' END,
       CASE st WHEN 'stored' THEN 90000 + (g * 131 + o) % 400000 END,
       CASE st WHEN 'stored' THEN md5(g::text || 'a' || o) || md5(o || 'b' || g::text) END,
       CASE st WHEN 'stored' THEN 'image/webp' END,
       CASE st WHEN 'stored' THEN '"' || md5(g::text || 'e' || o) || '"' END,
       CASE st WHEN 'stored' THEN t + interval '3 seconds' END,
       CASE st WHEN 'failed' THEN 'download failed: HTTP 500 after 5 tries' WHEN 'expired' THEN 'source answered 404 after its deadline' END,
       t, t + interval '3 seconds'
FROM (SELECT g, pg_temp.bench_seen(g, :n) AS t,
             CASE WHEN g % 200 = 1 THEN 'failed' WHEN g % 200 = 2 THEN 'expired' ELSE 'stored' END AS st
      FROM generate_series(1, :n) AS g) s
CROSS JOIN LATERAL generate_series(0, pg_temp.bench_outputs(g) - 1) AS o;


\echo seed: 100000 pending assets
INSERT INTO assets (provider, prediction_id, pointer, output_index, source_url, state, deadline, attempts, next_attempt_at,
                    created_at, updated_at)
SELECT 'replicate', 'claim-' || lpad(k::text, 20, '0'), '/0', 0,
       'https://replicate.delivery/xezq/' || pg_temp.bench_token(-k, 0) || '/out-0.webp', 'pending',
       now() + (k % 3600) * interval '1 second',
       CASE WHEN k % 10 = 0 THEN 2 ELSE 0 END,
       CASE WHEN k % 10 = 0 THEN now() + interval '1 day' ELSE now() - interval '1 second' END,
       now(), now()
FROM generate_series(1, 100000) AS k;
COMMIT;
