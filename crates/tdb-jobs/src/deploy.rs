//! The deployment job: migrate every targeted tenant database to the deployment's version, a
//! bounded number at a time. Each database reports its own version (inside the database, updated
//! by the migration's own transaction), so a resumed job skips what already happened. A database
//! that fails is recorded with its error and the others carry on.

use std::time::Instant;

use futures_util::StreamExt;
use tdb_catalog::deployments::{Deployment, DeploymentResult};
use tdb_engines::Migration;

use crate::Runner;
use crate::access::owner_access;

const FINAL: [&str; 3] = ["completed", "completed_with_errors", "failed"];

pub async fn run(runner: &Runner, deployment_id: &str) -> Result<(), String> {
    let catalog = &runner.catalog;
    let d = catalog
        .find_deployment(deployment_id)
        .await
        .map_err(|e| e.to_string())?;
    if FINAL.contains(&d.status.as_str()) {
        return Ok(());
    }
    catalog
        .set_deployment_status(&d.id, "in_progress", None)
        .await
        .map_err(|e| e.to_string())?;
    let open: Vec<DeploymentResult> = catalog
        .deployment_results(&d.id)
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter(|r| r.status == "pending" || r.status == "in_progress")
        .collect();
    futures_util::stream::iter(open)
        .map(|r| deploy_one(runner, &d, r))
        .buffer_unordered(runner.config.deploy_parallelism.max(1))
        .collect::<Vec<()>>()
        .await;
    let d = catalog
        .find_deployment(&d.id)
        .await
        .map_err(|e| e.to_string())?;
    let status = if d.tenants_failed > 0 {
        "completed_with_errors"
    } else {
        "completed"
    };
    catalog
        .set_deployment_status(&d.id, status, None)
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!(deployment = %d.id, status, total = d.tenants_total, failed = d.tenants_failed, "deployment finished");
    Ok(())
}

async fn deploy_one(runner: &Runner, d: &Deployment, r: DeploymentResult) {
    let started = Instant::now();
    let catalog = &runner.catalog;
    let _ = catalog
        .set_result(&d.id, &r.tenant_database_id, "in_progress", None, None)
        .await;
    let outcome = migrate(runner, d, &r).await;
    let ms = i32::try_from(started.elapsed().as_millis()).unwrap_or(i32::MAX);
    let (status, error) = match &outcome {
        Ok(Some(version)) => {
            if d.dry_run_statements.is_none() {
                let _ = catalog
                    .set_database_version(&r.tenant_database_id, *version)
                    .await;
            }
            ("completed", None)
        }
        Ok(None) => ("skipped", None),
        Err(e) => ("failed", Some(e.as_str())),
    };
    if let Err(e) = catalog
        .set_result(&d.id, &r.tenant_database_id, status, Some(ms), error)
        .await
    {
        tracing::error!(deployment = %d.id, tenant = %r.tenant_name, error = %e, "recording a result failed");
    }
}

/// Migrates one database; `Ok(Some(version))` when it moved (or, in a dry run, would move),
/// `Ok(None)` when it was already at the target.
async fn migrate(
    runner: &Runner,
    d: &Deployment,
    r: &DeploymentResult,
) -> Result<Option<i32>, String> {
    let catalog = &runner.catalog;
    let db = catalog
        .tenant_database(&r.tenant_database_id)
        .await
        .map_err(|e| e.to_string())?;
    let server = catalog
        .find_server(&db.server_id)
        .await
        .map_err(|e| e.to_string())?;
    let owner = owner_access(&runner.master_key, &server, &db).map_err(|e| e.to_string())?;
    let engine = &runner.postgres;
    let from = engine
        .schema_version(&owner)
        .await
        .map_err(|e| e.to_string())?;
    let (statements, target, dry_run) = match &d.dry_run_statements {
        Some(pending) => {
            let mut all = catalog
                .statements_between(&d.blueprint_id, from, d.version - 1)
                .await
                .map_err(|e| e.to_string())?;
            all.extend(pending.iter().cloned());
            (all, d.version, true)
        }
        None if from >= d.version => {
            let _ = catalog.set_database_version(&db.id, from).await;
            return Ok(None);
        }
        None => {
            let all = catalog
                .statements_between(&d.blueprint_id, from, d.version)
                .await
                .map_err(|e| e.to_string())?;
            (all, d.version, false)
        }
    };
    match engine
        .migrate(&owner, &statements, target, dry_run)
        .await
        .map_err(|e| e.to_string())?
    {
        Migration::Applied { .. } | Migration::WouldApply { .. } => Ok(Some(target)),
        Migration::AlreadyAt(v) => {
            let _ = catalog.set_database_version(&db.id, v).await;
            Ok(None)
        }
    }
}
