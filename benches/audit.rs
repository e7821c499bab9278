//! The audit benchmark: `cargo bench --bench audit [-- --events N --others M --tenants K]`.
//!
//! On a private PostgreSQL cluster of its own, with the server in this process, over HTTP and
//! WebSocket like a real client:
//! 1. `auditTrail` page latency (first page, a page deep in the history, a trainee's page) for
//!    one tenant holding `--events` events;
//! 2. the same after adding `--others` events spread over `--tenants` other tenants, and the
//!    ratio (target ≤ 1.2: a tenant's pages do not slow down with other tenants' data);
//! 3. live latency from commit to subscriber delivery under moderate write load (p50, p99;
//!    target p99 < 50 ms), with several subscribers sharing the one listener;
//! 4. the exports' peak RSS (this process: server and a client that discards the bytes): the
//!    audit export (NDJSON, CSV) and the xAPI statements export, against the same baseline.
//!    `--exports-only` seeds `--events` and measures only this (target: peak < 64 MiB).
//!
//! Seeding is a few big `INSERT … SELECT generate_series` statements, not commands: it is the
//! read side being measured. Percentiles come from hdrhistogram (microseconds, printed in
//! milliseconds).

use clap::Parser;
use common::{PrivateDatabase, Tokens};
use coursetrail::auth::{JwtSettings, KeySource, TokenVerifier};
use coursetrail::domain::TenantId;
use coursetrail::pgcluster::PrivateCluster;
use coursetrail::server;
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use sqlx::PgPool;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use uuid::Uuid;

#[path = "common/mod.rs"]
mod common;

const SECRET: &str = "bench-secret-of-a-reasonable-length-0123456789";
const HOUR: Duration = Duration::from_secs(3600);

#[derive(Parser)]
#[command(about = "coursetrail audit benchmark")]
struct Options {
    /// Events in the measured tenant (`_` may separate digits: 1_000_000).
    #[arg(long, default_value_t = 1_000_000, value_parser = count::<0>)]
    events: u64,
    /// Events added over the other tenants before the pages are measured again.
    #[arg(long, default_value_t = 9_000_000, value_parser = count::<0>)]
    others: u64,
    /// Other tenants the `--others` events are spread over.
    #[arg(long, default_value_t = 48, value_parser = count::<1>)]
    tenants: u64,
    /// Pages timed for each kind of page.
    #[arg(long, default_value_t = 200, value_parser = count::<10>)]
    samples: u64,
    /// How long the writers run in the live measurement, in seconds.
    #[arg(long, default_value_t = 10, value_parser = count::<1>)]
    live_seconds: u64,
    /// Writers in the live measurement (about 25 commands per second each).
    #[arg(long, default_value_t = 4, value_parser = count::<1>)]
    writers: u64,
    /// Subscribers following the live tenant (the first one's deliveries are timed).
    #[arg(long, default_value_t = 8, value_parser = count::<1>)]
    subscribers: u64,
    /// Seed `--events`, then measure only the exports' memory (skip pages, others and live).
    #[arg(long)]
    exports_only: bool,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// A count on the command line, at least `MIN`; `_` may separate digits (`1_000_000`).
fn count<const MIN: u64>(raw: &str) -> Result<u64, String> {
    let value: u64 = raw
        .replace('_', "")
        .parse()
        .map_err(|e| format!("not a count: {e}"))?;
    if value < MIN {
        return Err(format!("must be at least {MIN}"));
    }
    Ok(value)
}

fn main() -> anyhow::Result<()> {
    let options = Options::parse();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(options))
}

