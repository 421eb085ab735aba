-- What real Replicate webhooks carry besides the first sample bodies' fields: how the prediction was
-- created (`source`: api or web; web predictions are kept by Replicate indefinitely, API ones for an
-- hour), the deployment that ran it, and the deadline after which Replicate aborts it (status `aborted`).
-- Like the other fields they only fill in. Everything else a webhook carries (`urls`, `webhook`,
-- `webhook_events_filter`, `logs`) stays in the raw delivery.
--
-- data: outputs need nothing new: they are `inline` assets (0002) whose `delivery_id` names the body
-- their bytes are decoded from, and whose `source_url` is the URI's header (`data:image/png;base64`).
ALTER TABLE predictions
    ADD COLUMN source     text,
    ADD COLUMN deployment text,
    ADD COLUMN deadline   timestamptz;
