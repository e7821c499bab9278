//! Events seeded by SQL rather than through commands: the benches that need volume measure
//! reading (pages, reports, exports) or appending beside a large log, not writing it.
//!
//! One shape for every bench: five-event enrollment streams (registered, started, submitted,
//! graded, completed) with the data each event type carries, so that reports can replay
//! them, spread over 2,000 trainees and 50 courses per tenant, recorded a second apart. As in
//! the test suite's `seed_events`, the tenant's head row is bumped in the same statement as
//! the insert, so positions stay gap-free and the head matches the log. Nothing is notified.

use coursetrail::domain::TenantId;
use sqlx::PgPool;
use uuid::Uuid;

/// Events inserted by one statement (one transaction), across all the tenants seeded.
const ROWS_PER_STATEMENT: i64 = 500_000;

/// Positions `base + 1 ..= base + $2` of each tenant in `$1`: stream, trainee and course ids
/// derived from the tenant and the position (`md5`), so that reruns and other tenants never
/// collide and every fifth position starts a new stream.
const SEED: &str = "\
WITH head AS ( \
    UPDATE tenant_heads SET last_position = last_position + $2 \
    WHERE tenant_id = ANY($1) \
    RETURNING tenant_id, last_position - $2 AS base \
) \
INSERT INTO events (tenant_id, stream_id, version, position, event_id, stream_type, \
    event_type, schema_version, data, recorded_at, actor_id, actor_role, correlation_id, \
    trainee_id, course_id) \
SELECT head.tenant_id, e.stream_id, ((p - 1) % 5) + 1, p, gen_random_uuid(), 'enrollment', \
    (ARRAY['CourseRegistered', 'CourseStarted', 'TestSubmitted', 'TestGraded', \
           'CourseCompleted'])[((p - 1) % 5) + 1], \
    1, \
    (ARRAY[jsonb_build_object('courseId', e.course_id, 'traineeId', e.trainee_id), \
           '{}'::jsonb, \
           jsonb_build_object('submissionId', e.stream_id, 'answers', \
                              jsonb_build_object('q1', 'b')), \
           jsonb_build_object('submissionId', e.stream_id, 'score', 80, 'passed', true), \
           '{}'::jsonb])[((p - 1) % 5) + 1], \
    now() - interval '1 second' * (head.base + $2 - p), \
    md5(head.tenant_id::text || 'a')::uuid, 'admin', gen_random_uuid(), \
    e.trainee_id, e.course_id \
FROM head, generate_series(head.base + 1, head.base + $2) AS p, \
    LATERAL (SELECT md5(head.tenant_id::text || 'e' || ((p - 1) / 5))::uuid AS stream_id, \
                    md5(head.tenant_id::text || 't' || (((p - 1) / 5) % 2000))::uuid \
                        AS trainee_id, \
                    md5(head.tenant_id::text || 'c' || (((p - 1) / 5) % 50))::uuid \
                        AS course_id) AS e";

/// Appends `per_tenant` events to each of `tenants`, continuing each tenant's positions, in
/// statements of at most [`ROWS_PER_STATEMENT`] events. Statistics and checkpoints are left
/// to the caller (`ANALYZE`, `VACUUM`, `CHECKPOINT`): what a measurement needs differs.
pub async fn seed_events(
    pool: &PgPool,
    tenants: &[TenantId],
    per_tenant: u64,
) -> anyhow::Result<()> {
    if tenants.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = tenants.iter().map(|t| t.as_uuid()).collect();
    let chunk = (ROWS_PER_STATEMENT / ids.len() as i64).max(1);
    let mut remaining = i64::try_from(per_tenant)?;
    while remaining > 0 {
        let count = remaining.min(chunk);
        let mut tx = pool.begin().await?;
        // Seeding is set-up, not the measurement: no need to wait for each flush.
        sqlx::query("SET LOCAL synchronous_commit = off")
            .execute(&mut *tx)
            .await?;
        sqlx::query(SEED)
            .bind(&ids)
            .bind(count)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        remaining -= count;
    }
    Ok(())
}

/// `VACUUM ANALYZE events`, then `CHECKPOINT`: after seeding, so that what is measured next
/// neither sets the new rows' hint bits nor flushes them.
pub async fn vacuum_and_checkpoint(pool: &PgPool) -> anyhow::Result<()> {
    sqlx::query("VACUUM ANALYZE events").execute(pool).await?;
    sqlx::query("CHECKPOINT").execute(pool).await?;
    Ok(())
}
