//! Private PostgreSQL cluster started from the PostgreSQL binaries installed on the machine.
//!
//! Owns: locating `initdb`/`postgres`, creating a data directory (persistent or ephemeral),
//! starting `postgres` on a unix socket only, waiting until it accepts connections, and
//! making sure it shuts down when this process exits (even without `Drop`). It does not
//! create databases, roles or schemas (callers do that over SQL), does not open TCP ports,
//! and does not manage clusters it did not start.
//!
//! This file is the public face ([`PrivateCluster`], [`ClusterError`]) and the two ways to
//! start a cluster; the steps are in the submodules:
//!
//! - `binaries`: finding `initdb` and `postgres` on the machine;
//! - `datadir`: `initdb`, the data directory's mode and owner, where the socket and log go;
//! - `run_as`: the unprivileged account PostgreSQL runs as when we are root;
//! - `supervisor`: spawning `postgres` under a shell whose stdin pipe is its lifeline;
//! - `lifecycle`: readiness, shutdown, cleanup and the log tail quoted in errors;
//! - `error`: [`ClusterError`].

mod binaries;
mod datadir;
mod error;
mod lifecycle;
mod run_as;
mod supervisor;

pub use error::ClusterError;

use binaries::find_binaries;
use datadir::{Layout, create_private_dir, prepare_data_dir, run_initdb, socket_dir_for};
use error::io_err;
use run_as::{check_traversable, choose_run_as};
use std::fmt::Write as _;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin};
use supervisor::{live_postmaster, spawn_cluster};

/// Superuser role created by `initdb`.
const SUPERUSER: &str = "coursetrail";
/// Only names the socket file (`.s.PGSQL.<port>`); no TCP listener is opened.
const PORT: u16 = 5432;

/// A running PostgreSQL server owned by this process, reachable over a unix socket.
///
/// The server shuts down when [`PrivateCluster::stop`] is called, when the value is dropped,
/// or when this process dies (the supervisor notices its stdin pipe closing).
#[derive(Debug)]
pub struct PrivateCluster {
    /// `/bin/sh` supervisor; its exit status is postgres's. A std (not tokio) child so the
    /// cluster is not tied to the runtime that started it (tests share one across runtimes)
    /// and is never killed on drop, which would skip the graceful path and the cleanup.
    supervisor: Child,
    /// Write end of the supervisor's stdin; closing it requests a fast shutdown.
    lifeline: Option<ChildStdin>,
    data_dir: PathBuf,
    socket_dir: PathBuf,
    log_path: PathBuf,
    /// Log length before this run, so error tails only show this run's messages.
    log_offset: u64,
    /// `postmaster.pid` content from before the spawn: a crashed server leaves one that
    /// still says "ready", so only a rewritten file means our postgres is up.
    stale_pid_file: Option<String>,
    /// Directories we created that must disappear with the cluster.
    owned_dirs: Vec<PathBuf>,
}

impl PrivateCluster {
    /// Starts a cluster whose data lives in `data_dir` and survives restarts.
    ///
    /// Runs `initdb` only if `data_dir/PG_VERSION` does not exist. A stale `postmaster.pid`
    /// left by a crash is handled by PostgreSQL; a live postmaster on the directory yields
    /// [`ClusterError::AlreadyRunning`].
    pub async fn start_persistent(data_dir: &Path) -> Result<Self, ClusterError> {
        let bins = find_binaries().await?;
        let data_dir = std::path::absolute(data_dir)
            .map_err(io_err(format!("resolving {}", data_dir.display())))?;
        let initialised = data_dir.join("PG_VERSION");
        // An existing cluster keeps running as whoever owns it (like pg_ctlcluster).
        let owner = fs::metadata(&initialised).ok().map(|m| (m.uid(), m.gid()));
        let run_as = choose_run_as(owner)?;
        if let Some(user) = &run_as {
            // Before creating anything, then again for the parents we create.
            check_traversable(&data_dir, user)?;
        }
        if owner.is_none() {
            prepare_data_dir(&data_dir, run_as.as_ref())?;
        }
        if let Some(user) = &run_as {
            check_traversable(&data_dir, user)?;
        }
        if owner.is_none() {
            run_initdb(&bins, &data_dir, run_as.as_ref(), false).await?;
        }
        if let Some(pid) = live_postmaster(&data_dir) {
            return Err(ClusterError::AlreadyRunning { data_dir, pid });
        }

        let mut owned_dirs = Vec::new();
        let socket_dir = socket_dir_for(&data_dir, run_as.as_ref(), &mut owned_dirs)?;
        let layout = Layout {
            log_path: data_dir.join("postgres.log"),
            data_dir,
            socket_dir,
            owned_dirs,
        };
        let cluster = spawn_cluster(&bins, layout, run_as.as_ref(), &[])?;
        cluster.wait_ready().await
    }

