//! The PostgreSQL engine: databases owned by an opaque login role (which owns every object in
//! them), sessions that run statements with a timeout and a row cap, dumps through the installed
//! `pg_dump`. This file holds the core [`Engine`]; `capabilities.rs` the rest (migrations,
//! schema-per-tenant databases, introspection from pg_catalog, connection URLs).

mod capabilities;
mod dump;
mod export;
mod introspect;
mod moves;
mod overview;
mod schema_tenant;
mod session;
mod tenant;
mod values;
mod visibility;
pub mod wire;

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection};

use crate::AdminEndpoint;
use crate::capability::{Introspection, SchemaTenants, SqlEngine, UrlSessions};
use crate::engine::{
    CatalogSweep, DatabaseAccess, DatabaseSpec, Dump, Engine, EngineError, Limits, RestoreTarget,
    Result, Session, TenantSpec,
};

/// Double-quotes an identifier.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Single-quotes a literal.
pub fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

pub struct PostgresEngine {
    /// Where `pg_dump` lives; `None` looks it up on PATH.
    bindir: Option<PathBuf>,
    /// Sessions open at once for users' statements: tdb's own share of a server's connections
    /// is bounded (see `server_reserved_connections`), so a burst of API queries waits here
    /// rather than taking connections the server keeps for something else.
    sessions: std::sync::Arc<tokio::sync::Semaphore>,
}

/// Sessions for users' statements (API queries) open at once.
pub const MAX_SESSIONS: usize = 32;
/// Of those, the sessions one owner (a project) may have: a quarter.
pub const MAX_OWNER_SESSIONS: usize = MAX_SESSIONS / 4;
/// How long a new session waits for one of them.
const SESSION_WAIT: Duration = Duration::from_secs(10);

/// A session's places: among its owner's sessions and among all.
pub struct SessionPlace {
    _owner: tokio::sync::OwnedSemaphorePermit,
    _all: tokio::sync::OwnedSemaphorePermit,
}

impl PostgresEngine {
    pub fn new(bindir: Option<PathBuf>) -> Self {
        Self {
            bindir,
            sessions: std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_SESSIONS)),
        }
    }

    /// A place for one more session of the owner whose places `limits` carries, then among all
    /// sessions, or an error after waiting [`SESSION_WAIT`].
    async fn session_place(&self, limits: &Limits) -> Result<SessionPlace> {
        let wait = |sem: std::sync::Arc<tokio::sync::Semaphore>| {
            tokio::time::timeout(SESSION_WAIT, sem.acquire_owned())
        };
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

    /// A client tool of the server's version: from `bindir`, else PATH.
    fn tool(&self, name: &str) -> PathBuf {
        self.bindir
            .as_ref()
            .map(|d| d.join(name))
            .filter(|p| p.is_file())
            .unwrap_or_else(|| PathBuf::from(name))
    }

    fn pg_dump(&self) -> PathBuf {
        self.tool("pg_dump")
    }
}

pub(crate) fn options(target: &DatabaseAccess) -> PgConnectOptions {
    PgConnectOptions::new()
        .host(&target.host)
        .port(target.port)
        .username(&target.user)
        .password(&target.password)
        .database(&target.database)
        .application_name("tdb")
        .disable_statement_logging()
}

fn admin_access(server: &AdminEndpoint, database: &str) -> DatabaseAccess {
    DatabaseAccess {
        host: server.host.clone(),
        port: server.port,
        database: database.to_string(),
        user: server.user.clone(),
        password: server.password.clone(),
    }
}

pub(crate) async fn connect(target: &DatabaseAccess) -> Result<PgConnection> {
    connect_with(&options(target)).await
}

pub(crate) async fn connect_with(opts: &PgConnectOptions) -> Result<PgConnection> {
    match tokio::time::timeout(Duration::from_secs(10), PgConnection::connect_with(opts)).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(from_sqlx(e)),
        Err(_) => Err(EngineError::Connect(format!(
            "{}:{} did not answer within 10s",
            opts.get_host(),
            opts.get_port()
        ))),
    }
}

