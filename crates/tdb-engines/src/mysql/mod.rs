//! The MySQL engine, served by MariaDB: one database per tenant on a shared `mariadbd`, with
//! users whose grants name that database alone (escaped, see [`quote`]), sessions through
//! `sqlx-mysql`, dumps and restores through the installed `mariadb-dump` and `mariadb`. This
//! file holds the core [`Engine`]; `capabilities.rs` the rest (migrations, introspection), and
//! `moves.rs` moves between servers (by dump and restore).
//!
//! Conventions shared with the rest of tdb:
//! - A host that starts with `/` is the path of the server's Unix socket (a managed server on
//!   its private socket); any other host is reached over TCP at the port.
//! - A refused statement is `EngineError::Query` with the server's message and SQLSTATE, and
//!   the MySQL error number as the whole of `detail` (`Some("1062")`).
//! - tdb's own records of each tenant database (schema version, migration progress) live in
//!   the administrator's `tdb_meta` database, one table per tenant database ([`meta`]).

mod capabilities;
mod dump;
mod export;
mod introspect;
pub mod meta;
mod migrate;
mod moves;
pub use migrate::fingerprint as schema_fingerprint;
pub mod quote;
pub mod secure;
mod session;
mod tenant;
mod values;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection};
use sqlx::{ConnectOptions, Connection};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::AdminEndpoint;
use crate::capability::{Introspection, SqlEngine};
use crate::engine::{
    CatalogSweep, DatabaseAccess, DatabaseSpec, Dump, Engine, EngineError, Limits, RestoreTarget,
    Result, Session, TenantSpec,
};

/// Sessions for users' statements (API queries) open at once.
pub const MAX_SESSIONS: usize = 32;
/// Of those, the sessions one owner (a project) may have: a quarter.
pub const MAX_OWNER_SESSIONS: usize = MAX_SESSIONS / 4;
/// How long a new session waits for one of them.
const SESSION_WAIT: Duration = Duration::from_secs(10);
/// How long tdb waits for a server to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

pub struct MysqlEngine {
    /// Where `mariadb-dump` and `mariadb` live; `None` looks them up on PATH.
    bindir: Option<PathBuf>,
    /// Sessions open at once for users' statements (see `postgres::PostgresEngine`).
    sessions: Arc<Semaphore>,
}

/// A session's places: among its owner's sessions and among all.
pub struct SessionPlace {
    _owner: OwnedSemaphorePermit,
    _all: OwnedSemaphorePermit,
}

impl MysqlEngine {
    pub fn new(bindir: Option<PathBuf>) -> Self {
        Self {
            bindir,
            sessions: Arc::new(Semaphore::new(MAX_SESSIONS)),
        }
    }

    /// A place for one more session of the owner whose places `limits` carries, then among all
    /// sessions, or `Busy` after waiting [`SESSION_WAIT`].
    async fn session_place(&self, limits: &Limits) -> Result<SessionPlace> {
        let wait = |sem: Arc<Semaphore>| tokio::time::timeout(SESSION_WAIT, sem.acquire_owned());
        let Ok(Ok(owner)) = wait(limits.owner_sessions.clone()).await else {
            return Err(EngineError::Busy(format!(
                "this project already runs {MAX_OWNER_SESSIONS} query sessions at once; try \
                 again shortly"
            )));
        };
        let Ok(Ok(all)) = wait(self.sessions.clone()).await else {
            return Err(EngineError::Busy(format!(
                "tdb already runs {MAX_SESSIONS} query sessions; try again shortly"
            )));
        };
        Ok(SessionPlace {
            _owner: owner,
            _all: all,
        })
    }

    /// A client tool: from `bindir`, else PATH.
    fn tool(&self, name: &str) -> PathBuf {
        self.bindir
            .as_ref()
            .map(|d| d.join(name))
            .filter(|p| p.is_file())
            .unwrap_or_else(|| PathBuf::from(name))
    }
}

