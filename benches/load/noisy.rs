//! The noisy-neighbour scenario (`--noisy writes,subscriptions,reports`): how much one tenant
//! flooding the server slows another one.
//!
//! For each flood kind, two fresh tenants: A floods, B is quiet — one virtual user sending
//! `registerTrainee` one at a time (a new trainee each). B is measured alone, then beside A's
//! flood, each phase `--noisy-duration` after a ramp of [`RAMP`] (unmeasured), in the same run,
//! on the same server and database:
//!
//! - `writes`: [`WRITERS`] writers in A, each sending `registerTrainee` in a loop;
//! - `subscriptions`: [`SOCKETS`] WebSockets × [`SUBSCRIPTIONS_PER_SOCKET`] `events`
//!   subscriptions in A (one admin subject per socket, so the per-caller limit is not what
//!   refuses them; a few more asked for than the tenant's limit of 2,000), opened before
//!   [`FANOUT_WRITERS`] writers in A start, so that every commit fans out to all of them;
//! - `reports`: [`REPORT_EVENTS`] events seeded in A, then [`REPORT_LOOPS`] loops of an
//!   instructor's `funnelReport` and `durationReport` in turn.
//!
//! A's flood runs on a runtime of its own (two threads): B's virtual user never waits in a
//! run queue behind A's tasks on the generator's side, so what B's latency gains is the
//! server's and the database's doing (and the machine's: everything shares its cores).
//!
//! Targets: B's p99 ≤ 25 ms with no errors beside every flood; A's excess refused with
//! `RATE_LIMITED` or `OVERLOADED`, and nothing else.

use super::{
    Args, Client, Environment, REGISTER_TRAINEE, Reply, Tally, Tenant, Window, codes_line, ms,
    print_setting, provision, seed, trainee_registration,
};
use anyhow::{Context, bail};
use coursetrail::auth::Role;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use uuid::Uuid;

/// Unmeasured sending before each measured phase (and A's flood before B is measured beside it).
const RAMP: Duration = Duration::from_secs(2);
/// `writes`: A's concurrent writers.
const WRITERS: usize = 200;
/// `subscriptions`: A's sockets, each with its own admin subject.
const SOCKETS: usize = 32;
/// `subscriptions`: subscriptions asked for on each socket (below the 64 per caller and per
/// socket; 32 × 63 = 2,016, just beyond the 2,000 per tenant).
const SUBSCRIPTIONS_PER_SOCKET: usize = 63;
/// `subscriptions`: A's writers whose commits fan out to the subscriptions.
const FANOUT_WRITERS: usize = 4;
/// `reports`: events seeded in A before its reports, so that each replay takes real time.
const REPORT_EVENTS: u64 = 200_000;
/// `reports`: A's concurrent report loops.
const REPORT_LOOPS: usize = 20;
/// B's p99 target beside any flood.
const P99_TARGET_MICROS: u64 = 25_000;
/// How long opening a socket, or a subscription, may take before it counts as failed.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

const FUNNEL_REPORT: &str = "{ funnelReport { eventsReplayed } }";
const DURATION_REPORT: &str =
    "{ durationReport(input: {from: REGISTERED, to: COMPLETED}) { rows { count } } }";
/// Every event after a position: the catch-up delivers the last one at once (which tells the
/// subscription was accepted), then the live ones follow.
const EVENTS: &str =
    "subscription($after: Position) { events(afterPosition: $after) { position } }";

/// What tenant A floods the server with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(super) enum Flood {
    Writes,
    Subscriptions,
    Reports,
}

impl Flood {
    fn name(self) -> &'static str {
        match self {
            Flood::Writes => "writes",
            Flood::Subscriptions => "subscriptions",
            Flood::Reports => "reports",
        }
    }
}

/// What a loop of requests sends.
#[derive(Clone, Copy)]
enum Requests {
    /// `registerTrainee`, a new trainee each time.
    Registrations,
    /// `funnelReport` and `durationReport` in turn.
    Reports,
}

