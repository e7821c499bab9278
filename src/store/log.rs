//! Reading the log in tenant-position order, for audit trails, exports and live subscriptions:
//! keyset pages on `(tenant_id, position)` with optional subject, type and time filters.
//!
//! It only reads, and it does not decide who may see what: the caller (`app::audit`) narrows
//! the filter to the caller's role before it gets here. Every statement names one tenant and
//! reads by position, never through a cursor (Citus rule 13).

use super::{Metadata, StoreError, personal};
use crate::crypto::Keyring;
use crate::domain::{EventType, Role, StreamType, TenantId};
use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::{PgExecutor, Postgres, QueryBuilder, Row};
use uuid::Uuid;

/// Which events to read. Every condition narrows; `None` means "any".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogFilter {
    pub stream_id: Option<Uuid>,
    /// Events about this trainee: its own stream and its enrollments' events.
    pub trainee_id: Option<Uuid>,
    /// Events about this course: its own stream and its enrollments' events.
    pub course_id: Option<Uuid>,
    /// Only events about some course (course streams and enrollment events).
    pub course_events_only: bool,
    /// Only these event types; an empty list matches nothing.
    pub event_types: Option<Vec<EventType>>,
    /// `recordedAt >= from`.
    pub from: Option<DateTime<Utc>>,
    /// `recordedAt < to`.
    pub to: Option<DateTime<Utc>>,
    /// Leave the events' personal data out: neither read nor opened (an export that needs
    /// none of it, such as xAPI's). `data` then has no personal fields.
    pub without_personal: bool,
}

impl LogFilter {
    /// Whether `event` matches, exactly as [`read_page`]'s conditions would decide (for the
    /// live feed, which reads every event once and filters per subscriber in memory).
    pub fn matches(&self, event: &LoggedEvent) -> bool {
        self.stream_id.is_none_or(|id| event.stream_id == id)
            && self
                .trainee_id
                .is_none_or(|id| event.trainee_id == Some(id))
            && self.course_id.is_none_or(|id| event.course_id == Some(id))
            && (!self.course_events_only || event.course_id.is_some())
            && self
                .event_types
                .as_ref()
                .is_none_or(|types| types.contains(&event.event_type))
            && self.from.is_none_or(|from| event.recorded_at >= from)
            && self.to.is_none_or(|to| event.recorded_at < to)
    }
}

/// One stored event with everything stored alongside it, as an auditor sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedEvent {
    pub position: i64,
    pub event_id: Uuid,
    pub stream_id: Uuid,
    pub stream_type: StreamType,
    pub version: i32,
    pub event_type: EventType,
    /// The version the data was stored in.
    pub schema_version: i16,
    /// The data upcast to the current version, its personal envelope opened (or placeholders,
    /// once the trainee was forgotten).
    pub data: serde_json::Value,
    pub recorded_at: DateTime<Utc>,
    pub metadata: Metadata,
    pub trainee_id: Option<Uuid>,
    pub course_id: Option<Uuid>,
}

/// A page of matching events, and how far the log was looked at to find them.
#[derive(Debug, Clone, Default)]
pub struct Page {
    pub events: Vec<LoggedEvent>,
    /// Every event at or below this position was either returned or does not match. A full
    /// page ends at its last event; a short page ends at the tenant's head as of the same
    /// snapshot, so a filtered follower does not rescan events it has already passed over.
    pub scanned_to: i64,
}

const COLUMNS: &str = "e.position, e.event_id, e.stream_id, e.stream_type, e.version, \
     e.event_type, e.schema_version, e.data, e.recorded_at, e.actor_id, e.actor_role, \
     e.command_id, e.correlation_id, e.causation_id, e.trainee_id, e.course_id, e.data_key";

/// The page's events with the trainee's key for each personal one, from the same co-located
/// shard.
fn with_personal() -> String {
    format!(
        " FROM tenant_heads h LEFT JOIN (SELECT e.*, k.data_key FROM events e \
         LEFT JOIN trainee_keys k ON k.tenant_id = e.tenant_id AND k.trainee_id = e.trainee_id \
         AND e.event_type IN ({}) WHERE e.tenant_id = ",
        personal::personal_types_sql()
    )
}

/// The page's events without their personal fields: the v2 envelope and the v1 plain fields.
const WITHOUT_PERSONAL: &str = " FROM tenant_heads h LEFT JOIN (SELECT e.tenant_id, e.position, \
     e.event_id, e.stream_id, e.stream_type, e.version, e.event_type, e.schema_version, \
     e.data - 'personal' - 'email' - 'name' - 'answers' - 'reason' AS data, e.recorded_at, \
     e.actor_id, e.actor_role, e.command_id, e.correlation_id, e.causation_id, e.trainee_id, \
     e.course_id, NULL::bytea AS data_key FROM events e WHERE e.tenant_id = ";

