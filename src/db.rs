//! Reaching the database: the configured `DATABASE_URL`, or the private cluster under the data
//! folder; the connection pool; the embedded migrations.

#[cfg(feature = "dev-tools")]
use crate::pgcluster::PrivateCluster;
use anyhow::Context;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgPool};
use std::str::FromStr;
use std::time::Duration;

/// The migrations in `migrations/`, embedded in the binary.
pub static MIGRATOR: Migrator = sqlx::migrate!();

/// The name of the database created in the private cluster.
pub const PRIVATE_DATABASE: &str = "coursetrail";

/// How long work waits for a pooled connection, by default, before the database counts as
/// unavailable: short, so that requests fail fast while the database is down (admission keeps
/// a healthy server's work from waiting for the pool that long).
pub const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_millis(1500);

/// Where the database is and how it is reached (from the configuration, `Config::database`).
#[derive(Debug, Clone)]
pub struct DatabaseSettings {
    /// `None`: run a private PostgreSQL cluster under `data_dir`.
    pub url: Option<String>,
    pub data_dir: std::path::PathBuf,
    pub max_connections: u32,
    /// Connections of the reports' own pool (at least 2: a rebuild replays on one and loads on
    /// another).
    pub report_connections: u32,
    pub acquire_timeout: Duration,
}

/// An open database, and the private cluster serving it, if we started one.
pub struct Database {
    pub pool: PgPool,
    /// Connections of their own for reports, rebuilds and exports.
    pub report_pool: PgPool,
    pub url: String,
    #[cfg(feature = "dev-tools")]
    pub cluster: Option<PrivateCluster>,
}

impl Database {
    /// Connects to `DATABASE_URL`, or starts (and, the first time, initialises) the private
    /// cluster under the data folder and creates its database (a build with the `dev-tools`
    /// feature; without it `DATABASE_URL` is required).
    pub async fn open(config: &DatabaseSettings) -> anyhow::Result<Self> {
        match &config.url {
            Some(url) => {
                let (pool, report_pool) = Self::pools(url, config).await?;
                Ok(Self {
                    pool,
                    report_pool,
                    url: url.clone(),
                    #[cfg(feature = "dev-tools")]
                    cluster: None,
                })
            }
            None => Self::open_private(config).await,
        }
    }

    #[cfg(feature = "dev-tools")]
    async fn open_private(config: &DatabaseSettings) -> anyhow::Result<Self> {
        let data_dir = config.data_dir.join("pg");
        let cluster = PrivateCluster::start_persistent(&data_dir)
            .await
            .with_context(|| {
                format!(
                    "starting the private PostgreSQL cluster in {}",
                    data_dir.display()
                )
            })?;
        let admin = connect(&cluster.url("postgres"), 1).await?;
        create_database_if_missing(&admin, PRIVATE_DATABASE).await?;
        admin.close().await;
        let url = cluster.url(PRIVATE_DATABASE);
        let (pool, report_pool) = Self::pools(&url, config).await?;
        Ok(Self {
            pool,
            report_pool,
            url,
            cluster: Some(cluster),
        })
    }

    #[cfg(not(feature = "dev-tools"))]
    async fn open_private(_config: &DatabaseSettings) -> anyhow::Result<Self> {
        anyhow::bail!(
            "set DATABASE_URL: this build has no private PostgreSQL cluster \
             (it was built without the `dev-tools` feature)"
        )
    }

    /// The main pool and the reports' pool, as configured.
    async fn pools(url: &str, config: &DatabaseSettings) -> anyhow::Result<(PgPool, PgPool)> {
        let timeout = config.acquire_timeout;
        let pool = connect_with(url, config.max_connections, timeout).await?;
        let report_pool = connect_with(url, config.report_connections.max(2), timeout).await?;
        Ok((pool, report_pool))
    }

    /// Closes the pools, then stops the private cluster cleanly.
    pub async fn close(self) -> anyhow::Result<()> {
        self.pool.close().await;
        self.report_pool.close().await;
        #[cfg(feature = "dev-tools")]
        if let Some(cluster) = self.cluster {
            cluster
                .stop()
                .await
                .context("stopping the private PostgreSQL cluster")?;
        }
        Ok(())
    }
}

/// A pooled connection idle at least this long is pinged before it is handed out.
pub const PING_AFTER_IDLE: Duration = Duration::from_secs(5);

/// A connection pool for tools and tests: waits up to 10 s for a connection.
pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<PgPool> {
    connect_with(url, max_connections, Duration::from_secs(10)).await
}

/// A connection pool whose connections are waited for up to `acquire_timeout`.
pub async fn connect_with(
    url: &str,
    max_connections: u32,
    acquire_timeout: Duration,
) -> anyhow::Result<PgPool> {
    connect_pinging(url, max_connections, acquire_timeout, PING_AFTER_IDLE).await
}

