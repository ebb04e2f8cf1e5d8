//! A managed PostgreSQL server: initialised once with `initdb` into its own directory, started
//! from the installed binaries, supervised, and stopped with a fast shutdown.
//!
//! tdb's own servers listen on a Unix socket only, in a directory that only the server's user
//! (and root) may enter, and on no TCP port: every role on them, tenants' roles included, is
//! reached through tdb alone. A role that changes its own password (PostgreSQL lets every role do
//! that) still cannot log in around the proxy. The test harness's stand-in for an attached server
//! listens on loopback TCP instead.
//!
//! Layout of its directory:
//! - `pgdata/`      the cluster, owned by the user the server runs as (mode 0700)
//! - `socket/`      the server's Unix socket (mode 0700, the server's user)
//! - `state.json`   port, admin user and the admin password sealed under the master key (0600)
//! - `postgres.log` the server's output

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};
use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use tdb_core::aad::Aad;
use tdb_core::secrets::{MasterKey, new_password};
use tokio::process::{Child, Command};

use super::archive::{StanzaServer, WalArchive};
use super::process::{self, StopSignals, free_port, log_tail, port_is_free, reclaim_orphan};
use super::supervisor::{ManagedProcess, Supervisor};
use super::{AdminEndpoint, ManagedError, RunAs};

const ADMIN_USER: &str = "tdb_admin";
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Fast shutdown (sessions end, a shutdown checkpoint is written), then immediate shutdown (the
/// server stops its processes at once and recovers from its WAL at the next start), 30 s each.
const STOP: StopSignals = StopSignals {
    orderly: Signal::SIGINT,
    urgent: Signal::SIGQUIT,
    grace: Duration::from_secs(30),
};
/// The same for a server left by a killed tdb, with less patience: tdb's start waits on it.
const RECLAIM: StopSignals = StopSignals {
    grace: Duration::from_secs(15),
    ..STOP
};

/// Where PostgreSQL's server programs (initdb, postgres) are installed.
#[derive(Debug, Clone)]
pub struct PgBinaries {
    pub bindir: PathBuf,
}

impl PgBinaries {
    /// `explicit`, else `pg_config --bindir`, else the newest `/usr/lib/postgresql/*/bin`; the
    /// first that holds both `initdb` and `postgres`.
    pub fn find(explicit: Option<&Path>) -> Result<Self, ManagedError> {
        let mut candidates: Vec<PathBuf> = explicit.map(Path::to_path_buf).into_iter().collect();
        if let Ok(out) = std::process::Command::new("pg_config")
            .arg("--bindir")
            .output()
            && out.status.success()
        {
            let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
            candidates.push(PathBuf::from(dir));
        }
        let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let v = e.file_name().to_str()?.parse::<u32>().ok()?;
                Some((v, e.path().join("bin")))
            })
            .collect();
        versions.sort();
        candidates.extend(versions.into_iter().rev().map(|(_, p)| p));
        let found = candidates
            .into_iter()
            .find(|dir| dir.join("initdb").is_file() && dir.join("postgres").is_file());
        if let (Some(wanted), Some(got)) = (explicit, found.as_ref())
            && wanted != got
        {
            tracing::warn!(wanted = %wanted.display(), using = %got.display(), "postgres_bin_dir lacks initdb/postgres");
        }
        found.map(|bindir| Self { bindir }).ok_or_else(|| {
            ManagedError::Setup(
                "PostgreSQL server binaries (initdb, postgres) not found; install them \
                 (apt-get install postgresql) or set postgres_bin_dir"
                    .into(),
            )
        })
    }

    pub fn tool(&self, name: &str) -> PathBuf {
        self.bindir.join(name)
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct State {
    port: u16,
    admin_user: String,
    /// Hex of the admin password sealed under the master key.
    admin_password_sealed: String,
}

/// Where a managed server accepts connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listen {
    /// A Unix socket in the server's private `socket/` directory, and no TCP port.
    PrivateSocket,
    /// TCP on 127.0.0.1 and no Unix socket (the test harness's attached servers).
    Loopback,
}

