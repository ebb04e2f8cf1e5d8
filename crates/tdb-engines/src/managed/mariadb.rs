//! A managed MariaDB server: initialised once with `mariadb-install-db` into its own directory,
//! started from the installed `mariadbd` with an option file of tdb's own (never
//! `/etc/mysql`), supervised, and stopped with SIGTERM.
//!
//! The data directory comes out of initialisation already closed: the administrator
//! `tdb_admin` (on `localhost` and `127.0.0.1`, all privileges, a random password sealed under
//! the master key) replaces `root`, and there are no anonymous users and no `test` database or
//! grants. Each start checks that again ([`crate::mysql::secure::harden`]).
//!
//! Like tdb's PostgreSQL, the server listens on a Unix socket in a directory only its user may
//! enter and on no TCP port ([`Listen::PrivateSocket`]; the endpoint's host is then the
//! socket's path: a host starting with `/` is a socket path); the test harness listens on
//! loopback TCP instead ([`Listen::Loopback`]), its socket still in that private directory.
//! `LOAD DATA LOCAL` is off, and `secure_file_priv` points at an empty private directory, so
//! no statement reads or writes files elsewhere.
//!
//! Layout of its directory:
//! - `data/`        the data directory, owned by the user the server runs as (mode 0700)
//! - `run/`         the server's socket `mysqld.sock` (mode 0700, the server's user)
//! - `files/`       `secure_file_priv`, empty (mode 0700, the server's user)
//! - `tmp/`         the server's temporary files (mode 0700, the server's user): a server
//!   starting removes every `#sql*` file of its `tmpdir`, so servers sharing `/tmp` would
//!   delete each other's temporary tables
//! - `my.cnf`       the server's option file, written at each start (0600, the server's user)
//! - `state.json`   port, admin user and the admin password sealed under the master key (0600)
//! - `mariadb.log`  the server's log (0600)

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};
use sqlx::Connection;
use sqlx::mysql::MySqlConnection;
use tdb_core::aad::Aad;
use tdb_core::secrets::{MasterKey, new_password};
use tokio::process::{Child, Command};

pub use super::postgres::Listen;
use super::process::{self, StopSignals, free_port, log_tail, port_is_free, reclaim_orphan};
use super::supervisor::{ManagedProcess, Supervisor};
use super::{AdminEndpoint, ManagedError, RunAs};
use crate::mysql::quote::{account, literal, native_hash};
use crate::mysql::secure::{Root, harden};

const ADMIN_USER: &str = "tdb_admin";
/// The hosts the administrator has an account for: the socket's and loopback TCP's.
const ADMIN_HOSTS: [&str; 2] = ["localhost", "127.0.0.1"];
const SOCKET_NAME: &str = "mysqld.sock";
const PID_FILE: &str = "mariadbd.pid";
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// SIGTERM (sessions end, InnoDB flushes and stops cleanly), then SIGKILL (InnoDB recovers
/// from its redo log at the next start; mariadbd has no child processes to leave behind).
const STOP: StopSignals = StopSignals {
    orderly: Signal::SIGTERM,
    urgent: Signal::SIGKILL,
    grace: Duration::from_secs(30),
};
/// The same for a server left by a killed tdb, with less patience: tdb's start waits on it.
const RECLAIM: StopSignals = StopSignals {
    grace: Duration::from_secs(15),
    ..STOP
};
/// Settings that keep one server small (tests start many); `settings` override them.
const DEFAULT_SETTINGS: [(&str, &str); 2] = [
    ("innodb_buffer_pool_size", "32M"),
    ("innodb_log_file_size", "16M"),
];

#[derive(Debug, Serialize, Deserialize)]
struct State {
    port: u16,
    admin_user: String,
    /// Hex of the admin password sealed under the master key.
    admin_password_sealed: String,
}

/// What [`ManagedMariadb::start`] needs.
pub struct ManagedMariadbOptions {
    /// The server's own directory (created if missing).
    pub dir: PathBuf,
    /// The server's user (`RunAs::resolve("mysql")`).
    pub run_as: RunAs,
    pub master_key: MasterKey,
    /// For logs: `mariadb-shared`.
    pub label: String,
    pub listen: Listen,
    /// Extra `name=value` lines of the server's option file (`max_connections`, …).
    pub settings: Vec<(String, String)>,
}

