//! The load generator: drives the full enrollment lifecycle through the real HTTP
//! GraphQL endpoint with C concurrent virtual users, and measures, in the same run, on the same
//! database and with the same concurrency, what PostgreSQL itself can commit (the ceilings).
//!
//! ```text
//! cargo bench --bench load -- --tenants 100 --users 16 --duration 30s   # many tenants
//! cargo bench --bench load -- --tenants 1 --users 16 --duration 30s     # one hot tenant
//! cargo bench --bench load -- --growth 1000000,10000000                 # append latency vs size
//! cargo bench --bench load -- --tenants 100 --users 16 --citus          # plain PostgreSQL, then Citus
//! cargo bench --bench load -- --noisy writes,subscriptions,reports      # one tenant floods another
//! cargo bench --bench load -- --idle-sockets 10000                       # memory per WebSocket
//! ```
//!
//! By default it starts its own private PostgreSQL cluster with production durability
//! (`fsync=on`, `synchronous_commit=on`, `full_page_writes=on`) and the server as a child
//! process (so its peak RSS can be read from `/proc`): this executable run with `--serve-child`,
//! which does what `coursetrail serve` does. `--url` with `--database-url` and
//! `--secret` targets a running server instead (`--server-pid` to report its RSS).
//!
//! The ceilings, each a loop of one-statement transactions on C connections:
//! 1. a bare single-row `INSERT` into `events` (what this PostgreSQL can commit);
//! 2. the same insert plus the per-tenant head-row increment, spread over as many tenants as the
//!    scenario (the ceiling of the ordering design);
//! 3. (2) with every writer on one tenant (the hot-tenant ceiling);
//! 4. Message DB's `write_message` with as many clients, in as many categories as tenants
//!    (`--message-db false` skips it).

use anyhow::bail;
use clap::Parser;
use common::ms;
use std::time::Duration;

#[path = "common/mod.rs"]
mod common;

#[path = "load/ceilings.rs"]
mod ceilings;
#[path = "load/client.rs"]
mod client;
#[path = "load/env.rs"]
mod env;
#[path = "load/growth.rs"]
mod growth;
#[path = "load/idle.rs"]
mod idle;
#[path = "load/message_db.rs"]
mod message_db;
#[path = "load/noisy.rs"]
mod noisy;
#[path = "load/scenario.rs"]
mod scenario;
#[path = "load/scrape.rs"]
mod scrape;
#[path = "load/sockets.rs"]
mod sockets;
#[path = "load/users.rs"]
mod users;

use env::{Engine, Environment};
use scenario::Figures;