/// What [`ManagedPostgres::start`] needs.
pub struct ManagedPostgresOptions {
    /// The server's own directory (created if missing).
    pub dir: PathBuf,
    pub binaries: PgBinaries,
    pub run_as: RunAs,
    pub master_key: MasterKey,
    /// For logs: `postgresql-shared`.
    pub label: String,
    /// Extra `-c name=value` settings.
    pub settings: Vec<(String, String)>,
    pub listen: Listen,
    /// Archive the server's WAL into this stanza of the archive (servers on a private socket).
    pub archive: Option<(Arc<WalArchive>, String)>,
}

/// A running managed PostgreSQL server.
pub struct ManagedPostgres {
    endpoint: AdminEndpoint,
    data_dir: PathBuf,
    supervisor: Supervisor,
}

impl ManagedPostgres {
    /// Initialises the server on first use, then starts it and waits until it accepts logins.
    pub async fn start(opts: ManagedPostgresOptions) -> Result<Self, ManagedError> {
        let dir = &opts.dir;
        std::fs::create_dir_all(dir)
            .map_err(ManagedError::io(format!("creating {}", dir.display())))?;
        opts.run_as.check_reachable(dir)?;
        let data_dir = dir.join("pgdata");
        let mut state = ensure_initialised(&opts, &data_dir).await?;
        reclaim_orphan(&data_dir.join("postmaster.pid"), &data_dir, RECLAIM).await;
        let socket_dir = match opts.listen {
            Listen::PrivateSocket => Some(private_socket_dir(&opts)?),
            Listen::Loopback => None,
        };
        if socket_dir.is_none() && !port_is_free(state.port) {
            let old = state.port;
            state.port = free_port()?;
            tracing::warn!(
                old,
                new = state.port,
                "managed PostgreSQL port taken; moving"
            );
            write_state(&dir.join("state.json"), &state)?;
        }
        let password = hex::decode(&state.admin_password_sealed)
            .ok()
            .and_then(|sealed| {
                opts.master_key
                    .open_string(&sealed, Aad::ManagedServerAdmin)
                    .ok()
            })
            .ok_or_else(|| ManagedError::State {
                path: dir.join("state.json"),
                message: "admin password cannot be unsealed (was the master key changed?)".into(),
            })?;
        let host = match &socket_dir {
            Some(dir) => dir.display().to_string(),
            None => "127.0.0.1".into(),
        };
        let endpoint = AdminEndpoint {
            host,
            port: state.port,
            user: state.admin_user.clone(),
            password,
        };
        let mut settings = opts.settings.clone();
        let mut env = Vec::new();
        if let (Some((archive, stanza)), Some(socket)) = (&opts.archive, &socket_dir) {
            env.extend(archive.env().iter().cloned());
            archive.write_config(&StanzaServer {
                stanza,
                data_dir: &data_dir,
                socket_dir: socket,
                port: state.port,
                admin_user: &state.admin_user,
            })?;
            settings.extend(archive.server_settings(stanza));
        }
        let process = Arc::new(PgProcess {
            binaries: opts.binaries.clone(),
            data_dir: data_dir.clone(),
            log_path: dir.join("postgres.log"),
            run_as: opts.run_as.clone(),
            endpoint: endpoint.clone(),
            label: opts.label.clone(),
            settings,
            env,
            socket_dir,
        });
        let supervisor = Supervisor::start(process).await?;
        tracing::info!(server = %opts.label, at = %endpoint.host, port = state.port, "managed PostgreSQL ready");
        Ok(Self {
            endpoint,
            data_dir,
            supervisor,
        })
    }

