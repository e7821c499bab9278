-- Synchronous projections: read tables updated in the same transaction as the append.
-- They can be dropped and rebuilt from the log at any time. Their unique indexes (all with
-- tenant_id) make the cross-stream rules race-free; the application maps each named
-- constraint to a client error code.
-- Every row is a pure function of one stream's events (see src/projections/rows.rs), which is
-- what lets a rebuild reproduce it exactly.

CREATE TABLE courses (
    tenant_id     uuid        NOT NULL,
    course_id     uuid        NOT NULL,
    code          text        NOT NULL,
    title         text        NOT NULL,
    passing_score smallint    NOT NULL,
    retired       boolean     NOT NULL,
    created_at    timestamptz NOT NULL,
    retired_at    timestamptz,
    version       integer     NOT NULL,
    CONSTRAINT courses_pkey PRIMARY KEY (tenant_id, course_id),
    -- One course code per tenant (ALREADY_EXISTS).
    CONSTRAINT courses_code_key UNIQUE (tenant_id, code)
);

CREATE TABLE trainees (
    tenant_id     uuid        NOT NULL,
    trainee_id    uuid        NOT NULL,
    email         text        NOT NULL,
    name          text        NOT NULL,
    registered_at timestamptz NOT NULL,
    version       integer     NOT NULL,
    CONSTRAINT trainees_pkey PRIMARY KEY (tenant_id, trainee_id),
    -- One email per tenant (ALREADY_EXISTS); emails are stored lower-case.
    CONSTRAINT trainees_email_key UNIQUE (tenant_id, email)
);

CREATE TABLE enrollments (
    tenant_id         uuid        NOT NULL,
    enrollment_id     uuid        NOT NULL,
    course_id         uuid        NOT NULL,
    trainee_id        uuid        NOT NULL,
    status            text        NOT NULL,
    registered_at     timestamptz NOT NULL,
    started_at        timestamptz,
    completed_at      timestamptz,
    withdrawn_at      timestamptz,
    withdrawal_reason text,
    submission_count  integer     NOT NULL,
    best_score        smallint,
    passed_at         timestamptz,
    version           integer     NOT NULL,
    updated_at        timestamptz NOT NULL,
    CONSTRAINT enrollments_pkey PRIMARY KEY (tenant_id, enrollment_id)
);
-- One active (not withdrawn) registration per trainee and course (ALREADY_REGISTERED).
CREATE UNIQUE INDEX enrollments_active_key ON enrollments (tenant_id, course_id, trainee_id)
    WHERE status <> 'WITHDRAWN';
CREATE INDEX enrollments_trainee_idx ON enrollments (tenant_id, trainee_id, enrollment_id);

CREATE TABLE submissions (
    tenant_id     uuid        NOT NULL,
    submission_id uuid        NOT NULL,
    enrollment_id uuid        NOT NULL,
    submitted_at  timestamptz NOT NULL,
    score         smallint,
    passed        boolean,
    graded_at     timestamptz,
    CONSTRAINT submissions_pkey PRIMARY KEY (tenant_id, submission_id)
);
CREATE INDEX submissions_enrollment_idx ON submissions (tenant_id, enrollment_id, submitted_at);