    /// Starts a throw-away cluster in a fresh directory under [`std::env::temp_dir`], tuned
    /// for tests (no fsync, 300 connections). The directory is deleted when it stops.
    pub async fn start_ephemeral() -> Result<Self, ClusterError> {
        Self::start_ephemeral_with(Self::TEST_SETTINGS).await
    }

    /// The settings of [`Self::start_ephemeral`]: fast and not crash-safe, fine for tests.
    pub const TEST_SETTINGS: &'static [&'static str] = &[
        "fsync=off",
        "synchronous_commit=off",
        "full_page_writes=off",
        "max_connections=300",
        "shared_buffers=128MB",
    ];

    /// Like [`Self::start_ephemeral`], with these `name=value` server settings instead of the
    /// test ones (the load generator measures with production durability: fsync on).
    pub async fn start_ephemeral_with(settings: &[&str]) -> Result<Self, ClusterError> {
        let bins = find_binaries().await?;
        let run_as = choose_run_as(None)?;
        let base = std::path::absolute(std::env::temp_dir())
            .map_err(io_err("resolving the temporary directory"))?;
        let root = base.join(format!(
            "coursetrail-pg-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        if let Some(user) = &run_as {
            check_traversable(&root, user)?;
        }
        create_private_dir(&root, run_as.as_ref())?;
        let mut owned_dirs = vec![root.clone()];

        let data_dir = root.join("data");
        let prepared = match run_initdb(&bins, &data_dir, run_as.as_ref(), true).await {
            Ok(()) => socket_dir_for(&root, run_as.as_ref(), &mut owned_dirs),
            Err(e) => Err(e),
        };
        let socket_dir = match prepared {
            Ok(dir) => dir,
            Err(e) => {
                // Nothing is running yet, so plain removal is the whole cleanup.
                let _ = fs::remove_dir_all(&root);
                return Err(e);
            }
        };
        let layout = Layout {
            data_dir,
            socket_dir,
            log_path: root.join("postgres.log"),
            owned_dirs,
        };
        let cluster = spawn_cluster(&bins, layout, run_as.as_ref(), settings)?;
        cluster.wait_ready().await
    }

    /// Directory containing the server's unix socket (`.s.PGSQL.<port>`).
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    /// Port number; it only names the socket file, no TCP port is opened.
    pub fn port(&self) -> u16 {
        PORT
    }

    /// Name of the superuser role, which authenticates with `trust`.
    pub fn superuser(&self) -> &str {
        SUPERUSER
    }

    /// Data directory of the cluster.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Connection URL for `database`, understood by sqlx (`?host=<socket dir>`) and libpq.
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://{SUPERUSER}@localhost:{PORT}/{}?host={}",
            percent_encode(database.as_bytes(), false),
            percent_encode(self.socket_dir.as_os_str().as_bytes(), true)
        )
    }

    /// Fast shutdown (open sessions are terminated); waits for postgres to exit and removes
    /// the directories owned by the cluster (the ephemeral data directory).
    pub async fn stop(mut self) -> Result<(), ClusterError> {
        let result = self.shutdown().await;
        if let Err(ClusterError::StopTimeout { .. }) = result {
            // Still running: deleting its files now would only make matters worse.
            return result;
        }
        let removed = self.remove_owned_dirs();
        result.and(removed)
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters (and `/` if asked).
fn percent_encode(bytes: &[u8], keep_slash: bool) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || (keep_slash && b == b'/') {
            out.push(char::from(b));
        } else {
            // Writing to a String cannot fail.
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_encoding_keeps_paths_readable() {
        assert_eq!(percent_encode(b"/tmp/a b+c", true), "/tmp/a%20b%2Bc");
        assert_eq!(percent_encode(b"my/db", false), "my%2Fdb");
    }
}
