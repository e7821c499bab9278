-- The write function with the trainee's data key in the write itself, so that every command is
-- one transaction (a registration made its key in a statement of its own before). Two
-- parameters per write after p_event_count:
--   p_data_key: the stored form of the key the write's personal data is sealed with (NULL when
--               the write seals nothing);
--   p_new_key:  whether the write makes that key (a new trainee's registration) or uses the
--               trainee's stored one.
-- A made key is inserted with the write (ON CONFLICT DO NOTHING: a key made first by anyone
-- else refuses it) and deleted again if the write is refused later, so a refused registration
-- leaves no key behind. A used key must be the stored one, read FOR SHARE: a trainee forgotten
-- since, or a key that changed, refuses the write (`stale_data_key`; `trainee_forgotten` of
-- `…0009` is gone). Which event types carry personal data is no longer restated here: a write
-- that sealed nothing has no key.
--
-- An unknown tenant is no longer looked up first (one statement less for every write): the
-- head increment finds no row, and the call raises `coursetrail_append: unknown tenant`, so
-- nothing of it stays. A call whose writes are all refused writes nothing and returns them.
--
-- A registration's guard also checks that its trainee exists (`unknown_trainee`), so a
-- registration decided without reading its facts (the stream cache's attempt) is refused by
-- the write, never written against a missing trainee.
--
-- The rest is `…0009` unchanged. The signature changes, so the function is dropped and made
-- again; on Citus it is then distributed again, like `…0007` (docs/citus-rules.md, rule 18).
DROP FUNCTION coursetrail_append(
    uuid, uuid[], text[], int4[], timestamptz[], uuid[], text[], uuid[], uuid[], uuid[], uuid[],
    uuid[], text[], jsonb[], int4[], uuid[], text[], int2[], jsonb[], text[], int4[], int4[],
    uuid[], text[], text[], int2[], bool[], timestamptz[], timestamptz[], int4[],
    uuid[], text[], text[], timestamptz[], int4[],
    uuid[], uuid[], uuid[], text[], timestamptz[], timestamptz[], timestamptz[], timestamptz[],
    text[], int4[], int2[], timestamptz[], int4[], timestamptz[],
    uuid[], uuid[], timestamptz[], int2[], bool[], timestamptz[]);

CREATE FUNCTION coursetrail_append(
    p_tenant uuid,
    p_stream uuid[], p_stream_type text[], p_expected int4[], p_recorded_at timestamptz[],
    p_actor_id uuid[], p_actor_role text[], p_command_id uuid[], p_correlation_id uuid[],
    p_causation_id uuid[], p_trainee_id uuid[], p_course_id uuid[], p_command_type text[],
    p_result jsonb[], p_event_count int4[], p_data_key bytea[], p_new_key bool[],
    p_event_id uuid[], p_event_type text[], p_schema_version int2[], p_data jsonb[],
    p_row_kind text[], p_row int4[], p_submission_count int4[],
    c_course_id uuid[], c_code text[], c_title text[], c_passing_score int2[], c_retired bool[],
    c_created_at timestamptz[], c_retired_at timestamptz[], c_version int4[],
    t_trainee_id uuid[], t_email text[], t_name text[], t_registered_at timestamptz[],
    t_version int4[],
    n_enrollment_id uuid[], n_course_id uuid[], n_trainee_id uuid[], n_status text[],
    n_registered_at timestamptz[], n_started_at timestamptz[], n_completed_at timestamptz[],
    n_withdrawn_at timestamptz[], n_withdrawal_reason text[], n_submission_count int4[],
    n_best_score int2[], n_passed_at timestamptz[], n_version int4[], n_updated_at timestamptz[],
    s_submission_id uuid[], s_enrollment_id uuid[], s_submitted_at timestamptz[], s_score int2[],
    s_passed bool[], s_graded_at timestamptz[],
    OUT last_position bigint, OUT refusals text[]
) LANGUAGE plpgsql AS $fn$
DECLARE
    writes  int := coalesce(array_length(p_stream, 1), 0);
    w       int;
    r       int;
    refusal text;
    sub     int := 0;   -- submissions consumed so far (they come in write order)
    ev      int := 0;   -- events consumed so far (they come in write order)
    tid     uuid;       -- the write's trainee
    dk      bytea;      -- the stored form of the key the write's personal data is sealed with
    made    bool;       -- whether this write made that key
    expected int4;      -- the write's expected version
    total   bigint := 0;
    pos     bigint;
    -- The row being written. Statements read its fields and scalar variables, never array
    -- elements: Citus 13.2 crashes planning an UPDATE that sets a text column from an array
    -- element, and its local execution copies, evaluates and converts to text every parameter
    -- a statement names, whole arrays included, at every execution.
    cmd     commands%ROWTYPE;
    e       events%ROWTYPE;
    sb      submissions%ROWTYPE;
    c       courses%ROWTYPE;
    t       trainees%ROWTYPE;
    n       enrollments%ROWTYPE;
BEGIN
    refusals := array_fill(NULL::text, ARRAY[writes]);

    FOR w IN 1 .. writes LOOP
        refusal := NULL;
        r := p_row[w];
        expected := p_expected[w];

        IF p_row_kind[w] = 'registration' THEN
            n.course_id := n_course_id[r];
            n.trainee_id := n_trainee_id[r];
            PERFORM 1 FROM courses
             WHERE tenant_id = p_tenant AND course_id = n.course_id AND NOT retired
               FOR SHARE;
            IF NOT FOUND THEN
                refusal := 'course_closed';
            ELSE
                PERFORM 1 FROM trainees
                 WHERE tenant_id = p_tenant AND trainee_id = n.trainee_id;
                IF NOT FOUND THEN
                    refusal := 'unknown_trainee';
                END IF;
            END IF;
        END IF;

        -- Personal data is written only sealed with the trainee's key as stored. A new key is
        -- inserted here (a key row made first by anyone else refuses the write); a known one
        -- is checked and its row read FOR SHARE, so an erasure (which updates the row first)
        -- and this write wait for each other, and a write racing it is refused.
        cmd := ROW(p_tenant, p_command_id[w], p_command_type[w], p_stream[w], 0, p_result[w],
                   p_recorded_at[w]);
        tid := p_trainee_id[w];
        dk := p_data_key[w];
        made := false;
        IF refusal IS NULL AND dk IS NOT NULL THEN
            IF p_new_key[w] THEN
                INSERT INTO trainee_keys (tenant_id, trainee_id, data_key, created_at)
                VALUES (p_tenant, tid, dk, cmd.recorded_at)
                ON CONFLICT DO NOTHING;
                made := FOUND;
            ELSE
                PERFORM 1 FROM trainee_keys
                 WHERE tenant_id = p_tenant AND trainee_id = tid AND data_key = dk
                   FOR SHARE;
            END IF;
            IF NOT FOUND THEN
                refusal := 'stale_data_key';
            END IF;
        END IF;

        IF refusal IS NULL AND cmd.command_type IS NOT NULL THEN
            INSERT INTO commands (tenant_id, command_id, command_type, stream_id, position,
                                  result, recorded_at)
            VALUES (p_tenant, cmd.command_id, cmd.command_type, cmd.stream_id, 0, cmd.result,
                    cmd.recorded_at)
            ON CONFLICT DO NOTHING;
            IF NOT FOUND THEN
                refusal := 'duplicate_command';
            END IF;
        END IF;

        IF refusal IS NULL THEN
            CASE p_row_kind[w]
            WHEN 'course' THEN
                c := ROW(p_tenant, c_course_id[r], c_code[r], c_title[r], c_passing_score[r],
                         c_retired[r], c_created_at[r], c_retired_at[r], c_version[r]);
                IF p_expected[w] = 0 THEN
                    INSERT INTO courses (tenant_id, course_id, code, title, passing_score,
                                         retired, created_at, retired_at, version)
                    VALUES (p_tenant, c.course_id, c.code, c.title, c.passing_score, c.retired,
                            c.created_at, c.retired_at, c.version)
                    ON CONFLICT DO NOTHING;
                    IF NOT FOUND THEN
                        PERFORM 1 FROM courses WHERE tenant_id = p_tenant AND course_id = c.course_id;
                        refusal := CASE WHEN FOUND THEN 'version_conflict' ELSE 'course_code_taken' END;
                    END IF;
                ELSE
                    UPDATE courses SET code = c.code, title = c.title,
                           passing_score = c.passing_score, retired = c.retired,
                           retired_at = c.retired_at, version = c.version
                     WHERE tenant_id = p_tenant AND course_id = c.course_id
                       AND version = expected;
                    IF NOT FOUND THEN
                        refusal := 'version_conflict';
                    END IF;
                END IF;
            WHEN 'trainee' THEN
                t := ROW(p_tenant, t_trainee_id[r], t_email[r], t_name[r], t_registered_at[r],
                         t_version[r]);
                IF p_expected[w] = 0 THEN
                    INSERT INTO trainees (tenant_id, trainee_id, email, name, registered_at, version)
                    VALUES (p_tenant, t.trainee_id, t.email, t.name, t.registered_at, t.version)
                    ON CONFLICT DO NOTHING;
                    IF NOT FOUND THEN
                        PERFORM 1 FROM trainees WHERE tenant_id = p_tenant AND trainee_id = t.trainee_id;
                        refusal := CASE WHEN FOUND THEN 'version_conflict' ELSE 'email_taken' END;
                    END IF;
                ELSE
                    UPDATE trainees SET email = t.email, name = t.name, version = t.version
                     WHERE tenant_id = p_tenant AND trainee_id = t.trainee_id
                       AND version = expected;
                    IF NOT FOUND THEN
                        refusal := 'version_conflict';
                    END IF;
                END IF;
            WHEN 'enrollment', 'registration' THEN
                n := ROW(p_tenant, n_enrollment_id[r], n_course_id[r], n_trainee_id[r],
                         n_status[r], n_registered_at[r], n_started_at[r], n_completed_at[r],
                         n_withdrawn_at[r], n_withdrawal_reason[r], n_submission_count[r],
                         n_best_score[r], n_passed_at[r], n_version[r], n_updated_at[r]);
                IF p_expected[w] = 0 THEN
                    INSERT INTO enrollments (tenant_id, enrollment_id, course_id, trainee_id,
                           status, registered_at, started_at, completed_at, withdrawn_at,
                           withdrawal_reason, submission_count, best_score, passed_at, version,
                           updated_at)
                    VALUES (p_tenant, n.enrollment_id, n.course_id, n.trainee_id, n.status,
                            n.registered_at, n.started_at, n.completed_at, n.withdrawn_at,
                            n.withdrawal_reason, n.submission_count, n.best_score, n.passed_at,
                            n.version, n.updated_at)
                    ON CONFLICT DO NOTHING;
                    IF NOT FOUND THEN
                        PERFORM 1 FROM enrollments
                         WHERE tenant_id = p_tenant AND enrollment_id = n.enrollment_id;
                        refusal := CASE WHEN FOUND THEN 'version_conflict' ELSE 'already_registered' END;
                    END IF;
                ELSE
                    UPDATE enrollments SET status = n.status, started_at = n.started_at,
                           completed_at = n.completed_at, withdrawn_at = n.withdrawn_at,
                           withdrawal_reason = n.withdrawal_reason,
                           submission_count = n.submission_count, best_score = n.best_score,
                           passed_at = n.passed_at, version = n.version,
                           updated_at = n.updated_at
                     WHERE tenant_id = p_tenant AND enrollment_id = n.enrollment_id
                       AND version = expected;
                    IF NOT FOUND THEN
                        refusal := 'version_conflict';
                    END IF;
                END IF;
            ELSE
                -- A stream without projection rows: only the log guards its version.
                PERFORM 1 FROM events
                 WHERE tenant_id = p_tenant AND stream_id = cmd.stream_id
                   AND version > expected;
                IF FOUND THEN
                    refusal := 'version_conflict';
                END IF;
            END CASE;

            IF refusal IS NOT NULL AND cmd.command_type IS NOT NULL THEN
                DELETE FROM commands WHERE tenant_id = p_tenant AND command_id = cmd.command_id;
            END IF;
            IF refusal IS NOT NULL AND made THEN
                DELETE FROM trainee_keys WHERE tenant_id = p_tenant AND trainee_id = tid;
            END IF;
        END IF;

        IF refusal IS NULL THEN
            FOR r IN sub + 1 .. sub + p_submission_count[w] LOOP
                sb := ROW(p_tenant, s_submission_id[r], s_enrollment_id[r], s_submitted_at[r],
                          s_score[r], s_passed[r], s_graded_at[r]);
                INSERT INTO submissions (tenant_id, submission_id, enrollment_id, submitted_at,
                                         score, passed, graded_at)
                VALUES (p_tenant, sb.submission_id, sb.enrollment_id, sb.submitted_at, sb.score,
                        sb.passed, sb.graded_at)
                ON CONFLICT (tenant_id, submission_id) DO UPDATE
                   SET score = EXCLUDED.score, passed = EXCLUDED.passed,
                       graded_at = EXCLUDED.graded_at;
            END LOOP;
            total := total + p_event_count[w];
        END IF;
        sub := sub + p_submission_count[w];
        refusals[w] := refusal;
    END LOOP;

    IF total = 0 THEN
        RETURN;
    END IF;
    UPDATE tenant_heads SET last_position = tenant_heads.last_position + total
     WHERE tenant_id = p_tenant
    RETURNING tenant_heads.last_position INTO last_position;
    IF NOT FOUND THEN
        -- No head row: a token of a tenant that does not exist. Raised, so that nothing of
        -- the call stays; rare enough that it need not cost every write a statement.
        RAISE EXCEPTION 'coursetrail_append: unknown tenant %', p_tenant;
    END IF;
    pos := last_position - total;

    FOR w IN 1 .. writes LOOP
        IF refusals[w] IS NULL THEN
            FOR r IN 1 .. p_event_count[w] LOOP
                pos := pos + 1;
                e := ROW(p_tenant, p_stream[w], p_expected[w] + r, pos, p_event_id[ev + r],
                         p_stream_type[w], p_event_type[ev + r], p_schema_version[ev + r],
                         p_data[ev + r], p_recorded_at[w], p_actor_id[w], p_actor_role[w],
                         p_command_id[w], p_correlation_id[w], p_causation_id[w],
                         p_trainee_id[w], p_course_id[w]);
                INSERT INTO events (tenant_id, stream_id, version, position, event_id,
                       stream_type, event_type, schema_version, data, recorded_at, actor_id,
                       actor_role, command_id, correlation_id, causation_id, trainee_id,
                       course_id)
                VALUES (p_tenant, e.stream_id, e.version, e.position, e.event_id, e.stream_type,
                        e.event_type, e.schema_version, e.data, e.recorded_at, e.actor_id,
                        e.actor_role, e.command_id, e.correlation_id, e.causation_id,
                        e.trainee_id, e.course_id);
            END LOOP;
            IF p_command_type[w] IS NOT NULL THEN
                cmd.command_id := p_command_id[w];
                UPDATE commands SET position = pos
                 WHERE tenant_id = p_tenant AND command_id = cmd.command_id;
            END IF;
        END IF;
        ev := ev + p_event_count[w];
    END LOOP;
END
$fn$;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus') THEN
        PERFORM create_distributed_function('coursetrail_append'::regproc::oid::regprocedure,
            'p_tenant', colocate_with => 'events');
    END IF;
END
$$;
