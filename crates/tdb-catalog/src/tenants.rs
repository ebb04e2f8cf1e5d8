//! Tenants and their databases. A tenant's status moves only through [`Catalog::move_tenant`],
//! which changes it atomically from an allowed state, so two requests cannot both win.

use chrono::{DateTime, Utc};
use sqlx::FromRow;
use tdb_core::{Engine, TenantStatus};

use crate::{Catalog, CatalogError, Result};

#[derive(Debug, Clone, FromRow)]
pub struct Tenant {
    pub id: String,
    pub project_id: String,
    pub name: String,
    #[sqlx(try_from = "String")]
    pub status: TenantStatus,
    pub created_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, FromRow)]
pub struct TenantDatabase {
    pub id: String,
    pub tenant_id: String,
    pub tenant_name: String,
    pub blueprint_id: String,
    pub blueprint: String,
    #[sqlx(try_from = "String")]
    pub engine: Engine,
    pub server_id: String,
    pub isolation_level: i32,
    pub region: String,
    pub physical_db: String,
    pub owner_role: String,
    pub owner_secret: Vec<u8>,
    pub app_role: String,
    pub app_secret: Vec<u8>,
    /// The read-only role (absent on databases made before it existed).
    pub read_role: Option<String>,
    pub read_secret: Option<Vec<u8>>,
    pub version: i32,
}

impl TenantDatabase {
    /// Every role of the database, the owner last (so it can be dropped after the others).
    pub fn roles(&self) -> Vec<&str> {
        let mut roles: Vec<&str> = self.read_role.iter().map(String::as_str).collect();
        roles.extend([self.app_role.as_str(), self.owner_role.as_str()]);
        roles
    }
}

pub struct NewTenant<'a> {
    pub id: &'a str,
    pub project_id: &'a str,
    pub name: &'a str,
}

pub struct NewTenantDatabase<'a> {
    pub id: &'a str,
    pub blueprint_id: &'a str,
    pub server_id: &'a str,
    pub isolation_level: i32,
    pub region: &'a str,
    pub physical_db: &'a str,
    pub owner_role: &'a str,
    pub owner_secret: &'a [u8],
    pub app_role: &'a str,
    pub app_secret: &'a [u8],
    pub read_role: &'a str,
    pub read_secret: &'a [u8],
    /// The dedicated server an L2 database gets, recorded with it (`server_id` is its id).
    pub dedicated: Option<crate::servers::NewDedicatedServer<'a>>,
}

const DATABASES: &str = "SELECT d.*, t.name AS tenant_name, b.name AS blueprint, b.engine
      FROM tenant_databases d
      JOIN tenants t ON t.id = d.tenant_id
      JOIN blueprints b ON b.id = d.blueprint_id";

