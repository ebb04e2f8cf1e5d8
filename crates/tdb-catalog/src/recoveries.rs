//! Point-in-time recovery: each managed server's WAL archive and what it can recover now, and
//! the recoveries of tenant databases, each run by a `tenant_recover` job and undone by a
//! `tenant_recover_undo` job while its original is kept. The switches point the tenant database
//! at its recovered (or original) copy in one transaction the proxies hear of when it commits.

use chrono::{DateTime, Utc};
use sqlx::FromRow;
use tdb_core::{RecoveryStep, TenantStatus};

use crate::servers::NewDedicatedServer;
use crate::{Catalog, CatalogError, Result};

/// A server's WAL archive, as the tdb that runs the server last found it.
#[derive(Debug, Clone, FromRow)]
pub struct ServerArchive {
    pub server_id: String,
    pub stanza: String,
    pub node: String,
    pub ready: bool,
    pub recoverable_from: Option<DateTime<Utc>>,
    pub recoverable_to: Option<DateTime<Utc>>,
    pub last_full_at: Option<DateTime<Utc>>,
    pub last_backup_at: Option<DateTime<Utc>>,
    pub backup_requested_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
    pub updated_at: DateTime<Utc>,
}

/// What an archive was found to hold.
#[derive(Debug, Clone, Default)]
pub struct ArchiveState {
    pub ready: bool,
    pub recoverable_from: Option<DateTime<Utc>>,
    pub recoverable_to: Option<DateTime<Utc>>,
    pub last_full_at: Option<DateTime<Utc>>,
    pub last_backup_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
}

/// The moments one tenant database can be recovered to now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

/// Why a tenant database cannot be recovered now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoWindow {
    /// Its server archives no WAL (an attached server): named.
    NotArchived(String),
    /// Archiving is set up, but nothing can be recovered yet; why.
    NotYet(String),
}

/// A tenant database's server and its archive, for its window.
#[derive(FromRow)]
struct WindowRow {
    server: String,
    stanza: Option<String>,
    recoverable_from: Option<DateTime<Utc>>,
    recoverable_to: Option<DateTime<Utc>>,
    placed_at: DateTime<Utc>,
    ready: bool,
}

#[derive(Debug, Clone, FromRow)]
pub struct Recovery {
    pub id: String,
    pub project_id: String,
    pub tenant_id: String,
    pub tenant_database_id: String,
    pub level: i32,
    pub target_at: DateTime<Utc>,
    #[sqlx(try_from = "String")]
    pub step: RecoveryStep,
    pub original_server_id: String,
    pub original_db: String,
    pub recovered_server_id: String,
    pub recovered_db: String,
    pub history: Vec<String>,
    pub error: Option<String>,
    pub held_ms: Option<i32>,
    pub created_at: DateTime<Utc>,
    pub switched_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub undo_until: DateTime<Utc>,
    pub original_dropped: bool,
}

impl Recovery {
    /// Whether `recover-undo` may swap the original back now.
    pub fn undoable(&self, now: DateTime<Utc>) -> bool {
        self.step == RecoveryStep::Completed && !self.original_dropped && self.undo_until > now
    }
}

pub struct NewRecovery<'a> {
    pub id: &'a str,
    pub project_id: &'a str,
    pub tenant_id: &'a str,
    pub tenant_database_id: &'a str,
    pub level: i32,
    pub target_at: DateTime<Utc>,
    pub original_server_id: &'a str,
    pub original_db: &'a str,
    pub recovered_server_id: &'a str,
    pub recovered_db: &'a str,
    pub undo_until: DateTime<Utc>,
    /// The dedicated server an L2 recovery makes, recorded with it.
    pub dedicated: Option<NewDedicatedServer<'a>>,
    /// The one tdb that may run the recovery (the one that runs the archive).
    pub node: &'a str,
}

impl Catalog {
    /// Records that `server_id` archives into `stanza`, run by `node`.
    pub async fn register_archive(&self, server_id: &str, stanza: &str, node: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO server_archives (server_id, stanza, node) VALUES ($1, $2, $3)
             ON CONFLICT (server_id) DO UPDATE SET stanza = EXCLUDED.stanza, node = EXCLUDED.node",
        )
        .bind(server_id)
        .bind(stanza)
        .bind(node)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The archives `node` keeps, of servers that run (active or draining).
    pub async fn archives_of(&self, node: &str) -> Result<Vec<ServerArchive>> {
        Ok(sqlx::query_as(
            "SELECT a.* FROM server_archives a JOIN servers s ON s.id = a.server_id
              WHERE a.node = $1 AND s.status IN ('active', 'draining') ORDER BY a.server_id",
        )
        .bind(node)
        .fetch_all(self.pool())
        .await?)
    }

