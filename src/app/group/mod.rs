//! Group commit: the writes of one tenant's commands that arrive while other writes of that
//! tenant are in flight are written together, in one call of the write function, by one of them.
//!
//! Why: one tenant's appends are serialised by its head row, whose lock is held until the
//! commit record is flushed to disk (that is what keeps positions gap-free and in commit
//! order). Written one by one, a busy tenant's commands therefore queue for one WAL flush each,
//! however many cores and connections there are. Written as a batch, they share one flush
//! ([`store::append_batch`]). A tenant with few writes at a time is written exactly as before:
//! one self-committing call each, no waiting.
//!
//! How: per tenant, up to [`MAX_IN_FLIGHT`] writes lead (are written at once); writes that
//! arrive while that many are in flight queue. When a leader's write is over, its place passes
//! to the first queued write, which writes every queued write in one batch — one call,
//! [`store::append_batch`] — and so on. Several in flight, not one: a few overlapping writes of
//! a tenant (pairs and the odd triple under the many-tenants load) are then written exactly as
//! without group commit — each writes its rows while another's commit is flushed and waits only
//! at the head row — instead of one after the other; only a busier tenant queues, and its
//! batches pipeline the same way. With a single leader, pairs of overlapping writes waited for
//! each other and the many-tenants p99 latency rose; four leaders keep it where it is without
//! group commit, and the hot tenant's throughput was no higher with more (docs/benchmarks.md).
//!
//! A queued write holds no connection: most are written by another's batch and never need one
//! again. A write whose request is dropped while it queues is not written. The batch runs in its own
//! task, so the writes of other requests are finished (and everyone hears back) even if the
//! leading request is dropped. The write function accepts or refuses each write of a batch on
//! its own (a version conflict, a unique rule, a used command id: [`store::Refusal`]), so each
//! gets the outcome it would get alone. If the batch fails (an error from the database: it
//! wrote nothing), each of its writes is written on its own. If the connection is lost while
//! it runs, nobody knows whether it was stored: every write of it gets
//! [`StoreError::OutcomeUnknown`], as a single write does.
//!
//! Only this server's writes are grouped; several servers still write correctly side by side,
//! since every guarantee is the database's (versions, unique indexes, the head row).
//!
//! The machinery is generic over [`WriteStore`], the database as it sees it: the server's is
//! [`PgWrites`]; the unit tests ([`tests`]) drive it with a double that holds, refuses, fails
//! or loses writes on cue.

use super::Conn;
use crate::domain::{Event, StreamType, SubmissionId, TenantId};
use crate::metrics::{GroupCommitMetrics, Metrics};
use crate::projections::ProjectionWrite;
use crate::projections::rows::StreamRows;
use crate::store::personal::{StoredData, TraineeKey};
use crate::store::{self, Append, BatchOutcome, Metadata, Refusal, StoreError};
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::oneshot;
use uuid::Uuid;

/// The most writes in one batch: bounds the time the head row is held by one transaction.
const MAX_BATCH: usize = 64;

/// Writes (or batches) of one tenant written at the same time by this server before the next
/// ones queue (see the module documentation for why four).
const MAX_IN_FLIGHT: usize = 4;

/// One command's write, owned, so that another command's task can write it in its batch.
#[derive(Clone)]
pub(super) struct PendingWrite {
    pub stream_id: Uuid,
    pub stream_type: StreamType,
    /// The stream's version the decision was made on.
    pub expected_version: i32,
    pub events: Vec<Event>,
    /// The events as stored (personal fields sealed).
    pub stored: Vec<StoredData>,
    pub recorded_at: DateTime<Utc>,
    pub metadata: Metadata,
    pub trainee_id: Option<Uuid>,
    pub course_id: Option<Uuid>,
    pub command_type: &'static str,
    pub result: serde_json::Value,
    /// The stream's projection rows after the new events.
    pub rows: StreamRows,
    /// The submissions the new events added or graded.
    pub touched_submissions: Vec<SubmissionId>,
    /// The command opens an enrollment (written only while its course is not retired).
    pub registration: bool,
    /// The key the events' personal data is sealed with, if they hold any.
    pub data_key: Option<TraineeKey>,
}

