//! Moves of tenant databases between servers: the record a `tenant_move` job works through, the
//! tenant's status around it, and the switch that points the tenant database at its new server
//! in one transaction (the proxies hear of it when it commits).

use chrono::{DateTime, Utc};
use sqlx::FromRow;
use tdb_core::{MoveMethod, MoveStep, TenantStatus};

use crate::servers::NewDedicatedServer;
use crate::{Catalog, CatalogError, Result};

#[derive(Debug, Clone, FromRow)]
pub struct Move {
    pub id: String,
    pub project_id: String,
    pub tenant_id: String,
    pub tenant_database_id: String,
    pub from_server_id: String,
    pub to_server_id: String,
    pub from_level: i32,
    pub to_level: i32,
    pub from_region: String,
    pub to_region: String,
    #[sqlx(try_from = "String")]
    pub step: MoveStep,
    pub method: Option<String>,
    pub safety_backup_id: Option<String>,
    pub history: Vec<String>,
    pub error: Option<String>,
    pub held_ms: Option<i32>,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub source_drop_after: Option<DateTime<Utc>>,
    pub source_dropped: bool,
}

impl Move {
    pub fn method(&self) -> Option<MoveMethod> {
        self.method
            .as_deref()
            .and_then(|m| MoveMethod::try_from(m.to_string()).ok())
    }
}

pub struct NewMove<'a> {
    pub id: &'a str,
    pub project_id: &'a str,
    pub tenant_id: &'a str,
    pub tenant_database_id: &'a str,
    pub from_server_id: &'a str,
    pub to_server_id: &'a str,
    pub from_level: i32,
    pub to_level: i32,
    pub from_region: &'a str,
    pub to_region: &'a str,
    /// The dedicated server a move to L2 gets, recorded with the move.
    pub dedicated: Option<NewDedicatedServer<'a>>,
    /// The one tdb that may run the move (whose provisioner runs a dedicated server of it).
    pub node: Option<&'a str>,
}

