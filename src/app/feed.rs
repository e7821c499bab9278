//! Live events, read once per tenant and fanned out in memory: what live subscriptions follow
//! once they have caught up.
//!
//! Why: a commit wakes every follower of its tenant. If each follower read the log itself, a
//! tenant with 2,000 subscriptions would turn every commit into 2,000 reads through the shared
//! pool, slowing every tenant. Instead, one task per followed tenant (its *feed*) reads each
//! new event once, after a wake-up ([`Hub`]) or on a timer, and broadcasts it; each follower
//! filters in memory. Reading costs one statement per commit burst and tenant, however many
//! follow.
//!
//! A follower that falls so far behind that the broadcast buffer overwrote what it had not
//! taken yet is ended with `SLOW_CONSUMER` (it resumes from the last position it received):
//! a slow consumer loses its subscription, never slows the feed or the others.
//!
//! Subscriptions are counted per caller and per tenant, and refused beyond the limits.

use super::{AppError, Caller};
use crate::crypto::Keyring;
use crate::domain::TenantId;
use crate::metrics::Metrics;
use crate::store::live::Hub;
use crate::store::log::{self, LogFilter, LoggedEvent};
use sqlx::PgPool;
use std::collections::HashMap;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};
use tokio::sync::broadcast;
use uuid::Uuid;

/// Events a feed reads per statement.
const PAGE_SIZE: i64 = 500;
/// How often a feed looks at the log without a wake-up: the latency a lost notification
/// costs, at worst.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// How many live subscriptions may be open at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscriptionLimits {
    pub per_caller: usize,
    pub per_tenant: usize,
    /// Batches of new events a tenant's feed keeps for followers that have not taken them
    /// yet; a follower further behind is ended (`SLOW_CONSUMER`).
    pub buffer: usize,
    /// Events delivered per second to one tenant's subscriptions, all together, after a burst
    /// of one second's worth (0: no limit). Each event costs every subscriber's execution and
    /// a socket write: without a budget, one tenant's thousands of subscriptions take every
    /// core. Beyond it, that tenant's subscribers fall behind (and, far enough, are ended),
    /// not the others.
    pub events_per_second: u32,
}

impl Default for SubscriptionLimits {
    fn default() -> Self {
        Self {
            per_caller: 64,
            per_tenant: 2_000,
            buffer: 1024,
            events_per_second: 5_000,
        }
    }
}

/// New events of a tenant: every event with a position in `(after, to]`, in order.
#[derive(Debug)]
pub struct Batch {
    pub after: i64,
    pub to: i64,
    pub events: Vec<LoggedEvent>,
}

/// The feeds of the followed tenants, and the count of open subscriptions.
pub(super) struct Feeds {
    pool: PgPool,
    keys: Keyring,
    hub: Hub,
    limits: SubscriptionLimits,
    senders: Mutex<HashMap<TenantId, broadcast::Sender<Arc<Batch>>>>,
    /// Open subscriptions per tenant (`None`) and per caller (`Some(actor)`).
    open: Mutex<HashMap<(TenantId, Option<Uuid>), usize>>,
    /// Per followed tenant, when its delivery budget is next free (see
    /// [`SubscriptionLimits::events_per_second`]).
    paces: Mutex<HashMap<TenantId, Instant>>,
    metrics: Arc<Metrics>,
    /// Subscriptions caught up and following their tenant's feed.
    live: AtomicIsize,
}

/// An open subscription, counted until dropped.
pub(super) struct Ticket {
    feeds: Arc<Feeds>,
    tenant: TenantId,
    actor: Uuid,
    /// Caught up: waiting for the feed's batches (counted in [`Feeds::live`]).
    live: bool,
}

impl Ticket {
    /// How long to wait before delivering `events` more events, within the tenant's budget.
    pub fn pace(&self, events: usize) -> Duration {
        self.feeds.pace(self.tenant, events)
    }

    /// Counts one event sent to this subscription.
    pub fn delivered(&self) {
        self.feeds.metrics.live.events_delivered.inc();
    }

