//! Fair sharing of database work among tenants: every command, read, report and export first
//! takes a [`Slot`] from an [`Admission`], and only then a pooled connection.
//!
//! Why: the pool is shared by every tenant. Without admission, one tenant with 200 concurrent
//! writers (or a query of 1,000 aliases) takes every connection, and everyone else waits for
//! the pool's acquire timeout. With it:
//!
//! - there are as many slots as connections, so work that holds a slot rarely waits for the
//!   pool;
//! - a tenant alone may use every slot: sharing costs nothing when there is nobody to share
//!   with. Once any work waits, a tenant at its share (`per_tenant` slots) takes no more: its
//!   new work waits in the tenant's own queue, holding no connection;
//! - freed slots go first to the tenants below their share with queued work, in turn (round
//!   robin), so a tenant with a long queue cannot starve one with a short one; only then to
//!   tenants at or over their share, in turn. A tenant over its share when others arrive keeps
//!   what it runs (work is short) and gets no slot while anyone below its share waits;
//! - a tenant whose queue is full is refused at once ([`Refusal::TenantBusy`]: `RATE_LIMITED`),
//!   and work that waited `max_wait` without a slot is refused ([`Refusal::Saturated`]:
//!   `OVERLOADED`): an overloaded server answers early and clearly, never by timing out into an
//!   internal error.
//!
//! Only this server's work is counted: several servers on one database each share their own
//! pool this way.

use crate::domain::TenantId;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::sync::oneshot;

/// How much database work runs at once, and how much may wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Work running at once, across tenants (the pool's size).
    pub slots: usize,
    /// Work of one tenant running at once while other work waits (alone, a tenant may use
    /// every slot).
    pub per_tenant: usize,
    /// Work of one tenant waiting for a slot; beyond it, work is refused at once.
    pub queue_per_tenant: usize,
    /// The longest a piece of work waits for a slot.
    pub max_wait: Duration,
    /// How long a refusal for a full queue is held before it is answered: a client that
    /// ignores `Retry-After` and resends at once is slowed to its concurrency ÷ this delay,
    /// instead of spending the server's CPU on refusals (one that waits as told loses nothing).
    pub refusal_delay: Duration,
}

impl Limits {
    /// For a pool of `connections`: two are left to the work that is not admitted (the live
    /// feeds' reads, the wake-up sender), a tenant is sure of half of the rest (and may use all
    /// of it while nobody else waits), and queues 64 pieces of work for up to 2 s.
    pub fn for_pool(connections: usize) -> Self {
        let slots = connections.saturating_sub(2).max(1);
        Self {
            slots,
            per_tenant: (slots / 2).max(1),
            queue_per_tenant: 64,
            max_wait: Duration::from_secs(2),
            refusal_delay: DEFAULT_REFUSAL_DELAY,
        }
    }
}

/// The default [`Limits::refusal_delay`].
pub const DEFAULT_REFUSAL_DELAY: Duration = Duration::from_millis(500);

/// Why work was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The tenant already has its share running and its queue full.
    #[error("too much work of this tenant at once")]
    TenantBusy,
    /// No slot came free within the longest wait.
    #[error("the server is busy")]
    Saturated,
}

impl Refusal {
    /// The refusal's name in metrics.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::TenantBusy => "tenant_busy",
            Refusal::Saturated => "saturated",
        }
    }
}

/// One pool's admission: slots, and who waits for them.
pub struct Admission {
    limits: Limits,
    state: Mutex<State>,
    /// Slots handed out since the start (each one piece of work: one statement for a read).
    admitted: std::sync::atomic::AtomicU64,
}

#[derive(Default)]
struct State {
    /// Slots not held by anyone.
    free: usize,
    tenants: HashMap<TenantId, Tenant>,
    /// Tenants with queued work that may run more (below `per_tenant`), in turn order.
    turns: VecDeque<TenantId>,
    /// Tenants with queued work at or over their share, in turn order: served only when no
    /// tenant in `turns` waits.
    surplus: VecDeque<TenantId>,
    /// Work queued, over every tenant (waiters that gave up included, until they are found).
    queued: usize,
}

#[derive(Default)]
struct Tenant {
    running: usize,
    queue: VecDeque<oneshot::Sender<Slot>>,
    /// Whether the tenant is in `turns`.
    has_turn: bool,
    /// Whether the tenant is in `surplus`.
    in_surplus: bool,
}

impl Tenant {
    fn is_idle(&self) -> bool {
        self.running == 0 && self.queue.is_empty() && !self.has_turn && !self.in_surplus
    }

    /// Drops the waiters that gave up; returns how many.
    fn prune(&mut self) -> usize {
        let before = self.queue.len();
        self.queue.retain(|waiter| !waiter.is_closed());
        before - self.queue.len()
    }
}

