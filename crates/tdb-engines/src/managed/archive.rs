//! Continuous archiving and point-in-time restores of managed PostgreSQL servers, done by
//! pgBackRest: tdb writes one configuration file per server (a pgBackRest *stanza*, named after
//! the server), points the server's `archive_command` at it, and runs pgBackRest's own commands
//! (`stanza-create`, `backup`, `info`, `restore`). pgBackRest does the work that must be right:
//! durable uploads, timelines, checksums, retention, `--db-include`.
//!
//! Layout under the archive's directory (made for the user the servers run as, mode 0700):
//! - `conf/<stanza>.conf` what pgBackRest needs for the server (no secret: passwords and S3
//!   keys reach it through its environment only);
//! - `log/`, `lock/`, `spool/` pgBackRest's own;
//! - `repo/` the repository itself when the backup store is local.
//!
//! A restore for a recovery goes into a new directory and is replayed by a PostgreSQL started
//! only for that ([`replay`]): archiving off, so nothing of it reaches the source's archive.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use nix::sys::signal::Signal;
use serde::Deserialize;
use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use tokio::process::{Child, Command};

use super::postgres::PgBinaries;
use super::process::{self, StopSignals, log_tail};
use super::{AdminEndpoint, ManagedError, RunAs};

/// Where the repository is.
#[derive(Debug, Clone)]
pub enum Repository {
    /// A directory on this machine.
    Posix(PathBuf),
    /// An S3 bucket (or an S3-compatible service); the key and secret come from the
    /// environment given to [`ArchiveOptions::env`].
    S3 {
        bucket: String,
        /// The repository's path inside the bucket (`/prefix/pgbackrest`).
        path: String,
        endpoint: String,
        region: String,
        /// Path-style addresses (most S3-compatible services) rather than virtual hosts.
        path_style: bool,
    },
}

/// What every stanza of the archive shares.
pub struct ArchiveOptions {
    /// The `pgbackrest` program.
    pub program: PathBuf,
    pub dir: PathBuf,
    pub repository: Repository,
    /// The user the servers (and so `archive_command`) run as; pgBackRest runs as it too.
    pub run_as: RunAs,
    /// PostgreSQL's programs, for the servers that replay a restore.
    pub binaries: Option<PgBinaries>,
    /// Environment pgBackRest gets, from the server and from tdb (S3 credentials).
    pub env: Vec<(String, String)>,
    /// Days of history every server keeps recoverable.
    pub retention_days: u32,
    /// Longest a finished commit waits before its WAL is archived (`archive_timeout`).
    pub archive_timeout_secs: u32,
}

/// The archive of every managed server on this machine.
pub struct WalArchive {
    o: ArchiveOptions,
}

/// A base backup's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackupKind {
    Full,
    Diff,
}

impl BackupKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::Diff => "diff",
        }
    }
}

/// One base backup in the repository.
#[derive(Debug, Clone)]
pub struct BackupSet {
    pub label: String,
    pub kind: String,
    pub started: DateTime<Utc>,
    pub stopped: DateTime<Utc>,
}

/// How a server reaches pgBackRest's `backup` and `stanza-create`: its data directory and its
/// private socket, as its administrator.
pub struct StanzaServer<'a> {
    pub stanza: &'a str,
    pub data_dir: &'a Path,
    pub socket_dir: &'a Path,
    pub port: u16,
    pub admin_user: &'a str,
}

/// pgBackRest's exit code when a database named by `--db-include` is not in the backup.
const DB_NOT_IN_BACKUP: i32 = 80;

impl WalArchive {
    /// Prepares the archive's directories (and a local repository) for the servers' user.
    pub fn open(o: ArchiveOptions) -> Result<Self, ManagedError> {
        let mut dirs = vec![
            o.dir.clone(),
            o.dir.join("conf"),
            o.dir.join("log"),
            o.dir.join("lock"),
            o.dir.join("spool"),
        ];
        if let Repository::Posix(repo) = &o.repository {
            dirs.push(repo.clone());
        }
        for dir in &dirs {
            private_dir(dir, &o.run_as)?;
        }
        Ok(Self { o })
    }