/// Connection options from a `postgres://` or `postgresql://` URL (its query parameters such
/// as `sslmode` included), connecting to `pin` when given. The error never repeats the URL,
/// which carries a password.
pub fn url_options(url: &str, pin: Option<std::net::IpAddr>) -> Result<PgConnectOptions> {
    use std::str::FromStr;
    let opts = PgConnectOptions::from_str(url)
        .map(|o| o.application_name("tdb").disable_statement_logging())
        .map_err(|_| {
            EngineError::Connect("the connection string is not a valid PostgreSQL URL".into())
        })?;
    Ok(match pin {
        Some(ip) => opts.host(&ip.to_string()),
        None => opts,
    })
}

/// Maps a driver error: server errors keep their message and SQLSTATE.
pub(crate) fn from_sqlx(e: sqlx::Error) -> EngineError {
    match e {
        sqlx::Error::Database(db) => {
            let pg = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>();
            let sqlstate = db.code().map(|c| c.to_string()).unwrap_or_default();
            if sqlstate == "57014" {
                return EngineError::Query {
                    message: db.message().to_string(),
                    sqlstate,
                    detail: Some("the statement ran longer than query_timeout_ms".into()),
                    position: None,
                };
            }
            let position = match pg.and_then(|p| p.position()) {
                Some(sqlx::postgres::PgErrorPosition::Original(at)) => u32::try_from(at).ok(),
                _ => None,
            };
            EngineError::Query {
                message: db.message().to_string(),
                detail: pg.and_then(|p| p.detail()).map(str::to_string),
                sqlstate,
                position,
            }
        }
        sqlx::Error::Io(e) => EngineError::Connect(e.to_string()),
        sqlx::Error::Tls(e) => EngineError::Connect(e.to_string()),
        other => EngineError::Internal(other.to_string()),
    }
}

async fn exec(conn: &mut PgConnection, sql: String) -> Result<()> {
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(conn)
        .await
        .map(|_| ())
        .map_err(from_sqlx)
}

#[async_trait]
impl Engine for PostgresEngine {
    fn kind(&self) -> tdb_core::Engine {
        tdb_core::Engine::Postgresql
    }

    async fn create_database(&self, server: &AdminEndpoint, spec: &DatabaseSpec<'_>) -> Result<()> {
        let db = quote_ident(spec.name);
        let owner = quote_ident(spec.owner_role);
        // The role gets a SCRAM verifier, never the password, so nothing readable reaches the
        // server's statement log.
        let verifier = tdb_core::secrets::scram_verifier(spec.owner_password);
        let mut admin = connect(&admin_access(server, "postgres")).await?;
        exec(
            &mut admin,
            format!(
                "CREATE ROLE {owner} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION \
                 NOBYPASSRLS CONNECTION LIMIT {} PASSWORD {}",
                spec.connection_limit,
                quote_literal(&verifier)
            ),
        )
        .await?;
        let _ = admin.close().await;
        let built = async {
            let mut admin = connect(&admin_access(server, "postgres")).await?;
            exec(&mut admin, format!("CREATE DATABASE {db} OWNER {owner}")).await?;
            exec(
                &mut admin,
                format!("REVOKE ALL ON DATABASE {db} FROM PUBLIC"),
            )
            .await?;
            let _ = admin.close().await;
            // Inside the new database the owner owns the public schema; nobody else may create.
            let mut inside = connect(&admin_access(server, spec.name)).await?;
            exec(
                &mut inside,
                format!(
                    "ALTER SCHEMA public OWNER TO {owner}; REVOKE ALL ON SCHEMA public FROM PUBLIC"
                ),
            )
            .await?;
            visibility::hide(&mut inside).await?;
            let _ = inside.close().await;
            Ok(())
        };
        if let Err(e) = built.await {
            // Leave nothing behind: a failed create is retried from scratch.
            let _ = self
                .drop_database(server, spec.name, &[spec.owner_role])
                .await;
            return Err(e);
        }
        Ok(())
    }