impl State {
    /// Puts a tenant with queued work in line for a freed slot: in `turns` below its share, in
    /// `surplus` at or over it.
    fn line_up(&mut self, tenant: TenantId, per_tenant: usize) {
        let Some(entry) = self.tenants.get_mut(&tenant) else {
            return;
        };
        if entry.queue.is_empty() {
            return;
        }
        if entry.running < per_tenant {
            if !entry.has_turn {
                entry.has_turn = true;
                self.turns.push_back(tenant);
            }
        } else if !entry.in_surplus {
            entry.in_surplus = true;
            self.surplus.push_back(tenant);
        }
    }
}

/// The right to run one piece of database work. Dropping it passes the slot on.
pub struct Slot {
    /// `None` once the slot has been handed back.
    admission: Option<Arc<Admission>>,
    tenant: TenantId,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(admission) = self.admission.take() {
            admission.hand_back(self.tenant);
            admission.pass_on();
        }
    }
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slot")
            .field("tenant", &self.tenant)
            .finish()
    }
}

impl Admission {
    pub fn new(limits: Limits) -> Arc<Self> {
        let limits = Limits {
            slots: limits.slots.max(1),
            per_tenant: limits.per_tenant.max(1),
            ..limits
        };
        Arc::new(Self {
            limits,
            state: Mutex::new(State {
                free: limits.slots,
                ..State::default()
            }),
            admitted: Default::default(),
        })
    }

    /// The state is only touched for a few instructions at a time, so a poisoned lock leaves
    /// nothing half-done: keep using it.
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A slot for one piece of `tenant`'s work: at once when the tenant is below its share
    /// and a slot is free, else after the work queued before it (see the module docs).
    pub async fn enter(self: &Arc<Self>, tenant: TenantId) -> Result<Slot, Refusal> {
        self.enter_queued(tenant, self.limits.queue_per_tenant)
            .await
    }

    /// As [`Admission::enter`], for work whose count is bounded elsewhere (the reads of live
    /// subscriptions, at most a tenant's subscription limit at once): it queues however long
    /// the tenant's queue is, so a reconnect storm of subscribers waits its turn instead of
    /// being refused. It is still refused after `max_wait`, and other tenants still get their
    /// turns.
    pub async fn enter_unbounded(self: &Arc<Self>, tenant: TenantId) -> Result<Slot, Refusal> {
        self.enter_queued(tenant, usize::MAX).await
    }

    async fn enter_queued(
        self: &Arc<Self>,
        tenant: TenantId,
        queue_limit: usize,
    ) -> Result<Slot, Refusal> {
        let turn = {
            let mut state = self.state();
            let free = state.free;
            let limits = self.limits;
            let entry = state.tenants.entry(tenant).or_default();
            let gave_up = entry.prune();
            let below_share = entry.running < limits.per_tenant;
            let own_queue_empty = entry.queue.is_empty();
            state.queued -= gave_up;
            let nobody_waits = state.queued == 0;
            let entry = state.tenants.entry(tenant).or_default();
            if free > 0 && own_queue_empty && (below_share || nobody_waits) {
                entry.running += 1;
                state.free -= 1;
                self.count_admitted();
                return Ok(Slot {
                    admission: Some(self.clone()),
                    tenant,
                });
            }
            if entry.queue.len() >= queue_limit {
                if entry.is_idle() {
                    state.tenants.remove(&tenant);
                }
                None
            } else {
                let (reply, turn) = oneshot::channel();
                entry.queue.push_back(reply);
                state.queued += 1;
                state.line_up(tenant, limits.per_tenant);
                Some(turn)
            }
        };
        let Some(turn) = turn else {
            tokio::time::sleep(self.limits.refusal_delay).await;
            return Err(Refusal::TenantBusy);
        };
        // A slot freed between the check above and now finds this waiter in the queue.
        self.pass_on();
        match tokio::time::timeout(self.limits.max_wait, turn).await {
            Ok(Ok(slot)) => {
                self.count_admitted();
                Ok(slot)
            }
            // The waiter is dropped with its receiver: a slot sent to it comes back (`pass_on`).
            Ok(Err(_)) | Err(_) => Err(Refusal::Saturated),
        }
    }

    /// Counts a slot as free again, and gives its tenant a turn if it has queued work.
    fn hand_back(&self, tenant: TenantId) {
        let mut state = self.state();
        state.free += 1;
        let Some(entry) = state.tenants.get_mut(&tenant) else {
            return;
        };
        entry.running -= 1;
        let gave_up = entry.prune();
        let idle = entry.is_idle();
        state.queued -= gave_up;
        if idle {
            state.tenants.remove(&tenant);
        } else {
            state.line_up(tenant, self.limits.per_tenant);
        }
    }

