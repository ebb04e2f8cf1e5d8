//! The catalog: everything tdb must remember across restarts, in PostgreSQL. One module per
//! resource holds its SQL; migrations are embedded and applied at start.

pub mod accounts;
pub mod api_keys;
pub mod autodb;
pub mod backups;
pub mod blueprints;
pub mod console;
pub mod credentials;
pub mod deployments;
mod error;
pub mod invitations;
pub mod jobs;
pub mod logs;
pub mod moves;
pub mod projects;
pub mod recoveries;
pub mod routing;
pub mod servers;
pub mod tenants;
pub mod workspaces;

use std::time::Duration;

pub use error::CatalogError;
pub use sqlx::Error as SqlxError;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgConnection};

pub type Result<T> = std::result::Result<T, CatalogError>;

/// A handle on the catalog database; cheap to clone.
#[derive(Clone)]
pub struct Catalog {
    pool: PgPool,
}

impl Catalog {
    /// Connects with a pool and applies pending migrations.
    pub async fn open(options: PgConnectOptions, max_connections: u32) -> Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options.log_statements(tracing::log::LevelFilter::Trace))
            .await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(Self { pool })
    }

    /// A handle that connects on first use, and applies no migrations: for code that may never
    /// touch the catalog (a relay's tests over in-memory streams).
    pub fn lazy(options: PgConnectOptions) -> Self {
        Self {
            pool: PgPoolOptions::new()
                .max_connections(1)
                .acquire_timeout(Duration::from_secs(10))
                .connect_lazy_with(options),
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// True when the catalog answers a trivial query.
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Creates `database` on the server reached by `admin` (connected to its `postgres` database)
/// unless it exists. Used for the catalog on a managed server.
pub async fn ensure_database(admin: &PgConnectOptions, database: &str) -> Result<()> {
    let mut conn = PgConnection::connect_with(admin).await?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(database)
            .fetch_one(&mut conn)
            .await?;
    if !exists {
        let quoted = format!("\"{}\"", database.replace('"', "\"\""));
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {quoted}")))
            .execute(&mut conn)
            .await?;
    }
    conn.close().await?;
    Ok(())
}
