//! The event store: loading a stream and appending to it, with optimistic concurrency, gap-free
//! per-tenant positions in commit order, and the command-dedupe record. All SQL on `events`,
//! `tenant_heads` and `commands` for the write path lives here; the write itself is the
//! database function `coursetrail_append` (migration `…0005`), which this module calls.
//!
//! Invariants:
//! - A command's projection rows, the head-row increment, the events and the command record are
//!   written by one call, which commits by itself (no explicit transaction): the head row's
//!   lock serialises one tenant's appends in commit order and is held only from the increment
//!   to that call's COMMIT, never across a round trip to the client. On Citus the call runs on
//!   the tenant's worker alone, as a local transaction.
//! - Commands of one tenant that wait for each other may instead share one such call
//!   ([`append_batch`], group commit).
//! - Lock order: projection rows, then the head row, in both.
//! - A refused write is reported by the write ([`Refusal`]), never read from an error's
//!   constraint name or SQLSTATE (Citus workers' errors lose both).
//! - Every statement names exactly one tenant; wake-ups are sent after COMMIT ([`Notifier`]).

pub mod live;
pub mod log;

use crate::auth::Role;
use crate::domain::events::DecodeError;
use crate::domain::{Event, StreamType, TenantId};
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, Row};
use uuid::Uuid;

/// The channel new-event wake-ups are sent on; the payload is the tenant id.
pub const EVENTS_CHANNEL: &str = "coursetrail_events";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another command appended to the stream since it was loaded.
    #[error("the stream was changed concurrently")]
    VersionConflict,
    /// Another request with the same command id committed first.
    #[error("the command id was used concurrently")]
    DuplicateCommand,
    #[error("unknown tenant")]
    UnknownTenant,
    /// A guard of the rows written alongside refused the write (e.g. the course of a new
    /// registration was retired since the decision); nothing was written.
    #[error("a precondition of the write no longer holds")]
    Refused,
    /// A cross-stream rule refused the write, possibly for a concurrent command that committed
    /// first; nothing was written.
    #[error("a unique rule refused the write: {0:?}")]
    Taken(UniqueRule),
    /// The write may or may not have been committed: the connection was lost while its batch's
    /// statement ran, or its batch was abandoned. Never retried: it may be stored.
    #[error("the outcome of the write is unknown: {0}")]
    OutcomeUnknown(String),
    /// PostgreSQL broke a lock cycle by cancelling this write; nothing of it was written.
    #[error("the write was chosen as a deadlock victim")]
    Deadlock,
    #[error("cannot read stored event: {0}")]
    Decode(#[from] DecodeError),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

/// Who caused an event and why: stored with every event.
#[derive(Debug, Clone, PartialEq)]
pub struct Metadata {
    pub actor_id: Uuid,
    pub actor_role: Role,
    pub command_id: Option<Uuid>,
    pub correlation_id: Uuid,
    pub causation_id: Option<Uuid>,
}

/// One stored event of a stream, as a command needs it.
#[derive(Debug, Clone)]
pub struct StreamEvent {
    pub version: i32,
    pub recorded_at: DateTime<Utc>,
    pub event: Event,
}

/// Loads a whole stream in version order (streams are short: a handful of events).
#[tracing::instrument(level = "debug", name = "db.load_stream", skip_all, fields(db.system = "postgresql"))]
pub async fn load_stream(
    conn: &mut PgConnection,
    tenant: TenantId,
    stream_id: Uuid,
) -> Result<Vec<StreamEvent>, StoreError> {
    let rows = sqlx::query(
        "SELECT version, recorded_at, event_type, schema_version, data FROM events \
         WHERE tenant_id = $1 AND stream_id = $2 ORDER BY version",
    )
    .bind(tenant.as_uuid())
    .bind(stream_id)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|row| {
            let event_type: &str = row.try_get("event_type")?;
            Ok(StreamEvent {
                version: row.try_get("version")?,
                recorded_at: row.try_get("recorded_at")?,
                event: Event::from_stored(
                    event_type,
                    row.try_get("schema_version")?,
                    row.try_get("data")?,
                )?,
            })
        })
        .collect()
}

