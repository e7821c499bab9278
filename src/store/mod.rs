//! The event store: loading a stream and appending to it, with optimistic concurrency, gap-free
//! per-tenant positions in commit order, and the command-dedupe record. All SQL on `events`,
//! `tenant_heads` and `commands` for the write path lives here.
//!
//! Invariants:
//! - A command's projection rows, the head-row increment, the events and the command record are
//!   written by one statement, which commits by itself (no explicit transaction): the head row's
//!   lock serialises one tenant's appends in commit order and is held only from the increment
//!   to that statement's COMMIT, never across a round trip to the client.
//! - Commands of one tenant that wait for each other may instead share one such statement
//!   ([`append_batch`], group commit).
//! - Lock order: projection rows, then the head row (see [`append_ctes!`]), in both.
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

/// The CTEs every append statement ends with, after the CTEs of the rows written alongside
/// (see [`Alongside`]), which must define `projected(ok boolean)`: one row, `ok` false when a
/// guard refused the write. Parameters `$1`–`$19` are the append's ([`append_with`] binds them).
///
/// Order of work inside the statement, and why:
/// - the head row's `WHERE` reads `projected`, so every projection row is written (and every
///   wait on a projection's unique index or row lock happens) *before* the head row is locked:
///   the lock order of every writer is "projection rows, then the head" (the rebuild relies on
///   it), and the head lock is held for the shortest time;
/// - the head increment hands out the positions; the events and the command record follow it
///   because they need them; the statement is the transaction's last (or only) one, so the
///   head lock is released at COMMIT without another round trip (Citus rule 7).
#[macro_export]
macro_rules! append_ctes {
    () => {
        "head AS ( \
             UPDATE tenant_heads SET last_position = last_position + $2 \
             WHERE tenant_id = $1 AND (SELECT bool_and(ok) FROM projected) \
             RETURNING last_position \
         ), appended AS ( \
             INSERT INTO events (tenant_id, stream_id, version, position, event_id, stream_type, \
                 event_type, schema_version, data, recorded_at, actor_id, actor_role, command_id, \
                 correlation_id, causation_id, trainee_id, course_id) \
             SELECT $1, $3, $4 + e.ord, head.last_position - $2 + e.ord, e.event_id, $5, \
                 e.event_type, e.schema_version, e.data, $6, $7, $8, $9, $10, $11, $12, $13 \
             FROM head, unnest($14::uuid[], $15::text[], $16::int2[], $17::jsonb[]) \
                 WITH ORDINALITY AS e(event_id, event_type, schema_version, data, ord) \
         ), command AS ( \
             INSERT INTO commands (tenant_id, command_id, command_type, stream_id, position, \
                 result, recorded_at) \
             SELECT $1, $9, $18, $3, head.last_position, $19, $6 FROM head \
             WHERE $9::uuid IS NOT NULL AND $18::text IS NOT NULL \
         ) \
         SELECT (SELECT last_position FROM head) AS last_position, \
             (SELECT bool_and(ok) FROM projected) AS projected"
    };
}

/// Rows of other tables (the projections) written by the same statement as an append, so a
/// command commits in one statement. Implemented by the projections module, which owns that SQL.
pub trait Alongside<'q> {
    /// The whole statement: `WITH <CTEs defining projected>, ` followed by [`append_ctes!`].
    fn statement(&self) -> &'static str;

    /// Binds the statement's parameters from `$20` on.
    fn bind(self, query: PgQuery<'q>) -> PgQuery<'q>;
}

/// Nothing written alongside: a bare append.
pub struct NothingAlongside;

impl<'q> Alongside<'q> for NothingAlongside {
    fn statement(&self) -> &'static str {
        concat!("WITH projected AS (SELECT true AS ok), ", append_ctes!())
    }

    fn bind(self, query: PgQuery<'q>) -> PgQuery<'q> {
        query
    }
}

/// Appends the events, records the command and bumps the tenant head — one statement.
/// Returns the tenant position of the last event.
pub async fn append(
    conn: &mut PgConnection,
    tenant: TenantId,
    append: Append<'_>,
) -> Result<i64, StoreError> {
    append_with(conn, tenant, append, NothingAlongside).await
}