/// A running managed MariaDB server.
pub struct ManagedMariadb {
    endpoint: AdminEndpoint,
    data_dir: PathBuf,
    supervisor: Supervisor,
}

/// Where the server's files are.
struct Paths {
    data: PathBuf,
    socket_dir: PathBuf,
    files: PathBuf,
    tmp: PathBuf,
    config: PathBuf,
    log: PathBuf,
}

impl Paths {
    fn of(dir: &Path) -> Self {
        Self {
            data: dir.join("data"),
            socket_dir: socket_dir_of(dir),
            files: dir.join("files"),
            tmp: dir.join("tmp"),
            config: dir.join("my.cnf"),
            log: dir.join("mariadb.log"),
        }
    }

    fn socket(&self) -> PathBuf {
        self.socket_dir.join(SOCKET_NAME)
    }
}

impl ManagedMariadb {
    /// Initialises the server on first use, then starts it, waits until it accepts the
    /// administrator, and checks that it is hardened.
    pub async fn start(opts: ManagedMariadbOptions) -> Result<Self, ManagedError> {
        let dir = &opts.dir;
        std::fs::create_dir_all(dir)
            .map_err(ManagedError::io(format!("creating {}", dir.display())))?;
        opts.run_as.check_reachable(dir)?;
        let binaries = Binaries::find()?;
        let paths = Paths::of(dir);
        private_dir(&paths.socket_dir, &opts.run_as)?;
        private_dir(&paths.files, &opts.run_as)?;
        private_dir(&paths.tmp, &opts.run_as)?;
        reclaim_orphan(&paths.data.join(PID_FILE), &paths.data, RECLAIM).await;
        let mut state = ensure_initialised(&opts, &binaries, &paths).await?;
        if opts.listen == Listen::Loopback && !port_is_free(state.port) {
            let old = state.port;
            state.port = free_port()?;
            tracing::warn!(old, new = state.port, "managed MariaDB port taken; moving");
            write_state(&dir.join("state.json"), &state)?;
        }
        let password = unseal(&opts.master_key, &state, &dir.join("state.json"))?;
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
        let process = Arc::new(MariadbProcess {
            server: binaries.server,
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
        tracing::info!(server = %opts.label, at = %endpoint.host, port = state.port, "managed MariaDB ready");
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

    /// Stops the server (SIGTERM) and waits for it.
    pub async fn shutdown(self) {
        self.supervisor.shutdown().await;
    }
}

/// Checks, as the administrator, what initialisation set up: both administrator accounts, and
/// the server hardened with every root account gone.
async fn secure(endpoint: &AdminEndpoint) -> Result<(), ManagedError> {
    let failed = |e: crate::EngineError| ManagedError::Setup(format!("hardening MariaDB: {e}"));
    let access = crate::mysql::admin_access(endpoint, "");
    let mut conn = crate::mysql::connect(&access).await.map_err(failed)?;
    for sql in admin_sql(&endpoint.password, "IF NOT EXISTS") {
        crate::mysql::exec(&mut conn, sql).await.map_err(failed)?;
    }
    let hardened = harden(&mut conn, Root::Drop).await;
    let _ = conn.close().await;
    hardened.map_err(failed)
}

/// The administrator's accounts with all privileges, by the hash of `password`.
fn admin_sql(password: &str, if_not_exists: &str) -> Vec<String> {
    let hash = literal(&native_hash(password));
    ADMIN_HOSTS
        .iter()
        .flat_map(|host| {
            let admin = account(ADMIN_USER, host);
            [
                format!("CREATE USER {if_not_exists} {admin} IDENTIFIED BY PASSWORD {hash}"),
                format!("GRANT ALL PRIVILEGES ON *.* TO {admin} WITH GRANT OPTION"),
            ]
        })
        .collect()
}

fn unseal(key: &MasterKey, state: &State, path: &Path) -> Result<String, ManagedError> {
    hex::decode(&state.admin_password_sealed)
        .ok()
        .and_then(|sealed| key.open_string(&sealed, Aad::ManagedMariadbAdmin).ok())
        .ok_or_else(|| ManagedError::State {
            path: path.to_path_buf(),
            message: "admin password cannot be unsealed (was the master key changed?)".into(),
        })
}

/// The installed programs: `mariadbd` and `mariadb-install-db`.
struct Binaries {
    server: PathBuf,
    install_db: PathBuf,
}

impl Binaries {
    /// From PATH, then the directories Debian and source builds install to.
    fn find() -> Result<Self, ManagedError> {
        let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).collect())
            .unwrap_or_default();
        dirs.extend(
            ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"].map(PathBuf::from),
        );
        let find = |name: &str| dirs.iter().map(|d| d.join(name)).find(|p| p.is_file());
        match (find("mariadbd"), find("mariadb-install-db")) {
            (Some(server), Some(install_db)) => Ok(Self { server, install_db }),
            _ => Err(ManagedError::Setup(
                "MariaDB server programs (mariadbd, mariadb-install-db) not found; install them \
                 (apt-get install mariadb-server)"
                    .into(),
            )),
        }
    }
}

/// Runs `mariadb-install-db` unless the data directory exists. It is built in `data.init` and
/// renamed into place after its state file is written, so an interrupted initialisation is
/// redone rather than leaving a data directory whose admin password is unknown.
async fn ensure_initialised(
    opts: &ManagedMariadbOptions,
    binaries: &Binaries,
    paths: &Paths,
) -> Result<State, ManagedError> {
    let state_path = opts.dir.join("state.json");
    let init_dir = opts.dir.join("data.init");
    if !paths.data.exists() {
        let finished = state_path.exists() && init_dir.join("mysql/global_priv.MAD").exists();
        if !finished {
            if init_dir.exists() {
                std::fs::remove_dir_all(&init_dir)
                    .map_err(ManagedError::io("removing an interrupted initialisation"))?;
            }
            // A state file without a finished data directory is stale: never pair it with a
            // new one.
            let _ = std::fs::remove_file(&state_path);
            let port = free_port()?;
            write_config(opts, paths, port)?;
            let state = install(opts, binaries, paths, &init_dir, port).await?;
            write_state(&state_path, &state)?;
        }
        std::fs::rename(&init_dir, &paths.data)
            .map_err(ManagedError::io("moving the data directory into place"))?;
    }
    let text = std::fs::read_to_string(&state_path).map_err(|e| ManagedError::State {
        path: state_path.clone(),
        message: e.to_string(),
    })?;
    serde_json::from_str(&text).map_err(|e| ManagedError::State {
        path: state_path,
        message: e.to_string(),
    })
}

/// Statements `mariadb-install-db` runs after making the system tables: the administrator's
/// accounts, and no root or anonymous account (the bootstrap server reads no grants until the
/// first `FLUSH PRIVILEGES`, and accounts it made are removed from the tables directly).
fn init_sql(password: &str) -> String {
    let mut sql = vec!["FLUSH PRIVILEGES".to_string()];
    sql.extend(admin_sql(password, ""));
    sql.extend(
        [
            "DELETE FROM mysql.global_priv WHERE User IN ('root', '')",
            "DELETE FROM mysql.proxies_priv WHERE User IN ('root', '')",
            "DELETE FROM mysql.db WHERE User = ''",
            "FLUSH PRIVILEGES",
        ]
        .map(String::from),
    );
    sql.iter().map(|s| format!("{s};\n")).collect()
}

async fn install(
    opts: &ManagedMariadbOptions,
    binaries: &Binaries,
    paths: &Paths,
    init_dir: &Path,
    port: u16,
) -> Result<State, ManagedError> {
    tracing::info!(dir = %init_dir.display(), user = %opts.run_as.name, "initialising managed MariaDB");
    private_dir(init_dir, &opts.run_as)?;
    let password = new_password("");
    // Holds the password's hash only; removed once the install is done.
    let sql_file = opts.dir.join("init.sql");
    let _ = std::fs::remove_file(&sql_file);
    write_private(&sql_file, &init_sql(&password), &opts.run_as)?;
    let mut command = Command::new(&binaries.install_db);
    command
        .arg(format!("--defaults-file={}", paths.config.display()))
        .args([
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
            "--skip-name-resolve",
        ])
        .arg(format!("--datadir={}", init_dir.display()))
        .arg(format!("--extra-file={}", sql_file.display()))
        .env_clear()
        .env("LC_ALL", "C")
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .stdin(Stdio::null());
    process::prepare(&mut command, &opts.run_as, Signal::SIGKILL);
    let output = command.output().await;
    let _ = std::fs::remove_file(&sql_file);
    let output = output.map_err(ManagedError::io("running mariadb-install-db"))?;
    if !output.status.success() {
        return Err(ManagedError::Command {
            program: "mariadb-install-db".into(),
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
        });
    }
    Ok(State {
        port,
        admin_user: ADMIN_USER.into(),
        admin_password_sealed: hex::encode(
            opts.master_key
                .seal(password.as_bytes(), Aad::ManagedMariadbAdmin),
        ),
    })
}

/// Writes the server's option file. Everything the server reads comes from it and the command
/// line; a value with a line break cannot be written.
fn write_config(
    opts: &ManagedMariadbOptions,
    paths: &Paths,
    port: u16,
) -> Result<(), ManagedError> {
    let mut lines = vec!["[mariadbd]".to_string()];
    match opts.listen {
        Listen::PrivateSocket => lines.push("skip-networking".into()),
        Listen::Loopback => {
            lines.push("bind-address=127.0.0.1".into());
            lines.push(format!("port={port}"));
        }
    }
    lines.extend([
        format!("socket={}", paths.socket().display()),
        format!("secure-file-priv={}", paths.files.display()),
        format!("tmpdir={}", paths.tmp.display()),
        "local-infile=0".into(),
        "skip-name-resolve".into(),
        "symbolic-links=0".into(),
        "character-set-server=utf8mb4".into(),
        "collation-server=utf8mb4_unicode_ci".into(),
    ]);
    let defaults = DEFAULT_SETTINGS.map(|(n, v)| (n.to_string(), v.to_string()));
    for (name, value) in defaults.iter().chain(&opts.settings) {
        if format!("{name}{value}").contains(['\n', '\r']) {
            return Err(ManagedError::Setup(format!(
                "MariaDB setting {name:?} has a line break"
            )));
        }
        lines.push(format!("{name}={value}"));
    }
    let _ = std::fs::remove_file(&paths.config);
    write_private(&paths.config, &(lines.join("\n") + "\n"), &opts.run_as)
}

/// Writes a new file of mode 0600 for `run_as`.
pub(super) fn write_private(path: &Path, text: &str, run_as: &RunAs) -> Result<(), ManagedError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let what = format!("writing {}", path.display());
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(ManagedError::io(what.clone()))?;
    f.write_all(text.as_bytes())
        .map_err(ManagedError::io(what))?;
    run_as.own(path)
}

