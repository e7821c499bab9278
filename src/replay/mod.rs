//! The replay engine: streams one tenant's events in position order, in keyset pages on
//! `(tenant_id, position)`, into a fold. Reports and projection rebuilds are such folds.
//!
//! What it does for speed: it reads only the columns a fold needs (the JSON `data` only for the
//! event types that ask for it, as text, decoded lazily by the fold), lets PostgreSQL filter by
//! `asOf`, event type and course, and fetches the next page on its own connection while the
//! current one is folded. What it never does: hold more than two pages in memory, use a
//! server-side cursor (on Citus a cursor materialises the whole result, CITUS.md rule 13), or
//! read projection tables.

use crate::domain::events::DecodeError;
use crate::domain::{Event, EventType, TenantId};
use chrono::{DateTime, Utc};
use sqlx::{PgPool, Row};
use tokio::sync::mpsc;
use uuid::Uuid;

/// Rows per page: large enough to amortise a round trip, small enough to keep memory flat.
pub const PAGE_SIZE: i64 = 10_000;

/// One event as the replay engine hands it to a fold.
#[derive(Debug, Clone)]
pub struct ReplayEvent {
    pub position: i64,
    pub stream_id: Uuid,
    pub version: i32,
    pub event_type: EventType,
    pub recorded_at: DateTime<Utc>,
    pub course_id: Option<Uuid>,
    pub trainee_id: Option<Uuid>,
    schema_version: i16,
    /// The raw JSON data, present only for the types the query asked data for.
    data: Option<String>,
}

impl ReplayEvent {
    /// Decodes the event's data. Fails if the query did not ask for this type's data.
    pub fn decode(&self) -> Result<Event, DecodeError> {
        let data = self.data.as_deref().ok_or(DecodeError::DataNotLoaded {
            event_type: self.event_type.as_str(),
        })?;
        Event::from_stored_json(self.event_type.as_str(), self.schema_version, data)
    }
}

/// What to replay.
#[derive(Debug, Clone)]
pub struct ReplayQuery {
    pub tenant: TenantId,
    /// Only events recorded at or before this time ("as of").
    pub as_of: Option<DateTime<Utc>>,
    /// Only events at or before this tenant position (a consistent end for the replay).
    pub until_position: Option<i64>,
    /// Only these event types (all when `None`).
    pub event_types: Option<Vec<EventType>>,
    /// Only events about these courses (all when `None`).
    pub course_ids: Option<Vec<Uuid>>,
    /// The types whose JSON data the fold reads; the others arrive without data.
    pub data_for: DataFor,
}

#[derive(Debug, Clone)]
pub enum DataFor {
    All,
    Types(Vec<EventType>),
}

impl ReplayQuery {
    /// Every event of the tenant, with data.
    pub fn everything(tenant: TenantId) -> Self {
        Self {
            tenant,
            as_of: None,
            until_position: None,
            event_types: None,
            course_ids: None,
            data_for: DataFor::All,
        }
    }
}

/// A fold fed by the replay engine.
pub trait Fold {
    type Error: From<DecodeError>;
    fn apply(&mut self, event: &ReplayEvent) -> Result<(), Self::Error>;
}

