//! Running PostgreSQL as an unprivileged account when this process is root.
//!
//! PostgreSQL refuses to run as root, and CI and containers often are root, so we pick an
//! account (the owner of an existing cluster, else `postgres`, else `nobody`), hand it the
//! directories it needs, and check beforehand that it can reach them: a parent directory it
//! cannot search would otherwise surface as an obscure start-up failure. Accounts are read
//! from `/proc` and `/etc/passwd` rather than through a libc crate.

use super::error::{ClusterError, io_err};
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// An unprivileged account to run PostgreSQL as when we are root.
#[derive(Debug, Clone)]
pub(super) struct RunAs {
    pub(super) name: String,
    pub(super) uid: u32,
    pub(super) gid: u32,
}

/// `None` when not root (run as ourselves); otherwise the account PostgreSQL runs as:
/// the owner of an existing cluster if it is not root, else `postgres`, else `nobody`.
pub(super) fn choose_run_as(
    existing_owner: Option<(u32, u32)>,
) -> Result<Option<RunAs>, ClusterError> {
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

/// Hands `path` to `user`, if there is one (only the path itself, not what it contains).
pub(super) fn chown_to(path: &Path, user: Option<&RunAs>) -> Result<(), ClusterError> {
    match user {
        Some(user) => std::os::unix::fs::chown(path, Some(user.uid), Some(user.gid))
            .map_err(io_err(format!("chown {}", path.display()))),
        None => Ok(()),
    }
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
pub(super) fn check_traversable(path: &Path, user: &RunAs) -> Result<(), ClusterError> {
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
