//! Where the load goes: the database (a private cluster, a local Citus cluster, or a running
//! server's) and the server (a child process of this executable, or a running one), and the
//! server child itself.
//!
//! The server runs as a child process so that its peak RSS can be read from `/proc` apart
//! from the generator's; it is this executable run with `--serve-child`, which starts the
//! server through the same wiring as `coursetrail serve` (configuration from the environment,
//! [`coursetrail::server::configured_state`]).

use super::Args;
use super::common::{self, Tokens};
use anyhow::{Context, bail};
use coursetrail::citus::LocalCitus;
use coursetrail::config::Config;
use coursetrail::db::{self, Database};
use coursetrail::pgcluster::PrivateCluster;
use coursetrail::server;
use sqlx::PgPool;
use std::path::{Path, PathBuf};
use std::time::Duration;

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

/// The database the generator creates in a cluster of its own.
const DATABASE: &str = "coursetrail_load";

/// The database engine a load runs on.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Plain,
    Citus,
}

/// Where the load goes: a server (ours or a running one) and its database.
pub struct Environment {
    pub url: String,
    pub pool: PgPool,
    pub tokens: Tokens,
    pub durability: String,
    pub server: Option<tokio::process::Child>,
    server_pid: Option<u32>,
    cluster: Option<PrivateCluster>,
    citus: Option<(LocalCitus, PathBuf)>,
}

/// A database of the generator's own and what runs it.
struct OwnDatabase {
    url: String,
    cluster: Option<PrivateCluster>,
    citus: Option<(LocalCitus, PathBuf)>,
}

impl Environment {
    pub async fn start(args: &Args, engine: Engine) -> anyhow::Result<Self> {
        if let Some(url) = &args.url {
            return Self::running(args, url).await;
        }
        let database = match engine {
            Engine::Plain => private_database(args).await?,
            Engine::Citus => citus_database(args).await?,
        };
        let pool = common::migrated_pool(&database.url, admin_pool_size(args)).await?;
        let durability = durability(&pool).await?;
        let secret = common::random_secret();
        let port = free_port()?;
        let log_path = std::env::temp_dir().join(format!("coursetrail-load-{port}.log"));
        let server = spawn_server(args, &database.url, &secret, port, &log_path)?;
        let env = Self {
            url: format!("http://127.0.0.1:{port}/graphql"),
            pool,
            tokens: Tokens::new(&secret),
            durability,
            server_pid: server.id(),
            server: Some(server),
            cluster: database.cluster,
            citus: database.citus,
        };
        env.wait_ready(&log_path).await?;
        Ok(env)
    }

    /// A running server at `url` (`--url`), with its database and secret.
    async fn running(args: &Args, url: &str) -> anyhow::Result<Self> {
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
        Ok(Self {
            url: url.to_owned(),
            pool,
            tokens: Tokens::new(secret),
            durability,
            server: None,
            server_pid: args.server_pid,
            cluster: None,
            citus: None,
        })
    }

    /// The generator's own plain cluster, if the load runs on one.
    pub fn private_cluster(&self) -> Option<&PrivateCluster> {
        self.cluster.as_ref()
    }

    async fn wait_ready(&self, log_path: &Path) -> anyhow::Result<()> {
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

    /// The server's resident set now (VmRSS), in bytes.
    pub fn server_rss(&self) -> Option<u64> {
        proc_status_kb(self.server_pid?, "VmRSS:").map(|kb| kb * 1024)
    }

    /// The server's peak resident set (VmHWM), in bytes.
    pub fn server_peak_rss(&self) -> Option<u64> {
        proc_status_kb(self.server_pid?, "VmHWM:").map(|kb| kb * 1024)
    }

    pub async fn stop(mut self) -> anyhow::Result<()> {
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

/// A private cluster, durable unless `--unsafe-fast`.
async fn private_database(args: &Args) -> anyhow::Result<OwnDatabase> {
    let settings = if args.unsafe_fast {
        PrivateCluster::TEST_SETTINGS
    } else {
        DURABLE_SETTINGS
    };
    let (cluster, url) = common::private_cluster(settings, DATABASE).await?;
    Ok(OwnDatabase {
        url,
        cluster: Some(cluster),
        citus: None,
    })
}

/// A local Citus cluster of its own (not the tests' one), stopped and removed at the end.
async fn citus_database(args: &Args) -> anyhow::Result<OwnDatabase> {
    let dir = std::env::temp_dir().join(format!("coursetrail-load-citus-{}", std::process::id()));
    let dir_setting = dir.to_string_lossy().into_owned();
    let mut settings = vec![("CITUS_DIR", dir_setting.as_str()), ("CITUS_PORT", "57600")];
    if args.unsafe_fast {
        settings.push(("CITUS_FAST", "1"));
    }
    let citus = LocalCitus::start(
        concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/citus"),
        &settings,
    )?;
    let url = citus.create_database(DATABASE, None).await?;
    Ok(OwnDatabase {
        url,
        cluster: None,
        citus: Some((citus, dir)),
    })
}

/// Starts this executable as the server (`--serve-child`), configured by its environment as
/// `coursetrail serve` is, its log in `log_path`.
fn spawn_server(
    args: &Args,
    database_url: &str,
    secret: &str,
    port: u16,
    log_path: &Path,
) -> anyhow::Result<tokio::process::Child> {
    let log = std::fs::File::create(log_path)?;
    let mut server = tokio::process::Command::new(std::env::current_exe()?);
    server
        .arg("--serve-child")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("DATABASE_URL", database_url)
        .env("JWT_SECRET", secret)
        .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("DATABASE_MAX_CONNECTIONS", args.server_pool.to_string())
        .env("STREAM_CACHE_CAPACITY", args.stream_cache.to_string())
        .env("GROUP_COMMIT", args.group_commit.to_string())
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info,sqlx=warn".into()),
        )
        .envs(
            super::idle::server_settings(args.idle_sockets)
                .into_iter()
                .filter(|_| args.idle_sockets > 0),
        )
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .kill_on_drop(true);
    if let Some(threads) = args.server_threads {
        server.env("TOKIO_WORKER_THREADS", threads.to_string());
    }
    server.spawn().context("starting the coursetrail server")
}

pub fn admin_pool_size(args: &Args) -> u32 {
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
/// (same configuration, logging, pools, wiring), until its parent closes our stdin.
///
/// The generator runs itself as the server rather than `target/release/coursetrail`, because
/// that path may be shared with other checkouts' builds; this way the server measured is always
/// the code this bench was built from.
pub async fn serve_child() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,sqlx=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let config = Config::from_env()?;
    // Without it, `Database::open` would start a private cluster of the child's own.
    config.database_url.as_deref().context("DATABASE_URL")?;
    let database = Database::open(&config.database()).await?;
    let verifier = server::verifier(&config, None)?;
    let listener = tokio::net::TcpListener::bind(config.listen_addr).await?;
    let state = server::configured_state(
        &config,
        database.pool.clone(),
        database.report_pool.clone(),
        verifier,
    );
    server::serve_on(listener, state, parent_gone()).await?;
    database.close().await
}

/// Completes when the parent closes our stdin (or dies).
async fn parent_gone() {
    let (gone, parent_gone) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        use std::io::Read;
        // Returns at EOF: the parent closed the pipe (or died).
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
        let _ = gone.send(());
    });
    let _ = parent_gone.await;
}

/// A `kB` field of `/proc/<pid>/status`.
fn proc_status_kb(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
