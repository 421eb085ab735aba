-- bench/scale: after the tables are written (see seed-functions.sql). The body retention's loop of a
-- deployment this old has walked past every pruned body already: its position says so, so the benchmark's
-- daemon does not spend the run walking millions of rows a live one never walks again.
\set ON_ERROR_STOP on
INSERT INTO lifecycle_cursors (name, position)
VALUES ('delivery_bodies', coalesce((SELECT max(id) FROM deliveries WHERE body_pruned_at IS NOT NULL), 0))
ON CONFLICT (name) DO UPDATE SET position = excluded.position, held_back_from = NULL;

CREATE TABLE IF NOT EXISTS bench_seed (n bigint NOT NULL, seeded_at timestamptz NOT NULL DEFAULT now());
INSERT INTO bench_seed (n) VALUES (:n);
