-- Data lifecycle: delete on demand (tombstones), raw-body retention, object retention and backfill.
--
-- A deleted prediction keeps its row as a tombstone: `deleted_at` says when, its input and output are
-- cleared, and its assets end in the terminal state `deleted` (sizes and hashes kept). `purge_due_at` is
-- set while stored objects or spool files of the prediction may still exist (a delete whose purge failed,
-- or one that fenced a transfer in flight); the retention loop purges again once it is due.
ALTER TABLE predictions
    ADD COLUMN deleted_at   timestamptz,
    ADD COLUMN purge_due_at timestamptz;

CREATE INDEX predictions_purge_due_idx ON predictions (purge_due_at) WHERE purge_due_at IS NOT NULL;

ALTER TABLE assets DROP CONSTRAINT assets_state_check;
ALTER TABLE assets ADD CONSTRAINT assets_state_check
    CHECK (state IN ('pending', 'in_flight', 'stored', 'failed', 'expired', 'deleted'));

-- Deliveries name their prediction, so a delete finds every body of it and retention can tell when all
-- of a delivery's assets are settled. A pruned body is replaced by an empty one; its SHA-256 and size stay.
ALTER TABLE deliveries
    ADD COLUMN prediction_id  text,
    ADD COLUMN body_sha256    text,
    ADD COLUMN body_size      bigint,
    ADD COLUMN body_pruned_at timestamptz;

-- Deliveries recorded before this version: the prediction is named by an inline asset decoded from the
-- body, by the delivery id (`reconcile:{id}:{status}`, Ed25519 providers' `{id}:{sha256}`), or by the
-- body's own `id` (Replicate webhooks, archive requests). Bodies that are not JSON stay unnamed.
UPDATE deliveries d SET prediction_id = a.prediction_id
FROM (SELECT DISTINCT ON (delivery_id) delivery_id, prediction_id FROM assets WHERE delivery_id IS NOT NULL
      ORDER BY delivery_id, id) a
WHERE a.delivery_id = d.id;

UPDATE deliveries SET prediction_id = substring(webhook_id FROM '^reconcile:(.*):[a-z_]+$')
WHERE prediction_id IS NULL AND webhook_id LIKE 'reconcile:%';

UPDATE deliveries SET prediction_id = substring(webhook_id FROM '^(.*):[0-9a-f]{64}$')
WHERE prediction_id IS NULL AND provider IN ('ideogram', 'fal', 'archive') AND webhook_id ~ ':[0-9a-f]{64}$';

CREATE FUNCTION afterimage_body_id(body bytea) RETURNS text LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    RETURN convert_from(body, 'UTF8')::jsonb ->> 'id';
EXCEPTION WHEN others THEN
    RETURN NULL;
END
$$;
UPDATE deliveries SET prediction_id = afterimage_body_id(body)
WHERE prediction_id IS NULL AND provider = 'replicate' AND outcome = 'accepted';
DROP FUNCTION afterimage_body_id(bytea);

CREATE INDEX deliveries_prediction_idx ON deliveries (provider, prediction_id);

-- Where background loops resume (the body retention's position in the deliveries' id order).
CREATE TABLE lifecycle_cursors (
    name            text PRIMARY KEY,
    position        bigint      NOT NULL DEFAULT 0,
    -- The lowest id passed over because its assets were not settled yet: scanned again later.
    held_back_from  bigint,
    rescanned_at    timestamptz NOT NULL DEFAULT now()
);

-- `afterimage backfill`: one row per run, with the list page to continue from (`--resume`).
CREATE TABLE backfill_runs (
    id            bigserial   PRIMARY KEY,
    provider      text        NOT NULL,
    since         timestamptz NOT NULL,
    until         timestamptz,
    include_web   boolean     NOT NULL,
    next_url      text,
    pages         integer     NOT NULL DEFAULT 0,
    seen          integer     NOT NULL DEFAULT 0,
    recorded      integer     NOT NULL DEFAULT 0,
    started_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz
);

-- Object retention takes stored assets oldest first; once deleted they leave this index, so a pass never
-- walks the tombstones it made.
CREATE INDEX assets_stored_idx ON assets (stored_at) WHERE state = 'stored';
