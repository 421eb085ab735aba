-- The console (GET /ui/) and the API it reads.
--
-- GET /v1/predictions lists predictions newest first, keyset-paginated by (first_seen_at, provider, id):
-- each page is a range scan of one of these indexes, read backwards from the cursor, whatever the table's
-- size. The second one serves the provider filter, so a rare provider's page does not walk every other
-- provider's rows. Neither column ever changes after the insert, so updates of a prediction (status,
-- output, timestamps: every later webhook) stay HOT and never touch these indexes; `status` is
-- deliberately not indexed for that reason (the status filter is checked while walking).
CREATE INDEX predictions_recent_idx ON predictions (first_seen_at, provider, id);
CREATE INDEX predictions_provider_recent_idx ON predictions (provider, first_seen_at, id);

-- GET /v1/stats counts what was stored today (and how much of it late). Partial: a queued asset has no
-- stored_at, so intake inserts never touch this index; only the worker's final write does.
CREATE INDEX assets_stored_at_idx ON assets (stored_at) WHERE stored_at IS NOT NULL;