    pub fn endpoint(&self) -> &AdminEndpoint {
        &self.endpoint
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Stops the server (fast shutdown) and waits for it.
    pub async fn shutdown(self) {
        self.supervisor.shutdown().await;
    }
}

/// Runs `initdb` unless the cluster exists. The cluster is built in `pgdata.init` and renamed
/// into place after its state file is written, so an interrupted initialisation is redone
/// rather than leaving a cluster whose admin password is unknown.
async fn ensure_initialised(
    opts: &ManagedPostgresOptions,
    data_dir: &Path,
) -> Result<State, ManagedError> {
    let state_path = opts.dir.join("state.json");
    let init_dir = opts.dir.join("pgdata.init");
    if !data_dir.exists() {
        let finished = state_path.exists() && init_dir.join("global/pg_control").exists();
        if !finished {
            if init_dir.exists() {
                std::fs::remove_dir_all(&init_dir)
                    .map_err(ManagedError::io("removing an interrupted initdb"))?;
            }
            // A state file without a finished cluster is stale: never pair it with a new one.
            let _ = std::fs::remove_file(&state_path);
            let state = initdb(opts, &init_dir).await?;
            write_state(&state_path, &state)?;
        }
        std::fs::rename(&init_dir, data_dir)
            .map_err(ManagedError::io("moving pgdata into place"))?;
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

async fn initdb(opts: &ManagedPostgresOptions, init_dir: &Path) -> Result<State, ManagedError> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    tracing::info!(dir = %init_dir.display(), user = %opts.run_as.name, "initialising managed PostgreSQL");
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(init_dir)
        .map_err(ManagedError::io(format!("creating {}", init_dir.display())))?;
    opts.run_as.own(init_dir)?;
    let password = new_password("");
    let pw_file = opts.dir.join("initdb.pw");
    // One left by an initdb cut off by a crash holds a password nothing uses.
    match std::fs::remove_file(&pw_file) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(ManagedError::io("removing a stale initdb password file")(e)),
    }
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&pw_file)
            .map_err(ManagedError::io("writing initdb password file"))?;
        f.write_all(password.as_bytes())
            .map_err(ManagedError::io("writing initdb password file"))?;
    }
    opts.run_as.own(&pw_file)?;
    let mut command = Command::new(opts.binaries.tool("initdb"));
    command
        .arg("-D")
        .arg(init_dir)
        .args([
            "-U",
            ADMIN_USER,
            "-A",
            "scram-sha-256",
            "-E",
            "UTF8",
            "--no-locale",
        ])
        .arg(format!("--pwfile={}", pw_file.display()))
        .env_clear()
        .env("LC_ALL", "C")
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .stdin(Stdio::null());
    process::prepare(&mut command, &opts.run_as, Signal::SIGKILL);
    let output = command.output().await;
    let _ = std::fs::remove_file(&pw_file);
    let output = output.map_err(ManagedError::io("running initdb"))?;
    if !output.status.success() {
        return Err(ManagedError::Command {
            program: "initdb".into(),
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
        });
    }
    Ok(State {
        port: free_port()?,
        admin_user: ADMIN_USER.into(),
        admin_password_sealed: hex::encode(
            opts.master_key
                .seal(password.as_bytes(), Aad::ManagedServerAdmin),
        ),
    })
}

/// The longest socket path the kernel accepts (`sun_path` less its NUL).
const MAX_SOCKET_PATH: usize = 107;

/// Makes the server's socket directory: `socket/` in its own directory, or, when the socket's
/// path would be too long for the kernel there, a directory of its own under the system's
/// temporary directory. Either is owned by the server's user with mode 0700, so no other local
/// user can reach the socket (root can, as root can read the cluster's files anyway).
fn private_socket_dir(opts: &ManagedPostgresOptions) -> Result<PathBuf, ManagedError> {
    socket_dir_for(&opts.dir, &opts.run_as)
}

/// The private socket directory of the server in `server_dir`, made for `run_as`.
pub(crate) fn socket_dir_for(server_dir: &Path, run_as: &RunAs) -> Result<PathBuf, ManagedError> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    let dir = socket_dir_of(server_dir);
    match std::fs::symlink_metadata(&dir) {
        Ok(meta) if meta.is_dir() && !meta.file_type().is_symlink() => {
            if meta.uid() != run_as.uid.as_raw() {
                return Err(ManagedError::Setup(format!(
                    "{} belongs to another user (uid {}); remove it",
                    dir.display(),
                    meta.uid()
                )));
            }
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
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
            .create(&dir)
            .map_err(ManagedError::io(format!("creating {}", dir.display())))?,
    }
    run_as.own(&dir)?;
    Ok(dir)
}

/// Where the private socket of the server in `dir` lives (see [`private_socket_dir`]).
fn socket_dir_of(server_dir: &Path) -> PathBuf {
    let socket_name_len = ".s.PGSQL.65535.lock".len() + 1;
    let dir = server_dir.join("socket");
    if dir.as_os_str().len() + socket_name_len <= MAX_SOCKET_PATH {
        return dir;
    }
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    server_dir.hash(&mut hasher);
    std::env::temp_dir().join(format!("tdb-pg-{:016x}", hasher.finish()))
}