#[derive(Parser, Debug, Clone)]
#[command(about = "coursetrail load generator")]
struct Args {
    /// Tenants the virtual users spread over (1 = the hot-tenant scenario).
    #[arg(long, default_value_t = 100)]
    tenants: usize,
    /// Concurrent virtual users (also the writers of each ceiling).
    #[arg(long, default_value_t = 16)]
    users: usize,
    /// How long the load is measured.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Unmeasured load before the measurement (warms caches, pools, prepared statements).
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// How long each ceiling is measured.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    ceiling_duration: Duration,
    /// Skip the ceilings (and Message DB).
    #[arg(long)]
    no_ceilings: bool,
    /// Measure Message DB's `write_message` beside the ceilings (its scripts from npm, or
    /// MESSAGE_DB_DIR); `false` skips it.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    message_db: bool,
    /// Share of lifecycles that also send a command the lifecycle forbids (INVALID_STATE).
    #[arg(long, default_value_t = 0.05)]
    invalid_share: f64,
    /// Share of lifecycles that register twice (ALREADY_REGISTERED).
    #[arg(long, default_value_t = 0.05)]
    duplicate_share: f64,
    /// Share of lifecycles that retry a command with the same commandId (a replayed answer).
    #[arg(long, default_value_t = 0.05)]
    retry_share: f64,
    /// Run the growth check instead of the load: append latency with this many events already
    /// stored, for each comma-separated size (e.g. 1000000,10000000).
    #[arg(long, value_delimiter = ',')]
    growth: Vec<u64>,
    /// Appends timed at each growth size (one writer, one append per transaction).
    #[arg(long, default_value_t = 3000)]
    growth_samples: usize,
    /// Run the noisy-neighbour scenario instead of the load: a quiet tenant measured alone,
    /// then beside a tenant flooding the server with each comma-separated kind in turn.
    #[arg(long, value_delimiter = ',', value_enum)]
    noisy: Vec<noisy::Flood>,
    /// How long each phase of the noisy-neighbour scenario is measured (quiet tenant alone,
    /// then beside the flood).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    noisy_duration: Duration,
    /// How long a flooding loop waits after a RATE_LIMITED or OVERLOADED answer (0: it
    /// ignores Retry-After and sends again at once, the worst neighbour).
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    noisy_backoff: Duration,
    /// Run the idle-sockets scenario instead of the load: this many WebSockets of one tenant,
    /// each with a live subscription; prints the server's memory per socket and the latency of
    /// live delivery to all of them.
    #[arg(long, default_value_t = 0)]
    idle_sockets: usize,
    /// Target a running server's GraphQL endpoint (needs --database-url and --secret).
    #[arg(long)]
    url: Option<String>,
    /// The database of the running server (provisioning tenants and the ceilings).
    #[arg(long)]
    database_url: Option<String>,
    /// The running server's HS256 secret (tokens are minted with it).
    #[arg(long)]
    secret: Option<String>,
    /// The running server's process id, to report its peak RSS.
    #[arg(long)]
    server_pid: Option<u32>,
    /// DATABASE_MAX_CONNECTIONS of the server this generator starts.
    #[arg(long, default_value_t = 16)]
    server_pool: u32,
    /// TOKIO_WORKER_THREADS of the server this generator starts (default: one per core).
    #[arg(long)]
    server_threads: Option<usize>,
    /// STREAM_CACHE_CAPACITY of the server this generator starts (0: every command reads its
    /// stream).
    #[arg(long, default_value_t = coursetrail::app::DEFAULT_STREAM_CACHE_CAPACITY)]
    stream_cache: usize,
    /// GROUP_COMMIT of the server this generator starts (false: every write commits alone).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    group_commit: bool,
    /// Run the private cluster with the tests' settings (fsync off): not a durable measurement.
    #[arg(long)]
    unsafe_fast: bool,
    /// After plain PostgreSQL, run the same load on a local Citus cluster (`scripts/citus`: a
    /// coordinator and two workers on this machine, production durability) and print both
    /// side by side. The ceilings are measured on plain PostgreSQL only.
    #[arg(long)]
    citus: bool,
    /// Internal: run as the server child process (configured by the environment, like
    /// `coursetrail serve`), built from this same checkout's library.
    #[arg(long, hide = true)]
    serve_child: bool,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.serve_child {
        // Like `coursetrail serve`'s `#[tokio::main]`: one worker per core.
        return tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
            .block_on(env::serve_child());
    }
    // The generator's own runtime: two workers, like the machine it is meant for.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    if !args.noisy.is_empty() && !args.growth.is_empty() {
        bail!("--noisy and --growth are separate runs: give one of them");
    }
    let env = Environment::start(&args, Engine::Plain).await?;
    if !args.noisy.is_empty() {
        let outcome = noisy::scenarios(&args, &env).await;
        env.stop().await?;
        return outcome;
    }
    if !args.growth.is_empty() {
        let outcome = growth::growth_check(&args, &env).await;
        env.stop().await?;
        return outcome;
    }
    if args.idle_sockets > 0 {
        let outcome = idle::idle_sockets(&args, &env).await;
        env.stop().await?;
        return outcome;
    }
    let plain = scenario::load_scenario(&args, &env).await;
    env.stop().await?;
    let plain = plain?;
    if !args.citus {
        return Ok(());
    }
    println!();
    let env = Environment::start(&args, Engine::Citus).await?;
    let on_citus = Args {
        no_ceilings: true,
        ..args.clone()
    };
    let citus = scenario::load_scenario(&on_citus, &env).await;
    env.stop().await?;
    print_comparison(&plain, &citus?);
    Ok(())
}

/// Plain PostgreSQL and Citus side by side, and their ratio against the targets.
fn print_comparison(plain: &Figures, citus: &Figures) {
    println!();
    println!(
        "same run, same load: plain PostgreSQL vs Citus (coordinator + 2 workers, one machine)"
    );
    println!(
        "  {:<18} {:>12} {:>10} {:>10}",
        "engine", "commands/s", "p50", "p99"
    );
    for (engine, figures) in [("plain PostgreSQL", plain), ("Citus", citus)] {
        println!(
            "  {engine:<18} {:>12.0} {:>10} {:>10}",
            figures.per_second,
            ms(figures.p50),
            ms(figures.p99)
        );
    }
    println!(
        "  Citus ÷ plain: {:.2} × commands/s (target ≥ 0.5); Citus p99 {} (target ≤ 50 ms)",
        citus.per_second / plain.per_second,
        ms(citus.p99)
    );
}
