//! Many idle subscribers (`--idle-sockets N`): N WebSockets of one tenant, each initialised
//! with its own admin token and holding one live `events` subscription, then left idle. It
//! prints what they cost the server (resident memory per socket, from `/proc`), then the
//! latency of live delivery to all of them: a few commands, each event timed from just before
//! its command was sent to its arrival on every socket.
//!
//! The server child gets limits that let N subscribers in (`SUBSCRIPTIONS_PER_TENANT`,
//! `HTTP_MAX_CONNECTIONS`) and delivery pacing that does not spread N deliveries over seconds
//! (`SUBSCRIPTION_EVENTS_PER_SECOND`): this measures the sockets, not the limits.

use super::Args;
use super::client::{Client, provision};
use super::common::{self, ms};
use super::env::Environment;
use super::sockets::{self, Socket};
use anyhow::bail;
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

/// Sockets opened at once while connecting.
const OPENING_AT_ONCE: usize = 128;
/// Commands whose events are timed to every subscriber, and the pause between them.
const TIMED_EVENTS: usize = 10;
const BETWEEN_EVENTS: Duration = Duration::from_millis(300);

const SUBSCRIBE: &str =
    "subscription($after: Position) { events(afterPosition: $after) { position } }";
const CREATE_COURSE: &str =
    "mutation($input: CreateCourseInput!) { createCourse(input: $input) { position } }";

/// The server settings the scenario needs for `sockets` subscribers.
pub fn server_settings(sockets: usize) -> Vec<(&'static str, String)> {
    vec![
        ("SUBSCRIPTIONS_PER_TENANT", (sockets + 100).to_string()),
        ("HTTP_MAX_CONNECTIONS", (sockets + 1_000).to_string()),
        (
            "SUBSCRIPTION_EVENTS_PER_SECOND",
            (sockets * 100).to_string(),
        ),
    ]
}

