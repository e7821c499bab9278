//! Finding the PostgreSQL server binaries installed on the machine (`initdb` and `postgres`).
//!
//! Distributions put them in different places, often off `$PATH`, so several well-known
//! locations are tried in a fixed order and every rejected one is named in the error. An
//! explicit `PG_BIN_DIR` is never second-guessed. Nothing here runs the binaries.

use super::error::ClusterError;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;

/// Locations of the server binaries we run.
#[derive(Debug, Clone)]
pub(super) struct PgBinaries {
    pub(super) initdb: PathBuf,
    pub(super) postgres: PathBuf,
}

impl PgBinaries {
    /// `Some` if `dir` holds both `initdb` and `postgres`.
    fn in_dir(dir: &Path) -> Option<Self> {
        let initdb = dir.join("initdb");
        let postgres = dir.join("postgres");
        (initdb.is_file() && postgres.is_file()).then_some(Self { initdb, postgres })
    }
}

/// Finds the binaries: `$PG_BIN_DIR`, `pg_config --bindir`, the newest
/// `/usr/lib/postgresql/*/bin`, `/usr/local/pgsql/bin`, then `$PATH`.
pub(super) async fn find_binaries() -> Result<PgBinaries, ClusterError> {
    if let Some(dir) = std::env::var_os("PG_BIN_DIR").filter(|d| !d.is_empty()) {
        let dir = PathBuf::from(dir);
        // An explicit setting that is wrong is an error, not a reason to guess elsewhere.
        return PgBinaries::in_dir(&dir).ok_or_else(|| ClusterError::BinariesNotFound {
            tried: format!("PG_BIN_DIR={} (no initdb/postgres there)", dir.display()),
        });
    }
    let mut tried = vec!["$PG_BIN_DIR (unset)".to_owned()];
    match from_pg_config().await {
        Ok(bins) => return Ok(bins),
        Err(why) => tried.push(why),
    }
    if let Some(bins) = newest_packaged() {
        return Ok(bins);
    }
    tried.push("/usr/lib/postgresql/*/bin".to_owned());
    if let Some(bins) = PgBinaries::in_dir(Path::new("/usr/local/pgsql/bin")) {
        return Ok(bins);
    }
    tried.push("/usr/local/pgsql/bin".to_owned());
    if let Some(bins) = on_path() {
        return Ok(bins);
    }
    tried.push("initdb on $PATH".to_owned());
    Err(ClusterError::BinariesNotFound {
        tried: tried.join(", "),
    })
}

/// The directory `pg_config --bindir` names, or why it is not the one.
async fn from_pg_config() -> Result<PgBinaries, String> {
    let pg_config = tokio::process::Command::new("pg_config")
        .arg("--bindir")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await;
    match pg_config {
        Ok(out) if out.status.success() => {
            let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            PgBinaries::in_dir(&dir).ok_or_else(|| {
                format!(
                    "pg_config --bindir = {} (no initdb/postgres there)",
                    dir.display()
                )
            })
        }
        Ok(out) => Err(format!("pg_config --bindir ({})", out.status)),
        Err(e) => Err(format!("pg_config --bindir ({e})")),
    }
}

/// The newest Debian-style `/usr/lib/postgresql/<version>/bin` holding both binaries.
fn newest_packaged() -> Option<PgBinaries> {
    let mut versions: Vec<(Vec<u32>, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name();
            let version = name
                .to_str()?
                .split('.')
                .map(|part| part.parse().ok())
                .collect::<Option<Vec<u32>>>()?;
            Some((version, entry.path().join("bin")))
        })
        .collect();
    versions.sort();
    versions
        .iter()
        .rev()
        .find_map(|(_, dir)| PgBinaries::in_dir(dir))
}

/// `initdb` on `$PATH`, with `postgres` next to the file it resolves to.
fn on_path() -> Option<PgBinaries> {
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()).find_map(|dir| {
        // Distributions often put only symlinks on PATH; postgres sits next to the target.
        let initdb = fs::canonicalize(dir.join("initdb")).ok()?;
        initdb.parent().and_then(PgBinaries::in_dir)
    })
}