    /// Asks the tdb that keeps the server's archive for a full base backup now; `false` when
    /// the server has no archive.
    pub async fn request_base_backup(&self, server_id: &str) -> Result<bool> {
        let asked = sqlx::query(
            "UPDATE server_archives SET backup_requested_at = now() WHERE server_id = $1",
        )
        .bind(server_id)
        .execute(self.pool())
        .await?;
        Ok(asked.rows_affected() == 1)
    }

    pub async fn archive_of(&self, server_id: &str) -> Result<Option<ServerArchive>> {
        Ok(
            sqlx::query_as("SELECT * FROM server_archives WHERE server_id = $1")
                .bind(server_id)
                .fetch_optional(self.pool())
                .await?,
        )
    }

    /// Records what the archive holds now.
    pub async fn set_archive_state(&self, server_id: &str, state: &ArchiveState) -> Result<()> {
        sqlx::query(
            "UPDATE server_archives SET ready = $2, recoverable_from = $3,
                    recoverable_to = GREATEST(recoverable_to, $4), last_full_at = $5,
                    last_backup_at = $6, error = $7, updated_at = now()
              WHERE server_id = $1",
        )
        .bind(server_id)
        .bind(state.ready)
        .bind(state.recoverable_from)
        .bind(state.recoverable_to)
        .bind(state.last_full_at)
        .bind(state.last_backup_at)
        .bind(&state.error)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The moments the tenant database can be recovered to: its server's archive window, from
    /// when the database's current copy arrived there.
    pub async fn recovery_window(
        &self,
        tenant_database_id: &str,
    ) -> Result<std::result::Result<Window, NoWindow>> {
        let row: Option<WindowRow> = sqlx::query_as(
            "SELECT s.name AS server, a.stanza, a.recoverable_from, a.recoverable_to,
                    d.placed_at, COALESCE(a.ready, false) AS ready
               FROM tenant_databases d JOIN servers s ON s.id = d.server_id
               LEFT JOIN server_archives a ON a.server_id = d.server_id
              WHERE d.id = $1",
        )
        .bind(tenant_database_id)
        .fetch_optional(self.pool())
        .await?;
        let WindowRow {
            server,
            stanza,
            recoverable_from: from,
            recoverable_to: to,
            placed_at,
            ready,
        } = row.ok_or(CatalogError::NotFound)?;
        if stanza.is_none() {
            return Ok(Err(NoWindow::NotArchived(server)));
        }
        let (Some(from), Some(to), true) = (from, to, ready) else {
            return Ok(Err(NoWindow::NotYet(format!(
                "server '{server}' has no base backup in its archive yet"
            ))));
        };
        // Commit times are those of the server's clock, to the microsecond; a whole second of
        // margin after the copy arrived keeps the window inside what the archive holds.
        let from = from.max(placed_at + chrono::Duration::seconds(1));
        if from > to {
            return Ok(Err(NoWindow::NotYet(format!(
                "the database's archive on server '{server}' reaches no later than {} yet",
                to.format("%Y-%m-%dT%H:%M:%SZ")
            ))));
        }
        Ok(Ok(Window { from, to }))
    }

    /// Records that the tenant's databases exist where they are from now on (a new tenant's,
    /// once built): archives hold them from this moment.
    pub async fn mark_placed(&self, tenant_id: &str) -> Result<()> {
        sqlx::query("UPDATE tenant_databases SET placed_at = now() WHERE tenant_id = $1")
            .bind(tenant_id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Records a recovery with its job and puts the tenant `recovering`, only from `ready`.
    /// `Conflict` with the tenant's status otherwise.
    pub async fn create_recovery(&self, r: &NewRecovery<'_>) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        to_recovering(&mut tx, r.tenant_id, TenantStatus::Ready).await?;
        if let Some(server) = &r.dedicated {
            server.insert(&mut tx).await?;
        }
        sqlx::query(
            "INSERT INTO recoveries (id, project_id, tenant_id, tenant_database_id, level,
                                     target_at, original_server_id, original_db,
                                     recovered_server_id, recovered_db, undo_until)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(r.id)
        .bind(r.project_id)
        .bind(r.tenant_id)
        .bind(r.tenant_database_id)
        .bind(r.level)
        .bind(r.target_at)
        .bind(r.original_server_id)
        .bind(r.original_db)
        .bind(r.recovered_server_id)
        .bind(r.recovered_db)
        .bind(r.undo_until)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO jobs (kind, ref_id, project_id, node) VALUES ('tenant_recover', $1, $2, $3)",
        )
        .bind(r.id)
        .bind(r.project_id)
        .bind(r.node)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Starts undoing a completed recovery still in its window: the tenant `recovering`, the
    /// recovery `undoing`, a `tenant_recover_undo` job. `Conflict` when the tenant is not
    /// `ready` (its status) or the recovery cannot be undone.
    pub async fn start_recovery_undo(&self, r: &Recovery, node: &str) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        to_recovering(&mut tx, &r.tenant_id, TenantStatus::Ready).await?;
        let started = sqlx::query(
            "UPDATE recoveries SET step = 'undoing', history = history || 'undo requested'::text
              WHERE id = $1 AND step = 'completed' AND NOT original_dropped AND undo_until > now()",
        )
        .bind(&r.id)
        .execute(&mut *tx)
        .await?;
        if started.rows_affected() != 1 {
            return Err(CatalogError::Conflict("not undoable".into()));
        }
        sqlx::query(
            "INSERT INTO jobs (kind, ref_id, project_id, node)
             VALUES ('tenant_recover_undo', $1, $2, $3)",
        )
        .bind(&r.id)
        .bind(&r.project_id)
        .bind(node)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn find_recovery(&self, id: &str) -> Result<Recovery> {
        sqlx::query_as("SELECT * FROM recoveries WHERE id = $1")
            .bind(id)
            .fetch_optional(self.pool())
            .await?
            .ok_or(CatalogError::NotFound)
    }

    /// The tenant's newest recovery, if it ever had one.
    pub async fn last_recovery(&self, tenant_id: &str) -> Result<Option<Recovery>> {
        Ok(sqlx::query_as(
            "SELECT * FROM recoveries WHERE tenant_id = $1 ORDER BY created_at DESC, id LIMIT 1",
        )
        .bind(tenant_id)
        .fetch_optional(self.pool())
        .await?)
    }

    /// Records the recovery's step, with a line for its history.
    pub async fn set_recovery_step(
        &self,
        id: &str,
        step: RecoveryStep,
        note: Option<&str>,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE recoveries SET step = $2,
                    history = CASE WHEN $3::text IS NULL THEN history ELSE history || $3 END
              WHERE id = $1",
        )
        .bind(id)
        .bind(step.as_str())
        .bind(note)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The switch: the tenant database is now its recovered copy (at `version`), the recovery
    /// `switched`, the tenant `ready`. Only from `loading`, so a second run cannot switch twice.
    pub async fn switch_recovery(&self, r: &Recovery, version: i32, held_ms: i32) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        let switched = sqlx::query(
            "UPDATE recoveries SET step = 'switched', held_ms = $2, switched_at = now(),
                    history = history || ('switched; queries held ' || $2 || ' ms')
              WHERE id = $1 AND step = 'loading'",
        )
        .bind(&r.id)
        .bind(held_ms)
        .execute(&mut *tx)
        .await?;
        if switched.rows_affected() != 1 {
            return Err(CatalogError::Conflict("recovery already switched".into()));
        }
        point_at(
            &mut tx,
            &r.tenant_database_id,
            (&r.recovered_server_id, &r.recovered_db),
            Some(version),
        )
        .await?;
        to_ready(&mut tx, &r.tenant_id).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Ends a switched recovery: `completed`, its original kept until `undo_until`.
    pub async fn complete_recovery(&self, id: &str) -> Result<()> {
        sqlx::query(
            "UPDATE recoveries SET step = 'completed', finished_at = now()
              WHERE id = $1 AND step = 'switched'",
        )
        .bind(id)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Ends a recovery that did not switch: `failed` with why, the tenant `ready` where it was.
    pub async fn fail_recovery(&self, r: &Recovery, error: &str) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        sqlx::query(
            "UPDATE recoveries SET step = 'failed', error = $2, finished_at = now(),
                    history = history || ('failed: ' || $2)
              WHERE id = $1 AND step IN ('queued', 'restoring', 'loading')",
        )
        .bind(&r.id)
        .bind(error)
        .execute(&mut *tx)
        .await?;
        to_ready(&mut tx, &r.tenant_id).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The undo's switch: the tenant database is its original again (at `version`), the
    /// recovery `undone`, the tenant `ready`. Only from `undoing`.
    pub async fn switch_recovery_back(&self, r: &Recovery, version: i32) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        let switched = sqlx::query(
            "UPDATE recoveries SET step = 'undone', finished_at = now(),
                    history = history || 'undone: the original is back'::text
              WHERE id = $1 AND step = 'undoing'",
        )
        .bind(&r.id)
        .execute(&mut *tx)
        .await?;
        if switched.rows_affected() != 1 {
            return Err(CatalogError::Conflict("recovery already undone".into()));
        }
        point_at(
            &mut tx,
            &r.tenant_database_id,
            (&r.original_server_id, &r.original_db),
            Some(version),
        )
        .await?;
        to_ready(&mut tx, &r.tenant_id).await?;
        tx.commit().await?;
        Ok(())
    }

    /// An undo that could not switch: the recovery stays `completed` (undoable while its
    /// window lasts) with why, the tenant `ready` on its recovered copy.
    pub async fn abandon_recovery_undo(&self, r: &Recovery, error: &str) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        sqlx::query(
            "UPDATE recoveries SET step = 'completed', history = history || ('undo failed: ' || $2)
              WHERE id = $1 AND step = 'undoing'",
        )
        .bind(&r.id)
        .bind(error)
        .execute(&mut *tx)
        .await?;
        to_ready(&mut tx, &r.tenant_id).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Recoveries whose kept original is due to go (their undo window is over).
    pub async fn originals_to_drop(&self) -> Result<Vec<Recovery>> {
        Ok(sqlx::query_as(
            "SELECT * FROM recoveries WHERE step = 'completed' AND NOT original_dropped
                AND undo_until <= now() ORDER BY undo_until LIMIT 20",
        )
        .fetch_all(self.pool())
        .await?)
    }

    /// The tenant's recoveries whose original or recovered copy is still kept somewhere apart
    /// from the live database (its hard delete removes them).
    pub async fn kept_originals(&self, tenant_id: &str) -> Result<Vec<Recovery>> {
        Ok(sqlx::query_as(
            "SELECT * FROM recoveries WHERE tenant_id = $1 AND step = 'completed'
                AND NOT original_dropped ORDER BY created_at",
        )
        .bind(tenant_id)
        .fetch_all(self.pool())
        .await?)
    }

    pub async fn original_dropped(&self, id: &str) -> Result<()> {
        sqlx::query("UPDATE recoveries SET original_dropped = true WHERE id = $1")
            .bind(id)
            .execute(self.pool())
            .await?;
        Ok(())
    }
}

/// The tenant `recovering` from `from`, announced; `Conflict` with its status otherwise.
async fn to_recovering(
    tx: &mut sqlx::PgConnection,
    tenant_id: &str,
    from: TenantStatus,
) -> Result<()> {
    let moved: Option<i32> = sqlx::query_scalar(
        "WITH moved AS (
             UPDATE tenants SET status = 'recovering' WHERE id = $1 AND status = $2
             RETURNING id)
         SELECT 1 FROM moved, pg_notify($3, 'tenant:' || moved.id)",
    )
    .bind(tenant_id)
    .bind(from.as_str())
    .bind(crate::routing::ROUTES_CHANNEL)
    .fetch_optional(&mut *tx)
    .await?;
    if moved.is_some() {
        return Ok(());
    }
    let status: String = sqlx::query_scalar("SELECT status FROM tenants WHERE id = $1")
        .bind(tenant_id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(CatalogError::NotFound)?;
    Err(CatalogError::Conflict(status))
}

/// The tenant `ready` again after a recovery's work, announced.
async fn to_ready(tx: &mut sqlx::PgConnection, tenant_id: &str) -> Result<()> {
    sqlx::query(
        "WITH moved AS (UPDATE tenants SET status = 'ready'
                         WHERE id = $1 AND status = 'recovering' RETURNING id)
         SELECT pg_notify($2, 'tenant:' || moved.id) FROM moved",
    )
    .bind(tenant_id)
    .bind(crate::routing::ROUTES_CHANNEL)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Points the tenant database at a copy (server and database), placed now, and announces it.
async fn point_at(
    tx: &mut sqlx::PgConnection,
    tenant_database_id: &str,
    (server_id, physical_db): (&str, &str),
    version: Option<i32>,
) -> Result<()> {
    let tenant_id: String = sqlx::query_scalar(
        "UPDATE tenant_databases SET server_id = $2, physical_db = $3, placed_at = now(),
                version = COALESCE($4, version)
          WHERE id = $1 RETURNING tenant_id",
    )
    .bind(tenant_database_id)
    .bind(server_id)
    .bind(physical_db)
    .bind(version)
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query("SELECT pg_notify($1, 'tenant:' || $2)")
        .bind(crate::routing::ROUTES_CHANNEL)
        .bind(&tenant_id)
        .execute(&mut *tx)
        .await?;
    Ok(())
}
