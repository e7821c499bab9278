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

use super::Args;
use super::client::{Client, REGISTER_TRAINEE, Reply, Tenant, provision, trainee_registration};
use super::common::{self, ms};
use super::env::Environment;
use super::scenario::{codes_line, print_setting};
use super::sockets::{SOCKETS, SUBSCRIPTIONS_PER_SOCKET, Subscriber, Subscriptions, open_sockets};
use super::users::{Tally, Window};
use anyhow::{Context, bail};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Unmeasured sending before each measured phase (and A's flood before B is measured beside it).
const RAMP: Duration = Duration::from_secs(2);
/// `writes`: A's concurrent writers.
const WRITERS: usize = 200;
/// `subscriptions`: A's writers whose commits fan out to the subscriptions.
const FANOUT_WRITERS: usize = 4;
/// `reports`: events seeded in A before its reports, so that each replay takes real time.
const REPORT_EVENTS: u64 = 200_000;
/// `reports`: A's concurrent report loops.
const REPORT_LOOPS: usize = 20;
/// B's p99 target beside any flood.
const P99_TARGET_MICROS: u64 = 25_000;

const FUNNEL_REPORT: &str = "{ funnelReport { eventsReplayed } }";
const DURATION_REPORT: &str =
    "{ durationReport(input: {from: REGISTERED, to: COMPLETED}) { rows { count } } }";

/// What tenant A floods the server with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Flood {
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
pub async fn scenarios(args: &Args, env: &Environment) -> anyhow::Result<()> {
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
        common::seed::seed_events(&env.pool, &[noisy.id], REPORT_EVENTS).await?;
        common::seed::vacuum_and_checkpoint(&env.pool).await?;
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
    let seconds = args.noisy_duration.as_secs_f64();
    print_quiet(outcome, seconds);
    print_noisy(outcome, seconds);
}

/// B alone and beside A, and B's target.
fn print_quiet(outcome: &Outcome, seconds: f64) {
    println!(
        "  B (1 user, registerTrainee one at a time)   {:>10} {:>10} {:>11} {:>7}",
        "p50", "p99", "commands/s", "errors"
    );
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
}

/// A's requests (and subscriptions), and A's target.
fn print_noisy(outcome: &Outcome, seconds: f64) {
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
        print_subscriptions(subscriptions, noisy, seconds);
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

/// What A's subscriptions did, beside A's `noisy` writers.
fn print_subscriptions(subscriptions: &Subscriptions, noisy: &Tally, seconds: f64) {
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
