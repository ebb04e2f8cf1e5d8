//! A managed Redis server: the installed `redis-server` started with a configuration file of
//! tdb's own (never `/etc/redis`), supervised, and stopped with SIGTERM (redis-server then saves
//! a snapshot and syncs its append-only file).
//!
//! Persistence is on: an append-only file (`appendonly yes`, `appendfsync everysec`) and RDB
//! snapshots, both in `data/`. Users live in an ACL file, so the tenant users tdb makes at run
//! time persist (`ACL SAVE`); passwords are only ever written as `#<sha256>`. Its `default`
//! user is off, without a password or a permission; tdb's administrator `tdb_admin` has
//! `~* &* +@all` and a random password sealed under the master key in `state.json`. The ACL
//! file's `default` and `tdb_admin` lines are written again at each start, and the server is
//! checked once it serves ([`secure`]): `protected-mode yes`, `enable-debug-command no`,
//! `enable-module-command no`, one database (`databases 1`, so `SELECT`, `MOVE`, `SWAPDB` and
//! `COPY … DB` have nowhere to go), `sanitize-dump-payload yes` (a `RESTORE` payload is checked
//! whole before it is loaded). `rename-command` is not used: ACLs say who runs what.
//!
//! Like tdb's other servers it listens on a Unix socket in a directory only its user may enter
//! and on no TCP port ([`Listen::PrivateSocket`]: `port 0`; the endpoint's host is then the
//! socket's path); the test harness listens on loopback TCP instead ([`Listen::Loopback`]),
//! its socket still in that private directory.
//!
//! Layout of its directory:
//! - `data/`        owned by the server's user (0700): `appendonlydir/`, `dump.rdb`, the ACL
//!   file `users.acl` (there, not beside `redis.conf`, because `ACL SAVE` writes a temporary
//!   file next to it, as the server's user) and the pid file `redis.pid`
//! - `run/`         the socket `redis.sock` (0700, the server's user)
//! - `redis.conf`   written at each start (0600, the server's user)
//! - `state.json`   port, admin user and the admin password sealed under the master key (0600)
//! - `redis.log`    the server's log (0600)

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tdb_core::aad::Aad;
use tdb_core::secrets::{MasterKey, new_password};
use tokio::process::{Child, Command};

use super::mariadb::{private_dir, write_private};
pub use super::postgres::Listen;
use super::process::{self, StopSignals, free_port, log_tail, port_is_free, reclaim_orphan};
use super::supervisor::{ManagedProcess, Supervisor};
use super::{AdminEndpoint, ManagedError, RunAs};
use crate::redis::conn::{self, RedisConn};

pub const ADMIN_USER: &str = "tdb_admin";
const SOCKET_NAME: &str = "redis.sock";
const PID_FILE: &str = "redis.pid";
const ACL_FILE: &str = "users.acl";
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// SIGTERM (a snapshot is saved, the append-only file synced), then SIGINT (the append-only
/// file synced, no snapshot). Both exit even when the snapshot cannot be written
/// (`shutdown-on-sigterm force`, `shutdown-on-sigint "nosave now force"`): by default a failed
/// save cancels the shutdown and the server runs on, as an orphan if tdb is gone.
const STOP: StopSignals = StopSignals {
    orderly: Signal::SIGTERM,
    urgent: Signal::SIGINT,
    grace: Duration::from_secs(30),
};
const RECLAIM: StopSignals = StopSignals {
    grace: Duration::from_secs(15),
    ..STOP
};
/// Settings tdb writes itself; `settings` may not name them.
const FIXED: [&str; 25] = [
    "include",
    "loadmodule",
    "rename-command",
    "user",
    "requirepass",
    "masterauth",
    "aclfile",
    "dir",
    "dbfilename",
    "appenddirname",
    "pidfile",
    "logfile",
    "port",
    "bind",
    "unixsocket",
    "unixsocketperm",
    "protected-mode",
    "enable-debug-command",
    "enable-module-command",
    "enable-protected-configs",
    "databases",
    "daemonize",
    "sanitize-dump-payload",
    "shutdown-on-sigterm",
    "shutdown-on-sigint",
];

