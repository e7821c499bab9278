//! The replay engine: streams one tenant's events in position order, in pages of position ranges on
//! `(tenant_id, position)`, into a fold. Reports and projection rebuilds are such folds.
//!
//! What it does for speed: it reads only the columns a fold needs (the JSON `data` only for the
//! event types that ask for it, as text, decoded lazily by the fold), lets PostgreSQL filter by
//! `asOf`, event type and course, and fetches the next pages on their own connections while the
//! current one is folded. What it never does: hold more than a few pages in memory, use a
//! server-side cursor (on Citus a cursor materialises the whole result, docs/citus-rules.md, rule 13), or
//! read projection tables.

use crate::crypto::Keyring;
use crate::domain::events::DecodeError;
use crate::domain::{Event, EventType, TenantId, schema};
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use sqlx::{PgPool, Row};
use tokio::sync::mpsc;
use uuid::Uuid;

/// Positions per page: large enough to amortise a round trip, small enough to keep memory flat.
pub const PAGE_SIZE: i64 = 32_768;
/// Pages fetched at once (each on its own connection).
const FETCHES_IN_FLIGHT: usize = 2;

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
    /// Opens the personal data of the events read with data.
    pub keys: Keyring,
    /// Personal event types whose personal fields the fold does not read: they arrive with the
    /// placeholders of a forgotten trainee, without their key being read or anything opened.
    pub unopened: Vec<EventType>,
}

#[derive(Debug, Clone)]
pub enum DataFor {
    All,
    Types(Vec<EventType>),
}

