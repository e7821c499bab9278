-- The projection rebuild's swap as one function: delete a tenant's projection rows, insert the
-- rows replayed from its log, and keep them only if the log did not move meanwhile. Called
-- alone, it is one transaction; on Citus a distributed function (migration …0007) run by the
-- tenant's worker as a local transaction, so the rows are not pulled through the coordinator
-- statement by statement (../shared/CITUS.md rules 17 and 18).
--
-- The head row is locked last, after every projection row, as every writer does
-- (coursetrail_append): a rebuild and a write can wait for each other but not form a cycle of
-- their own. Returns false, having changed nothing, when the tenant's head is no longer
-- p_head (events were appended after the replay read up to it): the caller replays again.
--
-- Rows come one array per column, in the tables' column order after tenant_id.
CREATE FUNCTION coursetrail_replace_projections(
    p_tenant uuid, p_head bigint,
    c_course_id uuid[], c_code text[], c_title text[], c_passing_score int2[], c_retired bool[],
    c_created_at timestamptz[], c_retired_at timestamptz[], c_version int4[],
    t_trainee_id uuid[], t_email text[], t_name text[], t_registered_at timestamptz[],
    t_version int4[],
    n_enrollment_id uuid[], n_course_id uuid[], n_trainee_id uuid[], n_status text[],
    n_registered_at timestamptz[], n_started_at timestamptz[], n_completed_at timestamptz[],
    n_withdrawn_at timestamptz[], n_withdrawal_reason text[], n_submission_count int4[],
    n_best_score int2[], n_passed_at timestamptz[], n_version int4[], n_updated_at timestamptz[],
    s_submission_id uuid[], s_enrollment_id uuid[], s_submitted_at timestamptz[], s_score int2[],
    s_passed bool[], s_graded_at timestamptz[]
) RETURNS boolean LANGUAGE plpgsql AS $fn$
DECLARE
    head bigint;
BEGIN
    DELETE FROM submissions WHERE tenant_id = p_tenant;
    DELETE FROM enrollments WHERE tenant_id = p_tenant;
    DELETE FROM trainees WHERE tenant_id = p_tenant;
    DELETE FROM courses WHERE tenant_id = p_tenant;
    -- Single-row inserts: each is routed to the tenant's shard as it stands (on Citus an
    -- INSERT … SELECT over arrays would be planned as a pull through the coordinator).
    FOR i IN 1 .. coalesce(array_length(c_course_id, 1), 0) LOOP
        INSERT INTO courses (tenant_id, course_id, code, title, passing_score, retired,
                             created_at, retired_at, version)
        VALUES (p_tenant, c_course_id[i], c_code[i], c_title[i], c_passing_score[i],
                c_retired[i], c_created_at[i], c_retired_at[i], c_version[i]);
    END LOOP;
    FOR i IN 1 .. coalesce(array_length(t_trainee_id, 1), 0) LOOP
        INSERT INTO trainees (tenant_id, trainee_id, email, name, registered_at, version)
        VALUES (p_tenant, t_trainee_id[i], t_email[i], t_name[i], t_registered_at[i],
                t_version[i]);
    END LOOP;
    FOR i IN 1 .. coalesce(array_length(n_enrollment_id, 1), 0) LOOP
        INSERT INTO enrollments (tenant_id, enrollment_id, course_id, trainee_id, status,
               registered_at, started_at, completed_at, withdrawn_at, withdrawal_reason,
               submission_count, best_score, passed_at, version, updated_at)
        VALUES (p_tenant, n_enrollment_id[i], n_course_id[i], n_trainee_id[i], n_status[i],
                n_registered_at[i], n_started_at[i], n_completed_at[i], n_withdrawn_at[i],
                n_withdrawal_reason[i], n_submission_count[i], n_best_score[i], n_passed_at[i],
                n_version[i], n_updated_at[i]);
    END LOOP;
    FOR i IN 1 .. coalesce(array_length(s_submission_id, 1), 0) LOOP
        INSERT INTO submissions (tenant_id, submission_id, enrollment_id, submitted_at, score,
                                 passed, graded_at)
        VALUES (p_tenant, s_submission_id[i], s_enrollment_id[i], s_submitted_at[i], s_score[i],
                s_passed[i], s_graded_at[i]);
    END LOOP;

    SELECT last_position INTO head FROM tenant_heads WHERE tenant_id = p_tenant FOR UPDATE;
    IF head IS DISTINCT FROM p_head THEN
        -- Undo the swap (the handler rolls back to the block's start) and say so.
        RAISE EXCEPTION USING ERRCODE = 'CT001', MESSAGE = 'the log moved during the rebuild';
    END IF;
    RETURN true;
EXCEPTION WHEN SQLSTATE 'CT001' THEN
    RETURN false;
END
$fn$;
