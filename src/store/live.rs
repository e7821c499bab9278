//! Wake-ups for live readers: ONE dedicated connection `LISTEN`ing on [`EVENTS_CHANNEL`], fanned
//! out to every follower of the notified tenant through a per-tenant `watch` channel.
//!
//! A wake-up is a hint and nothing more: it carries no events and promises nothing. Followers
//! read the log by position (`store::log`), and poll on a timer too, so a notification that is
//! lost (the listener reconnecting) or coalesced (a burst of commits) costs latency, never an
//! event. This module never reads events.

use super::EVENTS_CHANNEL;
use crate::domain::TenantId;
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;
use tokio::sync::{oneshot, watch};
use uuid::Uuid;

/// Longest pause between attempts to (re)connect the listener.
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(5);

/// The fan-out point. Cheap to clone; the listener connection is opened on the first
/// [`Hub::wake_ups`] call (a server nobody follows holds no extra connection) and closed when
/// the last clone is dropped.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    /// One counter per followed tenant; bumping it wakes that tenant's followers.
    tenants: Mutex<HashMap<TenantId, watch::Sender<u64>>>,
    /// Dropped with the hub, which tells the listener task to stop.
    stop: OnceLock<oneshot::Sender<()>>,
}

impl Hub {
    pub fn new(pool: PgPool) -> Self {
        Self {
            inner: Arc::new(Inner {
                pool,
                tenants: Mutex::new(HashMap::new()),
                stop: OnceLock::new(),
            }),
        }
    }

    /// A receiver that changes whenever the tenant may have new events. Starts the listener on
    /// first use; must be called inside a Tokio runtime.
    pub fn wake_ups(&self, tenant: TenantId) -> watch::Receiver<u64> {
        self.start_listener();
        let mut tenants = self.inner.tenants();
        tenants
            .entry(tenant)
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }

    fn start_listener(&self) {
        if self.inner.stop.get().is_some() {
            return;
        }
        let (stop_tx, stop_rx) = oneshot::channel();
        // Only the caller that installs the stop handle starts the task.
        if self.inner.stop.set(stop_tx).is_ok() {
            tokio::spawn(listen(Arc::downgrade(&self.inner), stop_rx));
        }
    }
}

impl Inner {
    /// The map is only touched for a few instructions at a time, so a poisoned lock (a panic
    /// while holding it) leaves nothing half-done: keep using it.
    fn tenants(&self) -> MutexGuard<'_, HashMap<TenantId, watch::Sender<u64>>> {
        self.tenants
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn wake(&self, tenant: TenantId) {
        let mut tenants = self.tenants();
        if let Some(sender) = tenants.get(&tenant) {
            if sender.receiver_count() == 0 {
                // Nobody follows this tenant any more: forget it.
                tenants.remove(&tenant);
            } else {
                sender.send_modify(|n| *n = n.wrapping_add(1));
            }
        }
    }

    /// After the listener was not listening for a while, anything may have been committed.
    fn wake_all(&self) {
        let mut tenants = self.tenants();
        tenants.retain(|_, sender| sender.receiver_count() > 0);
        for sender in tenants.values() {
            sender.send_modify(|n| *n = n.wrapping_add(1));
        }
    }
}

/// The listener task: connects, LISTENs, routes each notification to its tenant; reconnects
/// with backoff when the connection fails. Ends when the hub is dropped.
async fn listen(hub: std::sync::Weak<Inner>, mut stop: oneshot::Receiver<()>) {
    let mut delay = Duration::from_millis(100);
    loop {
        let Some(pool) = hub.upgrade().map(|inner| inner.pool.clone()) else {
            return;
        };
        if pool.is_closed() {
            // The server is shutting down.
            return;
        }
        let mut listener = match connect(&pool).await {
            Ok(listener) => listener,
            Err(error) => {
                tracing::warn!(error = %error, retry_in_ms = delay.as_millis() as u64, "cannot listen for new events");
                tokio::select! {
                    _ = &mut stop => return,
                    () = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(MAX_RECONNECT_DELAY);
                continue;
            }
        };
        drop(pool);
        delay = Duration::from_millis(100);
        // Commits while we were not listening sent notifications nobody heard.
        if let Some(inner) = hub.upgrade() {
            inner.wake_all();
        }
        loop {
            let received = tokio::select! {
                _ = &mut stop => return,
                received = listener.try_recv() => received,
            };
            let Some(inner) = hub.upgrade() else { return };
            match received {
                Ok(Some(notification)) => {
                    if let Ok(tenant) = Uuid::parse_str(notification.payload()) {
                        inner.wake(TenantId::from_uuid(tenant));
                    }
                }
                Ok(None) => {
                    tracing::warn!("the event listener lost its connection; reconnecting");
                    break;
                }
                Err(error) => {
                    tracing::warn!(error = %error, "the event listener failed; reconnecting");
                    break;
                }
            }
        }
    }
}

async fn connect(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(EVENTS_CHANNEL).await?;
    Ok(listener)
}
