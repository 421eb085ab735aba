-- bench/scale: the deliveries (see seed-functions.sql for what the rows are).
\ir seed-functions.sql

BEGIN;
\echo seed: deliveries
INSERT INTO deliveries (provider, webhook_id, webhook_timestamp, source, body, received_at, outcome, prediction_id,
                        body_sha256, body_size, body_pruned_at)
SELECT 'replicate', 'msg_' || substr(md5('w' || g), 1, 27), t, 'webhook',
       CASE WHEN pruned THEN ''::bytea ELSE convert_to(format(
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
         t - interval '1 second', pg_temp.bench_id(g), pg_temp.bench_id(g), md5('s' || g), pg_temp.bench_id(g)), 'UTF8') END,
       t, 'accepted', pg_temp.bench_id(g),
       CASE WHEN pruned THEN md5('b' || g) || md5('c' || g) END,
       CASE WHEN pruned THEN 1290 + g % 90 END,
       CASE WHEN pruned THEN t + interval '7 days' END
FROM (SELECT g, t, t < now() - interval '7 days' AS pruned
      FROM (SELECT g, pg_temp.bench_seen(g, :n) AS t FROM generate_series(1, :n) AS g) g) s;
COMMIT;