    /// Marks the subscription as caught up (following the feed) or not (reading the log).
    pub fn set_live(&mut self, live: bool) {
        if live != self.live {
            self.live = live;
            let delta = if live { 1 } else { -1 };
            self.feeds.live.fetch_add(delta, Ordering::Relaxed);
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.set_live(false);
        self.feeds.metrics.live.subscriptions_open.dec();
        let mut open = lock(&self.feeds.open);
        for key in [(self.tenant, None), (self.tenant, Some(self.actor))] {
            if let Some(count) = open.get_mut(&key) {
                *count -= 1;
                if *count == 0 {
                    open.remove(&key);
                }
            }
        }
    }
}

/// The maps are only touched for a few instructions at a time, so a poisoned lock leaves
/// nothing half-done: keep using it.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Feeds {
    pub fn new(
        pool: PgPool,
        keys: Keyring,
        limits: SubscriptionLimits,
        metrics: Arc<Metrics>,
    ) -> Arc<Self> {
        Arc::new(Self {
            keys,
            metrics,
            live: AtomicIsize::new(0),
            hub: Hub::new(pool.clone()),
            pool,
            limits,
            senders: Mutex::new(HashMap::new()),
            open: Mutex::new(HashMap::new()),
            paces: Mutex::new(HashMap::new()),
        })
    }

    /// Reserves the delivery of `events` events to `tenant`'s subscriptions: how long to wait
    /// first. Reservations queue behind each other (each waits exactly its turn, no herd), and
    /// an idle tenant has a second's worth of burst.
    fn pace(&self, tenant: TenantId, events: usize) -> Duration {
        let rate = self.limits.events_per_second;
        if rate == 0 || events == 0 {
            return Duration::ZERO;
        }
        let now = Instant::now();
        let burst_start = now.checked_sub(Duration::from_secs(1)).unwrap_or(now);
        let mut paces = lock(&self.paces);
        let next = paces.entry(tenant).or_insert(burst_start);
        *next = (*next).max(burst_start);
        let wait = next.saturating_duration_since(now);
        *next += Duration::from_secs_f64(events as f64 / f64::from(rate));
        wait
    }

    /// Counts a new subscription of `caller`, or refuses it beyond the limits.
    pub fn open(self: &Arc<Self>, caller: &Caller) -> Result<Ticket, AppError> {
        let (tenant, actor) = (caller.tenant(), caller.actor_id());
        let mut open = lock(&self.open);
        let of_tenant = open.get(&(tenant, None)).copied().unwrap_or(0);
        let of_caller = open.get(&(tenant, Some(actor))).copied().unwrap_or(0);
        if of_caller >= self.limits.per_caller {
            return Err(AppError::RateLimited(format!(
                "at most {} live subscriptions per caller",
                self.limits.per_caller
            )));
        }
        if of_tenant >= self.limits.per_tenant {
            return Err(AppError::RateLimited(format!(
                "at most {} live subscriptions per tenant",
                self.limits.per_tenant
            )));
        }
        *open.entry((tenant, None)).or_default() += 1;
        *open.entry((tenant, Some(actor))).or_default() += 1;
        self.metrics.live.subscriptions_open.inc();
        Ok(Ticket {
            feeds: self.clone(),
            tenant,
            actor,
            live: false,
        })
    }

    /// Open subscriptions of a tenant.
    pub fn open_subscriptions(&self, tenant: TenantId) -> usize {
        lock(&self.open).get(&(tenant, None)).copied().unwrap_or(0)
    }

    /// The tenant's batches from now on, starting its feed if nobody follows it yet. Every
    /// event committed after this call is in a batch received later, unless the first batch
    /// starts after the receiver's position (the feed started after it): then the receiver
    /// reads the gap from the log.
    pub fn subscribe(self: &Arc<Self>, tenant: TenantId) -> broadcast::Receiver<Arc<Batch>> {
        let mut senders = lock(&self.senders);
        if let Some(sender) = senders.get(&tenant) {
            return sender.subscribe();
        }
        let (sender, receiver) = broadcast::channel(self.limits.buffer.max(1));
        senders.insert(tenant, sender.clone());
        let wake = self.hub.wake_ups(tenant);
        tokio::spawn(run(Arc::downgrade(self), tenant, sender, wake));
        receiver
    }

    /// Tenants with a feed running (for tests and operators).
    pub fn feeds_running(&self) -> usize {
        lock(&self.senders).len()
    }

    /// Subscriptions that have caught up and follow the feed: an event committed from now on
    /// reaches them through it (for tests: the moment a subscription is live).
    pub fn live_subscriptions(&self) -> usize {
        self.live.load(Ordering::Relaxed).max(0) as usize
    }
}

/// Reads that fail in a row before a feed gives up: its followers are then ended with
/// `DATABASE_UNAVAILABLE` (and resume from their last position), rather than wait silently.
const MAX_FAILED_READS: u32 = 5;