/// Writes `alongside` (the projection rows), appends the events, records the command and bumps
/// the tenant head, in one statement. Run outside an explicit transaction, it commits by itself:
/// the whole command's write is then one round trip, and the head lock is never held while the
/// client is waited for. Returns the tenant position of the last event.
///
/// The new-event wake-up is not sent here: see [`Notifier`].
pub async fn append_with<'q>(
    conn: &mut PgConnection,
    tenant: TenantId,
    append: Append<'q>,
    alongside: impl Alongside<'q>,
) -> Result<i64, StoreError> {
    let query = bind_append(sqlx::query(alongside.statement()), tenant, &append);
    let row = alongside
        .bind(query)
        .fetch_one(&mut *conn)
        .await
        .map_err(classify)?;
    let projected: Option<bool> = row.try_get("projected")?;
    if projected != Some(true) {
        return Err(StoreError::Refused);
    }
    let last_position: Option<i64> = row.try_get("last_position")?;
    last_position.ok_or(StoreError::UnknownTenant)
}

/// Binds `$1`–`$19`, the parameters of [`append_ctes!`].
fn bind_append<'q>(query: PgQuery<'q>, tenant: TenantId, append: &Append<'q>) -> PgQuery<'q> {
    let event_ids: Vec<Uuid> = append.events.iter().map(|_| Uuid::now_v7()).collect();
    let event_types: Vec<&str> = append
        .events
        .iter()
        .map(|e| e.event_type().as_str())
        .collect();
    let schema_versions: Vec<i16> = vec![Event::CURRENT_SCHEMA_VERSION; append.events.len()];
    let data: Vec<serde_json::Value> = append.events.iter().map(Event::data).collect();
    let (command_type, command_result) = match append.command {
        Some((kind, result)) => (Some(kind), Some(result)),
        None => (None, None),
    };
    query
        .bind(tenant.as_uuid())
        .bind(append.events.len() as i64)
        .bind(append.stream_id)
        .bind(append.expected_version)
        .bind(append.stream_type.as_str())
        .bind(append.recorded_at)
        .bind(append.metadata.actor_id)
        .bind(append.metadata.actor_role.as_str())
        .bind(append.metadata.command_id)
        .bind(append.metadata.correlation_id)
        .bind(append.metadata.causation_id)
        .bind(append.trainee_id)
        .bind(append.course_id)
        .bind(event_ids)
        .bind(event_types)
        .bind(schema_versions)
        .bind(data)
        .bind(command_type)
        .bind(command_result)
}

/// The rows of a batch's writes ([`append_batch`]), written by the same statement as their
/// events. Implemented by the projections module, which owns that SQL.
pub trait AlongsideBatch<'q>: Sized {
    /// The whole statement: `WITH <CTEs>, ` followed by [`append_many_ctes!`]. The CTEs must
    /// define `refused(w int4)`, the writes (0-based, in batch order) a guard refused, and
    /// `written(n bigint)`, one row that reads every other row CTE (so they all run before the
    /// head row is locked).
    fn statement() -> &'static str;
    /// Binds the rows of every write, in batch order, from `$24` on.
    fn bind(rows: Vec<Self>, query: PgQuery<'q>) -> PgQuery<'q>;
}

