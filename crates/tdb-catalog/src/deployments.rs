//! Deployments: a blueprint version rolled out to tenant databases, with one result row per
//! database, and the durable job that does the work.

use chrono::{DateTime, Utc};
use sqlx::FromRow;
use tdb_core::{DeploymentStatus, TargetStatus};

use crate::{Catalog, CatalogError, Result};

#[derive(Debug, Clone, FromRow)]
pub struct Deployment {
    pub id: String,
    pub project_id: String,
    pub blueprint_id: String,
    pub blueprint_name: String,
    pub version: i32,
    pub dry_run_statements: Option<Vec<String>>,
    #[sqlx(try_from = "String")]
    pub status: DeploymentStatus,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub tenants_total: i64,
    pub tenants_completed: i64,
    pub tenants_failed: i64,
}

#[derive(Debug, Clone, FromRow)]
pub struct DeploymentResult {
    pub deployment_id: String,
    pub tenant_database_id: String,
    pub tenant_name: String,
    #[sqlx(try_from = "String")]
    pub status: TargetStatus,
    pub duration_ms: Option<i32>,
    pub error: Option<String>,
    pub updated_at: DateTime<Utc>,
}

/// What `POST /deployments` records in one transaction.
pub struct NewDeployment<'a> {
    pub id: &'a str,
    pub project_id: &'a str,
    pub blueprint_id: &'a str,
    pub version: i32,
    /// A new version to create from the pending DDL (real deployments of new changes).
    pub new_version: Option<NewVersion<'a>>,
    pub dry_run_statements: Option<&'a [String]>,
    /// `(tenant database id, tenant name)` to deploy to.
    pub targets: &'a [(String, String)],
}

pub struct NewVersion<'a> {
    pub statements: &'a [String],
    pub pending_ids: &'a [i64],
    pub settings: &'a serde_json::Value,
}

/// One database's outcome in a deployment that ran outside the job runner.
pub struct RanResult<'a> {
    pub tenant_database_id: &'a str,
    pub tenant_name: &'a str,
    /// `completed` or `failed`.
    pub status: TargetStatus,
    pub duration_ms: i32,
    pub error: Option<&'a str>,
}

/// A deployment that already ran (a tenant restored from the trash, brought to its blueprint's
/// version), recorded with its results and no job.
pub struct RanDeployment<'a> {
    pub id: &'a str,
    pub project_id: &'a str,
    pub blueprint_id: &'a str,
    pub version: i32,
    pub results: &'a [RanResult<'a>],
}

/// The newest failed result of a database in a real (not dry-run) deployment.
#[derive(Debug, Clone, FromRow)]
pub struct LastFailure {
    pub tenant_database_id: String,
    pub version: i32,
    pub error: Option<String>,
}

const SELECT: &str = "SELECT d.*, b.name AS blueprint_name,
        (SELECT count(*) FROM deployment_results r WHERE r.deployment_id = d.id) AS tenants_total,
        (SELECT count(*) FROM deployment_results r
          WHERE r.deployment_id = d.id AND r.status IN ('completed', 'skipped')) AS tenants_completed,
        (SELECT count(*) FROM deployment_results r
          WHERE r.deployment_id = d.id AND r.status = 'failed') AS tenants_failed
   FROM deployments d JOIN blueprints b ON b.id = d.blueprint_id";