    async fn database_exists(&self, server: &AdminEndpoint, name: &str) -> Result<bool> {
        let mut admin = connect(&admin_access(server, "postgres")).await?;
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
                .bind(name)
                .fetch_one(&mut admin)
                .await
                .map_err(from_sqlx)?;
        let _ = admin.close().await;
        Ok(exists)
    }

    async fn connection_capacity(&self, server: &AdminEndpoint) -> Result<u32> {
        let mut admin = connect(&admin_access(server, "postgres")).await?;
        let capacity: i32 = sqlx::query_scalar(
            "SELECT current_setting('max_connections')::int
                  - current_setting('superuser_reserved_connections')::int
                  - COALESCE(current_setting('reserved_connections', true)::int, 0)",
        )
        .fetch_one(&mut admin)
        .await
        .map_err(from_sqlx)?;
        let _ = admin.close().await;
        Ok(u32::try_from(capacity).unwrap_or(0))
    }

    async fn size_bytes(&self, server: &AdminEndpoint) -> Result<u64> {
        let mut admin = connect(&admin_access(server, "postgres")).await?;
        let bytes: i64 = sqlx::query_scalar(
            "SELECT COALESCE(sum(pg_database_size(oid)), 0)::bigint
               FROM pg_database WHERE NOT datistemplate AND datallowconn",
        )
        .fetch_one(&mut admin)
        .await
        .map_err(from_sqlx)?;
        let _ = admin.close().await;
        Ok(u64::try_from(bytes).unwrap_or(0))
    }

    async fn secure_server(&self, server: &AdminEndpoint, extra: &[&str]) -> Result<()> {
        tenant::secure_server(server, extra).await
    }

    async fn hide_shared_catalogs(&self, server: &AdminEndpoint) -> Result<CatalogSweep> {
        visibility::hide_everywhere(server).await
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
        let mut admin = connect(&admin_access(server, "postgres")).await?;
        exec(
            &mut admin,
            format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote_ident(name)),
        )
        .await?;
        for role in roles {
            exec(
                &mut admin,
                format!("DROP ROLE IF EXISTS {}", quote_ident(role)),
            )
            .await?;
        }
        let _ = admin.close().await;
        Ok(())
    }

    async fn open(
        &self,
        target: &DatabaseAccess,
        limits: Limits,
        admin: Option<&AdminEndpoint>,
    ) -> Result<Box<dyn Session>> {
        let place = self.session_place(&limits).await?;
        Ok(Box::new(
            session::PgSession::open(target, limits, admin, place).await?,
        ))
    }

    async fn dump(&self, source: &DatabaseAccess) -> Result<Dump> {
        dump::dump(&self.pg_dump(), source)
    }

    async fn create_restore_target(
        &self,
        server: &AdminEndpoint,
        target: &RestoreTarget<'_>,
    ) -> Result<()> {
        tenant::create_restore_target(server, target).await
    }

    async fn restore(
        &self,
        target: &DatabaseAccess,
        input: Box<dyn tokio::io::AsyncRead + Send + Unpin>,
    ) -> Result<()> {
        dump::restore(&self.tool("psql"), target, input).await
    }

    fn sql(&self) -> Option<&dyn SqlEngine> {
        Some(self)
    }

    fn schema_tenants(&self) -> Option<&dyn SchemaTenants> {
        Some(self)
    }

    fn moves(&self) -> Option<&dyn crate::capability::DatabaseMoves> {
        Some(self)
    }

    fn introspection(&self) -> Option<&dyn Introspection> {
        Some(self)
    }

    fn url_sessions(&self) -> Option<&dyn UrlSessions> {
        Some(self)
    }
}
