//! The `subscriptions` flood of the noisy-neighbour scenario: tenant A's WebSockets, each
//! with its `events` subscriptions open before A's writers start, then read until the window
//! ends, tallying what was accepted, refused, ended early and delivered.
//!
//! A's sockets speak `graphql-transport-ws` directly (tokio-tungstenite): the subscriptions
//! are opened one after the other on each socket, each after the previous one was answered,
//! and the readers run on the flood's runtime ([`super::noisy`]), beside B's measurement.

use super::client::Tenant;
use super::env::Environment;
use super::users::Window;
use anyhow::bail;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// A's sockets, each with its own admin subject.
pub const SOCKETS: usize = 32;
/// Subscriptions asked for on each socket (below the 64 per caller and per socket; 32 × 63 =
/// 2,016, just beyond the 2,000 per tenant).
pub const SUBSCRIPTIONS_PER_SOCKET: usize = 63;
/// How long opening a socket, or a subscription, may take before it counts as failed.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// Every event after a position: the catch-up delivers the last one at once (which tells the
/// subscription was accepted), then the live ones follow.
const EVENTS: &str =
    "subscription($after: Position) { events(afterPosition: $after) { position } }";
pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// What A's subscriptions did.
#[derive(Default)]
pub struct Subscriptions {
    pub asked: u64,
    pub accepted: u64,
    /// Refused subscriptions (and sockets that failed before any), by code.
    pub refused: BTreeMap<String, u64>,
    /// Accepted subscriptions that ended before the window did, by code (`COMPLETED`: without
    /// an error; `CLOSED …`: their socket closed).
    pub ended: BTreeMap<String, u64>,
    /// `next` messages received in the window (live events; the catch-up one is not counted).
    pub next_in_window: u64,
    /// The slowest socket's opening (init and all its subscriptions).
    pub opening: Duration,
}

impl Subscriptions {
    pub fn merge(&mut self, other: Subscriptions) {
        self.asked += other.asked;
        self.accepted += other.accepted;
        for (into, from) in [
            (&mut self.refused, other.refused),
            (&mut self.ended, other.ended),
        ] {
            for (code, n) in from {
                *into.entry(code).or_default() += n;
            }
        }
        self.next_in_window += other.next_in_window;
        self.opening = self.opening.max(other.opening);
    }
}

/// One of A's sockets, with its subscriptions open.
pub struct Subscriber {
    socket: Option<Socket>,
    tally: Subscriptions,
    /// Accepted subscriptions still running.
    live: HashSet<String>,
}

/// Opens A's sockets and their subscriptions (on the flood's runtime), all at once across
/// sockets and one after the other on each, before any of A's writers start.
pub async fn open_sockets(
    env: &Environment,
    runtime: &tokio::runtime::Runtime,
    noisy: &Tenant,
) -> anyhow::Result<Vec<Subscriber>> {
    let head: i64 =
        sqlx::query_scalar("SELECT last_position FROM tenant_heads WHERE tenant_id = $1")
            .bind(noisy.id.as_uuid())
            .fetch_one(&env.pool)
            .await?;
    if head < 1 {
        bail!("tenant A has no events to acknowledge subscriptions with");
    }
    let url = env
        .url
        .replacen("http://", "ws://", 1)
        .replacen("https://", "wss://", 1)
        + "/ws";
    let day = Duration::from_secs(24 * 3600);
    let mut openings = Vec::with_capacity(SOCKETS);
    for _ in 0..SOCKETS {
        // Each socket its own caller: the per-caller limit is not what this flood tests.
        let token = env.tokens.admin(noisy.id, day)?;
        openings.push(runtime.spawn(Subscriber::open(url.clone(), token, head - 1)));
    }
    let mut subscribers = Vec::with_capacity(SOCKETS);
    for opening in openings {
        subscribers.push(opening.await?);
    }
    Ok(subscribers)
}

