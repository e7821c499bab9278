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
//! 3. (2) with every writer on one tenant (the hot-tenant ceiling).

use anyhow::{Context, bail};
use clap::Parser;
use coursetrail::auth::{Role, TokenIssuer};
use coursetrail::citus::LocalCitus;
use coursetrail::db;
use coursetrail::domain::events::CourseStarted;
use coursetrail::domain::{Event, StreamType, TenantId};
use coursetrail::pgcluster::PrivateCluster;
use coursetrail::projections::ProjectionWrite;
use coursetrail::store::{self, Append, Metadata};
use futures_util::StreamExt;
use hdrhistogram::Histogram;
use rand::Rng;
use serde_json::{Value, json};
use sqlx::PgPool;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

#[path = "load/noisy.rs"]
mod noisy;
#[path = "load/scrape.rs"]
mod scrape;

const ISSUER: &str = "coursetrail";
const AUDIENCE: &str = "coursetrail";
const COURSES_PER_TENANT: usize = 3;
const PASSING_SCORE: i64 = 60;

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
    /// Skip the ceilings.
    #[arg(long)]
    no_ceilings: bool,
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

/// The settings of the private cluster for a durable measurement: production durability, and
/// enough WAL room that seeding millions of events does not checkpoint all the time.
const DURABLE_SETTINGS: &[&str] = &[
    "fsync=on",
    "synchronous_commit=on",
    "full_page_writes=on",
    "max_connections=300",
    "shared_buffers=256MB",
    "max_wal_size=8GB",
    "checkpoint_timeout=30min",
];

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.serve_child {
        // Like `coursetrail serve`'s `#[tokio::main]`: one worker per core.
        return tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
            .block_on(serve_child());
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
        let outcome = growth_check(&args, &env).await;
        env.stop().await?;
        return outcome;
    }
    let plain = load_scenario(&args, &env).await;
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
    let citus = load_scenario(&on_citus, &env).await;
    env.stop().await?;
    let citus = citus?;
    println!();
    println!(
        "same run, same load: plain PostgreSQL vs Citus (coordinator + 2 workers, one machine)"
    );
    println!(
        "  {:<18} {:>12} {:>10} {:>10}",
        "engine", "commands/s", "p50", "p99"
    );
    for (engine, figures) in [("plain PostgreSQL", &plain), ("Citus", &citus)] {
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
    Ok(())
}

/// The database engine a load runs on.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Engine {
    Plain,
    Citus,
}

/// What a load measured, for the side-by-side comparison.
struct Figures {
    per_second: f64,
    p50: u64,
    p99: u64,
}

/// Where the load goes: a server (ours or a running one) and its database.
struct Environment {
    url: String,
    pool: PgPool,
    issuer: TokenIssuer,
    durability: String,
    server: Option<tokio::process::Child>,
    server_pid: Option<u32>,
    cluster: Option<PrivateCluster>,
    citus: Option<(LocalCitus, std::path::PathBuf)>,
}

