//! The data directory's safety: one `tdb serve` at a time, held through an exclusive lock on
//! `tdb.lock` for the process's whole life, so a second instance can never stop the first's
//! managed servers or run its jobs twice.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::Context;
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

/// The lock file's name in the data dir; it holds the pid of the `tdb serve` that owns the dir.
pub const LOCK_FILE: &str = "tdb.lock";

/// The data dir's lock; released when dropped (and by the kernel if the process dies).
pub struct DataDirLock {
    _file: Flock<File>,
}

/// Takes the data dir's lock without waiting. When another process holds it, the error names
/// that process's pid.
pub fn lock(dir: &Path) -> anyhow::Result<DataDirLock> {
    let path = dir.join(LOCK_FILE);
    // Opened close-on-exec (std's default), so managed servers never inherit the lock.
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(mut file) => {
            file.set_len(0)?;
            file.rewind()?;
            writeln!(file, "{}", std::process::id())
                .with_context(|| format!("writing {}", path.display()))?;
            file.sync_all()?;
            Ok(DataDirLock { _file: file })
        }
        Err((mut file, Errno::EWOULDBLOCK)) => {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            let holder = match text.trim().parse::<u32>() {
                Ok(pid) => format!("pid {pid}"),
                Err(_) => "a process whose pid is not recorded yet".to_string(),
            };
            anyhow::bail!(
                "data dir {} is already in use by another tdb serve ({holder}, holding {}): \
                 stop that one first, or give this one another --data-dir",
                dir.display(),
                path.display()
            )
        }
        Err((_, e)) => Err(e).with_context(|| format!("locking {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_dir_is_refused_with_the_holders_pid() {
        let dir = tempfile::tempdir().expect("tempdir");
        let held = lock(dir.path()).expect("first lock");
        let err = lock(dir.path()).err().expect("second lock refused");
        let text = format!("{err:#}");
        assert!(
            text.contains(&format!("pid {}", std::process::id())) && text.contains("already"),
            "{text}"
        );
        drop(held);
        lock(dir.path()).expect("free again once released");
    }
}
