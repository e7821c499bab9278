//! The event store: loading a stream and appending to it, with optimistic concurrency, gap-free
//! per-tenant positions in commit order, and the command-dedupe record. All SQL on `events`,
//! `tenant_heads` and `commands` for the write path lives here.
//!
//! Invariants:
//! - The head-row increment happens in the same statement as the event insert, which is the
//!   last statement of the transaction before the wake-up notification and COMMIT; the head row's
//!   lock therefore serialises one tenant's appends in commit order and is held only briefly.
//! - Every statement names exactly one tenant.

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
    pub command: Option<(&'a str, serde_json::Value)>,
}

/// Appends the events, records the command, and bumps the tenant head — one statement — and
/// queues the wake-up notification. Returns the tenant position of the last event.
/// The caller commits.
pub async fn append(
    conn: &mut PgConnection,
    tenant: TenantId,
    append: Append<'_>,
) -> Result<i64, StoreError> {
    let count = append.events.len() as i64;
    let event_ids: Vec<Uuid> = append.events.iter().map(|_| Uuid::now_v7()).collect();
    let event_types: Vec<&str> = append
        .events
        .iter()
        .map(|e| e.event_type().as_str())
        .collect();
    let schema_versions: Vec<i16> = vec![Event::CURRENT_SCHEMA_VERSION; append.events.len()];
    let data: Vec<serde_json::Value> = append.events.iter().map(Event::data).collect();
    let (command_type, command_result) = match &append.command {
        Some((kind, result)) => (Some(*kind), Some(result)),
        None => (None, None),
    };
    // One statement: the head row is locked here and stays locked until COMMIT, so nothing
    // slow may follow it in the transaction.
    let row = sqlx::query(
        "WITH head AS ( \
             UPDATE tenant_heads SET last_position = last_position + $2 \
             WHERE tenant_id = $1 RETURNING last_position \
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
         SELECT last_position FROM head",
    )
    .bind(tenant.as_uuid())
    .bind(count)
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
    .bind(&event_ids)
    .bind(&event_types)
    .bind(&schema_versions)
    .bind(&data)
    .bind(command_type)
    .bind(command_result)
    .fetch_optional(&mut *conn)
    .await
    .map_err(classify)?;
    let last_position: i64 = row.ok_or(StoreError::UnknownTenant)?.try_get(0)?;
    // NOTIFY is transactional: delivered at COMMIT, dropped on rollback. Sent as its own
    // statement so that on Citus it runs on the coordinator, where the listener is (rule 9).
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(EVENTS_CHANNEL)
        .bind(tenant.to_string())
        .execute(&mut *conn)
        .await?;
    Ok(last_position)
}

/// Turns the write path's expected constraint violations into their meaning.
/// On a partitioned table PostgreSQL names the partition's index (`events_p4_pkey`), so the
/// events primary key is recognised by its table and suffix.
fn classify(error: sqlx::Error) -> StoreError {
    let (table, constraint) = match &error {
        sqlx::Error::Database(db) if db.is_unique_violation() => (db.table(), db.constraint()),
        _ => (None, None),
    };
    let is_events = table.is_some_and(|t| t == "events" || t.starts_with("events_p"));
    match constraint {
        Some(name) if is_events && name.ends_with("_pkey") => StoreError::VersionConflict,
        Some("commands_pkey") => StoreError::DuplicateCommand,
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
