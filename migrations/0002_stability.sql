-- Afterimage schema, version 2: Stability AI results.
--
-- An asset's bytes now come from one of three places (source_kind):
--   url               downloaded from source_url (Replicate outputs);
--   inline            decoded from the webhook body into the spool before the 2xx; source_url is a
--                     descriptive `inline:` marker that is never fetched, delivery_id names the body
--                     the bytes can be decoded from again;
--   stability_result  polled at source_url ({stability.base_url}/v2beta/results/{id}) with the API key.
-- finish_reason and seed are what Stability reported (CONTENT_FILTERED results are kept and flagged).
ALTER TABLE assets
    ADD COLUMN source_kind   text   NOT NULL DEFAULT 'url'
                             CHECK (source_kind IN ('url', 'inline', 'stability_result')),
    ADD COLUMN finish_reason text,
    ADD COLUMN seed          bigint,
    ADD COLUMN delivery_id   bigint REFERENCES deliveries (id);