    /// The `pgbackrest` program when it is installed.
    pub fn find_program() -> Option<PathBuf> {
        ["/usr/bin/pgbackrest", "/usr/local/bin/pgbackrest"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
    }

    pub fn location(&self) -> String {
        match &self.o.repository {
            Repository::Posix(dir) => format!("file://{}", dir.display()),
            Repository::S3 { bucket, path, .. } => format!("s3://{bucket}{path}"),
        }
    }

    /// What pgBackRest needs in its environment (S3 credentials), for the servers' too.
    pub fn env(&self) -> &[(String, String)] {
        &self.o.env
    }

    /// Longest a commit should wait before its WAL is archived.
    pub fn archive_timeout(&self) -> Duration {
        Duration::from_secs(u64::from(self.o.archive_timeout_secs.max(1)))
    }

    pub fn retention_days(&self) -> u32 {
        self.o.retention_days
    }

    pub fn run_as(&self) -> &RunAs {
        &self.o.run_as
    }

    /// PostgreSQL's programs, for the servers that replay restores.
    pub fn binaries(&self) -> Result<&PgBinaries, ManagedError> {
        self.o.binaries.as_ref().ok_or_else(|| {
            ManagedError::Setup("PostgreSQL's server programs are not on this machine".into())
        })
    }

    /// Where the scratch server of recovery `id` lives.
    pub fn scratch_dir(&self, id: &str) -> PathBuf {
        self.o.dir.join("scratch").join(id)
    }

    fn config_path(&self, stanza: &str) -> PathBuf {
        self.o.dir.join("conf").join(format!("{stanza}.conf"))
    }

    /// Whether the stanza has a configuration here (its server was archived from this machine).
    pub fn knows(&self, stanza: &str) -> bool {
        self.config_path(stanza).is_file()
    }

    /// The `-c` settings that make a server archive its WAL into the stanza.
    pub fn server_settings(&self, stanza: &str) -> Vec<(String, String)> {
        let command = format!(
            "{} --config={} --stanza={} archive-push \"%p\"",
            shell_quote(&self.o.program.display().to_string()),
            shell_quote(&self.config_path(stanza).display().to_string()),
            shell_quote(stanza),
        );
        vec![
            ("archive_mode".into(), "on".into()),
            ("archive_command".into(), command),
            (
                "archive_timeout".into(),
                format!("{}s", self.o.archive_timeout_secs),
            ),
        ]
    }

    /// Writes the stanza's configuration (before its server starts: `archive_command` reads it).
    pub fn write_config(&self, server: &StanzaServer<'_>) -> Result<(), ManagedError> {
        let text = self.config_text(server);
        let path = self.config_path(server.stanza);
        if std::fs::read_to_string(&path).ok().as_deref() == Some(text.as_str()) {
            return Ok(());
        }
        write_private(&path, &text, &self.o.run_as)
    }

    fn config_text(&self, server: &StanzaServer<'_>) -> String {
        let o = &self.o;
        let repo = match &o.repository {
            Repository::Posix(dir) => format!("repo1-type=posix\nrepo1-path={}\n", dir.display()),
            Repository::S3 {
                bucket,
                path,
                endpoint,
                region,
                path_style,
            } => format!(
                "repo1-type=s3\nrepo1-path={path}\nrepo1-s3-bucket={bucket}\n\
                 repo1-s3-endpoint={endpoint}\nrepo1-s3-region={region}\n\
                 repo1-s3-uri-style={}\n",
                if *path_style { "path" } else { "host" }
            ),
        };
        format!(
            "# Written by tdb for the server '{stanza}'; rewritten at each start.\n\
             [global]\n{repo}\
             repo1-retention-full-type=time\nrepo1-retention-full={days}\n\
             log-path={dir}/log\nlock-path={dir}/lock\nspool-path={dir}/spool\n\
             log-level-console=warn\nlog-level-stderr=warn\nlog-level-file=info\n\
             compress-type=lz4\nstart-fast=y\narchive-timeout=120\n\n\
             [{stanza}]\npg1-path={data}\npg1-port={port}\npg1-socket-path={socket}\n\
             pg1-user={user}\n",
            stanza = server.stanza,
            days = o.retention_days.max(1),
            dir = o.dir.display(),
            data = server.data_dir.display(),
            port = server.port,
            socket = server.socket_dir.display(),
            user = server.admin_user,
        )
    }

    /// Creates the stanza in the repository (nothing happens when it exists for this server).
    pub async fn create_stanza(&self, stanza: &str, password: &str) -> Result<(), ManagedError> {
        self.run(stanza, &["stanza-create"], Some(password)).await?;
        Ok(())
    }

    /// Takes a base backup of the server; pgBackRest then expires what retention lets go.
    pub async fn backup(
        &self,
        stanza: &str,
        kind: BackupKind,
        password: &str,
    ) -> Result<(), ManagedError> {
        let kind = format!("--type={}", kind.as_str());
        self.run(stanza, &[&kind, "backup"], Some(password)).await?;
        Ok(())
    }

    /// The stanza's base backups, oldest first (none when the stanza has none yet).
    pub async fn backups(&self, stanza: &str) -> Result<Vec<BackupSet>, ManagedError> {
        let out = self.run(stanza, &["--output=json", "info"], None).await?;
        parse_info(&out)
    }

    /// Restores the stanza into `into` (a new directory) for a recovery to `at`: PostgreSQL
    /// replays the archive up to that moment and then promotes. With `only`, the other user
    /// databases come back as empty files (pgBackRest's `--db-include`), unless the database was
    /// made after the backup the restore starts from: then everything is restored. Returns
    /// whether only `only` was.
    pub async fn restore(
        &self,
        stanza: &str,
        into: &Path,
        at: DateTime<Utc>,
        only: Option<&str>,
    ) -> Result<bool, ManagedError> {
        let target = format!("--target={}", at.format("%Y-%m-%d %H:%M:%S%.6f+00"));
        let pg_path = format!("--pg1-path={}", into.display());
        let mut args = vec![
            pg_path.as_str(),
            "--type=time",
            target.as_str(),
            "--target-action=promote",
        ];
        let include = only.map(|db| format!("--db-include={db}"));
        if let Some(include) = &include {
            args.push(include);
        }
        args.push("restore");
        fresh_dir(into, &self.o.run_as)?;
        match self.run(stanza, &args, None).await {
            Ok(_) => Ok(only.is_some()),
            Err(RunError::Exit(code, _)) if code == DB_NOT_IN_BACKUP && only.is_some() => {
                tracing::info!(
                    stanza,
                    "the database is newer than the backup; restoring every database"
                );
                fresh_dir(into, &self.o.run_as)?;
                args.retain(|a| !a.starts_with("--db-include"));
                self.run(stanza, &args, None).await?;
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Removes the stanza and everything it archived (its server is gone for good).
    pub async fn delete_stanza(&self, stanza: &str) -> Result<(), ManagedError> {
        if !self.knows(stanza) {
            return Ok(());
        }
        // A backup may be running (the keeper takes one as soon as a server is made): `--force`
        // ends it, and the deletion waits for its lock to go, a few seconds at most.
        self.run(stanza, &["--force", "stop"], None).await?;
        let mut attempts = 0;
        loop {
            match self.run(stanza, &["--force", "stanza-delete"], None).await {
                Ok(_) => break,
                Err(RunError::Exit(_, output))
                    if output.contains("unable to acquire lock") && attempts < 60 =>
                {
                    attempts += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        let _ = std::fs::remove_file(self.config_path(stanza));
        Ok(())
    }

    async fn run(
        &self,
        stanza: &str,
        args: &[&str],
        password: Option<&str>,
    ) -> Result<String, RunError> {
        let mut command = Command::new(&self.o.program);
        command
            .arg(format!("--config={}", self.config_path(stanza).display()))
            .arg(format!("--stanza={stanza}"))
            .args(args)
            .env_clear()
            .env("LC_ALL", "C")
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("PGPASSFILE", "/dev/null")
            .stdin(Stdio::null());
        for (name, value) in &self.o.env {
            command.env(name, value);
        }
        if let Some(password) = password {
            command.env("PGPASSWORD", password);
        }
        process::prepare(&mut command, &self.o.run_as, Signal::SIGTERM);
        let what = format!("pgbackrest {}", args.last().copied().unwrap_or(""));
        let output = command
            .output()
            .await
            .map_err(|e| RunError::Spawn(format!("running {what}: {e}")))?;
        if output.status.success() {
            return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
        }
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let message = text
            .lines()
            .filter(|l| l.contains("ERROR") || l.contains("WARN"))
            .collect::<Vec<_>>()
            .join("; ");
        let message = if message.is_empty() {
            text.trim().to_string()
        } else {
            message
        };
        Err(RunError::Exit(
            output.status.code().unwrap_or(-1),
            format!("{what}: {message}"),
        ))
    }
}

enum RunError {
    Spawn(String),
    Exit(i32, String),
}

impl From<RunError> for ManagedError {
    fn from(e: RunError) -> Self {
        match e {
            RunError::Spawn(m) => ManagedError::Setup(m),
            RunError::Exit(_, output) => ManagedError::Command {
                program: "pgbackrest".into(),
                output,
            },
        }
    }
}

#[derive(Deserialize)]
struct InfoStanza {
    #[serde(default)]
    backup: Vec<InfoBackup>,
}

#[derive(Deserialize)]
struct InfoBackup {
    label: String,
    #[serde(rename = "type")]
    kind: String,
    timestamp: InfoTimes,
    #[serde(default)]
    error: bool,
}

#[derive(Deserialize)]
struct InfoTimes {
    start: i64,
    stop: i64,
}

fn parse_info(json: &str) -> Result<Vec<BackupSet>, ManagedError> {
    let stanzas: Vec<InfoStanza> =
        serde_json::from_str(json).map_err(|e| ManagedError::Command {
            program: "pgbackrest info".into(),
            output: format!("unreadable answer: {e}"),
        })?;
    let at = |secs: i64| Utc.timestamp_opt(secs, 0).single();
    let mut sets: Vec<BackupSet> = stanzas
        .into_iter()
        .flat_map(|s| s.backup)
        .filter(|b| !b.error)
        .filter_map(|b| {
            Some(BackupSet {
                started: at(b.timestamp.start)?,
                stopped: at(b.timestamp.stop)?,
                label: b.label,
                kind: b.kind,
            })
        })
        .collect();
    sets.sort_by_key(|b| b.stopped);
    Ok(sets)
}

/// Quotes a word for `/bin/sh` (PostgreSQL runs `archive_command` through it).
fn shell_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

fn private_dir(dir: &Path, run_as: &RunAs) -> Result<(), ManagedError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(ManagedError::io(format!("creating {}", dir.display())))?;
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(ManagedError::io(format!("chmod 700 {}", dir.display())))?;
    run_as.own(dir)
}

/// An empty directory at `dir` for the servers' user (whatever was there goes).
fn fresh_dir(dir: &Path, run_as: &RunAs) -> Result<(), ManagedError> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(ManagedError::io(format!("removing {}", dir.display()))(e)),
    }
    private_dir(dir, run_as)
}

fn write_private(path: &Path, text: &str, run_as: &RunAs) -> Result<(), ManagedError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(ManagedError::io(format!("writing {}", tmp.display())))?;
    f.write_all(text.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(ManagedError::io(format!("writing {}", tmp.display())))?;
    run_as.own(&tmp)?;
    std::fs::rename(&tmp, path).map_err(ManagedError::io(format!("writing {}", path.display())))
}

/// The message PostgreSQL ends recovery with when the archive ends before the recovery target:
/// every commit archived is older than the target.
const TARGET_NOT_REACHED: &str = "recovery ended before configured recovery target was reached";

/// Fast shutdown, then immediate, for a server that only replays a restore.
const REPLAY_STOP: StopSignals = StopSignals {
    orderly: Signal::SIGINT,
    urgent: Signal::SIGQUIT,
    grace: Duration::from_secs(30),
};

/// A PostgreSQL that replayed a restore and was promoted, running (unsupervised) on a private
/// socket until [`Replayed::stop`].
pub struct Replayed {
    pub endpoint: AdminEndpoint,
    child: Child,
}

impl Replayed {
    /// Stops the server (fast shutdown) and waits for it.
    pub async fn stop(mut self) {
        stop_child(&mut self.child).await;
    }
}

/// Stops a server we started (its orderly signal, then its urgent one, then a kill), reaping it
/// as it exits.
async fn stop_child(child: &mut Child) {
    for signal in [REPLAY_STOP.orderly, REPLAY_STOP.urgent] {
        let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) else {
            return;
        };
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal);
        if tokio::time::timeout(REPLAY_STOP.grace, child.wait())
            .await
            .is_ok()
        {
            return;
        }
        tracing::warn!(
            pid,
            "server still running {:?} after {signal}",
            REPLAY_STOP.grace
        );
    }
    let _ = child.kill().await;
}

/// What [`replay`] starts.
pub struct ReplaySpec<'a> {
    pub binaries: &'a PgBinaries,
    pub run_as: &'a RunAs,
    pub data_dir: &'a Path,
    /// A directory only the servers' user may enter, short enough for a socket path.
    pub socket_dir: &'a Path,
    pub port: u16,
    pub log: &'a Path,
    /// The restored cluster's administrator (as it was at the recovery target).
    pub admin_user: &'a str,
    pub admin_password: &'a str,
    /// Longest the replay may take.
    pub deadline: Duration,
}

/// Starts PostgreSQL on a restored data directory and waits until it has replayed the archive to
/// the recovery target and promoted itself. When the archive ends before the target (no commit
/// archived after it, so the end of the archive is the state at the target), the target is
/// dropped and the replay runs again to the archive's end.
pub async fn replay(spec: &ReplaySpec<'_>) -> Result<Replayed, ManagedError> {
    for attempt in 0..2 {
        let mut child = spawn_replay(spec)?;
        match wait_promoted(spec, &mut child).await {
            Ok(endpoint) => return Ok(Replayed { endpoint, child }),
            Err(e) => {
                stop_child(&mut child).await;
                let log = std::fs::read_to_string(spec.log).unwrap_or_default();
                if attempt == 0 && log.contains(TARGET_NOT_REACHED) {
                    tracing::info!(dir = %spec.data_dir.display(),
                        "every archived commit is older than the recovery target; replaying to the archive's end");
                    drop_recovery_target(spec.data_dir)?;
                    continue;
                }
                return Err(e);
            }
        }
    }
    Err(ManagedError::Setup(
        "the restore could not be replayed".into(),
    ))
}

fn spawn_replay(spec: &ReplaySpec<'_>) -> Result<Child, ManagedError> {
    use std::os::unix::fs::OpenOptionsExt;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(spec.log)
        .map_err(ManagedError::io(format!("opening {}", spec.log.display())))?;
    let log_err = log
        .try_clone()
        .map_err(ManagedError::io("cloning log handle"))?;
    let mut command = Command::new(spec.binaries.tool("postgres"));
    command
        .arg("-D")
        .arg(spec.data_dir)
        .arg("-p")
        .arg(spec.port.to_string())
        .args(["-c", "listen_addresses=", "-c"])
        .arg(format!(
            "unix_socket_directories={}",
            spec.socket_dir.display()
        ))
        .args([
            "-c",
            "unix_socket_permissions=0700",
            "-c",
            "archive_mode=off",
            // No reads while replaying (so the source's connection settings need not be
            // matched); the server accepts logins once it has promoted itself.
            "-c",
            "hot_standby=off",
        ])
        .env_clear()
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log_err));
    process::prepare(&mut command, spec.run_as, Signal::SIGINT);
    command.spawn().map_err(ManagedError::io(format!(
        "starting {}",
        spec.binaries.tool("postgres").display()
    )))
}