impl PendingWrite {
    fn append(&self) -> Append<'_> {
        Append {
            stream_id: self.stream_id,
            stream_type: self.stream_type,
            expected_version: self.expected_version,
            events: &self.events,
            stored: &self.stored,
            recorded_at: self.recorded_at,
            metadata: &self.metadata,
            trainee_id: self.trainee_id,
            course_id: self.course_id,
            command: Some((self.command_type, &self.result)),
            data_key: self.data_key.as_ref(),
        }
    }

    fn projection(&self) -> ProjectionWrite<'_> {
        ProjectionWrite::of(&self.rows, &self.touched_submissions, self.registration)
    }
}

/// Where group commit writes: a write alone, or a batch in one call, on a connection it
/// acquires when a queued write is to write.
pub(super) trait WriteStore: Clone + Send + Sync + 'static {
    type Conn: Send + 'static;
    type Write: Send + Sync + 'static;

    /// The stream a write appends to (two writes of one stream never share a batch).
    fn stream_id(write: &Self::Write) -> Uuid;

    fn acquire(&self) -> impl Future<Output = Result<Self::Conn, StoreError>> + Send;

    /// The write in one self-committing call; the tenant position of its last event.
    fn write_alone(
        &self,
        conn: &mut Self::Conn,
        tenant: TenantId,
        write: &Self::Write,
    ) -> impl Future<Output = Result<i64, StoreError>> + Send;

    /// The writes in one call, in order, each accepted or refused on its own.
    fn write_batch(
        &self,
        conn: &mut Self::Conn,
        tenant: TenantId,
        writes: &[&Self::Write],
    ) -> impl Future<Output = Result<Vec<BatchOutcome>, StoreError>> + Send;
}

/// The server's store: the write function on `pool`'s connections (the main pool's, or on
/// Citus the tenant's worker's).
#[derive(Clone)]
pub(super) struct PgWrites {
    pub pool: PgPool,
}

impl WriteStore for PgWrites {
    type Conn = Conn;
    type Write = PendingWrite;

    fn stream_id(write: &PendingWrite) -> Uuid {
        write.stream_id
    }

    async fn acquire(&self) -> Result<Conn, StoreError> {
        Ok(self.pool.acquire().await?)
    }

    async fn write_alone(
        &self,
        conn: &mut Conn,
        tenant: TenantId,
        write: &PendingWrite,
    ) -> Result<i64, StoreError> {
        store::append_with(conn, tenant, write.append(), write.projection()).await
    }

    async fn write_batch(
        &self,
        conn: &mut Conn,
        tenant: TenantId,
        writes: &[&PendingWrite],
    ) -> Result<Vec<BatchOutcome>, StoreError> {
        let writes = writes
            .iter()
            .map(|write| (write.append(), write.projection()))
            .collect();
        store::append_batch(conn, tenant, writes).await
    }
}

/// Per tenant, how many writes are in flight and which writes wait for them.
pub(super) struct GroupCommit<W> {
    enabled: bool,
    /// A tenant is present while any of its writes is in flight.
    tenants: Mutex<HashMap<TenantId, InFlight<W>>>,
    /// What it did since the server started: the application's metrics.
    stats: GroupCommitMetrics,
}

/// One tenant's writes in flight (each holds a [`Leadership`]) and who waits for them.
struct InFlight<W> {
    leaders: usize,
    queue: Vec<Waiter<W>>,
}

impl<W> Default for InFlight<W> {
    fn default() -> Self {
        Self {
            leaders: 0,
            queue: Vec::new(),
        }
    }
}

/// A copy of [`GroupCommit`]'s counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupCommitStats {
    pub batches: u64,
    pub batched_writes: u64,
    pub refused_writes: u64,
    pub failed_batches: u64,
}

/// A queued write and how to tell it what to do.
struct Waiter<W> {
    write: Arc<W>,
    /// Taken when the waiter is answered; a waiter dropped unanswered is told to write alone
    /// (it is only ever dropped so before its batch was tried).
    reply: Option<oneshot::Sender<Turn<W>>>,
}

impl<W> Waiter<W> {
    fn answer(mut self, turn: Turn<W>) {
        if let Some(reply) = self.reply.take() {
            // Let go of the write first, so the waiter holds the only reference to it.
            drop(self);
            // The request is gone when this fails: nobody to tell.
            let _ = reply.send(turn);
        }
    }

    fn is_gone(&self) -> bool {
        self.reply.as_ref().is_none_or(oneshot::Sender::is_closed)
    }
}

