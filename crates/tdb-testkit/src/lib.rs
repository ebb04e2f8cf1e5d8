//! Test harness: starts real database servers and real `tdb serve` processes on free ports in
//! fresh directories, the way a user's machine would run them, and stops them when dropped.

use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tdb_core::secrets::MasterKey;
use tdb_engines::managed::postgres::ManagedPostgresOptions;
use tdb_engines::{AdminEndpoint, ManagedPostgres, PgBinaries, RunAs};

/// Installs the process-wide TLS provider once (tests may build TLS clients).
pub fn init() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// A directory that managed servers (running as another user when tests run as root) can
/// enter; removed on drop.
pub fn reachable_tempdir() -> anyhow::Result<tempfile::TempDir> {
    let dir = tempfile::Builder::new().prefix("tdb-test-").tempdir()?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
    Ok(dir)
}

/// A port that is free now, taken from 20000..32000: below the kernel's ephemeral range
/// (32768 and up by default), so a server that binds port 0 or asks the kernel for a free port
/// (as managed servers do) cannot be handed a port a test has already picked for another use.
/// Each test process starts at its own offset and walks forward, so concurrent test binaries
/// rarely probe the same ports.
pub fn free_port() -> anyhow::Result<u16> {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        (std::process::id().wrapping_mul(7919)) % SPAN,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in 0..SPAN {
        let port = (LOW + NEXT.fetch_add(1, Ordering::SeqCst) % SPAN) as u16;
        if TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no free port in {LOW}..{}", LOW + SPAN)
}

/// How to start `tdb serve`.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    /// Attached mode: the catalog URL. Unset: the embedded default (managed PostgreSQL).
    pub catalog_url: Option<String>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// Contents of `tdb.toml`, written into the data dir before the first start.
    pub config_toml: Option<String>,
    /// Puts the data dir on a tmpfs of this many MiB, so a test can fill the disk (needs
    /// root: tests run as root here).
    pub data_dir_mib: Option<u64>,
    /// `RLIMIT_NOFILE` (soft, hard) to start `tdb serve` with, set by the shell that execs it.
    pub nofile: Option<(u64, u64)>,
}

/// A running `tdb serve` with its own data dir and API port.
pub struct TdbServer {
    bin: PathBuf,
    root: tempfile::TempDir,
    options: ServeOptions,
    api_port: u16,
    /// The PostgreSQL proxy's port; kept across restarts, as the API's is.
    pub pg_port: u16,
    /// The MySQL proxy's port, likewise.
    pub mysql_port: u16,
    /// The Redis proxy's port, likewise.
    pub redis_port: u16,
    child: Option<Child>,
    pub api_url: String,
}

impl TdbServer {
    /// Starts `bin serve` on the embedded default and waits for `/health`.
    pub async fn start(bin: &Path) -> anyhow::Result<Self> {
        Self::start_with(bin, ServeOptions::default()).await
    }

