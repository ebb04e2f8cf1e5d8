//! Backups, rollbacks and the projects' backup policies. A backup row exists before its object:
//! it is `pending` while the job streams the dump, `completed` with its size and checksum once
//! the store has every byte, `failed` with the reason otherwise.

use chrono::{DateTime, Utc};
use sqlx::FromRow;
use sqlx::types::Json;
use tdb_core::{BackupKind, BackupStatus, Engine, RollbackStep, TenantStatus};

use crate::{Catalog, CatalogError, Result};

#[derive(Debug, Clone, FromRow)]
pub struct Backup {
    pub id: String,
    pub project_id: String,
    pub tenant_id: String,
    pub tenant_database_id: String,
    pub blueprint: String,
    pub database_type: String,
    #[sqlx(try_from = "String")]
    pub kind: BackupKind,
    pub taken_at: String,
    pub storage_path: String,
    #[sqlx(try_from = "String")]
    pub status: BackupStatus,
    pub size_bytes: Option<i64>,
    pub sha256: Option<String>,
    pub raw_bytes: Option<i64>,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

pub struct NewBackup<'a> {
    pub id: &'a str,
    pub project_id: &'a str,
    pub tenant_id: &'a str,
    pub tenant_database_id: &'a str,
    pub blueprint: &'a str,
    pub database_type: Engine,
    pub kind: BackupKind,
    pub taken_at: &'a str,
    pub storage_path: &'a str,
}

#[derive(Debug, Clone, FromRow)]
pub struct Rollback {
    pub id: String,
    pub tenant_id: String,
    pub tenant_database_id: String,
    pub backup_id: String,
    pub storage_path: String,
    pub safety_backup_id: Option<String>,
    #[sqlx(try_from = "String")]
    pub step: RollbackStep,
    pub new_db: Option<String>,
    pub old_db: Option<String>,
    pub bytes_total: i64,
    pub bytes_done: i64,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// A project's backup policy as stored: every field optional, the server's defaults fill in.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StoredPolicy {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule_enabled: Option<bool>,
    /// `HH:MM` or `HH:MM:SS`, UTC.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub daily_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_count: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_days: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hourly_limit: Option<i64>,
}

/// One project's policy with its schedule bookkeeping.
#[derive(Debug, Clone)]
pub struct ProjectPolicy {
    pub project_id: String,
    pub policy: StoredPolicy,
    pub created_at: DateTime<Utc>,
    pub last_slot: Option<DateTime<Utc>>,
}

/// The tenant databases a scheduled backup covers: tenants that are not in the trash.
#[derive(Debug, Clone, FromRow)]
pub struct BackupTarget {
    pub tenant_id: String,
    pub tenant_name: String,
    pub tenant_database_id: String,
    pub blueprint: String,
    #[sqlx(try_from = "String")]
    pub engine: Engine,
}

#[derive(FromRow)]
struct PolicyRow {
    id: String,
    backup_policy: Json<StoredPolicy>,
    created_at: DateTime<Utc>,
    backup_last_slot: Option<DateTime<Utc>>,
}

const BACKUP_COLUMNS: &str = "id, project_id, tenant_id, tenant_database_id, blueprint, \
     database_type, kind, taken_at, storage_path, status, size_bytes, sha256, raw_bytes, error, \
     created_at, finished_at";