impl Catalog {
    /// Records a tenant (status `provisioning`) and its databases, with the `tenant_create` job
    /// that builds them, claimed by `job_owner` (who works on it under its lease; if the caller
    /// dies, the lease runs out and a runner finishes or undoes the work). Returns the job's id.
    /// A taken name is `Conflict("tenants_project_name_key")`.
    pub async fn create_tenant(
        &self,
        tenant: &NewTenant<'_>,
        databases: &[NewTenantDatabase<'_>],
        job_owner: &str,
        lease_seconds: i32,
        node: Option<&str>,
    ) -> Result<i64> {
        let mut tx = self.pool().begin().await?;
        sqlx::query("INSERT INTO tenants (id, project_id, name, status) VALUES ($1, $2, $3, 'provisioning')")
            .bind(tenant.id)
            .bind(tenant.project_id)
            .bind(tenant.name)
            .execute(&mut *tx)
            .await?;
        for d in databases {
            if let Some(server) = &d.dedicated {
                server.insert(&mut tx).await?;
            }
            sqlx::query(
                "INSERT INTO tenant_databases (id, tenant_id, blueprint_id, server_id, isolation_level,
                     region, physical_db, owner_role, owner_secret, app_role, app_secret,
                     read_role, read_secret)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
            )
            .bind(d.id)
            .bind(tenant.id)
            .bind(d.blueprint_id)
            .bind(d.server_id)
            .bind(d.isolation_level)
            .bind(d.region)
            .bind(d.physical_db)
            .bind(d.owner_role)
            .bind(d.owner_secret)
            .bind(d.app_role)
            .bind(d.app_secret)
            .bind(d.read_role)
            .bind(d.read_secret)
            .execute(&mut *tx)
            .await?;
        }
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO jobs (kind, ref_id, project_id, status, lease_owner, lease_until, attempts,
                               node)
             VALUES ('tenant_create', $1, $2, 'running', $3,
                     now() + make_interval(secs => $4), 1, $5)
             RETURNING id",
        )
        .bind(tenant.id)
        .bind(tenant.project_id)
        .bind(job_owner)
        .bind(lease_seconds)
        .bind(node)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(id)
    }

    pub async fn tenant_by_id(&self, id: &str) -> Result<Option<Tenant>> {
        Ok(sqlx::query_as("SELECT * FROM tenants WHERE id = $1")
            .bind(id)
            .fetch_optional(self.pool())
            .await?)
    }

    /// Forgets one tenant database, once its server has dropped it (its deployment results and
    /// rollbacks go with it; its backups must be gone already).
    pub async fn forget_tenant_database(&self, id: &str) -> Result<()> {
        sqlx::query("DELETE FROM tenant_databases WHERE id = $1")
            .bind(id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    pub async fn find_tenant(&self, project_id: &str, name: &str) -> Result<Tenant> {
        sqlx::query_as("SELECT * FROM tenants WHERE project_id = $1 AND name = $2")
            .bind(project_id)
            .bind(name)
            .fetch_optional(self.pool())
            .await?
            .ok_or(CatalogError::NotFound)
    }

    pub async fn list_tenants(&self, project_id: &str) -> Result<Vec<Tenant>> {
        Ok(
            sqlx::query_as("SELECT * FROM tenants WHERE project_id = $1 ORDER BY created_at, id")
                .bind(project_id)
                .fetch_all(self.pool())
                .await?,
        )
    }

    pub async fn tenant_databases(&self, tenant_id: &str) -> Result<Vec<TenantDatabase>> {
        let sql = format!("{DATABASES} WHERE d.tenant_id = $1 ORDER BY b.name");
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(tenant_id)
            .fetch_all(self.pool())
            .await?)
    }

    /// Every database of a project's tenants (for listings and project deletion).
    pub async fn project_tenant_databases(&self, project_id: &str) -> Result<Vec<TenantDatabase>> {
        let sql = format!("{DATABASES} WHERE t.project_id = $1 ORDER BY t.created_at, b.name");
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(project_id)
            .fetch_all(self.pool())
            .await?)
    }

    /// The databases built from a blueprint whose tenant is not in the trash.
    pub async fn blueprint_databases(&self, blueprint_id: &str) -> Result<Vec<TenantDatabase>> {
        let sql = format!(
            "{DATABASES} WHERE d.blueprint_id = $1 AND t.status <> 'deleted' ORDER BY t.name"
        );
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(blueprint_id)
            .fetch_all(self.pool())
            .await?)
    }

    pub async fn tenant_database(&self, id: &str) -> Result<TenantDatabase> {
        let sql = format!("{DATABASES} WHERE d.id = $1");
        sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(self.pool())
            .await?
            .ok_or(CatalogError::NotFound)
    }

    /// Names of the tenants (trash included) with a database from the blueprint.
    pub async fn tenants_using_blueprint(&self, blueprint_id: &str) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT t.name FROM tenant_databases d JOIN tenants t ON t.id = d.tenant_id
              WHERE d.blueprint_id = $1 ORDER BY t.name",
        )
        .bind(blueprint_id)
        .fetch_all(self.pool())
        .await?)
    }

    /// Moves a tenant to `to` if its status is one of `from`; `Ok(None)` with the actual status
    /// when it is not.
    pub async fn move_tenant(
        &self,
        id: &str,
        from: &[TenantStatus],
        to: TenantStatus,
    ) -> Result<Option<TenantStatus>> {
        let from: Vec<&str> = from.iter().map(|s| s.as_str()).collect();
        // Proxies hear of the change when it commits, and enforce it on open sessions.
        let moved: Option<i32> = sqlx::query_scalar(
            "WITH moved AS (
                 UPDATE tenants SET status = $3,
                        deleted_at = CASE WHEN $3 = 'deleted' THEN now() ELSE NULL END
                  WHERE id = $1 AND status = ANY($2)
                 RETURNING id)
             SELECT 1 FROM moved, pg_notify($4, 'tenant:' || moved.id)",
        )
        .bind(id)
        .bind(&from)
        .bind(to.as_str())
        .bind(crate::routing::ROUTES_CHANNEL)
        .fetch_optional(self.pool())
        .await?;
        if moved.is_some() {
            return Ok(None);
        }
        let status: Option<String> = sqlx::query_scalar("SELECT status FROM tenants WHERE id = $1")
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        Ok(Some(status.ok_or(CatalogError::NotFound)?.try_into()?))
    }

    pub async fn delete_tenant(&self, id: &str) -> Result<()> {
        sqlx::query(
            "WITH gone AS (DELETE FROM tenants WHERE id = $1 RETURNING id)
             SELECT pg_notify($2, 'tenant:' || gone.id) FROM gone",
        )
        .bind(id)
        .bind(crate::routing::ROUTES_CHANNEL)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    pub async fn set_database_version(&self, id: &str, version: i32) -> Result<()> {
        sqlx::query("UPDATE tenant_databases SET version = $2 WHERE id = $1")
            .bind(id)
            .bind(version)
            .execute(self.pool())
            .await?;
        Ok(())
    }
}