/// The CTEs every batch statement ends with, after the rows' CTEs (see [`AlongsideBatch`]):
/// the accepted writes' events (values in arrays, one element per event, `$2`–`$17`), one head
/// increment for all of them, the events, and the command records (one element per command,
/// `$18`–`$23`). Positions run in batch order, over the accepted writes only. Without a head
/// row (an unknown tenant) the positions are NULL and the statement fails as a whole, rows
/// included.
#[macro_export]
macro_rules! append_many_ctes {
    () => {
        "accepted AS ( \
             SELECT e.*, row_number() OVER (ORDER BY e.ord) AS n \
             FROM unnest($2::int4[], $3::uuid[], $4::int4[], $5::uuid[], $6::text[], $7::text[], \
                 $8::int2[], $9::jsonb[], $10::timestamptz[], $11::uuid[], $12::text[], \
                 $13::uuid[], $14::uuid[], $15::uuid[], $16::uuid[], $17::uuid[]) \
                 WITH ORDINALITY AS e(w, stream_id, version, event_id, stream_type, event_type, \
                 schema_version, data, recorded_at, actor_id, actor_role, command_id, \
                 correlation_id, causation_id, trainee_id, course_id, ord) \
             WHERE e.w NOT IN (SELECT w FROM refused) \
         ), total AS (SELECT count(*) AS n FROM accepted), \
         head AS ( \
             UPDATE tenant_heads SET last_position = last_position + (SELECT n FROM total) \
             WHERE tenant_id = $1 AND (SELECT n FROM written) >= 0 \
             RETURNING last_position \
         ), appended AS ( \
             INSERT INTO events (tenant_id, stream_id, version, position, event_id, stream_type, \
                 event_type, schema_version, data, recorded_at, actor_id, actor_role, command_id, \
                 correlation_id, causation_id, trainee_id, course_id) \
             SELECT $1, a.stream_id, a.version, head.last_position - (SELECT n FROM total) + a.n, \
                 a.event_id, a.stream_type, a.event_type, a.schema_version, a.data, \
                 a.recorded_at, a.actor_id, a.actor_role, a.command_id, a.correlation_id, \
                 a.causation_id, a.trainee_id, a.course_id \
             FROM accepted a LEFT JOIN head ON true \
         ), command AS ( \
             INSERT INTO commands (tenant_id, command_id, command_type, stream_id, position, \
                 result, recorded_at) \
             SELECT $1, c.command_id, c.command_type, c.stream_id, \
                 head.last_position - (SELECT n FROM total) \
                     + (SELECT max(a.n) FROM accepted a WHERE a.w = c.w), \
                 c.result, c.recorded_at \
             FROM unnest($18::int4[], $19::uuid[], $20::text[], $21::uuid[], \
                 $22::jsonb[], $23::timestamptz[]) \
                 AS c(w, command_id, command_type, stream_id, result, recorded_at) \
                 LEFT JOIN head ON true \
             WHERE c.w NOT IN (SELECT w FROM refused) \
         ) \
         SELECT (SELECT last_position FROM head) AS last_position, \
             ARRAY(SELECT w FROM refused) AS refused"
    };
}

/// What became of one write of a committed batch ([`append_batch`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchOutcome {
    /// Written; the tenant position of its last event.
    Appended(i64),
    /// A guard of its rows refused it ([`StoreError::Refused`]); nothing of it was written.
    Refused,
}

