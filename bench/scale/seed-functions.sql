-- bench/scale: N predictions as a year of real use leaves them, written with generate_series into a migrated
-- afterimage database (bench/scale/run.sh runs the seed-*.sql files). Everything is a pure function of the prediction's number g,
-- so bench/scale/scale.lua can name any of them without a list:
--   id            26 characters like Replicate's: a scrambled number first (so inserts land all over the
--                 primary key, as random provider ids do), then g: lpad((g*7919) % 1000000007, 10) 'q' lpad(g, 10) 'abcde'
--   first_seen_at spread over the past 365 days in g order: the largest g are the most recent
--   status        2 % failed (no outputs), 1 % canceled, the rest succeeded
--   outputs       1 (60 %), 2 (20 %), 3 (10 %) or 4 (10 %) per succeeded prediction, 43-character delivery
--                 tokens as in real replicate.delivery URLs; stored, except 0.5 % failed and 0.5 % expired
--   deliveries    one per prediction, naming it; a completed-webhook body of about 1.3 KB (input, logs, output,
--                 urls, metrics) for the last 7 days, older bodies already replaced by their SHA-256 and size
--                 as retention.delivery_bodies (default 7 days) leaves them, and the retention loop's position
--                 past them
-- Then 100,000 pending assets (their own prediction ids, claim-…): the queue bench/scale's claim test works on,
-- 10 % of them backing off (next attempt in the future), deadlines over the next hour.
-- Indexes stay in place while rows go in, so their pages split as a live table's do.
--
-- Each table is written by its own file in its own session, side by side (seed-predictions.sql,
-- seed-assets.sql, seed-deliveries.sql, then seed-finish.sql), each in one transaction that first
-- truncates the (empty) table: run.sh seeds with wal_level = minimal, under which PostgreSQL writes rows
-- and index pages of a table truncated in the same transaction straight to its files instead of through
-- the WAL. Only deliveries, which assets refer to, cannot be truncated alone and goes through the WAL.
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