/// The longest socket path the kernel accepts (`sun_path` less its NUL).
const MAX_SOCKET_PATH: usize = 107;

/// Where the socket of the server in `dir` lives: `run/` in its directory, or, when the
/// socket's path would be too long for the kernel there, a directory of its own under the
/// system's temporary directory.
fn socket_dir_of(server_dir: &Path) -> PathBuf {
    let dir = server_dir.join("run");
    if dir.as_os_str().len() + 1 + SOCKET_NAME.len() <= MAX_SOCKET_PATH {
        return dir;
    }
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    server_dir.hash(&mut hasher);
    std::env::temp_dir().join(format!("tdb-mariadb-{:016x}", hasher.finish()))
}

/// Makes `dir` a directory of `run_as` with mode 0700 (no other local user may enter it; root
/// can, as root can read the data directory anyway).
pub(super) fn private_dir(dir: &Path, run_as: &RunAs) -> Result<(), ManagedError> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    match std::fs::symlink_metadata(dir) {
        Ok(meta) if meta.is_dir() && !meta.file_type().is_symlink() => {
            if meta.uid() != run_as.uid.as_raw()
                && meta.uid() != nix::unistd::Uid::effective().as_raw()
            {
                return Err(ManagedError::Setup(format!(
                    "{} belongs to another user (uid {}); remove it",
                    dir.display(),
                    meta.uid()
                )));
            }
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(ManagedError::io(format!("chmod 700 {}", dir.display())))?;
        }
        Ok(_) => {
            return Err(ManagedError::Setup(format!(
                "{} is not a directory; remove it",
                dir.display()
            )));
        }
        Err(_) => std::fs::DirBuilder::new()
            .mode(0o700)
            .create(dir)
            .map_err(ManagedError::io(format!("creating {}", dir.display())))?,
    }
    run_as.own(dir)
}