#[derive(Debug, Serialize, Deserialize)]
struct State {
    port: u16,
    admin_user: String,
    /// Hex of the admin password sealed under the master key.
    admin_password_sealed: String,
}

/// What [`ManagedRedis::start`] needs.
pub struct ManagedRedisOptions {
    /// The server's own directory (created if missing).
    pub dir: PathBuf,
    /// The server's user (`RunAs::resolve("redis")`).
    pub run_as: RunAs,
    pub master_key: MasterKey,
    /// For logs: `redis-shared`.
    pub label: String,
    pub listen: Listen,
    /// Extra `name value` lines of the configuration (`maxclients`, `maxmemory`, …); the
    /// settings tdb fixes for hardening and layout are refused.
    pub settings: Vec<(String, String)>,
}

/// A running managed Redis server.
pub struct ManagedRedis {
    endpoint: AdminEndpoint,
    data_dir: PathBuf,
    supervisor: Supervisor,
}

/// Where the server's files are.
struct Paths {
    data: PathBuf,
    socket_dir: PathBuf,
    config: PathBuf,
    acl: PathBuf,
    log: PathBuf,
    state: PathBuf,
}

impl Paths {
    fn of(dir: &Path) -> Self {
        let data = dir.join("data");
        Self {
            acl: data.join(ACL_FILE),
            data,
            socket_dir: socket_dir_of(dir),
            config: dir.join("redis.conf"),
            log: dir.join("redis.log"),
            state: dir.join("state.json"),
        }
    }

    fn socket(&self) -> PathBuf {
        self.socket_dir.join(SOCKET_NAME)
    }
}

impl ManagedRedis {
    /// Starts the server (its state made on first use), waits until it accepts the
    /// administrator, and checks that it is hardened.
    pub async fn start(opts: ManagedRedisOptions) -> Result<Self, ManagedError> {
        let dir = &opts.dir;
        std::fs::create_dir_all(dir)
            .map_err(ManagedError::io(format!("creating {}", dir.display())))?;
        opts.run_as.check_reachable(dir)?;
        let server = find_server()?;
        let paths = Paths::of(dir);
        private_dir(&paths.data, &opts.run_as)?;
        private_dir(&paths.socket_dir, &opts.run_as)?;
        reclaim_orphan(&paths.data.join(PID_FILE), &paths.config, RECLAIM).await;
        let mut state = ensure_state(&opts.master_key, &paths.state)?;
        if opts.listen == Listen::Loopback && !port_is_free(state.port) {
            let old = state.port;
            state.port = free_port()?;
            tracing::warn!(old, new = state.port, "managed Redis port taken; moving");
            super::write_private_json(&paths.state, &state)?;
        }
        let password = unseal(&opts.master_key, &state, &paths.state)?;
        write_acl_file(&paths.acl, &password, &opts.run_as)?;
        write_config(&opts, &paths, state.port)?;
        let host = match opts.listen {
            Listen::PrivateSocket => paths.socket().display().to_string(),
            Listen::Loopback => "127.0.0.1".into(),
        };
        let endpoint = AdminEndpoint {
            host,
            port: state.port,
            user: state.admin_user.clone(),
            password,
        };
        let process = Arc::new(RedisProcess {
            server,
            paths,
            run_as: opts.run_as.clone(),
            endpoint: endpoint.clone(),
            label: opts.label.clone(),
        });
        let supervisor = Supervisor::start(process).await?;
        if let Err(e) = secure(&endpoint).await {
            supervisor.shutdown().await;
            return Err(e);
        }
        tracing::info!(server = %opts.label, at = %endpoint.host, port = state.port, "managed Redis ready");
        Ok(Self {
            endpoint,
            data_dir: dir.join("data"),
            supervisor,
        })
    }

