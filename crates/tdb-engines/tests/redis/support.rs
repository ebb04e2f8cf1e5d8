//! What the Redis tests share: servers in reachable temporary directories, tenants and their
//! logins, and small commands whose failure is the test's.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tdb_core::secrets::MasterKey;
use tdb_engines::budget::MemoryBudget;
use tdb_engines::managed::redis::Listen;
use tdb_engines::redis::conn::{self, Login, RedisConn};
use tdb_engines::{
    AdminEndpoint, DatabaseAccess, Engine, EngineError, Limits, ManagedRedisOptions, RunAs,
    TenantSpec,
};
use tdb_resp::frame::Frame;

pub const OWNER_PW: &str = "owner-secret";
pub const APP_PW: &str = "app-secret";
pub const READ_PW: &str = "read-secret";

pub fn tempdir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("tdb-redis-")
        .tempdir()
        .expect("tempdir");
    // The server runs as `redis` when tests run as root: it must be able to enter the dir.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    dir
}

pub fn options(dir: &Path, key: &MasterKey, listen: Listen) -> ManagedRedisOptions {
    ManagedRedisOptions {
        dir: dir.to_path_buf(),
        run_as: RunAs::resolve("redis").expect("run-as user"),
        master_key: key.clone(),
        label: "test".into(),
        listen,
        settings: vec![("maxclients".into(), "200".into())],
    }
}

pub struct Tenant {
    pub name: String,
    pub owner: String,
    pub app: String,
    pub read: String,
}

impl Tenant {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.into(),
            owner: format!("{name}_own"),
            app: format!("{name}_app"),
            read: format!("{name}_read"),
        }
    }

    pub fn spec(&self) -> TenantSpec<'_> {
        TenantSpec {
            name: &self.name,
            owner_role: &self.owner,
            owner_password: OWNER_PW,
            app_role: &self.app,
            app_password: APP_PW,
            read_role: &self.read,
            read_password: READ_PW,
            connection_limit: 3,
        }
    }

    pub fn owner(&self, e: &AdminEndpoint) -> DatabaseAccess {
        access(e, &self.name, &self.owner, OWNER_PW)
    }

    pub fn app(&self, e: &AdminEndpoint) -> DatabaseAccess {
        access(e, &self.name, &self.app, APP_PW)
    }

    pub fn read(&self, e: &AdminEndpoint) -> DatabaseAccess {
        access(e, &self.name, &self.read, READ_PW)
    }

    pub fn roles(&self) -> [&str; 3] {
        [&self.owner, &self.app, &self.read]
    }

    /// A full key name in this namespace.
    pub fn key(&self, key: &str) -> String {
        format!("{}:{key}", self.name)
    }
}

pub fn access(e: &AdminEndpoint, db: &str, user: &str, password: &str) -> DatabaseAccess {
    DatabaseAccess {
        host: e.host.clone(),
        port: e.port,
        database: db.into(),
        user: user.into(),
        password: password.into(),
    }
}

pub fn limits(timeout: Duration, max_rows: usize) -> Limits {
    Limits {
        timeout,
        max_rows,
        answer: MemoryBudget::new(1 << 20).answer(1 << 20),
        owner_sessions: Arc::new(tokio::sync::Semaphore::new(4)),
    }
}

pub async fn admin(e: &AdminEndpoint) -> RedisConn {
    conn::connect(e).await.expect("admin login")
}

pub async fn login(e: &AdminEndpoint, user: &str, password: &str) -> RedisConn {
    conn::connect(Login {
        host: &e.host,
        port: e.port,
        user,
        password,
    })
    .await
    .unwrap_or_else(|err| panic!("login as {user}: {err}"))
}

/// A connection that has not logged in (the `default` user, if it were on).
pub async fn anonymous(e: &AdminEndpoint) -> RedisConn {
    if e.host.starts_with('/') {
        RedisConn::new(
            tokio::net::UnixStream::connect(&e.host)
                .await
                .expect("connect"),
        )
    } else {
        RedisConn::new(
            tokio::net::TcpStream::connect((e.host.as_str(), e.port))
                .await
                .expect("connect"),
        )
    }
}

/// Runs a command that must succeed.
pub async fn ok(conn: &mut RedisConn, args: &[&str]) -> Frame {
    conn.call(args)
        .await
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

/// The error code a command is refused with.
pub async fn refused(conn: &mut RedisConn, args: &[&str]) -> String {
    let err = conn
        .call(args)
        .await
        .expect_err(&format!("{args:?} must be refused"));
    conn::error_code(&err)
        .unwrap_or_else(|| panic!("{args:?}: not a server error: {err}"))
        .to_string()
}

pub fn bulk(s: &str) -> Frame {
    Frame::Bulk(Bytes::copy_from_slice(s.as_bytes()))
}

pub fn text(frame: &Frame) -> String {
    conn::text(frame).unwrap_or_else(|| panic!("not a string: {frame:?}"))
}

pub fn int(frame: &Frame) -> i64 {
    frame
        .as_integer()
        .unwrap_or_else(|| panic!("not an integer: {frame:?}"))
}

/// `INFO commandstats`' call count of `command`.
pub async fn calls(admin: &mut RedisConn, command: &str) -> u64 {
    let info = text(&ok(admin, &["INFO", "commandstats"]).await);
    tdb_engines::redis::server::info_field(&info, &format!("cmdstat_{command}"))
        .and_then(|v| v.split(',').next())
        .and_then(|c| c.strip_prefix("calls="))
        .map_or(0, |n| n.parse().expect("a count"))
}

pub struct Ctx {
    pub engine: Arc<dyn Engine>,
    pub e: AdminEndpoint,
    pub acme: Tenant,
    pub other: Tenant,
}

pub fn is_query_error(e: &EngineError, code: &str) -> bool {
    conn::error_code(e) == Some(code)
}
