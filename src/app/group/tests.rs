//! Group commit against a store double: the double holds every call at a gate until the test
//! opens it, so a test can put writes in flight, queue others behind them, and then see which
//! calls the store received and what each write was told.

use super::*;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

/// A write of the double: its stream, and whether the store refuses it.
struct TestWrite {
    stream: Uuid,
    refused: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Call {
    Alone(Uuid),
    Batch(Vec<Uuid>),
}

#[derive(Default)]
struct Recorded {
    /// Calls in the order they reached the store.
    calls: Mutex<Vec<Call>>,
    /// Calls that reached the store, finished or waiting at the gate.
    entered: AtomicUsize,
    position: AtomicI64,
    /// A batch fails with a database error (nothing written).
    fail_batches: AtomicBool,
    /// A batch's connection is lost (its outcome unknown).
    lose_batches: AtomicBool,
}

#[derive(Clone)]
struct Double {
    gate: Arc<Semaphore>,
    recorded: Arc<Recorded>,
}

impl Double {
    fn new() -> Self {
        Self {
            gate: Arc::new(Semaphore::new(0)),
            recorded: Arc::default(),
        }
    }

    async fn pass_gate(&self, call: Call) {
        self.recorded.entered.fetch_add(1, Ordering::SeqCst);
        self.gate
            .acquire()
            .await
            .expect("the gate stays open")
            .forget();
        lock(&self.recorded.calls).push(call);
    }

    fn open(&self) {
        self.gate.add_permits(1_000);
    }

    fn calls(&self) -> Vec<Call> {
        lock(&self.recorded.calls).clone()
    }

