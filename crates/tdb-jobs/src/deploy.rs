//! The deployment job: migrate every targeted tenant database to the deployment's version, a
//! bounded number at a time on each server, every server at once. Each database reports its own version (inside the database, updated
//! by the migration's own transaction), so a resumed job skips what already happened. A database
//! whose statements fail is recorded with the error and the others carry on; one that cannot be
//! reached stays pending, and the job runs again for it after a back-off.

use std::collections::HashMap;
use std::time::Instant;

use futures_util::StreamExt;
use tdb_catalog::deployments::{Deployment, DeploymentResult};
use tdb_catalog::servers::Server;
use tdb_engines::{Migration, MigrationPlan};

use crate::access::{admin_endpoint, owner_access};
use crate::{JobError, Runner};
use tdb_core::{DeploymentStatus, TargetStatus};

pub async fn run(runner: &Runner, deployment_id: &str) -> Result<(), JobError> {
    let catalog = &runner.catalog;
    let d = catalog.find_deployment(deployment_id).await?;
    if d.status.is_final() {
        return Ok(());
    }
    catalog
        .set_deployment_status(&d.id, DeploymentStatus::InProgress, None)
        .await?;
    let servers: HashMap<String, Server> = catalog
        .list_servers()
        .await?
        .into_iter()
        .map(|s| (s.id.clone(), s))
        .collect();
    let open: Vec<DeploymentResult> = catalog
        .deployment_results(&d.id)
        .await?
        .into_iter()
        .filter(|r| matches!(r.status, TargetStatus::Pending | TargetStatus::InProgress))
        .collect();
    // Each server migrates its own databases, `deploy_parallelism` at a time, beside the others:
    // tenants spread over more servers finish sooner.
    let placed = catalog.deployment_servers(&d.id).await?;
    let mut by_server: HashMap<String, Vec<DeploymentResult>> = HashMap::new();
    for r in open {
        let server = placed
            .get(&r.tenant_database_id)
            .cloned()
            .unwrap_or_default();
        by_server.entry(server).or_default().push(r);
    }
    let per_server = runner.config.deploy_parallelism.max(1);
    let (d, servers) = (&d, &servers);
    let groups = by_server.into_values().map(|group| {
        futures_util::stream::iter(group)
            .map(move |r| deploy_one(runner, d, servers, r))
            .buffer_unordered(per_server)
            .filter_map(|outcome| async move { outcome.err() })
            .collect::<Vec<JobError>>()
    });
    let unreachable: Vec<JobError> = futures_util::future::join_all(groups)
        .await
        .into_iter()
        .flatten()
        .collect();
    if let Some(first) = unreachable.first() {
        // Those databases stay pending; the job runs again after a back-off and takes them up.
        return Err(JobError::transient(format!(
            "{} tenant database(s) could not be reached and are tried again: {first}",
            unreachable.len()
        )));
    }
    let d = catalog.find_deployment(&d.id).await?;
    let status = if d.tenants_failed > 0 {
        DeploymentStatus::CompletedWithErrors
    } else {
        DeploymentStatus::Completed
    };
    catalog.set_deployment_status(&d.id, status, None).await?;
    tracing::info!(deployment = %d.id, %status, total = d.tenants_total, failed = d.tenants_failed, "deployment finished");
    Ok(())
}

/// Migrates one database and records its result. A failure that running again may mend (its
/// server or the catalog could not be reached) is not recorded: the database stays pending and
/// the failure is returned, so the job runs again for it.
async fn deploy_one(
    runner: &Runner,
    d: &Deployment,
    servers: &HashMap<String, Server>,
    r: DeploymentResult,
) -> Result<(), JobError> {
    let started = Instant::now();
    let catalog = &runner.catalog;
    let outcome = migrate(runner, d, servers, &r).await;
    let ms = i32::try_from(started.elapsed().as_millis()).unwrap_or(i32::MAX);
    let (status, error) = match &outcome {
        Ok(Some(version)) => {
            if d.dry_run_statements.is_none() {
                let _ = catalog
                    .set_database_version(&r.tenant_database_id, *version)
                    .await;
            }
            (TargetStatus::Completed, None)
        }
        Ok(None) => (TargetStatus::Skipped, None),
        Err(e) if e.is_transient() => {
            tracing::warn!(deployment = %d.id, tenant = %r.tenant_name, error = %e, "a tenant database could not be reached; it is tried again");
            return Err(e.clone());
        }
        Err(e) => (TargetStatus::Failed, Some(e.message())),
    };
    if let Err(e) = catalog
        .set_result(&d.id, &r.tenant_database_id, status, Some(ms), error)
        .await
    {
        tracing::error!(deployment = %d.id, tenant = %r.tenant_name, error = %e, "recording a result failed");
        return Err(JobError::from(e).context("recording a result"));
    }
    Ok(())
}