/// The record that makes a command idempotent.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandRecord {
    pub command_id: Uuid,
    pub command_type: String,
    pub stream_id: Uuid,
    pub position: i64,
    pub result: serde_json::Value,
}

/// The outcome of a command seen before, if any.
#[tracing::instrument(level = "debug", name = "db.find_command", skip_all, fields(db.system = "postgresql"))]
pub async fn find_command(
    conn: &mut PgConnection,
    tenant: TenantId,
    command_id: Uuid,
) -> Result<Option<CommandRecord>, StoreError> {
    let row = sqlx::query(
        "SELECT command_type, stream_id, position, result FROM commands \
         WHERE tenant_id = $1 AND command_id = $2",
    )
    .bind(tenant.as_uuid())
    .bind(command_id)
    .fetch_optional(&mut *conn)
    .await?;
    row.map(|row| {
        Ok(CommandRecord {
            command_id,
            command_type: row.try_get("command_type")?,
            stream_id: row.try_get("stream_id")?,
            position: row.try_get("position")?,
            result: row.try_get("result")?,
        })
    })
    .transpose()
}

/// New events for one stream, with everything stored alongside them.
pub struct Append<'a> {
    pub stream_id: Uuid,
    pub stream_type: StreamType,
    /// The stream's version the decision was made on (0 for a new stream).
    pub expected_version: i32,
    pub events: &'a [Event],
    pub recorded_at: DateTime<Utc>,
    pub metadata: &'a Metadata,
    /// Subjects denormalised onto the events for audit queries.
    pub trainee_id: Option<Uuid>,
    pub course_id: Option<Uuid>,
    /// `(command type, result)` recorded under the metadata's command id, if it has one.
    pub command: Option<(&'a str, &'a serde_json::Value)>,
}

/// A query of the write path, with its bound arguments.
pub type PgQuery<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

/// Why the store refused a write. Nothing of a refused write is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The stream is not at the version the decision was made on (or, for a new stream,
    /// exists already).
    VersionConflict,
    /// The command id is recorded already (by an earlier or a concurrent request).
    DuplicateCommand,
    /// A registration's course is gone or retired since the decision.
    CourseClosed,
    /// A cross-stream rule of the projections.
    Taken(UniqueRule),
    UnknownTenant,
}

/// The cross-stream rules the projections' unique indexes keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UniqueRule {
    /// One course code per tenant.
    CourseCode,
    /// One e-mail address per tenant.
    TraineeEmail,
    /// One active enrollment per trainee and course.
    ActiveEnrollment,
}

impl Refusal {
    /// The reason `coursetrail_append` reports (migration `…0005`).
    fn parse(reason: &str) -> Option<Self> {
        Some(match reason {
            "version_conflict" => Refusal::VersionConflict,
            "duplicate_command" => Refusal::DuplicateCommand,
            "course_closed" => Refusal::CourseClosed,
            "course_code_taken" => Refusal::Taken(UniqueRule::CourseCode),
            "email_taken" => Refusal::Taken(UniqueRule::TraineeEmail),
            "already_registered" => Refusal::Taken(UniqueRule::ActiveEnrollment),
            "unknown_tenant" => Refusal::UnknownTenant,
            _ => return None,
        })
    }
}

impl From<Refusal> for StoreError {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::VersionConflict => StoreError::VersionConflict,
            Refusal::DuplicateCommand => StoreError::DuplicateCommand,
            Refusal::CourseClosed => StoreError::Refused,
            Refusal::Taken(rule) => StoreError::Taken(rule),
            Refusal::UnknownTenant => StoreError::UnknownTenant,
        }
    }
}

/// What became of one write of a batch ([`append_batch`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchOutcome {
    /// Written; the tenant position of its last event.
    Appended(i64),
    /// Refused; nothing of it was written.
    Refused(Refusal),
}