    pub fn endpoint(&self) -> &AdminEndpoint {
        &self.endpoint
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Stops the server (SIGTERM: it saves first) and waits for it.
    pub async fn shutdown(self) {
        self.supervisor.shutdown().await;
    }
}

/// What each start checks and puts right, as the administrator: the `default` user off with
/// no password and no permission (fixed, and the ACL file saved, if it was not), commands
/// tdb no longer gives tenants' users taken from them, and the
/// hardening settings the configuration file sets (a mismatch fails the start).
async fn secure(endpoint: &AdminEndpoint) -> Result<(), ManagedError> {
    let failed = |e: crate::EngineError| ManagedError::Setup(format!("hardening Redis: {e}"));
    let mut admin = conn::connect(endpoint).await.map_err(failed)?;
    crate::redis::server::close_default_user(&mut admin)
        .await
        .map_err(failed)?;
    crate::redis::server::retire_rules(&mut admin)
        .await
        .map_err(failed)?;
    for (name, want) in [
        ("protected-mode", "yes"),
        ("enable-debug-command", "no"),
        ("enable-module-command", "no"),
        ("databases", "1"),
        ("appendonly", "yes"),
        ("sanitize-dump-payload", "yes"),
    ] {
        let got = config_get(&mut admin, name).await.map_err(failed)?;
        if got != want {
            return Err(ManagedError::Setup(format!(
                "Redis runs with {name} {got}, not {want}"
            )));
        }
    }
    Ok(())
}

/// One setting's value (`CONFIG GET`).
pub(crate) async fn config_get(conn: &mut RedisConn, name: &str) -> crate::engine::Result<String> {
    let reply = conn::items(conn.call(&["CONFIG", "GET", name]).await?, "CONFIG GET")?;
    Ok(reply.get(1).and_then(conn::text).unwrap_or_default())
}

fn ensure_state(key: &MasterKey, path: &Path) -> Result<State, ManagedError> {
    if path.exists() {
        let text = std::fs::read_to_string(path).map_err(|e| ManagedError::State {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        return serde_json::from_str(&text).map_err(|e| ManagedError::State {
            path: path.to_path_buf(),
            message: e.to_string(),
        });
    }
    let password = new_password("");
    let state = State {
        port: free_port()?,
        admin_user: ADMIN_USER.into(),
        admin_password_sealed: hex::encode(key.seal(password.as_bytes(), Aad::ManagedRedisAdmin)),
    };
    super::write_private_json(path, &state)?;
    Ok(state)
}

fn unseal(key: &MasterKey, state: &State, path: &Path) -> Result<String, ManagedError> {
    hex::decode(&state.admin_password_sealed)
        .ok()
        .and_then(|sealed| key.open_string(&sealed, Aad::ManagedRedisAdmin).ok())
        .ok_or_else(|| ManagedError::State {
            path: path.to_path_buf(),
            message: "admin password cannot be unsealed (was the master key changed?)".into(),
        })
}

/// `#<hex sha256>`: how an ACL rule names a password without holding it.
pub fn password_rule(password: &str) -> String {
    format!("#{}", hex::encode(Sha256::digest(password.as_bytes())))
}

/// The ACL file's lines for `default` and the administrator.
fn fixed_acl_lines(password: &str) -> [String; 2] {
    [
        "user default off resetpass resetkeys resetchannels -@all".into(),
        format!(
            "user {ADMIN_USER} on {} ~* &* +@all",
            password_rule(password)
        ),
    ]
}

/// Writes the ACL file: tdb's `default` and administrator lines, then the other users of the
/// file as it was (the tenants' users, saved by `ACL SAVE`).
fn write_acl_file(path: &Path, password: &str, run_as: &RunAs) -> Result<(), ManagedError> {
    let old = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(ManagedError::io(format!("reading {}", path.display()))(e)),
    };
    let mut lines: Vec<String> = fixed_acl_lines(password).into();
    lines.extend(
        old.lines()
            .filter(|l| {
                let name = l.split_whitespace().nth(1);
                !matches!(name, Some("default" | ADMIN_USER)) && !l.trim().is_empty()
            })
            .map(str::to_owned),
    );
    let tmp = path.with_extension("acl.tdb-tmp");
    let _ = std::fs::remove_file(&tmp);
    write_private(&tmp, &(lines.join("\n") + "\n"), run_as)?;
    std::fs::rename(&tmp, path).map_err(ManagedError::io(format!("writing {}", path.display())))
}

/// A configuration value as redis-server's `sdssplitargs` reads a double-quoted word.
fn quoted(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The configuration file's text.
fn config_text(
    opts: &ManagedRedisOptions,
    paths: &Paths,
    port: u16,
) -> Result<String, ManagedError> {
    let mut lines = vec!["# Written by tdb at each start; changes here are lost.".to_string()];
    for (name, value) in &opts.settings {
        let lower = name.to_ascii_lowercase();
        if FIXED.contains(&lower.as_str())
            || !lower.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return Err(ManagedError::Setup(format!(
                "Redis setting {name:?} is tdb's own and cannot be set"
            )));
        }
        if value.contains(['\n', '\r']) {
            return Err(ManagedError::Setup(format!(
                "Redis setting {name:?} has a line break"
            )));
        }
        lines.push(format!("{lower} {}", quoted(value)));
    }
    let path = |p: &Path| quoted(&p.display().to_string());
    let port = match opts.listen {
        Listen::PrivateSocket => 0,
        Listen::Loopback => port,
    };
    lines.extend([
        "bind 127.0.0.1".into(),
        format!("port {port}"),
        format!("unixsocket {}", path(&paths.socket())),
        "unixsocketperm 700".into(),
        "protected-mode yes".into(),
        "daemonize no".into(),
        // Keeps the command line (with this file's path) readable, so an orphan is recognised.
        "set-proc-title no".into(),
        format!("pidfile {}", path(&paths.data.join(PID_FILE))),
        "logfile \"\"".into(),
        format!("dir {}", path(&paths.data)),
        "dbfilename dump.rdb".into(),
        "appendonly yes".into(),
        "appendfsync everysec".into(),
        "appenddirname appendonlydir".into(),
        format!("aclfile {}", path(&paths.acl)),
        "databases 1".into(),
        "enable-debug-command no".into(),
        "enable-module-command no".into(),
        "enable-protected-configs no".into(),
        "sanitize-dump-payload yes".into(),
        "shutdown-on-sigterm force".into(),
        "shutdown-on-sigint \"nosave now force\"".into(),
    ]);
    Ok(lines.join("\n") + "\n")
}

fn write_config(opts: &ManagedRedisOptions, paths: &Paths, port: u16) -> Result<(), ManagedError> {
    let text = config_text(opts, paths, port)?;
    let _ = std::fs::remove_file(&paths.config);
    write_private(&paths.config, &text, &opts.run_as)
}

/// The installed `redis-server`: from PATH, then where Debian and source builds put it.
fn find_server() -> Result<PathBuf, ManagedError> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(["/usr/bin", "/usr/sbin", "/usr/local/bin"].map(PathBuf::from));
    dirs.iter()
        .map(|d| d.join("redis-server"))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            ManagedError::Setup(
                "redis-server not found; install it (apt-get install redis-server)".into(),
            )
        })
}

