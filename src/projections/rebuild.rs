//! Rebuilding a tenant's projections from its log: replay every event through the same row
//! folds the live path uses, then swap the tenant's rows in one transaction.
//!
//! The swap is atomic for readers (MVCC: they see the old rows until COMMIT), and a failure
//! changes nothing (ROLLBACK).

use super::rows::{EventPlace, StreamRows};
use crate::domain::TenantId;
use crate::domain::events::DecodeError;
use crate::replay::{self, Fold, ReplayError, ReplayEvent, ReplayQuery};
use sqlx::{PgConnection, PgPool};
use std::collections::HashMap;
use uuid::Uuid;

/// Rows written per INSERT statement.
const CHUNK: usize = 5_000;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RebuildReport {
    pub events: u64,
    pub courses: u64,
    pub trainees: u64,
    pub enrollments: u64,
    pub submissions: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    #[error("unknown tenant")]
    UnknownTenant,
    #[error("the tenant's log kept growing during the rebuild; try again")]
    KeptMoving,
    #[error(transparent)]
    Replay(#[from] ReplayError<DecodeError>),
    #[error("writing projections: {0}")]
    Database(#[from] sqlx::Error),
}

/// Folds a whole log into the rows of every stream.
#[derive(Default)]
pub struct RowsFold {
    pub streams: HashMap<Uuid, StreamRows>,
}

impl Fold for RowsFold {
    type Error = DecodeError;

    fn apply(&mut self, event: &ReplayEvent) -> Result<(), DecodeError> {
        let decoded = event.decode()?;
        let place = EventPlace {
            stream_id: event.stream_id,
            version: event.version,
            recorded_at: event.recorded_at,
        };
        self.streams
            .entry(event.stream_id)
            .or_default()
            .apply(place, &decoded);
        Ok(())
    }
}

/// How many times a rebuild starts over when the tenant's log grew while it ran.
const MAX_ATTEMPTS: usize = 5;

/// Rebuilds one tenant's projections; `progress` gets the number of events replayed so far.
///
/// The replay runs up to the head position read at the start, without blocking writers. The
/// swap then deletes and re-inserts the tenant's rows and, as its last step, locks the head row
/// and checks that no event was appended meanwhile; if one was, it rolls back and starts over.
/// Locking the head only last keeps the lock order of every append (projection rows, then the
/// head). A group-commit batch, though, locks several streams' rows one statement after
/// another, in its own order, so it and the swap can form a lock cycle; PostgreSQL then cancels
/// one of them, and the swap starts over like when the log moved (the batch's writes are
/// written one by one).
pub async fn rebuild_tenant(
    pool: &PgPool,
    tenant: TenantId,
    mut progress: impl FnMut(u64),
) -> Result<RebuildReport, RebuildError> {
    for _ in 0..MAX_ATTEMPTS {
        let head = head_position(pool, tenant).await?;
        let mut fold = RowsFold::default();
        let query = ReplayQuery {
            until_position: Some(head),
            ..ReplayQuery::everything(tenant)
        };
        let stats = replay::replay(pool, &query, &mut fold, &mut progress).await?;

        let mut tx = pool.begin().await?;
        match swap(&mut tx, tenant, &fold, head).await {
            Ok(Some(mut report)) => {
                tx.commit().await?;
                report.events = stats.events;
                return Ok(report);
            }
            // The log moved, or a lock cycle: start over.
            Ok(None) => tx.rollback().await?,
            Err(sqlx::Error::Database(db))
                if db.code().as_deref() == Some(crate::store::DEADLOCK_DETECTED) =>
            {
                tx.rollback().await?
            }
            Err(error) => return Err(error.into()),
        }
    }
    Err(RebuildError::KeptMoving)
}

/// Replaces the tenant's rows with the fold's, if the head is still at `head` (`None` if not).
async fn swap(
    tx: &mut PgConnection,
    tenant: TenantId,
    fold: &RowsFold,
    head: i64,
) -> Result<Option<RebuildReport>, sqlx::Error> {
    for table in ["submissions", "enrollments", "trainees", "courses"] {
        sqlx::query(&format!("DELETE FROM {table} WHERE tenant_id = $1"))
            .bind(tenant.as_uuid())
            .execute(&mut *tx)
            .await?;
    }
    let report = write_rows(&mut *tx, tenant, fold.streams.values()).await?;
    let head_now: i64 = sqlx::query_scalar(
        "SELECT last_position FROM tenant_heads WHERE tenant_id = $1 FOR UPDATE",
    )
    .bind(tenant.as_uuid())
    .fetch_one(&mut *tx)
    .await?;
    Ok((head_now == head).then_some(report))
}

async fn head_position(pool: &PgPool, tenant: TenantId) -> Result<i64, RebuildError> {
    let head: Option<i64> =
        sqlx::query_scalar("SELECT last_position FROM tenant_heads WHERE tenant_id = $1")
            .bind(tenant.as_uuid())
            .fetch_optional(pool)
            .await?;
    head.ok_or(RebuildError::UnknownTenant)
}

/// Bulk-inserts rows, in chunks of array-bound multi-row INSERTs.
async fn write_rows<'a>(
    conn: &mut PgConnection,
    tenant: TenantId,
    streams: impl Iterator<Item = &'a StreamRows>,
) -> Result<RebuildReport, sqlx::Error> {
    let mut courses = Vec::new();
    let mut trainees = Vec::new();
    let mut enrollments = Vec::new();
    let mut submissions = Vec::new();
    for rows in streams {
        courses.extend(rows.course.iter());
        trainees.extend(rows.trainee.iter());
        enrollments.extend(rows.enrollment.iter());
        submissions.extend(rows.submissions.iter());
    }
    let t = tenant.as_uuid();
    for chunk in courses.chunks(CHUNK) {
        let query = sqlx::query(
            "INSERT INTO courses (tenant_id, course_id, code, title, passing_score, retired, \
             created_at, retired_at, version) \
             SELECT $1, * FROM unnest($2::uuid[], $3::text[], $4::text[], $5::int2[], $6::bool[], \
             $7::timestamptz[], $8::timestamptz[], $9::int4[])",
        );
        super::bind_courses(query.bind(t), chunk)
            .execute(&mut *conn)
            .await?;
    }
    for chunk in trainees.chunks(CHUNK) {
        let query = sqlx::query(
            "INSERT INTO trainees (tenant_id, trainee_id, email, name, registered_at, version) \
             SELECT $1, * FROM unnest($2::uuid[], $3::text[], $4::text[], $5::timestamptz[], $6::int4[])",
        );
        super::bind_trainees(query.bind(t), chunk)
            .execute(&mut *conn)
            .await?;
    }
    for chunk in enrollments.chunks(CHUNK) {
        let query = sqlx::query(
            "INSERT INTO enrollments (tenant_id, enrollment_id, course_id, trainee_id, status, \
             registered_at, started_at, completed_at, withdrawn_at, withdrawal_reason, \
             submission_count, best_score, passed_at, version, updated_at) \
             SELECT $1, * FROM unnest($2::uuid[], $3::uuid[], $4::uuid[], $5::text[], \
             $6::timestamptz[], $7::timestamptz[], $8::timestamptz[], $9::timestamptz[], $10::text[], \
             $11::int4[], $12::int2[], $13::timestamptz[], $14::int4[], $15::timestamptz[])",
        );
        super::bind_enrollments(query.bind(t), chunk)
            .execute(&mut *conn)
            .await?;
    }
    for chunk in submissions.chunks(CHUNK) {
        let query = sqlx::query(
            "INSERT INTO submissions (tenant_id, submission_id, enrollment_id, submitted_at, \
             score, passed, graded_at) \
             SELECT $1, * FROM unnest($2::uuid[], $3::uuid[], $4::timestamptz[], $5::int2[], \
             $6::bool[], $7::timestamptz[])",
        );
        super::bind_submissions(query.bind(t), chunk)
            .execute(&mut *conn)
            .await?;
    }
    Ok(RebuildReport {
        events: 0,
        courses: courses.len() as u64,
        trainees: trainees.len() as u64,
        enrollments: enrollments.len() as u64,
        submissions: submissions.len() as u64,
    })
}