/// What a replay went through.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayStats {
    pub events: u64,
    pub last_position: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError<E> {
    #[error("reading the event log: {0}")]
    Database(#[from] sqlx::Error),
    #[error("unknown event type in the log: {0:?}")]
    UnknownType(String),
    #[error(transparent)]
    Fold(E),
}

/// Replays the events matching `query` into `fold`, in position order. `progress` is called
/// after each page with the events replayed so far.
pub async fn replay<F: Fold>(
    pool: &PgPool,
    query: &ReplayQuery,
    fold: &mut F,
    mut progress: impl FnMut(u64),
) -> Result<ReplayStats, ReplayError<F::Error>> {
    // Pages are fetched by a producer task so that PostgreSQL works on page n+1 while we fold
    // page n; a channel of one keeps at most two pages alive.
    let (pages_tx, mut pages_rx) = mpsc::channel::<Result<Vec<ReplayEvent>, ReplayError<()>>>(1);
    let producer_pool = pool.clone();
    let producer_query = query.clone();
    let producer = tokio::spawn(async move {
        let mut after = 0_i64;
        loop {
            let page = fetch_page(&producer_pool, &producer_query, after).await;
            let done = match &page {
                Ok(rows) => {
                    after = rows.last().map_or(after, |row| row.position);
                    (rows.len() as i64) < PAGE_SIZE
                }
                Err(_) => true,
            };
            if pages_tx.send(page).await.is_err() || done {
                break;
            }
        }
    });

    let mut stats = ReplayStats::default();
    let mut failure = None;
    while let Some(page) = pages_rx.recv().await {
        let rows = match page {
            Ok(rows) => rows,
            Err(ReplayError::Database(error)) => {
                failure = Some(ReplayError::Database(error));
                break;
            }
            Err(ReplayError::UnknownType(kind)) => {
                failure = Some(ReplayError::UnknownType(kind));
                break;
            }
            Err(ReplayError::Fold(())) => unreachable!("the producer does not fold"),
        };
        for row in &rows {
            if let Err(error) = fold.apply(row) {
                failure = Some(ReplayError::Fold(error));
                break;
            }
            stats.events += 1;
            stats.last_position = row.position;
        }
        if failure.is_some() {
            break;
        }
        progress(stats.events);
    }
    drop(pages_rx);
    let _ = producer.await;
    match failure {
        Some(error) => Err(error),
        None => Ok(stats),
    }
}

async fn fetch_page(
    pool: &PgPool,
    query: &ReplayQuery,
    after: i64,
) -> Result<Vec<ReplayEvent>, ReplayError<()>> {
    let type_names =
        |types: &[EventType]| -> Vec<&'static str> { types.iter().map(|t| t.as_str()).collect() };
    let event_types = query.event_types.as_deref().map(type_names);
    let (all_data, data_types) = match &query.data_for {
        DataFor::All => (true, Vec::new()),
        DataFor::Types(types) => (false, type_names(types)),
    };
    let rows = sqlx::query(
        "SELECT position, stream_id, version, event_type, recorded_at, course_id, trainee_id, \
             schema_version, CASE WHEN $5 OR event_type = ANY($6) THEN data::text END AS data \
         FROM events \
         WHERE tenant_id = $1 AND position > $2 \
           AND ($3::timestamptz IS NULL OR recorded_at <= $3) \
           AND ($4::text[] IS NULL OR event_type = ANY($4)) \
           AND ($7::uuid[] IS NULL OR course_id = ANY($7)) \
           AND ($9::int8 IS NULL OR position <= $9) \
         ORDER BY position LIMIT $8",
    )
    .bind(query.tenant.as_uuid())
    .bind(after)
    .bind(query.as_of)
    .bind(event_types)
    .bind(all_data)
    .bind(data_types)
    .bind(query.course_ids.as_deref())
    .bind(PAGE_SIZE)
    .bind(query.until_position)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            let event_type: &str = row.try_get("event_type")?;
            Ok(ReplayEvent {
                position: row.try_get("position")?,
                stream_id: row.try_get("stream_id")?,
                version: row.try_get("version")?,
                event_type: EventType::parse(event_type)
                    .ok_or_else(|| ReplayError::UnknownType(event_type.to_owned()))?,
                recorded_at: row.try_get("recorded_at")?,
                course_id: row.try_get("course_id")?,
                trainee_id: row.try_get("trainee_id")?,
                schema_version: row.try_get("schema_version")?,
                data: row.try_get("data")?,
            })
        })
        .collect()
}

#[cfg(test)]
impl ReplayEvent {
    /// An event as a fold would receive it, for the folds' unit tests.
    pub fn for_test(
        position: i64,
        stream_id: Uuid,
        event: &Event,
        recorded_at: DateTime<Utc>,
        course_id: Option<Uuid>,
    ) -> Self {
        Self {
            position,
            stream_id,
            version: 0,
            event_type: event.event_type(),
            recorded_at,
            course_id,
            trainee_id: None,
            schema_version: Event::CURRENT_SCHEMA_VERSION,
            data: Some(event.data().to_string()),
        }
    }
}
