//! The core engine abstraction: what the control plane asks of a database server, whatever its
//! kind, and the types it speaks in. What only some engines can do is a capability trait in
//! [`crate::capability`]; docs/ENGINES.md says how an engine plugs in.

use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;

use crate::AdminEndpoint;
use crate::capability::{Introspection, KeyValueSettings, SchemaTenants, SqlEngine, UrlSessions};

/// How to reach one database as one role.
#[derive(Clone)]
pub struct DatabaseAccess {
    pub host: String,
    pub port: u16,
    pub database: String,
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for DatabaseAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseAccess")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("database", &self.database)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// A database to create: an opaque name, and the login role that owns it and its objects.
pub struct DatabaseSpec<'a> {
    pub name: &'a str,
    pub owner_role: &'a str,
    pub owner_password: &'a str,
    pub connection_limit: u32,
}

/// A tenant database to create.
pub struct TenantSpec<'a> {
    pub name: &'a str,
    pub owner_role: &'a str,
    pub owner_password: &'a str,
    /// The role applications log in as: rows only, no DDL.
    pub app_role: &'a str,
    pub app_password: &'a str,
    /// The role read credentials log in as: SELECT only.
    pub read_role: &'a str,
    pub read_password: &'a str,
    pub connection_limit: u32,
}

/// A schema-per-tenant database: a schema in a shared database and the login role that uses it.
pub struct SchemaTenantSpec<'a> {
    /// The shared database (created on first use).
    pub database: &'a str,
    pub schema: &'a str,
    pub role: &'a str,
    pub password: &'a str,
    pub connection_limit: u32,
}

/// An empty database to restore a tenant database's dump into, for the tenant's own roles.
pub struct RestoreTarget<'a> {
    pub name: &'a str,
    pub owner_role: &'a str,
    pub app_role: &'a str,
    /// Absent on databases made before read roles existed.
    pub read_role: Option<&'a str>,
}

/// A logical dump being produced. Read `output` to its end, then await `finish`: only an `Ok`
/// there means the output was whole. Dropping either stops the dump.
pub struct Dump {
    pub output: Box<dyn tokio::io::AsyncRead + Send + Unpin>,
    pub finish: futures_util::future::BoxFuture<'static, Result<()>>,
}

/// A migration of one database: `statements` take it from version `from` to `version`, applied
/// as the owner in one transaction that also records `version` in the database itself; with
/// `dry_run` the transaction is rolled back. A database already at `version` or later is left
/// alone (so a retried migration never applies twice); one at another version than `from` is
/// left alone too and reported, so the caller can pick the right statements. The whole
/// migration may take `timeout`: each statement runs under the server's `statement_timeout`,
/// and should the statements lift it, tdb cancels the transaction and has `admin` end its
/// backend (the owner role's password may have been changed by the statements themselves).
pub struct MigrationPlan<'a> {
    pub owner: &'a DatabaseAccess,
    pub admin: &'a AdminEndpoint,
    pub from: i32,
    pub statements: &'a [String],
    pub version: i32,
    pub dry_run: bool,
    pub timeout: Duration,
}

/// What a migration did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Migration {
    Applied {
        from: i32,
    },
    /// The database was already at (or past) the target version.
    AlreadyAt(i32),
    /// Dry run: everything applied, then rolled back.
    WouldApply {
        from: i32,
    },
    /// The database is at this version, not the expected one; nothing was applied.
    Mismatch(i32),
}

/// How closing a server's shared catalogs in each of its databases went.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CatalogSweep {
    /// Databases whose shared catalogs are now closed to PUBLIC.
    pub closed: usize,
    /// Databases that went away while the sweep ran.
    pub gone: usize,
    /// Databases the sweep could not treat, with why.
    pub failed: Vec<(String, String)>,
}

/// Bounds on the statements of one request.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Per statement; enforced by the server and, should the statement lift it, by tdb.
    pub timeout: Duration,
    /// Rows kept per statement (more are counted, not kept).
    pub max_rows: usize,
    /// The memory the request's rows may take, shared by all its sessions.
    pub answer: crate::budget::Answer,
    /// The sessions its owner (a project) may have open at once, shared by all its requests: no
    /// one project can take every session the engine allows.
    pub owner_sessions: std::sync::Arc<tokio::sync::Semaphore>,
}

