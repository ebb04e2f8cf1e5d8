//! Projects: the boundary every other resource lives in. Each holds its proxy password as a
//! SCRAM-SHA-256 verifier only.

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgConnection};
use tdb_core::ProjectStatus;

use crate::api_keys::{self, NewApiKey};
use crate::{Catalog, CatalogError, Result};

#[derive(Debug, Clone, FromRow)]
pub struct Project {
    pub id: String,
    pub account_id: String,
    pub name: String,
    /// `active`, or `deleting` while its deletion job runs.
    #[sqlx(try_from = "String")]
    pub status: ProjectStatus,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, FromRow)]
pub struct ProjectSummary {
    pub id: String,
    pub name: String,
    #[sqlx(try_from = "String")]
    pub status: ProjectStatus,
    pub api_key_count: i64,
    pub created_at: DateTime<Utc>,
}

pub struct NewProject<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub proxy_verifier: &'a str,
    /// See `tdb_core::secrets::mysql_verifier`.
    pub proxy_mysql_verifier: &'a str,
}

pub(crate) async fn insert(
    conn: &mut PgConnection,
    account_id: &str,
    project: &NewProject<'_>,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO projects (id, account_id, name, proxy_verifier, proxy_mysql_verifier)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(project.id)
    .bind(account_id)
    .bind(project.name)
    .bind(project.proxy_verifier)
    .bind(project.proxy_mysql_verifier)
    .execute(conn)
    .await?;
    Ok(())
}

impl Catalog {
    /// Creates a project of `account_id` with its first key. A taken name is
    /// `Conflict("projects_account_name_key")`.
    pub async fn create_project(
        &self,
        account_id: &str,
        project: &NewProject<'_>,
        key: &NewApiKey<'_>,
    ) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        insert(&mut tx, account_id, project).await?;
        api_keys::insert(&mut tx, project.id, key).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The account's projects, oldest first, with their count of live keys.
    pub async fn list_projects(&self, account_id: &str) -> Result<Vec<ProjectSummary>> {
        Ok(sqlx::query_as(
            "SELECT p.id, p.name, p.status, p.created_at,
                    (SELECT count(*) FROM api_keys k
                      WHERE k.project_id = p.id AND k.revoked_at IS NULL
                        AND (k.expires_at IS NULL OR k.expires_at > now())) AS api_key_count
               FROM projects p
              WHERE p.account_id = $1
              ORDER BY p.created_at, p.id",
        )
        .bind(account_id)
        .fetch_all(self.pool())
        .await?)
    }

    /// A project of `account_id` named by id or by name; another account's project is absent.
    pub async fn find_project(&self, account_id: &str, id_or_name: &str) -> Result<Project> {
        sqlx::query_as(
            "SELECT id, account_id, name, status, created_at FROM projects
              WHERE account_id = $1 AND (id = $2 OR name = $2)
              ORDER BY (id = $2) DESC LIMIT 1",
        )
        .bind(account_id)
        .bind(id_or_name)
        .fetch_optional(self.pool())
        .await?
        .ok_or(CatalogError::NotFound)
    }

    /// Starts deleting a project, in one transaction: it is marked `deleting`, its API keys and
    /// proxy logins stop working, its tenants leave service (the proxies end their sessions), and
    /// a `project_delete` job is queued to remove everything it has. Returns the job's id (the
    /// existing one when the deletion had already started); `NotFound` for another account's
    /// project or none.
    pub async fn begin_project_deletion(&self, account_id: &str, project_id: &str) -> Result<i64> {
        let mut tx = self.pool().begin().await?;
        let status: Option<String> = sqlx::query_scalar(
            "SELECT status FROM projects WHERE account_id = $1 AND id = $2 FOR UPDATE",
        )
        .bind(account_id)
        .bind(project_id)
        .fetch_optional(&mut *tx)
        .await?;
        match status.as_deref() {
            None => return Err(CatalogError::NotFound),
            Some("deleting") => {
                let job: Option<i64> = sqlx::query_scalar(
                    "SELECT id FROM jobs WHERE kind = 'project_delete' AND ref_id = $1
                      ORDER BY id DESC LIMIT 1",
                )
                .bind(project_id)
                .fetch_optional(&mut *tx)
                .await?;
                if let Some(job) = job {
                    return Ok(job);
                }
            }
            Some(_) => {}
        }
        for sql in [
            "UPDATE projects SET status = 'deleting' WHERE id = $1",
            "UPDATE api_keys SET revoked_at = now() WHERE project_id = $1 AND revoked_at IS NULL",
            "UPDATE credentials SET revoked_at = now()
              WHERE project_id = $1 AND revoked_at IS NULL",
        ] {
            sqlx::query(sql).bind(project_id).execute(&mut *tx).await?;
        }
        // Tenants, workspaces and provisioned databases leave the proxies' routes at commit.
        sqlx::query(
            "WITH gone AS (
                 UPDATE tenants SET status = 'deleted', deleted_at = COALESCE(deleted_at, now())
                  WHERE project_id = $1 RETURNING id)
             SELECT pg_notify($2, 'tenant:' || id) FROM gone",
        )
        .bind(project_id)
        .bind(crate::routing::ROUTES_CHANNEL)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "SELECT pg_notify($2, 'workspace:' || $1 || ':' || name) FROM workspaces
              WHERE project_id = $1
             UNION ALL
             SELECT pg_notify($2, 'provision:' || $1 || ':' || schema_name)
               FROM provisioned_databases WHERE project_id = $1",
        )
        .bind(project_id)
        .bind(crate::routing::ROUTES_CHANNEL)
        .execute(&mut *tx)
        .await?;
        let job: i64 = sqlx::query_scalar(
            "INSERT INTO jobs (kind, ref_id, project_id) VALUES ('project_delete', $1, $1)
             RETURNING id",
        )
        .bind(project_id)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(job)
    }

    /// The last step of a project's deletion, once its servers and store hold nothing of it:
    /// the project's row and, by cascade, every record under it; its query log too.
    pub async fn finish_project_deletion(&self, project_id: &str) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        sqlx::query("DELETE FROM projects WHERE id = $1 AND status = 'deleting'")
            .bind(project_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM query_log_chunk WHERE project_id = $1")
            .bind(project_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Whether the project exists and is being deleted.
    pub async fn project_deleting(&self, project_id: &str) -> Result<bool> {
        let status: Option<String> =
            sqlx::query_scalar("SELECT status FROM projects WHERE id = $1")
                .bind(project_id)
                .fetch_optional(self.pool())
                .await?;
        Ok(status.as_deref() == Some("deleting"))
    }

    pub async fn set_proxy_verifier(
        &self,
        account_id: &str,
        project_id: &str,
        verifier: &str,
        mysql_verifier: &str,
    ) -> Result<()> {
        let done = sqlx::query(
            "UPDATE projects SET proxy_verifier = $3, proxy_mysql_verifier = $4
              WHERE account_id = $1 AND id = $2",
        )
        .bind(account_id)
        .bind(project_id)
        .bind(verifier)
        .bind(mysql_verifier)
        .execute(self.pool())
        .await?;
        if done.rows_affected() == 0 {
            return Err(CatalogError::NotFound);
        }
        Ok(())
    }

    /// The stored proxy verifier (for the proxy's SCRAM exchange and for tests).
    pub async fn proxy_verifier(&self, project_id: &str) -> Result<String> {
        sqlx::query_scalar("SELECT proxy_verifier FROM projects WHERE id = $1")
            .bind(project_id)
            .fetch_optional(self.pool())
            .await?
            .ok_or(CatalogError::NotFound)
    }
}
