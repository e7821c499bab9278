-- On Citus, the write and rebuild functions become distributed functions, co-located with
-- `events` and distributed by their tenant argument: the coordinator sends a call made alone
-- (autocommit) to the worker holding the tenant's shards, which runs it as a local
-- transaction (../shared/CITUS.md rule 18). On plain PostgreSQL this does nothing.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus') THEN
        PERFORM create_distributed_function('coursetrail_append'::regproc::oid::regprocedure,
            'p_tenant', colocate_with => 'events');
        PERFORM create_distributed_function(
            'coursetrail_replace_projections'::regproc::oid::regprocedure,
            'p_tenant', colocate_with => 'events');
    END IF;
END
$$;