/// The parts of a server message the readers look at (the payload only when there are errors).
#[derive(Deserialize)]
struct Head {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    id: Option<String>,
}

/// What a server message says about one subscription.
enum Said {
    /// An event.
    Next(String),
    /// The subscription failed or was refused, with this code.
    Failed(String, String),
    /// The subscription ended.
    Complete(String),
    Other,
}

fn parse(text: &str) -> Said {
    let Ok(head) = serde_json::from_str::<Head>(text) else {
        return Said::Other;
    };
    let id = head.id.unwrap_or_default();
    // A `next` carrying errors ends its subscription; only those are parsed in full.
    let first_code = |payload: &Value| {
        payload
            .get(0)
            .map(|e| {
                e["extensions"]["code"]
                    .as_str()
                    .unwrap_or("NO_CODE")
                    .to_owned()
            })
            .unwrap_or_else(|| "NO_CODE".to_owned())
    };
    match head.kind.as_str() {
        "next" if !text.contains("\"errors\"") => Said::Next(id),
        "next" => {
            let message: Value = serde_json::from_str(text).unwrap_or_default();
            match message["payload"]["errors"].as_array() {
                Some(list) if !list.is_empty() => {
                    Said::Failed(id, first_code(&message["payload"]["errors"]))
                }
                _ => Said::Next(id),
            }
        }
        "error" => {
            let message: Value = serde_json::from_str(text).unwrap_or_default();
            Said::Failed(id, first_code(&message["payload"]))
        }
        "complete" => Said::Complete(id),
        _ => Said::Other,
    }
}

/// The next text message, or why there is none (`Err`: a code for the tally).
pub async fn receive(socket: &mut Socket, until: tokio::time::Instant) -> Result<String, String> {
    loop {
        match tokio::time::timeout_at(until, socket.next()).await {
            Err(_) => return Err("NO_ANSWER".to_owned()),
            Ok(Some(Ok(Message::Text(text)))) => return Ok(text.as_str().to_owned()),
            Ok(Some(Ok(Message::Close(frame)))) => {
                let code = frame.map_or(1005, |f| u16::from(f.code));
                return Err(format!("CLOSED {code}"));
            }
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(_))) | Ok(None) => return Err("CLOSED 1006".to_owned()),
        }
    }
}

impl Subscriber {
    /// Connects, initialises with `token` and subscribes [`SUBSCRIPTIONS_PER_SOCKET`] times,
    /// each after the previous one was answered (so A's opening reads queue no deeper than
    /// its share).
    async fn open(url: String, token: String, after: i64) -> Subscriber {
        let started = Instant::now();
        let mut subscriber = Subscriber {
            socket: None,
            tally: Subscriptions {
                asked: SUBSCRIPTIONS_PER_SOCKET as u64,
                ..Subscriptions::default()
            },
            live: HashSet::new(),
        };
        let mut socket = match connect(&url, &token).await {
            Ok(socket) => socket,
            Err(code) => {
                subscriber
                    .tally
                    .refused
                    .insert(code, SUBSCRIPTIONS_PER_SOCKET as u64);
                return subscriber;
            }
        };
        for i in 0..SUBSCRIPTIONS_PER_SOCKET {
            let id = i.to_string();
            let subscribe = json!({"id": id, "type": "subscribe",
                                   "payload": {"query": EVENTS, "variables": {"after": after}}});
            let answer = match socket.send(Message::text(subscribe.to_string())).await {
                Ok(()) => subscriber.answer(&mut socket, &id).await,
                Err(_) => Err("CLOSED 1006".to_owned()),
            };
            match answer {
                Ok(()) => {
                    subscriber.tally.accepted += 1;
                    subscriber.live.insert(id);
                }
                Err(code) if code.starts_with("CLOSED") => {
                    let left = (SUBSCRIPTIONS_PER_SOCKET - i) as u64;
                    *subscriber.tally.refused.entry(code.clone()).or_default() += left;
                    let live = subscriber.live.len() as u64;
                    if live > 0 {
                        *subscriber.tally.ended.entry(code).or_default() += live;
                    }
                    subscriber.live.clear();
                    subscriber.tally.opening = started.elapsed();
                    return subscriber;
                }
                Err(code) => *subscriber.tally.refused.entry(code).or_default() += 1,
            }
        }
        subscriber.tally.opening = started.elapsed();
        subscriber.socket = Some(socket);
        subscriber
    }

