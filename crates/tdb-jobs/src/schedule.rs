//! Scheduled backups and retention, on a timer: each project's daily slot queues a backup of
//! every tenant database (claimed in the catalog, so two runners never queue the same day
//! twice), backups past the project's retention are deleted from the store, then from the
//! catalog, query-log records past their age are deleted, and the copies of moved databases
//! and the originals of recovered ones kept past their undo windows are dropped.

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use crate::backup::{Source, plan};
use crate::{JobError, Runner};

pub async fn run(runner: Runner, shutdown: CancellationToken) {
    loop {
        if let Err(e) = tick(&runner).await {
            tracing::warn!(error = %e, "backup schedule pass failed");
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(runner.config.schedule_tick) => {}
        }
    }
}

/// One pass over every project, then the query log's retention.
pub async fn tick(runner: &Runner) -> Result<(), JobError> {
    backups(runner).await?;
    let expired = runner
        .catalog
        .expire_query_log(runner.config.query_log_retention_days)
        .await?;
    if expired > 0 {
        tracing::info!(records = expired, "expired query log records deleted");
    }
    crate::moves::drop_kept_sources(runner).await?;
    crate::recover::drop_expired_originals(runner).await?;
    Ok(())
}

async fn backups(runner: &Runner) -> Result<(), JobError> {
    let catalog = &runner.catalog;
    let now = Utc::now();
    for project in catalog.backup_policies().await? {
        let policy = runner.config.backup_defaults.with(&project.policy);
        if policy.schedule_enabled
            && let Some(slot) = policy.last_slot(now)
            && slot > project.last_slot.unwrap_or(project.created_at)
            && catalog.claim_backup_slot(&project.project_id, slot).await?
        {
            queue_scheduled(runner, &project.project_id).await?;
        }
        let expired = catalog
            .expired_backups(&project.project_id, policy.keep_count, policy.keep_days)
            .await?;
        for backup in expired {
            // The object first: a row without an object is visible, an object without a row
            // would be lost storage.
            match runner.store.delete(&backup.storage_path).await {
                Ok(()) => {
                    let _ = catalog.delete_backup(&backup.id).await;
                    tracing::info!(path = %backup.storage_path, "expired backup deleted");
                }
                Err(e) => {
                    tracing::warn!(path = %backup.storage_path, error = %e, "cannot delete an expired backup")
                }
            }
        }
    }
    Ok(())
}

async fn queue_scheduled(runner: &Runner, project_id: &str) -> Result<(), JobError> {
    let catalog = &runner.catalog;
    let targets = catalog.backup_targets(project_id).await?;
    let now = Utc::now();
    let mut queued = 0;
    let mut tenants: Vec<&str> = targets.iter().map(|t| t.tenant_id.as_str()).collect();
    tenants.dedup();
    for tenant_id in tenants {
        let mine: Vec<_> = targets
            .iter()
            .filter(|t| t.tenant_id == tenant_id)
            .collect();
        let sources: Vec<Source<'_>> = mine
            .iter()
            .map(|t| Source {
                tenant_database_id: &t.tenant_database_id,
                blueprint: &t.blueprint,
                engine: t.engine,
            })
            .collect();
        let planned = plan(
            project_id,
            tenant_id,
            &mine[0].tenant_name,
            &sources,
            tdb_core::BackupKind::Scheduled,
            now,
        );
        let rows: Vec<_> = planned.iter().map(|p| p.as_new()).collect();
        match catalog.create_backups(&rows).await {
            Ok(()) => queued += rows.len(),
            Err(e) => {
                tracing::warn!(project_id, tenant_id, error = %e, "cannot queue a scheduled backup")
            }
        }
    }
    tracing::info!(project_id, queued, "scheduled backups queued");
    Ok(())
}
