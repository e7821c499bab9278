//! What every part of the application shares at run time: the pools and their admission, the
//! timeouts, the metrics, the data keys, the write routes, the live feeds and the wake-up
//! sender. Built once by [`App::build`](super::App::build); the command path and the reads
//! hold it behind an `Arc`.

use super::admission::{self, Admission, Slot};
use super::{AppError, Caller, Timeouts, feed, route};
use crate::crypto::Keyring;
use crate::domain::TenantId;
use crate::metrics::Metrics;
use crate::store::Notifier;
use sqlx::PgPool;
use std::sync::Arc;

pub struct Runtime {
    pub(super) pool: PgPool,
    /// Commands and reads: each takes a slot before a connection of `pool`.
    pub(super) admission: Arc<Admission>,
    /// Reports, rebuilds and exports: whole-log reads, on connections of their own that the
    /// command path never waits for, with their own (smaller) shares.
    pub(super) heavy_pool: PgPool,
    pub(super) heavy_admission: Arc<Admission>,
    pub(super) timeouts: Timeouts,
    pub(super) metrics: Arc<Metrics>,
    /// Reads and makes trainees' data keys ([`crate::crypto`]).
    pub(super) keys: Keyring,
    /// On Citus, where each tenant's writes (and a rebuild's load) go ([`route`]).
    pub(super) routes: route::Routes,
    /// Live events, read once per tenant for all its subscriptions ([`feed`]).
    pub(super) feeds: Arc<feed::Feeds>,
    pub(super) notifier: Notifier,
}

impl Runtime {
    /// A slot for one command or read of the caller's tenant ([`admission`]).
    pub(super) async fn admit(&self, caller: &Caller) -> Result<Slot, AppError> {
        self.admission
            .enter(caller.tenant())
            .await
            .map_err(|refusal| self.refused(refusal, "main", "requests"))
    }

    /// A slot for one report, rebuild or export of the caller's tenant.
    pub(super) async fn admit_heavy(&self, caller: &Caller) -> Result<Slot, AppError> {
        self.heavy_admission
            .enter(caller.tenant())
            .await
            .map_err(|refusal| self.refused(refusal, "report", "reports and exports"))
    }

    /// Counts a refused slot of `pool` and says so to the caller.
    pub(super) fn refused(&self, refusal: admission::Refusal, pool: &str, what: &str) -> AppError {
        self.metrics
            .pools
            .admission_refused
            .with_label_values(&[pool, refusal.label()])
            .inc();
        AppError::not_admitted(refusal, what)
    }

    /// The application's metrics, for the HTTP layer to count requests in.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The metrics in Prometheus' text format, with the pools' and queues' gauges read now.
    pub fn render_metrics(&self) -> String {
        let metrics = &self.metrics;
        let pools = [
            ("main", &self.pool, &self.admission),
            ("report", &self.heavy_pool, &self.heavy_admission),
        ];
        for (name, pool, admission) in pools {
            let (size, idle) = (pool.size() as i64, pool.num_idle() as i64);
            let max = i64::from(pool.options().get_max_connections());
            let connections =
                |state: &str| metrics.pools.connections.with_label_values(&[name, state]);
            connections("in_use").set(size - idle);
            connections("idle").set(idle);
            metrics
                .pools
                .connections_max
                .with_label_values(&[name])
                .set(max);
            let (running, waiting) = admission.load();
            let gauge = |family: &prometheus::IntGaugeVec, value: usize| {
                family.with_label_values(&[name]).set(value as i64)
            };
            gauge(&metrics.pools.admission_running, running);
            gauge(&metrics.pools.admission_waiting, waiting);
        }
        metrics.render()
    }

    /// Commands and reads admitted since the start: each read is one statement, so the
    /// difference over a request is what it cost the database (for tests and operators).
    pub fn admitted(&self) -> u64 {
        self.admission.admitted()
    }

    /// Work running and queued: `(commands and reads, reports and exports)`, each
    /// `(running, queued)`.
    pub fn load(&self) -> ((usize, usize), (usize, usize)) {
        (self.admission.load(), self.heavy_admission.load())
    }

    /// The tenant's open subscriptions, and the feeds running (one per tenant with any).
    pub fn live_load(&self, tenant: TenantId) -> (usize, usize) {
        (
            self.feeds.open_subscriptions(tenant),
            self.feeds.feeds_running(),
        )
    }

    /// Subscriptions (of every tenant) that have caught up and wait for new events: one
    /// committed from now on reaches them live.
    pub fn live_subscriptions(&self) -> usize {
        self.feeds.live_subscriptions()
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}
