//! The backup job: a consistent logical dump of one tenant database, streamed through gzip into
//! the backup store, with its size and SHA-256 recorded in the catalog. Also what backups are
//! named and the projects' backup policies.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_compression::tokio::bufread::GzipEncoder;
use chrono::{DateTime, NaiveTime, Utc};
use tdb_catalog::backups::{NewBackup, StoredPolicy};
use tdb_catalog::servers::Server;
use tdb_catalog::tenants::TenantDatabase;
use tokio::io::{AsyncRead, BufReader};

use crate::access::owner_access;
use crate::store::Written;
use crate::{JobError, Runner};
use tdb_core::{BackupKind, BackupStatus, Engine};

/// The timestamp format of backup paths: `2026-02-15T14-30-00` (UTC).
pub const TIMESTAMP: &str = "%Y-%m-%dT%H-%M-%S";

/// A backup to record: what [`NewBackup`] borrows, owned.
#[derive(Debug, Clone)]
pub struct PlannedBackup {
    pub id: String,
    pub project_id: String,
    pub tenant_id: String,
    pub tenant_database_id: String,
    pub blueprint: String,
    pub database_type: Engine,
    pub kind: BackupKind,
    pub taken_at: String,
    pub storage_path: String,
}

impl PlannedBackup {
    pub fn as_new(&self) -> NewBackup<'_> {
        NewBackup {
            id: &self.id,
            project_id: &self.project_id,
            tenant_id: &self.tenant_id,
            tenant_database_id: &self.tenant_database_id,
            blueprint: &self.blueprint,
            database_type: self.database_type,
            kind: self.kind,
            taken_at: &self.taken_at,
            storage_path: &self.storage_path,
        }
    }
}

/// One tenant database to back up.
pub struct Source<'a> {
    pub tenant_database_id: &'a str,
    pub blueprint: &'a str,
    pub engine: Engine,
}

/// Names the backups of a tenant's databases taken at `at`:
/// `<engine>/<kind>/<timestamp>/<project>_tenant_<tenant>.<format>.gz`, as the spec has it. A
/// tenant with more than one database of an engine gets `__<blueprint>` before the extension,
/// so each database has a path of its own. The format is the engine's dump's: SQL, or for Redis
/// the keys as RESP records (`DUMP` payloads with their TTLs).
pub fn plan(
    project_id: &str,
    tenant_id: &str,
    tenant: &str,
    sources: &[Source<'_>],
    kind: BackupKind,
    at: DateTime<Utc>,
) -> Vec<PlannedBackup> {
    let taken_at = at.format(TIMESTAMP).to_string();
    sources
        .iter()
        .map(|s| {
            let siblings = sources.iter().filter(|o| o.engine == s.engine).count();
            let suffix = if siblings > 1 {
                format!("__{}", s.blueprint)
            } else {
                String::new()
            };
            PlannedBackup {
                id: tdb_core::ids::new_id("bak"),
                project_id: project_id.to_string(),
                tenant_id: tenant_id.to_string(),
                tenant_database_id: s.tenant_database_id.to_string(),
                blueprint: s.blueprint.to_string(),
                database_type: s.engine,
                kind,
                storage_path: format!(
                    "{}/{kind}/{taken_at}/{project_id}_tenant_{tenant}{suffix}.{}.gz",
                    s.engine,
                    dump_format(s.engine)
                ),
                taken_at: taken_at.clone(),
            }
        })
        .collect()
}

/// The extension of an engine's dumps.
fn dump_format(engine: Engine) -> &'static str {
    match engine {
        Engine::Redis => "resp",
        Engine::Mongodb => "bson",
        Engine::Postgresql | Engine::Mysql => "sql",
    }
}

/// A project's backup policy with the server's defaults filled in.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BackupPolicy {
    /// Daily scheduled backups of every tenant database.
    pub schedule_enabled: bool,
    /// When, UTC: `HH:MM` or `HH:MM:SS`.
    pub daily_at: String,
    /// Backups kept per tenant database (newest first); older ones are deleted.
    pub keep_count: i64,
    /// Backups older than this many days are deleted.
    pub keep_days: i64,
    /// Manual backups (requests) per project per hour.
    pub hourly_limit: i64,
}

impl Default for BackupPolicy {
    fn default() -> Self {
        Self {
            schedule_enabled: true,
            daily_at: "03:00".into(),
            keep_count: 7,
            keep_days: 30,
            hourly_limit: 10,
        }
    }
}

impl BackupPolicy {
    /// `stored` over these defaults.
    pub fn with(&self, stored: &StoredPolicy) -> Self {
        Self {
            schedule_enabled: stored.schedule_enabled.unwrap_or(self.schedule_enabled),
            daily_at: stored
                .daily_at
                .clone()
                .unwrap_or_else(|| self.daily_at.clone()),
            keep_count: stored.keep_count.unwrap_or(self.keep_count),
            keep_days: stored.keep_days.unwrap_or(self.keep_days),
            hourly_limit: stored.hourly_limit.unwrap_or(self.hourly_limit),
        }
    }

