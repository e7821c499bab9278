-- One data key per trainee (crypto-shredding, src/store/personal.rs): the trainee's personal
-- fields are stored in the events sealed with it, and forgetting the trainee deletes the key.
-- `data_key` is the stored form made by src/crypto.rs: a format byte, then the raw key or the
-- key sealed with the configured key-encryption key. A forgotten trainee keeps its row with
-- `data_key` NULL, so that no new key is ever made for it; a trainee registered before keys
-- existed has no row until it needs a key. Not a projection: not derived from the log, and a
-- rebuild leaves it alone.
CREATE TABLE trainee_keys (
    tenant_id    uuid        NOT NULL,
    trainee_id   uuid        NOT NULL,
    data_key     bytea,
    created_at   timestamptz NOT NULL,
    forgotten_at timestamptz,
    CONSTRAINT trainee_keys_pkey PRIMARY KEY (tenant_id, trainee_id)
);

-- Distributed by tenant and co-located with events, so the reads' joins and the erasure run on
-- the tenant's worker (docs/citus-rules.md, rules 4 and 18).
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus') THEN
        PERFORM create_distributed_table('trainee_keys', 'tenant_id', colocate_with => 'events');
    END IF;
END
$$;
