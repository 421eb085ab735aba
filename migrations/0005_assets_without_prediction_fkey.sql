-- Drops the foreign key from assets to predictions. It guarded nothing the code does not already guarantee:
-- the only writers of assets (ReplicateIntake and StabilityIntake) insert or upsert the prediction first, in
-- the same transaction as its assets, and nothing deletes predictions. Yet it cost every queued asset an RI
-- trigger (an SPI `SELECT ... FOR KEY SHARE` on the prediction row, which also locks and dirties that freshly
-- written tuple): the largest single item in PostgreSQL's share of the intake benchmark (bench/intake).
ALTER TABLE assets DROP CONSTRAINT assets_prediction_fkey;
