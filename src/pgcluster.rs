//! Private PostgreSQL cluster started from the PostgreSQL binaries installed on the machine.
//!
//! Owns: locating `initdb`/`postgres`, creating a data directory (persistent or ephemeral),
//! starting `postgres` on a unix socket only, waiting until it accepts connections, and
//! making sure it shuts down when this process exits (even without `Drop`). It does not
//! create databases, roles or schemas (callers do that over SQL), does not open TCP ports,
//! and does not manage clusters it did not start.

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::fs;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Superuser role created by `initdb`.
const SUPERUSER: &str = "coursetrail";
/// Only names the socket file (`.s.PGSQL.<port>`); no TCP listener is opened.
const PORT: u16 = 5432;
/// How long `postgres` may take to accept connections after being spawned.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a fast shutdown may take before we escalate to an immediate shutdown.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);
/// Grace period after the immediate-shutdown escalation.
const QUIT_TIMEOUT: Duration = Duration::from_secs(5);
/// Polling interval for readiness and exit checks.
const POLL: Duration = Duration::from_millis(20);
/// `sun_path` holds 108 bytes including the NUL; keep a little slack below that.
const MAX_SOCKET_PATH: usize = 100;
/// How much of the server log to quote in start/stop errors.
const LOG_TAIL_BYTES: u64 = 4096;

/// Supervisor run by `/bin/sh -c` as the parent of `postgres`.
///
/// Arguments: `$0`, `$1` = directories to delete after a clean shutdown ("" for none),
/// then the `postgres` command line. Our end of its stdin pipe is the lifeline: the
/// pipe reaches EOF when we close it *or when our process dies for any reason*, and the
/// watcher then requests a fast shutdown (SIGINT). SIGINT is re-sent every second because
/// a shell starts background jobs with SIGINT ignored until `postgres` installs its own
/// handler, so a request arriving in that first instant would otherwise be lost. The
/// shell exits with postgres's status, so our `Child` observes postgres's exit.
/// Directories are only removed after status 0, so a failed start keeps its log for us.
const SUPERVISOR_SCRIPT: &str = r#"exec 3<&0 </dev/null
rm1=$0 rm2=$1
shift
"$@" 3<&- &
pg=$!
{ read -r _ <&3; while kill -INT "$pg" 2>/dev/null; do sleep 1; done; } &
watch=$!
exec 3<&-
wait "$pg"
st=$?
kill "$watch" 2>/dev/null
if [ "$st" -eq 0 ]; then
  for d in "$rm1" "$rm2"; do
    if [ -n "$d" ]; then rm -rf -- "$d"; fi
  done
fi
exit "$st"
"#;