impl Environment {
    async fn start(args: &Args, engine: Engine) -> anyhow::Result<Self> {
        if let Some(url) = &args.url {
            let database_url = args
                .database_url
                .as_deref()
                .context("--url needs --database-url (tenants are created in the database)")?;
            let secret = args
                .secret
                .as_deref()
                .context("--url needs --secret (the server's JWT_SECRET)")?;
            let pool = db::connect(database_url, admin_pool_size(args)).await?;
            let durability = durability(&pool).await?;
            return Ok(Self {
                url: url.clone(),
                pool,
                issuer: TokenIssuer::new(secret, ISSUER, AUDIENCE),
                durability,
                server: None,
                server_pid: args.server_pid,
                cluster: None,
                citus: None,
            });
        }
        let (database_url, cluster, citus) = match engine {
            Engine::Plain => {
                let settings = if args.unsafe_fast {
                    PrivateCluster::TEST_SETTINGS
                } else {
                    DURABLE_SETTINGS
                };
                let cluster = PrivateCluster::start_ephemeral_with(settings).await?;
                let admin = db::connect(&cluster.url("postgres"), 1).await?;
                db::create_database_if_missing(&admin, "coursetrail_load").await?;
                admin.close().await;
                (cluster.url("coursetrail_load"), Some(cluster), None)
            }
            Engine::Citus => {
                // A cluster of its own (not the tests' one), stopped and removed at the end.
                let dir = std::env::temp_dir()
                    .join(format!("coursetrail-load-citus-{}", std::process::id()));
                let dir_setting = dir.to_string_lossy().into_owned();
                let mut settings =
                    vec![("CITUS_DIR", dir_setting.as_str()), ("CITUS_PORT", "57600")];
                if args.unsafe_fast {
                    settings.push(("CITUS_FAST", "1"));
                }
                let citus = LocalCitus::start(
                    concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/citus"),
                    &settings,
                )?;
                let url = citus.create_database("coursetrail_load", None).await?;
                (url, None, Some((citus, dir)))
            }
        };
        let pool = db::connect(&database_url, admin_pool_size(args)).await?;
        db::migrate(&pool).await?;
        let durability = durability(&pool).await?;

        let secret = format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple());
        let port = free_port()?;
        let log_path = std::env::temp_dir().join(format!("coursetrail-load-{port}.log"));
        let log = std::fs::File::create(&log_path)?;
        let mut server = tokio::process::Command::new(std::env::current_exe()?);
        server
            .arg("--serve-child")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("DATABASE_URL", &database_url)
            .env("JWT_SECRET", &secret)
            .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
            .env("DATABASE_MAX_CONNECTIONS", args.server_pool.to_string())
            .env("STREAM_CACHE_CAPACITY", args.stream_cache.to_string())
            .env("GROUP_COMMIT", args.group_commit.to_string())
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info,sqlx=warn".into()),
            )
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .kill_on_drop(true);
        if let Some(threads) = args.server_threads {
            server.env("TOKIO_WORKER_THREADS", threads.to_string());
        }
        let server = server.spawn().context("starting the coursetrail server")?;
        let server_pid = server.id();
        let env = Self {
            url: format!("http://127.0.0.1:{port}/graphql"),
            pool,
            issuer: TokenIssuer::new(&secret, ISSUER, AUDIENCE),
            durability,
            server: Some(server),
            server_pid,
            cluster,
            citus,
        };
        env.wait_ready(&log_path).await?;
        Ok(env)
    }

    async fn wait_ready(&self, log_path: &std::path::Path) -> anyhow::Result<()> {
        let health = self.url.replace("/graphql", "/ready");
        let client = reqwest::Client::new();
        for _ in 0..200 {
            if let Ok(response) = client.get(&health).send().await
                && response.status().is_success()
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let log = std::fs::read_to_string(log_path).unwrap_or_default();
        bail!("the server did not become ready; its log:\n{log}")
    }

    /// The server's peak resident set (VmHWM), in bytes.
    fn server_peak_rss(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.server_pid?)).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb * 1024)
    }

    async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(server) = &mut self.server {
            server.kill().await.ok();
        }
        self.pool.close().await;
        if let Some(cluster) = self.cluster.take() {
            cluster.stop().await?;
        }
        if let Some((citus, dir)) = self.citus.take() {
            citus.stop()?;
            std::fs::remove_dir_all(&dir).ok();
        }
        Ok(())
    }
}

fn admin_pool_size(args: &Args) -> u32 {
    u32::try_from(args.users).unwrap_or(64).clamp(4, 64) + 2
}

fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

async fn durability(pool: &PgPool) -> anyhow::Result<String> {
    let (fsync, sync_commit, version): (String, String, String) = sqlx::query_as(
        "SELECT current_setting('fsync'), current_setting('synchronous_commit'), \
         current_setting('server_version')",
    )
    .fetch_one(pool)
    .await?;
    Ok(format!(
        "PostgreSQL {version}, fsync={fsync}, synchronous_commit={sync_commit}"
    ))
}

/// The server child: what `coursetrail serve` does with `DATABASE_URL` and `JWT_SECRET` set
/// (same configuration, logging, pool, router), until its parent closes our stdin.
///
/// The generator runs itself as the server rather than `target/release/coursetrail`, because
/// that path may be shared with other checkouts' builds; this way the server measured is always
/// the code this bench was built from.
async fn serve_child() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,sqlx=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let config = coursetrail::config::Config::from_env()?;
    let url = config.database_url.as_deref().context("DATABASE_URL")?;
    let timeout = config.database_acquire_timeout;
    let pool = db::connect_with(url, config.database_max_connections, timeout).await?;
    let report_pool = db::connect_with(url, config.report_connections, timeout).await?;
    let settings = config.jwt_settings(None).context("JWT_SECRET")?;
    let verifier = coursetrail::auth::TokenVerifier::new(&settings)?;
    let listener = tokio::net::TcpListener::bind(config.listen_addr).await?;
    let state = coursetrail::server::configured_state(&config, pool, report_pool, verifier);
    let (gone, parent_gone) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        use std::io::Read;
        // Returns at EOF: the parent closed the pipe (or died).
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
        let _ = gone.send(());
    });
    let parent_gone = async {
        let _ = parent_gone.await;
    };
    coursetrail::server::serve_on(listener, state, parent_gone).await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Provisioning