impl<W> Drop for Waiter<W> {
    fn drop(&mut self) {
        if let Some(reply) = self.reply.take() {
            let _ = reply.send(Turn::Alone);
        }
    }
}

/// What a queued write is told.
enum Turn<W> {
    /// The outcome of another write's batch for this write: written, or refused (nothing written).
    Written(BatchOutcome),
    /// Write yourself, on your own.
    Alone,
    /// Your batch's connection was lost while it ran: whether you were written is unknown.
    Unknown(String),
    /// Lead: write yourself and these, in one batch.
    Lead(Leadership<W>),
}

/// One of a tenant's places in flight: the right to write (a write or a batch) now. Dropping
/// it passes the place on to the writes queued meanwhile (or gives it back), whatever happened
/// to the holder.
struct Leadership<W> {
    group: Arc<GroupCommit<W>>,
    tenant: TenantId,
    /// The queued writes this leader writes with its own.
    others: Vec<Waiter<W>>,
}

impl<W> Drop for Leadership<W> {
    fn drop(&mut self) {
        // Writes handed to this leader and not answered are told to write alone (`Waiter`'s
        // drop) before the next leader starts: they were not written.
        self.others.clear();
        let mut tenants = self
            .group
            .tenants
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let Some(tenant) = tenants.get_mut(&self.tenant) else {
            return;
        };
        tenant.queue.retain(|waiter| !waiter.is_gone());
        if tenant.queue.is_empty() {
            tenant.leaders -= 1;
            if tenant.leaders == 0 {
                tenants.remove(&self.tenant);
            }
            return;
        }
        // This leader's place passes on with the queue.
        let rest = tenant.queue.split_off(tenant.queue.len().min(MAX_BATCH));
        let mut batch = std::mem::replace(&mut tenant.queue, rest);
        let next = batch.remove(0);
        drop(tenants);
        // If `next`'s request is dropped this instant, the leadership drops with the message
        // and passes on from there.
        next.answer(Turn::Lead(Leadership {
            group: self.group.clone(),
            tenant: self.tenant,
            others: batch,
        }));
    }
}

impl<W: Send + Sync + 'static> GroupCommit<W> {
    pub fn new(enabled: bool, metrics: &Metrics) -> Self {
        Self {
            enabled,
            tenants: Mutex::new(HashMap::new()),
            stats: metrics.group_commit.clone(),
        }
    }

    pub fn stats(&self) -> GroupCommitStats {
        GroupCommitStats {
            batches: self.stats.batches.get(),
            batched_writes: self.stats.batched_writes.get(),
            refused_writes: self.stats.refused_writes.get(),
            failed_batches: self.stats.failed_batches.get(),
        }
    }

    /// Writes `write` for `tenant`: at once if fewer than [`MAX_IN_FLIGHT`] writes of the tenant
    /// are in flight, else in a batch with the writes that queued meanwhile. Returns the tenant
    /// position of its last event, or the error it would have had written on its own.
    ///
    /// A queued write gives its connection back to `pool` while it waits (most are written by
    /// another's batch and never need one again), and takes one again if it is to write.
    pub async fn write<S: WriteStore<Write = W>>(
        self: &Arc<Self>,
        store: S,
        conn: S::Conn,
        tenant: TenantId,
        write: Arc<W>,
    ) -> Result<i64, StoreError> {
        let mut conn = conn;
        if !self.enabled {
            return store.write_alone(&mut conn, tenant, &write).await;
        }
        let leadership = match self.join(tenant, &write) {
            Ok(leadership) => leadership,
            Err(turn) => {
                drop(conn);
                let turn = turn.await;
                if matches!(turn, Ok(Turn::Alone | Turn::Lead(_))) {
                    conn = store.acquire().await?;
                    match turn {
                        Ok(Turn::Lead(leadership)) => leadership,
                        _ => return store.write_alone(&mut conn, tenant, &write).await,
                    }
                } else {
                    match turn {
                        Ok(Turn::Written(outcome)) => return written(outcome),
                        Ok(Turn::Unknown(error)) => {
                            return Err(StoreError::OutcomeUnknown(error));
                        }
                        // Every path answers a waiter (see `Waiter`'s drop), so only a panic
                        // gets here.
                        _ => {
                            return Err(StoreError::OutcomeUnknown(
                                "the batch was abandoned".into(),
                            ));
                        }
                    }
                }
            }
        };
        if leadership.others.is_empty() {
            let outcome = store.write_alone(&mut conn, tenant, &write).await;
            drop(leadership);
            return outcome;
        }
        // Its own task, so the others are written and answered even if this request is dropped.
        tokio::spawn(write_batch(store, conn, write, leadership))
            .await
            .unwrap_or_else(|_| Err(StoreError::OutcomeUnknown("the batch was abandoned".into())))
    }

    /// Leads when fewer than [`MAX_IN_FLIGHT`] writes of the tenant are in flight; else
    /// queues and returns where the turn will come.
    fn join(
        self: &Arc<Self>,
        tenant: TenantId,
        write: &Arc<W>,
    ) -> Result<Leadership<W>, oneshot::Receiver<Turn<W>>> {
        let mut tenants = self.tenants.lock().unwrap_or_else(PoisonError::into_inner);
        let in_flight = tenants.entry(tenant).or_default();
        if in_flight.leaders < MAX_IN_FLIGHT {
            in_flight.leaders += 1;
            return Ok(Leadership {
                group: self.clone(),
                tenant,
                others: Vec::new(),
            });
        }
        let (reply, turn) = oneshot::channel();
        in_flight.queue.push(Waiter {
            write: write.clone(),
            reply: Some(reply),
        });
        Err(turn)
    }
}