impl Catalog {
    /// Records backups (status `pending`) and queues one job each, in one transaction. A path
    /// already taken is `Conflict("backups_storage_path_key")`.
    pub async fn create_backups(&self, backups: &[NewBackup<'_>]) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        for b in backups {
            sqlx::query(
                "INSERT INTO backups (id, project_id, tenant_id, tenant_database_id, blueprint,
                                      database_type, kind, taken_at, storage_path)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(b.id)
            .bind(b.project_id)
            .bind(b.tenant_id)
            .bind(b.tenant_database_id)
            .bind(b.blueprint)
            .bind(b.database_type.as_str())
            .bind(b.kind.as_str())
            .bind(b.taken_at)
            .bind(b.storage_path)
            .execute(&mut *tx)
            .await?;
            if b.kind != BackupKind::Safety {
                sqlx::query(
                    "INSERT INTO jobs (kind, ref_id, project_id) VALUES ('backup', $1, $2)",
                )
                .bind(b.id)
                .bind(b.project_id)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn find_backup(&self, id: &str) -> Result<Backup> {
        let sql = format!("SELECT {BACKUP_COLUMNS} FROM backups WHERE id = $1");
        sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(self.pool())
            .await?
            .ok_or(CatalogError::NotFound)
    }

    /// A tenant's backup by its exact storage path.
    pub async fn find_backup_by_path(&self, tenant_id: &str, path: &str) -> Result<Backup> {
        let sql = format!(
            "SELECT {BACKUP_COLUMNS} FROM backups WHERE tenant_id = $1 AND storage_path = $2"
        );
        sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(tenant_id)
            .bind(path)
            .fetch_optional(self.pool())
            .await?
            .ok_or(CatalogError::NotFound)
    }

    /// A tenant's backups, newest first.
    pub async fn tenant_backups(&self, tenant_id: &str) -> Result<Vec<Backup>> {
        let sql = format!(
            "SELECT {BACKUP_COLUMNS} FROM backups WHERE tenant_id = $1
              ORDER BY created_at DESC, storage_path DESC"
        );
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(tenant_id)
            .fetch_all(self.pool())
            .await?)
    }

    /// Manual backups of a project started in the last hour, oldest first (for the quota).
    pub async fn recent_manual_backups(&self, project_id: &str) -> Result<Vec<DateTime<Utc>>> {
        Ok(sqlx::query_scalar(
            "SELECT min(created_at) FROM backups
              WHERE project_id = $1 AND kind = 'manual' AND created_at > now() - interval '1 hour'
              GROUP BY taken_at, tenant_id ORDER BY 1",
        )
        .bind(project_id)
        .fetch_all(self.pool())
        .await?)
    }

    pub async fn finish_backup(
        &self,
        id: &str,
        size_bytes: i64,
        raw_bytes: i64,
        sha256: &str,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE backups SET status = 'completed', size_bytes = $2, raw_bytes = $3, sha256 = $4,
                    error = NULL, finished_at = now()
              WHERE id = $1",
        )
        .bind(id)
        .bind(size_bytes)
        .bind(raw_bytes)
        .bind(sha256)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    pub async fn fail_backup(&self, id: &str, error: &str) -> Result<()> {
        sqlx::query(
            "UPDATE backups SET status = 'failed', error = $2, finished_at = now() WHERE id = $1",
        )
        .bind(id)
        .bind(error)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    pub async fn delete_backup(&self, id: &str) -> Result<()> {
        sqlx::query("DELETE FROM backups WHERE id = $1")
            .bind(id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Moves the tenant from `ready` to `restoring` and records the rollback with its job, in
    /// one transaction; `Ok(Err(status))` when the tenant was not ready.
    pub async fn start_rollback(
        &self,
        id: &str,
        backup: &Backup,
        bytes_total: i64,
    ) -> Result<std::result::Result<(), String>> {
        let mut tx = self.pool().begin().await?;
        let moved: Option<String> = sqlx::query_scalar(
            "UPDATE tenants SET status = 'restoring' WHERE id = $1 AND status = 'ready'
             RETURNING id",
        )
        .bind(&backup.tenant_id)
        .fetch_optional(&mut *tx)
        .await?;
        if moved.is_none() {
            let status: Option<String> =
                sqlx::query_scalar("SELECT status FROM tenants WHERE id = $1")
                    .bind(&backup.tenant_id)
                    .fetch_optional(&mut *tx)
                    .await?;
            return Ok(Err(status.unwrap_or_else(|| "gone".into())));
        }
        sqlx::query(
            "INSERT INTO rollbacks (id, tenant_id, tenant_database_id, backup_id, storage_path,
                                    bytes_total)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(id)
        .bind(&backup.tenant_id)
        .bind(&backup.tenant_database_id)
        .bind(&backup.id)
        .bind(&backup.storage_path)
        .bind(bytes_total)
        .execute(&mut *tx)
        .await?;
        sqlx::query("INSERT INTO jobs (kind, ref_id, project_id) VALUES ('rollback', $1, $2)")
            .bind(id)
            .bind(&backup.project_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("SELECT pg_notify($1, 'tenant:' || $2)")
            .bind(crate::routing::ROUTES_CHANNEL)
            .bind(&backup.tenant_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Ok(()))
    }

    pub async fn find_rollback(&self, id: &str) -> Result<Rollback> {
        sqlx::query_as("SELECT * FROM rollbacks WHERE id = $1")
            .bind(id)
            .fetch_optional(self.pool())
            .await?
            .ok_or(CatalogError::NotFound)
    }

    /// The tenant's status and its most recent rollback, if any, read from one snapshot: a
    /// rollback that ends between two separate reads would show `restoring` beside `completed`.
    pub async fn status_and_last_rollback(
        &self,
        tenant_id: &str,
    ) -> Result<(TenantStatus, Option<Rollback>)> {
        let mut tx = self.pool().begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await?;
        let status: String = sqlx::query_scalar("SELECT status FROM tenants WHERE id = $1")
            .bind(tenant_id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(CatalogError::NotFound)?;
        let rollback = sqlx::query_as(
            "SELECT * FROM rollbacks WHERE tenant_id = $1 ORDER BY created_at DESC, id LIMIT 1",
        )
        .bind(tenant_id)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok((status.try_into()?, rollback))
    }

    /// Records how far a rollback got (and, from `safety` on, its safety backup).
    pub async fn set_rollback_step(
        &self,
        id: &str,
        step: RollbackStep,
        safety_backup_id: Option<&str>,
        new_db: Option<&str>,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE rollbacks SET step = $2,
                    safety_backup_id = coalesce($3, safety_backup_id),
                    new_db = coalesce($4, new_db)
              WHERE id = $1",
        )
        .bind(id)
        .bind(step.as_str())
        .bind(safety_backup_id)
        .bind(new_db)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    pub async fn set_rollback_progress(&self, id: &str, bytes_done: i64) -> Result<()> {
        sqlx::query("UPDATE rollbacks SET bytes_done = $2 WHERE id = $1")
            .bind(id)
            .bind(bytes_done)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// The atomic switch: the tenant database points at the restored database (at the version
    /// recorded inside it) and the rollback remembers the old one, in one transaction that
    /// also tells the proxies. Before it commits the tenant is on its old data; after, on the
    /// restored data.
    pub async fn swap_rollback(&self, rollback: &Rollback, version: i32) -> Result<()> {
        let Some(new_db) = rollback.new_db.as_deref() else {
            return Err(CatalogError::NotFound);
        };
        let mut tx = self.pool().begin().await?;
        let old_db: String =
            sqlx::query_scalar("SELECT physical_db FROM tenant_databases WHERE id = $1 FOR UPDATE")
                .bind(&rollback.tenant_database_id)
                .fetch_one(&mut *tx)
                .await?;
        // Only from `restoring`, and never onto itself: a second run of the same rollback (its
        // first lost the lease but carried on) must not record the live database as the old one.
        let moved = sqlx::query(
            "UPDATE rollbacks SET step = 'swapped', old_db = $2
              WHERE id = $1 AND step = 'restoring' AND $2 <> $3",
        )
        .bind(&rollback.id)
        .bind(&old_db)
        .bind(new_db)
        .execute(&mut *tx)
        .await?;
        if moved.rows_affected() != 1 {
            return Err(CatalogError::Conflict("rollback already switched".into()));
        }
        sqlx::query(
            "UPDATE tenant_databases SET physical_db = $2, version = $3, placed_at = now()
                       WHERE id = $1",
        )
        .bind(&rollback.tenant_database_id)
        .bind(new_db)
        .bind(version)
        .execute(&mut *tx)
        .await?;
        sqlx::query("SELECT pg_notify($1, 'tenant:' || $2)")
            .bind(crate::routing::ROUTES_CHANNEL)
            .bind(&rollback.tenant_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Ends a rollback (`completed` or `failed` with its error) and puts the tenant back to
    /// `ready`, in one transaction.
    pub async fn end_rollback(&self, rollback: &Rollback, error: Option<&str>) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        sqlx::query(
            "UPDATE rollbacks SET step = $2, error = $3, finished_at = now() WHERE id = $1",
        )
        .bind(&rollback.id)
        .bind(if error.is_some() {
            RollbackStep::Failed.as_str()
        } else {
            RollbackStep::Completed.as_str()
        })
        .bind(error)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "WITH moved AS (UPDATE tenants SET status = 'ready'
                             WHERE id = $1 AND status = 'restoring' RETURNING id)
             SELECT pg_notify($2, 'tenant:' || moved.id) FROM moved",
        )
        .bind(&rollback.tenant_id)
        .bind(crate::routing::ROUTES_CHANNEL)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Every project's stored policy with its schedule bookkeeping.
    pub async fn backup_policies(&self) -> Result<Vec<ProjectPolicy>> {
        let rows: Vec<PolicyRow> = sqlx::query_as(
            "SELECT id, backup_policy, created_at, backup_last_slot FROM projects ORDER BY id",
        )
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| ProjectPolicy {
                project_id: r.id,
                policy: r.backup_policy.0,
                created_at: r.created_at,
                last_slot: r.backup_last_slot,
            })
            .collect())
    }

    pub async fn backup_policy(&self, project_id: &str) -> Result<StoredPolicy> {
        let policy: Option<Json<StoredPolicy>> =
            sqlx::query_scalar("SELECT backup_policy FROM projects WHERE id = $1")
                .bind(project_id)
                .fetch_optional(self.pool())
                .await?;
        policy.map(|p| p.0).ok_or(CatalogError::NotFound)
    }

    /// Stores a policy; when the schedule changed, slots before now are treated as done, so a
    /// new time of day does not fire at once for a slot that passed before the change.
    pub async fn set_backup_policy(
        &self,
        project_id: &str,
        policy: &StoredPolicy,
        schedule_changed: bool,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE projects SET backup_policy = $2,
                    backup_last_slot = CASE WHEN $3 THEN now() ELSE backup_last_slot END
              WHERE id = $1",
        )
        .bind(project_id)
        .bind(Json(policy))
        .bind(schedule_changed)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Claims a project's daily slot: true for exactly one caller, when the slot is newer than
    /// the last one claimed.
    pub async fn claim_backup_slot(&self, project_id: &str, slot: DateTime<Utc>) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE projects SET backup_last_slot = $2
              WHERE id = $1 AND coalesce(backup_last_slot, created_at) < $2",
        )
        .bind(project_id)
        .bind(slot)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The databases of a project's tenants that scheduled backups cover (not in the trash).
    pub async fn backup_targets(&self, project_id: &str) -> Result<Vec<BackupTarget>> {
        Ok(sqlx::query_as(
            "SELECT t.id AS tenant_id, t.name AS tenant_name, d.id AS tenant_database_id,
                    b.name AS blueprint, b.engine
               FROM tenant_databases d
               JOIN tenants t ON t.id = d.tenant_id
               JOIN blueprints b ON b.id = d.blueprint_id
              WHERE t.project_id = $1 AND t.status NOT IN ('deleted', 'provisioning', 'failed')
              ORDER BY t.name, b.name",
        )
        .bind(project_id)
        .fetch_all(self.pool())
        .await?)
    }

    /// A project's backups beyond its retention: for each tenant database, completed ones past
    /// the newest `keep_count` or older than `keep_days` (the newest is always kept), failed ones
    /// after a day; never one a rollback in progress uses.
    pub async fn expired_backups(
        &self,
        project_id: &str,
        keep_count: i64,
        keep_days: i64,
    ) -> Result<Vec<Backup>> {
        let sql = format!(
            "SELECT {BACKUP_COLUMNS} FROM (
                 SELECT b.*, row_number() OVER (PARTITION BY tenant_database_id, status
                                                ORDER BY created_at DESC, storage_path DESC) AS n
                   FROM backups b WHERE project_id = $1 AND status <> 'pending') ranked
              -- Completed backups by count and age, but never a database's newest one; failed
              -- ones after a day.
              WHERE ((status = 'completed' AND n > 1
                      AND (n > $2 OR created_at < now() - make_interval(days => $3)))
                     OR (status = 'failed' AND created_at < now() - interval '1 day'))
                AND NOT EXISTS (SELECT 1 FROM rollbacks r
                                 WHERE (r.backup_id = ranked.id OR r.safety_backup_id = ranked.id)
                                   AND r.step NOT IN ('completed', 'failed'))
              ORDER BY created_at"
        );
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(project_id)
            .bind(keep_count)
            .bind(i32::try_from(keep_days).unwrap_or(i32::MAX))
            .fetch_all(self.pool())
            .await?)
    }

    /// The storage paths of a tenant's backups (deleted from the store before the tenant goes).
    /// Every backup of a tenant or, with `project`, of a project: `(id, storage_path)`. Their
    /// files are deleted, then their rows (with a tenant's or a project's deletion).
    pub async fn backups_of(
        &self,
        tenant_id: Option<&str>,
        project_id: &str,
    ) -> Result<Vec<(String, String)>> {
        Ok(sqlx::query_as(
            "SELECT id, storage_path FROM backups
              WHERE project_id = $1 AND ($2::text IS NULL OR tenant_id = $2) ORDER BY id",
        )
        .bind(project_id)
        .bind(tenant_id)
        .fetch_all(self.pool())
        .await?)
    }

    /// Databases that rollbacks of a project's tenants named (restored copies, replaced
    /// originals) other than the tenants' live ones: `(server id, database name)`. Most are
    /// gone already; the ones a failed or cut-off rollback left must go with the project.
    pub async fn rollback_leftovers(&self, project_id: &str) -> Result<Vec<(String, String)>> {
        Ok(sqlx::query_as(
            "SELECT DISTINCT d.server_id, n.name
               FROM rollbacks r
               JOIN tenants t ON t.id = r.tenant_id
               JOIN tenant_databases d ON d.id = r.tenant_database_id
              CROSS JOIN LATERAL (VALUES (r.new_db), (r.old_db)) AS n(name)
              WHERE t.project_id = $1 AND n.name IS NOT NULL AND n.name <> d.physical_db",
        )
        .bind(project_id)
        .fetch_all(self.pool())
        .await?)
    }
}
