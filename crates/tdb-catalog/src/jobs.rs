//! The durable job queue: rows claimed with `FOR UPDATE SKIP LOCKED` under a lease that a
//! heartbeat renews. Each job names its project, so that claiming is fair: a project may hold at
//! most a share of the runners at once, and the project with the fewest running jobs goes first.

use sqlx::FromRow;
use tdb_core::{JobKind, JobStatus};

use crate::{Catalog, Result};

#[derive(Debug, Clone, FromRow)]
pub struct Job {
    pub id: i64,
    #[sqlx(try_from = "String")]
    pub kind: JobKind,
    pub ref_id: String,
    pub attempts: i32,
    pub project_id: Option<String>,
}

impl Catalog {
    /// Claims the next job that is queued or whose lease ran out (its runner died): among the
    /// projects with fewer than `per_project` jobs running, the one with the fewest goes first,
    /// then the oldest job. Jobs of a project being deleted wait (their rows are about to go),
    /// except the deletion itself.
    pub async fn claim_job(
        &self,
        owner: &str,
        lease_seconds: i32,
        per_project: i64,
        node: &str,
    ) -> Result<Option<Job>> {
        Ok(sqlx::query_as(
            "WITH running AS (
                 SELECT project_id, count(*) AS n FROM jobs
                  WHERE status = 'running' AND lease_until >= now() AND project_id IS NOT NULL
                  GROUP BY project_id),
             next AS (
                 SELECT j.id FROM jobs j
                   LEFT JOIN running r ON r.project_id = j.project_id
                  WHERE (j.status = 'queued' OR (j.status = 'running' AND j.lease_until < now()))
                    AND (j.node IS NULL OR j.node = $4)
                    AND (j.project_id IS NULL OR COALESCE(r.n, 0) < $3
                         OR j.kind = 'project_delete')
                    AND (j.kind = 'project_delete' OR NOT EXISTS (
                         SELECT 1 FROM projects p
                          WHERE p.id = j.project_id AND p.status = 'deleting'))
                  ORDER BY COALESCE(r.n, 0), j.id
                  FOR UPDATE OF j SKIP LOCKED LIMIT 1)
             UPDATE jobs SET status = 'running', lease_owner = $1,
                    lease_until = now() + make_interval(secs => $2), attempts = attempts + 1,
                    updated_at = now()
              WHERE id = (SELECT id FROM next)
              RETURNING id, kind, ref_id, attempts, project_id",
        )
        .bind(owner)
        .bind(lease_seconds)
        .bind(per_project)
        .bind(node)
        .fetch_optional(self.pool())
        .await?)
    }

    /// Jobs not done yet, queued and running (for the queue-depth gauge).
    pub async fn open_jobs(&self) -> Result<Vec<(JobKind, JobStatus, i64)>> {
        let rows: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT kind, status, count(*) FROM jobs WHERE status <> 'done' GROUP BY 1, 2",
        )
        .fetch_all(self.pool())
        .await?;
        rows.into_iter()
            .map(|(kind, status, n)| Ok((kind.try_into()?, status.try_into()?, n)))
            .collect()
    }

    /// Extends a lease; false when the job is no longer this owner's.
    pub async fn renew_job(&self, id: i64, owner: &str, lease_seconds: i32) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE jobs SET lease_until = now() + make_interval(secs => $3), updated_at = now()
              WHERE id = $1 AND lease_owner = $2 AND status = 'running'",
        )
        .bind(id)
        .bind(owner)
        .bind(lease_seconds)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Lets a failed job's lease lapse in `seconds`, so a runner claims it again then.
    pub async fn retry_job(&self, id: i64, owner: &str, seconds: i32) -> Result<()> {
        sqlx::query(
            "UPDATE jobs SET lease_until = now() + make_interval(secs => $3), updated_at = now()
              WHERE id = $1 AND lease_owner = $2 AND status = 'running'",
        )
        .bind(id)
        .bind(owner)
        .bind(seconds)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    pub async fn finish_job(&self, id: i64, owner: &str) -> Result<()> {
        sqlx::query(
            "UPDATE jobs SET status = 'done', updated_at = now() WHERE id = $1 AND lease_owner = $2",
        )
        .bind(id)
        .bind(owner)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Whether the job has ended.
    pub async fn job_done(&self, id: i64) -> Result<bool> {
        let status: Option<String> = sqlx::query_scalar("SELECT status FROM jobs WHERE id = $1")
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        Ok(status.is_none_or(|s| s == JobStatus::Done.as_str()))
    }

    /// Other jobs of a project that are not done: `(running with a live lease, queued or
    /// lapsed)`.
    pub async fn other_project_jobs(&self, project_id: &str, except: i64) -> Result<(i64, i64)> {
        Ok(sqlx::query_as(
            "SELECT count(*) FILTER (WHERE status = 'running' AND lease_until >= now()),
                    count(*) FILTER (WHERE NOT (status = 'running' AND lease_until >= now()))
               FROM jobs WHERE project_id = $1 AND status <> 'done' AND id <> $2",
        )
        .bind(project_id)
        .bind(except)
        .fetch_one(self.pool())
        .await?)
    }

    /// Ends the project's jobs that nobody runs now (their work is being deleted with it).
    pub async fn drop_idle_project_jobs(&self, project_id: &str, except: i64) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE jobs SET status = 'done', updated_at = now()
              WHERE project_id = $1 AND status <> 'done' AND id <> $2
                AND NOT (status = 'running' AND lease_until >= now())",
        )
        .bind(project_id)
        .bind(except)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected())
    }
}