    pub async fn start_with(bin: &Path, options: ServeOptions) -> anyhow::Result<Self> {
        init();
        let api_port = free_port()?;
        let mut server = Self {
            bin: bin.to_path_buf(),
            root: reachable_tempdir()?,
            options,
            api_port,
            pg_port: free_port()?,
            mysql_port: free_port()?,
            redis_port: free_port()?,
            child: None,
            api_url: format!("http://127.0.0.1:{api_port}"),
        };
        if let Some(mib) = server.options.data_dir_mib {
            let dir = server.data_dir();
            std::fs::create_dir_all(&dir)?;
            let out = Command::new("mount")
                .args([
                    "-t",
                    "tmpfs",
                    "-o",
                    &format!("size={mib}m,mode=0755"),
                    "tmpfs",
                ])
                .arg(&dir)
                .output()
                .context("running mount")?;
            if !out.status.success() {
                bail!(
                    "mounting a tmpfs on the data dir failed (tests that fill a disk run as \
                     root): {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
        if let Some(toml) = &server.options.config_toml {
            // Modes set outright, whatever the umask: tdb refuses a data dir or tdb.toml that
            // other users may write to.
            let dir = server.data_dir();
            std::fs::create_dir_all(&dir)?;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o711))?;
            let file = dir.join("tdb.toml");
            std::fs::write(&file, toml)?;
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))?;
        }
        server.launch().await?;
        Ok(server)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.root.path().join("data")
    }

    pub fn log_path(&self) -> PathBuf {
        self.root.path().join("serve.log")
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The managed shared PostgreSQL's postmaster pid, while it runs.
    pub fn managed_postgres_pid(&self) -> Option<i32> {
        let pid_file = self
            .data_dir()
            .join("servers/postgresql-shared/pgdata/postmaster.pid");
        std::fs::read_to_string(pid_file)
            .ok()?
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()
    }

    /// The admin URL of the managed shared PostgreSQL (its Unix socket), unsealed from its state
    /// file with the data dir's master key, as tdb itself does (for inspecting the catalog from a
    /// test).
    pub fn managed_admin_url(&self, database: &str) -> anyhow::Result<String> {
        let dir = self.data_dir();
        let key = MasterKey::parse(&std::fs::read_to_string(dir.join("master.key"))?)?;
        let state: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(
            dir.join("servers/postgresql-shared/state.json"),
        )?)?;
        let sealed = hex::decode(state["admin_password_sealed"].as_str().context("sealed")?)?;
        let password = key.open_string(&sealed, tdb_core::aad::Aad::ManagedServerAdmin)?;
        // tdb's own servers listen on a Unix socket in their private directory only.
        let socket = dir.join("servers/postgresql-shared/socket");
        Ok(format!(
            "postgresql://{}:{password}@localhost:{}/{database}?host={}",
            state["admin_user"].as_str().context("admin_user")?,
            state["port"],
            socket.display()
        ))
    }

    async fn launch(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())?;
        let mut command = match self.options.nofile {
            // The shell lowers the soft limit first (the hard one may not go below it), then
            // execs tdb in its place: the child's pid is tdb's.
            Some((soft, hard)) => {
                let mut sh = Command::new("sh");
                sh.arg("-c")
                    .arg(format!(
                        "ulimit -Sn {soft} && ulimit -Hn {hard} && exec \"$0\" \"$@\""
                    ))
                    .arg(&self.bin);
                sh
            }
            None => Command::new(&self.bin),
        };
        command
            .arg("serve")
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("--api-listen")
            .arg(format!("127.0.0.1:{}", self.api_port))
            .arg("--pg-listen")
            .arg(format!("127.0.0.1:{}", self.pg_port))
            .arg("--mysql-listen")
            .arg(format!("127.0.0.1:{}", self.mysql_port))
            .arg("--redis-listen")
            .arg(format!("127.0.0.1:{}", self.redis_port))
            .env("RUST_LOG", "info,sqlx=warn")
            .env("NO_COLOR", "1")
            // At least two proxy workers whatever the machine, so every test also checks that
            // sessions on different threads share their limits (a test may ask for more).
            .env("TDB_PROXY_WORKERS", "2")
            .env_remove("TDB_CATALOG_URL")
            .env_remove("TDB_MASTER_KEY")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        if let Some(url) = &self.options.catalog_url {
            command.arg("--catalog-url").arg(url);
        }
        for (k, v) in &self.options.env {
            command.env(k, v);
        }
        self.child = Some(command.spawn().context("spawning tdb serve")?);
        // Generous: after a kill -9, a start first stops the servers the dead tdb left running
        // (up to 15 s per signal) and the server then recovers from its log; on a loaded CI
        // machine that took more than 60 s (crash.rs, deployment_resumes_after_kill_9).
        self.wait_healthy(Duration::from_secs(180)).await
    }

    async fn wait_healthy(&mut self, limit: Duration) -> anyhow::Result<()> {
        let client = reqwest::Client::new();
        let started = Instant::now();
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!("tdb serve exited with {status}:\n{}", self.log_tail());
            }
            let url = format!("{}/health", self.api_url);
            if let Ok(resp) = client.get(&url).send().await
                && resp.status().is_success()
            {
                return Ok(());
            }
            if started.elapsed() > limit {
                bail!(
                    "tdb serve not healthy after {limit:?}:\n{}",
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// SIGTERM, then waits for the process to exit; returns its exit status.
    pub fn stop(&mut self) -> anyhow::Result<std::process::ExitStatus> {
        let mut child = self.child.take().context("not running")?;
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM)?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                bail!("tdb serve ignored SIGTERM:\n{}", self.log_tail());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill9(&mut self) -> anyhow::Result<()> {
        let mut child = self.child.take().context("not running")?;
        child.kill()?;
        child.wait()?;
        Ok(())
    }

    /// Starts again on the same data dir and port.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        if self.child.is_some() {
            self.stop()?;
        }
        self.launch().await
    }

    pub fn client(&self, key: Option<&str>) -> tdb_client::Client {
        tdb_client::Client::new(&self.api_url, key.map(str::to_string))
    }
}

impl Drop for TdbServer {
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ = self.stop();
        }
        if self.options.data_dir_mib.is_some() {
            let _ = Command::new("umount")
                .arg("-l")
                .arg(self.data_dir())
                .output();
        }
    }
}

/// A PostgreSQL server of the harness's own (not tdb's), for attached-mode tests and for
/// inspecting a catalog from outside.
pub struct TestPostgres {
    _root: tempfile::TempDir,
    server: Option<ManagedPostgres>,
    pub endpoint: AdminEndpoint,
    pub binaries: PgBinaries,
}

impl TestPostgres {
    pub async fn start() -> anyhow::Result<Self> {
        init();
        let root = reachable_tempdir()?;
        let binaries = PgBinaries::find(None)?;
        let server = ManagedPostgres::start(ManagedPostgresOptions {
            dir: root.path().join("pg"),
            binaries: binaries.clone(),
            run_as: RunAs::resolve("postgres")?,
            master_key: MasterKey::generate(),
            label: "test-postgres".into(),
            settings: vec![("max_connections".into(), "100".into())],
            listen: tdb_engines::managed::postgres::Listen::Loopback,
            archive: None,
        })
        .await?;
        Ok(Self {
            endpoint: server.endpoint().clone(),
            _root: root,
            server: Some(server),
            binaries,
        })
    }

    /// `postgresql://admin:password@127.0.0.1:port/database`.
    pub fn url(&self, database: &str) -> String {
        let e = &self.endpoint;
        format!(
            "postgresql://{}:{}@{}:{}/{database}",
            e.user, e.password, e.host, e.port
        )
    }

    /// Runs `pg_dump` of `database` (schema and data) and returns its text.
    pub fn dump(&self, database: &str) -> anyhow::Result<String> {
        pg_dump(&self.url(database))
    }

    pub async fn stop(mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().await;
        }
    }
}

/// `pg_dump --no-owner URL` with the installed client; returns the dump's text.
pub fn pg_dump(url: &str) -> anyhow::Result<String> {
    let binaries = PgBinaries::find(None)?;
    let out = Command::new(binaries.tool("pg_dump"))
        .arg("--no-owner")
        .arg(url)
        .output()
        .context("running pg_dump")?;
    if !out.status.success() {
        bail!("pg_dump failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8(out.stdout)?)
}
