//! Appending: one command's write, or a batch of one tenant's writes, in one call of the
//! database function `coursetrail_append` (migration `…0010`), which commits by itself and
//! reports each write's refusal instead of raising it.

use super::call::{Call, Function};
use super::{Metadata, StoreError};
use crate::domain::{Event, StreamType, TenantId};
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, Row};
use uuid::Uuid;

/// New events for one stream, with everything stored alongside them.
pub struct Append<'a> {
    pub stream_id: Uuid,
    pub stream_type: StreamType,
    /// The stream's version the decision was made on (0 for a new stream).
    pub expected_version: i32,
    pub events: &'a [Event],
    /// The events as stored (schema version and data, personal fields sealed), in order.
    pub stored: &'a [super::personal::StoredData],
    pub recorded_at: DateTime<Utc>,
    pub metadata: &'a Metadata,
    /// Subjects denormalised onto the events for audit queries.
    pub trainee_id: Option<Uuid>,
    pub course_id: Option<Uuid>,
    /// `(command type, result)` recorded under the metadata's command id, if it has one.
    pub command: Option<(&'a str, &'a serde_json::Value)>,
    /// The key the events' personal data is sealed with, if they hold any: checked against
    /// the trainee's stored key, or stored by this write when it is new.
    pub data_key: Option<&'a super::personal::TraineeKey>,
}

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
    /// The write seals personal data with a key that is not the trainee's stored one: the
    /// trainee was forgotten since its key was read, or another key was stored first.
    StaleDataKey,
    /// A registration's trainee does not exist.
    UnknownTrainee,
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
    /// The reason `coursetrail_append` reports (migrations `…0005`, `…0010`).
    fn parse(reason: &str) -> Option<Self> {
        Some(match reason {
            "version_conflict" => Refusal::VersionConflict,
            "duplicate_command" => Refusal::DuplicateCommand,
            "course_closed" => Refusal::CourseClosed,
            "course_code_taken" => Refusal::Taken(UniqueRule::CourseCode),
            "email_taken" => Refusal::Taken(UniqueRule::TraineeEmail),
            "already_registered" => Refusal::Taken(UniqueRule::ActiveEnrollment),
            "stale_data_key" => Refusal::StaleDataKey,
            "unknown_trainee" => Refusal::UnknownTrainee,
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
            // Decided again on what is stored, the command finds the trainee keyless
            // (`INVALID_STATE`), its stored key, or that the trainee does not exist.
            Refusal::StaleDataKey | Refusal::UnknownTrainee => StoreError::Refused,
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

/// The projection rows written with each write of an append (migration `…0010`'s parameters
/// from `$22` on: per write the kind of its row and where it is, its number of submissions,
/// then the rows of every kind, one array per column). Implemented by the projections module,
/// which owns those tables.
pub trait ProjectionRows<'q>: Sized {
    /// Binds the rows of every write, in batch order.
    fn bind(rows: Vec<Self>, call: Call<'q>) -> Call<'q>;
}

/// The whole write path in one call: the function `coursetrail_append` (migration `…0010`).
/// Called alone, it is one transaction; on Citus the coordinator delegates it to the worker
/// holding the tenant (a distributed function, docs/citus-rules.md, rule 18).
pub static APPEND: Function = Function::new("coursetrail_append", 57);

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
    let call = bind_appends(APPEND.call(), tenant, &appends);
    let row = match P::bind(rows, call).query().fetch_one(&mut *conn).await {
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

/// Binds `$1`–`$21`: the tenant, the writes (one element each) and their events (one element
/// each, in write order).
fn bind_appends<'q>(call: Call<'q>, tenant: TenantId, appends: &[Append<'q>]) -> Call<'q> {
    let events = || appends.iter().flat_map(|a| a.events.iter());
    let stored = || appends.iter().flat_map(|a| a.stored.iter());
    call.arg("p_tenant", tenant.as_uuid())
        .arg("p_stream", per_write(appends, |a| a.stream_id))
        .arg(
            "p_stream_type",
            per_write(appends, |a| a.stream_type.as_str()),
        )
        .arg("p_expected", per_write(appends, |a| a.expected_version))
        .arg("p_recorded_at", per_write(appends, |a| a.recorded_at))
        .arg("p_actor_id", per_write(appends, |a| a.metadata.actor_id))
        .arg(
            "p_actor_role",
            per_write(appends, |a| a.metadata.actor_role.as_str()),
        )
        .arg(
            "p_command_id",
            per_write(appends, |a| a.metadata.command_id),
        )
        .arg(
            "p_correlation_id",
            per_write(appends, |a| a.metadata.correlation_id),
        )
        .arg(
            "p_causation_id",
            per_write(appends, |a| a.metadata.causation_id),
        )
        .arg("p_trainee_id", per_write(appends, |a| a.trainee_id))
        .arg("p_course_id", per_write(appends, |a| a.course_id))
        // A command record is written when the command has an id and something to record.
        .arg(
            "p_command_type",
            per_write(appends, |a| {
                a.command
                    .filter(|_| a.metadata.command_id.is_some())
                    .map(|(kind, _)| kind)
            }),
        )
        .arg(
            "p_result",
            per_write(appends, |a| a.command.map(|(_, result)| result)),
        )
        .arg(
            "p_event_count",
            per_write(appends, |a| a.events.len() as i32),
        )
        .arg(
            "p_data_key",
            per_write(appends, |a| a.data_key.map(|k| &*k.stored)),
        )
        .arg(
            "p_new_key",
            per_write(appends, |a| a.data_key.map(|k| k.new)),
        )
        .arg(
            "p_event_id",
            events().map(|_| Uuid::now_v7()).collect::<Vec<_>>(),
        )
        .arg(
            "p_event_type",
            events()
                .map(|e| e.event_type().as_str())
                .collect::<Vec<_>>(),
        )
        .arg(
            "p_schema_version",
            stored().map(|s| s.schema_version).collect::<Vec<_>>(),
        )
        .arg("p_data", stored().map(|s| &s.data).collect::<Vec<_>>())
}

/// The names of `coursetrail_append`'s parameters as this module and the projections bind
/// them, in order (for the test that checks them against the function's signature).
pub fn append_parameter_names<'q, P: ProjectionRows<'q>>() -> Vec<&'static str> {
    let call = P::bind(
        Vec::new(),
        bind_appends(APPEND.call(), TenantId::from_uuid(Uuid::nil()), &[]),
    );
    call.names().to_vec()
}

/// SQLSTATE `deadlock_detected`.
pub const DEADLOCK_DETECTED: &str = "40P01";

/// The message the write function raises for a tenant without a head row (migration `…0010`).
const UNKNOWN_TENANT_MESSAGE: &str = "coursetrail_append: unknown tenant";

/// A write the database cancelled to break a lock cycle is [`StoreError::Deadlock`]; a tenant
/// the write function did not find is [`StoreError::UnknownTenant`] (told by its message,
/// which Citus passes on from the worker, unlike fields such as the SQLSTATE). Conflicts are
/// never read from errors (they are reported by the write itself, see [`Refusal`]).
fn classify(error: sqlx::Error) -> StoreError {
    match &error {
        sqlx::Error::Database(db) if db.code().as_deref() == Some(DEADLOCK_DETECTED) => {
            StoreError::Deadlock
        }
        sqlx::Error::Database(db) if db.message().contains(UNKNOWN_TENANT_MESSAGE) => {
            StoreError::UnknownTenant
        }
        _ => StoreError::Database(error),
    }
}