/// Connection options for `target`. The session is left as the server sets it up (its
/// `sql_mode`, time zone) except for the character set, utf8mb4: what tdb runs behaves as it
/// would through the proxy.
pub(crate) fn options(target: &DatabaseAccess) -> MySqlConnectOptions {
    let opts = MySqlConnectOptions::new()
        .username(&target.user)
        .password(&target.password)
        .pipes_as_concat(false)
        .no_engine_substitution(false)
        .timezone(None)
        .statement_cache_capacity(0)
        .disable_statement_logging();
    let opts = if target.host.starts_with('/') {
        opts.socket(&target.host)
    } else {
        opts.host(&target.host).port(target.port)
    };
    if target.database.is_empty() {
        opts
    } else {
        opts.database(&target.database)
    }
}

/// The administrator's access, with `database` as the default database (empty: none).
pub(crate) fn admin_access(server: &AdminEndpoint, database: &str) -> DatabaseAccess {
    DatabaseAccess {
        host: server.host.clone(),
        port: server.port,
        database: database.to_string(),
        user: server.user.clone(),
        password: server.password.clone(),
    }
}

pub(crate) async fn connect(target: &DatabaseAccess) -> Result<MySqlConnection> {
    match tokio::time::timeout(
        CONNECT_TIMEOUT,
        MySqlConnection::connect_with(&options(target)),
    )
    .await
    {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(from_sqlx(e)),
        Err(_) => Err(EngineError::Connect(format!(
            "{}:{} did not answer within {}s",
            target.host,
            target.port,
            CONNECT_TIMEOUT.as_secs()
        ))),
    }
}

/// A connection as the administrator, without a default database.
pub(crate) async fn connect_admin(server: &AdminEndpoint) -> Result<MySqlConnection> {
    connect(&admin_access(server, "")).await
}

/// MariaDB error numbers tdb treats apart.
pub(crate) mod errno {
    /// Too many connections on the server.
    pub const TOO_MANY_CONNECTIONS: u16 = 1040;
    /// The server-wide `max_user_connections` are all taken by the user.
    pub const USER_CONNECTIONS: u16 = 1203;
    /// The account's own limits (its `MAX_USER_CONNECTIONS`) are reached.
    pub const USER_LIMIT_REACHED: u16 = 1226;
    /// `max_statement_time` ended the statement.
    pub const STATEMENT_TIMEOUT: u16 = 1969;
    /// A table that does not exist.
    pub const NO_SUCH_TABLE: u16 = 1146;
    /// A statement the user lacks the privilege for, on a table.
    pub const TABLE_ACCESS_DENIED: u16 = 1142;
}

/// Maps a driver error: a server error keeps its message and SQLSTATE, and its error number is
/// the `detail`; full servers (all connections, or the user's) are `Busy`.
pub(crate) fn from_sqlx(e: sqlx::Error) -> EngineError {
    match e {
        sqlx::Error::Database(db) => {
            let number = db
                .try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
                .map(|e| e.number());
            if matches!(
                number,
                Some(
                    errno::TOO_MANY_CONNECTIONS
                        | errno::USER_CONNECTIONS
                        | errno::USER_LIMIT_REACHED
                )
            ) {
                return EngineError::Busy(db.message().to_string());
            }
            EngineError::Query {
                message: db.message().to_string(),
                sqlstate: db.code().map(|c| c.to_string()).unwrap_or_default(),
                detail: number.map(|n| n.to_string()),
                position: None,
            }
        }
        sqlx::Error::Io(e) => EngineError::Connect(e.to_string()),
        sqlx::Error::Tls(e) => EngineError::Connect(e.to_string()),
        other => EngineError::Internal(other.to_string()),
    }
}

/// The MySQL error number of an engine error (from [`from_sqlx`]'s `detail`).
pub(crate) fn error_number(e: &EngineError) -> Option<u16> {
    match e {
        EngineError::Query {
            detail: Some(d), ..
        } => d.parse().ok(),
        _ => None,
    }
}