/// One tenant as the virtual users see it.
struct Tenant {
    id: TenantId,
    admin: String,
    instructor: String,
    courses: Vec<Uuid>,
}

async fn provision(
    env: &Environment,
    count: usize,
    client: &Client,
) -> anyhow::Result<Vec<Tenant>> {
    let tenants: Vec<anyhow::Result<Tenant>> = futures_util::stream::iter(0..count)
        .map(|i| async move {
            let mut conn = env.pool.acquire().await?;
            let id = store::create_tenant(&mut conn, &format!("load tenant {i}")).await?;
            drop(conn);
            let day = Duration::from_secs(24 * 3600);
            let admin = env
                .issuer
                .mint(id.as_uuid(), Uuid::now_v7(), Role::Admin, day)?;
            let instructor =
                env.issuer
                    .mint(id.as_uuid(), Uuid::now_v7(), Role::Instructor, day)?;
            let mut courses = Vec::new();
            for c in 0..COURSES_PER_TENANT {
                let reply = client
                    .mutate(
                        &admin,
                        CREATE_COURSE,
                        json!({"input": {"code": format!("LOAD-{c}"), "title": "Load course",
                                          "passingScore": PASSING_SCORE}}),
                    )
                    .await;
                let id = reply
                    .data_str(&["createCourse", "course", "id"])
                    .and_then(|id| Uuid::parse_str(id).ok())
                    .with_context(|| format!("createCourse failed: {:?}", reply.code))?;
                courses.push(id);
            }
            Ok(Tenant {
                id,
                admin,
                instructor,
                courses,
            })
        })
        .buffer_unordered(8)
        .collect()
        .await;
    tenants.into_iter().collect()
}

// ---------------------------------------------------------------------------------------------
// The GraphQL client

const CREATE_COURSE: &str = "mutation($input: CreateCourseInput!) { createCourse(input: $input) \
     { course { id } position } }";
const REGISTER_TRAINEE: &str = "mutation($input: RegisterTraineeInput!) { \
     registerTrainee(input: $input) { trainee { id } position } }";
const REGISTER_FOR_COURSE: &str = "mutation($input: RegisterForCourseInput!) { \
     registerForCourse(input: $input) { enrollment { id status version } position } }";
const START_COURSE: &str = "mutation($input: EnrollmentInput!) { startCourse(input: $input) \
     { enrollment { id status version } position replayed } }";
const SUBMIT_TEST: &str = "mutation($input: SubmitTestInput!) { submitTest(input: $input) \
     { enrollment { id status version } submissionId position } }";
const GRADE_SUBMISSION: &str = "mutation($input: GradeSubmissionInput!) { \
     gradeSubmission(input: $input) { enrollment { id status bestScore version } position } }";
const COMPLETE_COURSE: &str = "mutation($input: EnrollmentInput!) { completeCourse(input: $input) \
     { enrollment { id status version } position } }";

#[derive(Clone)]
struct Client {
    http: reqwest::Client,
    url: Arc<str>,
}

/// One answer: `code` is `None` on success, else the first error's `extensions.code` (or a
/// transport / HTTP status description).
struct Reply {
    data: Value,
    code: Option<String>,
    replayed: bool,
}

impl Reply {
    fn data_str(&self, path: &[&str]) -> Option<&str> {
        path.iter()
            .try_fold(&self.data, |value, key| value.get(key))
            .and_then(Value::as_str)
    }
}

impl Client {
    fn new(url: &str, connections: usize) -> anyhow::Result<Self> {
        Ok(Self {
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(connections)
                .timeout(Duration::from_secs(30))
                .build()?,
            url: url.into(),
        })
    }

