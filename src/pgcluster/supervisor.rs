//! Spawning `postgres` under a `/bin/sh` supervisor that ties the server's life to ours.
//!
//! The supervisor's stdin pipe is the lifeline: it reaches EOF when we close it or when this
//! process dies for any reason (no `Drop` needed), and the supervisor then asks postgres for a
//! fast shutdown. Postgres runs in its own process group, so a terminal's Ctrl-C reaches only
//! us and the server drains before the database goes away. Waiting for it is
//! [`super::lifecycle`]'s.

use super::binaries::PgBinaries;
use super::datadir::Layout;
use super::error::{ClusterError, io_err};
use super::run_as::{RunAs, chown_to};
use super::{PORT, PrivateCluster};
use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};

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

/// Settings every private cluster runs with: no TCP listener, a socket only we can use, and
/// the log on the supervisor's stderr (our log file).
const FIXED_SETTINGS: [&str; 3] = [
    "listen_addresses=",
    "unix_socket_permissions=0700",
    "logging_collector=off",
];

/// Opens the log and starts `/bin/sh` supervising `postgres`; on failure removes
/// the layout's owned directories, since nothing else will. The cluster is not ready yet.
pub(super) fn spawn_cluster(
    bins: &PgBinaries,
    layout: Layout,
    run_as: Option<&RunAs>,
    settings: &[&str],
) -> Result<PrivateCluster, ClusterError> {
    match spawn_supervisor(bins, &layout, run_as, settings) {
        Ok((mut supervisor, log_offset, stale_pid_file)) => Ok(PrivateCluster {
            lifeline: supervisor.stdin.take(),
            supervisor,
            data_dir: layout.data_dir,
            socket_dir: layout.socket_dir,
            log_path: layout.log_path,
            log_offset,
            stale_pid_file,
            owned_dirs: layout.owned_dirs,
        }),
        Err(e) => {
            for dir in &layout.owned_dirs {
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
    layout: &Layout,
    run_as: Option<&RunAs>,
    settings: &[&str],
) -> Result<(Child, u64, Option<String>), ClusterError> {
    let stale = fs::read_to_string(layout.data_dir.join("postmaster.pid")).ok();
    let (log, log_offset) = open_log(&layout.log_path, run_as)?;
    let log_err = log
        .try_clone()
        .map_err(io_err(format!("duplicating {}", layout.log_path.display())))?;

    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c").arg(SUPERVISOR_SCRIPT);
    // "$0" and "$1" of the script: what to delete after a clean shutdown.
    let mut remove = layout.owned_dirs.iter().map(|d| d.as_os_str());
    cmd.arg(remove.next().unwrap_or(OsStr::new("")));
    cmd.arg(remove.next().unwrap_or(OsStr::new("")));
    cmd.arg(&bins.postgres)
        .arg("-D")
        .arg(&layout.data_dir)
        .arg("-k")
        .arg(&layout.socket_dir)
        .arg("-p")
        .arg(PORT.to_string());
    for setting in FIXED_SETTINGS.iter().chain(settings) {
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

/// Opens the server log for appending (created 0600, owned by the PostgreSQL user) and
/// returns it with its current length, where this run's messages start.
fn open_log(log_path: &Path, run_as: Option<&RunAs>) -> Result<(fs::File, u64), ClusterError> {
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(log_path)
        .map_err(io_err(format!("opening {}", log_path.display())))?;
    chown_to(log_path, run_as)?;
    let offset = log
        .metadata()
        .map_err(io_err(format!("stat {}", log_path.display())))?
        .len();
    Ok((log, offset))
}

/// PID in `postmaster.pid`, if the file exists (negative in single-user mode).
pub(super) fn read_postmaster_pid(data_dir: &Path) -> Option<u32> {
    let content = fs::read_to_string(data_dir.join("postmaster.pid")).ok()?;
    let pid: i64 = content.lines().next()?.trim().parse().ok()?;
    u32::try_from(pid.unsigned_abs()).ok()
}

/// PID of a live postgres process named in `postmaster.pid`, ignoring stale files whose
/// PID is gone, a zombie, or reused by some other program.
pub(super) fn live_postmaster(data_dir: &Path) -> Option<u32> {
    let pid = read_postmaster_pid(data_dir)?;
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Format: "pid (comm) state ..."; comm may contain spaces or parentheses.
    let (comm, rest) = stat.split_once('(')?.1.rsplit_once(')')?;
    let alive = !rest.trim_start().starts_with(['Z', 'X']);
    (alive && (comm.starts_with("postgres") || comm.starts_with("postmaster"))).then_some(pid)
}
