-- bench/scale: N predictions as a year of real use leaves them, written with generate_series into a migrated
-- afterimage database (psql -v n=N -f seed.sql). Everything is a pure function of the prediction's number g,
-- so bench/scale/scale.lua can name any of them without a list:
--   id            26 characters like Replicate's: a scrambled number first (so inserts land all over the
--                 primary key, as random provider ids do), then g: lpad((g*7919) % 1000000007, 10) 'q' lpad(g, 10) 'abcde'
--   first_seen_at spread over the past 365 days in g order: the largest g are the most recent
--   status        2 % failed (no outputs), 1 % canceled, the rest succeeded
--   outputs       1 (60 %), 2 (20 %), 3 (10 %) or 4 (10 %) per succeeded prediction, 43-character delivery
--                 tokens as in real replicate.delivery URLs; stored, except 0.5 % failed and 0.5 % expired
--   deliveries    one per prediction, a completed-webhook body of about 1.3 KB (input, logs, output, urls, metrics)
-- Then 100,000 pending assets (their own prediction ids, claim-…): the queue bench/scale's claim test works on,
-- 10 % of them backing off (next attempt in the future), deadlines over the next hour.
-- Indexes stay in place while rows go in, so their pages split as a live table's do.
\set ON_ERROR_STOP on
SET synchronous_commit = off;
SET TIME ZONE 'UTC';

CREATE FUNCTION pg_temp.bench_id(g bigint) RETURNS text LANGUAGE sql IMMUTABLE AS
$$ SELECT lpad(((g * 7919) % 1000000007)::text, 10, '0') || 'q' || lpad(g::text, 10, '0') || 'abcde' $$;
CREATE FUNCTION pg_temp.bench_token(g bigint, o int) RETURNS text LANGUAGE sql IMMUTABLE AS
$$ SELECT md5(g::text || '/' || o) || substr(md5(o || '/' || g::text), 1, 11) $$;
CREATE FUNCTION pg_temp.bench_outputs(g bigint) RETURNS int LANGUAGE sql IMMUTABLE AS
$$ SELECT CASE WHEN g % 50 = 0 OR g % 97 = 0 THEN 0 WHEN g % 10 < 6 THEN 1 WHEN g % 10 < 8 THEN 2 WHEN g % 10 < 9 THEN 3 ELSE 4 END $$;
CREATE FUNCTION pg_temp.bench_seen(g bigint, n bigint) RETURNS timestamptz LANGUAGE sql STABLE AS
$$ SELECT now() - interval '10 minutes' - (n - g) * (interval '365 days' / n) $$;

\echo seed: predictions
INSERT INTO predictions (provider, id, status, model, version, input, output, error, metrics, created_at, started_at,
                         completed_at, data_removed, first_seen_at, updated_at, source)
SELECT 'replicate', pg_temp.bench_id(g),
       CASE WHEN g % 50 = 0 THEN 'failed' WHEN g % 97 = 0 THEN 'canceled' ELSE 'succeeded' END,
       'black-forest-labs/flux-schnell', '5599ed30703defd1d160a25a63321b4dec97101d98b4674bcc56e41f62f35637',
       jsonb_build_object('prompt', 'a lighthouse on a cliff at dusk, volumetric light, 35mm photograph, number ' || g,
                          'num_outputs', greatest(1, pg_temp.bench_outputs(g)), 'aspect_ratio', '1:1',
                          'output_format', 'webp', 'output_quality', 80, 'seed', g % 100000),
       CASE WHEN pg_temp.bench_outputs(g) > 0 THEN
            (SELECT jsonb_agg('https://replicate.delivery/xezq/' || pg_temp.bench_token(g, o) || '/out-' || o || '.webp')
             FROM generate_series(0, pg_temp.bench_outputs(g) - 1) o) END,
       CASE WHEN g % 50 = 0 THEN 'CUDA out of memory. Tried to allocate 2.00 GiB' END,
       jsonb_build_object('predict_time', 1.2 + (g % 300) / 100.0, 'total_time', 1.9 + (g % 300) / 100.0),
       t - interval '9 seconds', t - interval '7 seconds', t - interval '1 second', false, t, t, 'api'
FROM (SELECT g, pg_temp.bench_seen(g, :n) AS t FROM generate_series(1, :n) AS g) s;

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

\echo seed: deliveries
INSERT INTO deliveries (provider, webhook_id, webhook_timestamp, source, body, received_at, outcome)
SELECT 'replicate', 'msg_' || substr(md5('w' || g), 1, 27), t, 'webhook',
       convert_to(format(
         '{"id":"%s","model":"black-forest-labs/flux-schnell","version":"5599ed30703defd1d160a25a63321b4dec97101d98b4674bcc56e41f62f35637",'
         '"input":{"prompt":"a lighthouse on a cliff at dusk, volumetric light, 35mm photograph, number %s","num_outputs":1,'
         '"aspect_ratio":"1:1","output_format":"webp","output_quality":80},"logs":"Using seed: %s\nrunning quantized prediction\n'
         '100%%|██████████| 4/4 [00:01<00:00,  2.91it/s]\n100%%|██████████| 4/4 [00:01<00:00,  2.90it/s]\nTotal safe images: 1 out of 1\n",'
         '"output":["https://replicate.delivery/xezq/%s/out-0.webp"],"data_removed":false,"error":null,"source":"api","status":"succeeded",'
         '"created_at":"%s","started_at":"%s","completed_at":"%s",'
         '"urls":{"cancel":"https://api.replicate.com/v1/predictions/%s/cancel","get":"https://api.replicate.com/v1/predictions/%s",'
         '"stream":"https://stream.replicate.com/v1/files/bcwr-%s","web":"https://replicate.com/p/%s"},'
         '"metrics":{"image_count":1,"predict_time":1.4,"total_time":2.1},"webhook":"https://archive.example.com/v1/webhooks/replicate",'
         '"webhook_events_filter":["start","completed"]}',
         pg_temp.bench_id(g), g, g % 100000, pg_temp.bench_token(g, 0), t - interval '9 seconds', t - interval '7 seconds',
         t - interval '1 second', pg_temp.bench_id(g), pg_temp.bench_id(g), md5('s' || g), pg_temp.bench_id(g)), 'UTF8'),
       t, 'accepted'
FROM (SELECT g, pg_temp.bench_seen(g, :n) AS t FROM generate_series(1, :n) AS g) s;

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

CREATE TABLE IF NOT EXISTS bench_seed (n bigint NOT NULL, seeded_at timestamptz NOT NULL DEFAULT now());
INSERT INTO bench_seed (n) VALUES (:n);
