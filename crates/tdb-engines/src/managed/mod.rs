//! Managed servers: database servers tdb initialises, starts, supervises and stops itself from the
//! binaries installed on the machine, each under one directory of the data dir.

pub mod archive;
pub mod mariadb;
pub mod postgres;
pub mod process;
pub mod provisioner;
pub mod redis;
pub mod supervisor;

use std::path::{Path, PathBuf};

use nix::unistd::{Gid, Uid, User};

/// How to reach a server as its administrator.
#[derive(Clone)]
pub struct AdminEndpoint {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for AdminEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminEndpoint")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ManagedError {
    #[error("{0}")]
    Setup(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{program} failed: {output}")]
    Command { program: String, output: String },
    #[error("server did not become ready within {seconds}s; last log lines:\n{log}")]
    NotReady { seconds: u64, log: String },
    #[error("state file {path}: {message}")]
    State { path: PathBuf, message: String },
}

impl ManagedError {
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ManagedError {
        let what = what.into();
        move |source| ManagedError::Io { what, source }
    }
}

/// Writes `value` as JSON to `path` (mode 0600) through a temporary file renamed into place, so a
/// crash leaves the old file or the new one, never half of one (managed servers' state files).
pub(crate) fn write_private_json<T: serde::Serialize>(
    path: &Path,
    value: &T,
) -> Result<(), ManagedError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("json.tmp");
    let text = serde_json::to_string_pretty(value).map_err(|e| ManagedError::State {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(ManagedError::io("writing state file"))?;
    f.write_all(text.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(ManagedError::io("writing state file"))?;
    std::fs::rename(&tmp, path).map_err(ManagedError::io("writing state file"))
}

/// The OS user a managed server runs as. Database servers refuse to run as root, so when tdb runs
/// as root its children run as an unprivileged user (default `postgres`); otherwise as tdb's own.
#[derive(Debug, Clone)]
pub struct RunAs {
    pub name: String,
    pub uid: Uid,
    pub gid: Gid,
    /// True when the user differs from tdb's own, so the child must switch to it.
    pub switch: bool,
}

impl RunAs {
    /// The current user, or `unprivileged_user` when running as root.
    pub fn resolve(unprivileged_user: &str) -> Result<Self, ManagedError> {
        let me = Uid::effective();
        if !me.is_root() {
            let name = User::from_uid(me)
                .ok()
                .flatten()
                .map_or_else(|| me.to_string(), |u| u.name);
            return Ok(Self {
                name,
                uid: me,
                gid: Gid::effective(),
                switch: false,
            });
        }
        let user = User::from_name(unprivileged_user)
            .map_err(|e| ManagedError::Setup(format!("looking up user {unprivileged_user}: {e}")))?
            .ok_or_else(|| {
                ManagedError::Setup(format!(
                    "tdb runs as root, so managed servers must run as an unprivileged user, but \
                     user '{unprivileged_user}' does not exist; create it or set managed_user"
                ))
            })?;
        Ok(Self {
            name: user.name,
            uid: user.uid,
            gid: user.gid,
            switch: true,
        })
    }

    /// Gives `path` to this user (no-op when no switch is needed).
    pub fn own(&self, path: &Path) -> Result<(), ManagedError> {
        if !self.switch {
            return Ok(());
        }
        nix::unistd::chown(path, Some(self.uid), Some(self.gid)).map_err(|e| {
            ManagedError::Setup(format!("chown {} to {}: {e}", path.display(), self.name))
        })
    }

    /// Fails with a clear message when this user cannot reach `dir` because an ancestor
    /// directory is closed to it (e.g. a 0700 home or temp directory owned by root).
    pub fn check_reachable(&self, dir: &Path) -> Result<(), ManagedError> {
        use std::os::unix::fs::MetadataExt;
        if !self.switch {
            return Ok(());
        }
        for ancestor in dir.ancestors().skip(1) {
            let Ok(meta) = std::fs::metadata(ancestor) else {
                continue;
            };
            let mode = meta.mode();
            let can_enter = if meta.uid() == self.uid.as_raw() {
                mode & 0o100 != 0
            } else if meta.gid() == self.gid.as_raw() {
                mode & 0o010 != 0
            } else {
                mode & 0o001 != 0
            };
            if !can_enter {
                return Err(ManagedError::Setup(format!(
                    "managed servers run as user '{}', which cannot enter {} (mode {:o}); \
                     choose a data dir it can reach or run `chmod o+x {}`",
                    self.name,
                    ancestor.display(),
                    mode & 0o7777,
                    ancestor.display()
                )));
            }
        }
        Ok(())
    }
}