/// [`connect_with`], pinging a connection idle for `ping_after_idle` before handing it out.
pub async fn connect_pinging(
    url: &str,
    max_connections: u32,
    acquire_timeout: Duration,
    ping_after_idle: Duration,
) -> anyhow::Result<PgPool> {
    let options = PgConnectOptions::from_str(url)
        .context("DATABASE_URL is not a valid PostgreSQL URL")?
        .application_name("coursetrail");
    let options = if is_citus(&options).await? {
        // Citus cannot plan many statement shapes generically (docs/citus-rules.md, rule 19): keep
        // PostgreSQL's default plan choice there.
        options
    } else {
        // Every statement is prepared once per connection and names one tenant; `events` is
        // hash-partitioned. Under the default `auto` mode PostgreSQL costs the generic plan of
        // a partitioned table before pruning (all partitions) and so re-plans every execution
        // for its custom plan; the generic plan prunes at executor start-up just as well.
        // Measured: +27 % commands/s under load (docs/benchmarks.md).
        options.options([("plan_cache_mode", "force_generic_plan")])
    };
    pool_options(max_connections, acquire_timeout, ping_after_idle)
        .connect_with(options)
        .await
        .context("connecting to PostgreSQL")
}

/// The pools' settings: at most `max_connections`, waited for up to `acquire_timeout`.
fn pool_options(
    max_connections: u32,
    acquire_timeout: Duration,
    ping_after_idle: Duration,
) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(acquire_timeout)
        // sqlx pings every connection it hands out: a round trip per command, as many as the
        // command's own statements. A connection in steady use proves itself alive with every
        // statement, so only one that sat idle a while (a database restart, a cut firewall
        // flow) is pinged; a failed ping discards it and another is handed out.
        .test_before_acquire(false)
        .before_acquire(move |conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= ping_after_idle {
                    conn.ping().await?;
                }
                Ok(true)
            })
        })
}

/// A pool like `pool` (its settings, database, role and credentials) on another node of the
/// cluster, connecting on first use: for the writes sent to a Citus worker.
pub fn pool_on_node(pool: &PgPool, host: &str, port: u16) -> PgPool {
    let options = (*pool.connect_options()).clone().host(host).port(port);
    let settings = pool.options();
    pool_options(
        settings.get_max_connections(),
        settings.get_acquire_timeout(),
        PING_AFTER_IDLE,
    )
    .connect_lazy_with(options)
}

/// Whether the database is a Citus coordinator's (the `citus` extension is created in it).
async fn is_citus(options: &PgConnectOptions) -> anyhow::Result<bool> {
    let mut conn = sqlx::PgConnection::connect_with(options)
        .await
        .context("connecting to PostgreSQL")?;
    let citus = crate::store::placement::is_distributed(&mut conn).await?;
    conn.close().await?;
    Ok(citus)
}

/// Migrations whose text was rewritten after databases had applied it, with the SHA-384 of
/// the earlier text. Each makes the same schema as before; only how it runs changed (0004: one
/// statement, so that Citus can run it; see docs/decisions/0001-citus-write-path.md).
const REWRITTEN_MIGRATIONS: &[(i64, &str)] = &[(
    20261126000004,
    "fb268c753aaaf7ddd12475ef29f433dbd8531ea2d933a1bd3c1fca53ce68899408b8bcaf68b15b18fcb04e9d41b51214",
)];

/// Applies the pending migrations.
pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    accept_rewritten_migrations(pool).await?;
    MIGRATOR.run(pool).await.context("applying migrations")
}

/// A database that applied the earlier text of a rewritten migration records that text's
/// checksum, which sqlx would refuse as "modified": record the current text's instead. Only
/// that exact earlier checksum is replaced, so any other difference is still refused.
async fn accept_rewritten_migrations(pool: &PgPool) -> anyhow::Result<()> {
    let tracked: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
        .fetch_one(pool)
        .await?;
    if !tracked {
        return Ok(());
    }
    for (version, earlier) in REWRITTEN_MIGRATIONS {
        let Some(current) = MIGRATOR.iter().find(|m| m.version == *version) else {
            continue;
        };
        sqlx::query(
            "UPDATE _sqlx_migrations SET checksum = $1 \
             WHERE version = $2 AND checksum = decode($3, 'hex')",
        )
        .bind(current.checksum.as_ref())
        .bind(version)
        .bind(earlier)
        .execute(pool)
        .await
        .context("recording a rewritten migration's checksum")?;
    }
    Ok(())
}

/// `CREATE DATABASE` unless it exists (the name is a constant or a generated identifier, never
/// client input; it is quoted all the same).
pub async fn create_database_if_missing(admin: &PgPool, name: &str) -> anyhow::Result<()> {
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(name)
            .fetch_one(admin)
            .await?;
    if !exists {
        let quoted = format!("\"{}\"", name.replace('"', "\"\""));
        sqlx::query(&format!("CREATE DATABASE {quoted}"))
            .execute(admin)
            .await
            .with_context(|| format!("creating database {name}"))?;
    }
    Ok(())
}