    /// Checks every field; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        parse_daily_at(&self.daily_at)?;
        if !(1..=10_000).contains(&self.keep_count) {
            return Err("keep_count must be between 1 and 10000".into());
        }
        if !(1..=3650).contains(&self.keep_days) {
            return Err("keep_days must be between 1 and 3650".into());
        }
        if !(0..=100_000).contains(&self.hourly_limit) {
            return Err("hourly_limit must be between 0 and 100000".into());
        }
        Ok(())
    }

    /// The latest daily slot at or before `now`.
    pub fn last_slot(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let time = parse_daily_at(&self.daily_at).ok()?;
        let today = now.date_naive().and_time(time).and_utc();
        Some(if today <= now {
            today
        } else {
            today - chrono::Duration::days(1)
        })
    }
}

/// `HH:MM` or `HH:MM:SS`, 24-hour, UTC.
pub fn parse_daily_at(text: &str) -> Result<NaiveTime, String> {
    NaiveTime::parse_from_str(text, "%H:%M:%S")
        .or_else(|_| NaiveTime::parse_from_str(text, "%H:%M"))
        .map_err(|_| format!("daily_at must be HH:MM or HH:MM:SS (UTC), not '{text}'"))
}

/// Runs a backup job: `Ok` when the backup ended (completed or recorded as failed); `Err` with a
/// transient error when what it needs could not be reached (the job runs again).
pub async fn run(runner: &Runner, backup_id: &str) -> Result<(), JobError> {
    let catalog = &runner.catalog;
    let backup = match catalog.find_backup(backup_id).await {
        Ok(b) => b,
        // The tenant went (and its backups with it).
        Err(tdb_catalog::CatalogError::NotFound) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    if backup.status != BackupStatus::Pending {
        return Ok(());
    }
    let outcome = take(runner, &backup.tenant_database_id, &backup.storage_path).await;
    let recorded = match &outcome {
        Ok(taken) => {
            tracing::info!(backup = %backup.id, path = %backup.storage_path, bytes = taken.written.size, raw = taken.raw_bytes, "backup completed");
            catalog
                .finish_backup(
                    &backup.id,
                    i64::try_from(taken.written.size).unwrap_or(i64::MAX),
                    i64::try_from(taken.raw_bytes).unwrap_or(i64::MAX),
                    &taken.written.sha256,
                )
                .await
        }
        Err(e) if e.is_transient() => return Err(e.clone()),
        Err(e) => {
            tracing::warn!(backup = %backup.id, error = %e, "backup failed");
            catalog
                .fail_backup(&backup.id, &crate::client_error::scrub(e.message()))
                .await
        }
    };
    Ok(recorded?)
}

/// A finished dump: the stored object and the SQL bytes before compression.
pub struct Taken {
    pub written: Written,
    pub raw_bytes: u64,
}

/// Dumps a tenant database into the store under `path`. A dump that fails leaves no object.
pub async fn take(runner: &Runner, database_id: &str, path: &str) -> Result<Taken, JobError> {
    let catalog = &runner.catalog;
    let db = catalog
        .tenant_database(database_id)
        .await
        .map_err(|e| JobError::from(e).context("reading the tenant database"))?;
    let server = catalog
        .find_server(&db.server_id)
        .await
        .map_err(|e| JobError::from(e).context("reading the server"))?;
    dump_into(runner, &server, &db, path).await
}

/// Names and records a safety backup of `db` (taken before a rollback or a move changes it).
/// Paths have one-second resolution: a taken one means the next second.
pub(crate) async fn plan_safety(
    runner: &Runner,
    project_id: &str,
    db: &TenantDatabase,
) -> Result<PlannedBackup, JobError> {
    let catalog = &runner.catalog;
    let siblings = catalog.tenant_databases(&db.tenant_id).await?;
    let sources: Vec<Source<'_>> = siblings
        .iter()
        .map(|d| Source {
            tenant_database_id: &d.id,
            blueprint: &d.blueprint,
            engine: d.engine,
        })
        .collect();
    for _ in 0..3 {
        let all = plan(
            project_id,
            &db.tenant_id,
            &db.tenant_name,
            &sources,
            BackupKind::Safety,
            chrono::Utc::now(),
        );
        let Some(mine) = all.into_iter().find(|p| p.tenant_database_id == db.id) else {
            return Err(JobError::permanent("the tenant database is gone"));
        };
        match catalog.create_backups(&[mine.as_new()]).await {
            Ok(()) => return Ok(mine),
            Err(tdb_catalog::CatalogError::Conflict(_)) => {
                tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(JobError::transient("could not name the safety backup"))
}

/// Takes the safety backup `planned` names and records its end (completed, or failed).
pub(crate) async fn take_safety(
    runner: &Runner,
    server: &Server,
    db: &TenantDatabase,
    planned: &PlannedBackup,
) -> Result<(), JobError> {
    let catalog = &runner.catalog;
    match dump_into(runner, server, db, &planned.storage_path).await {
        Ok(taken) => Ok(catalog
            .finish_backup(
                &planned.id,
                i64::try_from(taken.written.size).unwrap_or(i64::MAX),
                i64::try_from(taken.raw_bytes).unwrap_or(i64::MAX),
                &taken.written.sha256,
            )
            .await?),
        Err(e) => {
            let _ = catalog.fail_backup(&planned.id, e.message()).await;
            Err(e.context("taking the safety backup"))
        }
    }
}

pub(crate) async fn dump_into(
    runner: &Runner,
    server: &Server,
    db: &TenantDatabase,
    path: &str,
) -> Result<Taken, JobError> {
    let engine = runner.engine(db.engine)?;
    let owner = owner_access(&runner.master_key, server, db)?;
    let dump = engine.dump(&owner).await?;
    let raw = Arc::new(AtomicU64::new(0));
    let counted = Counting {
        inner: dump.output,
        count: raw.clone(),
    };
    let mut gzip = GzipEncoder::new(BufReader::with_capacity(256 * 1024, counted));
    let written = runner.store.put_stream(path, &mut gzip).await;
    // Closes pg_dump's output first: after a failed upload it would otherwise block on a full
    // pipe and never finish.
    drop(gzip);
    let finished = dump.finish.await;
    match (written, finished) {
        (Ok(written), Ok(())) => Ok(Taken {
            written,
            raw_bytes: raw.load(Ordering::Relaxed),
        }),
        (written, finished) => {
            if written.is_ok() {
                // The dump broke off: what was stored is not a whole backup.
                let _ = runner.store.delete(path).await;
            }
            Err(match (finished, written) {
                (Err(e), _) => e.into(),
                (_, Err(e)) => e.into(),
                _ => JobError::permanent("the dump failed"),
            })
        }
    }
}

/// Counts the bytes read through it.
struct Counting {
    inner: Box<dyn AsyncRead + Send + Unpin>,
    count: Arc<AtomicU64>,
}

impl AsyncRead for Counting {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = (buf.filled().len() - before) as u64;
        self.count.fetch_add(n, Ordering::Relaxed);
        polled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_the_spec_and_stay_apart() {
        let at = DateTime::parse_from_rfc3339("2026-02-15T14:30:00Z")
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default();
        let one = plan(
            "tdb_2abf90d3",
            "tnt_1",
            "acme",
            &[Source {
                tenant_database_id: "d1",
                blueprint: "app",
                engine: Engine::Postgresql,
            }],
            BackupKind::Manual,
            at,
        );
        assert_eq!(
            one[0].storage_path,
            "postgresql/manual/2026-02-15T14-30-00/tdb_2abf90d3_tenant_acme.sql.gz"
        );
        assert_eq!(one[0].taken_at, "2026-02-15T14-30-00");
        let two = plan(
            "p",
            "t",
            "acme",
            &[
                Source {
                    tenant_database_id: "d1",
                    blueprint: "app",
                    engine: Engine::Postgresql,
                },
                Source {
                    tenant_database_id: "d2",
                    blueprint: "billing",
                    engine: Engine::Postgresql,
                },
            ],
            BackupKind::Scheduled,
            at,
        );
        assert_eq!(
            two[0].storage_path,
            "postgresql/scheduled/2026-02-15T14-30-00/p_tenant_acme__app.sql.gz"
        );
        assert_ne!(two[0].storage_path, two[1].storage_path);
        let redis = plan(
            "p",
            "t",
            "acme",
            &[Source {
                tenant_database_id: "d3",
                blueprint: "cache",
                engine: Engine::Redis,
            }],
            BackupKind::Manual,
            at,
        );
        assert_eq!(
            redis[0].storage_path,
            "redis/manual/2026-02-15T14-30-00/p_tenant_acme.resp.gz"
        );
    }

    #[test]
    fn policies_fill_in_and_find_their_slot() {
        let defaults = BackupPolicy::default();
        let stored = StoredPolicy {
            daily_at: Some("22:15:30".into()),
            keep_count: Some(3),
            ..StoredPolicy::default()
        };
        let p = defaults.with(&stored);
        assert_eq!(p.keep_count, 3);
        assert_eq!(p.keep_days, defaults.keep_days);
        assert!(p.validate().is_ok());
        let now = DateTime::parse_from_rfc3339("2026-11-22T10:00:00Z")
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default();
        assert_eq!(
            p.last_slot(now).map(|s| s.to_rfc3339()),
            Some("2026-11-21T22:15:30+00:00".into())
        );
        let bad = BackupPolicy {
            daily_at: "25:00".into(),
            ..defaults.clone()
        };
        assert!(bad.validate().is_err_and(|e| e.contains("daily_at")));
        let bad = BackupPolicy {
            keep_count: 0,
            ..defaults
        };
        assert!(bad.validate().is_err_and(|e| e.contains("keep_count")));
    }
}
