//! Registered connections and schema-per-tenant ("provisioned") databases. A connection's
//! string is stored sealed; a provisioned database is a schema and a login role in a shared
//! database, registered as a connection at once. The per-account limit is checked and the row
//! written in one transaction that holds the account's row, so two requests cannot both take
//! the last place.

use chrono::{DateTime, Utc};
use sqlx::FromRow;
use tdb_core::ConnectionStatus;

use crate::servers::Server;
use crate::{Catalog, CatalogError, Result};

#[derive(Debug, Clone, FromRow)]
pub struct Connection {
    pub id: String,
    pub project_id: String,
    pub name: String,
    pub db_type: String,
    pub host: String,
    pub port: i32,
    pub database_name: String,
    pub excluded_schemas: Vec<String>,
    pub secret: Vec<u8>,
    pub is_active: bool,
    pub created_at: DateTime<Utc>,
    pub last_introspected_at: Option<DateTime<Utc>>,
}

pub struct NewConnection<'a> {
    pub id: &'a str,
    pub project_id: &'a str,
    pub name: &'a str,
    pub db_type: &'a str,
    pub host: &'a str,
    pub port: i32,
    pub database_name: &'a str,
    pub excluded_schemas: &'a [String],
    pub secret: &'a [u8],
}

#[derive(Debug, Clone, FromRow)]
pub struct Provisioned {
    pub id: String,
    pub project_id: String,
    pub account_id: String,
    pub connection_id: String,
    pub name: String,
    pub schema_name: String,
    pub role_name: String,
    pub role_secret: Vec<u8>,
    pub server_id: String,
    pub database: String,
    #[sqlx(try_from = "String")]
    pub status: ConnectionStatus,
    pub created_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
}

pub struct NewProvisioned<'a> {
    pub id: &'a str,
    pub project_id: &'a str,
    pub account_id: &'a str,
    pub name: &'a str,
    pub schema_name: &'a str,
    pub role_name: &'a str,
    pub role_secret: &'a [u8],
    pub server_id: &'a str,
    pub database: &'a str,
}

/// A provisioned database as the proxy reaches it.
#[derive(Debug, Clone)]
pub struct ProvisionRoute {
    pub provisioned: Provisioned,
    pub server: Server,
}

async fn insert_connection(
    tx: &mut sqlx::PgConnection,
    c: &NewConnection<'_>,
    active: bool,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO connections (id, project_id, name, db_type, host, port, database_name,
                                  excluded_schemas, secret, is_active)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(c.id)
    .bind(c.project_id)
    .bind(c.name)
    .bind(c.db_type)
    .bind(c.host)
    .bind(c.port)
    .bind(c.database_name)
    .bind(c.excluded_schemas)
    .bind(c.secret)
    .bind(active)
    .execute(tx)
    .await?;
    Ok(())
}

impl Catalog {
    pub async fn create_connection(&self, c: &NewConnection<'_>) -> Result<Connection> {
        let mut conn = self.pool().acquire().await?;
        insert_connection(&mut conn, c, true).await?;
        drop(conn);
        self.find_connection(c.project_id, c.id).await
    }

    /// Active and deactivated connections of a project, oldest first.
    pub async fn list_connections(&self, project_id: &str) -> Result<Vec<Connection>> {
        Ok(sqlx::query_as(
            "SELECT * FROM connections WHERE project_id = $1 ORDER BY created_at, id",
        )
        .bind(project_id)
        .fetch_all(self.pool())
        .await?)
    }

    pub async fn find_connection(&self, project_id: &str, id: &str) -> Result<Connection> {
        sqlx::query_as("SELECT * FROM connections WHERE project_id = $1 AND id = $2")
            .bind(project_id)
            .bind(id)
            .fetch_optional(self.pool())
            .await?
            .ok_or(CatalogError::NotFound)
    }