impl Catalog {
    /// Records a move with its `tenant_move` job and puts the tenant `syncing`, only from
    /// `ready` and only while no other move of it is open. `Conflict` with the tenant's status
    /// (or "moving") otherwise.
    pub async fn create_move(&self, m: &NewMove<'_>) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        let moved: Option<i32> = sqlx::query_scalar(
            "WITH moved AS (
                 UPDATE tenants SET status = 'syncing' WHERE id = $1 AND status = 'ready'
                 RETURNING id)
             SELECT 1 FROM moved, pg_notify($2, 'tenant:' || moved.id)",
        )
        .bind(m.tenant_id)
        .bind(crate::routing::ROUTES_CHANNEL)
        .fetch_optional(&mut *tx)
        .await?;
        if moved.is_none() {
            let status: String = sqlx::query_scalar("SELECT status FROM tenants WHERE id = $1")
                .bind(m.tenant_id)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or(CatalogError::NotFound)?;
            return Err(CatalogError::Conflict(status));
        }
        if let Some(server) = &m.dedicated {
            server.insert(&mut tx).await?;
        }
        sqlx::query(
            "INSERT INTO moves (id, project_id, tenant_id, tenant_database_id, from_server_id,
                                to_server_id, from_level, to_level, from_region, to_region)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(m.id)
        .bind(m.project_id)
        .bind(m.tenant_id)
        .bind(m.tenant_database_id)
        .bind(m.from_server_id)
        .bind(m.to_server_id)
        .bind(m.from_level)
        .bind(m.to_level)
        .bind(m.from_region)
        .bind(m.to_region)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO jobs (kind, ref_id, project_id, node) VALUES ('tenant_move', $1, $2, $3)",
        )
        .bind(m.id)
        .bind(m.project_id)
        .bind(m.node)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn find_move(&self, id: &str) -> Result<Move> {
        sqlx::query_as("SELECT * FROM moves WHERE id = $1")
            .bind(id)
            .fetch_optional(self.pool())
            .await?
            .ok_or(CatalogError::NotFound)
    }

    /// The tenant's newest move, if it ever had one.
    pub async fn last_move(&self, tenant_id: &str) -> Result<Option<Move>> {
        Ok(sqlx::query_as(
            "SELECT * FROM moves WHERE tenant_id = $1 ORDER BY created_at DESC, id LIMIT 1",
        )
        .bind(tenant_id)
        .fetch_optional(self.pool())
        .await?)
    }

    /// Records the move's step (and its method, once chosen), with a line for its history.
    pub async fn set_move_step(
        &self,
        id: &str,
        step: MoveStep,
        method: Option<MoveMethod>,
        note: Option<&str>,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE moves SET step = $2, method = COALESCE($3, method),
                    history = CASE WHEN $4::text IS NULL THEN history ELSE history || $4 END
              WHERE id = $1",
        )
        .bind(id)
        .bind(step.as_str())
        .bind(method.map(|m| m.as_str()))
        .bind(note)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    pub async fn set_move_safety_backup(&self, id: &str, backup_id: &str) -> Result<()> {
        sqlx::query("UPDATE moves SET safety_backup_id = $2 WHERE id = $1")
            .bind(id)
            .bind(backup_id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// The switch: the tenant database now lives on the target server (at its level and
    /// region), the move is `switched`, the tenant `ready`; one transaction, announced to the
    /// proxies when it commits. Only from `cutover`, so a second run cannot switch twice.
    pub async fn switch_move(&self, m: &Move, held_ms: i32) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        let switched = sqlx::query(
            "UPDATE moves SET step = 'switched', held_ms = $2 WHERE id = $1 AND step = 'cutover'",
        )
        .bind(&m.id)
        .bind(held_ms)
        .execute(&mut *tx)
        .await?;
        if switched.rows_affected() != 1 {
            return Err(CatalogError::Conflict("move already switched".into()));
        }
        sqlx::query(
            "UPDATE tenant_databases SET server_id = $2, isolation_level = $3, region = $4,
                    placed_at = now()
              WHERE id = $1",
        )
        .bind(&m.tenant_database_id)
        .bind(&m.to_server_id)
        .bind(m.to_level)
        .bind(&m.to_region)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE tenants SET status = 'ready' WHERE id = $1 AND status IN ('syncing', 'migrating')",
        )
        .bind(&m.tenant_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("SELECT pg_notify($1, 'tenant:' || $2)")
            .bind(crate::routing::ROUTES_CHANNEL)
            .bind(&m.tenant_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Ends a switched move: `completed`, its source kept until `source_drop_after`.
    pub async fn complete_move(&self, id: &str, source_drop_after: DateTime<Utc>) -> Result<()> {
        sqlx::query(
            "UPDATE moves SET step = 'completed', finished_at = now(), source_drop_after = $2
              WHERE id = $1 AND step = 'switched'",
        )
        .bind(id)
        .bind(source_drop_after)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Ends a move that did not switch: `failed` with why, the tenant `ready` on its source.
    pub async fn fail_move(&self, m: &Move, error: &str) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        sqlx::query(
            "UPDATE moves SET step = 'failed', error = $2, finished_at = now(),
                    history = history || ('failed: ' || $2)
              WHERE id = $1 AND step NOT IN ('switched', 'completed', 'failed')",
        )
        .bind(&m.id)
        .bind(error)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "WITH moved AS (UPDATE tenants SET status = 'ready'
                             WHERE id = $1 AND status IN ('syncing', 'migrating') RETURNING id)
             SELECT pg_notify($2, 'tenant:' || moved.id) FROM moved",
        )
        .bind(&m.tenant_id)
        .bind(crate::routing::ROUTES_CHANNEL)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Completed moves whose kept source is due to go.
    pub async fn sources_to_drop(&self) -> Result<Vec<Move>> {
        Ok(sqlx::query_as(
            "SELECT * FROM moves WHERE step = 'completed' AND NOT source_dropped
                AND source_drop_after <= now() ORDER BY source_drop_after LIMIT 20",
        )
        .fetch_all(self.pool())
        .await?)
    }

    /// Completed moves of the tenant whose source copy is still kept.
    pub async fn kept_sources(&self, tenant_id: &str) -> Result<Vec<Move>> {
        Ok(sqlx::query_as(
            "SELECT * FROM moves WHERE tenant_id = $1 AND step = 'completed'
                AND NOT source_dropped ORDER BY created_at",
        )
        .bind(tenant_id)
        .fetch_all(self.pool())
        .await?)
    }

    pub async fn source_dropped(&self, id: &str) -> Result<()> {
        sqlx::query("UPDATE moves SET source_dropped = true WHERE id = $1")
            .bind(id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Records that earlier moves' kept copies of the database on `server_id` are gone (a move
    /// back onto that server replaces them).
    pub async fn forget_kept_sources(
        &self,
        tenant_database_id: &str,
        server_id: &str,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE moves SET source_dropped = true
              WHERE tenant_database_id = $1 AND from_server_id = $2 AND step = 'completed'",
        )
        .bind(tenant_database_id)
        .bind(server_id)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Whether the tenant's status says it is being moved.
    pub async fn tenant_moving(&self, tenant_id: &str) -> Result<bool> {
        let status = self.tenant_status(tenant_id).await?;
        Ok(matches!(
            status,
            Some(TenantStatus::Syncing | TenantStatus::Migrating)
        ))
    }
}