/// The longest socket path the kernel accepts (`sun_path` less its NUL).
const MAX_SOCKET_PATH: usize = 107;

/// `run/` in the server's directory, or, when the socket's path would be too long for the
/// kernel there, a directory of its own under the system's temporary directory.
fn socket_dir_of(server_dir: &Path) -> PathBuf {
    let dir = server_dir.join("run");
    if dir.as_os_str().len() + 1 + SOCKET_NAME.len() <= MAX_SOCKET_PATH {
        return dir;
    }
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    server_dir.hash(&mut hasher);
    std::env::temp_dir().join(format!("tdb-redis-{:016x}", hasher.finish()))
}

/// Removes the managed server in `dir` for good: stops a process still running on it (one left
/// by a killed tdb), then deletes its directory and its socket directory. A missing directory
/// is fine, so a removal cut off by a crash is finished by running it again.
pub async fn remove(dir: &Path) -> Result<(), ManagedError> {
    let paths = Paths::of(dir);
    reclaim_orphan(&paths.data.join(PID_FILE), &paths.config, RECLAIM).await;
    for path in [paths.socket_dir, dir.to_path_buf()] {
        match std::fs::remove_dir_all(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(ManagedError::Io {
                    what: format!("removing {}", path.display()),
                    source: e,
                });
            }
        }
    }
    Ok(())
}

