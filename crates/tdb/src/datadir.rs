//! The data directory's safety: created private; refused when another user could plant files in
//! it (a `tdb.toml` above all); and one `tdb serve` at a time, held through an exclusive lock on
//! `tdb.lock` for the process's whole life, so a second instance can never stop the first's
//! managed servers or run its jobs twice.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

/// Creates `dir` with `mode` (0700, or 0711 when managed servers running as another user must
/// pass through it) when it does not exist; otherwise refuses it when unsafe, and adds the
/// others' search bit that `mode` needs.
pub fn prepare(dir: &Path, mode: u32) -> anyhow::Result<()> {
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(mode)
            .create(dir)
            .with_context(|| format!("creating data dir {}", dir.display()))?;
    }
    check_dir(dir)?;
    let current = std::fs::metadata(dir)?.permissions().mode() & 0o7777;
    if mode & 0o001 != 0 && current & 0o001 == 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(current | 0o711))
            .with_context(|| format!("letting managed servers enter {}", dir.display()))?;
    }
    Ok(())
}

/// Refuses a data dir that users other than tdb's (and root) could write to: they could plant
/// a `tdb.toml`, swap the master key or a server's files.
pub fn check_dir(dir: &Path) -> anyhow::Result<()> {
    let meta = std::fs::metadata(dir).with_context(|| format!("reading {}", dir.display()))?;
    if !meta.is_dir() {
        anyhow::bail!("data dir {} is not a directory", dir.display());
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        anyhow::bail!(
            "data dir {} is writable by other users (mode {mode:o}): they could plant a \
             tdb.toml or replace tdb's files; run `chmod go-w {}`",
            dir.display(),
            dir.display()
        );
    }
    check_owner("data dir", dir, &meta)
}

/// Refuses a configuration file that users other than tdb's (and root) could write to or own.
pub fn check_config_file(path: &Path) -> anyhow::Result<()> {
    let meta = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        anyhow::bail!(
            "configuration file {} is writable by other users (mode {mode:o}); run \
             `chmod go-w {}`",
            path.display(),
            path.display()
        );
    }
    check_owner("configuration file", path, &meta)
}

fn check_owner(what: &str, path: &Path, meta: &std::fs::Metadata) -> anyhow::Result<()> {
    let me = nix::unistd::Uid::effective().as_raw();
    let owner = meta.uid();
    if owner != me && owner != 0 {
        anyhow::bail!(
            "{what} {} is owned by uid {owner}, not by the user tdb runs as (uid {me}) or \
             root; run `chown {me} {}` if its contents are yours",
            path.display(),
            path.display()
        );
    }
    Ok(())
}

/// The lock file's name in the data dir; it holds the pid of the `tdb serve` that owns the dir.
pub const LOCK_FILE: &str = "tdb.lock";

/// The data dir's lock; released when dropped (and by the kernel if the process dies).
pub struct DataDirLock {
    _file: Flock<File>,
}

/// How long a start waits for a lock whose recorded holder has exited. A process the holder
/// was starting when it died (forked, its program not started yet) holds a copy of the lock
/// until its program starts, which closes it: on a loaded machine, a start right after a
/// `kill -9` could find it still held.
const ORPHANED_LOCK_WAIT: Duration = Duration::from_secs(10);

/// Takes the data dir's lock. When another process holds it, the error names that process's
/// pid, at once if that process is alive; if it has exited, the lock is waited for up to
/// [`ORPHANED_LOCK_WAIT`] first.
pub fn lock(dir: &Path) -> anyhow::Result<DataDirLock> {
    let path = dir.join(LOCK_FILE);
    let deadline = Instant::now() + ORPHANED_LOCK_WAIT;
    loop {
        let holder = match try_lock(&path)? {
            Ok(lock) => return Ok(lock),
            Err(holder) => holder,
        };
        let exited = holder.is_some_and(|pid| !alive(pid));
        if exited && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        }
        let holder = match holder {
            Some(pid) if exited => {
                format!("pid {pid}, which has exited; a process it started still holds the lock")
            }
            Some(pid) => format!("pid {pid}"),
            None => "a process whose pid is not recorded yet".to_string(),
        };
        anyhow::bail!(
            "data dir {} is already in use by another tdb serve ({holder}, holding {}): \
             stop that one first, or give this one another --data-dir",
            dir.display(),
            path.display()
        )
    }
}

