-- Distribution on Citus. On plain PostgreSQL (no citus extension) this does nothing, so one
-- migration path serves both. Rules (../shared/CITUS.md): tenants is a reference table and is
-- touched first; every other table is distributed by tenant_id and co-located with events.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus') THEN
        PERFORM create_reference_table('tenants');
        PERFORM create_distributed_table('events', 'tenant_id');
        PERFORM create_distributed_table('tenant_heads', 'tenant_id', colocate_with => 'events');
        PERFORM create_distributed_table('commands', 'tenant_id', colocate_with => 'events');
        PERFORM create_distributed_table('courses', 'tenant_id', colocate_with => 'events');
        PERFORM create_distributed_table('trainees', 'tenant_id', colocate_with => 'events');
        PERFORM create_distributed_table('enrollments', 'tenant_id', colocate_with => 'events');
        PERFORM create_distributed_table('submissions', 'tenant_id', colocate_with => 'events');
    END IF;
END
$$;