/// Errors from locating, initialising, starting or stopping a [`PrivateCluster`].
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
fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> ClusterError {
    let context = context.into();
    move |source| ClusterError::Io { context, source }
}

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
        let socket_dir = if socket_dir_fits(&data_dir) {
            data_dir.clone()
        } else {
            let dir = fresh_socket_dir(run_as.as_ref())?;
            owned_dirs.push(dir.clone());
            dir
        };
        let log_path = data_dir.join("postgres.log");
        let cluster = spawn_cluster(
            &bins,
            data_dir,
            socket_dir,
            log_path,
            owned_dirs,
            run_as.as_ref(),
            &[],
        )?;
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
        if let Err(e) = run_initdb(&bins, &data_dir, run_as.as_ref(), true).await {
            // Nothing is running yet, so plain removal is the whole cleanup.
            let _ = fs::remove_dir_all(&root);
            return Err(e);
        }
        let socket_dir = if socket_dir_fits(&root) {
            root.clone()
        } else {
            match fresh_socket_dir(run_as.as_ref()) {
                Ok(dir) => {
                    owned_dirs.push(dir.clone());
                    dir
                }
                Err(e) => {
                    let _ = fs::remove_dir_all(&root);
                    return Err(e);
                }
            }
        };
        let log_path = root.join("postgres.log");
        let cluster = spawn_cluster(
            &bins,
            data_dir,
            socket_dir,
            log_path,
            owned_dirs,
            run_as.as_ref(),
            settings,
        )?;
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

    /// Closes the lifeline, waits for the supervisor and reports how postgres ended.
    async fn shutdown(&mut self) -> Result<(), ClusterError> {
        drop(self.lifeline.take());
        let status = match self.wait_exit(STOP_TIMEOUT).await? {
            Some(status) => status,
            None => {
                self.signal_postmaster("QUIT");
                match self.wait_exit(QUIT_TIMEOUT).await? {
                    Some(status) => status,
                    None => {
                        return Err(ClusterError::StopTimeout {
                            secs: (STOP_TIMEOUT + QUIT_TIMEOUT).as_secs(),
                            log_tail: self.log_tail(),
                        });
                    }
                }
            }
        };
        if status.success() {
            Ok(())
        } else {
            Err(ClusterError::StopFailed {
                status,
                log_tail: self.log_tail(),
            })
        }
    }

    /// Moves the supervisor's stdin into `lifeline`.
    fn with_lifeline(mut self) -> Self {
        self.lifeline = self.supervisor.stdin.take();
        self
    }

    /// Polls the supervisor until it exits or `timeout` passes (`None`).
    async fn wait_exit(&mut self, timeout: Duration) -> Result<Option<ExitStatus>, ClusterError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self
                .supervisor
                .try_wait()
                .map_err(io_err("waiting for the postgres supervisor"))?
            {
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until postgres accepts connections; on failure or timeout shuts it down,
    /// removes the owned directories and returns the error (which carries the log tail).
    async fn wait_ready(mut self) -> Result<Self, ClusterError> {
        match self.poll_ready().await {
            Ok(()) => Ok(self),
            Err(e) => {
                let _ = self.shutdown().await;
                let _ = self.remove_owned_dirs();
                Err(e)
            }
        }
    }

    /// Polls until postgres accepts connections, exits, or `READY_TIMEOUT` passes.
    async fn poll_ready(&mut self) -> Result<(), ClusterError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let pid_file = self.data_dir.join("postmaster.pid");
        let socket = self.socket_dir.join(format!(".s.PGSQL.{PORT}"));
        loop {
            if let Some(status) = self
                .supervisor
                .try_wait()
                .map_err(io_err("waiting for the postgres supervisor"))?
            {
                return Err(ClusterError::StartFailed {
                    status,
                    log_tail: self.log_tail(),
                });
            }
            // Line 8 of postmaster.pid is the postmaster status ("ready" once it accepts).
            if let Ok(content) = tokio::fs::read_to_string(&pid_file).await
                && self.stale_pid_file.as_deref() != Some(content.as_str())
                && content.lines().nth(7).is_some_and(|l| l.trim() == "ready")
                && tokio::net::UnixStream::connect(&socket).await.is_ok()
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(ClusterError::StartTimeout {
                    secs: READY_TIMEOUT.as_secs(),
                    log_tail: self.log_tail(),
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Sends `SIG<signal>` to the postmaster named in `postmaster.pid` (best effort).
    fn signal_postmaster(&self, signal: &str) {
        let Some(pid) = read_postmaster_pid(&self.data_dir) else {
            return;
        };
        // The shell builtin avoids depending on a `kill` binary or a libc crate.
        let _ = Command::new("/bin/sh")
            .arg("-c")
            .arg("kill -s \"$0\" \"$1\"")
            .arg(signal)
            .arg(pid.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    /// Removes the directories the cluster owns; already-removed ones are fine.
    fn remove_owned_dirs(&self) -> Result<(), ClusterError> {
        let mut result = Ok(());
        for dir in &self.owned_dirs {
            match fs::remove_dir_all(dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    if result.is_ok() {
                        result = Err(io_err(format!("removing {}", dir.display()))(e));
                    }
                }
            }
        }
        result
    }

    /// The end of this run's server log, for error messages.
    fn log_tail(&self) -> String {
        read_log_tail(&self.log_path, self.log_offset)
            .unwrap_or_else(|e| format!("(cannot read {}: {e})", self.log_path.display()))
    }
}

impl Drop for PrivateCluster {
    /// Closes the lifeline so the supervisor shuts postgres down and removes the owned
    /// directories in the background; does not wait for it.
    fn drop(&mut self) {
        drop(self.lifeline.take());
        // Reap the supervisor if it already exited; otherwise it is reparented on our exit.
        let _ = self.supervisor.try_wait();
    }
}

/// Opens the log and starts `/bin/sh` supervising `postgres`; on failure removes
/// `owned_dirs`, since nothing else will.
fn spawn_cluster(
    bins: &PgBinaries,
    data_dir: PathBuf,
    socket_dir: PathBuf,
    log_path: PathBuf,
    owned_dirs: Vec<PathBuf>,
    run_as: Option<&RunAs>,
    settings: &[&str],
) -> Result<PrivateCluster, ClusterError> {
    let spawned = spawn_supervisor(
        bins,
        &data_dir,
        &socket_dir,
        &log_path,
        &owned_dirs,
        run_as,
        settings,
    );
    match spawned {
        Ok((supervisor, log_offset, stale_pid_file)) => Ok(PrivateCluster {
            supervisor,
            lifeline: None,
            data_dir,
            socket_dir,
            log_path,
            log_offset,
            stale_pid_file,
            owned_dirs,
        }
        .with_lifeline()),
        Err(e) => {
            for dir in &owned_dirs {
                let _ = fs::remove_dir_all(dir);
            }
            Err(e)
        }
    }
}

/// Spawns the supervisor; returns it with the log's start offset and the pre-existing
/// `postmaster.pid` content.
fn spawn_supervisor(
    bins: &PgBinaries,
    data_dir: &Path,
    socket_dir: &Path,
    log_path: &Path,
    owned_dirs: &[PathBuf],
    run_as: Option<&RunAs>,
    settings: &[&str],
) -> Result<(Child, u64, Option<String>), ClusterError> {
    let stale = fs::read_to_string(data_dir.join("postmaster.pid")).ok();
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(log_path)
        .map_err(io_err(format!("opening {}", log_path.display())))?;
    if let Some(user) = run_as {
        std::os::unix::fs::chown(log_path, Some(user.uid), Some(user.gid))
            .map_err(io_err(format!("chown {}", log_path.display())))?;
    }
    let log_offset = log
        .metadata()
        .map_err(io_err(format!("stat {}", log_path.display())))?
        .len();
    let log_err = log
        .try_clone()
        .map_err(io_err(format!("duplicating {}", log_path.display())))?;

    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c").arg(SUPERVISOR_SCRIPT);
    // "$0" and "$1" of the script: what to delete after a clean shutdown.
    let mut remove = owned_dirs.iter().map(|d| d.as_os_str());
    cmd.arg(remove.next().unwrap_or(OsStr::new("")));
    cmd.arg(remove.next().unwrap_or(OsStr::new("")));
    cmd.arg(&bins.postgres)
        .arg("-D")
        .arg(data_dir)
        .arg("-k")
        .arg(socket_dir)
        .arg("-p")
        .arg(PORT.to_string());
    for setting in [
        "listen_addresses=",
        "unix_socket_permissions=0700",
        "logging_collector=off",
    ]
    .iter()
    .chain(settings)
    {
        cmd.arg("-c").arg(setting);
    }
    cmd.stdin(Stdio::piped())
        .stdout(log)
        .stderr(log_err)
        // The PostgreSQL user may not be able to enter our working directory.
        .current_dir("/")
        // Own process group: a terminal Ctrl-C must not stop postgres before the server
        // has drained; shutdown is driven by the lifeline instead.
        .process_group(0);
    if let Some(user) = run_as {
        cmd.uid(user.uid).gid(user.gid);
    }
    let supervisor = cmd
        .spawn()
        .map_err(io_err("spawning the postgres supervisor (/bin/sh)"))?;
    Ok((supervisor, log_offset, stale))
}

/// Locations of the server binaries we run.
#[derive(Debug, Clone)]
struct PgBinaries {
    initdb: PathBuf,
    postgres: PathBuf,
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
async fn find_binaries() -> Result<PgBinaries, ClusterError> {
    let mut tried = Vec::new();

    if let Some(dir) = std::env::var_os("PG_BIN_DIR").filter(|d| !d.is_empty()) {
        let dir = PathBuf::from(dir);
        // An explicit setting that is wrong is an error, not a reason to guess elsewhere.
        return PgBinaries::in_dir(&dir).ok_or_else(|| ClusterError::BinariesNotFound {
            tried: format!("PG_BIN_DIR={} (no initdb/postgres there)", dir.display()),
        });
    }
    tried.push("$PG_BIN_DIR (unset)".to_owned());

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
            if let Some(bins) = PgBinaries::in_dir(&dir) {
                return Ok(bins);
            }
            tried.push(format!(
                "pg_config --bindir = {} (no initdb/postgres there)",
                dir.display()
            ));
        }
        Ok(out) => tried.push(format!("pg_config --bindir ({})", out.status)),
        Err(e) => tried.push(format!("pg_config --bindir ({e})")),
    }

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
    if let Some(bins) = versions
        .iter()
        .rev()
        .find_map(|(_, dir)| PgBinaries::in_dir(dir))
    {
        return Ok(bins);
    }
    tried.push("/usr/lib/postgresql/*/bin".to_owned());

    if let Some(bins) = PgBinaries::in_dir(Path::new("/usr/local/pgsql/bin")) {
        return Ok(bins);
    }
    tried.push("/usr/local/pgsql/bin".to_owned());

    for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
        // Distributions often put only symlinks on PATH; postgres sits next to the target.
        if let Ok(initdb) = fs::canonicalize(dir.join("initdb"))
            && let Some(bins) = initdb.parent().and_then(PgBinaries::in_dir)
        {
            return Ok(bins);
        }
    }
    tried.push("initdb on $PATH".to_owned());

    Err(ClusterError::BinariesNotFound {
        tried: tried.join(", "),
    })
}

/// Runs `initdb` for `data_dir` with our superuser, trust auth, UTF8 and the C locale.
async fn run_initdb(
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
fn prepare_data_dir(data_dir: &Path, run_as: Option<&RunAs>) -> Result<(), ClusterError> {
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
    if let Some(user) = run_as {
        // Only the (empty) directory itself: initdb creates everything inside as `user`.
        std::os::unix::fs::chown(data_dir, Some(user.uid), Some(user.gid))
            .map_err(io_err(format!("chown {}", data_dir.display())))?;
    }
    Ok(())
}

/// Creates a new 0700 directory (parent must exist) owned by the PostgreSQL user.
fn create_private_dir(path: &Path, run_as: Option<&RunAs>) -> Result<(), ClusterError> {
    fs::DirBuilder::new()
        .mode(0o700)
        .create(path)
        .map_err(io_err(format!("creating {}", path.display())))?;
    if let Some(user) = run_as {
        std::os::unix::fs::chown(path, Some(user.uid), Some(user.gid))
            .map_err(io_err(format!("chown {}", path.display())))?;
    }
    Ok(())
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

/// PID in `postmaster.pid`, if the file exists (negative in single-user mode).
fn read_postmaster_pid(data_dir: &Path) -> Option<u32> {
    let content = fs::read_to_string(data_dir.join("postmaster.pid")).ok()?;
    let pid: i64 = content.lines().next()?.trim().parse().ok()?;
    u32::try_from(pid.unsigned_abs()).ok()
}

/// PID of a live postgres process named in `postmaster.pid`, ignoring stale files whose
/// PID is gone, a zombie, or reused by some other program.
fn live_postmaster(data_dir: &Path) -> Option<u32> {
    let pid = read_postmaster_pid(data_dir)?;
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Format: "pid (comm) state ..."; comm may contain spaces or parentheses.
    let (comm, rest) = stat.split_once('(')?.1.rsplit_once(')')?;
    let alive = !rest.trim_start().starts_with(['Z', 'X']);
    (alive && (comm.starts_with("postgres") || comm.starts_with("postmaster"))).then_some(pid)
}

/// Up to `LOG_TAIL_BYTES` from the end of the log, never before `offset`, on line bounds.
fn read_log_tail(path: &Path, offset: u64) -> io::Result<String> {
    let mut file = fs::File::open(path)?;
    let len = file.metadata()?.len();
    let start = offset.max(len.saturating_sub(LOG_TAIL_BYTES));
    file.seek(SeekFrom::Start(start))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    let text = String::from_utf8_lossy(&bytes);
    let text = if start > offset {
        // We cut into the middle of a line; drop the fragment.
        text.split_once('\n').map_or(&*text, |(_, rest)| rest)
    } else {
        &text
    };
    Ok(text.trim_end().to_owned())
}

/// An unprivileged account to run PostgreSQL as when we are root.
#[derive(Debug, Clone)]
struct RunAs {
    name: String,
    uid: u32,
    gid: u32,
}

/// `None` when not root (run as ourselves); otherwise the account PostgreSQL runs as:
/// the owner of an existing cluster if it is not root, else `postgres`, else `nobody`.
fn choose_run_as(existing_owner: Option<(u32, u32)>) -> Result<Option<RunAs>, ClusterError> {
    if effective_uid()? != 0 {
        return Ok(None);
    }
    let users = passwd_entries();
    if let Some((uid, gid)) = existing_owner.filter(|(uid, _)| *uid != 0) {
        let known = users.iter().find(|u| u.uid == uid);
        return Ok(Some(RunAs {
            name: known.map_or_else(|| uid.to_string(), |u| u.name.clone()),
            uid,
            gid: known.map_or(gid, |u| u.gid),
        }));
    }
    ["postgres", "nobody"]
        .iter()
        .find_map(|name| users.iter().find(|u| u.name == *name))
        .cloned()
        .map(Some)
        .ok_or(ClusterError::NoUnprivilegedUser)
}

/// Effective uid, read from /proc because we avoid a libc dependency.
fn effective_uid() -> Result<u32, ClusterError> {
    if let Ok(status) = fs::read_to_string("/proc/self/status") {
        for line in status.lines() {
            // "Uid:\treal\teffective\tsaved\tfs"
            if let Some(ids) = line.strip_prefix("Uid:")
                && let Some(euid) = ids.split_whitespace().nth(1).and_then(|s| s.parse().ok())
            {
                return Ok(euid);
            }
        }
    }
    // /proc/self is owned by the effective uid.
    fs::metadata("/proc/self")
        .map(|m| m.uid())
        .map_err(io_err("determining the effective uid from /proc/self"))
}

/// Accounts from /etc/passwd (missing or unreadable file: none).
fn passwd_entries() -> Vec<RunAs> {
    fs::read_to_string("/etc/passwd")
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let mut fields = line.split(':');
            let name = fields.next()?;
            let _password = fields.next()?;
            let uid = fields.next()?.parse().ok()?;
            let gid = fields.next()?.parse().ok()?;
            Some(RunAs {
                name: name.to_owned(),
                uid,
                gid,
            })
        })
        .collect()
}

/// Checks that `user` can search every ancestor of `path` (it needs to reach the data and
/// socket directories). `Command::uid` drops supplementary groups, so only the primary
/// group counts.
fn check_traversable(path: &Path, user: &RunAs) -> Result<(), ClusterError> {
    for dir in path.ancestors().skip(1) {
        if dir.as_os_str().is_empty() {
            continue;
        }
        let meta = match fs::metadata(dir) {
            Ok(meta) => meta,
            // Not created yet: we create it with default permissions later.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err(format!("stat {}", dir.display()))(e)),
        };
        let mode = meta.mode();
        let searchable = if meta.uid() == user.uid {
            mode & 0o100 != 0
        } else if meta.gid() == user.gid {
            mode & 0o010 != 0
        } else {
            mode & 0o001 != 0
        };
        if !searchable {
            return Err(ClusterError::NotTraversable {
                path: dir.to_owned(),
                user: user.name.clone(),
                uid: user.uid,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_encoding_keeps_paths_readable() {
        assert_eq!(percent_encode(b"/tmp/a b+c", true), "/tmp/a%20b%2Bc");
        assert_eq!(percent_encode(b"my/db", false), "my%2Fdb");
    }

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