    /// Soft delete: the record stays, marked inactive. `false` when it was inactive already.
    pub async fn deactivate_connection(&self, project_id: &str, id: &str) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE connections SET is_active = false
              WHERE project_id = $1 AND id = $2 AND is_active",
        )
        .bind(project_id)
        .bind(id)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn mark_introspected(&self, id: &str) -> Result<DateTime<Utc>> {
        Ok(sqlx::query_scalar(
            "UPDATE connections SET last_introspected_at = now() WHERE id = $1
             RETURNING last_introspected_at",
        )
        .bind(id)
        .fetch_one(self.pool())
        .await?)
    }

    /// Records a provisioned database (status `provisioning`) with its connection (inactive
    /// until the database exists), unless the account already has `limit` or more; then
    /// returns how many it has.
    pub async fn reserve_provisioned(
        &self,
        p: &NewProvisioned<'_>,
        c: &NewConnection<'_>,
        limit: u32,
    ) -> Result<Option<i64>> {
        let mut tx = self.pool().begin().await?;
        sqlx::query("SELECT 1 FROM accounts WHERE id = $1 FOR UPDATE")
            .bind(p.account_id)
            .execute(&mut *tx)
            .await?;
        let count = count_live(&mut tx, p.account_id).await?;
        if count >= i64::from(limit) {
            return Ok(Some(count));
        }
        insert_connection(&mut tx, c, false).await?;
        sqlx::query(
            "INSERT INTO provisioned_databases (id, project_id, account_id, connection_id, name,
                 schema_name, role_name, role_secret, server_id, database, status)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'provisioning')",
        )
        .bind(p.id)
        .bind(p.project_id)
        .bind(p.account_id)
        .bind(c.id)
        .bind(p.name)
        .bind(p.schema_name)
        .bind(p.role_name)
        .bind(p.role_secret)
        .bind(p.server_id)
        .bind(p.database)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(None)
    }

    /// The database exists: it and its connection become active. `None` when it was deleted
    /// meanwhile.
    pub async fn activate_provisioned(&self, id: &str) -> Result<Option<Provisioned>> {
        let mut tx = self.pool().begin().await?;
        let p: Option<Provisioned> = sqlx::query_as(
            "UPDATE provisioned_databases SET status = 'active'
              WHERE id = $1 AND status = 'provisioning' RETURNING *",
        )
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(p) = p else {
            return Ok(None);
        };
        sqlx::query("UPDATE connections SET is_active = true WHERE id = $1")
            .bind(&p.connection_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some(p))
    }

    /// Forgets a provisioned database that could not be built (its connection goes with it).
    pub async fn forget_provisioned(&self, id: &str) -> Result<()> {
        sqlx::query(
            "DELETE FROM connections WHERE id =
                 (SELECT connection_id FROM provisioned_databases WHERE id = $1)",
        )
        .bind(id)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// A provisioned database by id, whatever its status.
    pub async fn provisioned_by_id(&self, id: &str) -> Result<Option<Provisioned>> {
        Ok(
            sqlx::query_as("SELECT * FROM provisioned_databases WHERE id = $1")
                .bind(id)
                .fetch_optional(self.pool())
                .await?,
        )
    }

    /// Points a provisioned database at the database it now lives in (the proxies forget its
    /// route).
    pub async fn set_provisioned_database(&self, id: &str, database: &str) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        let moved: Option<(String, String)> = sqlx::query_as(
            "UPDATE provisioned_databases SET database = $2 WHERE id = $1
             RETURNING project_id, schema_name",
        )
        .bind(id)
        .bind(database)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some((project, schema)) = moved {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(crate::routing::ROUTES_CHANNEL)
                .bind(format!("provision:{project}:{schema}"))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Queues a `provision_move` job for each live provisioned database that still lives in a
    /// shared database (made before each had its own), unless one is queued already. The job's
    /// reference is `<id>@<shared database>`, so a move resumed after its switch still knows
    /// what to clean up.
    pub async fn queue_provision_moves(&self) -> Result<u64> {
        let done = sqlx::query(
            "INSERT INTO jobs (kind, ref_id, project_id)
             SELECT 'provision_move', p.id || '@' || p.database, p.project_id
               FROM provisioned_databases p
              WHERE p.status = 'active' AND p.database NOT LIKE 'tdb\\_p\\_%'
                AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.kind = 'provision_move'
                                   AND j.ref_id LIKE p.id || '@%' AND j.status <> 'done')",
        )
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected())
    }

    /// The account's live provisioned databases (the limit counts these).
    pub async fn count_provisioned(&self, account_id: &str) -> Result<i64> {
        let mut conn = self.pool().acquire().await?;
        count_live(&mut conn, account_id).await
    }

    /// A project's live provisioned databases, oldest first.
    pub async fn list_provisioned(&self, project_id: &str) -> Result<Vec<Provisioned>> {
        Ok(sqlx::query_as(
            "SELECT * FROM provisioned_databases WHERE project_id = $1 AND status <> 'deleted'
              ORDER BY created_at, id",
        )
        .bind(project_id)
        .fetch_all(self.pool())
        .await?)
    }

    /// A live provisioned database of a project.
    pub async fn find_provisioned(&self, project_id: &str, id: &str) -> Result<Provisioned> {
        sqlx::query_as(
            "SELECT * FROM provisioned_databases
              WHERE project_id = $1 AND id = $2 AND status <> 'deleted'",
        )
        .bind(project_id)
        .bind(id)
        .fetch_optional(self.pool())
        .await?
        .ok_or(CatalogError::NotFound)
    }

    /// The provisioned database a connection stands for, if it is one.
    pub async fn provisioned_by_connection(
        &self,
        connection_id: &str,
    ) -> Result<Option<Provisioned>> {
        Ok(
            sqlx::query_as("SELECT * FROM provisioned_databases WHERE connection_id = $1")
                .bind(connection_id)
                .fetch_optional(self.pool())
                .await?,
        )
    }

    /// The database is gone: marked deleted, its connection deactivated, its proxy logins
    /// removed, in one transaction.
    pub async fn mark_provisioned_deleted(&self, p: &Provisioned) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        sqlx::query(
            "UPDATE provisioned_databases SET status = 'deleted', deleted_at = now() WHERE id = $1",
        )
        .bind(&p.id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE connections SET is_active = false WHERE id = $1")
            .bind(&p.connection_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "DELETE FROM credentials
              WHERE project_id = $1 AND scope_type = 'provision' AND scope_value = $2",
        )
        .bind(&p.project_id)
        .bind(&p.schema_name)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The live provisioned database behind a routing name (its schema name), for the proxy.
    pub async fn provision_route(
        &self,
        project_id: &str,
        schema_name: &str,
    ) -> Result<Option<ProvisionRoute>> {
        let p: Option<Provisioned> = sqlx::query_as(
            "SELECT * FROM provisioned_databases
              WHERE project_id = $1 AND schema_name = $2 AND status = 'active'",
        )
        .bind(project_id)
        .bind(schema_name)
        .fetch_optional(self.pool())
        .await?;
        let Some(provisioned) = p else {
            return Ok(None);
        };
        let server = self.find_server(&provisioned.server_id).await?;
        Ok(Some(ProvisionRoute {
            provisioned,
            server,
        }))
    }
}

async fn count_live(conn: &mut sqlx::PgConnection, account_id: &str) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT count(*) FROM provisioned_databases WHERE account_id = $1 AND status <> 'deleted'",
    )
    .bind(account_id)
    .fetch_one(conn)
    .await?)
}