    /// Hands free slots to queued work, one tenant's turn at a time.
    fn pass_on(self: &Arc<Self>) {
        loop {
            let Some((waiter, tenant)) = self.next_waiter() else {
                return;
            };
            let slot = Slot {
                admission: Some(self.clone()),
                tenant,
            };
            if let Err(mut slot) = waiter.send(slot) {
                // The waiter gave up meanwhile: take the slot back without recursing.
                slot.admission = None;
                self.hand_back(tenant);
            }
        }
    }

    /// The next queued work to run, with its slot counted as taken: from the tenants below
    /// their share first, then from those at or over it.
    fn next_waiter(&self) -> Option<(oneshot::Sender<Slot>, TenantId)> {
        let mut state = self.state();
        let per_tenant = self.limits.per_tenant;
        while state.free > 0 {
            let (tenant, from_turns) = match state.turns.pop_front() {
                Some(tenant) => (tenant, true),
                None => (state.surplus.pop_front()?, false),
            };
            let Some(entry) = state.tenants.get_mut(&tenant) else {
                continue;
            };
            if from_turns {
                entry.has_turn = false;
            } else {
                entry.in_surplus = false;
            }
            let mut taken = 0;
            let waiter = loop {
                match entry.queue.pop_front() {
                    Some(waiter) if waiter.is_closed() => taken += 1,
                    other => break other,
                }
            };
            let idle = waiter.is_none() && entry.is_idle();
            if waiter.is_some() {
                entry.running += 1;
                taken += 1;
            }
            state.queued -= taken;
            let Some(waiter) = waiter else {
                if idle {
                    state.tenants.remove(&tenant);
                }
                continue;
            };
            state.line_up(tenant, per_tenant);
            state.free -= 1;
            return Some((waiter, tenant));
        }
        None
    }

