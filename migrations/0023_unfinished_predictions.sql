-- The reconciler refreshes predictions that are still `starting` or `processing` here and have not changed for
-- `replicate.reconcile_stale_after` seconds, every pass (each minute by default). Without an index that
-- question read every prediction: a parallel sequential scan of 9 GB at ten million predictions, every
-- minute. Partial: finished predictions (nearly all rows) are not in it, so it stays as small as the work in
-- progress. Building it reads the table once (about 20 s at ten million predictions on a loaded 2-core VM),
-- during which writes to predictions wait.
CREATE INDEX predictions_unfinished_idx ON predictions (provider, updated_at) WHERE status IN ('starting', 'processing');
