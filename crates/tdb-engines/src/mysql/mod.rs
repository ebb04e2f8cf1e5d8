//! MySQL, served by MariaDB: connections as tdb's administrator and users (`sqlx-mysql`),
//! quoting, the hardening of a server, and tdb's record of each tenant database. The engine
//! itself builds on these.
//!
//! A host that starts with `/` is the path of the server's Unix socket (a managed server on its
//! private socket); any other host is reached over TCP at the port.

pub mod meta;
pub mod quote;
pub mod secure;

use std::time::Duration;

use sqlx::mysql::{MySqlConnectOptions, MySqlConnection};
use sqlx::{ConnectOptions, Connection};

use crate::AdminEndpoint;
use crate::engine::{DatabaseAccess, EngineError, Result};

/// How long tdb waits for a server to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

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
    /// The user's `MAX_USER_CONNECTIONS` are all taken.
    pub const USER_CONNECTIONS: u16 = 1203;
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
                Some(errno::TOO_MANY_CONNECTIONS | errno::USER_CONNECTIONS)
            ) {
                return EngineError::Busy(db.message().to_string());
            }
            EngineError::Query {
                message: db.message().to_string(),
                sqlstate: db.code().map(|c| c.to_string()).unwrap_or_default(),
                detail: number.map(|n| n.to_string()),
            }
        }
        sqlx::Error::Io(e) => EngineError::Connect(e.to_string()),
        sqlx::Error::Tls(e) => EngineError::Connect(e.to_string()),
        other => EngineError::Internal(other.to_string()),
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
