//! The audit trail in GraphQL: the `auditTrail` query (a Relay connection over the log), the
//! `events` subscription (catch-up, then live), and their types.
//!
//! Thin like every resolver here: arguments become a `LogFilter` and a start position, the
//! application applies the role rules and reads. Where to start: the opaque `after` cursor of an
//! edge, or `afterPosition`, a tenant position such as a mutation payload's `position`
//! (read-your-writes) or an event's `position`; never both.

use super::context::{app, caller};
use super::error::{GqlResultExt, to_graphql};
use super::pagination::{PageArgs, decode_cursor, encode_cursor, page};
use super::scalars::Position;
use super::types::Role;
use crate::app::AppError;
use crate::app::views::{LogFilter, LoggedEvent};
use async_graphql::connection::Connection;
use async_graphql::{Context, Enum, InputObject, Json, Object, SimpleObject, Subscription};
use chrono::{DateTime, Utc};
use futures_util::{Stream, StreamExt};
use uuid::Uuid;

/// The kinds of event in the log.
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(remote = "crate::domain::EventType")]
pub enum EventType {
    CourseCreated,
    CourseRetired,
    TraineeRegistered,
    TraineeForgotten,
    CourseRegistered,
    CourseStarted,
    TestSubmitted,
    TestGraded,
    CourseCompleted,
    RegistrationWithdrawn,
}

/// The kinds of stream events belong to.
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(remote = "crate::domain::StreamType")]
pub enum StreamType {
    Course,
    Trainee,
    Enrollment,
}

/// Which events to read; every field given narrows the result.
#[derive(InputObject, Default)]
pub struct AuditFilter {
    /// The events of one stream (a course, a trainee or an enrollment).
    pub stream_id: Option<Uuid>,
    /// Everything about a trainee: its own stream and all its enrollments' events.
    pub trainee_id: Option<Uuid>,
    /// Everything about a course: its own stream and all its enrollments' events.
    pub course_id: Option<Uuid>,
    /// Only these event types.
    pub event_types: Option<Vec<EventType>>,
    /// Recorded at or after this time.
    pub from: Option<DateTime<Utc>>,
    /// Recorded before this time.
    pub to: Option<DateTime<Utc>>,
}

impl From<AuditFilter> for LogFilter {
    fn from(filter: AuditFilter) -> Self {
        LogFilter {
            stream_id: filter.stream_id,
            trainee_id: filter.trainee_id,
            course_id: filter.course_id,
            event_types: filter
                .event_types
                .map(|types| types.into_iter().map(Into::into).collect()),
            from: filter.from,
            to: filter.to,
            ..LogFilter::default()
        }
    }
}

/// Who caused an event.
#[derive(SimpleObject)]
pub struct Actor {
    /// The token subject of the person (the nil UUID for the operator's command line).
    pub id: Uuid,
    pub role: Role,
}

/// Why an event happened and who caused it.
#[derive(SimpleObject)]
pub struct EventMetadata {
    pub actor: Actor,
    /// The `commandId` the mutation was sent with, if any.
    pub command_id: Option<Uuid>,
    /// Ties together everything one request caused (`X-Correlation-Id`, or generated).
    pub correlation_id: Uuid,
    /// What caused this event: the command, when it had an id.
    pub causation_id: Option<Uuid>,
}

/// One event of the tenant's log, as stored.
pub struct AuditEvent(pub LoggedEvent);

