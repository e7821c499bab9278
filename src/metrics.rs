//! The server's Prometheus metrics: one registry per [`crate::app::App`], rendered at
//! `GET /metrics` in the text exposition format.
//!
//! Names and units follow Prometheus conventions (`_total` counters, `_seconds` histograms).
//! Every label's values come from a set fixed by the code or the configuration: routes, the
//! schema's root fields, command types, error codes, pools. No label carries a tenant, a caller
//! or client text, so the number of series does not grow with use. Why the `prometheus` crate
//! and a registry per application: docs/decisions/0016-metrics-registry-per-app.md.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use std::time::Duration;

/// Latency buckets, in seconds: from sub-millisecond reads to the command timeout.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Replays run from milliseconds (a small tenant) to minutes (the report timeout).
const REPLAY_BUCKETS: &[f64] = &[0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0];
/// Commands per group-commit batch.
const BATCH_BUCKETS: &[f64] = &[2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0];
/// From an event's commit to the live feed reading it.
const LAG_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// Every metric family of the server, registered in one [`Registry`].
pub struct Metrics {
    registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
    pub graphql_operations: IntCounterVec,
    pub graphql_duration: HistogramVec,
    pub commands: IntCounterVec,
    pub command_duration: HistogramVec,
    pub group_commit_batches: IntCounter,
    pub group_commit_batch_size: Histogram,
    /// Writes that joined a batch and were appended by it.
    pub group_commit_batched_writes: IntCounter,
    /// Writes a batch refused (a conflict, a unique rule), each answered as if alone.
    pub group_commit_refused_writes: IntCounter,
    /// Batches that failed as a whole; their writes were then written one by one.
    pub group_commit_failed_batches: IntCounter,
    pub db_connections: IntGaugeVec,
    pub db_connections_max: IntGaugeVec,
    pub admission_running: IntGaugeVec,
    pub admission_waiting: IntGaugeVec,
    pub admission_refused: IntCounterVec,
    pub subscriptions_open: IntGauge,
    pub events_delivered: IntCounter,
    pub feed_lag: Histogram,
    pub replay_events: IntCounterVec,
    pub replay_duration: HistogramVec,
    pub export_bytes: IntCounterVec,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let metric = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(metric.clone()))
                .expect("unique metric");
            metric
        };
        let plain_counter = |name: &str, help: &str| {
            let metric = IntCounter::new(name, help).expect("valid metric");
            registry
                .register(Box::new(metric.clone()))
                .expect("unique metric");
            metric
        };
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            let metric = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(metric.clone()))
                .expect("unique metric");
            metric
        };
        let histogram = |name: &str, help: &str, buckets: &[f64], labels: &[&str]| {
            let options = HistogramOpts::new(name, help).buckets(buckets.to_vec());
            let metric = HistogramVec::new(options, labels).expect("valid metric");
            registry
                .register(Box::new(metric.clone()))
                .expect("unique metric");
            metric
        };
        let plain_histogram = |name: &str, help: &str, buckets: &[f64]| {
            let options = HistogramOpts::new(name, help).buckets(buckets.to_vec());
            let metric = Histogram::with_opts(options).expect("valid metric");
            registry
                .register(Box::new(metric.clone()))
                .expect("unique metric");
            metric
        };
        let subscriptions_open = IntGauge::new(
            "coursetrail_subscriptions_open",
            "Live `events` subscriptions open.",
        )
        .expect("valid metric");
        registry
            .register(Box::new(subscriptions_open.clone()))
            .expect("unique metric");
        let metrics = Self {
            http_requests: counter(
                "coursetrail_http_requests_total",
                "HTTP requests answered, by route and status.",
                &["route", "status"],
            ),
            http_duration: histogram(
                "coursetrail_http_request_duration_seconds",
                "Time to answer an HTTP request (to the upgrade, for WebSockets; to the first byte, for exports).",
                LATENCY_BUCKETS,
                &["route"],
            ),
            graphql_operations: counter(
                "coursetrail_graphql_operations_total",
                "GraphQL operations run, by operation (type and root field) and outcome (ok or the first error code).",
                &["operation", "outcome"],
            ),
            graphql_duration: histogram(
                "coursetrail_graphql_operation_duration_seconds",
                "Time to run a GraphQL query or mutation.",
                LATENCY_BUCKETS,
                &["operation"],
            ),
            commands: counter(
                "coursetrail_commands_total",
                "Commands run after authorization, by type and outcome (ok or the error code).",
                &["command", "outcome"],
            ),
            command_duration: histogram(
                "coursetrail_command_duration_seconds",
                "Time to run a command, queueing for a slot included.",
                LATENCY_BUCKETS,
                &["command"],
            ),
            group_commit_batches: plain_counter(
                "coursetrail_group_commit_batches_total",
                "Group-commit batches (two writes or more) that committed.",
            ),
            group_commit_batch_size: plain_histogram(
                "coursetrail_group_commit_batch_size",
                "Writes per committed group-commit batch.",
                BATCH_BUCKETS,
            ),
            group_commit_batched_writes: plain_counter(
                "coursetrail_group_commit_batched_writes_total",
                "Writes appended by group-commit batches.",
            ),
            group_commit_refused_writes: plain_counter(
                "coursetrail_group_commit_refused_writes_total",
                "Writes a batch refused (a conflict or a unique rule), answered as if alone.",
            ),
            group_commit_failed_batches: plain_counter(
                "coursetrail_group_commit_failed_batches_total",
                "Batches that failed as a whole; their writes were then written one by one.",
            ),
            db_connections: gauge(
                "coursetrail_db_connections",
                "Database connections of a pool, by state (in_use, idle).",
                &["pool", "state"],
            ),
            db_connections_max: gauge(
                "coursetrail_db_connections_max",
                "The most connections a pool opens.",
                &["pool"],
            ),
            admission_running: gauge(
                "coursetrail_admission_running",
                "Work holding a slot of a pool (a command, a read, a report page).",
                &["pool"],
            ),
            admission_waiting: gauge(
                "coursetrail_admission_waiting",
                "Work queued for a slot of a pool: it waits here, not for a connection.",
                &["pool"],
            ),
            admission_refused: counter(
                "coursetrail_admission_refused_total",
                "Work refused a slot: tenant_busy (RATE_LIMITED) or saturated (OVERLOADED).",
                &["pool", "reason"],
            ),
            subscriptions_open,
            events_delivered: plain_counter(
                "coursetrail_events_delivered_total",
                "Events sent to live subscribers.",
            ),
            feed_lag: plain_histogram(
                "coursetrail_feed_lag_seconds",
                "From an event's commit to the live feed reading it.",
                LAG_BUCKETS,
            ),
            replay_events: counter(
                "coursetrail_replay_events_total",
                "Events replayed from the log, by purpose (report, rebuild).",
                &["purpose"],
            ),
            replay_duration: histogram(
                "coursetrail_replay_duration_seconds",
                "Time a replay took, by purpose.",
                REPLAY_BUCKETS,
                &["purpose"],
            ),
            export_bytes: counter(
                "coursetrail_export_bytes_total",
                "Bytes of audit exports sent, by format.",
                &["format"],
            ),
            registry,
        };
        // Series known in advance start at zero, so a rate or an alert sees them before their
        // first increment (a missing series is not a zero to PromQL).
        for pool in ["main", "report"] {
            for reason in ["tenant_busy", "saturated"] {
                metrics.admission_refused.with_label_values(&[pool, reason]);
            }
        }
        for purpose in ["report", "rebuild"] {
            metrics.replay_events.with_label_values(&[purpose]);
            metrics.replay_duration.with_label_values(&[purpose]);
        }
        for format in ["ndjson", "csv"] {
            metrics.export_bytes.with_label_values(&[format]);
        }
        metrics
    }

    /// One finished command.
    pub fn command(&self, command: &str, outcome: &str, took: Duration) {
        self.commands.with_label_values(&[command, outcome]).inc();
        self.command_duration
            .with_label_values(&[command])
            .observe(took.as_secs_f64());
    }

    /// One finished replay of `events` events.
    pub fn replay(&self, purpose: &str, events: u64, took: Duration) {
        self.replay_events
            .with_label_values(&[purpose])
            .inc_by(events);
        self.replay_duration
            .with_label_values(&[purpose])
            .observe(took.as_secs_f64());
    }

    /// The registry in Prometheus' text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        let encoder = TextEncoder::new();
        // Encoding into memory fails only on a malformed family, which registration rules out.
        if let Err(error) = encoder.encode(&self.registry.gather(), &mut buffer) {
            tracing::error!(%error, "cannot encode the metrics");
        }
        String::from_utf8(buffer).unwrap_or_default()
    }

    pub const CONTENT_TYPE: &'static str = "text/plain; version=0.0.4; charset=utf-8";
}