/// One attempt at the lock without waiting: the lock, or the pid its holder recorded.
fn try_lock(path: &Path) -> anyhow::Result<Result<DataDirLock, Option<u32>>> {
    // Opened close-on-exec (std's default), so managed servers never inherit the lock.
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(mut file) => {
            file.set_len(0)?;
            file.rewind()?;
            writeln!(file, "{}", std::process::id())
                .with_context(|| format!("writing {}", path.display()))?;
            file.sync_all()?;
            Ok(Ok(DataDirLock { _file: file }))
        }
        Err((mut file, Errno::EWOULDBLOCK)) => {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            Ok(Err(text.trim().parse::<u32>().ok()))
        }
        Err((_, e)) => Err(e).with_context(|| format!("locking {}", path.display())),
    }
}

/// True while a process with this pid exists (one of another user counts).
fn alive(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    !matches!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
        Err(Errno::ESRCH)
    )
}

/// This data dir's node id: made at its first start (`node.id`, mode 0600) and kept, so the
/// servers a tdb runs itself are known as its own across restarts, and another tdb sharing the
/// catalog (from another data dir) knows they are not its.
pub fn node_id(dir: &Path) -> anyhow::Result<String> {
    use anyhow::Context;
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join("node.id");
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => return Ok(text.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    }
    let id = tdb_core::ids::random_hex(6);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(id.as_bytes())?;
    f.sync_all()?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsafe_modes_are_refused_and_a_new_dir_is_private() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("a/data");
        prepare(&dir, 0o700).expect("created");
        assert_eq!(
            std::fs::metadata(&dir).expect("meta").permissions().mode() & 0o777,
            0o700
        );
        for mode in [0o777, 0o775, 0o757, 0o1777] {
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)).expect("chmod");
            let err = format!("{:#}", prepare(&dir, 0o700).expect_err("unsafe"));
            assert!(err.contains(&format!("mode {mode:o}")), "{err}");
        }
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        prepare(&dir, 0o711).expect("safe");
        assert_eq!(
            std::fs::metadata(&dir).expect("meta").permissions().mode() & 0o777,
            0o711,
            "managed servers may pass through"
        );
        let toml = dir.join("tdb.toml");
        std::fs::write(&toml, "").expect("write");
        std::fs::set_permissions(&toml, std::fs::Permissions::from_mode(0o620)).expect("chmod");
        assert!(check_config_file(&toml).is_err());
        std::fs::set_permissions(&toml, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        check_config_file(&toml).expect("safe");
    }

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

    #[test]
    fn a_lock_kept_by_a_child_of_an_exited_holder_is_waited_for() {
        let dir = tempfile::tempdir().expect("tempdir");
        // The holder on record has exited...
        let mut exited = std::process::Command::new("true").spawn().expect("spawn");
        let pid = exited.id();
        exited.wait().expect("wait");
        // ...and a copy of its lock (as a child it forked would hold) lives on for a moment.
        let copy = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.path().join(LOCK_FILE))
            .expect("open");
        let mut copy = Flock::lock(copy, FlockArg::LockExclusiveNonblock).expect("flock");
        writeln!(copy, "{pid}").expect("write");
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            drop(copy);
        });
        let _lock = lock(dir.path()).expect("taken once the copy is gone");
        release.join().expect("released");
        let recorded = std::fs::read_to_string(dir.path().join(LOCK_FILE)).expect("read");
        assert_eq!(recorded.trim(), std::process::id().to_string());
    }
}