pub async fn idle_sockets(args: &Args, env: &Environment) -> anyhow::Result<()> {
    let count = args.idle_sockets;
    println!(
        "coursetrail idle sockets: {count} WebSockets of one tenant, one live subscription each"
    );
    let client = Client::new(&env.url, 4)?;
    let tenant = provision(env, 1, &client).await?.remove(0);
    let head: i64 =
        sqlx::query_scalar("SELECT last_position FROM tenant_heads WHERE tenant_id = $1")
            .bind(tenant.id.as_uuid())
            .fetch_one(&env.pool)
            .await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = env.server_rss().unwrap_or(0);
    let url = env.url.replacen("http://", "ws://", 1) + "/ws";
    let day = Duration::from_secs(24 * 3600);
    let started = Instant::now();
    let opened: Vec<Result<Socket, String>> = futures_util::stream::iter(0..count)
        .map(|_| {
            let token = env.tokens.admin(tenant.id, day);
            let url = url.clone();
            async move { open(&url, &token.map_err(|e| e.to_string())?, head - 1).await }
        })
        .buffer_unordered(OPENING_AT_ONCE)
        .collect()
        .await;
    let opening = started.elapsed();
    let mut failed: BTreeMap<String, u64> = BTreeMap::new();
    let mut live = Vec::with_capacity(count);
    for socket in opened {
        match socket {
            Ok(socket) => live.push(socket),
            Err(code) => *failed.entry(code).or_default() += 1,
        }
    }
    if live.is_empty() {
        bail!("no socket could subscribe: {failed:?}");
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = env.server_rss().unwrap_or(0);
    let per_socket = after.saturating_sub(before) as f64 / live.len() as f64;
    println!(
        "  {} subscribed in {:.1} s; refused or failed: {failed:?}",
        live.len(),
        opening.as_secs_f64()
    );
    println!(
        "  server RSS: {:.1} MB before, {:.1} MB with the sockets open: {:.1} KiB per socket (target ≤ 16 KiB; {count} sockets < 200 MB)",
        before as f64 / 1_048_576.0,
        after as f64 / 1_048_576.0,
        per_socket / 1024.0,
    );
    live_delivery(&client, &tenant.admin, live).await
}

/// Connects, initialises and subscribes after `after`, and waits for the catch-up event that
/// tells the subscription is live.
async fn open(url: &str, token: &str, after: i64) -> Result<Socket, String> {
    let mut socket = sockets::connect(url, token).await?;
    let subscribe = json!({"id": "live", "type": "subscribe",
                           "payload": {"query": SUBSCRIBE, "variables": {"after": after}}});
    socket
        .send(Message::text(subscribe.to_string()))
        .await
        .map_err(|_| "CLOSED 1006".to_owned())?;
    let until = tokio::time::Instant::now() + Duration::from_secs(30);
    let first = sockets::receive(&mut socket, until).await?;
    match position_of(&first) {
        Some(_) => Ok(socket),
        None => Err(format!("NOT_SUBSCRIBED ({first})")),
    }
}

fn position_of(text: &str) -> Option<i64> {
    let message: Value = serde_json::from_str(text).ok()?;
    let position = &message["payload"]["data"]["events"]["position"];
    position
        .as_i64()
        .or_else(|| position.as_str().and_then(|p| p.parse().ok()))
}

/// Sends [`TIMED_EVENTS`] commands and times each event's arrival on every socket.
async fn live_delivery(client: &Client, admin: &str, live: Vec<Socket>) -> anyhow::Result<()> {
    let sockets = live.len();
    let sent: Arc<Mutex<BTreeMap<i64, Instant>>> = Arc::default();
    let latency = Arc::new(Mutex::new(common::histogram_up_to(Duration::from_secs(60))));
    let expected = TIMED_EVENTS;
    let readers: Vec<_> = live
        .into_iter()
        .map(|socket| tokio::spawn(read(socket, expected, sent.clone(), latency.clone())))
        .collect();
    for i in 0..TIMED_EVENTS {
        let before = Instant::now();
        let variables = json!({"input": {"code": format!("IDLE-{i}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]),
                                         "title": "Timed", "passingScore": 50}});
        let reply = client.mutate(admin, CREATE_COURSE, variables).await;
        let position = reply
            .data_str(&["createCourse", "position"])
            .and_then(|p| p.parse().ok())
            .or_else(|| reply.data["createCourse"]["position"].as_i64());
        match position {
            Some(position) => {
                sent.lock().unwrap().insert(position, before);
            }
            None => bail!("createCourse failed: {:?}", reply.code),
        }
        tokio::time::sleep(BETWEEN_EVENTS).await;
    }
    let mut delivered = 0u64;
    for reader in readers {
        delivered += reader.await?;
    }
    let latency = latency.lock().unwrap();
    println!(
        "  live delivery to every socket: {delivered} of {} events arrived; command sent → event received p50 {} p99 {} max {} (target p99 ≤ 250 ms)",
        sockets * TIMED_EVENTS,
        ms(latency.value_at_quantile(0.50)),
        ms(latency.value_at_quantile(0.99)),
        ms(latency.max()),
    );
    Ok(())
}

/// Reads `expected` events from one socket (or until it stays silent for 10 s), recording
/// each one's latency from its command's sending; returns how many arrived.
async fn read(
    mut socket: Socket,
    expected: usize,
    sent: Arc<Mutex<BTreeMap<i64, Instant>>>,
    latency: Arc<Mutex<Histogram<u64>>>,
) -> u64 {
    let mut arrived = 0u64;
    while arrived < expected as u64 {
        let until = tokio::time::Instant::now() + Duration::from_secs(10);
        let Ok(text) = sockets::receive(&mut socket, until).await else {
            break;
        };
        let Some(position) = position_of(&text) else {
            continue;
        };
        let now = Instant::now();
        // A command's event can arrive before its sender recorded the position: wait for it.
        let sent_at = loop {
            if let Some(at) = sent.lock().unwrap().get(&position) {
                break Some(*at);
            }
            if now.elapsed() > Duration::from_secs(10) {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        if let Some(at) = sent_at {
            common::record_micros(&mut latency.lock().unwrap(), now - at);
            arrived += 1;
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), socket.close(None)).await;
    arrived
}