/// One flood kind's figures.
struct Outcome {
    flood: Flood,
    alone: Tally,
    beside: Tally,
    /// A's requests (commands or reports) started in B's measured window beside it.
    noisy: Tally,
    subscriptions: Option<Subscriptions>,
}

/// Runs the noisy-neighbour scenario for each kind in `--noisy`, in turn, on one server.
pub(super) async fn scenarios(args: &Args, env: &Environment) -> anyhow::Result<()> {
    let kinds: Vec<&str> = args.noisy.iter().map(|f| f.name()).collect();
    println!(
        "coursetrail noisy neighbour: {}; each phase {} measured after a {} ramp",
        kinds.join(", "),
        humantime::format_duration(args.noisy_duration),
        humantime::format_duration(RAMP),
    );
    print_setting(args, env);
    println!(
        "  A's loops after RATE_LIMITED/OVERLOADED: {}",
        if args.noisy_backoff.is_zero() {
            "send again at once (Retry-After ignored)".to_owned()
        } else {
            format!("wait {}", humantime::format_duration(args.noisy_backoff))
        }
    );
    let client = Client::new(&env.url, 4)?;
    let mut outcomes = Vec::new();
    for (i, &flood) in args.noisy.iter().enumerate() {
        if i > 0 {
            // The previous flood's queued work drains (it waits at most QUEUE_TIMEOUT).
            tokio::time::sleep(RAMP).await;
        }
        println!();
        let outcome = scenario(args, env, &client, flood).await?;
        print_outcome(args, &outcome);
        outcomes.push(outcome);
    }
    if outcomes.len() > 1 {
        print_summary(&outcomes);
    }
    Ok(())
}

