-- An output's number (`output_index`, the `n` of its object key `{provider}/{prediction}/{n}{.ext}`) is unique
-- per prediction, so two assets can never write the same key. Intake numbers a prediction's first outputs in
-- the provider's walk order and gives an output found by a later delivery the next free number; this makes
-- the database hold it to that.
--
-- Rows that already share a number (none should: older intake could only collide for Replicate outputs found
-- by a later event at a pointer whose walk position was taken) keep the oldest where it is; the others move
-- past the prediction's highest number, oldest first. Their recorded storage_key is left as it is: a stored
-- object stays where it was written and lookups find it by that key.
WITH numbered AS (
    SELECT id, provider, prediction_id,
           row_number() OVER (PARTITION BY provider, prediction_id, output_index ORDER BY id) AS copy,
           max(output_index) OVER (PARTITION BY provider, prediction_id) AS highest
    FROM assets
), moved AS (
    SELECT id, highest + row_number() OVER (PARTITION BY provider, prediction_id ORDER BY id) AS output_index
    FROM numbered
    WHERE copy > 1
)
UPDATE assets AS a SET output_index = moved.output_index, updated_at = now()
FROM moved WHERE a.id = moved.id;

-- The index also serves the output lookup (provider, prediction, n), which the pointer index did not.
ALTER TABLE assets ADD CONSTRAINT assets_provider_prediction_index_key UNIQUE (provider, prediction_id, output_index);