/// Migrates one database; `Ok(Some(version))` when it moved (or, in a dry run, would move),
/// `Ok(None)` when it was already at the target. The catalog's version is the first guess at
/// where the database stands; the database itself has the last word (after a crash between its
/// commit and the catalog update, they differ), and a mismatch is retried from the truth.
async fn migrate(
    runner: &Runner,
    d: &Deployment,
    servers: &HashMap<String, Server>,
    r: &DeploymentResult,
) -> Result<Option<i32>, JobError> {
    let catalog = &runner.catalog;
    let db = catalog.tenant_database(&r.tenant_database_id).await?;
    // A moving database's schema must stay as the move copied it (the move checks it again
    // before it switches); a recovering one's as the recovery brought it forward.
    if catalog.tenant_status(&db.tenant_id).await? == Some(tdb_core::TenantStatus::Recovering) {
        return Err(JobError::permanent(format!(
            "tenant '{}' is being recovered to an earlier moment; deploy to it again once that \
             is done (tdb deployments create {} --tenants {})",
            r.tenant_name, db.blueprint, r.tenant_name
        )));
    }
    if catalog.tenant_moving(&db.tenant_id).await? {
        return Err(JobError::permanent(format!(
            "tenant '{}' is moving to another server; deploy to it again once the move is done \
             (tdb deployments create {} --tenants {})",
            r.tenant_name, db.blueprint, r.tenant_name
        )));
    }
    let server = servers.get(&db.server_id).ok_or_else(|| {
        JobError::permanent(format!("server {} is not in the catalog", db.server_id))
    })?;
    let owner = owner_access(&runner.master_key, server, &db)?;
    let admin = admin_endpoint(&runner.master_key, server)?;
    let engine = runner.engine(db.engine)?;
    if engine.sql().is_none()
        && let Some(rules) = engine.key_value_settings()
    {
        return apply_key_rules(runner, d, &db, &admin, rules).await;
    }
    let sql = engine.require_sql()?;
    let dry_run = d.dry_run_statements.is_some();
    let mut from = db.version;
    for _ in 0..2 {
        if !dry_run && from >= d.version {
            let _ = catalog.set_database_version(&db.id, from).await;
            return Ok(None);
        }
        let statements = match &d.dry_run_statements {
            Some(pending) => {
                let mut all = catalog
                    .statements_between(&d.blueprint_id, from, d.version - 1)
                    .await?;
                all.extend(pending.iter().cloned());
                all
            }
            None => {
                catalog
                    .statements_between(&d.blueprint_id, from, d.version)
                    .await?
            }
        };
        let plan = MigrationPlan {
            owner: &owner,
            admin: &admin,
            from,
            statements: &statements,
            version: d.version,
            dry_run,
            timeout: runner.config.migration_timeout,
        };
        match sql.migrate(&plan).await? {
            Migration::Applied { .. } | Migration::WouldApply { .. } => return Ok(Some(d.version)),
            Migration::AlreadyAt(v) => {
                let _ = catalog.set_database_version(&db.id, v).await;
                return Ok(None);
            }
            Migration::Mismatch(actual) => {
                let _ = catalog.set_database_version(&db.id, actual).await;
                from = actual;
            }
        }
    }
    Err(JobError::transient(format!(
        "the database's version kept changing (last seen {from})"
    )))
}

/// A key-value engine's deployment: the version's rules for keys applied to the tenant's
/// namespace. Applying them again is harmless, so a crash in between only repeats it.
async fn apply_key_rules(
    runner: &Runner,
    d: &Deployment,
    db: &tdb_catalog::tenants::TenantDatabase,
    admin: &tdb_engines::AdminEndpoint,
    engine: &dyn tdb_engines::KeyValueSettings,
) -> Result<Option<i32>, JobError> {
    if d.dry_run_statements.is_some() {
        return Err(JobError::permanent(
            "rules for keys have no dry run: deploy them",
        ));
    }
    if db.version >= d.version {
        return Ok(None);
    }
    let stored = runner
        .catalog
        .version_settings(&d.blueprint_id, d.version)
        .await?
        .ok_or_else(|| {
            JobError::permanent(format!("version {} of the blueprint is gone", d.version))
        })?;
    let rules = tdb_core::keyrules::KeyRules::from_json(&stored);
    // The engine applies the first pattern that matches: most specific first.
    let mut patterns: Vec<(String, std::time::Duration)> = rules
        .patterns
        .iter()
        .map(|(glob, rule)| (glob.clone(), std::time::Duration::from_secs(rule.ttl)))
        .collect();
    patterns.sort_by(|(a, _), (b, _)| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    let settings = tdb_engines::KeySettings {
        default_ttl: rules.default_ttl.map(std::time::Duration::from_secs),
        max_keys: rules.max_keys,
        patterns,
    };
    engine
        .apply_settings(admin, &db.physical_db, &settings)
        .await?;
    Ok(Some(d.version))
}
