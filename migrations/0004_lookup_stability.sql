-- The lookup functions of 0003, now also returning what Stability reported for each asset and where its bytes
-- came from: source_kind, source_url (only when it is a real download link: an `inline:` marker or a Stability
-- results endpoint, which needs the API key, is returned as NULL), finish_reason and seed. The return type
-- changes, so the functions are dropped and created again (CREATE OR REPLACE cannot change it).
-- Columns and their order are what LookupStore decodes; change both together.

DROP FUNCTION afterimage_prediction_lookup(text, text);
DROP FUNCTION afterimage_output_lookup(text, text, integer);

CREATE FUNCTION afterimage_prediction_lookup(lookup_provider text, lookup_id text)
RETURNS TABLE (
    status text, model text, version text, input text, error text, data_removed boolean, created_at text,
    started_at text, completed_at text, first_seen_at text, updated_at text,
    asset_id bigint, asset_provider text, prediction_id text, output_index integer, pointer text, state text,
    attempts integer, size_bytes bigint, sha256 text, content_type text, storage_key text, failure_reason text,
    asset_created_at text, asset_updated_at text, stored_at text, next_attempt_in bigint,
    source_kind text, source_url text, finish_reason text, seed bigint)
LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    SELECT p.status, p.model, p.version, p.input::text, p.error, p.data_removed, to_char(p.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
           to_char(p.started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'), to_char(p.completed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
           to_char(p.first_seen_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'), to_char(p.updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
           a.id, a.provider, a.prediction_id, a.output_index, a.pointer, a.state, a.attempts, a.size_bytes, a.sha256,
           a.content_type, a.storage_key, a.failure_reason, to_char(a.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
           to_char(a.updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'), to_char(a.stored_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
           greatest(0, ceil(extract(epoch FROM a.next_attempt_at - now())))::bigint,
           a.source_kind, CASE WHEN a.source_kind = 'url' THEN a.source_url END, a.finish_reason, a.seed
    FROM predictions p LEFT JOIN assets a ON a.provider = p.provider AND a.prediction_id = p.id
    WHERE p.provider = lookup_provider AND p.id = lookup_id
    ORDER BY a.output_index, a.id;
END
$$;

CREATE FUNCTION afterimage_output_lookup(lookup_provider text, lookup_id text, lookup_index integer)
RETURNS TABLE (
    asset_id bigint, asset_provider text, prediction_id text, output_index integer, pointer text, state text,
    attempts integer, size_bytes bigint, sha256 text, content_type text, storage_key text, failure_reason text,
    asset_created_at text, asset_updated_at text, stored_at text, next_attempt_in bigint,
    source_kind text, source_url text, finish_reason text, seed bigint)
LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    SELECT a.id, a.provider, a.prediction_id, a.output_index, a.pointer, a.state, a.attempts, a.size_bytes, a.sha256,
           a.content_type, a.storage_key, a.failure_reason, to_char(a.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
           to_char(a.updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'), to_char(a.stored_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
           greatest(0, ceil(extract(epoch FROM a.next_attempt_at - now())))::bigint,
           a.source_kind, CASE WHEN a.source_kind = 'url' THEN a.source_url END, a.finish_reason, a.seed
    FROM assets a
    WHERE a.provider = lookup_provider AND a.prediction_id = lookup_id AND a.output_index = lookup_index
    ORDER BY a.id
    LIMIT 1;
END
$$;