    /// Waits for subscription `id`'s first message: its catch-up event (accepted) or its
    /// refusal's code.
    async fn answer(&mut self, socket: &mut Socket, id: &str) -> Result<(), String> {
        let until = tokio::time::Instant::now() + ANSWER_TIMEOUT;
        loop {
            match parse(&receive(socket, until).await?) {
                Said::Next(of) if of == id => return Ok(()),
                Said::Failed(of, code) if of == id => return Err(code),
                Said::Complete(of) if of == id => return Err("COMPLETED".to_owned()),
                // Earlier subscriptions' messages (none expected before A's writers start).
                said => self.take(said, None),
            }
        }
    }

    /// Tallies one message about an accepted subscription; `window` counts `next` in it.
    fn take(&mut self, said: Said, window: Option<Window>) {
        match said {
            Said::Next(_) => {
                let now = Instant::now();
                if window.is_some_and(|w| now >= w.from && now < w.to) {
                    self.tally.next_in_window += 1;
                }
            }
            Said::Failed(id, code) => {
                if self.live.remove(&id) {
                    *self.tally.ended.entry(code).or_default() += 1;
                }
            }
            Said::Complete(id) => {
                if self.live.remove(&id) {
                    *self.tally.ended.entry("COMPLETED".to_owned()).or_default() += 1;
                }
            }
            Said::Other => {}
        }
    }

    /// Reads every message until the window ends, then closes the socket.
    pub async fn follow(mut self, window: Window) -> Subscriptions {
        let Some(mut socket) = self.socket.take() else {
            return self.tally;
        };
        let until = tokio::time::Instant::from_std(window.to);
        loop {
            match receive(&mut socket, until).await {
                Ok(text) => self.take(parse(&text), Some(window)),
                Err(code) if code == "NO_ANSWER" => break,
                Err(code) => {
                    let live = self.live.len() as u64;
                    if live > 0 {
                        *self.tally.ended.entry(code).or_default() += live;
                    }
                    return self.tally;
                }
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), socket.close(None)).await;
        self.tally
    }
}

/// A socket past `connection_ack`, or a code for why not.
pub async fn connect(url: &str, token: &str) -> Result<Socket, String> {
    let mut request = url
        .into_client_request()
        .map_err(|e| format!("CONNECT ({e})"))?;
    request
        .headers_mut()
        .insert("sec-websocket-protocol", http_value("graphql-transport-ws"));
    let connect = tokio_tungstenite::connect_async(request);
    let (mut socket, _) = tokio::time::timeout(ANSWER_TIMEOUT, connect)
        .await
        .map_err(|_| "CONNECT (timeout)".to_owned())?
        .map_err(|e| format!("CONNECT ({e})"))?;
    let init = json!({"type": "connection_init",
                      "payload": {"Authorization": format!("Bearer {token}")}});
    socket
        .send(Message::text(init.to_string()))
        .await
        .map_err(|_| "CLOSED 1006".to_owned())?;
    let until = tokio::time::Instant::now() + ANSWER_TIMEOUT;
    let ack = receive(&mut socket, until).await?;
    match serde_json::from_str::<Head>(&ack) {
        Ok(head) if head.kind == "connection_ack" => Ok(socket),
        _ => Err(format!("NO_ACK ({ack})")),
    }
}

fn http_value(value: &'static str) -> tokio_tungstenite::tungstenite::http::HeaderValue {
    tokio_tungstenite::tungstenite::http::HeaderValue::from_static(value)
}