/// The projection rows written with each write of an append (migration `…0005`'s parameters
/// from `$20` on: per write the kind of its row and where it is, its number of submissions,
/// then the rows of every kind, one array per column). Implemented by the projections module,
/// which owns those tables.
pub trait ProjectionRows<'q>: Sized {
    /// Binds the rows of every write, in batch order.
    fn bind(rows: Vec<Self>, query: PgQuery<'q>) -> PgQuery<'q>;
}

/// The whole write path in one call: the function `coursetrail_append` (migration `…0005`).
/// Called alone, it is one transaction; on Citus the coordinator delegates it to the worker
/// holding the tenant (a distributed function, docs/citus-rules.md, rule 18).
const APPEND_STATEMENT: &str = "SELECT coursetrail_append($1, $2, $3, $4, $5, $6, $7, $8, $9, \
     $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, \
     $28, $29, $30, $31, $32, $33, $34, $35, $36, $37, $38, $39, $40, $41, $42, $43, $44, $45, \
     $46, $47, $48, $49, $50, $51, $52, $53, $54, $55)";

/// Writes one command: its projection rows, events, command record and the head increment,
/// in one self-committing call. Returns the tenant position of its last event.
///
/// The new-event wake-up is not sent here: see [`Notifier`].
#[tracing::instrument(level = "debug", name = "db.append_with", skip_all, fields(db.system = "postgresql"))]
pub async fn append_with<'q, P: ProjectionRows<'q>>(
    conn: &mut PgConnection,
    tenant: TenantId,
    append: Append<'q>,
    rows: P,
) -> Result<i64, StoreError> {
    let outcomes = append_batch(conn, tenant, vec![(append, rows)]).await?;
    match outcomes.first() {
        Some(BatchOutcome::Appended(position)) => Ok(*position),
        Some(BatchOutcome::Refused(refusal)) => Err((*refusal).into()),
        None => Err(StoreError::OutcomeUnknown(
            "no outcome for the write".into(),
        )),
    }
}

