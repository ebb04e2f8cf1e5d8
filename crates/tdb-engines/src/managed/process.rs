//! Process plumbing for managed servers: spawning a child as another user in its own process
//! group with a parent-death signal, stopping it politely then firmly, reclaiming orphans left by
//! a `kill -9` of tdb, and finding free ports.

use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};
use std::path::Path;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::process::Command;

use super::{ManagedError, RunAs};

/// Makes `command` run as `run_as`, in its own process group (so a terminal's Ctrl-C reaches tdb,
/// which then stops the child in order), and dying with `parent_death` when tdb dies.
pub fn prepare(command: &mut Command, run_as: &RunAs, parent_death: Signal) {
    if run_as.switch {
        command.uid(run_as.uid.as_raw()).gid(run_as.gid.as_raw());
    }
    command.process_group(0).kill_on_drop(false);
    let signal = parent_death as libc::c_int;
    // SAFETY: the closure runs between fork and exec and only calls prctl(2), which is
    // async-signal-safe. It runs after the uid switch, which would otherwise clear the setting.
    #[allow(unsafe_code)]
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, signal as libc::c_ulong) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// True while a process with this pid exists.
pub fn alive(pid: i32) -> bool {
    pid > 0 && kill(Pid::from_raw(pid), None).is_ok()
}

/// How to stop a server: an orderly signal, then an urgent one that still lets the server end
/// its own child processes (killing a server outright leaves them running), each given `grace`
/// to work; after both, the process is killed.
#[derive(Debug, Clone, Copy)]
pub struct StopSignals {
    pub orderly: Signal,
    pub urgent: Signal,
    pub grace: Duration,
}

/// Stops the process `pid` with `signals`.
pub async fn stop_pid(pid: i32, signals: StopSignals) {
    for signal in [signals.orderly, signals.urgent] {
        if !alive(pid) {
            return;
        }
        let _ = kill(Pid::from_raw(pid), signal);
        let deadline = tokio::time::Instant::now() + signals.grace;
        while alive(pid) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if alive(pid) {
            tracing::warn!(
                pid,
                "process still running {:?} after {signal}",
                signals.grace
            );
        }
    }
    if alive(pid) {
        tracing::warn!(pid, "killing the process");
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
}

/// Stops a server left running by an earlier tdb that was killed before it could stop it. It
/// had the orderly signal when tdb died and gets it again; the urgent one follows after
/// `signals.grace`, since an orderly stop can take minutes on a loaded machine (a server writes
/// a full checkpoint first) while an urgent one is over in seconds (the server then recovers
/// from its log when it starts). The pid file's first line is the server's pid; it is stopped
/// only if that process was started on `data_dir` (its command line holds the path), so a
/// recycled pid is never signalled.
pub async fn reclaim_orphan(pid_file: &Path, data_dir: &Path, signals: StopSignals) {
    let Ok(text) = std::fs::read_to_string(pid_file) else {
        return;
    };
    let Some(pid) = text
        .lines()
        .next()
        .and_then(|l| l.trim().parse::<i32>().ok())
    else {
        return;
    };
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let ours = args.contains(&data_dir.as_os_str().as_encoded_bytes());
    if alive(pid) && ours {
        tracing::warn!(pid, "stopping a server left running by an earlier tdb");
        stop_pid(pid, signals).await;
    }
}

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> Result<u16, ManagedError> {
    let listener = TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))
        .map_err(ManagedError::io("binding a free port"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(ManagedError::io("reading a free port"))
}

/// True if nothing listens on 127.0.0.1:`port` right now.
pub fn port_is_free(port: u16) -> bool {
    TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)).is_ok()
}

/// The last `lines` lines of a log file, for error messages.
pub fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