/// Writes the leader's own write and the others in one batch, passes the leadership on, and
/// answers the others.
async fn write_batch<S: WriteStore>(
    store: S,
    mut conn: S::Conn,
    own: Arc<S::Write>,
    mut leadership: Leadership<S::Write>,
) -> Result<i64, StoreError> {
    let tenant = leadership.tenant;
    let group = leadership.group.clone();
    // A second write to a stream already in the batch was decided on the version the first
    // one writes: it is refused at once (and decided again, like a version conflict), as the
    // write function would refuse it. The writes are applied in batch order within one
    // transaction, so a registration after a retirement of its course in the same batch sees
    // the course retired, as it would alone.
    let mut streams = vec![S::stream_id(&own)];
    let mut members = Vec::new();
    for waiter in std::mem::take(&mut leadership.others) {
        if waiter.is_gone() {
            continue;
        }
        if streams.contains(&S::stream_id(&waiter.write)) {
            waiter.answer(Turn::Written(BatchOutcome::Refused(
                Refusal::VersionConflict,
            )));
            continue;
        }
        streams.push(S::stream_id(&waiter.write));
        members.push(waiter);
    }
    if members.is_empty() {
        let outcome = store.write_alone(&mut conn, tenant, &own).await;
        drop(leadership);
        return outcome;
    }
    let writes: Vec<&S::Write> = std::iter::once(&*own)
        .chain(members.iter().map(|waiter| &*waiter.write))
        .collect();
    let outcomes = store.write_batch(&mut conn, tenant, &writes).await;
    drop(leadership);
    // Everyone is answered at once, before anything else can go wrong.
    match outcomes {
        Ok(outcomes) => {
            let appended = outcomes
                .iter()
                .filter(|o| matches!(o, BatchOutcome::Appended(_)))
                .count();
            group.stats.batches.inc();
            group.stats.batch_size.observe(outcomes.len() as f64);
            group.stats.batched_writes.inc_by(appended as u64);
            group
                .stats
                .refused_writes
                .inc_by((outcomes.len() - appended) as u64);
            for (waiter, outcome) in members.into_iter().zip(&outcomes[1..]) {
                waiter.answer(Turn::Written(*outcome));
            }
            written(outcomes[0])
        }
        Err(StoreError::OutcomeUnknown(error)) => {
            for waiter in members {
                waiter.answer(Turn::Unknown(error.clone()));
            }
            Err(StoreError::OutcomeUnknown(error))
        }
        Err(error) => {
            group.stats.failed_batches.inc();
            tracing::debug!(%error, writes = members.len() + 1, "a batch failed; its writes are written one by one");
            for waiter in members {
                waiter.answer(Turn::Alone);
            }
            store.write_alone(&mut conn, tenant, &own).await
        }
    }
}

fn written(outcome: BatchOutcome) -> Result<i64, StoreError> {
    match outcome {
        BatchOutcome::Appended(position) => Ok(position),
        BatchOutcome::Refused(refusal) => Err(refusal.into()),
    }
}

#[cfg(test)]
mod tests;
