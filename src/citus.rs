//! A local Citus cluster for development, tests and benchmarks: `scripts/citus` starts and
//! stops the nodes (a coordinator and two workers on loopback); this module finds them and
//! makes distributed databases on them. A production cluster is set up by its operator; the
//! server only needs `DATABASE_URL` to name a database on its coordinator (README).

use crate::db;
use anyhow::{Context, bail};
use sqlx::PgPool;
use std::path::PathBuf;

/// The nodes of a cluster started by `scripts/citus`, by their `postgres` database URLs.
pub struct LocalCitus {
    script: PathBuf,
    /// The script's settings (`CITUS_DIR`, `CITUS_PORT`, `CITUS_FAST`, …).
    settings: Vec<(String, String)>,
    pub coordinator: String,
    pub workers: Vec<String>,
}

impl LocalCitus {
    /// Starts the cluster (creating it on first use; a running one is left as it is) with
    /// `scripts/citus` at `script` and the given settings.
    pub fn start(script: impl Into<PathBuf>, settings: &[(&str, &str)]) -> anyhow::Result<Self> {
        let mut citus = Self {
            script: script.into(),
            settings: settings
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            coordinator: String::new(),
            workers: Vec::new(),
        };
        citus.run(&["start"])?;
        citus.coordinator = citus.run(&["url"])?.trim().to_owned();
        citus.workers = citus
            .run(&["worker-urls"])?
            .lines()
            .map(str::to_owned)
            .collect();
        Ok(citus)
    }

    /// Stops every node.
    pub fn stop(&self) -> anyhow::Result<()> {
        self.run(&["stop"]).map(drop)
    }

    /// Starts the extra worker (a node of no database's cluster yet); returns its URL.
    pub fn add_worker(&self) -> anyhow::Result<String> {
        let port: u16 = self.run(&["add-worker"])?.trim().parse()?;
        let (host, _) = host_and_port(&self.coordinator)?;
        Ok(format!("postgres://coursetrail@{host}:{port}/postgres"))
    }

    fn run(&self, args: &[&str]) -> anyhow::Result<String> {
        let output = std::process::Command::new("bash")
            .arg(&self.script)
            .args(args)
            .envs(self.settings.iter().map(|(k, v)| (k, v)))
            .output()
            .with_context(|| format!("running {}", self.script.display()))?;
        if !output.status.success() {
            bail!(
                "scripts/citus {args:?} failed: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(String::from_utf8(output.stdout)?)
    }

    /// Every node, workers first (a clone of a distributed database must exist on the workers
    /// before the coordinator's copy of the metadata is used).
    pub fn nodes(&self) -> impl Iterator<Item = &String> {
        self.workers
            .iter()
            .chain(std::iter::once(&self.coordinator))
    }

    /// Creates database `name` on every node; returns its URL on the coordinator. From
    /// `template` (itself a distributed database on every node, closed to connections), or
    /// else empty, with the extension and the nodes registered.
    pub async fn create_database(
        &self,
        name: &str,
        template: Option<&str>,
    ) -> anyhow::Result<String> {
        for node in self.nodes() {
            let admin = db::connect(node, 1).await?;
            let from = template.map_or(String::new(), |t| format!(" TEMPLATE {t}"));
            sqlx::query(&format!("CREATE DATABASE {name}{from}"))
                .execute(&admin)
                .await
                .with_context(|| format!("creating database {name}"))?;
            admin.close().await;
            if template.is_none() {
                let database = db::connect(&database_url(node, name)?, 1).await?;
                sqlx::query("CREATE EXTENSION citus")
                    .execute(&database)
                    .await?;
                database.close().await;
            }
        }
        let url = database_url(&self.coordinator, name)?;
        let coordinator = db::connect(&url, 1).await?;
        match template {
            None => self.add_nodes(&coordinator).await?,
            // Citus's metadata names the database itself as a distributed object, by oid: a
            // clone's still names the template, which a node added later would look for.
            Some(_) => {
                sqlx::query(
                    "UPDATE pg_catalog.pg_dist_object \
                     SET objid = (SELECT oid FROM pg_database WHERE datname = current_database()) \
                     WHERE classid = 'pg_database'::regclass",
                )
                .execute(&coordinator)
                .await?;
            }
        }
        coordinator.close().await;
        Ok(url)
    }

    /// Registers the coordinator and the workers in a database's Citus metadata.
    pub async fn add_nodes(&self, coordinator: &PgPool) -> anyhow::Result<()> {
        let (host, port) = host_and_port(&self.coordinator)?;
        sqlx::query("SELECT citus_set_coordinator_host($1, $2)")
            .bind(&host)
            .bind(port)
            .execute(coordinator)
            .await?;
        for worker in &self.workers {
            let (host, port) = host_and_port(worker)?;
            sqlx::query("SELECT citus_add_node($1, $2)")
                .bind(&host)
                .bind(port)
                .execute(coordinator)
                .await?;
        }
        Ok(())
    }

    /// Closes database `name` to new connections on every node and ends the open ones (Citus's
    /// maintenance daemons keep some, and reconnect), so that it can serve as a template.
    pub async fn close_database(&self, name: &str) -> anyhow::Result<()> {
        for node in self.nodes() {
            let admin = db::connect(node, 1).await?;
            sqlx::query(&format!(
                "ALTER DATABASE {name} WITH ALLOW_CONNECTIONS false"
            ))
            .execute(&admin)
            .await?;
            admin.close().await;
        }
        for node in self.nodes() {
            let admin = db::connect(node, 1).await?;
            loop {
                let open: i64 = sqlx::query_scalar(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                     WHERE datname = $1",
                )
                .bind(name)
                .fetch_one(&admin)
                .await?;
                if open == 0 {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            admin.close().await;
        }
        Ok(())
    }

    /// Drops, on every node, the databases whose names are `LIKE pattern` (ending their
    /// connections).
    pub async fn drop_databases(&self, pattern: &str) -> anyhow::Result<()> {
        for node in self.nodes() {
            let admin = db::connect(node, 1).await?;
            let names: Vec<String> =
                sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE $1")
                    .bind(pattern)
                    .fetch_all(&admin)
                    .await?;
            for name in names {
                sqlx::query(&format!("DROP DATABASE \"{name}\" WITH (FORCE)"))
                    .execute(&admin)
                    .await?;
            }
            admin.close().await;
        }
        Ok(())
    }
}

/// A node's URL for another database (`…/postgres` → `…/name`).
pub fn database_url(postgres_url: &str, database: &str) -> anyhow::Result<String> {
    let base = postgres_url
        .strip_suffix("/postgres")
        .context("a node URL ends with /postgres")?;
    Ok(format!("{base}/{database}"))
}

/// The host and port of a node URL (`postgres://user@host:port/db`).
pub fn host_and_port(url: &str) -> anyhow::Result<(String, i32)> {
    let authority = url
        .split('@')
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .context("a node URL names user@host:port")?;
    let (host, port) = authority
        .rsplit_once(':')
        .context("a node URL has a port")?;
    Ok((host.to_owned(), port.parse()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_urls_are_taken_apart_and_retargeted() {
        let url = "postgres://coursetrail@127.0.0.1:57500/postgres";
        assert_eq!(host_and_port(url).unwrap(), ("127.0.0.1".to_owned(), 57500));
        assert_eq!(
            database_url(url, "test_1").unwrap(),
            "postgres://coursetrail@127.0.0.1:57500/test_1"
        );
        assert!(database_url("postgres://x@h:1/other", "t").is_err());
        assert!(host_and_port("postgres://h/db").is_err());
    }
}
