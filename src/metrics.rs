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

/// Registers families in one registry.
struct Families<'a>(&'a Registry);

impl Families<'_> {
    fn add<M: prometheus::core::Collector + Clone + 'static>(&self, metric: M) -> M {
        self.0
            .register(Box::new(metric.clone()))
            .expect("a family is registered once");
        metric
    }

    fn counter(&self, name: &str, help: &str) -> IntCounter {
        self.add(IntCounter::new(name, help).expect("a valid counter"))
    }

    fn counters(&self, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
        self.add(IntCounterVec::new(Opts::new(name, help), labels).expect("valid counters"))
    }

    fn gauge(&self, name: &str, help: &str) -> IntGauge {
        self.add(IntGauge::new(name, help).expect("a valid gauge"))
    }

    fn gauges(&self, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
        self.add(IntGaugeVec::new(Opts::new(name, help), labels).expect("valid gauges"))
    }

    fn histogram(&self, name: &str, help: &str, buckets: &[f64]) -> Histogram {
        let options = HistogramOpts::new(name, help).buckets(buckets.to_vec());
        self.add(Histogram::with_opts(options).expect("a valid histogram"))
    }

    fn histograms(&self, name: &str, help: &str, buckets: &[f64], labels: &[&str]) -> HistogramVec {
        let options = HistogramOpts::new(name, help).buckets(buckets.to_vec());
        self.add(HistogramVec::new(options, labels).expect("valid histograms"))
    }
}

/// HTTP requests by route (the pattern, never the raw path) and status.
pub struct HttpMetrics {
    pub requests: IntCounterVec,
    pub duration: HistogramVec,
}

/// GraphQL operations by type and root field, and outcome (`ok` or the first error's code).
pub struct GraphqlMetrics {
    pub operations: IntCounterVec,
    pub duration: HistogramVec,
}

/// Commands by type and outcome, counted after authorization.
pub struct CommandMetrics {
    pub total: IntCounterVec,
    pub duration: HistogramVec,
}

/// What group commit did (read by tests through `App::group_commit_stats`).
#[derive(Clone)]
pub struct GroupCommitMetrics {
    /// Batches of two writes or more that committed.
    pub batches: IntCounter,
    /// Writes per committed batch.
    pub batch_size: Histogram,
    /// Writes appended by those batches.
    pub batched_writes: IntCounter,
    /// Writes a batch refused (a conflict, a unique rule), each answered as if alone.
    pub refused_writes: IntCounter,
    /// Batches that failed as a whole; their writes were then written one by one.
    pub failed_batches: IntCounter,
}

/// The pools' connections and the admission queues before them, by pool (`main`, `report`).
pub struct PoolMetrics {
    pub connections: IntGaugeVec,
    pub connections_max: IntGaugeVec,
    pub admission_running: IntGaugeVec,
    pub admission_waiting: IntGaugeVec,
    pub admission_refused: IntCounterVec,
}

/// Live subscriptions and their feeds.
pub struct LiveMetrics {
    pub subscriptions_open: IntGauge,
    pub events_delivered: IntCounter,
    pub feed_lag: Histogram,
}

/// Replays of the log, by purpose (`report`, `rebuild`).
pub struct ReplayMetrics {
    pub events: IntCounterVec,
    pub duration: HistogramVec,
}

