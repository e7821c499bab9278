//! A cluster's files: creating its data directory with `initdb`, and choosing where its
//! socket and log live.
//!
//! PostgreSQL is strict about these: the data directory must be mode 0700 and owned by the
//! account that runs the server, and a socket path must fit `sun_path` (108 bytes) and
//! survive `unix_socket_directories`' list syntax. A data directory whose path is unfit for
//! the socket gets a short private directory under /tmp instead, removed with the cluster.

use super::PORT;
use super::SUPERUSER;
use super::binaries::PgBinaries;
use super::error::{ClusterError, io_err};
use super::run_as::{RunAs, chown_to};
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// `sun_path` holds 108 bytes including the NUL; keep a little slack below that.
const MAX_SOCKET_PATH: usize = 100;

/// Where a cluster's files live, and which directories go away with it.
pub(super) struct Layout {
    pub(super) data_dir: PathBuf,
    pub(super) socket_dir: PathBuf,
    pub(super) log_path: PathBuf,
    /// Directories we created that must disappear with the cluster.
    pub(super) owned_dirs: Vec<PathBuf>,
}

/// Runs `initdb` for `data_dir` with our superuser, trust auth, UTF8 and the C locale.
pub(super) async fn run_initdb(
    bins: &PgBinaries,
    data_dir: &Path,
    run_as: Option<&RunAs>,
    no_sync: bool,
) -> Result<(), ClusterError> {
    let mut cmd = Command::new(&bins.initdb);
    cmd.arg("-D")
        .arg(data_dir)
        .args([
            "--auth=trust",
            "-U",
            SUPERUSER,
            "--encoding=UTF8",
            "--locale=C",
        ])
        .stdin(Stdio::null())
        .current_dir("/");
    if no_sync {
        // Throw-away clusters need no durability; this saves most of initdb's time.
        cmd.arg("-N");
    }
    if let Some(user) = run_as {
        cmd.uid(user.uid).gid(user.gid);
    }
    let output = tokio::process::Command::from(cmd)
        .kill_on_drop(true)
        .output()
        .await
        .map_err(io_err(format!("running {}", bins.initdb.display())))?;
    if output.status.success() {
        return Ok(());
    }
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    Err(ClusterError::InitDb {
        data_dir: data_dir.to_owned(),
        status: output.status,
        output: text,
    })
}

/// Creates (or adopts an existing, presumably empty) persistent data directory with the
/// 0700 mode PostgreSQL demands, owned by the user that will run it.
pub(super) fn prepare_data_dir(
    data_dir: &Path,
    run_as: Option<&RunAs>,
) -> Result<(), ClusterError> {
    if let Some(parent) = data_dir.parent() {
        // Default mode for parents: they must stay traversable for the PostgreSQL user.
        fs::create_dir_all(parent).map_err(io_err(format!("creating {}", parent.display())))?;
    }
    match fs::DirBuilder::new().mode(0o700).create(data_dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            fs::set_permissions(data_dir, fs::Permissions::from_mode(0o700))
                .map_err(io_err(format!("chmod {}", data_dir.display())))?;
        }
        Err(e) => return Err(io_err(format!("creating {}", data_dir.display()))(e)),
    }
    // Only the (empty) directory itself: initdb creates everything inside as `run_as`.
    chown_to(data_dir, run_as)
}

/// Creates a new 0700 directory (parent must exist) owned by the PostgreSQL user.
pub(super) fn create_private_dir(path: &Path, run_as: Option<&RunAs>) -> Result<(), ClusterError> {
    fs::DirBuilder::new()
        .mode(0o700)
        .create(path)
        .map_err(io_err(format!("creating {}", path.display())))?;
    chown_to(path, run_as)
}

/// The socket directory for a cluster whose files are under `preferred`: `preferred` itself
/// when it fits, else a fresh directory under /tmp, which is added to `owned_dirs`.
pub(super) fn socket_dir_for(
    preferred: &Path,
    run_as: Option<&RunAs>,
    owned_dirs: &mut Vec<PathBuf>,
) -> Result<PathBuf, ClusterError> {
    if socket_dir_fits(preferred) {
        return Ok(preferred.to_owned());
    }
    let dir = fresh_socket_dir(run_as)?;
    owned_dirs.push(dir.clone());
    Ok(dir)
}

/// Fresh short directory under /tmp for the socket when the data directory's path is unfit.
fn fresh_socket_dir(run_as: Option<&RunAs>) -> Result<PathBuf, ClusterError> {
    let mut name = uuid::Uuid::new_v4().simple().to_string();
    name.truncate(16);
    let dir = PathBuf::from(format!("/tmp/ctpg-{name}"));
    create_private_dir(&dir, run_as)?;
    Ok(dir)
}

/// Whether `dir` can hold the socket: short enough for `sun_path`, and free of characters
/// that `unix_socket_directories` (a comma-separated, quotable list) would misparse.
fn socket_dir_fits(dir: &Path) -> bool {
    let bytes = dir.as_os_str().as_bytes();
    let socket_len = bytes.len() + format!("/.s.PGSQL.{PORT}").len();
    socket_len <= MAX_SOCKET_PATH
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+@~=".contains(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_dir_rules() {
        assert!(socket_dir_fits(Path::new("/tmp/coursetrail-pg-1-abc")));
        assert!(!socket_dir_fits(Path::new("/tmp/has,comma")));
        assert!(!socket_dir_fits(&PathBuf::from(format!(
            "/{}",
            "x".repeat(90)
        ))));
    }
}