/// Reads up to `limit` matching events with a position greater than `after`, in position order.
///
/// One statement, so the events and the head come from one snapshot: because positions are
/// handed out under the head row's lock and in commit order, a snapshot that shows the head at
/// `h` shows every event up to `h` and none after it.
#[tracing::instrument(level = "debug", name = "db.read_page", skip_all, fields(db.system = "postgresql"))]
pub async fn read_page(
    executor: impl PgExecutor<'_>,
    keys: &Keyring,
    tenant: TenantId,
    filter: &LogFilter,
    after: i64,
    limit: i64,
) -> Result<Page, StoreError> {
    let mut query: QueryBuilder<Postgres> = QueryBuilder::new("SELECT h.last_position AS head, ");
    query.push(COLUMNS);
    if filter.without_personal {
        query.push(WITHOUT_PERSONAL);
    } else {
        query.push(with_personal());
    }
    query.push_bind(tenant.as_uuid());
    query.push(" AND e.position > ");
    query.push_bind(after);
    push_conditions(&mut query, filter);
    query.push(" ORDER BY e.position LIMIT ");
    query.push_bind(limit);
    // Joined on tenant_id too, so on Citus this is one co-located task (rule 4).
    query.push(") e ON e.tenant_id = h.tenant_id WHERE h.tenant_id = ");
    query.push_bind(tenant.as_uuid());
    query.push(" ORDER BY e.position");

    let rows = query.build().fetch_all(executor).await?;
    let Some(first) = rows.first() else {
        // No head row: the tenant does not exist, so it has no events.
        return Ok(Page {
            events: Vec::new(),
            scanned_to: after,
        });
    };
    let head: i64 = first.try_get("head")?;
    let mut events = Vec::with_capacity(rows.len());
    for row in &rows {
        if row.try_get::<Option<i64>, _>("position")?.is_some() {
            events.push(decode(keys, tenant, row)?);
        }
    }
    let scanned_to = match events.last() {
        Some(last) if events.len() as i64 >= limit => last.position,
        _ => head,
    };
    Ok(Page {
        events,
        scanned_to: scanned_to.max(after),
    })
}

/// The tenant's head: the position of its newest committed event (0 when it has none or does
/// not exist).
#[tracing::instrument(level = "debug", name = "db.head", skip_all, fields(db.system = "postgresql"))]
pub async fn head(executor: impl PgExecutor<'_>, tenant: TenantId) -> Result<i64, StoreError> {
    let head: Option<i64> =
        sqlx::query_scalar("SELECT last_position FROM tenant_heads WHERE tenant_id = $1")
            .bind(tenant.as_uuid())
            .fetch_optional(executor)
            .await?;
    Ok(head.unwrap_or(0))
}

/// Appends the filter's conditions. Only fixed SQL fragments are pushed; every value is bound.
/// Each subject condition matches one of the partial indexes `(tenant_id, trainee_id, position)`
/// and `(tenant_id, course_id, position)`, which return rows already in position order.
fn push_conditions(query: &mut QueryBuilder<'_, Postgres>, filter: &LogFilter) {
    if let Some(stream_id) = filter.stream_id {
        query.push(" AND e.stream_id = ");
        query.push_bind(stream_id);
    }
    if let Some(trainee_id) = filter.trainee_id {
        query.push(" AND e.trainee_id = ");
        query.push_bind(trainee_id);
    }
    if let Some(course_id) = filter.course_id {
        query.push(" AND e.course_id = ");
        query.push_bind(course_id);
    }
    if filter.course_events_only {
        query.push(" AND e.course_id IS NOT NULL");
    }
    if let Some(types) = &filter.event_types {
        let names: Vec<&str> = types.iter().map(|t| t.as_str()).collect();
        query.push(" AND e.event_type = ANY(");
        query.push_bind(names);
        query.push(")");
    }
    if let Some(from) = filter.from {
        query.push(" AND e.recorded_at >= ");
        query.push_bind(from);
    }
    if let Some(to) = filter.to {
        query.push(" AND e.recorded_at < ");
        query.push_bind(to);
    }
}

fn decode(keys: &Keyring, tenant: TenantId, row: &PgRow) -> Result<LoggedEvent, StoreError> {
    let stream_type: String = row.try_get("stream_type")?;
    let event_type: String = row.try_get("event_type")?;
    let actor_role: String = row.try_get("actor_role")?;
    let kind = EventType::parse(&event_type).ok_or_else(|| corrupt("event_type", &event_type))?;
    let schema_version = row.try_get("schema_version")?;
    let trainee_id = row.try_get("trainee_id")?;
    let data = personal::open(
        keys,
        kind,
        schema_version,
        row.try_get("data")?,
        trainee_id,
        row.try_get::<Option<&[u8]>, _>("data_key")?,
        personal::Place {
            tenant,
            stream_id: row.try_get("stream_id")?,
            version: row.try_get("version")?,
        },
    )?;
    Ok(LoggedEvent {
        position: row.try_get("position")?,
        event_id: row.try_get("event_id")?,
        stream_id: row.try_get("stream_id")?,
        stream_type: StreamType::parse(&stream_type)
            .ok_or_else(|| corrupt("stream_type", &stream_type))?,
        version: row.try_get("version")?,
        event_type: kind,
        schema_version,
        data,
        recorded_at: row.try_get("recorded_at")?,
        metadata: Metadata {
            actor_id: row.try_get("actor_id")?,
            actor_role: Role::parse(&actor_role)
                .ok_or_else(|| corrupt("actor_role", &actor_role))?,
            command_id: row.try_get("command_id")?,
            correlation_id: row.try_get("correlation_id")?,
            causation_id: row.try_get("causation_id")?,
        },
        trainee_id,
        course_id: row.try_get("course_id")?,
    })
}

/// A stored value this build does not know: a decoding failure, never shown to a client.
fn corrupt(column: &str, value: &str) -> StoreError {
    StoreError::Database(sqlx::Error::Decode(
        format!("unknown {column} {value:?} in events").into(),
    ))
}