/// Removes the managed server in `dir` for good: stops it if a process still runs on it (one
/// left by a killed tdb), then deletes its directory and its socket directory. A missing
/// directory is fine, so a removal cut off by a crash is finished by running it again.
pub async fn remove(dir: &Path) -> Result<(), ManagedError> {
    let paths = Paths::of(dir);
    reclaim_orphan(&paths.data.join(PID_FILE), &paths.data, RECLAIM).await;
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

fn write_state(path: &Path, state: &State) -> Result<(), ManagedError> {
    super::write_private_json(path, state)
}

struct MariadbProcess {
    server: PathBuf,
    paths: Paths,
    run_as: RunAs,
    endpoint: AdminEndpoint,
    label: String,
}

impl ManagedProcess for MariadbProcess {
    fn label(&self) -> String {
        self.label.clone()
    }

    async fn spawn(&self) -> Result<Child, ManagedError> {
        use std::os::unix::fs::OpenOptionsExt;
        let path = &self.paths.log;
        // Failing statements can land in this log: keep it private. The server appends to it
        // itself (--log-error), as its own user.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .map_err(ManagedError::io(format!("opening {}", path.display())))?;
        self.run_as.own(path)?;
        let log_err = log
            .try_clone()
            .map_err(ManagedError::io("cloning log handle"))?;
        let mut command = Command::new(&self.server);
        command
            // --defaults-file must come first; the data directory is an argument of its own so
            // `reclaim_orphan` recognises the process.
            .arg(format!("--defaults-file={}", self.paths.config.display()))
            .arg("--datadir")
            .arg(&self.paths.data)
            .arg(format!(
                "--pid-file={}",
                self.paths.data.join(PID_FILE).display()
            ))
            .arg(format!("--log-error={}", path.display()))
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
        let options = crate::mysql::options(&crate::mysql::admin_access(&self.endpoint, ""));
        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        let not_ready = || ManagedError::NotReady {
            seconds: READY_TIMEOUT.as_secs(),
            log: log_tail(&self.paths.log, 20),
        };
        loop {
            if let Ok(Some(_status)) = child.try_wait() {
                return Err(not_ready());
            }
            if let Ok(conn) = MySqlConnection::connect_with(&options).await {
                let _ = conn.close().await;
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(not_ready());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn stop_signals(&self) -> StopSignals {
        STOP
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initialisation_creates_the_admin_and_removes_root() {
        let sql = init_sql("password");
        assert!(sql.starts_with("FLUSH PRIVILEGES;\n"));
        assert!(sql.contains(
            "CREATE USER  'tdb_admin'@'127.0.0.1' IDENTIFIED BY PASSWORD \
             '*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19';"
        ));
        assert!(sql.contains("DELETE FROM mysql.global_priv WHERE User IN ('root', '');"));
        assert!(!sql.contains("'password'"));
    }

    #[test]
    fn long_server_dirs_put_the_socket_under_tmp() {
        let short = socket_dir_of(Path::new("/var/lib/tdb/mariadb"));
        assert_eq!(short, Path::new("/var/lib/tdb/mariadb/run"));
        let long = socket_dir_of(&Path::new("/var/lib").join("x".repeat(100)));
        assert!(long.starts_with(std::env::temp_dir()));
    }
}
