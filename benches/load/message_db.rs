//! Message DB (Eventide's PostgreSQL message store) as a baseline: its `write_message`, each
//! call one transaction on a connection of its own, with as many clients as the load has users,
//! in the same cluster and the same run, the way `pgbench -M prepared` would time it.
//!
//! `write_message` is what an event store on PostgreSQL does for one event: a category lock, a
//! stream-version read, an insert. A coursetrail command does more (a projection row, a command
//! record, a tenant position), so the comparison says what that costs.
//!
//! Its install scripts come from the npm package `@eventide/message-db` (version
//! [`VERSION`]): `MESSAGE_DB_DIR` names an unpacked `database/` folder; otherwise `npm pack`
//! fetches the package into `target/message-db/`. Installing runs its `install.sh` (psql and
//! createdb against the private cluster) into a database of its own, `message_store`.

use super::common::{self, ms};
use super::env::Environment;
use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use rand::Rng;
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// The Message DB release measured.
pub const VERSION: &str = "1.3.1";

/// Message DB installed in the load's cluster, with a connection per writer.
pub struct MessageDb {
    pool: PgPool,
}

/// What the baseline measured.
pub struct Measured {
    pub per_second: f64,
    pub latency: Histogram<u64>,
}

impl MessageDb {
    /// Installs Message DB in `env`'s private cluster (once per cluster).
    pub async fn install(env: &Environment, writers: usize) -> anyhow::Result<Self> {
        let cluster = env
            .private_cluster()
            .context("the Message DB baseline needs the generator's own cluster")?;
        let scripts = scripts_dir()?;
        let status = Command::new("bash")
            .arg(scripts.join("install.sh"))
            .env("PGHOST", cluster.socket_dir())
            .env("PGPORT", cluster.port().to_string())
            .env("PGUSER", cluster.superuser())
            .stdout(std::process::Stdio::null())
            .status()
            .context("running Message DB's install.sh (needs psql and createdb)")?;
        if !status.success() {
            bail!("Message DB's install.sh failed: {status}");
        }
        let options = PgConnectOptions::from_str(&cluster.url("message_store"))?
            .options([("search_path", "message_store,public")]);
        let pool = PgPoolOptions::new()
            .max_connections(writers as u32)
            .connect_with(options)
            .await?;
        Ok(Self { pool })
    }

    /// `writers` clients calling `write_message` in a loop for a second of warm-up, then
    /// `duration` measured; each stream is new, in one of `categories` categories (Message DB
    /// serialises the writes of one category, as coursetrail serialises a tenant's).
    pub async fn measure(
        &self,
        writers: usize,
        categories: usize,
        duration: Duration,
    ) -> anyhow::Result<Measured> {
        let from = Instant::now() + Duration::from_secs(1);
        let to = from + duration;
        let tasks = (0..writers).map(|_| self.writer(categories, from, to));
        let mut total = 0;
        let mut latency = common::latency_histogram();
        for result in futures_util::future::join_all(tasks).await {
            let (count, histogram) = result?;
            total += count;
            latency.add(&histogram)?;
        }
        Ok(Measured {
            per_second: total as f64 / duration.as_secs_f64(),
            latency,
        })
    }

    async fn writer(
        &self,
        categories: usize,
        from: Instant,
        to: Instant,
    ) -> anyhow::Result<(u64, Histogram<u64>)> {
        let mut conn = self.pool.acquire().await?;
        let mut latency = common::latency_histogram();
        let mut count = 0u64;
        loop {
            let started = Instant::now();
            if started >= to {
                break;
            }
            let category = rand::rng().random_range(0..categories.max(1));
            let stream = format!("tenant{category}-{}", Uuid::now_v7().simple());
            let data = serde_json::json!({ "enrollmentId": Uuid::now_v7() });
            let metadata = serde_json::json!({ "actorRole": "trainee" });
            sqlx::query("SELECT message_store.write_message($1, $2, 'CourseStarted', $3, $4)")
                .bind(Uuid::now_v7().to_string())
                .bind(stream)
                .bind(data)
                .bind(metadata)
                .execute(&mut *conn)
                .await?;
            if started >= from {
                count += 1;
                common::record_since(&mut latency, started);
            }
        }
        Ok((count, latency))
    }

    pub async fn close(self) {
        self.pool.close().await;
    }
}

/// Prints one measurement as a line of the ceilings' table.
pub fn print(categories: usize, measured: &Measured) {
    println!(
        "  {:<40} {:>8.0} tx/s   p50 {} p99 {}",
        format!("(4) Message DB write_message, {categories} cat."),
        measured.per_second,
        ms(measured.latency.value_at_quantile(0.50)),
        ms(measured.latency.value_at_quantile(0.99)),
    );
}

/// The unpacked `database/` folder of the npm package.
fn scripts_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("MESSAGE_DB_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/message-db");
    let scripts = root.join("package/database");
    if scripts.join("install.sh").exists() {
        return Ok(scripts);
    }
    std::fs::create_dir_all(&root)?;
    let package = format!("@eventide/message-db@{VERSION}");
    run(Command::new("npm")
        .args(["pack", &package, "--pack-destination"])
        .arg(&root))
    .context("fetching Message DB with npm (set MESSAGE_DB_DIR to use an unpacked copy)")?;
    let archive = root.join(format!("eventide-message-db-{VERSION}.tgz"));
    run(Command::new("tar")
        .arg("xzf")
        .arg(&archive)
        .arg("-C")
        .arg(&root))?;
    Ok(scripts)
}

fn run(command: &mut Command) -> anyhow::Result<()> {
    let output = command.output()?;
    if !output.status.success() {
        bail!(
            "{command:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}
