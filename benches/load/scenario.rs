//! The load scenario: virtual users running lifecycles for `--duration`, bracketed by the
//! ceilings, and what it prints (throughput, latency, error codes, the server's `/metrics`,
//! transactions per command, peak RSS, the ratios to the ceilings and their targets).

use super::Args;
use super::ceilings::{CeilingTenants, Rates, ceilings};
use super::client::{Client, provision};
use super::common::ms;
use super::env::Environment;
use super::message_db::MessageDb;
use super::scrape;
use super::users::{LoadResult, drive_load};
use anyhow::bail;
use std::collections::BTreeMap;

/// What a load measured, for the side-by-side comparison.
pub struct Figures {
    pub per_second: f64,
    pub p50: u64,
    pub p99: u64,
}

pub async fn load_scenario(args: &Args, env: &Environment) -> anyhow::Result<Figures> {
    if args.tenants == 0 || args.users == 0 {
        bail!("--tenants and --users must be at least 1");
    }
    let scenario = if args.tenants == 1 {
        "one hot tenant"
    } else {
        "many tenants"
    };
    println!(
        "coursetrail load: {scenario}: {} tenant(s), {} virtual users, {} measured after {} warm-up",
        args.tenants,
        args.users,
        humantime::format_duration(args.duration),
        humantime::format_duration(args.warmup),
    );
    print_setting(args, env);
    let client = Client::new(&env.url, args.users)?;
    let tenants = provision(env, args.tenants, &client).await?;

    // The ceilings are measured before and after the load, and the ratios use the mean: on a
    // shared machine the cost of an fsync drifts with other I/O, and bracketing the load
    // cancels most of that drift.
    let ceiling_tenants = if args.no_ceilings {
        None
    } else {
        Some(CeilingTenants::new(&env.pool, args.tenants).await?)
    };
    let message_db = match (&ceiling_tenants, args.message_db) {
        (Some(_), true) => Some(MessageDb::install(env, args.users).await?),
        _ => None,
    };
    let before = match &ceiling_tenants {
        Some(tenants) => {
            Some(ceilings(args, env, tenants, message_db.as_ref(), "before the load").await?)
        }
        None => None,
    };
    let result = drive_load(args, env, &client, &tenants).await;
    let after = match &ceiling_tenants {
        Some(tenants) => {
            Some(ceilings(args, env, tenants, message_db.as_ref(), "after the load").await?)
        }
        None => None,
    };
    if let Some(message_db) = message_db {
        message_db.close().await;
    }
    let per_second = print_load(env, &result).await;
    if let Some((before, after)) = before.zip(after) {
        print_ratios(args, &result, per_second, before.mean(&after));
    }
    let latency = &result.tally.latency;
    Ok(Figures {
        per_second,
        p50: latency.value_at_quantile(0.50),
        p99: latency.value_at_quantile(0.99),
    })
}

/// Prints what the load did; returns its commands per second.
async fn print_load(env: &Environment, result: &LoadResult) -> f64 {
    let tally = &result.tally;
    let per_second = tally.commands as f64 / result.elapsed.as_secs_f64();
    println!(
        "load: {} commands ({} lifecycles) in {:.1} s = {:.0} commands/s",
        tally.commands,
        tally.lifecycles,
        result.elapsed.as_secs_f64(),
        per_second
    );
    println!(
        "  latency: p50 {} p90 {} p99 {} max {}",
        ms(tally.latency.value_at_quantile(0.50)),
        ms(tally.latency.value_at_quantile(0.90)),
        ms(tally.latency.value_at_quantile(0.99)),
        ms(tally.latency.max()),
    );
    println!("  errors by extensions.code: {}", codes_line(&tally.codes));
    println!("  replayed (same commandId): {}", tally.replayed);
    if let Err(error) = scrape::print_metrics(&env.url).await {
        println!("  server /metrics: not read ({error:#})");
    }
    if let Some((commits, rollbacks)) = result.transactions {
        println!(
            "  database transactions per command: {:.2} ({commits} committed, {rollbacks} rolled \
             back, in the window; a command's write is one, each read another)",
            (commits + rollbacks) as f64 / tally.commands.max(1) as f64
        );
    }
    match env.server_peak_rss() {
        Some(bytes) => println!(
            "  server peak RSS (VmHWM): {:.1} MB",
            bytes as f64 / 1_048_576.0
        ),
        None => println!("  server peak RSS: unknown (pass --server-pid)"),
    }
    per_second
}

/// The load's commands per second against the mean of the ceilings, and the targets.
fn print_ratios(args: &Args, result: &LoadResult, per_second: f64, rates: Rates) {
    let Rates {
        bare,
        head,
        hot,
        message_db,
    } = rates;
    println!("ceilings, mean of before and after: (1) {bare:.0} (2) {head:.0} (3) {hot:.0} tx/s");
    println!(
        "ratios: commands/s ÷ (1) = {:.2}, ÷ (2) = {:.2}, ÷ (3) = {:.2}",
        per_second / bare,
        per_second / head,
        per_second / hot
    );
    if let Some(message_db) = message_db {
        println!(
            "  commands/s ÷ Message DB write_message (4) = {:.2} (target ≥ 1.2; mean {message_db:.0} tx/s)",
            per_second / message_db
        );
    }
    let p99 = ms(result.tally.latency.value_at_quantile(0.99));
    if args.tenants == 1 {
        println!(
            "  target (hot tenant): ≥ 1.3 × (3): {:.2}; p99 {p99}",
            per_second / hot
        );
    } else {
        println!(
            "  target (many tenants): p99 ≤ 15 ms: {p99}; ÷ (2) {:.2}",
            per_second / head,
        );
    }
}

/// Prints the database and the server the load goes to.
pub fn print_setting(args: &Args, env: &Environment) {
    println!("  database: {}", env.durability);
    if env.server.is_some() {
        println!(
            "  server: child process (as `coursetrail serve`), DATABASE_MAX_CONNECTIONS={}, \
             STREAM_CACHE_CAPACITY={}, GROUP_COMMIT={}, TOKIO_WORKER_THREADS={}",
            args.server_pool,
            args.stream_cache,
            args.group_commit,
            args.server_threads
                .map_or_else(|| "one per core".to_owned(), |t| t.to_string()),
        );
    }
}

/// `CODE n, CODE n` (or `none`).
pub fn codes_line(codes: &BTreeMap<String, u64>) -> String {
    if codes.is_empty() {
        return "none".to_owned();
    }
    let codes: Vec<String> = codes.iter().map(|(c, n)| format!("{c} {n}")).collect();
    codes.join(", ")
}