/// What one statement returned.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct QueryOutput {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<serde_json::Value>>,
    /// Rows returned (for queries) or affected (for DML).
    pub row_count: u64,
    /// True when more rows existed than `max_rows` allowed.
    pub truncated: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The server refused the statement; the message is the server's.
    #[error("{message}")]
    Query {
        message: String,
        sqlstate: String,
        detail: Option<String>,
        /// Where in the statement the server places the error: a 1-based character index,
        /// when it gives one (PostgreSQL's `position`).
        position: Option<u32>,
    },
    #[error("statement exceeded the query timeout of {0:?}")]
    Timeout(Duration),
    /// The answer would take more memory than tdb allows it.
    #[error("{0}")]
    TooLarge(crate::budget::OverBudget),
    #[error("cannot connect to the database server: {0}")]
    Connect(String),
    /// tdb runs as many sessions as it allows (for this caller, or in all); try again shortly.
    #[error("{0}")]
    Busy(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    Internal(String),
}

pub type Result<T> = std::result::Result<T, EngineError>;

impl EngineError {
    /// Whether the same request may succeed later: the server could not be reached, was
    /// starting or stopping, or had no session to spare. A statement the server refused, one
    /// over its timeout, a request the engine cannot serve, or a tool that failed on its input
    /// (`Internal`: pg_dump, psql) fails the same way again.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Connect(_) | Self::Busy(_) => true,
            Self::Query { sqlstate, .. } => transient_sqlstate(sqlstate),
            Self::Timeout(_) | Self::TooLarge(_) | Self::Unsupported(_) | Self::Internal(_) => {
                false
            }
        }
    }
}

/// SQLSTATEs that say the server, not the statement, was the trouble: connection exceptions
/// (class 08), too many connections, and a server shutting down or starting up.
pub fn transient_sqlstate(sqlstate: &str) -> bool {
    sqlstate.starts_with("08") || matches!(sqlstate, "53300" | "57P01" | "57P02" | "57P03")
}

/// A connection to one database that runs statements in order (so `BEGIN` … `COMMIT` spanning
/// several statements works).
#[async_trait]
pub trait Session: Send {
    async fn run(&mut self, statement: &str) -> Result<QueryOutput>;
    async fn close(self: Box<Self>);
}

/// The core every engine implements: its servers, the databases (or namespaces) it makes on them
/// with their credentials, dump and restore, and sessions that run data commands. What only
/// some engines have is a capability (see [`crate::capability`]), reached through the methods
/// at the end, which answer `None` unless the engine says otherwise.
#[async_trait]
pub trait Engine: Send + Sync {
    fn kind(&self) -> tdb_core::Engine;

    // --- servers ---------------------------------------------------------------------------

    /// Connections the server accepts from roles that are not administrators (for PostgreSQL,
    /// `max_connections` less the slots it reserves).
    async fn connection_capacity(&self, server: &AdminEndpoint) -> Result<u32>;

    /// Bytes the server's databases take on disk (its own templates left out).
    async fn size_bytes(&self, server: &AdminEndpoint) -> Result<u64>;

    /// Closes the server's own databases (`postgres`, `template1`) and `extra` ones (such as the
    /// catalog) to PUBLIC, so the roles tdb creates can reach only their own databases.
    async fn secure_server(&self, server: &AdminEndpoint, extra: &[&str]) -> Result<()>;

    /// Closes what the server shares between databases (other databases' sessions and
    /// statistics, roles and their settings) to every role but the administrator, in every
    /// database on it. Databases created by the engine get this when they are made; this is for
    /// the ones made before. Safe to run again.
    async fn hide_shared_catalogs(&self, server: &AdminEndpoint) -> Result<CatalogSweep>;

    // --- databases or namespaces, and their credentials ------------------------------------