async fn run(options: Options) -> anyhow::Result<()> {
    if options.exports_only {
        println!(
            "audit benchmark, exports only: {} events in the measured tenant",
            options.events
        );
    } else {
        println!(
            "audit benchmark: {} events in the measured tenant, {} more over {} other tenants",
            options.events, options.others, options.tenants
        );
    }
    let database = PrivateDatabase::start(PrivateCluster::TEST_SETTINGS, "bench", 32).await?;
    let pool = &database.pool;
    let address = serve(pool).await?;
    let tokens = Tokens::new(SECRET);
    let client = reqwest::Client::new();

    let tenant = common::new_tenant(pool, "measured").await?;
    let token = tokens.admin(tenant, HOUR)?;
    let took = seed(pool, &[tenant], options.events).await?;
    println!(
        "seeded {} events in {:.1} s",
        options.events,
        took.as_secs_f64()
    );
    if options.exports_only {
        export_rss(&client, address, &token, options.events).await?;
        return database.stop().await;
    }
    let trainee = some_trainee(pool, tenant).await?;
    let alone = pages(&client, address, &token, &options, trainee).await?;
    alone.print("alone");

    let started = Instant::now();
    let others = common::new_tenants(pool, options.tenants as usize, "other").await?;
    let per_tenant = options.others / options.tenants;
    seed(pool, &others, per_tenant).await?;
    println!(
        "seeded {} events over {} other tenants in {:.1} s",
        per_tenant * options.tenants,
        options.tenants,
        started.elapsed().as_secs_f64()
    );
    let among = pages(&client, address, &token, &options, trainee).await?;
    among.print("among others");
    println!(
        "ratio (among others / alone, p50): first page {:.2}, deep page {:.2}, trainee page {:.2}  (target <= 1.2)",
        among.first.p50 / alone.first.p50,
        among.deep.p50 / alone.deep.p50,
        among.trainee.p50 / alone.trainee.p50,
    );

    live(&client, address, &tokens, pool, &options).await?;
    export_rss(&client, address, &token, options.events).await?;
    database.stop().await
}