/// Removes the managed server in `dir` for good: stops it if a process still runs on it (one
/// left by a killed tdb), then deletes its directory and its socket directory. A missing
/// directory is fine, so a removal cut off by a crash is finished by running it again.
pub async fn remove(dir: &Path) -> Result<(), ManagedError> {
    let data_dir = dir.join("pgdata");
    reclaim_orphan(&data_dir.join("postmaster.pid"), &data_dir, RECLAIM).await;
    for path in [socket_dir_of(dir), dir.to_path_buf()] {
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

struct PgProcess {
    binaries: PgBinaries,
    data_dir: PathBuf,
    log_path: PathBuf,
    run_as: RunAs,
    endpoint: AdminEndpoint,
    label: String,
    settings: Vec<(String, String)>,
    /// Environment beyond the locale (what `archive_command` needs to reach the archive).
    env: Vec<(String, String)>,
    /// The private socket directory; `None`: loopback TCP.
    socket_dir: Option<PathBuf>,
}

impl PgProcess {
    fn connect_options(&self) -> PgConnectOptions {
        PgConnectOptions::new()
            .host(&self.endpoint.host)
            .port(self.endpoint.port)
            .username(&self.endpoint.user)
            .password(&self.endpoint.password)
            .database("postgres")
    }
}

impl ManagedProcess for PgProcess {
    fn label(&self) -> String {
        self.label.clone()
    }

    async fn spawn(&self) -> Result<Child, ManagedError> {
        use std::os::unix::fs::OpenOptionsExt;
        // Failing statements (with their literals) land in this log: keep it private.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&self.log_path)
            .map_err(ManagedError::io(format!(
                "opening {}",
                self.log_path.display()
            )))?;
        let log_err = log
            .try_clone()
            .map_err(ManagedError::io("cloning log handle"))?;
        let mut command = Command::new(self.binaries.tool("postgres"));
        command
            .arg("-D")
            .arg(&self.data_dir)
            .arg("-p")
            .arg(self.endpoint.port.to_string());
        match &self.socket_dir {
            Some(dir) => command
                .args(["-c", "listen_addresses=", "-c"])
                .arg(format!("unix_socket_directories={}", dir.display()))
                .args(["-c", "unix_socket_permissions=0700"]),
            None => command.args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "unix_socket_directories=",
            ]),
        };
        command
            .env_clear()
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err));
        for (name, value) in &self.settings {
            command.arg("-c").arg(format!("{name}={value}"));
        }
        for (name, value) in &self.env {
            command.env(name, value);
        }
        process::prepare(&mut command, &self.run_as, Signal::SIGINT);
        command.spawn().map_err(ManagedError::io(format!(
            "starting {}",
            self.binaries.tool("postgres").display()
        )))
    }

    async fn wait_ready(&self, child: &mut Child) -> Result<(), ManagedError> {
        let options = self.connect_options();
        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        let not_ready = || ManagedError::NotReady {
            seconds: READY_TIMEOUT.as_secs(),
            log: log_tail(&self.log_path, 20),
        };
        loop {
            if let Ok(Some(_status)) = child.try_wait() {
                return Err(not_ready());
            }
            if let Ok(conn) = PgConnection::connect_with(&options).await {
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

/// Makes the server in `dir` from the stanza of the server in `source_dir` as it was at `at`:
/// restored into `pgdata.restore`, replayed to `at` and promoted, stopped, then moved into
/// place with the source's administrator (as the archive restored it) on a port of its own. A
/// run cut off anywhere starts again from the restore; the finished server is started by
/// [`ManagedPostgres::start`] like any other.
pub async fn recover_into(
    dir: &Path,
    source_dir: &Path,
    (archive, stanza): (&WalArchive, &str),
    at: chrono::DateTime<chrono::Utc>,
    binaries: &PgBinaries,
    master_key: &MasterKey,
) -> Result<(), ManagedError> {
    let run_as = archive.run_as();
    let data_dir = dir.join("pgdata");
    if data_dir.exists() {
        return Ok(());
    }
    std::fs::create_dir_all(dir)
        .map_err(ManagedError::io(format!("creating {}", dir.display())))?;
    run_as.check_reachable(dir)?;
    let work = dir.join("pgdata.restore");
    reclaim_orphan(&work.join("postmaster.pid"), &work, RECLAIM).await;
    archive.restore(stanza, &work, at, None).await?;
    let source_state = source_dir.join("state.json");
    let text = std::fs::read_to_string(&source_state).map_err(|e| ManagedError::State {
        path: source_state.clone(),
        message: e.to_string(),
    })?;
    let mut state: State = serde_json::from_str(&text).map_err(|e| ManagedError::State {
        path: source_state.clone(),
        message: e.to_string(),
    })?;
    state.port = free_port()?;
    let password = hex::decode(&state.admin_password_sealed)
        .ok()
        .and_then(|sealed| {
            master_key
                .open_string(&sealed, Aad::ManagedServerAdmin)
                .ok()
        })
        .ok_or_else(|| ManagedError::State {
            path: source_state,
            message: "admin password cannot be unsealed".into(),
        })?;
    let socket_dir = socket_dir_for(dir, run_as)?;
    let replayed = super::archive::replay(&super::archive::ReplaySpec {
        binaries,
        run_as,
        data_dir: &work,
        socket_dir: &socket_dir,
        port: state.port,
        log: &dir.join("replay.log"),
        admin_user: &state.admin_user,
        admin_password: &password,
        deadline: RECOVERY_DEADLINE,
    })
    .await?;
    replayed.stop().await;
    write_state(&dir.join("state.json"), &state)?;
    std::fs::rename(&work, &data_dir).map_err(ManagedError::io("moving pgdata into place"))
}

/// Longest the replay of an archive into a new server may take.
pub const RECOVERY_DEADLINE: Duration = Duration::from_secs(6 * 3600);

/// Restores the stanza into a scratch server in `dir` as it was at `at`, with only database
/// `only` readable, and runs it until [`Scratch::remove`]: the source of one database's
/// recovery. The administrator is the source's (the restore brings its role back as it was).
pub async fn open_scratch(
    dir: &Path,
    (archive, stanza): (&WalArchive, &str),
    at: chrono::DateTime<chrono::Utc>,
    only: &str,
    binaries: &PgBinaries,
    admin: &AdminEndpoint,
) -> Result<Scratch, ManagedError> {
    let run_as = archive.run_as();
    remove(dir).await?;
    std::fs::create_dir_all(dir)
        .map_err(ManagedError::io(format!("creating {}", dir.display())))?;
    run_as.check_reachable(dir)?;
    let data_dir = dir.join("pgdata");
    let started = std::time::Instant::now();
    let only_one = archive.restore(stanza, &data_dir, at, Some(only)).await?;
    let restored = started.elapsed();
    let socket_dir = socket_dir_for(dir, run_as)?;
    let server = super::archive::replay(&super::archive::ReplaySpec {
        binaries,
        run_as,
        data_dir: &data_dir,
        socket_dir: &socket_dir,
        port: free_port()?,
        log: &dir.join("replay.log"),
        admin_user: &admin.user,
        admin_password: &admin.password,
        deadline: RECOVERY_DEADLINE,
    })
    .await?;
    Ok(Scratch {
        dir: dir.to_path_buf(),
        server,
        only_one,
        restored,
        replayed: started.elapsed() - restored,
    })
}

/// A scratch server made by [`open_scratch`].
pub struct Scratch {
    dir: PathBuf,
    server: super::archive::Replayed,
    only_one: bool,
    /// How long pgBackRest's restore took, and then the replay to the moment.
    pub restored: Duration,
    pub replayed: Duration,
}

impl Scratch {
    /// Whether only the one database was restored (`--db-include`); `false` when the database
    /// was newer than the backup and everything was.
    pub fn only_one(&self) -> bool {
        self.only_one
    }

    pub fn endpoint(&self) -> &AdminEndpoint {
        &self.server.endpoint
    }

    /// Stops the scratch server and removes it.
    pub async fn remove(self) -> Result<(), ManagedError> {
        self.server.stop().await;
        remove(&self.dir).await
    }
}