    fn next_position(&self) -> i64 {
        self.recorded.position.fetch_add(1, Ordering::SeqCst) + 1
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl WriteStore for Double {
    type Conn = ();
    type Write = TestWrite;

    fn stream_id(write: &TestWrite) -> Uuid {
        write.stream
    }

    async fn acquire(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn write_alone(
        &self,
        _: &mut (),
        _: TenantId,
        write: &TestWrite,
    ) -> Result<i64, StoreError> {
        self.pass_gate(Call::Alone(write.stream)).await;
        if write.refused {
            return Err(StoreError::VersionConflict);
        }
        Ok(self.next_position())
    }

    async fn write_batch(
        &self,
        _: &mut (),
        _: TenantId,
        writes: &[&TestWrite],
    ) -> Result<Vec<BatchOutcome>, StoreError> {
        self.pass_gate(Call::Batch(writes.iter().map(|w| w.stream).collect()))
            .await;
        if self.recorded.fail_batches.load(Ordering::SeqCst) {
            return Err(StoreError::Database(sqlx::Error::PoolTimedOut));
        }
        if self.recorded.lose_batches.load(Ordering::SeqCst) {
            return Err(StoreError::OutcomeUnknown("connection reset".into()));
        }
        Ok(writes
            .iter()
            .map(|write| match write.refused {
                true => BatchOutcome::Refused(Refusal::VersionConflict),
                false => BatchOutcome::Appended(self.next_position()),
            })
            .collect())
    }
}

const TENANT: TenantId = TenantId::from_uuid(Uuid::nil());

struct Harness {
    group: Arc<GroupCommit<TestWrite>>,
    store: Double,
}

impl Harness {
    fn new(enabled: bool) -> Self {
        Self {
            group: Arc::new(GroupCommit::new(enabled, &Metrics::new())),
            store: Double::new(),
        }
    }

    fn write(&self, stream: Uuid, refused: bool) -> JoinHandle<Result<i64, StoreError>> {
        let (group, store) = (self.group.clone(), self.store.clone());
        let write = Arc::new(TestWrite { stream, refused });
        tokio::spawn(async move { group.write(store, (), TENANT, write).await })
    }

    /// `n` writes of new streams, held in the store: the tenant's places in flight taken.
    async fn fill_places(&self, n: usize) -> Vec<(Uuid, JoinHandle<Result<i64, StoreError>>)> {
        let writes: Vec<_> = (0..n)
            .map(|_| {
                let stream = Uuid::now_v7();
                (stream, self.write(stream, false))
            })
            .collect();
        self.until(|| self.store.recorded.entered.load(Ordering::SeqCst) == n)
            .await;
        writes
    }

    /// Writes of `streams`, each queued before the next is made.
    async fn queue(&self, streams: &[Uuid]) -> Vec<JoinHandle<Result<i64, StoreError>>> {
        let mut writes = Vec::new();
        for (i, stream) in streams.iter().enumerate() {
            writes.push(self.write(*stream, false));
            self.until(|| self.queued() == i + 1).await;
        }
        writes
    }

    fn queued(&self) -> usize {
        lock(&self.group.tenants)
            .get(&TENANT)
            .map_or(0, |in_flight| in_flight.queue.len())
    }

    async fn until(&self, condition: impl Fn() -> bool) {
        for _ in 0..2_000 {
            if condition() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        panic!("the condition never held");
    }
}

async fn outcome(write: JoinHandle<Result<i64, StoreError>>) -> Result<i64, StoreError> {
    write.await.expect("the write's task")
}

#[tokio::test]
async fn writes_beyond_the_places_in_flight_queue_and_are_written_in_one_batch() {
    let h = Harness::new(true);
    let leaders = h.fill_places(MAX_IN_FLIGHT).await;
    let queued: Vec<_> = (0..3).map(|_| Uuid::now_v7()).collect();
    let waiting = h.queue(&queued).await;
    h.store.open();

    let mut positions = Vec::new();
    for (_, write) in leaders {
        positions.push(outcome(write).await.expect("written alone"));
    }
    for write in waiting {
        positions.push(outcome(write).await.expect("written in the batch"));
    }
    let calls = h.store.calls();
    assert_eq!(calls.len(), MAX_IN_FLIGHT + 1, "{calls:?}");
    assert_eq!(calls.last(), Some(&Call::Batch(queued)), "in queue order");
    positions.sort_unstable();
    positions.dedup();
    assert_eq!(
        positions.len(),
        MAX_IN_FLIGHT + 3,
        "each write its own position"
    );
    let stats = h.group.stats();
    assert_eq!((stats.batches, stats.batched_writes), (1, 3));
    assert!(
        lock(&h.group.tenants).is_empty(),
        "the tenant's places given back"
    );
}

#[tokio::test]
async fn a_second_write_of_a_stream_in_the_batch_is_refused_without_reaching_the_store() {
    let h = Harness::new(true);
    let _leaders = h.fill_places(MAX_IN_FLIGHT).await;
    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
    let first = h.write(a, false);
    h.until(|| h.queued() == 1).await;
    let other = h.write(b, false);
    h.until(|| h.queued() == 2).await;
    let again = h.write(a, false);
    h.until(|| h.queued() == 3).await;
    h.store.open();

    assert!(outcome(first).await.is_ok());
    assert!(outcome(other).await.is_ok());
    assert!(matches!(
        outcome(again).await,
        Err(StoreError::VersionConflict)
    ));
    assert_eq!(h.store.calls().last(), Some(&Call::Batch(vec![a, b])));
}

#[tokio::test]
async fn each_write_of_a_batch_gets_its_own_refusal_or_position() {
    let h = Harness::new(true);
    let _leaders = h.fill_places(MAX_IN_FLIGHT).await;
    let accepted = h.write(Uuid::now_v7(), false);
    h.until(|| h.queued() == 1).await;
    let refused = h.write(Uuid::now_v7(), true);
    h.until(|| h.queued() == 2).await;
    h.store.open();

    assert!(outcome(accepted).await.is_ok());
    assert!(matches!(
        outcome(refused).await,
        Err(StoreError::VersionConflict)
    ));
    assert_eq!(h.group.stats().refused_writes, 1);
}

#[tokio::test]
async fn a_batch_the_database_fails_is_written_again_one_write_at_a_time() {
    let h = Harness::new(true);
    h.store.recorded.fail_batches.store(true, Ordering::SeqCst);
    let _leaders = h.fill_places(MAX_IN_FLIGHT).await;
    let queued: Vec<_> = (0..3).map(|_| Uuid::now_v7()).collect();
    let writes = h.queue(&queued).await;
    h.store.open();

    for write in writes {
        assert!(
            outcome(write).await.is_ok(),
            "written alone after the batch"
        );
    }
    let calls = h.store.calls();
    let batch_at = calls
        .iter()
        .position(|call| *call == Call::Batch(queued.clone()))
        .expect("the batch was tried");
    let mut alone: Vec<Uuid> = calls[batch_at + 1..]
        .iter()
        .map(|call| match call {
            Call::Alone(stream) => *stream,
            Call::Batch(_) => panic!("only single writes after a failed batch: {calls:?}"),
        })
        .collect();
    alone.sort_unstable();
    let mut expected = queued.clone();
    expected.sort_unstable();
    assert_eq!(alone, expected);
    assert_eq!(h.group.stats().failed_batches, 1);
}

#[tokio::test]
async fn a_batch_whose_connection_is_lost_leaves_every_write_of_it_unknown() {
    let h = Harness::new(true);
    h.store.recorded.lose_batches.store(true, Ordering::SeqCst);
    let _leaders = h.fill_places(MAX_IN_FLIGHT).await;
    let first = h.write(Uuid::now_v7(), false);
    h.until(|| h.queued() == 1).await;
    let second = h.write(Uuid::now_v7(), false);
    h.until(|| h.queued() == 2).await;
    h.store.open();

    for write in [first, second] {
        assert!(matches!(
            outcome(write).await,
            Err(StoreError::OutcomeUnknown(_))
        ));
    }
    let batches = h
        .store
        .calls()
        .iter()
        .filter(|call| matches!(call, Call::Batch(_)))
        .count();
    assert_eq!(batches, 1, "an unknown outcome is never written again");
}

#[tokio::test]
async fn a_queued_write_whose_request_is_dropped_is_not_written() {
    let h = Harness::new(true);
    let _leaders = h.fill_places(MAX_IN_FLIGHT).await;
    let (kept, dropped) = (Uuid::now_v7(), Uuid::now_v7());
    let kept_write = h.write(kept, false);
    h.until(|| h.queued() == 1).await;
    let dropped_write = h.write(dropped, false);
    h.until(|| h.queued() == 2).await;
    dropped_write.abort();
    let _ = dropped_write.await;
    h.store.open();

    assert!(outcome(kept_write).await.is_ok());
    h.until(|| lock(&h.group.tenants).is_empty()).await;
    let calls = h.store.calls();
    let written = |stream: Uuid| {
        calls.iter().any(|call| match call {
            Call::Alone(s) => *s == stream,
            Call::Batch(streams) => streams.contains(&stream),
        })
    };
    assert!(written(kept));
    assert!(!written(dropped), "{calls:?}");
}

#[tokio::test]
async fn without_group_commit_every_write_is_written_alone_at_once() {
    let h = Harness::new(false);
    let writes = h.fill_places(MAX_IN_FLIGHT + 3).await;
    assert_eq!(h.queued(), 0);
    h.store.open();
    for (_, write) in writes {
        assert!(outcome(write).await.is_ok());
    }
    assert!(
        h.store
            .calls()
            .iter()
            .all(|call| matches!(call, Call::Alone(_)))
    );
    assert_eq!(h.group.stats().batches, 0);
}
