-- Raw-body retention that stays cheap on a big, busy deliveries table.
--
-- Only bodies still kept are in this index, in the order they come of age. The retention walk reads it as
-- one range, `(received_at, id)` from its position up to now − `retention.delivery_bodies`: it stops at the
-- first body that is too young without reading it, and never reads a pruned row again (a pruned row leaves
-- the index), so going back over bodies held back (assets not settled yet) costs what there is of those,
-- not what lies between them. Built once here (it locks out writes to deliveries while it builds, before
-- the daemon takes webhooks).
CREATE INDEX deliveries_bodies_kept_idx ON deliveries (received_at, id) WHERE body_pruned_at IS NULL;

-- The walk's position is now `(position_at, position)` in that order (`held_back_at, held_back_from` for
-- the lowest body held back). NULL: from the start. The id order used before needs no carrying over: the
-- walk starts again from the start of the index, which holds only bodies not pruned yet.
ALTER TABLE lifecycle_cursors
    ADD COLUMN position_at  timestamptz,
    ADD COLUMN held_back_at timestamptz;
UPDATE lifecycle_cursors SET position = 0, held_back_from = NULL WHERE name = 'delivery_bodies';

-- `afterimage_delivery_body_bytes` without summing the table. `kept_bytes` is the total size of the kept
-- bodies up to `(through_at, through_id)` in the index's order; the retention loop adds the bodies received
-- since (a range of the index, as long as the time since its last measure) and takes off the ones pruned
-- since, which the trigger below notes in `body_bytes_pruned` (an insert: no row any writer waits for).
CREATE TABLE body_bytes_tally (
    only_row    boolean     PRIMARY KEY DEFAULT true CHECK (only_row),
    kept_bytes  bigint      NOT NULL DEFAULT 0,
    through_at  timestamptz NOT NULL DEFAULT '-infinity',
    through_id  bigint      NOT NULL DEFAULT 0
);
INSERT INTO body_bytes_tally DEFAULT VALUES;

CREATE TABLE body_bytes_pruned (
    received_at timestamptz NOT NULL,
    id          bigint      NOT NULL,
    size        bigint      NOT NULL
);

-- Every way a body is pruned (retention, a delete, a delivery naming a deleted prediction) sets
-- `body_pruned_at` and `body_size`; one statement-level trigger notes them all.
CREATE FUNCTION afterimage_note_pruned_bodies() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO body_bytes_pruned (received_at, id, size)
    SELECT n.received_at, n.id, coalesce(n.body_size, 0)
    FROM pruned_new n JOIN pruned_old o ON o.id = n.id
    WHERE o.body_pruned_at IS NULL AND n.body_pruned_at IS NOT NULL;
    RETURN NULL;
END
$$;
CREATE TRIGGER deliveries_note_pruned_bodies AFTER UPDATE ON deliveries
    REFERENCING OLD TABLE AS pruned_old NEW TABLE AS pruned_new
    FOR EACH STATEMENT EXECUTE FUNCTION afterimage_note_pruned_bodies();
