//! Removing what a tenant, a workspace, a provisioned database or a whole project has, on the
//! servers and in the backup store, before the catalog forgets it: a record goes only once what
//! it names is gone, so a failure leaves the catalog knowing what is left and a retry finishes.
//!
//! A project is deleted by the `project_delete` job: its keys and logins were revoked when the
//! job was queued; the job waits for the project's other jobs to end, then removes backup files,
//! rollback leftovers, tenant databases, workspaces and provisioned databases, and last the
//! project's records. Every step is idempotent, so a `kill -9` anywhere resumes where it was.

use std::time::Duration;

use tdb_catalog::autodb::Provisioned;
use tdb_catalog::jobs::Job;
use tdb_catalog::tenants::Tenant;
use tdb_catalog::workspaces::Workspace;

use crate::access::admin_endpoint;
use crate::{JobError, Runner};

/// How long the deletion waits between looks at the project's other jobs.
const OTHERS_POLL: Duration = Duration::from_millis(500);

pub async fn delete_project(runner: &Runner, job: &Job) -> Result<(), JobError> {
    let catalog = &runner.catalog;
    let project_id = job.ref_id.as_str();
    if !catalog.project_deleting(project_id).await? {
        // Finished by an earlier run (the project's row is the last thing to go).
        return Ok(());
    }
    wait_for_other_jobs(runner, project_id, job.id).await?;
    delete_backups(runner, None, project_id).await?;
    for (server_id, name) in catalog.rollback_leftovers(project_id).await? {
        let server = catalog.find_server(&server_id).await?;
        let admin = admin_endpoint(&runner.master_key, &server)?;
        runner
            .engine(server.engine)?
            .drop_database(&admin, &name, &[])
            .await
            .map_err(|e| JobError::from(e).context(format!("dropping {name}")))?;
    }
    for tenant in catalog.list_tenants(project_id).await? {
        drop_tenant(runner, &tenant).await?;
    }
    for ws in catalog.list_workspaces(project_id).await? {
        drop_workspace(runner, &ws).await?;
    }
    for p in catalog.list_provisioned(project_id).await? {
        drop_provisioned(runner, &p).await?;
    }
    catalog.finish_project_deletion(project_id).await?;
    tracing::info!(project = project_id, "project deleted");
    Ok(())
}

/// The project's other jobs must not run on while its things go (a rollback could make a
/// database after the sweep): queued ones are dropped, running ones waited for. They end soon:
/// every job has a time limit, and a deployment's migrations a timeout.
async fn wait_for_other_jobs(runner: &Runner, project_id: &str, me: i64) -> Result<(), JobError> {
    loop {
        runner
            .catalog
            .drop_idle_project_jobs(project_id, me)
            .await?;
        let (running, _) = runner.catalog.other_project_jobs(project_id, me).await?;
        if running == 0 {
            return Ok(());
        }
        tokio::time::sleep(OTHERS_POLL).await;
    }
}

/// Deletes the files of a tenant's (or, with `None`, a project's) backups from the store, then
/// their records.
pub async fn delete_backups(
    runner: &Runner,
    tenant_id: Option<&str>,
    project_id: &str,
) -> Result<(), JobError> {
    let backups = runner.catalog.backups_of(tenant_id, project_id).await?;
    for (id, path) in backups {
        runner
            .store
            .delete(&path)
            .await
            .map_err(|e| JobError::from(e).context(format!("deleting backup '{path}'")))?;
        runner.catalog.delete_backup(&id).await?;
    }
    Ok(())
}

/// Drops every database of a tenant with its roles, and its backups, then forgets the tenant
/// (its logins and query log too). Each database's record goes as soon as the server has
/// dropped it; on the first failure the rest stays recorded and the error says which.
pub async fn drop_tenant(runner: &Runner, tenant: &Tenant) -> Result<(), JobError> {
    let catalog = &runner.catalog;
    delete_backups(runner, Some(&tenant.id), &tenant.project_id).await?;
    // The copies its moves kept go first (they need the databases' records to be found).
    crate::moves::drop_sources_of(runner, &tenant.id).await?;
    crate::recover::drop_originals_of(runner, &tenant.id).await?;
    for db in catalog.tenant_databases(&tenant.id).await? {
        let server = catalog.find_server(&db.server_id).await?;
        if crate::dedicated::is_ours(runner, &server) {
            // The database goes with its own server, running or not.
            crate::dedicated::destroy(runner, &server).await?;
            catalog.forget_tenant_database(&db.id).await?;
            catalog.delete_server(&server.id).await?;
            continue;
        }
        let admin = admin_endpoint(&runner.master_key, &server)?;
        runner
            .engine(db.engine)?
            .drop_database(&admin, &db.physical_db, &db.roles())
            .await
            .map_err(|e| {
                JobError::from(e).context(format!(
                    "the server could not drop database {} of blueprint '{}'",
                    db.physical_db, db.blueprint
                ))
            })?;
        catalog.forget_tenant_database(&db.id).await?;
    }
    catalog.delete_tenant(&tenant.id).await?;
    catalog
        .delete_scope_credentials(
            &tenant.project_id,
            tdb_core::ScopeType::Tenant,
            &tenant.name,
        )
        .await?;
    catalog
        .delete_tenant_query_log(&tenant.project_id, &tenant.name)
        .await
        .map_err(JobError::from)
}

/// Drops a workspace's database and role, then forgets the workspace (and its blueprint).
pub async fn drop_workspace(runner: &Runner, ws: &Workspace) -> Result<(), JobError> {
    let catalog = &runner.catalog;
    let server = catalog.find_server(&ws.server_id).await?;
    let admin = admin_endpoint(&runner.master_key, &server)?;
    runner
        .engine(ws.engine)?
        .drop_database(&admin, &ws.physical_db, &[&ws.owner_role])
        .await
        .map_err(|e| {
            JobError::from(e).context(format!("the server could not drop workspace '{}'", ws.name))
        })?;
    match catalog
        .delete_workspace(&ws.project_id, &ws.id, &ws.name)
        .await
    {
        Ok(()) | Err(tdb_catalog::CatalogError::NotFound) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Drops a provisioned database on its server (its sessions, data and role), then records it
/// deleted: its logins go and the proxies forget its route.
pub async fn drop_provisioned(runner: &Runner, p: &Provisioned) -> Result<(), JobError> {
    let catalog = &runner.catalog;
    let server = catalog.find_server(&p.server_id).await?;
    let admin = admin_endpoint(&runner.master_key, &server)?;
    runner
        .engine(server.engine)?
        .require_schema_tenants()?
        .drop_schema_tenant(&admin, &p.database, &p.schema_name, &p.role_name)
        .await
        .map_err(|e| {
            JobError::from(e).context(format!("the server could not drop database '{}'", p.name))
        })?;
    catalog.mark_provisioned_deleted(p).await?;
    catalog
        .notify_provision_changed(&p.project_id)
        .await
        .map_err(JobError::from)
}