    /// Creates a workspace's database and its owner login; parts that exist are an error.
    async fn create_database(&self, server: &AdminEndpoint, spec: &DatabaseSpec<'_>) -> Result<()>;

    /// Whether the server has a database named `name`.
    async fn database_exists(&self, server: &AdminEndpoint, name: &str) -> Result<bool>;

    /// Creates a tenant database with its three logins: the owner (only tdb uses it, for
    /// migrations), the application's (data only) and the read-only one.
    async fn create_tenant_database(
        &self,
        server: &AdminEndpoint,
        spec: &TenantSpec<'_>,
    ) -> Result<()>;

    /// Drops the database (ending its sessions) and the given logins; absent ones are fine.
    async fn drop_database(&self, server: &AdminEndpoint, name: &str, roles: &[&str])
    -> Result<()>;

    // --- dump and restore ------------------------------------------------------------------

    /// Starts a consistent logical dump of a database (as its owner): schema, data and
    /// sequence positions, without ownership or privilege statements.
    async fn dump(&self, source: &DatabaseAccess) -> Result<Dump>;

    /// Creates (or recreates, when a failed attempt left it) an empty database for a restore,
    /// with the tenant privilege model in place.
    async fn create_restore_target(
        &self,
        server: &AdminEndpoint,
        target: &RestoreTarget<'_>,
    ) -> Result<()>;

    /// Runs a dump into `target` (as its owner) in one transaction that stops at the first
    /// error: on failure the target holds nothing of it.
    async fn restore(
        &self,
        target: &DatabaseAccess,
        input: Box<dyn tokio::io::AsyncRead + Send + Unpin>,
    ) -> Result<()>;

    // --- data commands ---------------------------------------------------------------------

    /// A session on `target` that runs data commands. `admin`, when given, is how tdb ends the
    /// session's backend when a command outlives its timeout and ignores the cancel (the
    /// session's own role cannot be trusted for that: it may have changed its password).
    async fn open(
        &self,
        target: &DatabaseAccess,
        limits: Limits,
        admin: Option<&AdminEndpoint>,
    ) -> Result<Box<dyn Session>>;

    // --- capabilities ----------------------------------------------------------------------

    /// SQL schemas and DDL migrations with a schema version kept in the database.
    fn sql(&self) -> Option<&dyn SqlEngine> {
        None
    }

    /// Databases that are a schema (and a login) in a shared database.
    fn schema_tenants(&self) -> Option<&dyn SchemaTenants> {
        None
    }

    /// Tables, columns, indexes and constraints of a database.
    fn introspection(&self) -> Option<&dyn Introspection> {
        None
    }

    /// Sessions and overviews of databases reached by a connection URL (registered
    /// connections).
    fn url_sessions(&self) -> Option<&dyn UrlSessions> {
        None
    }

    /// Settings applied to a namespace as keys' rules (default TTL, key limits).
    fn key_value_settings(&self) -> Option<&dyn KeyValueSettings> {
        None
    }

    /// Moving a database to another server while it serves.
    fn moves(&self) -> Option<&dyn crate::capability::DatabaseMoves> {
        None
    }
}

/// Capabilities as errors: for callers to whom an engine without one is a request it cannot
/// serve (`EngineError::Unsupported`, naming the engine and what it lacks).
impl dyn Engine + '_ {
    pub fn require_sql(&self) -> Result<&dyn SqlEngine> {
        self.sql()
            .ok_or_else(|| unsupported(self.kind(), "SQL schemas and migrations"))
    }

    pub fn require_moves(&self) -> Result<&dyn crate::capability::DatabaseMoves> {
        self.moves()
            .ok_or_else(|| unsupported(self.kind(), "moves between servers"))
    }

    pub fn require_schema_tenants(&self) -> Result<&dyn SchemaTenants> {
        self.schema_tenants()
            .ok_or_else(|| unsupported(self.kind(), "schema-per-tenant databases"))
    }

    pub fn require_introspection(&self) -> Result<&dyn Introspection> {
        self.introspection()
            .ok_or_else(|| unsupported(self.kind(), "table introspection"))
    }

    pub fn require_url_sessions(&self) -> Result<&dyn UrlSessions> {
        self.url_sessions()
            .ok_or_else(|| unsupported(self.kind(), "connection URLs"))
    }
}

pub(crate) fn unsupported(kind: tdb_core::Engine, what: &str) -> EngineError {
    EngineError::Unsupported(format!("{what} are not supported for {kind:?} yet"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(sqlstate: &str) -> EngineError {
        EngineError::Query {
            message: "m".into(),
            sqlstate: sqlstate.into(),
            detail: None,
            position: None,
        }
    }

    #[test]
    fn refused_statements_are_final_and_unreachable_servers_are_not() {
        // A statement the tenant database refused: a duplicate column, a syntax error, a
        // constraint its data breaks, a cancel by statement_timeout.
        for sqlstate in ["42701", "42601", "23505", "57014", "XX000"] {
            assert!(!query(sqlstate).is_transient(), "{sqlstate}");
        }
        assert!(!EngineError::Timeout(Duration::from_secs(1)).is_transient());
        assert!(!EngineError::Unsupported("x".into()).is_transient());
        assert!(!EngineError::Internal("psql: syntax error".into()).is_transient());
        // The server, not the statement: refused connections, a restart, no free slot.
        for sqlstate in ["08006", "08001", "53300", "57P01", "57P03"] {
            assert!(query(sqlstate).is_transient(), "{sqlstate}");
        }
        assert!(EngineError::Connect("connection refused".into()).is_transient());
        assert!(EngineError::Busy("full".into()).is_transient());
    }
}
