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
use crate::domain::TenantId;
use crate::store::live::Hub;
use crate::store::log::{self, LogFilter, LoggedEvent};
use sqlx::PgPool;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;
use tokio::sync::broadcast;
use uuid::Uuid;

/// Events a feed reads per statement.
const PAGE_SIZE: i64 = 500;
/// How often a feed looks at the log without a wake-up: the latency a lost notification
/// costs, at worst.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// Longest pause before a feed reads again after a failed read.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(2);

/// How many live subscriptions may be open at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscriptionLimits {
    pub per_caller: usize,
    pub per_tenant: usize,
    /// Batches of new events a tenant's feed keeps for followers that have not taken them
    /// yet; a follower further behind is ended (`SLOW_CONSUMER`).
    pub buffer: usize,
}

impl Default for SubscriptionLimits {
    fn default() -> Self {
        Self {
            per_caller: 64,
            per_tenant: 2_000,
            buffer: 1024,
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
    hub: Hub,
    limits: SubscriptionLimits,
    senders: Mutex<HashMap<TenantId, broadcast::Sender<Arc<Batch>>>>,
    /// Open subscriptions per tenant (`None`) and per caller (`Some(actor)`).
    open: Mutex<HashMap<(TenantId, Option<Uuid>), usize>>,
}

/// An open subscription, counted until dropped.
pub(super) struct Ticket {
    feeds: Arc<Feeds>,
    tenant: TenantId,
    actor: Uuid,
}

impl Drop for Ticket {
    fn drop(&mut self) {
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
    pub fn new(pool: PgPool, limits: SubscriptionLimits) -> Arc<Self> {
        Arc::new(Self {
            hub: Hub::new(pool.clone()),
            pool,
            limits,
            senders: Mutex::new(HashMap::new()),
            open: Mutex::new(HashMap::new()),
        })
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
        Ok(Ticket {
            feeds: self.clone(),
            tenant,
            actor,
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
}

/// One tenant's feed: reads what is new after each wake-up (or poll) and broadcasts it. Ends
/// when nobody follows the tenant any more, or the server is stopping.
async fn run(
    feeds: Weak<Feeds>,
    tenant: TenantId,
    sender: broadcast::Sender<Arc<Batch>>,
    mut wake: tokio::sync::watch::Receiver<u64>,
) {
    let mut last: Option<i64> = None;
    let mut retry_delay = Duration::from_millis(50);
    let mut hub_alive = true;
    loop {
        // Nobody follows any more: stop, under the lock `subscribe` takes, so that no new
        // follower can subscribe to a feed that is ending.
        let pool = {
            let Some(feeds) = feeds.upgrade() else { return };
            let mut senders = lock(&feeds.senders);
            if sender.receiver_count() == 0 {
                senders.remove(&tenant);
                return;
            }
            feeds.pool.clone()
        };
        if pool.is_closed() {
            return;
        }
        match read_new(&pool, tenant, &mut last, &sender).await {
            Ok(()) => retry_delay = Duration::from_millis(50),
            Err(error) => {
                tracing::warn!(%tenant, error = %error, "the live feed cannot read the log; retrying");
                tokio::time::sleep(retry_delay).await;
                retry_delay = (retry_delay * 2).min(MAX_RETRY_DELAY);
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

/// Broadcasts every event after `last` (the first call only learns the head).
async fn read_new(
    pool: &PgPool,
    tenant: TenantId,
    last: &mut Option<i64>,
    sender: &broadcast::Sender<Arc<Batch>>,
) -> Result<(), crate::store::StoreError> {
    let Some(after) = *last else {
        *last = Some(log::head(pool, tenant).await?);
        return Ok(());
    };
    let mut after = after;
    loop {
        let page = log::read_page(pool, tenant, &LogFilter::default(), after, PAGE_SIZE).await?;
        let full = page.events.len() as i64 >= PAGE_SIZE;
        if !page.events.is_empty() {
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