/// Every metric family of the server, registered in one [`Registry`].
pub struct Metrics {
    registry: Registry,
    pub http: HttpMetrics,
    pub graphql: GraphqlMetrics,
    pub commands: CommandMetrics,
    pub group_commit: GroupCommitMetrics,
    pub pools: PoolMetrics,
    pub live: LiveMetrics,
    pub replay: ReplayMetrics,
    /// Bytes of audit exports produced for clients, by format.
    pub export_bytes: IntCounterVec,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl HttpMetrics {
    fn register(f: &Families) -> Self {
        Self {
            requests: f.counters(
                "coursetrail_http_requests_total",
                "HTTP requests answered, by route and status.",
                &["route", "status"],
            ),
            duration: f.histograms(
                "coursetrail_http_request_duration_seconds",
                "Time to answer an HTTP request (to the upgrade, for WebSockets; to the first byte, for exports).",
                LATENCY_BUCKETS,
                &["route"],
            ),
        }
    }
}

impl GraphqlMetrics {
    fn register(f: &Families) -> Self {
        Self {
            operations: f.counters(
                "coursetrail_graphql_operations_total",
                "GraphQL operations run, by operation (type and root field) and outcome (ok or the first error code).",
                &["operation", "outcome"],
            ),
            duration: f.histograms(
                "coursetrail_graphql_operation_duration_seconds",
                "Time to run a GraphQL query or mutation.",
                LATENCY_BUCKETS,
                &["operation"],
            ),
        }
    }
}

impl CommandMetrics {
    fn register(f: &Families) -> Self {
        Self {
            total: f.counters(
                "coursetrail_commands_total",
                "Commands run after authorization, by type and outcome (ok or the error code).",
                &["command", "outcome"],
            ),
            duration: f.histograms(
                "coursetrail_command_duration_seconds",
                "Time to run a command, queueing for a slot included.",
                LATENCY_BUCKETS,
                &["command"],
            ),
        }
    }
}

impl GroupCommitMetrics {
    fn register(f: &Families) -> Self {
        Self {
            batches: f.counter(
                "coursetrail_group_commit_batches_total",
                "Group-commit batches (two writes or more) that committed.",
            ),
            batch_size: f.histogram(
                "coursetrail_group_commit_batch_size",
                "Writes per committed group-commit batch.",
                BATCH_BUCKETS,
            ),
            batched_writes: f.counter(
                "coursetrail_group_commit_batched_writes_total",
                "Writes appended by group-commit batches.",
            ),
            refused_writes: f.counter(
                "coursetrail_group_commit_refused_writes_total",
                "Writes a batch refused (a conflict or a unique rule), answered as if alone.",
            ),
            failed_batches: f.counter(
                "coursetrail_group_commit_failed_batches_total",
                "Batches that failed as a whole; their writes were then written one by one.",
            ),
        }
    }
}

impl PoolMetrics {
    fn register(f: &Families) -> Self {
        let metrics = Self {
            connections: f.gauges(
                "coursetrail_db_connections",
                "Database connections of a pool, by state (in_use, idle).",
                &["pool", "state"],
            ),
            connections_max: f.gauges(
                "coursetrail_db_connections_max",
                "The most connections a pool opens.",
                &["pool"],
            ),
            admission_running: f.gauges(
                "coursetrail_admission_running",
                "Work holding a slot of a pool (a command, a read, a report page).",
                &["pool"],
            ),
            admission_waiting: f.gauges(
                "coursetrail_admission_waiting",
                "Work queued for a slot of a pool: it waits here, not for a connection.",
                &["pool"],
            ),
            admission_refused: f.counters(
                "coursetrail_admission_refused_total",
                "Work refused a slot: tenant_busy (RATE_LIMITED) or saturated (OVERLOADED).",
                &["pool", "reason"],
            ),
        };
        // Series known in advance start at zero, so a rate or an alert sees them before their
        // first increment (a missing series is not a zero to PromQL).
        for pool in ["main", "report"] {
            for reason in ["tenant_busy", "saturated"] {
                metrics.admission_refused.with_label_values(&[pool, reason]);
            }
        }
        metrics
    }
}

impl LiveMetrics {
    fn register(f: &Families) -> Self {
        Self {
            subscriptions_open: f.gauge(
                "coursetrail_subscriptions_open",
                "Live `events` subscriptions open.",
            ),
            events_delivered: f.counter(
                "coursetrail_events_delivered_total",
                "Events sent to live subscribers.",
            ),
            feed_lag: f.histogram(
                "coursetrail_feed_lag_seconds",
                "From an event's commit to the live feed reading it.",
                LAG_BUCKETS,
            ),
        }
    }
}

impl ReplayMetrics {
    fn register(f: &Families) -> Self {
        let metrics = Self {
            events: f.counters(
                "coursetrail_replay_events_total",
                "Events replayed from the log, by purpose (report, rebuild).",
                &["purpose"],
            ),
            duration: f.histograms(
                "coursetrail_replay_duration_seconds",
                "Time a replay took, by purpose.",
                REPLAY_BUCKETS,
                &["purpose"],
            ),
        };
        for purpose in ["report", "rebuild"] {
            metrics.events.with_label_values(&[purpose]);
            metrics.duration.with_label_values(&[purpose]);
        }
        metrics
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let f = Families(&registry);
        let export_bytes = f.counters(
            "coursetrail_export_bytes_total",
            "Bytes of audit exports produced for clients, by format.",
            &["format"],
        );
        for format in ["ndjson", "csv", "xapi"] {
            export_bytes.with_label_values(&[format]);
        }
        Self {
            http: HttpMetrics::register(&f),
            graphql: GraphqlMetrics::register(&f),
            commands: CommandMetrics::register(&f),
            group_commit: GroupCommitMetrics::register(&f),
            pools: PoolMetrics::register(&f),
            live: LiveMetrics::register(&f),
            replay: ReplayMetrics::register(&f),
            export_bytes,
            registry,
        }
    }

    /// One finished command.
    pub fn command(&self, command: &str, outcome: &str, took: Duration) {
        self.commands
            .total
            .with_label_values(&[command, outcome])
            .inc();
        self.commands
            .duration
            .with_label_values(&[command])
            .observe(took.as_secs_f64());
    }

    /// One finished replay of `events` events.
    pub fn replay(&self, purpose: &str, events: u64, took: Duration) {
        self.replay
            .events
            .with_label_values(&[purpose])
            .inc_by(events);
        self.replay
            .duration
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