impl Catalog {
    /// The server each target database of a deployment is on, by tenant database id.
    pub async fn deployment_servers(
        &self,
        deployment_id: &str,
    ) -> Result<std::collections::HashMap<String, String>> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT r.tenant_database_id, d.server_id FROM deployment_results r
               JOIN tenant_databases d ON d.id = r.tenant_database_id
              WHERE r.deployment_id = $1",
        )
        .bind(deployment_id)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().collect())
    }

    /// Records a deployment, its result rows and its job; with `new_version`, also the new
    /// blueprint version, marking the pending DDL deployed. All or nothing.
    pub async fn create_deployment(&self, d: &NewDeployment<'_>) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        if let Some(v) = &d.new_version {
            sqlx::query(
                "INSERT INTO blueprint_versions (blueprint_id, version, statements, settings)
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(d.blueprint_id)
            .bind(d.version)
            .bind(v.statements)
            .bind(sqlx::types::Json(v.settings))
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE pending_ddl SET deployed_version = $2
                  WHERE blueprint_id = $1 AND id = ANY($3) AND deployed_version IS NULL",
            )
            .bind(d.blueprint_id)
            .bind(d.version)
            .bind(v.pending_ids)
            .execute(&mut *tx)
            .await?;
            sqlx::query("UPDATE blueprints SET current_version = $2 WHERE id = $1")
                .bind(d.blueprint_id)
                .bind(d.version)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(
            "INSERT INTO deployments (id, project_id, blueprint_id, version, dry_run_statements, status)
             VALUES ($1, $2, $3, $4, $5, 'pending')",
        )
        .bind(d.id)
        .bind(d.project_id)
        .bind(d.blueprint_id)
        .bind(d.version)
        .bind(d.dry_run_statements)
        .execute(&mut *tx)
        .await?;
        for (db_id, tenant) in d.targets {
            sqlx::query(
                "INSERT INTO deployment_results (deployment_id, tenant_database_id, tenant_name, status)
                 VALUES ($1, $2, $3, 'pending')",
            )
            .bind(d.id)
            .bind(db_id)
            .bind(tenant)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query("INSERT INTO jobs (kind, ref_id, project_id) VALUES ('deployment', $1, $2)")
            .bind(d.id)
            .bind(d.project_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Records a deployment that ran outside the job runner, finished, with its results.
    pub async fn record_ran_deployment(&self, d: &RanDeployment<'_>) -> Result<()> {
        let failed = d.results.iter().any(|r| r.status == TargetStatus::Failed);
        let status = if failed {
            DeploymentStatus::CompletedWithErrors
        } else {
            DeploymentStatus::Completed
        };
        let mut tx = self.pool().begin().await?;
        sqlx::query(
            "INSERT INTO deployments (id, project_id, blueprint_id, version, status, started_at,
                                      finished_at)
             VALUES ($1, $2, $3, $4, $5, now(), now())",
        )
        .bind(d.id)
        .bind(d.project_id)
        .bind(d.blueprint_id)
        .bind(d.version)
        .bind(status.as_str())
        .execute(&mut *tx)
        .await?;
        for r in d.results {
            sqlx::query(
                "INSERT INTO deployment_results (deployment_id, tenant_database_id, tenant_name,
                                                 status, duration_ms, error)
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(d.id)
            .bind(r.tenant_database_id)
            .bind(r.tenant_name)
            .bind(r.status.as_str())
            .bind(r.duration_ms)
            .bind(r.error)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// For each of `database_ids`, its newest failed result in a real deployment, if any.
    pub async fn last_failures(&self, database_ids: &[String]) -> Result<Vec<LastFailure>> {
        Ok(sqlx::query_as(
            "SELECT DISTINCT ON (r.tenant_database_id) r.tenant_database_id, d.version, r.error
               FROM deployment_results r JOIN deployments d ON d.id = r.deployment_id
              WHERE r.tenant_database_id = ANY($1) AND r.status = 'failed'
                AND d.dry_run_statements IS NULL
              ORDER BY r.tenant_database_id, d.created_at DESC, r.updated_at DESC",
        )
        .bind(database_ids)
        .fetch_all(self.pool())
        .await?)
    }

    pub async fn list_deployments(&self, project_id: &str) -> Result<Vec<Deployment>> {
        let sql = format!("{SELECT} WHERE d.project_id = $1 ORDER BY d.created_at DESC, d.id");
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(project_id)
            .fetch_all(self.pool())
            .await?)
    }

    pub async fn find_deployment(&self, id: &str) -> Result<Deployment> {
        let sql = format!("{SELECT} WHERE d.id = $1");
        sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(self.pool())
            .await?
            .ok_or(CatalogError::NotFound)
    }

    pub async fn deployment_results(&self, id: &str) -> Result<Vec<DeploymentResult>> {
        Ok(sqlx::query_as(
            "SELECT * FROM deployment_results WHERE deployment_id = $1 ORDER BY tenant_name",
        )
        .bind(id)
        .fetch_all(self.pool())
        .await?)
    }

    /// Results for one tenant's databases, newest deployment first.
    pub async fn tenant_deployment_history(
        &self,
        tenant_id: &str,
        limit: i64,
    ) -> Result<Vec<(Deployment, DeploymentResult)>> {
        let results: Vec<DeploymentResult> = sqlx::query_as(
            "SELECT r.* FROM deployment_results r
               JOIN tenant_databases t ON t.id = r.tenant_database_id
               JOIN deployments d ON d.id = r.deployment_id
              WHERE t.tenant_id = $1 ORDER BY d.created_at DESC LIMIT $2",
        )
        .bind(tenant_id)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        let mut out = Vec::with_capacity(results.len());
        for r in results {
            out.push((self.find_deployment(&r.deployment_id).await?, r));
        }
        Ok(out)
    }

    pub async fn set_deployment_status(
        &self,
        id: &str,
        status: DeploymentStatus,
        error: Option<&str>,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE deployments SET status = $2, error = $3,
                    started_at = COALESCE(started_at, now()),
                    finished_at = CASE WHEN $2 IN ('completed', 'completed_with_errors', 'failed')
                                       THEN now() END
              WHERE id = $1",
        )
        .bind(id)
        .bind(status.as_str())
        .bind(error)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Ends a deployment as failed with `error`, and every tenant it had not finished with it.
    pub async fn fail_deployment(&self, id: &str, error: &str) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        sqlx::query(
            "UPDATE deployment_results SET status = 'failed', error = $2, updated_at = now()
              WHERE deployment_id = $1 AND status IN ('pending', 'in_progress')",
        )
        .bind(id)
        .bind(error)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE deployments SET status = 'failed', error = $2,
                    started_at = COALESCE(started_at, now()), finished_at = now()
              WHERE id = $1",
        )
        .bind(id)
        .bind(error)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn set_result(
        &self,
        deployment_id: &str,
        database_id: &str,
        status: TargetStatus,
        duration_ms: Option<i32>,
        error: Option<&str>,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE deployment_results SET status = $3, duration_ms = $4, error = $5, updated_at = now()
              WHERE deployment_id = $1 AND tenant_database_id = $2",
        )
        .bind(deployment_id)
        .bind(database_id)
        .bind(status.as_str())
        .bind(duration_ms)
        .bind(error)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The statements that take a database from `from` to `to` (exclusive, inclusive).
    pub async fn statements_between(
        &self,
        blueprint_id: &str,
        from: i32,
        to: i32,
    ) -> Result<Vec<String>> {
        let rows: Vec<(Vec<String>,)> = sqlx::query_as(
            "SELECT statements FROM blueprint_versions
              WHERE blueprint_id = $1 AND version > $2 AND version <= $3 ORDER BY version",
        )
        .bind(blueprint_id)
        .bind(from)
        .bind(to)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().flat_map(|(s,)| s).collect())
    }
}
