//! Database servers tdb places databases on: managed (started by tdb) or attached (configured by
//! the operator). The admin password is stored sealed; sealing is the caller's, bound to the id.

use chrono::{DateTime, Utc};
use sqlx::FromRow;
use tdb_core::{Engine, ServerRole, ServerStatus};

use crate::{Catalog, Result};

/// How many databases a server holds: tenant databases, workspaces and provisioned databases.
const HELD: &str = "(SELECT count(*) FROM tenant_databases d WHERE d.server_id = s.id)
                  + (SELECT count(*) FROM workspaces w WHERE w.server_id = s.id)
                  + (SELECT count(*) FROM provisioned_databases p
                     WHERE p.server_id = s.id AND p.status <> 'deleted')";

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
    /// Databases the server takes at most; `None`: no limit.
    pub max_databases: Option<i32>,
    /// The backend that made the server (dedicated servers), e.g. `local`.
    pub provisioner: Option<String>,
}

impl Server {
    /// The most connections one tenant database may be allowed (`max_connections`): on a
    /// shared server a quarter of its tenant budget, so no tenant can take what the others
    /// share; on a dedicated server all of it. `None` while the budget is unknown.
    pub fn tenant_connection_ceiling(&self) -> Option<u32> {
        let share = match self.role {
            ServerRole::Shared => 4,
            ServerRole::Dedicated => 1,
        };
        self.tenant_connection_budget
            .map(|b| u32::try_from(b / share).unwrap_or(0).max(1))
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
    pub max_databases: Option<u32>,
}

/// A dedicated server as first recorded, before its provisioner has made it: `provisioning`, on
/// no port yet. `admin_secret` is sealed for `id` (a placeholder until the server exists).
pub struct NewDedicatedServer<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub engine: Engine,
    pub region: &'a str,
    pub admin_user: &'a str,
    pub admin_secret: &'a [u8],
    pub provisioner: &'a str,
}

impl NewDedicatedServer<'_> {
    pub(crate) async fn insert(&self, tx: &mut sqlx::PgConnection) -> Result<()> {
        sqlx::query(
            "INSERT INTO servers (id, name, engine, role, region, host, port, admin_user,
                                  admin_secret, managed, status, provisioner)
             VALUES ($1, $2, $3, 'dedicated', $4, '', 0, $5, $6, true, 'provisioning', $7)",
        )
        .bind(self.id)
        .bind(self.name)
        .bind(self.engine.as_str())
        .bind(self.region)
        .bind(self.admin_user)
        .bind(self.admin_secret)
        .bind(self.provisioner)
        .execute(tx)
        .await?;
        Ok(())
    }
}

/// A server with what it holds, for operators.
#[derive(Debug, Clone, FromRow)]
pub struct ServerUsage {
    #[sqlx(flatten)]
    pub server: Server,
    /// Tenant databases, workspaces and provisioned databases on it.
    pub databases: i64,
    /// Tenants with a database on it.
    pub tenants: i64,
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
                                  admin_secret, managed, max_databases)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
             ON CONFLICT (id) DO UPDATE SET
                engine = EXCLUDED.engine, role = EXCLUDED.role, region = EXCLUDED.region,
                host = EXCLUDED.host, port = EXCLUDED.port, admin_user = EXCLUDED.admin_user,
                admin_secret = EXCLUDED.admin_secret, managed = EXCLUDED.managed,
                max_databases = EXCLUDED.max_databases, updated_at = now()",
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
        .bind(
            spec.max_databases
                .map(|n| i32::try_from(n).unwrap_or(i32::MAX)),
        )
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
    /// databases and has room for one more; `None` when there is no such server (every one is
    /// draining, offline or full, or the region has none).
    pub async fn place_shared(&self, engine: Engine, region: &str) -> Result<Option<Server>> {
        // Only constants go into the text.
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT s.* FROM servers s
              WHERE s.engine = $1 AND s.region = $2 AND s.role = 'shared' AND s.status = 'active'
                AND (s.max_databases IS NULL OR {HELD} < s.max_databases)
              ORDER BY {HELD}, s.created_at, s.id
              LIMIT 1"
        )))
        .bind(engine.as_str())
        .bind(region)
        .fetch_optional(self.pool())
        .await?)
    }

    /// Every server with how many databases and tenants it holds.
    pub async fn server_usage(&self) -> Result<Vec<ServerUsage>> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT s.*, {HELD} AS databases,
                    (SELECT count(DISTINCT d.tenant_id) FROM tenant_databases d
                      WHERE d.server_id = s.id) AS tenants
               FROM servers s
              ORDER BY s.region, s.role DESC, s.name"
        )))
        .fetch_all(self.pool())
        .await?)
    }

    pub async fn find_server_by_name(&self, name: &str) -> Result<Option<Server>> {
        Ok(sqlx::query_as("SELECT * FROM servers WHERE name = $1")
            .bind(name)
            .fetch_optional(self.pool())
            .await?)
    }

    /// Records where a dedicated server its provisioner has running listens, with its sealed
    /// admin password, and makes it `active`.
    pub async fn server_started(
        &self,
        id: &str,
        host: &str,
        port: u16,
        (admin_user, admin_secret): (&str, &[u8]),
    ) -> Result<()> {
        sqlx::query(
            "UPDATE servers SET host = $2, port = $3, admin_user = $4, admin_secret = $5,
                    status = 'active', updated_at = now()
              WHERE id = $1",
        )
        .bind(id)
        .bind(host)
        .bind(i32::from(port))
        .bind(admin_user)
        .bind(admin_secret)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    pub async fn set_server_status(&self, id: &str, status: ServerStatus) -> Result<()> {
        sqlx::query("UPDATE servers SET status = $2, updated_at = now() WHERE id = $1")
            .bind(id)
            .bind(status.as_str())
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Forgets a server that holds nothing any more (a removed dedicated server).
    pub async fn delete_server(&self, id: &str) -> Result<()> {
        sqlx::query(
            "DELETE FROM servers s WHERE s.id = $1
                AND NOT EXISTS (SELECT 1 FROM tenant_databases d WHERE d.server_id = s.id)",
        )
        .bind(id)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The dedicated servers `provisioner` made that should be running: every one neither
    /// stopped nor its tenant's in the trash (a trash cut off before its server was stopped);
    /// a `provisioning` one is its creation job's to start.
    pub async fn servers_to_run(&self, provisioner: &str) -> Result<Vec<Server>> {
        Ok(sqlx::query_as(
            "SELECT s.* FROM servers s
              WHERE s.provisioner = $1 AND s.status IN ('active', 'draining')
                AND NOT EXISTS (SELECT 1 FROM tenant_databases d JOIN tenants t ON t.id = d.tenant_id
                                 WHERE d.server_id = s.id AND t.status = 'deleted')
              ORDER BY s.created_at, s.id",
        )
        .bind(provisioner)
        .fetch_all(self.pool())
        .await?)
    }
}