    fn count_admitted(&self) {
        self.admitted
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Pieces of work admitted since the start.
    pub fn admitted(&self) -> u64 {
        self.admitted.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Slots held and work queued, for tests and operators: `(running, queued)`.
    pub fn load(&self) -> (usize, usize) {
        let state = self.state();
        let queued = state
            .tenants
            .values()
            .flat_map(|t| &t.queue)
            .filter(|waiter| !waiter.is_closed())
            .count();
        (self.limits.slots - state.free, queued)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn tenant() -> TenantId {
        TenantId::from_uuid(Uuid::new_v4())
    }

    fn limits(slots: usize, per_tenant: usize, queue: usize) -> Limits {
        Limits {
            slots,
            per_tenant,
            queue_per_tenant: queue,
            max_wait: Duration::from_millis(200),
            refusal_delay: Duration::ZERO,
        }
    }

    #[tokio::test]
    async fn a_tenant_alone_may_use_every_slot() {
        let admission = Admission::new(limits(4, 2, 8));
        let a = tenant();
        let mut held = Vec::new();
        for _ in 0..4 {
            let slot = tokio::time::timeout(Duration::from_millis(50), admission.enter(a))
                .await
                .expect("nobody else waits: not kept waiting");
            held.push(slot.unwrap());
        }
        assert_eq!(admission.load(), (4, 0));
        drop(held);
        assert_eq!(admission.load(), (0, 0));
        assert!(
            admission.state().tenants.is_empty(),
            "idle tenants are forgotten"
        );
    }

    /// Spawns `tenant`'s request for a slot, and lets it queue.
    async fn queue_for(
        admission: &Arc<Admission>,
        tenant: TenantId,
    ) -> tokio::task::JoinHandle<Result<Slot, Refusal>> {
        let waiting = tokio::spawn({
            let admission = admission.clone();
            async move { admission.enter(tenant).await }
        });
        tokio::task::yield_now().await;
        waiting
    }

    #[tokio::test]
    async fn once_another_tenant_waits_a_tenant_over_its_share_gets_no_more() {
        let admission = Admission::new(limits(4, 2, 8));
        let (a, b) = (tenant(), tenant());
        let mut a_held = Vec::new();
        for _ in 0..4 {
            a_held.push(admission.enter(a).await.unwrap());
        }
        let b_waiting = queue_for(&admission, b).await;
        let a_waiting = queue_for(&admission, a).await;
        assert_eq!(admission.load(), (4, 2));
        // A freed slot goes to B, below its share, not to A's queued work.
        a_held.pop();
        let b_slot = b_waiting.await.unwrap().expect("B is served first");
        assert_eq!(admission.load(), (4, 1));
        // With B served, A's queued work takes the next free slot, over its share or not.
        a_held.pop();
        let a_slot = a_waiting
            .await
            .unwrap()
            .expect("A's work runs when nobody else waits");
        assert_eq!(admission.load(), (4, 0));
        drop((a_held, a_slot, b_slot));
        assert_eq!(admission.load(), (0, 0));
        assert!(admission.state().tenants.is_empty());
        assert_eq!(admission.state().queued, 0, "the queued count is back to 0");
    }

    #[tokio::test]
    async fn a_tenant_at_its_share_waits_while_another_tenant_waits() {
        let admission = Admission::new(limits(3, 1, 8));
        let (a, b, c) = (tenant(), tenant(), tenant());
        let a_first = admission.enter(a).await.unwrap();
        let _b = admission.enter(b).await.unwrap();
        let _c = admission.enter(c).await.unwrap();
        // Every slot is held: B and then A queue.
        let b_waiting = queue_for(&admission, b).await;
        let a_waiting = queue_for(&admission, a).await;
        drop(a_first);
        // A is below its share again, B is at it: A's queued work goes first.
        let a_slot = a_waiting
            .await
            .unwrap()
            .expect("A below its share is served");
        assert_eq!(admission.load(), (3, 1));
        drop(a_slot);
        let b_slot = b_waiting.await.unwrap().expect("then B, over its share");
        assert_eq!(admission.load(), (3, 0));
        drop(b_slot);
    }

    #[tokio::test]
    async fn a_full_queue_is_refused_at_once_and_a_long_wait_is_refused_after_max_wait() {
        let admission = Admission::new(limits(1, 1, 1));
        let a = tenant();
        let _held = admission.enter(a).await.unwrap();
        let queued = tokio::spawn({
            let admission = admission.clone();
            async move { admission.enter(a).await }
        });
        tokio::task::yield_now().await;
        assert_eq!(admission.enter(a).await.unwrap_err(), Refusal::TenantBusy);
        assert_eq!(queued.await.unwrap().unwrap_err(), Refusal::Saturated);
        assert_eq!(
            admission.load(),
            (1, 0),
            "a waiter that gave up leaves the queue"
        );
    }

    #[tokio::test]
    async fn work_bounded_elsewhere_queues_beyond_the_tenants_queue_limit() {
        let admission = Admission::new(limits(1, 1, 1));
        let a = tenant();
        let held = admission.enter(a).await.unwrap();
        let first = queue_for(&admission, a).await;
        assert_eq!(admission.enter(a).await.unwrap_err(), Refusal::TenantBusy);
        let unbounded = tokio::spawn({
            let admission = admission.clone();
            async move { admission.enter_unbounded(a).await }
        });
        tokio::task::yield_now().await;
        assert_eq!(admission.load(), (1, 2), "queued past the limit of 1");
        drop(held);
        drop(first.await.unwrap().unwrap());
        assert!(unbounded.await.unwrap().is_ok());
        assert_eq!(admission.load(), (0, 0));
    }

    #[tokio::test]
    async fn freed_slots_go_to_waiting_tenants_in_turn() {
        let admission = Admission::new(limits(1, 1, 16));
        let (a, b) = (tenant(), tenant());
        let first = admission.enter(a).await.unwrap();
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        // A queues three, then B one: B must not wait behind all of A's.
        for (name, who) in [("a", a), ("a", a), ("a", a), ("b", b)] {
            let (admission, order) = (admission.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let slot = admission.enter(who).await.unwrap();
                order.lock().unwrap().push(name);
                tokio::task::yield_now().await;
                drop(slot);
            }));
            tokio::task::yield_now().await;
        }
        drop(first);
        for task in tasks {
            task.await.unwrap();
        }
        let order = order.lock().unwrap().clone();
        let b_at = order.iter().position(|n| *n == "b").unwrap();
        assert!(b_at <= 1, "B ran in turn, not last: {order:?}");
        assert_eq!(admission.load(), (0, 0));
    }

    #[tokio::test]
    async fn a_slot_sent_to_a_waiter_that_gave_up_comes_back() {
        let admission = Admission::new(limits(1, 1, 4));
        let (a, b) = (tenant(), tenant());
        let held = admission.enter(a).await.unwrap();
        let gave_up = tokio::spawn({
            let admission = admission.clone();
            async move { admission.enter(b).await }
        });
        tokio::task::yield_now().await;
        gave_up.abort();
        let _ = gave_up.await;
        drop(held);
        assert_eq!(admission.load(), (0, 0));
        let again = tokio::time::timeout(Duration::from_millis(50), admission.enter(b)).await;
        assert!(again.expect("not kept waiting").is_ok());
    }
}