    async fn mutate(&self, token: &str, query: &str, variables: Value) -> Reply {
        let request = self
            .http
            .post(&*self.url)
            .bearer_auth(token)
            .header("accept", "application/graphql-response+json")
            .json(&json!({ "query": query, "variables": variables }));
        let response = match request.send().await {
            Ok(response) => response,
            Err(error) => return Reply::failed(format!("TRANSPORT ({error})")),
        };
        let status = response.status();
        let body: Value = match response.json().await {
            Ok(body) => body,
            Err(_) => return Reply::failed(format!("HTTP_{}", status.as_u16())),
        };
        let code = body["errors"].get(0).map(|e| {
            e["extensions"]["code"]
                .as_str()
                .unwrap_or("NO_CODE")
                .to_owned()
        });
        let data = body.get("data").cloned().unwrap_or(Value::Null);
        let replayed = data
            .as_object()
            .and_then(|o| o.values().next())
            .is_some_and(|payload| payload["replayed"] == Value::Bool(true));
        Reply {
            data,
            code,
            replayed,
        }
    }
}

impl Reply {
    fn failed(code: String) -> Self {
        Self {
            data: Value::Null,
            code: Some(code),
            replayed: false,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Virtual users

/// What one virtual user measured.
struct Tally {
    latency: Histogram<u64>,
    commands: u64,
    replayed: u64,
    codes: BTreeMap<String, u64>,
    lifecycles: u64,
}

impl Tally {
    fn new() -> Self {
        Self {
            // 1 µs to 60 s, 3 significant digits.
            latency: Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds"),
            commands: 0,
            replayed: 0,
            codes: BTreeMap::new(),
            lifecycles: 0,
        }
    }

    /// Tallies one answer if its request started inside the measured window.
    fn record(&mut self, window: Window, started: Instant, reply: &Reply) {
        if started >= window.from && started < window.to {
            let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
            self.latency.saturating_record(micros.max(1));
            self.commands += 1;
            if reply.replayed {
                self.replayed += 1;
            }
            if let Some(code) = &reply.code {
                *self.codes.entry(code.clone()).or_default() += 1;
            }
        }
    }

    fn merge(&mut self, other: Tally) {
        self.latency
            .add(&other.latency)
            .expect("same histogram bounds");
        self.commands += other.commands;
        self.replayed += other.replayed;
        self.lifecycles += other.lifecycles;
        for (code, n) in other.codes {
            *self.codes.entry(code).or_default() += n;
        }
    }
}

/// The measured window: commands started in it are counted.
#[derive(Clone, Copy)]
struct Window {
    from: Instant,
    to: Instant,
}

struct User<'a> {
    client: Client,
    issuer: &'a TokenIssuer,
    window: Window,
    tally: Tally,
    args: &'a Args,
}

impl User<'_> {
    /// Sends one mutation and tallies it if it started inside the measured window.
    async fn send(&mut self, token: &str, query: &str, variables: Value) -> Reply {
        let started = Instant::now();
        let reply = self.client.mutate(token, query, variables).await;
        self.tally.record(self.window, started, &reply);
        reply
    }

    /// register trainee → register for a course → start → submit → grade → complete, with the
    /// configured shares of duplicate registrations, invalid commands and retried commands.
    /// Returns early (the lifecycle abandoned) when a step that should succeed fails.
    async fn lifecycle(&mut self, tenant: &Tenant) -> anyhow::Result<()> {
        let (duplicate, invalid, retry, course) = {
            let mut rng = rand::rng();
            (
                rng.random_bool(self.args.duplicate_share),
                rng.random_bool(self.args.invalid_share),
                rng.random_bool(self.args.retry_share),
                tenant.courses[rng.random_range(0..tenant.courses.len())],
            )
        };
        let trainee_id = Uuid::now_v7();
        let reply = self
            .send(
                &tenant.admin,
                REGISTER_TRAINEE,
                trainee_registration(trainee_id),
            )
            .await;
        expect_ok(&reply)?;
        let trainee = self.issuer.mint(
            tenant.id.as_uuid(),
            trainee_id,
            Role::Trainee,
            Duration::from_secs(3600),
        )?;
        let register = json!({"input": {"courseId": course}});
        let reply = self
            .send(&trainee, REGISTER_FOR_COURSE, register.clone())
            .await;
        expect_ok(&reply)?;
        let enrollment = reply
            .data_str(&["registerForCourse", "enrollment", "id"])
            .context("no enrollment id")?
            .to_owned();
        if duplicate {
            self.send(&trainee, REGISTER_FOR_COURSE, register).await;
        }
        if invalid {
            // Completing before a passing grade: INVALID_STATE.
            self.send(
                &trainee,
                COMPLETE_COURSE,
                json!({"input": {"enrollmentId": enrollment}}),
            )
            .await;
        }
        let start = json!({"input": {"enrollmentId": enrollment, "commandId": Uuid::now_v7()}});
        expect_ok(&self.send(&trainee, START_COURSE, start.clone()).await)?;
        if retry {
            // A frontend retry after a timeout: the same commandId answers the same way.
            expect_ok(&self.send(&trainee, START_COURSE, start).await)?;
        }
        let reply = self
            .send(
                &trainee,
                SUBMIT_TEST,
                json!({"input": {"enrollmentId": enrollment,
                                  "answers": {"q1": "b", "q2": [1, 3], "q3": "because"}}}),
            )
            .await;
        expect_ok(&reply)?;
        let submission = reply
            .data_str(&["submitTest", "submissionId"])
            .context("no submission id")?
            .to_owned();
        let reply = self
            .send(
                &tenant.instructor,
                GRADE_SUBMISSION,
                json!({"input": {"enrollmentId": enrollment, "submissionId": submission,
                                  "score": 80}}),
            )
            .await;
        expect_ok(&reply)?;
        let reply = self
            .send(
                &trainee,
                COMPLETE_COURSE,
                json!({"input": {"enrollmentId": enrollment}}),
            )
            .await;
        expect_ok(&reply)?;
        if Instant::now() < self.window.to && Instant::now() >= self.window.from {
            self.tally.lifecycles += 1;
        }
        Ok(())
    }
}

/// `registerTrainee`'s variables for a new trainee (its own email).
fn trainee_registration(trainee_id: Uuid) -> Value {
    json!({"input": {"email": format!("{}@load.example", trainee_id.simple()),
                     "name": "Load Trainee", "traineeId": trainee_id}})
}

fn expect_ok(reply: &Reply) -> anyhow::Result<()> {
    match &reply.code {
        None => Ok(()),
        Some(code) => bail!("{code}"),
    }
}

struct LoadResult {
    tally: Tally,
    elapsed: Duration,
    /// Transactions the database committed and rolled back during the measured window (every
    /// statement of the write path is its own transaction), if the statistics could be read.
    transactions: Option<(i64, i64)>,
}

/// The database's committed and rolled-back transaction counters.
async fn transaction_counters(pool: &PgPool) -> Option<(i64, i64)> {
    sqlx::query_as(
        "SELECT xact_commit, xact_rollback FROM pg_stat_database WHERE datname = current_database()",
    )
    .fetch_one(pool)
    .await
    .ok()
}

async fn drive_load(
    args: &Args,
    env: &Environment,
    client: &Client,
    tenants: &[Tenant],
) -> LoadResult {
    let from = Instant::now() + args.warmup;
    let window = Window {
        from,
        to: from + args.duration,
    };
    let users = (0..args.users).map(|_| {
        let client = client.clone();
        async move {
            let mut user = User {
                client,
                issuer: &env.issuer,
                window,
                tally: Tally::new(),
                args,
            };
            while Instant::now() < window.to {
                let tenant = &tenants[rand::rng().random_range(0..tenants.len())];
                // An abandoned lifecycle was already tallied under its error code.
                let _ = user.lifecycle(tenant).await;
            }
            user.tally
        }
    });
    let counted = async {
        tokio::time::sleep_until(window.from.into()).await;
        let before = transaction_counters(&env.pool).await?;
        tokio::time::sleep_until(window.to.into()).await;
        // Backends report their counters at most once a second.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let after = transaction_counters(&env.pool).await?;
        Some((after.0 - before.0, after.1 - before.1))
    };
    let (tallies, transactions) = tokio::join!(futures_util::future::join_all(users), counted);
    let mut total = Tally::new();
    for tally in tallies {
        total.merge(tally);
    }
    LoadResult {
        tally: total,
        elapsed: args.duration,
        transactions,
    }
}

// ---------------------------------------------------------------------------------------------
// Ceilings

#[derive(Clone, Copy, PartialEq)]
enum CeilingKind {
    /// A bare single-row insert into `events`, one per transaction.
    BareInsert,
    /// The insert plus the tenant head increment, in one transaction.
    InsertAndHead,
}

struct CeilingResult {
    per_second: f64,
    latency: Histogram<u64>,
}

/// The ceiling statements. Each is one statement, i.e. one transaction and one round trip: the
/// least a client can do to commit one event.
const BARE_INSERT: &str = "INSERT INTO events (tenant_id, stream_id, version, position, event_id, \
     stream_type, event_type, schema_version, data, recorded_at, actor_id, actor_role, \
     correlation_id, trainee_id, course_id) \
     VALUES ($1, $2, 1, $3, $4, 'enrollment', 'CourseStarted', 1, '{}', now(), $5, 'trainee', \
     $4, $5, $6)";
const INSERT_AND_HEAD: &str = "WITH head AS (UPDATE tenant_heads SET last_position = \
     last_position + 1 WHERE tenant_id = $1 RETURNING last_position) \
     INSERT INTO events (tenant_id, stream_id, version, position, event_id, \
     stream_type, event_type, schema_version, data, recorded_at, actor_id, actor_role, \
     correlation_id, trainee_id, course_id) \
     SELECT $1, $2, 1, head.last_position, $3, 'enrollment', 'CourseStarted', 1, '{}', now(), \
     $4, 'trainee', $3, $4, $5 FROM head";

static BARE_POSITION: std::sync::atomic::AtomicI64 =
    std::sync::atomic::AtomicI64::new(1_000_000_000_000_000);

async fn ceiling(
    pool: &PgPool,
    kind: CeilingKind,
    tenants: &[TenantId],
    writers: usize,
    duration: Duration,
) -> anyhow::Result<CeilingResult> {
    let warm = Duration::from_secs(1);
    let from = Instant::now() + warm;
    let to = from + duration;
    let tasks = (0..writers).map(|_| async move {
        let mut conn = pool.acquire().await?;
        let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
        let mut count = 0u64;
        loop {
            let started = Instant::now();
            if started >= to {
                break;
            }
            let tenant = tenants[rand::rng().random_range(0..tenants.len())].as_uuid();
            let (stream, event, subject) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
            match kind {
                CeilingKind::BareInsert => {
                    // No head row here: positions come from a process-wide counter, far above
                    // anything a head hands out.
                    let position = BARE_POSITION.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    sqlx::query(BARE_INSERT)
                        .bind(tenant)
                        .bind(stream)
                        .bind(position)
                        .bind(event)
                        .bind(subject)
                        .bind(subject)
                        .execute(&mut *conn)
                        .await?;
                }
                CeilingKind::InsertAndHead => {
                    sqlx::query(INSERT_AND_HEAD)
                        .bind(tenant)
                        .bind(stream)
                        .bind(event)
                        .bind(subject)
                        .bind(subject)
                        .execute(&mut *conn)
                        .await?;
                }
            }
            if started >= from {
                count += 1;
                let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                latency.saturating_record(micros.max(1));
            }
        }
        anyhow::Ok((count, latency))
    });
    let mut total = 0;
    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    for result in futures_util::future::join_all(tasks).await {
        let (count, histogram) = result?;
        total += count;
        latency.add(&histogram)?;
    }
    Ok(CeilingResult {
        per_second: total as f64 / duration.as_secs_f64(),
        latency,
    })
}

async fn fresh_tenants(pool: &PgPool, count: usize, label: &str) -> anyhow::Result<Vec<TenantId>> {
    let mut conn = pool.acquire().await?;
    let mut tenants = Vec::with_capacity(count);
    for i in 0..count {
        tenants.push(store::create_tenant(&mut conn, &format!("{label} {i}")).await?);
    }
    Ok(tenants)
}

// ---------------------------------------------------------------------------------------------
// Scenarios

async fn load_scenario(args: &Args, env: &Environment) -> anyhow::Result<Figures> {
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
        Some(CeilingTenants {
            bare: fresh_tenants(&env.pool, args.tenants, "ceiling bare").await?,
            head: fresh_tenants(&env.pool, args.tenants, "ceiling head").await?,
            hot: fresh_tenants(&env.pool, 1, "ceiling hot").await?,
        })
    };
    let before = match &ceiling_tenants {
        Some(tenants) => Some(ceilings(args, env, tenants, "before the load").await?),
        None => None,
    };
    let result = drive_load(args, env, &client, &tenants).await;
    let after = match &ceiling_tenants {
        Some(tenants) => Some(ceilings(args, env, tenants, "after the load").await?),
        None => None,
    };
    let ceilings = before.zip(after).map(|(b, a)| {
        [
            (b[0] + a[0]) / 2.0,
            (b[1] + a[1]) / 2.0,
            (b[2] + a[2]) / 2.0,
        ]
    });
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
    if let Some([bare, head, hot]) = ceilings {
        println!(
            "ceilings, mean of before and after: (1) {bare:.0} (2) {head:.0} (3) {hot:.0} tx/s"
        );
        println!(
            "ratios: commands/s ÷ (1) = {:.2}, ÷ (2) = {:.2}, ÷ (3) = {:.2}",
            per_second / bare,
            per_second / head,
            per_second / hot
        );
        if args.tenants == 1 {
            println!(
                "  target (hot tenant): ≥ 0.70 × (3): {:.2}",
                per_second / hot
            );
        } else {
            println!(
                "  target (many tenants): ≥ 0.60 × (2): {:.2}, p99 ≤ 25 ms: {}",
                per_second / head,
                ms(tally.latency.value_at_quantile(0.99))
            );
        }
    }
    Ok(Figures {
        per_second,
        p50: tally.latency.value_at_quantile(0.50),
        p99: tally.latency.value_at_quantile(0.99),
    })
}

