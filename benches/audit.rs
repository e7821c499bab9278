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
//! 4. the export's peak RSS (this process: server and a client that discards the bytes).
//!
//! Seeding is a few big `INSERT … SELECT generate_series` statements, not commands: it is the
//! read side being measured.

use coursetrail::auth::{JwtSettings, KeySource, Role, TokenIssuer, TokenVerifier};
use coursetrail::domain::TenantId;
use coursetrail::pgcluster::PrivateCluster;
use coursetrail::{db, server, store};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use sqlx::PgPool;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use uuid::Uuid;

const SECRET: &str = "bench-secret-of-a-reasonable-length-0123456789";

struct Options {
    events: i64,
    others: i64,
    tenants: i64,
    samples: usize,
    live_seconds: u64,
    writers: usize,
    subscribers: usize,
}

fn options() -> anyhow::Result<Options> {
    let mut options = Options {
        events: 1_000_000,
        others: 9_000_000,
        tenants: 48,
        samples: 200,
        live_seconds: 10,
        writers: 4,
        subscribers: 8,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || -> anyhow::Result<i64> {
            let raw = args
                .next()
                .ok_or_else(|| anyhow::anyhow!("{arg} needs a value"))?;
            Ok(raw.replace('_', "").parse()?)
        };
        match arg.as_str() {
            "--events" => options.events = value()?,
            "--others" => options.others = value()?,
            "--tenants" => options.tenants = value()?.max(1),
            "--samples" => options.samples = value()?.max(10) as usize,
            "--live-seconds" => options.live_seconds = value()?.max(1) as u64,
            "--writers" => options.writers = value()?.max(1) as usize,
            "--subscribers" => options.subscribers = value()?.max(1) as usize,
            // cargo bench passes --bench to every bench binary.
            "--bench" => {}
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    Ok(options)
}

fn main() -> anyhow::Result<()> {
    let options = options()?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(options))
}

async fn run(options: Options) -> anyhow::Result<()> {
    println!(
        "audit benchmark: {} events in the measured tenant, {} more over {} other tenants",
        options.events, options.others, options.tenants
    );
    let cluster = PrivateCluster::start_ephemeral().await?;
    let admin = db::connect(&cluster.url("postgres"), 1).await?;
    db::create_database_if_missing(&admin, "bench").await?;
    admin.close().await;
    let pool = db::connect(&cluster.url("bench"), 32).await?;
    db::migrate(&pool).await?;

    let settings = JwtSettings::new(
        KeySource::Secret(SECRET.into()),
        "coursetrail",
        "coursetrail",
    );
    let state = server::http_state(
        coursetrail::app::App::new(pool.clone()),
        TokenVerifier::new(&settings)?,
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    tokio::spawn(server::serve_on(listener, state, std::future::pending()));
    let issuer = TokenIssuer::new(SECRET, "coursetrail", "coursetrail");
    let client = reqwest::Client::new();

    let tenant = new_tenant(&pool, "measured").await?;
    let token = issuer.mint(
        tenant.as_uuid(),
        Uuid::now_v7(),
        Role::Admin,
        Duration::from_secs(3600),
    )?;
    let started = Instant::now();
    seed(&pool, tenant, options.events).await?;
    sqlx::query("ANALYZE events").execute(&pool).await?;
    println!(
        "seeded {} events in {:.1} s",
        options.events,
        started.elapsed().as_secs_f64()
    );
    let trainee = some_trainee(&pool, tenant).await?;

    let alone = pages(&client, address, &token, &options, trainee).await?;
    alone.print("alone");

    let started = Instant::now();
    let per_tenant = options.others / options.tenants;
    for i in 0..options.tenants {
        let other = new_tenant(&pool, &format!("other {i}")).await?;
        seed(&pool, other, per_tenant).await?;
    }
    sqlx::query("ANALYZE events").execute(&pool).await?;
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

    live(&client, address, &issuer, &pool, &options).await?;
    export_rss(&client, address, &token, options.events).await?;
    pool.close().await;
    cluster.stop().await?;
    Ok(())
}

async fn new_tenant(pool: &PgPool, name: &str) -> anyhow::Result<TenantId> {
    let mut tx = pool.begin().await?;
    let tenant = store::create_tenant(&mut tx, name).await?;
    tx.commit().await?;
    Ok(tenant)
}

/// `n` events shaped like real ones: enrollments of five events each, for 2 000 trainees over 50
/// courses, in 500 000-row statements.
async fn seed(pool: &PgPool, tenant: TenantId, n: i64) -> anyhow::Result<()> {
    const CHUNK: i64 = 500_000;
    let mut done = 0;
    while done < n {
        let count = CHUNK.min(n - done);
        let mut conn = pool.acquire().await?;
        sqlx::query("SET synchronous_commit = off")
            .execute(&mut *conn)
            .await?;
        sqlx::query(
            "WITH head AS ( \
                 UPDATE tenant_heads SET last_position = last_position + $2 \
                 WHERE tenant_id = $1 RETURNING last_position - $2 AS base \
             ) \
             INSERT INTO events (tenant_id, stream_id, version, position, event_id, stream_type, \
                 event_type, schema_version, data, recorded_at, actor_id, actor_role, \
                 correlation_id, trainee_id, course_id) \
             SELECT $1, md5($1::text || 'e' || ((base + g - 1) / 5))::uuid, \
                 ((base + g - 1) % 5 + 1)::int, base + g, gen_random_uuid(), 'enrollment', \
                 (ARRAY['CourseRegistered','CourseStarted','TestSubmitted','TestGraded', \
                        'CourseCompleted'])[(base + g - 1) % 5 + 1], 1, \
                 jsonb_build_object('seq', base + g), \
                 now() - interval '1 second' * ($2 - g), \
                 md5($1::text || 'a')::uuid, 'admin', gen_random_uuid(), \
                 md5($1::text || 't' || (((base + g - 1) / 5) % 2000))::uuid, \
                 md5($1::text || 'c' || (((base + g - 1) / 5) % 50))::uuid \
             FROM head, generate_series(1, $2) AS g",
        )
        .bind(tenant.as_uuid())
        .bind(count)
        .execute(&mut *conn)
        .await?;
        done += count;
    }
    Ok(())
}

async fn some_trainee(pool: &PgPool, tenant: TenantId) -> anyhow::Result<Uuid> {
    Ok(
        sqlx::query_scalar("SELECT trainee_id FROM events WHERE tenant_id = $1 AND position = 1")
            .bind(tenant.as_uuid())
            .fetch_one(pool)
            .await?,
    )
}

#[derive(Clone, Copy)]
struct Summary {
    p50: f64,
    p99: f64,
}

/// Nearest-rank percentiles of a few hundred samples, in milliseconds.
fn summarise(mut samples: Vec<f64>) -> Summary {
    samples.sort_by(f64::total_cmp);
    let rank = |p: f64| {
        let index = ((p * samples.len() as f64).ceil() as usize).clamp(1, samples.len()) - 1;
        samples[index]
    };
    Summary {
        p50: rank(0.50),
        p99: rank(0.99),
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
    let deep = (options.events - 1_000).max(0);
    let measure = async |variables: Value| -> anyhow::Result<Summary> {
        // Warm up: the first requests pay for plan caching and cold pages.
        for _ in 0..10 {
            graphql(client, address, token, PAGE, variables.clone()).await?;
        }
        let mut samples = Vec::with_capacity(options.samples);
        for _ in 0..options.samples {
            let started = Instant::now();
            let data = graphql(client, address, token, PAGE, variables.clone()).await?;
            samples.push(started.elapsed().as_secs_f64() * 1000.0);
            let edges = data["auditTrail"]["edges"].as_array().map_or(0, Vec::len);
            anyhow::ensure!(edges > 0, "an empty page: {data}");
        }
        Ok(summarise(samples))
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
    issuer: &TokenIssuer,
    pool: &PgPool,
    options: &Options,
) -> anyhow::Result<()> {
    let tenant = new_tenant(pool, "live").await?;
    let token = issuer.mint(
        tenant.as_uuid(),
        Uuid::now_v7(),
        Role::Admin,
        Duration::from_secs(3600),
    )?;
    let latencies = Arc::new(tokio::sync::Mutex::new(Vec::<f64>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut subscribers = Vec::new();
    for i in 0..options.subscribers {
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
        let (latencies, stop) = (latencies.clone(), stop.clone());
        subscribers.push(tokio::spawn(async move {
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
                    let ms = (arrived - recorded.with_timezone(&chrono::Utc))
                        .num_microseconds()
                        .unwrap_or(0) as f64
                        / 1000.0;
                    // Only one subscriber's view is enough for the percentiles; all count.
                    if i == 0 {
                        latencies.lock().await.push(ms);
                    }
                    count += 1;
                }
            }
            count
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let written = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(options.live_seconds);
    let mut writers = Vec::new();
    for w in 0..options.writers {
        let (client, token, written) = (client.clone(), token.clone(), written.clone());
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
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let mut delivered = 0;
    for subscriber in subscribers {
        delivered += subscriber.await?;
    }
    let samples = std::mem::take(&mut *latencies.lock().await);
    let written = written.load(Ordering::Relaxed);
    anyhow::ensure!(
        samples.len() as u64 == written,
        "subscriber 0 received {} of {written} events",
        samples.len()
    );
    let s = summarise(samples);
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
/// the RSS meanwhile: constant memory shows as the same peak for both.
async fn export_rss(
    client: &reqwest::Client,
    address: SocketAddr,
    token: &str,
    events: i64,
) -> anyhow::Result<()> {
    for (label, after) in [
        ("100k events", (events - 100_000).max(0)),
        ("all events", 0),
    ] {
        for format in ["ndjson", "csv"] {
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
            let mut response = client
                .get(format!(
                    "http://{address}/audit/export?format={format}&afterPosition={after}"
                ))
                .bearer_auth(token)
                .send()
                .await?;
            let (mut bytes, mut lines) = (0u64, 0u64);
            while let Some(chunk) = response.chunk().await? {
                bytes += chunk.len() as u64;
                lines += chunk.iter().filter(|b| **b == b'\n').count() as u64;
            }
            done.store(true, Ordering::Relaxed);
            sampler.await?;
            println!(
                "export {label:<11} {format:<6}: {lines} lines, {:.0} MiB in {:.1} s; RSS before {} MiB, peak during {} MiB",
                bytes as f64 / 1048576.0,
                started.elapsed().as_secs_f64(),
                before / 1024,
                peak.load(Ordering::Relaxed) / 1024
            );
        }
    }
    Ok(())
}
