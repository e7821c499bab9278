//! Rebuilding a tenant's projections from its log: replay every event, stream by stream,
//! through the same row folds the live path uses, and replace the tenant's rows in one
//! transaction.
//!
//! The replay reads the log in stream order ([`replay::pages_by_stream`]), so the fold holds one
//! stream at a time; a finished stream's rows join a batch, and full batches are loaded by COPY
//! ([`super::copy`]) while the replay goes on. Memory is a page of events and a batch or two of
//! rows, whatever the log's size. The transaction is atomic for readers (MVCC: they see the old
//! rows until COMMIT), and a failure changes nothing.

use super::copy::{self, Fields, Table};
use super::rows::{EventPlace, StreamRows};
use crate::crypto::Keyring;
use crate::domain::TenantId;
use crate::domain::events::DecodeError;
use crate::replay::{self, ReplayError, ReplayQuery};
use sqlx::{PgConnection, PgPool};
use tokio::sync::mpsc;
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

/// How many times a rebuild starts over when the tenant's log grew while it ran.
const MAX_ATTEMPTS: usize = 5;
/// The COPY text a batch gathers before it is loaded: large enough to amortise a statement,
/// small enough that two batches (one loading, one filling) stay a few MiB.
const BATCH_BYTES: usize = 1 << 20;

/// Rebuilds one tenant's projections; `progress` gets the number of events replayed so far.
/// The replay reads on `pool` while the rows are loaded on `loader`: on Citus a connection to
/// the tenant's worker, where the load is a local transaction (the coordinator would commit a
/// transaction with a COPY in it by two-phase commit, even on one worker).
///
/// The replay runs up to the head position read at the start, without blocking writers. The
/// loading transaction deletes the tenant's rows, loads the replayed ones and, as its last
/// step, locks the head row and checks that no event was appended meanwhile; if one was, it
/// rolls back and the rebuild starts over. Locking the head only last keeps the lock order of
/// every append (projection rows, then the head). A group-commit batch, though, locks several
/// streams' rows one after another, in its own order, so it and the rebuild can form a lock
/// cycle; PostgreSQL then cancels one of them, and the rebuild starts over like when the log
/// moved (a cancelled batch's writes are written one by one).
#[tracing::instrument(level = "debug", name = "db.rebuild_tenant", skip_all, fields(db.system = "postgresql"))]
pub async fn rebuild_tenant(
    pool: &PgPool,
    loader: &mut PgConnection,
    keys: &Keyring,
    tenant: TenantId,
    mut progress: impl FnMut(u64),
) -> Result<RebuildReport, RebuildError> {
    for _ in 0..MAX_ATTEMPTS {
        let head = head_position(pool, tenant).await?;
        let (batches, loaded) = mpsc::channel(1);
        let replayed = replay_into_batches(pool, keys, tenant, head, batches, &mut progress);
        let loaded = load(&mut *loader, tenant, head, loaded);
        match tokio::try_join!(replayed, loaded) {
            Ok((events, Some(mut report))) => {
                report.events = events;
                return Ok(report);
            }
            // The log moved, or a lock cycle: start over.
            Ok((_, None)) => {}
            Err(RebuildError::Database(sqlx::Error::Database(db)))
                if db.code().as_deref() == Some(crate::store::DEADLOCK_DETECTED) => {}
            Err(error) => return Err(error),
        }
    }
    Err(RebuildError::KeptMoving)
}

/// The rows of finished streams, as COPY text per table.
struct Batch {
    courses: Fields,
    trainees: Fields,
    enrollments: Fields,
    submissions: Fields,
    report: RebuildReport,
}

impl Batch {
    fn new() -> Self {
        Self {
            courses: Fields::new(),
            trainees: Fields::new(),
            enrollments: Fields::new(),
            submissions: Fields::new(),
            report: RebuildReport::default(),
        }
    }

    fn add(&mut self, tenant: Uuid, rows: &StreamRows) {
        if let Some(row) = &rows.course {
            copy::COURSES.write(&mut self.courses, tenant, row);
            self.report.courses += 1;
        }
        if let Some(row) = &rows.trainee {
            copy::TRAINEES.write(&mut self.trainees, tenant, row);
            self.report.trainees += 1;
        }
        if let Some(row) = &rows.enrollment {
            copy::ENROLLMENTS.write(&mut self.enrollments, tenant, row);
            self.report.enrollments += 1;
        }
        for row in &rows.submissions {
            copy::SUBMISSIONS.write(&mut self.submissions, tenant, row);
            self.report.submissions += 1;
        }
    }

    fn len(&self) -> usize {
        self.courses.len() + self.trainees.len() + self.enrollments.len() + self.submissions.len()
    }
}

