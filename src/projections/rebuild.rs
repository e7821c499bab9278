//! Rebuilding a tenant's projections from its log: replay every event through the same row
//! folds the live path uses, then swap the tenant's rows in one transaction (one call of the
//! database function `coursetrail_replace_projections`).
//!
//! The swap is atomic for readers (MVCC: they see the old rows until COMMIT), and a failure
//! changes nothing.

use super::rows::{CourseRow, EnrollmentRow, EventPlace, StreamRows, SubmissionRow, TraineeRow};
use crate::crypto::Keyring;
use crate::domain::TenantId;
use crate::domain::events::DecodeError;
use crate::replay::{self, Fold, ReplayError, ReplayEvent, ReplayQuery};
use crate::store::{Call, Function};
use sqlx::{PgPool, Row};
use std::collections::HashMap;
use uuid::Uuid;

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
/// swap is then one call of the database function `coursetrail_replace_projections` (migration
/// `…0006`; on Citus it runs on the tenant's worker): it deletes and re-inserts the tenant's
/// rows and, as its last step, locks the head row and checks that no event was appended
/// meanwhile; if one was, it undoes the swap and the rebuild starts over. Locking the head only
/// last keeps the lock order of every append (projection rows, then the head). A group-commit
/// batch, though, locks several streams' rows one after another, in its own order, so it and
/// the swap can form a lock cycle; PostgreSQL then cancels one of them, and the swap starts
/// over like when the log moved (a cancelled batch's writes are written one by one).
#[tracing::instrument(level = "debug", name = "db.rebuild_tenant", skip_all, fields(db.system = "postgresql"))]
pub async fn rebuild_tenant(
    pool: &PgPool,
    keys: &Keyring,
    tenant: TenantId,
    mut progress: impl FnMut(u64),
) -> Result<RebuildReport, RebuildError> {
    for _ in 0..MAX_ATTEMPTS {
        let head = head_position(pool, tenant).await?;
        let mut fold = RowsFold::default();
        let query = ReplayQuery {
            until_position: Some(head),
            unopened: super::rows::UNSTORED_PERSONAL.to_vec(),
            ..ReplayQuery::everything(tenant, keys.clone())
        };
        let stats = replay::replay(pool, &query, &mut fold, &mut progress).await?;
        match swap(pool, tenant, &fold, head).await {
            Ok(Some(mut report)) => {
                report.events = stats.events;
                return Ok(report);
            }
            // The log moved, or a lock cycle: start over.
            Ok(None) => {}
            Err(sqlx::Error::Database(db))
                if db.code().as_deref() == Some(crate::store::DEADLOCK_DETECTED) => {}
            Err(error) => return Err(error.into()),
        }
    }
    Err(RebuildError::KeptMoving)
}

/// Replaces the tenant's rows with the fold's, if the head is still at `head` (`None` if not):
/// one self-committing call.
async fn swap(
    pool: &PgPool,
    tenant: TenantId,
    fold: &RowsFold,
    head: i64,
) -> Result<Option<RebuildReport>, sqlx::Error> {
    let mut courses = Vec::new();
    let mut trainees = Vec::new();
    let mut enrollments = Vec::new();
    let mut submissions = Vec::new();
    for rows in fold.streams.values() {
        courses.extend(rows.course.iter());
        trainees.extend(rows.trainee.iter());
        enrollments.extend(rows.enrollment.iter());
        submissions.extend(rows.submissions.iter());
    }
    let call = bind_swap(
        tenant,
        head,
        &courses,
        &trainees,
        &enrollments,
        &submissions,
    );
    let swapped: bool = call.query().fetch_one(pool).await?.try_get(0)?;
    Ok(swapped.then_some(RebuildReport {
        events: 0,
        courses: courses.len() as u64,
        trainees: trainees.len() as u64,
        enrollments: enrollments.len() as u64,
        submissions: submissions.len() as u64,
    }))
}

/// The swap function (migration `…0006`).
static REPLACE_PROJECTIONS: Function = Function::new("coursetrail_replace_projections", 35);

fn bind_swap<'q>(
    tenant: TenantId,
    head: i64,
    courses: &[&'q CourseRow],
    trainees: &[&'q TraineeRow],
    enrollments: &[&'q EnrollmentRow],
    submissions: &[&'q SubmissionRow],
) -> Call<'q> {
    let call = REPLACE_PROJECTIONS
        .call()
        .arg("p_tenant", tenant.as_uuid())
        .arg("p_head", head);
    let call = super::bind_courses(call, courses);
    let call = super::bind_trainees(call, trainees);
    let call = super::bind_enrollments(call, enrollments);
    super::bind_submissions(call, submissions)
}

/// The names of `coursetrail_replace_projections`'s parameters as the rebuild binds them, in
/// order (for the test that checks them against the function's signature).
pub fn swap_parameter_names() -> Vec<&'static str> {
    bind_swap(TenantId::from_uuid(Uuid::nil()), 0, &[], &[], &[], &[])
        .names()
        .to_vec()
}

async fn head_position(pool: &PgPool, tenant: TenantId) -> Result<i64, RebuildError> {
    let head: Option<i64> =
        sqlx::query_scalar("SELECT last_position FROM tenant_heads WHERE tenant_id = $1")
            .bind(tenant.as_uuid())
            .fetch_optional(pool)
            .await?;
    head.ok_or(RebuildError::UnknownTenant)
}
