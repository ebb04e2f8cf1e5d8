//! Workspaces: a project's design database on a server, in tenant mode (with a blueprint) or
//! control mode (standalone). The owner role's password is stored sealed.

use chrono::{DateTime, Utc};
use sqlx::FromRow;
use sqlx::types::Json;
use tdb_core::{Engine, WorkspaceMode};

use crate::{Catalog, CatalogError, Result};

#[derive(Debug, Clone, FromRow)]
pub struct Workspace {
    pub id: String,
    pub project_id: String,
    pub name: String,
    #[sqlx(try_from = "String")]
    pub engine: Engine,
    #[sqlx(try_from = "String")]
    pub mode: WorkspaceMode,
    pub server_id: String,
    pub physical_db: String,
    pub owner_role: String,
    pub owner_secret: Vec<u8>,
    pub settings: Json<serde_json::Value>,
    pub created_at: DateTime<Utc>,
    /// The blueprint's current version (tenant mode only).
    pub version: Option<i32>,
    /// Pending DDL count (tenant mode only).
    pub undeployed_changes: Option<i64>,
}

pub struct NewWorkspace<'a> {
    pub id: &'a str,
    pub project_id: &'a str,
    pub name: &'a str,
    pub engine: Engine,
    pub mode: WorkspaceMode,
    pub server_id: &'a str,
    pub physical_db: &'a str,
    pub owner_role: &'a str,
    pub owner_secret: &'a [u8],
    pub settings: &'a serde_json::Value,
    /// Tenant mode: the blueprint's id (its name is the workspace's).
    pub blueprint_id: Option<&'a str>,
}

const SELECT: &str = "SELECT w.*, b.current_version AS version,
        (SELECT count(*) FROM pending_ddl d
          WHERE d.blueprint_id = b.id AND d.deployed_version IS NULL) AS undeployed_changes
   FROM workspaces w LEFT JOIN blueprints b ON b.workspace_id = w.id";

impl Catalog {
    /// Records a workspace (and its blueprint in tenant mode). A taken name is
    /// `Conflict("workspaces_project_name_key")`.
    pub async fn create_workspace(&self, w: &NewWorkspace<'_>) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        sqlx::query(
            "INSERT INTO workspaces (id, project_id, name, engine, mode, server_id, physical_db,
                                     owner_role, owner_secret, settings)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(w.id)
        .bind(w.project_id)
        .bind(w.name)
        .bind(w.engine.as_str())
        .bind(w.mode.as_str())
        .bind(w.server_id)
        .bind(w.physical_db)
        .bind(w.owner_role)
        .bind(w.owner_secret)
        .bind(Json(w.settings))
        .execute(&mut *tx)
        .await?;
        if let Some(blueprint_id) = w.blueprint_id {
            sqlx::query(
                "INSERT INTO blueprints (id, project_id, name, engine, workspace_id)
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(blueprint_id)
            .bind(w.project_id)
            .bind(w.name)
            .bind(w.engine.as_str())
            .bind(w.id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn list_workspaces(&self, project_id: &str) -> Result<Vec<Workspace>> {
        let sql = format!("{SELECT} WHERE w.project_id = $1 ORDER BY w.created_at, w.id");
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(project_id)
            .fetch_all(self.pool())
            .await?)
    }

    /// The project's workspace named `name`.
    /// Whether a workspace or tenant database, in any project, has the server-side name `name`.
    pub async fn physical_db_taken(&self, name: &str) -> Result<bool> {
        Ok(sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM workspaces WHERE physical_db = $1)
                 OR EXISTS (SELECT 1 FROM tenant_databases WHERE physical_db = $1)",
        )
        .bind(name)
        .fetch_one(self.pool())
        .await?)
    }

    pub async fn find_workspace(&self, project_id: &str, name: &str) -> Result<Workspace> {
        let sql = format!("{SELECT} WHERE w.project_id = $1 AND w.name = $2");
        sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(project_id)
            .bind(name)
            .fetch_optional(self.pool())
            .await?
            .ok_or(CatalogError::NotFound)
    }

    /// Deletes the workspace row; its blueprint, versions, pending DDL and workspace-scoped
    /// credentials go with it.
    pub async fn delete_workspace(&self, project_id: &str, id: &str, name: &str) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        sqlx::query(
            "DELETE FROM credentials
              WHERE project_id = $1 AND scope_type = 'workspace' AND scope_value = $2",
        )
        .bind(project_id)
        .bind(name)
        .execute(&mut *tx)
        .await?;
        let done = sqlx::query("DELETE FROM workspaces WHERE project_id = $1 AND id = $2")
            .bind(project_id)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(CatalogError::NotFound);
        }
        // Delivered at commit: proxies forget the route.
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(crate::routing::ROUTES_CHANNEL)
            .bind(format!("workspace:{project_id}:{name}"))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn update_workspace_settings(
        &self,
        id: &str,
        settings: &serde_json::Value,
    ) -> Result<()> {
        sqlx::query(
            "WITH changed AS (UPDATE workspaces SET settings = $2 WHERE id = $1
                              RETURNING project_id, name)
             SELECT pg_notify($3, 'workspace:' || project_id || ':' || name) FROM changed",
        )
        .bind(id)
        .bind(Json(settings))
        .bind(crate::routing::ROUTES_CHANNEL)
        .execute(self.pool())
        .await?;
        Ok(())
    }
}