async fn scenario(
    args: &Args,
    env: &Environment,
    client: &Client,
    flood: Flood,
) -> anyhow::Result<Outcome> {
    let mut tenants = provision(env, 2, client).await?;
    let (Some(quiet), Some(noisy)) = (tenants.pop(), tenants.pop()) else {
        bail!("provisioning returned fewer than two tenants");
    };
    if flood == Flood::Reports {
        let started = Instant::now();
        seed(&env.pool, &[noisy.id], REPORT_EVENTS).await?;
        println!(
            "  seeded {REPORT_EVENTS} events in A in {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }
    let quiet_token: Arc<str> = quiet.admin.as_str().into();
    let alone = requests(
        client.clone(),
        quiet_token.clone(),
        Requests::Registrations,
        window_after_ramp(args),
        Duration::ZERO,
    )
    .await;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("noisy-flood")
        .enable_all()
        .build()?;
    let flooded = beside_flood(args, env, client, flood, &runtime, &noisy, quiet_token).await;
    // Dropping a runtime blocks, which an async context may not: let it go in the background
    // (its tasks have ended, or failed).
    runtime.shutdown_background();
    let (beside, noisy, subscriptions) = flooded?;
    Ok(Outcome {
        flood,
        alone,
        beside,
        noisy,
        subscriptions,
    })
}

/// Starts A's flood on `runtime` and measures B beside it: `(B, A, A's subscriptions)`.
async fn beside_flood(
    args: &Args,
    env: &Environment,
    client: &Client,
    flood: Flood,
    runtime: &tokio::runtime::Runtime,
    noisy: &Tenant,
    quiet_token: Arc<str>,
) -> anyhow::Result<(Tally, Tally, Option<Subscriptions>)> {
    let sockets = match flood {
        Flood::Subscriptions => Some(open_sockets(env, runtime, noisy).await?),
        Flood::Writes | Flood::Reports => None,
    };
    let window = window_after_ramp(args);
    let flooding = runtime.spawn(flood_load(
        env.url.clone(),
        flood,
        noisy_token(flood, noisy),
        sockets,
        window,
        args.noisy_backoff,
    ));
    let beside = requests(
        client.clone(),
        quiet_token,
        Requests::Registrations,
        window,
        Duration::ZERO,
    )
    .await;
    let (noisy, subscriptions) = flooding.await.context("A's flood panicked")??;
    Ok((beside, noisy, subscriptions))
}

fn window_after_ramp(args: &Args) -> Window {
    let from = Instant::now() + RAMP;
    Window {
        from,
        to: from + args.noisy_duration,
    }
}

/// The token A's request loops send with: reports are an instructor's.
fn noisy_token(flood: Flood, noisy: &Tenant) -> Arc<str> {
    match flood {
        Flood::Reports => noisy.instructor.as_str().into(),
        Flood::Writes | Flood::Subscriptions => noisy.admin.as_str().into(),
    }
}

/// Sends one request after the other until the window ends; tallies those started in it.
/// After a refusal (`RATE_LIMITED`, `OVERLOADED`) waits `backoff`, if any.
async fn requests(
    client: Client,
    token: Arc<str>,
    requests: Requests,
    window: Window,
    backoff: Duration,
) -> Tally {
    let mut tally = Tally::new();
    let mut funnel = false;
    while Instant::now() < window.to {
        let started = Instant::now();
        let reply = match requests {
            Requests::Registrations => {
                let variables = trainee_registration(Uuid::now_v7());
                client.mutate(&token, REGISTER_TRAINEE, variables).await
            }
            Requests::Reports => {
                funnel = !funnel;
                let query = if funnel {
                    FUNNEL_REPORT
                } else {
                    DURATION_REPORT
                };
                client.mutate(&token, query, json!({})).await
            }
        };
        tally.record(window, started, &reply);
        if !backoff.is_zero() && is_refusal(&reply) {
            let until = (Instant::now() + backoff).min(window.to);
            tokio::time::sleep_until(until.into()).await;
        }
    }
    tally
}

fn is_refusal(reply: &Reply) -> bool {
    reply.code.as_deref().is_some_and(is_refusal_code)
}

/// What A's excess should get: refused now, or after waiting its turn too long.
fn is_refusal_code(code: &str) -> bool {
    matches!(code, "RATE_LIMITED" | "OVERLOADED")
}

/// A's flood, on its own runtime: request loops (and, for `subscriptions`, the sockets'
/// readers) until the window ends.
async fn flood_load(
    url: String,
    flood: Flood,
    token: Arc<str>,
    sockets: Option<Vec<Subscriber>>,
    window: Window,
    backoff: Duration,
) -> anyhow::Result<(Tally, Option<Subscriptions>)> {
    let (loops, requests_sent) = match flood {
        Flood::Writes => (WRITERS, Requests::Registrations),
        Flood::Subscriptions => (FANOUT_WRITERS, Requests::Registrations),
        Flood::Reports => (REPORT_LOOPS, Requests::Reports),
    };
    // Created here, so that its connections live on this runtime.
    let client = Client::new(&url, loops)?;
    let loops: Vec<_> = (0..loops)
        .map(|_| {
            tokio::spawn(requests(
                client.clone(),
                token.clone(),
                requests_sent,
                window,
                backoff,
            ))
        })
        .collect();
    let readers: Vec<_> = sockets
        .into_iter()
        .flatten()
        .map(|subscriber| tokio::spawn(subscriber.follow(window)))
        .collect();
    let mut tally = Tally::new();
    for handle in loops {
        tally.merge(handle.await?);
    }
    let subscriptions = if readers.is_empty() {
        None
    } else {
        let mut total = Subscriptions::default();
        for handle in readers {
            total.merge(handle.await?);
        }
        Some(total)
    };
    Ok((tally, subscriptions))
}

// ---------------------------------------------------------------------------------------------
// Subscriptions

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// What A's subscriptions did.
#[derive(Default)]
struct Subscriptions {
    asked: u64,
    accepted: u64,
    /// Refused subscriptions (and sockets that failed before any), by code.
    refused: BTreeMap<String, u64>,
    /// Accepted subscriptions that ended before the window did, by code (`COMPLETED`: without
    /// an error; `CLOSED …`: their socket closed).
    ended: BTreeMap<String, u64>,
    /// `next` messages received in the window (live events; the catch-up one is not counted).
    next_in_window: u64,
    /// The slowest socket's opening (init and all its subscriptions).
    opening: Duration,
}

impl Subscriptions {
    fn merge(&mut self, other: Subscriptions) {
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
struct Subscriber {
    socket: Option<Socket>,
    tally: Subscriptions,
    /// Accepted subscriptions still running.
    live: HashSet<String>,
}

/// Opens A's sockets and their subscriptions (on the flood's runtime), all at once across
/// sockets and one after the other on each, before any of A's writers start.
async fn open_sockets(
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
        let token = env
            .issuer
            .mint(noisy.id.as_uuid(), Uuid::now_v7(), Role::Admin, day)?;
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
async fn receive(socket: &mut Socket, until: tokio::time::Instant) -> Result<String, String> {
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
        let mut socket = match Self::connect(&url, &token).await {
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

    /// A socket past `connection_ack`, or a code for why not.
    async fn connect(url: &str, token: &str) -> Result<Socket, String> {
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
    async fn follow(mut self, window: Window) -> Subscriptions {
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

fn http_value(value: &'static str) -> tokio_tungstenite::tungstenite::http::HeaderValue {
    tokio_tungstenite::tungstenite::http::HeaderValue::from_static(value)
}

// ---------------------------------------------------------------------------------------------
// Printing

fn p99(tally: &Tally) -> u64 {
    tally.latency.value_at_quantile(0.99)
}

fn errors(tally: &Tally) -> u64 {
    tally.codes.values().sum()
}

fn quiet_met(tally: &Tally) -> bool {
    tally.commands > 0 && p99(tally) <= P99_TARGET_MICROS && errors(tally) == 0
}

/// Codes other than the refusals the flood should get.
fn unexpected(codes: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    codes
        .iter()
        .filter(|(code, _)| !is_refusal_code(code))
        .map(|(code, n)| (code.clone(), *n))
        .collect()
}

/// The refusals the flood should get.
fn refused(codes: &BTreeMap<String, u64>) -> u64 {
    codes
        .iter()
        .filter(|(code, _)| is_refusal_code(code))
        .map(|(_, n)| n)
        .sum()
}

/// `ok n, RATE_LIMITED n, OVERLOADED n, other…`.
fn outcomes_line(tally: &Tally) -> String {
    let ok = tally.commands - errors(tally);
    let mut parts = vec![format!("ok {ok}")];
    for code in ["RATE_LIMITED", "OVERLOADED"] {
        parts.push(format!(
            "{code} {}",
            tally.codes.get(code).copied().unwrap_or(0)
        ));
    }
    let other = unexpected(&tally.codes);
    if !other.is_empty() {
        parts.push(format!("other: {}", codes_line(&other)));
    }
    parts.join(", ")
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "NOT met" }
}

fn print_outcome(args: &Args, outcome: &Outcome) {
    let what = match outcome.flood {
        Flood::Writes => format!("{WRITERS} writers, registerTrainee in a loop"),
        Flood::Subscriptions => format!(
            "{SOCKETS} sockets × {SUBSCRIPTIONS_PER_SOCKET} `events` subscriptions, \
             {FANOUT_WRITERS} writers (registerTrainee in a loop)"
        ),
        Flood::Reports => format!(
            "{REPORT_LOOPS} loops of funnelReport/durationReport in turn, \
             {REPORT_EVENTS} events to replay"
        ),
    };
    println!("noisy neighbour: {} — A: {what}", outcome.flood.name());
    println!(
        "  B (1 user, registerTrainee one at a time)   {:>10} {:>10} {:>11} {:>7}",
        "p50", "p99", "commands/s", "errors"
    );
    let seconds = args.noisy_duration.as_secs_f64();
    for (phase, tally) in [("alone", &outcome.alone), ("beside A", &outcome.beside)] {
        println!(
            "    {phase:<41} {:>10} {:>10} {:>11.0} {:>7}",
            ms(tally.latency.value_at_quantile(0.50)),
            ms(p99(tally)),
            tally.commands as f64 / seconds,
            errors(tally),
        );
        if errors(tally) > 0 {
            println!("      errors: {}", codes_line(&tally.codes));
        }
    }
    println!(
        "  B's p99 beside A ÷ alone: {:.2}; target: B's p99 ≤ {} with 0 errors beside A: {}",
        p99(&outcome.beside) as f64 / p99(&outcome.alone).max(1) as f64,
        ms(P99_TARGET_MICROS),
        verdict(quiet_met(&outcome.beside)),
    );
    let noisy = &outcome.noisy;
    let label = match outcome.flood {
        Flood::Reports => "reports",
        Flood::Writes | Flood::Subscriptions => "commands",
    };
    println!(
        "  A's {label} started in B's window: {} ({:.0}/s): {}",
        noisy.commands,
        noisy.commands as f64 / seconds,
        outcomes_line(noisy),
    );
    let mut other = unexpected(&noisy.codes);
    let mut refusals = refused(&noisy.codes);
    if let Some(subscriptions) = &outcome.subscriptions {
        println!(
            "  A's subscriptions: {} asked, {} accepted, refused: {} (opened in {:.1} s, before \
             A's writers started)",
            subscriptions.asked,
            subscriptions.accepted,
            codes_line(&subscriptions.refused),
            subscriptions.opening.as_secs_f64(),
        );
        println!(
            "    ended by the server before the window did: {}",
            codes_line(&subscriptions.ended)
        );
        let ok = noisy.commands - errors(noisy);
        let expected = ok * subscriptions.accepted;
        println!(
            "    `next` messages received in B's window: {} ({:.0}/s; {:.0}% of A's {ok} commits \
             × {} accepted subscriptions)",
            subscriptions.next_in_window,
            subscriptions.next_in_window as f64 / seconds,
            100.0 * subscriptions.next_in_window as f64 / expected.max(1) as f64,
            subscriptions.accepted,
        );
        other.extend(unexpected(&subscriptions.refused));
        refusals += refused(&subscriptions.refused);
    }
    println!(
        "  target: A's excess gets RATE_LIMITED/OVERLOADED: {}{}",
        verdict(other.is_empty() && refusals > 0),
        if refusals == 0 {
            " (nothing of A's was refused)".to_owned()
        } else if other.is_empty() {
            String::new()
        } else {
            format!(" (other codes: {})", codes_line(&other))
        }
    );
}

fn print_summary(outcomes: &[Outcome]) {
    println!();
    println!(
        "summary: B's p99 alone and beside A (target ≤ {} with 0 errors), A's refusals",
        ms(P99_TARGET_MICROS)
    );
    println!(
        "  {:<14} {:>10} {:>10} {:>7} {:>9} {:>10} {:>12}",
        "flood", "B alone", "B beside", "ratio", "B errors", "A refused", "A other err"
    );
    for outcome in outcomes {
        let mut other: u64 = unexpected(&outcome.noisy.codes).values().sum();
        let mut refusals = refused(&outcome.noisy.codes);
        if let Some(subscriptions) = &outcome.subscriptions {
            other += unexpected(&subscriptions.refused).values().sum::<u64>();
            refusals += refused(&subscriptions.refused);
        }
        println!(
            "  {:<14} {:>10} {:>10} {:>7.2} {:>9} {:>10} {:>12}",
            outcome.flood.name(),
            ms(p99(&outcome.alone)),
            ms(p99(&outcome.beside)),
            p99(&outcome.beside) as f64 / p99(&outcome.alone).max(1) as f64,
            errors(&outcome.beside),
            refusals,
            other,
        );
    }
}
