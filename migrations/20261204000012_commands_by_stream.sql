-- Command records by stream: erasing a trainee scrubs the request digests of the commands on
-- its streams (src/store/personal.rs, `erase_digests`), which without this index scanned all
-- of its tenant's command records once per erasure.
--
-- One DO statement running each DDL command on its own, sequential on Citus
-- (docs/citus-rules.md, rule 21).
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus') THEN
        SET LOCAL citus.multi_shard_modify_mode TO 'sequential';
    END IF;
    EXECUTE 'CREATE INDEX commands_stream_idx ON commands (tenant_id, stream_id)';
END
$$;
