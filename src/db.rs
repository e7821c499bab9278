//! Reaching the database: the configured `DATABASE_URL`, or the private cluster under the data
//! folder; the connection pool; the embedded migrations.

use crate::config::Config;
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

/// An open database, and the private cluster serving it, if we started one.
pub struct Database {
    pub pool: PgPool,
    pub url: String,
    pub cluster: Option<PrivateCluster>,
}

impl Database {
    /// Connects to `DATABASE_URL`, or starts (and, the first time, initialises) the private
    /// cluster under the data folder and creates its database.
    pub async fn open(config: &Config) -> anyhow::Result<Self> {
        match &config.database_url {
            Some(url) => {
                let pool = connect(url, config.database_max_connections).await?;
                Ok(Self {
                    pool,
                    url: url.clone(),
                    cluster: None,
                })
            }
            None => {
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
                let pool = connect(&url, config.database_max_connections).await?;
                Ok(Self {
                    pool,
                    url,
                    cluster: Some(cluster),
                })
            }
        }
    }

    /// Closes the pool, then stops the private cluster cleanly.
    pub async fn close(self) -> anyhow::Result<()> {
        self.pool.close().await;
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
const PING_AFTER_IDLE: Duration = Duration::from_secs(5);

/// A connection pool.
pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<PgPool> {
    let options = PgConnectOptions::from_str(url)
        .context("DATABASE_URL is not a valid PostgreSQL URL")?
        .application_name("coursetrail")
        // Every statement is prepared once per connection and names one tenant; `events` is
        // hash-partitioned. Under the default `auto` mode PostgreSQL costs the generic plan of a
        // partitioned table before pruning (all partitions) and so re-plans every execution
        // for its custom plan; the generic plan prunes at executor start-up just as well.
        // Measured: +27 % commands/s under load (see README, performance).
        .options([("plan_cache_mode", "force_generic_plan")]);
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(10))
        // sqlx pings every connection it hands out: a round trip per command, as many as the
        // command's own statements. A connection in steady use proves itself alive with every
        // statement, so only one that sat idle a while (a database restart, a cut firewall
        // flow) is pinged; a failed ping discards it and another is handed out.
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= PING_AFTER_IDLE {
                    conn.ping().await?;
                }
                Ok(true)
            })
        })
        .connect_with(options)
        .await
        .context("connecting to PostgreSQL")
}

/// Applies the pending migrations.
pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    MIGRATOR.run(pool).await.context("applying migrations")
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
