//! A spawned cluster's life: waiting until it accepts connections, shutting it down (fast,
//! then immediate), cleaning up its directories, and quoting its log when something fails.
//!
//! Shutdown is always asked for through the lifeline ([`super::supervisor`]), never by
//! killing the supervisor: the graceful path is what removes the owned directories and keeps
//! the log of a failed run. Waiting polls rather than blocks, so it never holds a runtime
//! thread, and is bounded by timeouts that end in an error quoting the log's tail.

use super::error::{ClusterError, io_err};
use super::supervisor::read_postmaster_pid;
use super::{PORT, PrivateCluster};
use std::fs;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long `postgres` may take to accept connections after being spawned.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a fast shutdown may take before we escalate to an immediate shutdown.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);
/// Grace period after the immediate-shutdown escalation.
const QUIT_TIMEOUT: Duration = Duration::from_secs(5);
/// Polling interval for readiness and exit checks.
const POLL: Duration = Duration::from_millis(20);
/// How much of the server log to quote in start/stop errors.
const LOG_TAIL_BYTES: u64 = 4096;

impl PrivateCluster {
    /// Closes the lifeline, waits for the supervisor and reports how postgres ended.
    pub(super) async fn shutdown(&mut self) -> Result<(), ClusterError> {
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
    pub(super) async fn wait_ready(mut self) -> Result<Self, ClusterError> {
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
    pub(super) fn remove_owned_dirs(&self) -> Result<(), ClusterError> {
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