async fn wait_promoted(
    spec: &ReplaySpec<'_>,
    child: &mut Child,
) -> Result<AdminEndpoint, ManagedError> {
    let endpoint = AdminEndpoint {
        host: spec.socket_dir.display().to_string(),
        port: spec.port,
        user: spec.admin_user.to_string(),
        password: spec.admin_password.to_string(),
    };
    let options = PgConnectOptions::new()
        .host(&endpoint.host)
        .port(endpoint.port)
        .username(&endpoint.user)
        .password(&endpoint.password)
        .database("postgres");
    let started = tokio::time::Instant::now();
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            return Err(ManagedError::Command {
                program: "postgres (replaying the archive)".into(),
                output: failure_lines(spec.log),
            });
        }
        if let Ok(mut conn) = PgConnection::connect_with(&options).await {
            let recovering: Result<bool, _> = sqlx::query_scalar("SELECT pg_is_in_recovery()")
                .fetch_one(&mut conn)
                .await;
            let _ = conn.close().await;
            if let Ok(false) = recovering {
                return Ok(endpoint);
            }
        }
        if started.elapsed() > spec.deadline {
            return Err(ManagedError::NotReady {
                seconds: spec.deadline.as_secs(),
                log: log_tail(spec.log, 20),
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The lines of a server's log that say why it stopped (its FATAL and PANIC lines), else its
/// last lines.
fn failure_lines(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let fatal: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("FATAL") || l.contains("PANIC"))
        .collect();
    if fatal.is_empty() {
        log_tail(log, 8)
    } else {
        fatal.join("\n")
    }
}

/// Removes the recovery target pgBackRest wrote, so the next start replays to the archive's end.
fn drop_recovery_target(data_dir: &Path) -> Result<(), ManagedError> {
    let path = data_dir.join("postgresql.auto.conf");
    let text = std::fs::read_to_string(&path)
        .map_err(ManagedError::io(format!("reading {}", path.display())))?;
    let kept: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("recovery_target"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&path, kept).map_err(ManagedError::io(format!("writing {}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_lists_finished_backups_oldest_first() {
        let json = r#"[{"archive":[],"backup":[
            {"label":"B","type":"diff","timestamp":{"start":200,"stop":210},"error":false},
            {"label":"A","type":"full","timestamp":{"start":100,"stop":110}},
            {"label":"C","type":"full","timestamp":{"start":300,"stop":310},"error":true}],
            "name":"s"}]"#;
        let sets = parse_info(json).expect("parses");
        let labels: Vec<&str> = sets.iter().map(|b| b.label.as_str()).collect();
        assert_eq!(labels, ["A", "B"]);
        assert_eq!(sets[0].stopped.timestamp(), 110);
        assert!(parse_info("[]").expect("empty").is_empty());
        assert!(parse_info("not json").is_err());
    }

    #[test]
    fn archive_command_quotes_its_paths() {
        assert_eq!(shell_quote("/a b/c"), "'/a b/c'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }
}
