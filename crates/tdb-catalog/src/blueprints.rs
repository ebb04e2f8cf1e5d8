//! Blueprints: the versioned schema of a tenant-mode workspace. DDL that ran in the workspace
//! waits in `pending_ddl` until a deployment folds it into a new version.

use chrono::{DateTime, Utc};
use sqlx::FromRow;

use crate::{Catalog, CatalogError, Result};
use tdb_core::Engine;

#[derive(Debug, Clone, FromRow)]
pub struct Blueprint {
    pub id: String,
    pub project_id: String,
    pub name: String,
    #[sqlx(try_from = "String")]
    pub engine: Engine,
    pub workspace_id: String,
    pub current_version: i32,
    pub created_at: DateTime<Utc>,
    pub tenant_count: i64,
}

#[derive(Debug, Clone, FromRow)]
pub struct PendingDdl {
    pub id: i64,
    pub statement: String,
    pub tag: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, FromRow)]
pub struct BlueprintVersion {
    pub version: i32,
    pub statements: Vec<String>,
    pub deployed_at: DateTime<Utc>,
}

/// A statement to queue: its text as it ran and its command tag (`CREATE TABLE`).
pub struct NewDdl<'a> {
    pub statement: &'a str,
    pub tag: &'a str,
}

const SELECT: &str = "SELECT b.*,
        (SELECT count(*) FROM tenant_databases d JOIN tenants t ON t.id = d.tenant_id
          WHERE d.blueprint_id = b.id AND t.status <> 'deleted') AS tenant_count
   FROM blueprints b";

impl Catalog {
    pub async fn list_blueprints(&self, project_id: &str) -> Result<Vec<Blueprint>> {
        let sql = format!("{SELECT} WHERE b.project_id = $1 ORDER BY b.created_at, b.id");
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(project_id)
            .fetch_all(self.pool())
            .await?)
    }

    pub async fn find_blueprint(&self, project_id: &str, name: &str) -> Result<Blueprint> {
        let sql = format!("{SELECT} WHERE b.project_id = $1 AND b.name = $2");
        sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(project_id)
            .bind(name)
            .fetch_optional(self.pool())
            .await?
            .ok_or(CatalogError::NotFound)
    }

    /// Appends statements, in order, to the blueprint's pending changes; returns their ids.
    pub async fn queue_ddl(&self, blueprint_id: &str, ddl: &[NewDdl<'_>]) -> Result<Vec<i64>> {
        let mut tx = self.pool().begin().await?;
        let mut ids = Vec::with_capacity(ddl.len());
        for d in ddl {
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO pending_ddl (blueprint_id, statement, tag) VALUES ($1, $2, $3)
                 RETURNING id",
            )
            .bind(blueprint_id)
            .bind(d.statement)
            .bind(d.tag)
            .fetch_one(&mut *tx)
            .await?;
            ids.push(id);
        }
        tx.commit().await?;
        Ok(ids)
    }

    /// Pending (undeployed) changes, oldest first.
    pub async fn pending_ddl(&self, blueprint_id: &str) -> Result<Vec<PendingDdl>> {
        Ok(sqlx::query_as(
            "SELECT id, statement, tag, created_at FROM pending_ddl
              WHERE blueprint_id = $1 AND deployed_version IS NULL ORDER BY id",
        )
        .bind(blueprint_id)
        .fetch_all(self.pool())
        .await?)
    }

    /// One pending change; deployed or unknown ids are absent.
    pub async fn find_pending_ddl(&self, blueprint_id: &str, id: i64) -> Result<PendingDdl> {
        sqlx::query_as(
            "SELECT id, statement, tag, created_at FROM pending_ddl
              WHERE blueprint_id = $1 AND id = $2 AND deployed_version IS NULL",
        )
        .bind(blueprint_id)
        .bind(id)
        .fetch_optional(self.pool())
        .await?
        .ok_or(CatalogError::NotFound)
    }

    /// Removes a pending change from the queue.
    pub async fn remove_pending_ddl(&self, blueprint_id: &str, id: i64) -> Result<()> {
        let done = sqlx::query(
            "DELETE FROM pending_ddl
              WHERE blueprint_id = $1 AND id = $2 AND deployed_version IS NULL",
        )
        .bind(blueprint_id)
        .bind(id)
        .execute(self.pool())
        .await?;
        if done.rows_affected() == 0 {
            return Err(CatalogError::NotFound);
        }
        Ok(())
    }

    pub async fn blueprint_versions(&self, blueprint_id: &str) -> Result<Vec<BlueprintVersion>> {
        Ok(sqlx::query_as(
            "SELECT version, statements, deployed_at FROM blueprint_versions
              WHERE blueprint_id = $1 ORDER BY version DESC",
        )
        .bind(blueprint_id)
        .fetch_all(self.pool())
        .await?)
    }

    /// Every statement of every version up to `version`, in order: the schema a tenant at that
    /// version has.
    pub async fn blueprint_schema(&self, blueprint_id: &str, version: i32) -> Result<Vec<String>> {
        let rows: Vec<(Vec<String>,)> = sqlx::query_as(
            "SELECT statements FROM blueprint_versions
              WHERE blueprint_id = $1 AND version <= $2 ORDER BY version",
        )
        .bind(blueprint_id)
        .bind(version)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().flat_map(|(s,)| s).collect())
    }

    /// The workspace settings a version was made with (for Redis, the rules for keys its
    /// tenants follow); `None` for a version that does not exist (version 0: none deployed).
    pub async fn version_settings(
        &self,
        blueprint_id: &str,
        version: i32,
    ) -> Result<Option<serde_json::Value>> {
        let row: Option<(sqlx::types::Json<serde_json::Value>,)> = sqlx::query_as(
            "SELECT settings FROM blueprint_versions WHERE blueprint_id = $1 AND version = $2",
        )
        .bind(blueprint_id)
        .bind(version)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(|(settings,)| settings.0))
    }
}
