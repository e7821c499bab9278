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

mod append;
mod call;
pub mod live;
pub mod log;
mod notify;
pub mod personal;
pub mod placement;
mod tenants;

pub use append::{
    Append, BatchOutcome, DEADLOCK_DETECTED, ProjectionRows, Refusal, UniqueRule, append_batch,
    append_parameter_names, append_with,
};
pub use call::{Call, Function, PgQuery};
pub use notify::Notifier;
pub use tenants::{create_tenant, list_tenants};

use crate::crypto::Keyring;
use crate::domain::events::DecodeError;
use crate::domain::{Event, EventType, Role, TenantId};
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
    /// Sealed personal data could not be opened with its key, or a stored key not read.
    #[error("cannot open personal data: {0}")]
    Crypto(#[from] crate::crypto::CryptoError),
    /// An event with personal fields was to be written without its trainee's data key.
    #[error("personal data cannot be written without the trainee's data key")]
    NoDataKey,
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
    keys: &Keyring,
    tenant: TenantId,
    stream_id: Uuid,
) -> Result<Vec<StreamEvent>, StoreError> {
    static LOAD_STREAM: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "SELECT e.version, e.recorded_at, e.event_type, e.schema_version, e.data, \
             e.trainee_id, k.data_key FROM events e LEFT JOIN trainee_keys k \
             ON k.tenant_id = e.tenant_id AND k.trainee_id = e.trainee_id \
             AND e.event_type IN ({}) \
             WHERE e.tenant_id = $1 AND e.stream_id = $2 ORDER BY e.version",
            personal::personal_types_sql()
        )
    });
    let rows = sqlx::query(&LOAD_STREAM)
        .bind(tenant.as_uuid())
        .bind(stream_id)
        .fetch_all(&mut *conn)
        .await?;
    rows.iter()
        .map(|row| {
            let event_type: &str = row.try_get("event_type")?;
            let kind = EventType::parse(event_type)
                .ok_or_else(|| DecodeError::UnknownType(event_type.into()))?;
            let data = personal::open(
                keys,
                kind,
                row.try_get("schema_version")?,
                row.try_get("data")?,
                row.try_get("trainee_id")?,
                row.try_get::<Option<&[u8]>, _>("data_key")?,
                personal::Place {
                    tenant,
                    stream_id,
                    version: row.try_get("version")?,
                },
            )?;
            Ok(StreamEvent {
                version: row.try_get("version")?,
                recorded_at: row.try_get("recorded_at")?,
                event: Event::from_stored(
                    event_type,
                    crate::domain::schema::current_version(kind),
                    data,
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
