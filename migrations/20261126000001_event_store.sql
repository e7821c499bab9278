-- The event store: tenants, the event log, the per-tenant head row and command dedupe.
--
-- Every tenant-owned table carries tenant_id, and every primary key / unique index includes it,
-- so the same schema runs on plain PostgreSQL and, distributed by tenant_id, on Citus
-- (see ../shared/CITUS.md; the distribution itself happens in a later migration).
-- Never edit an applied migration: add a new one.

-- Tenants (organisations). A reference table on Citus: small, read everywhere.
CREATE TABLE tenants (
    tenant_id  uuid        PRIMARY KEY,
    name       text        NOT NULL CHECK (name <> ''),
    created_at timestamptz NOT NULL DEFAULT now()
);

-- The per-tenant head row: last_position is the tenant position of the newest committed event.
-- Every append increments it as the LAST statement of its transaction. The row lock serialises
-- the appends of one tenant (and only of one tenant), so positions are handed out in commit
-- order, and a rollback rolls the counter back: positions are gap-free, 1, 2, 3, ...
-- A reader that has seen position p can never later find an event at a position <= p.
CREATE TABLE tenant_heads (
    tenant_id     uuid   PRIMARY KEY REFERENCES tenants (tenant_id),
    last_position bigint NOT NULL DEFAULT 0 CHECK (last_position >= 0)
);

-- The log. Partitioned by tenant so a tenant's queries touch one partition; keyed by stream.
-- Metadata lives in typed columns rather than a JSON blob: it is filtered on (audit trails)
-- and decoded on every replay, where a uuid column is far cheaper than JSON.
CREATE TABLE events (
    tenant_id      uuid        NOT NULL,
    stream_id      uuid        NOT NULL,
    version        integer     NOT NULL CHECK (version > 0),
    position       bigint      NOT NULL CHECK (position > 0),
    event_id       uuid        NOT NULL,
    stream_type    text        NOT NULL,
    event_type     text        NOT NULL,
    schema_version smallint    NOT NULL,
    data           jsonb       NOT NULL,
    recorded_at    timestamptz NOT NULL,
    -- Who and why (metadata).
    actor_id       uuid        NOT NULL,
    actor_role     text        NOT NULL,
    command_id     uuid,
    correlation_id uuid        NOT NULL,
    causation_id   uuid,
    -- Denormalised subjects, so "everything about this trainee / course" (an enrollment's
    -- events included) is an index range scan, not a JSON search.
    trainee_id     uuid,
    course_id      uuid,
    -- Optimistic concurrency: two appends at the same stream version cannot both commit.
    CONSTRAINT events_pkey PRIMARY KEY (tenant_id, stream_id, version),
    CONSTRAINT events_event_id_key UNIQUE (tenant_id, event_id),
    -- Also the index every reader uses: WHERE tenant_id = $1 AND position > $2 ORDER BY position.
    CONSTRAINT events_position_key UNIQUE (tenant_id, position)
) PARTITION BY HASH (tenant_id);

-- A fixed set of hash partitions; enough to keep each small at the sizes one node serves.
CREATE TABLE events_p0  PARTITION OF events FOR VALUES WITH (MODULUS 16, REMAINDER 0);
CREATE TABLE events_p1  PARTITION OF events FOR VALUES WITH (MODULUS 16, REMAINDER 1);
CREATE TABLE events_p2  PARTITION OF events FOR VALUES WITH (MODULUS 16, REMAINDER 2);
CREATE TABLE events_p3  PARTITION OF events FOR VALUES WITH (MODULUS 16, REMAINDER 3);
CREATE TABLE events_p4  PARTITION OF events FOR VALUES WITH (MODULUS 16, REMAINDER 4);
CREATE TABLE events_p5  PARTITION OF events FOR VALUES WITH (MODULUS 16, REMAINDER 5);
CREATE TABLE events_p6  PARTITION OF events FOR VALUES WITH (MODULUS 16, REMAINDER 6);
CREATE TABLE events_p7  PARTITION OF events FOR VALUES WITH (MODULUS 16, REMAINDER 7);
CREATE TABLE events_p8  PARTITION OF events FOR VALUES WITH (MODULUS 16, REMAINDER 8);
CREATE TABLE events_p9  PARTITION OF events FOR VALUES WITH (MODULUS 16, REMAINDER 9);
CREATE TABLE events_p10 PARTITION OF events FOR VALUES WITH (MODULUS 16, REMAINDER 10);
CREATE TABLE events_p11 PARTITION OF events FOR VALUES WITH (MODULUS 16, REMAINDER 11);
CREATE TABLE events_p12 PARTITION OF events FOR VALUES WITH (MODULUS 16, REMAINDER 12);
CREATE TABLE events_p13 PARTITION OF events FOR VALUES WITH (MODULUS 16, REMAINDER 13);
CREATE TABLE events_p14 PARTITION OF events FOR VALUES WITH (MODULUS 16, REMAINDER 14);
CREATE TABLE events_p15 PARTITION OF events FOR VALUES WITH (MODULUS 16, REMAINDER 15);

-- Audit trails by subject, and reports that need only some event types, in position order.
CREATE INDEX events_trainee_idx ON events (tenant_id, trainee_id, position) WHERE trainee_id IS NOT NULL;
CREATE INDEX events_course_idx ON events (tenant_id, course_id, position) WHERE course_id IS NOT NULL;
CREATE INDEX events_type_idx ON events (tenant_id, event_type, position);

-- Idempotent commands: a command id seen before returns the recorded result and appends nothing.
-- Written in the same transaction as the command's events, so it exists iff they do.
CREATE TABLE commands (
    tenant_id    uuid        NOT NULL,
    command_id   uuid        NOT NULL,
    command_type text        NOT NULL,
    -- The stream the command wrote to, and the tenant position of its last event.
    stream_id    uuid        NOT NULL,
    position     bigint      NOT NULL,
    -- Anything else the payload needs to answer the same way again (e.g. a submission id).
    result       jsonb       NOT NULL DEFAULT '{}',
    recorded_at  timestamptz NOT NULL,
    CONSTRAINT commands_pkey PRIMARY KEY (tenant_id, command_id)
);
