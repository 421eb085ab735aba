-- Issue 17: flat costs for the worker's claim and for `assets list` pages, whatever the table's size.
--
-- The claim takes the earliest due `pending` asset: ORDER BY deadline NULLS LAST, id with
-- next_attempt_at <= now(), FOR UPDATE SKIP LOCKED, LIMIT 1. The old index (deadline, next_attempt_at)
-- gave the order of `deadline` only, so every claim read all pending assets sharing the first deadline and
-- sorted them by id (an incremental sort). This one is in the claim's exact order, so the scan stops at the
-- first row it can lock; next_attempt_at, the third key, is checked inside the index, so assets backing
-- off are passed over without a visit to the table. Partial: only `pending` rows, so it stays the size of
-- the queue, not of the archive.
CREATE INDEX assets_claim_order_idx ON assets (deadline, id, next_attempt_at) WHERE state = 'pending';
-- Every reader of the old index (the console's pending counts, the oldest deadline) reads this one as well.
DROP INDEX assets_claimable_idx;

-- `assets list --provider P` / GET /v1/assets?provider=P: a page is a range of this index from the cursor
-- (id > after), whatever share of the rows P has. Without it a rare provider's page walked the primary key
-- past every other provider's rows, or read all of P's rows through the unique key and sorted them. Ids
-- only grow, so inserts append at the right edge of each provider's range.
CREATE INDEX assets_provider_id_idx ON assets (provider, id);