impl ReplayQuery {
    /// Every event of the tenant, with data.
    pub fn everything(tenant: TenantId, keys: Keyring) -> Self {
        Self {
            keys,
            tenant,
            as_of: None,
            until_position: None,
            event_types: None,
            course_ids: None,
            data_for: DataFor::All,
            unopened: Vec::new(),
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
    #[error("reading the tenant's head: {0}")]
    Head(crate::store::StoreError),
    #[error("unknown event type in the log: {0:?}")]
    UnknownType(String),
    #[error("opening personal data: {0}")]
    Personal(crate::store::StoreError),
    #[error(transparent)]
    Fold(E),
}

impl<E> ReplayError<E> {
    /// An error of a page's reading, which never comes from a fold.
    pub fn without_fold(error: ReplayError<()>) -> Self {
        match error {
            ReplayError::Database(error) => ReplayError::Database(error),
            ReplayError::Head(error) => ReplayError::Head(error),
            ReplayError::UnknownType(kind) => ReplayError::UnknownType(kind),
            ReplayError::Personal(error) => ReplayError::Personal(error),
            ReplayError::Fold(()) => unreachable!("reading a page folds nothing"),
        }
    }
}

/// Replays the events matching `query` into `fold`, in position order. `progress` is called
/// after each page with the events replayed so far.
#[tracing::instrument(level = "debug", name = "db.replay", skip_all, fields(db.system = "postgresql"))]
pub async fn replay<F: Fold>(
    pool: &PgPool,
    query: &ReplayQuery,
    fold: &mut F,
    mut progress: impl FnMut(u64),
) -> Result<ReplayStats, ReplayError<F::Error>> {
    // Positions are gap-free per tenant, so the log up to its end splits into ranges of
    // positions known in advance. A producer task fetches FETCHES_IN_FLIGHT ranges at once, on
    // separate connections, so PostgreSQL and row decoding run in parallel with the fold, and
    // hands them over in order; only a few pages are alive at any time.
    let end = match query.until_position {
        Some(end) => end,
        None => crate::store::log::head(pool, query.tenant)
            .await
            .map_err(ReplayError::Head)?,
    };
    let (pages_tx, mut pages_rx) = mpsc::channel::<Result<Vec<ReplayEvent>, ReplayError<()>>>(1);
    let producer_pool = pool.clone();
    let producer_query = query.clone();
    let producer = tokio::spawn(async move {
        let ranges = (0..end)
            .step_by(PAGE_SIZE as usize)
            .map(move |after| (after, (after + PAGE_SIZE).min(end)));
        let mut pages = futures_util::stream::iter(ranges)
            .map(|(after, upto)| fetch_page(&producer_pool, &producer_query, after, upto))
            .buffered(FETCHES_IN_FLIGHT);
        while let Some(page) = pages.next().await {
            let failed = page.is_err();
            if pages_tx.send(page).await.is_err() || failed {
                break;
            }
        }
    });

    let mut stats = ReplayStats::default();
    let mut failure = None;
    while let Some(page) = pages_rx.recv().await {
        let rows = match page {
            Ok(rows) => rows,
            Err(error) => {
                failure = Some(ReplayError::without_fold(error));
                break;
            }
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

/// The columns every replayed row carries, in the order `fetch_page` reads them; the last one
/// is the JSON data, spelled by the caller.
const COLUMNS: &str = "position, stream_id, version, event_type, recorded_at, course_id, \
     trainee_id, schema_version";

/// The trainee's stored data key, for the events with personal data read with their data
/// (`NULL` once forgotten); from the co-located `trainee_keys`.
fn data_key_sql(unopened: &[EventType]) -> String {
    let opened: Vec<String> = schema::PERSONAL_TYPES
        .iter()
        .filter(|kind| !unopened.contains(kind))
        .map(|kind| format!("'{}'", kind.as_str()))
        .collect();
    if opened.is_empty() {
        return "NULL::bytea".to_owned();
    }
    format!(
        "CASE WHEN event_type IN ({}) THEN (SELECT k.data_key FROM trainee_keys k \
         WHERE k.tenant_id = $1 AND k.trainee_id = events.trainee_id) END",
        opened.join(", ")
    )
}

/// The filters every page applies: its position range, and the query's own.
const FILTERS: &str = "tenant_id = $1 AND position > $2 AND position <= $8 \
     AND ($3::timestamptz IS NULL OR recorded_at <= $3) \
     AND ($7::uuid[] IS NULL OR course_id = ANY($7))";

/// The SQL of one page. For the whole log, one range of `(tenant_id, position)`. For some event
/// types, a merge of one position-ordered range per type on `(tenant_id, event_type, position)`
/// (a Merge Append), so only the wanted rows are read; a type whose data the fold does not
/// decode never names the `data` column, which keeps its range an index-only scan of the
/// covering index. The text depends only on the shape (which types need data), so sqlx caches
/// one prepared statement per shape.
fn page_sql(types: &[bool], unopened: &[EventType]) -> String {
    let data_key = data_key_sql(unopened);
    if types.is_empty() {
        return format!(
            "SELECT {COLUMNS}, CASE WHEN $5 OR event_type = ANY($6) THEN data::text END, \
             CASE WHEN $5 OR event_type = ANY($6) THEN {data_key} END \
             FROM events WHERE {FILTERS} ORDER BY position"
        );
    }
    let branches: Vec<String> = types
        .iter()
        .enumerate()
        .map(|(i, needs_data)| {
            let data = if *needs_data {
                format!("data::text, {data_key}")
            } else {
                "NULL::text, NULL::bytea".to_owned()
            };
            format!(
                "(SELECT {COLUMNS}, {data} FROM events WHERE {FILTERS} \
                 AND event_type = ($4::text[])[{}] ORDER BY position)",
                i + 1
            )
        })
        .collect();
    format!(
        "SELECT * FROM ({}) AS page ORDER BY position",
        branches.join(" UNION ALL ")
    )
}

/// The events with positions in `(after, upto]` that match the query.
async fn fetch_page(
    pool: &PgPool,
    query: &ReplayQuery,
    after: i64,
    upto: i64,
) -> Result<Vec<ReplayEvent>, ReplayError<()>> {
    let type_names =
        |types: &[EventType]| -> Vec<&'static str> { types.iter().map(|t| t.as_str()).collect() };
    let event_types: Vec<&'static str> = query
        .event_types
        .as_deref()
        .map(type_names)
        .unwrap_or_default();
    let (all_data, data_types) = match &query.data_for {
        DataFor::All => (true, Vec::new()),
        DataFor::Types(types) => (false, type_names(types)),
    };
    let needs_data: Vec<bool> = event_types
        .iter()
        .map(|t| all_data || data_types.contains(t))
        .collect();
    let sql = page_sql(&needs_data, &query.unopened);
    let rows = sqlx::query(&sql)
        .bind(query.tenant.as_uuid())
        .bind(after)
        .bind(query.as_of)
        .bind(&event_types)
        .bind(all_data)
        .bind(data_types)
        .bind(query.course_ids.as_deref())
        .bind(upto)
        .fetch_all(pool)
        .await?;
    decode_rows(query, &rows)
}

/// Pages of the events up to position `until` that `query` keeps (its time, type and course
/// filters aside), in stream order: each stream's events together, by version. For folds that
/// finish one stream before the next, such as a projection rebuild, which then holds one stream
/// at a time instead of every stream of the log. Pages are read by keyset on the primary key
/// `(tenant_id, stream_id, version)` (rule 13) by a producer task on its own connection, one
/// page ahead of the consumer.
pub fn pages_by_stream(
    pool: &PgPool,
    query: &ReplayQuery,
    until: i64,
) -> mpsc::Receiver<Result<Vec<ReplayEvent>, ReplayError<()>>> {
    let (pages_tx, pages_rx) = mpsc::channel(1);
    let pool = pool.clone();
    let query = query.clone();
    tokio::spawn(async move {
        let sql = format!(
            "SELECT {COLUMNS}, data::text, {} FROM events \
             WHERE tenant_id = $1 AND position <= $2 AND (stream_id, version) > ($3, $4) \
             ORDER BY stream_id, version LIMIT $5",
            data_key_sql(&query.unopened)
        );
        let mut after = (Uuid::nil(), -1_i32);
        loop {
            let page = match sqlx::query(&sql)
                .bind(query.tenant.as_uuid())
                .bind(until)
                .bind(after.0)
                .bind(after.1)
                .bind(PAGE_SIZE)
                .fetch_all(&pool)
                .await
            {
                Ok(rows) => decode_rows(&query, &rows),
                Err(error) => Err(error.into()),
            };
            let last = match &page {
                Ok(events) => events.last().map(|event| (event.stream_id, event.version)),
                Err(_) => None,
            };
            let full = matches!(&page, Ok(events) if events.len() as i64 == PAGE_SIZE);
            if pages_tx.send(page).await.is_err() || !full {
                break;
            }
            after = last.expect("a full page has a last event");
        }
    });
    pages_rx
}

/// The rows of a page as events, personal data opened where the query asks for it.
fn decode_rows(
    query: &ReplayQuery,
    rows: &[sqlx::postgres::PgRow],
) -> Result<Vec<ReplayEvent>, ReplayError<()>> {
    rows.iter()
        .map(|row| {
            // By index, in COLUMNS order: name lookups would cost more than the fold.
            let event_type: &str = row.try_get(3)?;
            let mut event = ReplayEvent {
                position: row.try_get(0)?,
                stream_id: row.try_get(1)?,
                version: row.try_get(2)?,
                event_type: EventType::parse(event_type)
                    .ok_or_else(|| ReplayError::UnknownType(event_type.to_owned()))?,
                recorded_at: row.try_get(4)?,
                course_id: row.try_get(5)?,
                trainee_id: row.try_get(6)?,
                schema_version: row.try_get(7)?,
                data: row.try_get(8)?,
            };
            if schema::is_personal(event.event_type) && event.data.is_some() {
                open_personal(&query.keys, query.tenant, &mut event, row.try_get(9)?)?;
            }
            Ok(event)
        })
        .collect()
}

/// Replaces a personal event's stored data with its current shape, envelope opened (the folds
/// decode it with no keys at hand).
fn open_personal(
    keys: &Keyring,
    tenant: TenantId,
    event: &mut ReplayEvent,
    stored_key: Option<&[u8]>,
) -> Result<(), ReplayError<()>> {
    let Some(text) = event.data.take() else {
        return Ok(());
    };
    let personal = |error: crate::store::StoreError| ReplayError::Personal(error);
    let stored = serde_json::from_str(&text).map_err(|source| {
        personal(
            DecodeError::Malformed {
                event_type: event.event_type.as_str(),
                source,
            }
            .into(),
        )
    })?;
    let opened = crate::store::personal::open(
        keys,
        event.event_type,
        event.schema_version,
        stored,
        event.trainee_id,
        stored_key,
        crate::store::personal::Place {
            tenant,
            stream_id: event.stream_id,
            version: event.version,
        },
    )
    .map_err(personal)?;
    event.schema_version = schema::current_version(event.event_type);
    event.data = Some(opened.to_string());
    Ok(())
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
            schema_version: schema::current_version(event.event_type()),
            data: Some(
                schema::with_personal_envelope(event.event_type(), event.data()).to_string(),
            ),
        }
    }
}