/// Writes several commands of one tenant in one statement, which commits by itself: every
/// write's projection rows, one head increment for all, every event and command record. They
/// share one commit (one WAL flush) instead of queueing on the head row for one flush each.
///
/// As for a single append: every projection row is written before the head row is locked, the
/// head is held only until this statement's COMMIT, and positions are gap-free and in commit
/// order (in batch order within the batch). A write whose guard refuses is left out, nothing of
/// it written. The writes must be of distinct streams, and a registration must not be for a
/// course another write of the batch changes (its guard would not see that change).
///
/// An error the database reports means nothing was written; it is returned as is, and the
/// caller writes each on its own, which tells each its own outcome. Any other error (the
/// connection lost while the statement ran) leaves the outcome unknown:
/// [`StoreError::OutcomeUnknown`].
pub async fn append_batch<'q, A: AlongsideBatch<'q>>(
    conn: &mut PgConnection,
    tenant: TenantId,
    writes: Vec<(Append<'q>, A)>,
) -> Result<Vec<BatchOutcome>, StoreError> {
    let (appends, rows): (Vec<Append<'q>>, Vec<A>) = writes.into_iter().unzip();
    let query = bind_many(sqlx::query(A::statement()), tenant, &appends);
    let row = match A::bind(rows, query).fetch_one(&mut *conn).await {
        Ok(row) => row,
        Err(error @ sqlx::Error::Database(_)) => return Err(classify(error)),
        Err(error) => return Err(unknown(error)),
    };
    // From here on the batch is committed: nothing may send it down the "write alone" path.
    let last_position: Option<i64> = row.try_get("last_position").map_err(unknown)?;
    let refused: Vec<i32> = row.try_get("refused").map_err(unknown)?;
    let last_position = last_position.ok_or(StoreError::UnknownTenant)?;
    let accepted = |w: usize| !refused.iter().any(|r| *r as usize == w);
    let total: i64 = appends
        .iter()
        .enumerate()
        .filter(|(w, _)| accepted(*w))
        .map(|(_, a)| a.events.len() as i64)
        .sum();
    let mut position = last_position - total;
    Ok(appends
        .iter()
        .enumerate()
        .map(|(w, append)| {
            if accepted(w) {
                position += append.events.len() as i64;
                BatchOutcome::Appended(position)
            } else {
                BatchOutcome::Refused
            }
        })
        .collect())
}

fn unknown(error: sqlx::Error) -> StoreError {
    tracing::error!(%error, "a batch's statement failed outside the database: its writes may or may not be stored");
    StoreError::OutcomeUnknown(error.to_string())
}

/// Binds `$1`–`$23`, the parameters of [`append_many_ctes!`].
fn bind_many<'q>(query: PgQuery<'q>, tenant: TenantId, appends: &[Append<'q>]) -> PgQuery<'q> {
    let events = appends.iter().map(|a| a.events.len()).sum();
    let mut writes = Vec::with_capacity(events);
    let mut stream_ids = Vec::with_capacity(events);
    let mut versions = Vec::with_capacity(events);
    let mut event_ids = Vec::with_capacity(events);
    let mut stream_types = Vec::with_capacity(events);
    let mut event_types = Vec::with_capacity(events);
    let mut data = Vec::with_capacity(events);
    let mut recorded_ats = Vec::with_capacity(events);
    let mut actor_ids = Vec::with_capacity(events);
    let mut actor_roles = Vec::with_capacity(events);
    let mut command_ids = Vec::with_capacity(events);
    let mut correlation_ids = Vec::with_capacity(events);
    let mut causation_ids = Vec::with_capacity(events);
    let mut trainee_ids = Vec::with_capacity(events);
    let mut course_ids = Vec::with_capacity(events);
    let (mut record_writes, mut record_ids, mut record_types) = (vec![], vec![], vec![]);
    let (mut record_streams, mut record_results, mut record_times) = (vec![], vec![], vec![]);
    for (w, append) in appends.iter().enumerate() {
        let w = w as i32;
        for (event, version) in append.events.iter().zip(append.expected_version + 1..) {
            writes.push(w);
            stream_ids.push(append.stream_id);
            versions.push(version);
            event_ids.push(Uuid::now_v7());
            stream_types.push(append.stream_type.as_str());
            event_types.push(event.event_type().as_str());
            data.push(event.data());
            recorded_ats.push(append.recorded_at);
            actor_ids.push(append.metadata.actor_id);
            actor_roles.push(append.metadata.actor_role.as_str());
            command_ids.push(append.metadata.command_id);
            correlation_ids.push(append.metadata.correlation_id);
            causation_ids.push(append.metadata.causation_id);
            trainee_ids.push(append.trainee_id);
            course_ids.push(append.course_id);
        }
        if let (Some(command_id), Some((kind, result))) =
            (append.metadata.command_id, append.command)
        {
            record_writes.push(w);
            record_ids.push(command_id);
            record_types.push(kind);
            record_streams.push(append.stream_id);
            record_results.push(result);
            record_times.push(append.recorded_at);
        }
    }
    let schema_versions = vec![Event::CURRENT_SCHEMA_VERSION; events];
    query
        .bind(tenant.as_uuid())
        .bind(writes)
        .bind(stream_ids)
        .bind(versions)
        .bind(event_ids)
        .bind(stream_types)
        .bind(event_types)
        .bind(schema_versions)
        .bind(data)
        .bind(recorded_ats)
        .bind(actor_ids)
        .bind(actor_roles)
        .bind(command_ids)
        .bind(correlation_ids)
        .bind(causation_ids)
        .bind(trainee_ids)
        .bind(course_ids)
        .bind(record_writes)
        .bind(record_ids)
        .bind(record_types)
        .bind(record_streams)
        .bind(record_results)
        .bind(record_times)
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

/// Turns the write path's expected constraint violations into their meaning.
/// On a partitioned table PostgreSQL names the partition's index (`events_p4_pkey`), so the
/// events primary key is recognised by its table and suffix.
fn classify(error: sqlx::Error) -> StoreError {
    let (table, constraint) = match &error {
        sqlx::Error::Database(db) if db.is_unique_violation() => (db.table(), db.constraint()),
        _ => (None, None),
    };
    let is_events = table.is_some_and(|t| t == "events" || t.starts_with("events_p"));
    let deadlock = matches!(&error, sqlx::Error::Database(db) if db.code().as_deref() == Some(DEADLOCK_DETECTED));
    match constraint {
        Some(name) if is_events && name.ends_with("_pkey") => StoreError::VersionConflict,
        Some("commands_pkey") => StoreError::DuplicateCommand,
        _ if deadlock => StoreError::Deadlock,
        _ => StoreError::Database(error),
    }
}

/// The name of the unique constraint (or unique index) a statement violated, if that is what
/// failed.
pub fn violated_unique_constraint(error: &sqlx::Error) -> Option<&str> {
    match error {
        sqlx::Error::Database(db) if db.is_unique_violation() => db.constraint(),
        _ => None,
    }
}

/// Creates a tenant and its head row. Writes the reference table first (Citus rule 15).
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
