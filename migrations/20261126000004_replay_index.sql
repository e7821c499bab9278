-- A covering index for replays that read only some event types (every report does).
--
-- The replay engine reads such types as a merge of one ordered range per type on
-- (tenant_id, event_type, position), so a report touches only the rows it needs instead of
-- filtering the whole log. The INCLUDE columns are the ones a replay returns for every row,
-- so these ranges are index-only scans (no heap visit) once autovacuum has marked the pages
-- all-visible; the JSON data is fetched from the heap only for the types a fold decodes.
DROP INDEX events_type_idx;
CREATE INDEX events_type_replay_idx ON events (tenant_id, event_type, position)
    INCLUDE (stream_id, version, recorded_at, course_id, trainee_id, schema_version);
