-- The lookup functions of 0003 are gone: LookupStore now sends the lookup join itself as a prepared statement
-- (PQ's query(prepared:)), which each pooled connection parses and plans once, as the PL/pgSQL functions did,
-- without their SPI and tuplestore overhead (about 18 % more lookups per second of the server, bench/lookup).
-- The statement also returns what the Stability issue added to assets (source_kind, finish_reason, seed), so
-- keeping the functions would mean changing their return type anyway.
DROP FUNCTION afterimage_prediction_lookup(text, text);
DROP FUNCTION afterimage_output_lookup(text, text, integer);