#[Object]
impl AuditEvent {
    async fn event_id(&self) -> Uuid {
        self.0.event_id
    }
    /// The tenant position: gap-free, in commit order. Usable as `afterPosition`.
    async fn position(&self) -> Position {
        Position(self.0.position)
    }
    /// The same position as an opaque cursor, usable as `after`.
    async fn cursor(&self) -> String {
        encode_cursor(self.0.position)
    }
    async fn stream_id(&self) -> Uuid {
        self.0.stream_id
    }
    async fn stream_type(&self) -> StreamType {
        self.0.stream_type.into()
    }
    /// The event's version within its stream: 1, 2, 3, …
    async fn version(&self) -> i32 {
        self.0.version
    }
    #[graphql(name = "type")]
    async fn event_type(&self) -> EventType {
        self.0.event_type.into()
    }
    /// The schema version the event was stored in (`data` is always in the current one).
    async fn schema_version(&self) -> i16 {
        self.0.schema_version
    }
    /// The event's data in its type's current schema version (older versions upcast), with
    /// its personal fields opened under `personal`: placeholders marked `forgotten: true` once
    /// the trainee was forgotten.
    async fn data(&self) -> Json<&serde_json::Value> {
        Json(&self.0.data)
    }
    /// Server time when the event was recorded.
    async fn recorded_at(&self) -> DateTime<Utc> {
        self.0.recorded_at
    }
    async fn metadata(&self) -> EventMetadata {
        let m = &self.0.metadata;
        EventMetadata {
            actor: Actor {
                id: m.actor_id,
                role: m.actor_role.into(),
            },
            command_id: m.command_id,
            correlation_id: m.correlation_id,
            causation_id: m.causation_id,
        }
    }
    /// The trainee the event is about, if any.
    async fn trainee_id(&self) -> Option<Uuid> {
        self.0.trainee_id
    }
    /// The course the event is about, if any.
    async fn course_id(&self) -> Option<Uuid> {
        self.0.course_id
    }
}

/// The start position from `after` (a cursor) or `afterPosition`; `None` when neither is given.
fn start(
    after: Option<String>,
    after_position: Option<Position>,
) -> async_graphql::Result<Option<i64>> {
    let bad = |message: &str| to_graphql(AppError::BadInput(message.into()));
    match (after, after_position) {
        (Some(_), Some(_)) => Err(bad("give either after or afterPosition, not both")),
        (Some(cursor), None) => decode_cursor::<i64>(&cursor, "after").map(Some),
        (None, position) => Ok(position.map(|Position(position)| position)),
    }
}

#[derive(Default)]
pub struct AuditQuery;

#[Object]
impl AuditQuery {
    /// The tenant's events in position order (admins: all; instructors: those about courses;
    /// trainees: their own). Starts after the `after` cursor or after `afterPosition`
    /// (e.g. a mutation payload's `position`), else at the beginning.
    async fn audit_trail(
        &self,
        ctx: &Context<'_>,
        filter: Option<AuditFilter>,
        first: Option<i32>,
        after: Option<String>,
        after_position: Option<Position>,
    ) -> async_graphql::Result<Connection<String, AuditEvent>> {
        let caller = caller(ctx)?;
        let start = start(after, after_position)?;
        let mut args = PageArgs::<i64>::parse(first, None)?;
        args.after = start;
        let filter = filter.map(LogFilter::from).unwrap_or_default();
        let rows = app(ctx)
            .reads()
            .audit_page(caller, filter, start.unwrap_or(0), args.fetch_limit())
            .await
            .gql()?;
        Ok(page(&args, rows, |row| row.position, AuditEvent))
    }
}

pub struct Subscription;

#[Subscription]
impl Subscription {
    /// The tenant's events as they commit, in position order, each once, with the same role
    /// rules as `auditTrail`. Given `after` (a cursor) or `afterPosition`, first every event
    /// after it (catch-up), then the live ones; given neither, only events committed from now.
    async fn events(
        &self,
        ctx: &Context<'_>,
        after: Option<String>,
        after_position: Option<Position>,
        filter: Option<AuditFilter>,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<AuditEvent>> + use<>> {
        let caller = caller(ctx)?;
        let start = start(after, after_position)?;
        let filter = filter.map(LogFilter::from).unwrap_or_default();
        let events = app(ctx).reads().follow(caller, filter, start).await.gql()?;
        Ok(events.map(|event| event.map(AuditEvent).map_err(to_graphql)))
    }
}