/// Prints the database and the server the load goes to.
fn print_setting(args: &Args, env: &Environment) {
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
fn codes_line(codes: &BTreeMap<String, u64>) -> String {
    if codes.is_empty() {
        return "none".to_owned();
    }
    let codes: Vec<String> = codes.iter().map(|(c, n)| format!("{c} {n}")).collect();
    codes.join(", ")
}

struct CeilingTenants {
    bare: Vec<TenantId>,
    head: Vec<TenantId>,
    hot: Vec<TenantId>,
}

/// Measures and prints the three ceilings; returns their rates.
async fn ceilings(
    args: &Args,
    env: &Environment,
    tenants: &CeilingTenants,
    when: &str,
) -> anyhow::Result<[f64; 3]> {
    let (writers, d) = (args.users, args.ceiling_duration);
    let bare = ceiling(
        &env.pool,
        CeilingKind::BareInsert,
        &tenants.bare,
        writers,
        d,
    )
    .await?;
    let head = ceiling(
        &env.pool,
        CeilingKind::InsertAndHead,
        &tenants.head,
        writers,
        d,
    )
    .await?;
    let hot = ceiling(
        &env.pool,
        CeilingKind::InsertAndHead,
        &tenants.hot,
        writers,
        d,
    )
    .await?;
    println!(
        "ceilings {when} ({writers} writers, one-statement transactions, {} each):",
        humantime::format_duration(d)
    );
    print_ceiling("(1) bare INSERT into events", &bare);
    print_ceiling(
        &format!("(2) INSERT + head bump, {} tenant(s)", args.tenants),
        &head,
    );
    print_ceiling("(3) INSERT + head bump, 1 tenant", &hot);
    Ok([bare.per_second, head.per_second, hot.per_second])
}

fn print_ceiling(name: &str, result: &CeilingResult) {
    println!(
        "  {name:<40} {:>8.0} tx/s   p50 {} p99 {}",
        result.per_second,
        ms(result.latency.value_at_quantile(0.50)),
        ms(result.latency.value_at_quantile(0.99)),
    );
}

fn ms(micros: u64) -> String {
    format!("{:.2} ms", micros as f64 / 1000.0)
}

/// Append latency (the real `store::append`, one per transaction, one writer) with N events
/// already stored, for each N; the seed is spread over 100 tenants by `INSERT … SELECT
/// generate_series`, and the appends go to one of them.
async fn growth_check(args: &Args, env: &Environment) -> anyhow::Result<()> {
    let mut sizes = args.growth.clone();
    sizes.sort_unstable();
    println!(
        "coursetrail growth check: append latency at {:?} stored events",
        sizes
    );
    println!("  database: {}", env.durability);
    let tenants = fresh_tenants(&env.pool, 100, "growth").await?;
    let target = tenants[0];
    let mut seeded: u64 = 0;
    let mut results: Vec<(u64, Histogram<u64>)> = Vec::new();
    for &size in &sizes {
        if size > seeded {
            let started = Instant::now();
            seed(&env.pool, &tenants, size - seeded).await?;
            seeded = size;
            println!(
                "  seeded to {size} events in {:.1} s",
                started.elapsed().as_secs_f64()
            );
        }
        let latency = time_appends(&env.pool, target, args.growth_samples).await?;
        println!(
            "  {size:>11} events: append p50 {} p90 {} p99 {} ({} appends)",
            ms(latency.value_at_quantile(0.50)),
            ms(latency.value_at_quantile(0.90)),
            ms(latency.value_at_quantile(0.99)),
            latency.len()
        );
        results.push((size, latency));
    }
    if let (Some((small, first)), Some((large, last))) = (results.first(), results.last()) {
        let ratio = last.value_at_quantile(0.5) as f64 / first.value_at_quantile(0.5).max(1) as f64;
        println!("ratio: p50 at {large} ÷ p50 at {small} = {ratio:.2} (target ≤ 1.30)");
    }
    Ok(())
}

/// Adds `count` events spread over `tenants`, each tenant's positions continuing its head row,
/// in chunks of one million per transaction. Each event's data is what its type carries, so
/// reports can replay them (`--noisy reports`).
async fn seed(pool: &PgPool, tenants: &[TenantId], count: u64) -> anyhow::Result<()> {
    let ids: Vec<Uuid> = tenants.iter().map(|t| t.as_uuid()).collect();
    let per_tenant_chunk = 1_000_000 / tenants.len() as i64;
    let mut remaining = count as i64;
    while remaining > 0 {
        let per_tenant = (remaining / tenants.len() as i64).clamp(1, per_tenant_chunk);
        let mut tx = pool.begin().await?;
        // A realistic mix: five-event enrollment streams with the usual event types and data.
        sqlx::query(
            "WITH t AS (SELECT tenant_id, last_position FROM tenant_heads \
                        WHERE tenant_id = ANY($1) FOR UPDATE) \
             INSERT INTO events (tenant_id, stream_id, version, position, event_id, stream_type, \
                 event_type, schema_version, data, recorded_at, actor_id, actor_role, \
                 correlation_id, trainee_id, course_id) \
             SELECT t.tenant_id, s.stream_id, ((p - 1) % 5) + 1, p, gen_random_uuid(), \
                 'enrollment', \
                 (ARRAY['CourseRegistered','CourseStarted','TestSubmitted','TestGraded', \
                        'CourseCompleted'])[((p - 1) % 5) + 1], \
                 1, (ARRAY[jsonb_build_object('courseId', t.tenant_id, 'traineeId', t.tenant_id), \
                           '{}'::jsonb, \
                           '{\"submissionId\": \"0190c3a0-0000-7000-8000-000000000000\", \
                             \"answers\": {\"q1\": \"b\"}}'::jsonb, \
                           '{\"submissionId\": \"0190c3a0-0000-7000-8000-000000000000\", \
                             \"score\": 80, \"passed\": true}'::jsonb, \
                           '{}'::jsonb])[((p - 1) % 5) + 1], \
                 now(), t.tenant_id, 'trainee', gen_random_uuid(), t.tenant_id, t.tenant_id \
             FROM t, generate_series(t.last_position + 1, t.last_position + $2::bigint) AS p, \
                 LATERAL (SELECT md5(t.tenant_id::text || ((p - 1) / 5)::text)::uuid \
                          AS stream_id) AS s",
        )
        .bind(&ids)
        .bind(per_tenant)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE tenant_heads SET last_position = last_position + $2 \
             WHERE tenant_id = ANY($1)",
        )
        .bind(&ids)
        .bind(per_tenant)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        remaining -= per_tenant * tenants.len() as i64;
    }
    sqlx::query("VACUUM ANALYZE events").execute(pool).await?;
    sqlx::query("CHECKPOINT").execute(pool).await?;
    Ok(())
}

async fn time_appends(
    pool: &PgPool,
    tenant: TenantId,
    samples: usize,
) -> anyhow::Result<Histogram<u64>> {
    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let events = [Event::CourseStarted(CourseStarted {})];
    let result = json!({});
    for i in 0..samples + 200 {
        let metadata = Metadata {
            actor_id: Uuid::now_v7(),
            actor_role: Role::Trainee,
            command_id: Some(Uuid::now_v7()),
            correlation_id: Uuid::now_v7(),
            causation_id: None,
        };
        let started = Instant::now();
        let mut conn = pool.acquire().await?;
        store::append_with(
            &mut conn,
            tenant,
            Append {
                stream_id: Uuid::now_v7(),
                stream_type: StreamType::Enrollment,
                expected_version: 0,
                events: &events,
                recorded_at: chrono::Utc::now(),
                metadata: &metadata,
                trainee_id: Some(metadata.actor_id),
                course_id: None,
                command: Some(("startCourse", &result)),
            },
            ProjectionWrite::Nothing,
        )
        .await?;
        // The first appends warm the connection's statement cache and the index pages.
        if i >= 200 {
            let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
            latency.saturating_record(micros.max(1));
        }
    }
    Ok(latency)
}