struct RedisProcess {
    server: PathBuf,
    paths: Paths,
    run_as: RunAs,
    endpoint: AdminEndpoint,
    label: String,
}

impl ManagedProcess for RedisProcess {
    fn label(&self) -> String {
        self.label.clone()
    }

    async fn spawn(&self) -> Result<Child, ManagedError> {
        use std::os::unix::fs::OpenOptionsExt;
        let path = &self.paths.log;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .map_err(ManagedError::io(format!("opening {}", path.display())))?;
        let log_err = log
            .try_clone()
            .map_err(ManagedError::io("cloning log handle"))?;
        let mut command = Command::new(&self.server);
        // The configuration file is the only argument: `reclaim_orphan` finds it there.
        command
            .arg(&self.paths.config)
            .current_dir(&self.paths.data)
            .env_clear()
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err));
        process::prepare(&mut command, &self.run_as, Signal::SIGTERM);
        command.spawn().map_err(ManagedError::io(format!(
            "starting {}",
            self.server.display()
        )))
    }

    async fn wait_ready(&self, child: &mut Child) -> Result<(), ManagedError> {
        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        let not_ready = || ManagedError::NotReady {
            seconds: READY_TIMEOUT.as_secs(),
            log: log_tail(&self.paths.log, 20),
        };
        loop {
            if let Ok(Some(_status)) = child.try_wait() {
                return Err(not_ready());
            }
            // PING is refused while the data loads (`LOADING`); AUTH is not.
            if let Ok(mut conn) = conn::connect(&self.endpoint).await
                && conn.call(&["PING"]).await.is_ok()
            {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(not_ready());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn stop_signals(&self) -> StopSignals {
        STOP
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(settings: Vec<(String, String)>) -> ManagedRedisOptions {
        ManagedRedisOptions {
            dir: "/srv/tdb/redis".into(),
            run_as: RunAs::resolve("redis").expect("run-as"),
            master_key: MasterKey::generate(),
            label: "test".into(),
            listen: Listen::PrivateSocket,
            settings,
        }
    }

    #[test]
    fn the_configuration_hardens_and_listens_on_the_socket_only() {
        let opts = options(vec![("maxclients".into(), "100".into())]);
        let text = config_text(&opts, &Paths::of(&opts.dir), 6400).expect("config");
        for line in [
            "maxclients \"100\"",
            "port 0",
            "unixsocket \"/srv/tdb/redis/run/redis.sock\"",
            "unixsocketperm 700",
            "protected-mode yes",
            "aclfile \"/srv/tdb/redis/data/users.acl\"",
            "appendfsync everysec",
            "enable-debug-command no",
            "databases 1",
            "shutdown-on-sigterm force",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
        assert!(!text.contains("rename-command"));
    }

    #[test]
    fn settings_cannot_undo_the_hardening() {
        for name in [
            "enable-debug-command",
            "ACLFILE",
            "include",
            "dir",
            "bad name",
        ] {
            let opts = options(vec![(name.into(), "x".into())]);
            assert!(
                config_text(&opts, &Paths::of(&opts.dir), 1).is_err(),
                "{name}"
            );
        }
        let opts = options(vec![(
            "maxmemory".into(),
            "1mb\nenable-debug-command yes".into(),
        )]);
        assert!(config_text(&opts, &Paths::of(&opts.dir), 1).is_err());
    }

    #[test]
    fn acl_lines_hold_only_the_password_hash() {
        let [default, admin] = fixed_acl_lines("secret");
        assert_eq!(
            default,
            "user default off resetpass resetkeys resetchannels -@all"
        );
        assert!(admin.starts_with(&format!("user {ADMIN_USER} on #2bb80d53")));
        assert!(!admin.contains("secret"));
        assert_eq!(quoted(r#"a"b\c"#), r#""a\"b\\c""#);
    }
}
