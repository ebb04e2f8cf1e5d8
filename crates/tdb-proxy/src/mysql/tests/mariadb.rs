//! A real MariaDB for the proxy's tests: `mariadb-install-db` in a temporary directory, then
//! `mariadbd` on a free loopback port (as the `mysql` user when the tests run as root), with a
//! tenant database and a workspace database and their roles, granted as tdb grants them (the
//! database name escaped, an explicit list of privileges). Killed when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

pub const TENANT_DB: &str = "shop__acme";
pub const TENANT_USER: &str = "acme_app";
pub const TENANT_PASSWORD: &str = "app-secret-1";
pub const WORKSPACE_DB: &str = "design_workspace";
pub const WORKSPACE_USER: &str = "design_owner";
pub const WORKSPACE_PASSWORD: &str = "owner-secret-2";

pub struct TestMariadb {
    dir: tempfile::TempDir,
    child: Child,
    pub port: u16,
}

impl TestMariadb {
    pub fn start() -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("tdb-mysql-test-")
            .tempdir()?;
        let root = is_root();
        if root {
            run(Command::new("chown").arg("mysql:mysql").arg(dir.path()))?;
        }
        let data = dir.path().join("data");
        // A tmpdir of its own: a starting server deletes every #sql* file in its tmpdir, which
        // would take other test servers' temporary tables.
        let tmp = dir.path().join("tmp");
        std::fs::create_dir(&tmp)?;
        if root {
            run(Command::new("chown").arg("mysql:mysql").arg(&tmp))?;
        }
        let mut install = Command::new("mariadb-install-db");
        install
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--tmpdir={}", tmp.display()))
            .arg("--auth-root-authentication-method=normal")
            .arg("--skip-test-db");
        if root {
            install.arg("--user=mysql");
        }
        run(&mut install).context("mariadb-install-db")?;
        let port = free_port()?;
        let child = spawn(dir.path(), &data, port, root)?;
        let db = Self { dir, child, port };
        db.wait_ready()?;
        db.sql(&bootstrap())?;
        Ok(db)
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("sock")
    }

    /// Runs SQL as root over the server's socket.
    pub fn sql(&self, sql: &str) -> anyhow::Result<String> {
        let out = Command::new("mariadb")
            .arg("--no-defaults")
            .arg(format!("--socket={}", self.socket().display()))
            .args(["-uroot", "--batch", "--skip-column-names", "-e", sql])
            .output()?;
        if !out.status.success() {
            bail!(
                "mariadb -e {sql:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn wait_ready(&self) -> anyhow::Result<()> {
        let start = Instant::now();
        loop {
            if self.sql("SELECT 1").is_ok() {
                return Ok(());
            }
            if start.elapsed() > Duration::from_secs(60) {
                let log =
                    std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default();
                bail!("mariadbd did not start: {log}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for TestMariadb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(dir: &Path, data: &Path, port: u16, root: bool) -> anyhow::Result<Child> {
    let mut cmd = Command::new("mariadbd");
    cmd.arg("--no-defaults")
        .arg(format!("--datadir={}", data.display()))
        .arg(format!("--socket={}", dir.join("sock").display()))
        .arg(format!("--port={port}"))
        .arg("--bind-address=127.0.0.1")
        .arg("--skip-name-resolve")
        .arg(format!("--log-error={}", dir.join("error.log").display()))
        .arg(format!("--tmpdir={}", dir.join("tmp").display()))
        .arg(format!("--pid-file={}", dir.join("mariadbd.pid").display()))
        .arg("--innodb-buffer-pool-size=32M")
        // Room for the tests' packets of more than 16 MiB.
        .arg("--max-allowed-packet=64M")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if root {
        cmd.arg("--user=mysql");
    }
    cmd.spawn().context("starting mariadbd")
}

/// The roles and databases, as tdb's MariaDB engine makes them: anonymous users gone, grants
/// on the escaped name.
fn bootstrap() -> String {
    let mut sql = String::from("DELETE FROM mysql.global_priv WHERE User = ''; FLUSH PRIVILEGES;");
    for (db, escaped, user, password, privileges) in [
        (
            TENANT_DB,
            r"shop\_\_acme",
            TENANT_USER,
            TENANT_PASSWORD,
            "SELECT, INSERT, UPDATE, DELETE, CREATE TEMPORARY TABLES, LOCK TABLES, EXECUTE",
        ),
        (
            WORKSPACE_DB,
            r"design\_workspace",
            WORKSPACE_USER,
            WORKSPACE_PASSWORD,
            "ALL PRIVILEGES",
        ),
    ] {
        sql.push_str(&format!(
            "CREATE DATABASE `{db}`; \
             CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY '{password}'; \
             CREATE USER '{user}'@'localhost' IDENTIFIED BY '{password}'; \
             GRANT {privileges} ON `{escaped}`.* TO '{user}'@'127.0.0.1'; \
             GRANT {privileges} ON `{escaped}`.* TO '{user}'@'localhost';"
        ));
    }
    sql.push_str(&format!(
        "CREATE TABLE `{TENANT_DB}`.items (id INT PRIMARY KEY, name VARCHAR(40)); \
         INSERT INTO `{TENANT_DB}`.items VALUES (1, 'one'), (2, 'two'), (3, 'three');"
    ));
    sql
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let out = cmd.output()?;
    if !out.status.success() {
        bail!("{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}
