-- A covering index for replays that read only some event types (every report does).
--
-- The replay engine reads such types as a merge of one ordered range per type on
-- (tenant_id, event_type, position), so a report touches only the rows it needs instead of
-- filtering the whole log. The INCLUDE columns are the ones a replay returns for every row,
-- so these ranges are index-only scans (no heap visit) once autovacuum has marked the pages
-- all-visible; the JSON data is fetched from the heap only for the types a fold decodes.
--
-- Written as one statement that runs each DDL command on its own, because Citus forwards a
-- DDL command's query string to the workers, which refuse a string of several commands; and
-- on Citus the shard indexes' names are too long for parallel creation, so it is made
-- sequential (../shared/CITUS.md rule 21). The schema is the one the earlier text of this file
-- made: db::migrate accepts a database that applied that text (docs/decisions/0001).
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus') THEN
        SET LOCAL citus.multi_shard_modify_mode TO 'sequential';
    END IF;
    EXECUTE 'DROP INDEX events_type_idx';
    EXECUTE 'CREATE INDEX events_type_replay_idx ON events (tenant_id, event_type, position) '
            'INCLUDE (stream_id, version, recorded_at, course_id, trainee_id, schema_version)';
END
$$;
