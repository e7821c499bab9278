//! Sending the new-event wake-ups after commit (the listening side is [`super::live`]).

use super::EVENTS_CHANNEL;
use crate::domain::TenantId;

/// Sends the new-event wake-ups (`pg_notify` on [`EVENTS_CHANNEL`], payload: the tenant id)
/// after the appends committed, from one background task.
///
/// Why not inside the append's transaction, as a `NOTIFY` there would be delivered exactly at
/// COMMIT: PostgreSQL serialises the commits of every transaction that notified, cluster-wide,
/// on one lock held until the commit record is flushed (`PreCommit_Notify`), so with durable
/// commits every append of every tenant would queue behind one fsync at a time. A notification
/// is only a wake-up hint (listeners read the events by position), so it is sent right after
/// COMMIT instead, coalescing the tenants whose appends committed while the previous one was
/// on its way or within [`NOTIFY_INTERVAL`]: one statement, whose commit does not wait for the
/// WAL flush (see `send_notifications`). It runs on its own connection and
/// touches no distributed table, so on Citus it runs on the coordinator, where listeners are
/// (rule 9). If the process dies between a COMMIT and its notification, that hint is lost;
/// listeners must therefore also catch up by position when they (re)connect, which they must
/// do anyway.
#[derive(Clone)]
pub struct Notifier {
    sender: tokio::sync::mpsc::UnboundedSender<TenantId>,
}

impl Notifier {
    /// Starts the sending task on the current tokio runtime.
    pub fn spawn(pool: sqlx::PgPool) -> Self {
        let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(send_notifications(pool, receiver));
        Self { sender }
    }

    /// Queues the wake-up for an append of `tenant` that has committed.
    pub fn committed(&self, tenant: TenantId) {
        // Fails only when the task is gone (the runtime is shutting down): nobody to wake then.
        let _ = self.sender.send(tenant);
    }
}

/// The least time between two wake-up statements. Under load the tenants that commit meanwhile
/// share the next statement (at most 200 a second); a lone commit is announced at once.
const NOTIFY_INTERVAL: std::time::Duration = std::time::Duration::from_millis(5);

async fn send_notifications(
    pool: sqlx::PgPool,
    mut receiver: tokio::sync::mpsc::UnboundedReceiver<TenantId>,
) {
    let mut batch: Vec<TenantId> = Vec::new();
    while receiver.recv_many(&mut batch, 1024).await > 0 {
        let started = tokio::time::Instant::now();
        batch.sort_unstable_by_key(|t| t.as_uuid());
        batch.dedup();
        let tenants: Vec<String> = batch.iter().map(ToString::to_string).collect();
        // A transaction that notifies is given an xid, so its commit is flushed like a write's
        // unless told otherwise. A wake-up is a hint about events already durable: losing it
        // in a crash loses nothing, so its commit does not wait for the flush.
        let sent = sqlx::query(
            "SELECT pg_notify($1, t) FROM unnest($2::text[]) AS t, \
             (SELECT set_config('synchronous_commit', 'off', true)) AS durability",
        )
        .bind(EVENTS_CHANNEL)
        .bind(&tenants)
        .execute(&pool)
        .await;
        if let Err(error) = sent {
            tracing::warn!(error = %error, tenants = tenants.len(), "cannot send new-event wake-ups");
        }
        batch.clear();
        tokio::time::sleep_until(started + NOTIFY_INTERVAL).await;
    }
}