/// One tenant's feed: reads what is new after each wake-up (or poll) and broadcasts it. Ends
/// when nobody follows the tenant any more, the server is stopping, or reads keep failing;
/// then its channel is closed (removed from the map), which ends its followers.
async fn run(
    feeds: Weak<Feeds>,
    tenant: TenantId,
    sender: broadcast::Sender<Arc<Batch>>,
    wake: tokio::sync::watch::Receiver<u64>,
) {
    follow_log(&feeds, tenant, &sender, wake).await;
    if let Some(feeds) = feeds.upgrade() {
        let mut senders = lock(&feeds.senders);
        if senders
            .get(&tenant)
            .is_some_and(|current| current.same_channel(&sender))
        {
            senders.remove(&tenant);
        }
        lock(&feeds.paces).remove(&tenant);
    }
}

async fn follow_log(
    feeds: &Weak<Feeds>,
    tenant: TenantId,
    sender: &broadcast::Sender<Arc<Batch>>,
    mut wake: tokio::sync::watch::Receiver<u64>,
) {
    let mut last: Option<i64> = None;
    let mut failures = 0;
    let mut hub_alive = true;
    loop {
        // Nobody follows any more: stop, under the lock `subscribe` takes, so that no new
        // follower can subscribe to a feed that is ending.
        let (pool, keys, metrics) = {
            let Some(feeds) = feeds.upgrade() else { return };
            let mut senders = lock(&feeds.senders);
            if sender.receiver_count() == 0 {
                senders.remove(&tenant);
                return;
            }
            (
                feeds.pool.clone(),
                feeds.keys.clone(),
                feeds.metrics.clone(),
            )
        };
        if pool.is_closed() {
            return;
        }
        match read_new(&pool, &keys, tenant, &mut last, sender, &metrics).await {
            Ok(()) => failures = 0,
            Err(error) => {
                failures += 1;
                tracing::warn!(%tenant, error = %error, failures, "the live feed cannot read the log");
                if failures >= MAX_FAILED_READS {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100) * 2u32.pow(failures)).await;
                continue;
            }
        }
        drop(pool);
        if hub_alive {
            tokio::select! {
                changed = wake.changed() => hub_alive = changed.is_ok(),
                () = tokio::time::sleep(POLL_INTERVAL) => {}
            }
        } else {
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }
}

/// Broadcasts every event after `last`. The first call learns the head and broadcasts it as
/// an empty batch: a follower whose read of the log ended before an event the feed counts as
/// already seen (committed between the follower's read and the feed's start) learns of the gap
/// from it, rather than from the next commit, which may never come.
async fn read_new(
    pool: &PgPool,
    keys: &Keyring,
    tenant: TenantId,
    last: &mut Option<i64>,
    sender: &broadcast::Sender<Arc<Batch>>,
    metrics: &Metrics,
) -> Result<(), crate::store::StoreError> {
    let Some(after) = *last else {
        let head = log::head(pool, tenant).await?;
        *last = Some(head);
        let _ = sender.send(Arc::new(Batch {
            after: head,
            to: head,
            events: Vec::new(),
        }));
        return Ok(());
    };
    let mut after = after;
    loop {
        let page =
            log::read_page(pool, keys, tenant, &LogFilter::default(), after, PAGE_SIZE).await?;
        let full = page.events.len() as i64 >= PAGE_SIZE;
        if let Some(newest) = page.events.last() {
            // Commit time is the database's clock, read time the server's: on one machine, or
            // with synchronised clocks, the difference is the feed's lag.
            let lag = (chrono::Utc::now() - newest.recorded_at).num_microseconds();
            metrics
                .live
                .feed_lag
                .observe(lag.unwrap_or(0).max(0) as f64 / 1e6);
            let batch = Batch {
                after,
                to: page.scanned_to,
                events: page.events,
            };
            // No receiver right now: the next follower reads these from the log anyway.
            let _ = sender.send(Arc::new(batch));
        }
        after = page.scanned_to;
        *last = Some(after);
        if !full {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn deliveries_beyond_a_tenants_budget_wait_their_turn_after_a_seconds_burst() {
        let pool = PgPool::connect_lazy("postgres://nobody@127.0.0.1:1/none").unwrap();
        let limits = SubscriptionLimits {
            events_per_second: 1_000,
            ..SubscriptionLimits::default()
        };
        let feeds = Feeds::new(pool, Keyring::unwrapped(), limits, Arc::default());
        let (busy, quiet) = (
            TenantId::from_uuid(Uuid::new_v4()),
            TenantId::from_uuid(Uuid::new_v4()),
        );
        assert_eq!(feeds.pace(busy, 1_000), Duration::ZERO, "the burst");
        let second = feeds.pace(busy, 1_000);
        assert!(second < Duration::from_millis(100), "{second:?}");
        let third = feeds.pace(busy, 10);
        assert!(third > Duration::from_millis(900), "{third:?}");
        assert_eq!(feeds.pace(quiet, 500), Duration::ZERO, "per tenant");
    }
}