/// The server, in this process, on a free port of 127.0.0.1 (until the process ends).
async fn serve(pool: &PgPool) -> anyhow::Result<SocketAddr> {
    let settings = JwtSettings::new(
        KeySource::Secret(SECRET.into()),
        common::ISSUER,
        common::AUDIENCE,
    );
    let state = server::http_state(
        coursetrail::app::App::new(pool.clone()),
        TokenVerifier::new(&settings)?,
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    tokio::spawn(server::serve_on(listener, state, std::future::pending()));
    Ok(address)
}

/// `per_tenant` events in each of `tenants`, then `ANALYZE`; returns how long that took.
async fn seed(pool: &PgPool, tenants: &[TenantId], per_tenant: u64) -> anyhow::Result<Duration> {
    let started = Instant::now();
    common::seed::seed_events(pool, tenants, per_tenant).await?;
    sqlx::query("ANALYZE events").execute(pool).await?;
    Ok(started.elapsed())
}

async fn some_trainee(pool: &PgPool, tenant: TenantId) -> anyhow::Result<Uuid> {
    Ok(
        sqlx::query_scalar("SELECT trainee_id FROM events WHERE tenant_id = $1 AND position = 1")
            .bind(tenant.as_uuid())
            .fetch_one(pool)
            .await?,
    )
}

/// Median and 99th percentile, in milliseconds.
#[derive(Clone, Copy)]
struct Summary {
    p50: f64,
    p99: f64,
}

impl Summary {
    fn of(histogram: &Histogram<u64>) -> Self {
        Self {
            p50: common::millis(histogram.value_at_quantile(0.50)),
            p99: common::millis(histogram.value_at_quantile(0.99)),
        }
    }
}

struct Pages {
    first: Summary,
    deep: Summary,
    trainee: Summary,
}

impl Pages {
    fn print(&self, label: &str) {
        for (name, s) in [
            ("first page", self.first),
            ("deep page", self.deep),
            ("trainee page", self.trainee),
        ] {
            println!(
                "auditTrail {label:>12}: {name:<12} (100 events) p50 {:6.2} ms  p99 {:6.2} ms",
                s.p50, s.p99
            );
        }
    }
}

const PAGE: &str = "query($pos: Position, $f: AuditFilter) { auditTrail(first: 100, afterPosition: $pos, filter: $f) { \
    edges { cursor node { eventId position streamId type version data recordedAt \
    metadata { actor { id role } commandId correlationId } } } pageInfo { hasNextPage } } }";

async fn pages(
    client: &reqwest::Client,
    address: SocketAddr,
    token: &str,
    options: &Options,
    trainee: Uuid,
) -> anyhow::Result<Pages> {
    let deep = options.events.saturating_sub(1_000);
    let measure = async |variables: Value| -> anyhow::Result<Summary> {
        // Warm up: the first requests pay for plan caching and cold pages.
        for _ in 0..10 {
            graphql(client, address, token, PAGE, variables.clone()).await?;
        }
        let mut latency = common::latency_histogram();
        for _ in 0..options.samples {
            let started = Instant::now();
            let data = graphql(client, address, token, PAGE, variables.clone()).await?;
            common::record_since(&mut latency, started);
            let edges = data["auditTrail"]["edges"].as_array().map_or(0, Vec::len);
            anyhow::ensure!(edges > 0, "an empty page: {data}");
        }
        Ok(Summary::of(&latency))
    };
    Ok(Pages {
        first: measure(json!({ "pos": 0 })).await?,
        deep: measure(json!({ "pos": deep })).await?,
        trainee: measure(json!({ "pos": 0, "f": { "traineeId": trainee } })).await?,
    })
}

async fn graphql(
    client: &reqwest::Client,
    address: SocketAddr,
    token: &str,
    query: &str,
    variables: Value,
) -> anyhow::Result<Value> {
    let body: Value = client
        .post(format!("http://{address}/graphql"))
        .bearer_auth(token)
        .json(&json!({ "query": query, "variables": variables }))
        .send()
        .await?
        .json()
        .await?;
    anyhow::ensure!(body.get("errors").is_none(), "GraphQL errors: {body}");
    Ok(body["data"].clone())
}

/// Commit-to-delivery latency: writers run commands at a moderate pace on a fresh tenant while
/// subscribers follow it live. Measured from the event's `recordedAt` (server time taken before
/// the append, so a little before the commit: an upper bound) to its arrival at a subscriber.
async fn live(
    client: &reqwest::Client,
    address: SocketAddr,
    tokens: &Tokens,
    pool: &PgPool,
    options: &Options,
) -> anyhow::Result<()> {
    let tenant = common::new_tenant(pool, "live").await?;
    let token = tokens.admin(tenant, HOUR)?;
    let stop = Arc::new(AtomicBool::new(false));
    let mut subscribers = Vec::new();
    for i in 0..options.subscribers {
        // Only one subscriber's view is enough for the percentiles; all count deliveries.
        subscribers.push(subscribe(address, &token, i == 0, stop.clone()).await?);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let written = write_for(client, address, &token, options).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let mut delivered = 0;
    let mut latency = common::latency_histogram();
    for subscriber in subscribers {
        let (count, timed) = subscriber.await?;
        delivered += count;
        if let Some(timed) = timed {
            latency.add(&timed)?;
        }
    }
    anyhow::ensure!(
        latency.len() == written,
        "subscriber 0 received {} of {written} events",
        latency.len()
    );
    let s = Summary::of(&latency);
    println!(
        "live: {written} commands in {} s by {} writers ({:.0}/s), {} subscribers ({delivered} deliveries): \
         commit-to-delivery p50 {:.2} ms  p99 {:.2} ms  (target p99 < 50 ms)",
        options.live_seconds,
        options.writers,
        written as f64 / options.live_seconds as f64,
        options.subscribers,
        s.p50,
        s.p99
    );
    Ok(())
}

/// A subscriber to every event of `token`'s tenant, reading until `stop`: its deliveries, and,
/// if `timed`, their commit-to-delivery latencies.
async fn subscribe(
    address: SocketAddr,
    token: &str,
    timed: bool,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<JoinHandle<(u64, Option<Histogram<u64>>)>> {
    let mut request = format!("ws://{address}/graphql/ws").into_client_request()?;
    request
        .headers_mut()
        .insert("sec-websocket-protocol", "graphql-transport-ws".parse()?);
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await?;
    let init = json!({ "type": "connection_init", "payload": { "token": token } });
    socket.send(Message::text(init.to_string())).await?;
    socket.next().await; // connection_ack
    let subscribe = json!({ "id": "1", "type": "subscribe", "payload": {
        "query": "subscription { events { position recordedAt } }" } });
    socket.send(Message::text(subscribe.to_string())).await?;
    Ok(tokio::spawn(async move {
        let mut latency = timed.then(common::latency_histogram);
        let mut count = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let Ok(Some(Ok(Message::Text(text)))) =
                tokio::time::timeout(Duration::from_millis(500), socket.next()).await
            else {
                continue;
            };
            let arrived = chrono::Utc::now();
            let Ok(message) = serde_json::from_str::<Value>(text.as_str()) else {
                continue;
            };
            let recorded = message["payload"]["data"]["events"]["recordedAt"]
                .as_str()
                .and_then(|at| chrono::DateTime::parse_from_rfc3339(at).ok());
            if let Some(recorded) = recorded {
                if let Some(latency) = &mut latency {
                    let micros = (arrived - recorded.with_timezone(&chrono::Utc))
                        .num_microseconds()
                        .unwrap_or(0);
                    latency.saturating_record(u64::try_from(micros).unwrap_or(0).max(1));
                }
                count += 1;
            }
        }
        (count, latency)
    }))
}

/// `--writers` writers creating courses in `token`'s tenant, about 25 a second each, for
/// `--live-seconds`; returns how many commands they sent.
async fn write_for(
    client: &reqwest::Client,
    address: SocketAddr,
    token: &str,
    options: &Options,
) -> anyhow::Result<u64> {
    let written = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(options.live_seconds);
    let mut writers = Vec::new();
    for w in 0..options.writers {
        let (client, token, written) = (client.clone(), token.to_owned(), written.clone());
        writers.push(tokio::spawn(async move {
            let mut i = 0u64;
            while Instant::now() < deadline {
                let code = format!("L{w}-{i}");
                let _ = graphql(
                    &client,
                    address,
                    &token,
                    "mutation($i: CreateCourseInput!) { createCourse(input: $i) { position } }",
                    json!({ "i": { "code": code, "title": "Live", "passingScore": 50 } }),
                )
                .await;
                written.fetch_add(1, Ordering::Relaxed);
                i += 1;
                // Moderate load: about 25 commands per second per writer.
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
        }));
    }
    for writer in writers {
        writer.await?;
    }
    Ok(written.load(Ordering::Relaxed))
}

/// This process's resident set size in KiB (`VmRSS`, or `VmHWM` for the peak so far).
fn rss_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with(field))
                .and_then(|line| line.split_whitespace().nth(1))
                .and_then(|kib| kib.parse().ok())
        })
        .unwrap_or(0)
}

