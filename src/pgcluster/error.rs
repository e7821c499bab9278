//! What can go wrong with a private cluster, as one error type: each variant carries what an
//! operator needs to act on it (the locations tried, the log's tail, the directory at fault).

use std::io;
use std::path::PathBuf;
use std::process::ExitStatus;

/// Errors from locating, initialising, starting or stopping a [`super::PrivateCluster`].
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// No directory with both `initdb` and `postgres` was found.
    #[error(
        "PostgreSQL server binaries (initdb, postgres) not found; tried: {tried}. \
         Install them (e.g. `apt-get install postgresql`) or set PG_BIN_DIR to the directory \
         containing initdb"
    )]
    BinariesNotFound {
        /// Every location that was tried, with the reason it was rejected.
        tried: String,
    },
    /// A filesystem or process operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What we were doing.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Running as root but no account exists to run PostgreSQL as.
    #[error(
        "running as root, but /etc/passwd has neither a `postgres` nor a `nobody` user to run \
         PostgreSQL as (PostgreSQL refuses to run as root)"
    )]
    NoUnprivilegedUser,
    /// Running as root and a parent directory is not searchable by the PostgreSQL user.
    #[error(
        "{path} is not traversable by user `{user}` (uid {uid}), which runs PostgreSQL because \
         we are root; use a directory under /tmp or grant search (x) permission"
    )]
    NotTraversable {
        /// The directory lacking search permission.
        path: PathBuf,
        /// The account PostgreSQL runs as.
        user: String,
        /// Its uid.
        uid: u32,
    },
    /// `initdb` failed.
    #[error("initdb for {data_dir} failed ({status}):\n{output}")]
    InitDb {
        /// The data directory being initialised.
        data_dir: PathBuf,
        /// Exit status of `initdb`.
        status: ExitStatus,
        /// Its combined stdout and stderr.
        output: String,
    },
    /// Another live postmaster owns the data directory.
    #[error(
        "data directory {data_dir} is in use by a running postmaster (PID {pid}); stop it first"
    )]
    AlreadyRunning {
        /// The contested data directory.
        data_dir: PathBuf,
        /// PID from its `postmaster.pid`.
        pid: u32,
    },
    /// `postgres` exited before it became ready.
    #[error("postgres exited during start-up ({status}); log tail:\n{log_tail}")]
    StartFailed {
        /// Exit status of postgres.
        status: ExitStatus,
        /// End of the server log for this run.
        log_tail: String,
    },
    /// `postgres` did not become ready in time (it has been told to shut down).
    #[error("postgres did not accept connections within {secs} s; log tail:\n{log_tail}")]
    StartTimeout {
        /// Seconds waited.
        secs: u64,
        /// End of the server log for this run.
        log_tail: String,
    },
    /// `postgres` exited with a failure status while shutting down.
    #[error("postgres did not shut down cleanly ({status}); log tail:\n{log_tail}")]
    StopFailed {
        /// Exit status of postgres.
        status: ExitStatus,
        /// End of the server log for this run.
        log_tail: String,
    },
    /// `postgres` ignored both the fast and the immediate shutdown request.
    #[error("postgres did not shut down within {secs} s; log tail:\n{log_tail}")]
    StopTimeout {
        /// Seconds waited.
        secs: u64,
        /// End of the server log for this run.
        log_tail: String,
    },
}

/// Builds a `map_err` closure that attaches `context` to an I/O error.
pub(super) fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> ClusterError {
    let context = context.into();
    move |source| ClusterError::Io { context, source }
}