/// Runs one statement tdb wrote (no rows wanted).
pub(crate) async fn exec(conn: &mut MySqlConnection, sql: impl Into<String>) -> Result<()> {
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.into()))
        .execute(conn)
        .await
        .map(|_| ())
        .map_err(from_sqlx)
}

#[async_trait]
impl Engine for MysqlEngine {
    fn kind(&self) -> tdb_core::Engine {
        tdb_core::Engine::Mysql
    }

    async fn connection_capacity(&self, server: &AdminEndpoint) -> Result<u32> {
        secure::connection_capacity(server).await
    }

    async fn size_bytes(&self, server: &AdminEndpoint) -> Result<u64> {
        secure::size_bytes(server).await
    }

    /// Once hardened, no database is open to everyone (no `PUBLIC` grants, no anonymous or
    /// wildcard rows), so the `extra` databases need nothing more.
    async fn secure_server(&self, server: &AdminEndpoint, _extra: &[&str]) -> Result<()> {
        let mut admin = connect_admin(server).await?;
        let done = secure::harden(&mut admin, secure::Root::KeepLocal).await;
        let _ = admin.close().await;
        done
    }

    /// MariaDB already shows each user only what it holds privileges on: `SHOW DATABASES`,
    /// `information_schema` (tables, columns, routines), the process list (its own sessions
    /// without `PROCESS`), and nothing of `mysql.*` without a grant there. What it shows every
    /// user (server-wide status counters, the three `performance_schema` tables that hold them
    /// and the session's own connection attributes) names no database, user or row. Nothing to
    /// close.
    async fn hide_shared_catalogs(&self, _server: &AdminEndpoint) -> Result<CatalogSweep> {
        Ok(CatalogSweep::default())
    }

    async fn create_database(&self, server: &AdminEndpoint, spec: &DatabaseSpec<'_>) -> Result<()> {
        tenant::create_workspace(server, spec).await
    }

    async fn database_exists(&self, server: &AdminEndpoint, name: &str) -> Result<bool> {
        let mut admin = connect_admin(server).await?;
        let exists = tenant::exists(&mut admin, name).await;
        let _ = admin.close().await;
        exists
    }

    async fn create_tenant_database(
        &self,
        server: &AdminEndpoint,
        spec: &TenantSpec<'_>,
    ) -> Result<()> {
        tenant::create(server, spec).await
    }

    async fn drop_database(
        &self,
        server: &AdminEndpoint,
        name: &str,
        roles: &[&str],
    ) -> Result<()> {
        tenant::drop_database(server, name, roles).await
    }

    async fn dump(&self, source: &DatabaseAccess) -> Result<Dump> {
        dump::dump(&self.tool("mariadb-dump"), source).await
    }

    async fn create_restore_target(
        &self,
        server: &AdminEndpoint,
        target: &RestoreTarget<'_>,
    ) -> Result<()> {
        tenant::create_restore_target(server, target).await
    }

    /// Unlike PostgreSQL's, a failed restore is not undone: MariaDB's DDL commits as it goes.
    /// The target is always a fresh database made by `create_restore_target`, which the caller
    /// drops (or makes again) after a failure.
    async fn restore(
        &self,
        target: &DatabaseAccess,
        input: Box<dyn tokio::io::AsyncRead + Send + Unpin>,
    ) -> Result<()> {
        dump::restore(&self.tool("mariadb"), target, input).await
    }

    async fn open(
        &self,
        target: &DatabaseAccess,
        limits: Limits,
        admin: Option<&AdminEndpoint>,
    ) -> Result<Box<dyn Session>> {
        let place = self.session_place(&limits).await?;
        Ok(Box::new(
            session::MysqlSession::open(target, limits, admin, place).await?,
        ))
    }

    fn sql(&self) -> Option<&dyn SqlEngine> {
        Some(self)
    }

    fn introspection(&self) -> Option<&dyn Introspection> {
        Some(self)
    }

    fn moves(&self) -> Option<&dyn crate::capability::DatabaseMoves> {
        Some(self)
    }
}
