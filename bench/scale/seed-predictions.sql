-- bench/scale: the predictions (see seed-functions.sql for what the rows are).
\ir seed-functions.sql

BEGIN;
TRUNCATE predictions;
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
COMMIT;
