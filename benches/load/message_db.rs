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

use super::ceilings::{Measured, measure};
use super::env::Environment;
use anyhow::{Context, bail};
use rand::Rng;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgConnection, PgPool};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;
use std::time::Duration;
use uuid::Uuid;

/// The Message DB release measured.
pub const VERSION: &str = "1.3.1";

/// Message DB installed in the load's cluster, with a connection per writer.
pub struct MessageDb {
    pool: PgPool,
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

    /// `writers` clients calling `write_message` in a loop ([`measure`]); each stream is new,
    /// in one of `categories` categories (Message DB serialises the writes of one category, as
    /// coursetrail serialises a tenant's).
    pub async fn measure(
        &self,
        writers: usize,
        categories: usize,
        duration: Duration,
    ) -> anyhow::Result<Measured> {
        measure(
            &self.pool,
            writers,
            duration,
            async |conn: &mut PgConnection| {
                let category = rand::rng().random_range(0..categories.max(1));
                let stream = format!("tenant{category}-{}", Uuid::now_v7().simple());
                let data = serde_json::json!({ "enrollmentId": Uuid::now_v7() });
                let metadata = serde_json::json!({ "actorRole": "trainee" });
                sqlx::query("SELECT message_store.write_message($1, $2, 'CourseStarted', $3, $4)")
                    .bind(Uuid::now_v7().to_string())
                    .bind(stream)
                    .bind(data)
                    .bind(metadata)
                    .execute(conn)
                    .await?;
                Ok(())
            },
        )
        .await
    }

    pub async fn close(self) {
        self.pool.close().await;
    }
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