/// Replays the log up to `head` stream by stream, sending the rows of finished streams in
/// batches; returns the number of events replayed.
async fn replay_into_batches(
    pool: &PgPool,
    keys: &Keyring,
    tenant: TenantId,
    head: i64,
    batches: mpsc::Sender<Batch>,
    progress: &mut impl FnMut(u64),
) -> Result<u64, RebuildError> {
    let query = ReplayQuery {
        unopened: super::rows::UNSTORED_PERSONAL.to_vec(),
        ..ReplayQuery::everything(tenant, keys.clone())
    };
    let mut pages = replay::pages_by_stream(pool, &query, head);
    let mut events = 0;
    let mut stream: Option<(Uuid, StreamRows)> = None;
    let mut batch = Batch::new();
    while let Some(page) = pages.recv().await {
        let page = page.map_err(ReplayError::without_fold)?;
        for event in &page {
            let decoded = event.decode().map_err(ReplayError::Fold)?;
            if stream
                .as_ref()
                .is_some_and(|(id, _)| *id != event.stream_id)
            {
                let (_, rows) = stream.take().expect("checked");
                batch.add(tenant.as_uuid(), &rows);
            }
            let (_, rows) = stream.get_or_insert_with(|| (event.stream_id, StreamRows::default()));
            let place = EventPlace {
                stream_id: event.stream_id,
                version: event.version,
                recorded_at: event.recorded_at,
            };
            rows.apply(place, &decoded);
        }
        events += page.len() as u64;
        progress(events);
        if batch.len() >= BATCH_BYTES {
            let full = std::mem::replace(&mut batch, Batch::new());
            if batches.send(full).await.is_err() {
                // The loading side failed; its error is the rebuild's.
                return Ok(events);
            }
        }
    }
    if let Some((_, rows)) = stream {
        batch.add(tenant.as_uuid(), &rows);
    }
    let _ = batches.send(batch).await;
    Ok(events)
}

const DELETE_ROWS: [&str; 4] = [
    "DELETE FROM submissions WHERE tenant_id = $1",
    "DELETE FROM enrollments WHERE tenant_id = $1",
    "DELETE FROM trainees WHERE tenant_id = $1",
    "DELETE FROM courses WHERE tenant_id = $1",
];

/// Replaces the tenant's rows with the batches' in one transaction, if the head is still at
/// `head` when they are all loaded (`None`, changing nothing, if not).
async fn load(
    conn: &mut PgConnection,
    tenant: TenantId,
    head: i64,
    mut batches: mpsc::Receiver<Batch>,
) -> Result<Option<RebuildReport>, RebuildError> {
    let mut tx = sqlx::Connection::begin(conn).await?;
    for delete in DELETE_ROWS {
        sqlx::query(delete)
            .bind(tenant.as_uuid())
            .execute(&mut *tx)
            .await?;
    }
    let mut report = RebuildReport::default();
    while let Some(mut batch) = batches.recv().await {
        copy_in(&mut tx, &copy::COURSES, &mut batch.courses).await?;
        copy_in(&mut tx, &copy::TRAINEES, &mut batch.trainees).await?;
        copy_in(&mut tx, &copy::ENROLLMENTS, &mut batch.enrollments).await?;
        copy_in(&mut tx, &copy::SUBMISSIONS, &mut batch.submissions).await?;
        report.courses += batch.report.courses;
        report.trainees += batch.report.trainees;
        report.enrollments += batch.report.enrollments;
        report.submissions += batch.report.submissions;
    }
    let now: Option<i64> = sqlx::query_scalar(
        "SELECT last_position FROM tenant_heads WHERE tenant_id = $1 FOR UPDATE",
    )
    .bind(tenant.as_uuid())
    .fetch_optional(&mut *tx)
    .await?;
    if now != Some(head) {
        tx.rollback().await?;
        return Ok(None);
    }
    tx.commit().await?;
    Ok(Some(report))
}

/// Loads one table's lines of a batch (nothing if it has none).
async fn copy_in<R>(
    conn: &mut PgConnection,
    table: &Table<R>,
    lines: &mut Fields,
) -> Result<(), sqlx::Error> {
    if lines.is_empty() {
        return Ok(());
    }
    let mut copy = conn.copy_in_raw(&table.statement()).await?;
    copy.send(lines.take()).await?;
    copy.finish().await?;
    Ok(())
}

async fn head_position(pool: &PgPool, tenant: TenantId) -> Result<i64, RebuildError> {
    let head: Option<i64> =
        sqlx::query_scalar("SELECT last_position FROM tenant_heads WHERE tenant_id = $1")
            .bind(tenant.as_uuid())
            .fetch_optional(pool)
            .await?;
    head.ok_or(RebuildError::UnknownTenant)
}