/// Streams exports of 100 000 events and of the whole tenant, discarding the bytes, and samples
/// the RSS meanwhile: constant memory shows as the same peak for both. The xAPI export is
/// measured the same way, one statement per seeded event (all are enrollment events).
async fn export_rss(
    client: &reqwest::Client,
    address: SocketAddr,
    token: &str,
    events: u64,
) -> anyhow::Result<()> {
    for (label, after) in [
        ("100k events", events.saturating_sub(100_000)),
        ("all events", 0),
    ] {
        for format in ["ndjson", "csv", "xapi"] {
            let url = match format {
                "xapi" => format!("http://{address}/xapi/statements?afterPosition={after}"),
                _ => format!("http://{address}/audit/export?format={format}&afterPosition={after}"),
            };
            let before = rss_kib("VmRSS");
            let peak = Arc::new(AtomicU64::new(before));
            let done = Arc::new(AtomicBool::new(false));
            let sampler = {
                let (peak, done) = (peak.clone(), done.clone());
                tokio::spawn(async move {
                    while !done.load(Ordering::Relaxed) {
                        peak.fetch_max(rss_kib("VmRSS"), Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                })
            };
            let started = Instant::now();
            let mut response = client.get(url).bearer_auth(token).send().await?;
            anyhow::ensure!(
                response.status().is_success(),
                "{format}: {}",
                response.status()
            );
            let mut bytes = 0u64;
            let mut records = Records::new(if format == "xapi" {
                "\"stored\":"
            } else {
                "\n"
            });
            while let Some(chunk) = response.chunk().await? {
                bytes += chunk.len() as u64;
                records.count(&chunk);
            }
            done.store(true, Ordering::Relaxed);
            sampler.await?;
            let unit = if format == "xapi" {
                "statements"
            } else {
                "lines"
            };
            println!(
                "export {label:<11} {format:<6}: {} {unit}, {:.0} MiB in {:.1} s; RSS before {} MiB, peak during {} MiB",
                records.seen,
                bytes as f64 / 1048576.0,
                started.elapsed().as_secs_f64(),
                before / 1024,
                peak.load(Ordering::Relaxed) / 1024
            );
        }
    }
    Ok(())
}

/// Counts a marker's occurrences in a body that arrives in chunks (a marker may straddle two).
struct Records {
    marker: &'static [u8],
    carry: Vec<u8>,
    seen: u64,
}

impl Records {
    fn new(marker: &'static str) -> Self {
        Self {
            marker: marker.as_bytes(),
            carry: Vec::new(),
            seen: 0,
        }
    }

    fn count(&mut self, chunk: &[u8]) {
        self.carry.extend_from_slice(chunk);
        let m = self.marker.len();
        self.seen += self.carry.windows(m).filter(|w| *w == self.marker).count() as u64;
        let keep = self.carry.len().min(m - 1);
        self.carry.drain(..self.carry.len() - keep);
    }
}