/// Writes several commands of one tenant in one call, which commits by itself: every write's
/// projection rows, one head increment for all, every event and command record. They share one
/// commit (one WAL flush) instead of queueing on the head row for one flush each.
///
/// Each write is accepted or refused on its own ([`BatchOutcome`]); positions are gap-free and
/// in commit order, in batch order within the batch, over the accepted writes. The head row is
/// locked after every projection row and held only until this call's COMMIT. The writes must
/// be of distinct streams.
///
/// An error the database reports means nothing was written; it is returned as is. Any other
/// error (the connection lost while the call ran) leaves the outcome unknown:
/// [`StoreError::OutcomeUnknown`].
#[tracing::instrument(level = "debug", name = "db.append_batch", skip_all, fields(db.system = "postgresql"))]
pub async fn append_batch<'q, P: ProjectionRows<'q>>(
    conn: &mut PgConnection,
    tenant: TenantId,
    writes: Vec<(Append<'q>, P)>,
) -> Result<Vec<BatchOutcome>, StoreError> {
    let (appends, rows): (Vec<Append<'q>>, Vec<P>) = writes.into_iter().unzip();
    let query = bind_appends(sqlx::query(APPEND_STATEMENT), tenant, &appends);
    let row = match P::bind(rows, query).fetch_one(&mut *conn).await {
        Ok(row) => row,
        Err(error @ sqlx::Error::Database(_)) => return Err(classify(error)),
        Err(error) => return Err(unknown(error)),
    };
    // From here on the call has committed: nothing may send its writes to be written again.
    let (last_position, refusals): (Option<i64>, Vec<Option<String>>) =
        row.try_get(0).map_err(unknown)?;
    let refusals = refusals
        .iter()
        .map(|reason| {
            reason
                .as_deref()
                .map(|r| Refusal::parse(r).ok_or_else(|| format!("unknown refusal {r:?}")))
                .transpose()
        })
        .collect::<Result<Vec<Option<Refusal>>, String>>()
        .map_err(StoreError::OutcomeUnknown)?;
    if refusals.len() != appends.len() {
        return Err(StoreError::OutcomeUnknown(
            "one outcome per write expected".into(),
        ));
    }
    let total: i64 = appends
        .iter()
        .zip(&refusals)
        .filter(|(_, refusal)| refusal.is_none())
        .map(|(append, _)| append.events.len() as i64)
        .sum();
    let mut position = last_position.unwrap_or(0) - total;
    Ok(appends
        .iter()
        .zip(refusals)
        .map(|(append, refusal)| match refusal {
            Some(refusal) => BatchOutcome::Refused(refusal),
            None => {
                position += append.events.len() as i64;
                BatchOutcome::Appended(position)
            }
        })
        .collect())
}

fn unknown(error: sqlx::Error) -> StoreError {
    tracing::error!(%error, "a write failed outside the database: it may or may not be stored");
    StoreError::OutcomeUnknown(error.to_string())
}

/// One value per write, as an array parameter.
fn per_write<'q, T>(appends: &[Append<'q>], value: impl Fn(&Append<'q>) -> T) -> Vec<T> {
    appends.iter().map(value).collect()
}

/// Binds `$1`–`$19`: the tenant, the writes (one element each) and their events (one element
/// each, in write order).
fn bind_appends<'q>(query: PgQuery<'q>, tenant: TenantId, appends: &[Append<'q>]) -> PgQuery<'q> {
    let events = || appends.iter().flat_map(|a| a.events.iter());
    query
        .bind(tenant.as_uuid())
        .bind(per_write(appends, |a| a.stream_id))
        .bind(per_write(appends, |a| a.stream_type.as_str()))
        .bind(per_write(appends, |a| a.expected_version))
        .bind(per_write(appends, |a| a.recorded_at))
        .bind(per_write(appends, |a| a.metadata.actor_id))
        .bind(per_write(appends, |a| a.metadata.actor_role.as_str()))
        .bind(per_write(appends, |a| a.metadata.command_id))
        .bind(per_write(appends, |a| a.metadata.correlation_id))
        .bind(per_write(appends, |a| a.metadata.causation_id))
        .bind(per_write(appends, |a| a.trainee_id))
        .bind(per_write(appends, |a| a.course_id))
        // A command record is written when the command has an id and something to record.
        .bind(per_write(appends, |a| {
            a.command
                .filter(|_| a.metadata.command_id.is_some())
                .map(|(kind, _)| kind)
        }))
        .bind(per_write(appends, |a| a.command.map(|(_, result)| result)))
        .bind(per_write(appends, |a| a.events.len() as i32))
        .bind(events().map(|_| Uuid::now_v7()).collect::<Vec<_>>())
        .bind(
            events()
                .map(|e| e.event_type().as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            events()
                .map(|_| Event::CURRENT_SCHEMA_VERSION)
                .collect::<Vec<_>>(),
        )
        .bind(events().map(Event::data).collect::<Vec<_>>())
}

/// Sends the new-event wake-ups (`pg_notify` on [`EVENTS_CHANNEL`], payload: the tenant id)
/// after the appends committed, from one background task.
///
/// Why not inside the append's transaction, as a `NOTIFY` there would be delivered exactly at
/// COMMIT: PostgreSQL serialises the commits of every transaction that notified, cluster-wide,
/// on one lock held until the commit record is flushed (`PreCommit_Notify`), so with durable
/// commits every append of every tenant would queue behind one fsync at a time. A notification
/// is only a wake-up hint (listeners read the events by position), so it is sent right after
/// COMMIT instead, coalescing the tenants whose appends committed while the previous one was
/// on its way or within [`NOTIFY_INTERVAL`]: one statement, whose commit does not wait for the
/// WAL flush (see `send_notifications`). It runs on its own connection and
/// touches no distributed table, so on Citus it runs on the coordinator, where listeners are
/// (rule 9). If the process dies between a COMMIT and its notification, that hint is lost;
/// listeners must therefore also catch up by position when they (re)connect, which they must
/// do anyway.
#[derive(Clone)]
pub struct Notifier {
    sender: tokio::sync::mpsc::UnboundedSender<TenantId>,
}

impl Notifier {
    /// Starts the sending task on the current tokio runtime.
    pub fn spawn(pool: sqlx::PgPool) -> Self {
        let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(send_notifications(pool, receiver));
        Self { sender }
    }

    /// Queues the wake-up for an append of `tenant` that has committed.
    pub fn committed(&self, tenant: TenantId) {
        // Fails only when the task is gone (the runtime is shutting down): nobody to wake then.
        let _ = self.sender.send(tenant);
    }
}

/// The least time between two wake-up statements. Under load the tenants that commit meanwhile
/// share the next statement (at most 200 a second); a lone commit is announced at once.
const NOTIFY_INTERVAL: std::time::Duration = std::time::Duration::from_millis(5);

async fn send_notifications(
    pool: sqlx::PgPool,
    mut receiver: tokio::sync::mpsc::UnboundedReceiver<TenantId>,
) {
    let mut batch: Vec<TenantId> = Vec::new();
    while receiver.recv_many(&mut batch, 1024).await > 0 {
        let started = tokio::time::Instant::now();
        batch.sort_unstable_by_key(|t| t.as_uuid());
        batch.dedup();
        let tenants: Vec<String> = batch.iter().map(ToString::to_string).collect();
        // A transaction that notifies is given an xid, so its commit is flushed like a write's
        // unless told otherwise. A wake-up is a hint about events already durable: losing it
        // in a crash loses nothing, so its commit does not wait for the flush.
        let sent = sqlx::query(
            "SELECT pg_notify($1, t) FROM unnest($2::text[]) AS t, \
             (SELECT set_config('synchronous_commit', 'off', true)) AS durability",
        )
        .bind(EVENTS_CHANNEL)
        .bind(&tenants)
        .execute(&pool)
        .await;
        if let Err(error) = sent {
            tracing::warn!(error = %error, tenants = tenants.len(), "cannot send new-event wake-ups");
        }
        batch.clear();
        tokio::time::sleep_until(started + NOTIFY_INTERVAL).await;
    }
}

/// SQLSTATE `deadlock_detected`.
pub const DEADLOCK_DETECTED: &str = "40P01";

/// A write the database cancelled to break a lock cycle is [`StoreError::Deadlock`]; conflicts
/// are never read from errors (they are reported by the write itself, see [`Refusal`]).
fn classify(error: sqlx::Error) -> StoreError {
    match &error {
        sqlx::Error::Database(db) if db.code().as_deref() == Some(DEADLOCK_DETECTED) => {
            StoreError::Deadlock
        }
        _ => StoreError::Database(error),
    }
}

/// Creates a tenant and its head row. Writes the reference table first (Citus rule 15).
#[tracing::instrument(level = "debug", name = "db.create_tenant", skip_all, fields(db.system = "postgresql"))]
pub async fn create_tenant(conn: &mut PgConnection, name: &str) -> Result<TenantId, StoreError> {
    let tenant = TenantId::generate();
    sqlx::query("INSERT INTO tenants (tenant_id, name) VALUES ($1, $2)")
        .bind(tenant.as_uuid())
        .bind(name)
        .execute(&mut *conn)
        .await?;
    sqlx::query("INSERT INTO tenant_heads (tenant_id, last_position) VALUES ($1, 0)")
        .bind(tenant.as_uuid())
        .execute(&mut *conn)
        .await?;
    Ok(tenant)
}

/// The tenants, oldest first (an operator's listing).
#[tracing::instrument(level = "debug", name = "db.list_tenants", skip_all, fields(db.system = "postgresql"))]
pub async fn list_tenants(
    conn: &mut PgConnection,
) -> Result<Vec<(TenantId, String, DateTime<Utc>)>, StoreError> {
    let rows = sqlx::query("SELECT tenant_id, name, created_at FROM tenants ORDER BY created_at")
        .fetch_all(&mut *conn)
        .await?;
    rows.iter()
        .map(|row| {
            Ok((
                TenantId::from_uuid(row.try_get("tenant_id")?),
                row.try_get("name")?,
                row.try_get("created_at")?,
            ))
        })
        .collect()
}
