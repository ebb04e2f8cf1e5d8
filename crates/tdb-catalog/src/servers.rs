//! Database servers tdb places databases on: managed (started by tdb) or attached (configured by
//! the operator). The admin password is stored sealed; sealing is the caller's, bound to the id.

use chrono::{DateTime, Utc};
use sqlx::FromRow;
use tdb_core::{Engine, ServerRole, ServerStatus};

use crate::{Catalog, Result};

#[derive(Debug, Clone, FromRow)]
pub struct Server {
    pub id: String,
    pub name: String,
    #[sqlx(try_from = "String")]
    pub engine: Engine,
    #[sqlx(try_from = "String")]
    pub role: ServerRole,
    pub region: String,
    pub host: String,
    pub port: i32,
    pub admin_user: String,
    pub admin_secret: Vec<u8>,
    pub managed: bool,
    #[sqlx(try_from = "String")]
    pub status: ServerStatus,
    pub created_at: DateTime<Utc>,
    /// Connections the server keeps for tenants; `None` until tdb has asked it.
    pub tenant_connection_budget: Option<i32>,
}

impl Server {
    /// The most connections one tenant database may be allowed (`max_connections`): a quarter
    /// of the server's tenant budget, so no tenant can take what the others share. `None`
    /// while the budget is unknown.
    pub fn tenant_connection_ceiling(&self) -> Option<u32> {
        self.tenant_connection_budget
            .map(|b| u32::try_from(b / 4).unwrap_or(0).max(1))
    }
}

/// A server as configuration describes it; `name` is its stable identity across restarts.
pub struct ServerSpec<'a> {
    pub name: &'a str,
    pub engine: Engine,
    pub role: ServerRole,
    pub region: &'a str,
    pub host: &'a str,
    pub port: u16,
    pub admin_user: &'a str,
    pub managed: bool,
}

impl Catalog {
    /// Records or refreshes the server named `spec.name`. `seal` turns the record id into the
    /// sealed admin secret, so the secret is bound to the row it lives in. Returns the id.
    pub async fn upsert_server(
        &self,
        spec: &ServerSpec<'_>,
        new_id: impl FnOnce() -> String,
        seal: impl FnOnce(&str) -> Vec<u8>,
    ) -> Result<String> {
        let existing: Option<String> = sqlx::query_scalar("SELECT id FROM servers WHERE name = $1")
            .bind(spec.name)
            .fetch_optional(self.pool())
            .await?;
        let id = existing.unwrap_or_else(new_id);
        let secret = seal(&id);
        sqlx::query(
            "INSERT INTO servers (id, name, engine, role, region, host, port, admin_user,
                                  admin_secret, managed)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
             ON CONFLICT (id) DO UPDATE SET
                engine = EXCLUDED.engine, role = EXCLUDED.role, region = EXCLUDED.region,
                host = EXCLUDED.host, port = EXCLUDED.port, admin_user = EXCLUDED.admin_user,
                admin_secret = EXCLUDED.admin_secret, managed = EXCLUDED.managed,
                updated_at = now()",
        )
        .bind(&id)
        .bind(spec.name)
        .bind(spec.engine.as_str())
        .bind(spec.role.as_str())
        .bind(spec.region)
        .bind(spec.host)
        .bind(i32::from(spec.port))
        .bind(spec.admin_user)
        .bind(secret)
        .bind(spec.managed)
        .execute(self.pool())
        .await?;
        Ok(id)
    }

    /// Records how many connections the server keeps for tenants.
    pub async fn set_tenant_connection_budget(&self, id: &str, budget: u32) -> Result<()> {
        sqlx::query("UPDATE servers SET tenant_connection_budget = $2 WHERE id = $1")
            .bind(id)
            .bind(i32::try_from(budget).unwrap_or(i32::MAX))
            .execute(self.pool())
            .await?;
        Ok(())
    }

    pub async fn list_servers(&self) -> Result<Vec<Server>> {
        Ok(
            sqlx::query_as("SELECT * FROM servers ORDER BY created_at, id")
                .fetch_all(self.pool())
                .await?,
        )
    }
}

impl Catalog {
    pub async fn find_server(&self, id: &str) -> Result<Server> {
        sqlx::query_as("SELECT * FROM servers WHERE id = $1")
            .bind(id)
            .fetch_optional(self.pool())
            .await?
            .ok_or(crate::CatalogError::NotFound)
    }

    /// Placement: the active shared server of `engine` in `region` that holds the fewest
    /// databases; `None` when there is no such server.
    pub async fn place_shared(&self, engine: Engine, region: &str) -> Result<Option<Server>> {
        Ok(sqlx::query_as(
            "SELECT s.* FROM servers s
              WHERE s.engine = $1 AND s.region = $2 AND s.role = 'shared' AND s.status = 'active'
              ORDER BY (SELECT count(*) FROM workspaces w WHERE w.server_id = s.id)
                     + (SELECT count(*) FROM tenant_databases d WHERE d.server_id = s.id),
                       s.created_at
              LIMIT 1",
        )
        .bind(engine.as_str())
        .bind(region)
        .fetch_optional(self.pool())
        .await?)
    }
}
