//! The `tenant_create` job: builds the databases of a new tenant (recorded `provisioning` with
//! their opaque names and sealed passwords) and brings each to its blueprint's current version;
//! then the tenant is `ready`. On any failure everything made is dropped and the tenant forgotten.
//!
//! The API runs this itself under the job's lease, so a client that goes away does not stop it,
//! and a process that dies lets the lease run out: a runner then resumes the job, rebuilding from
//! scratch (a tenant being created holds no data yet). A tenant marked `failed` (its build failed,
//! or its deletion was asked for while it was being made) is only ever undone, never rebuilt:
//! every tenant ends `ready` or disappears.

use tdb_catalog::tenants::{Tenant, TenantDatabase};
use tdb_core::settings::Settings;
use tdb_engines::{EngineError, MigrationPlan, TenantSpec};

use crate::access::{admin_endpoint, app_access, owner_access, read_access};
use crate::{JobError, Runner};
use tdb_core::TenantStatus;

/// How a tenant's creation ended.
#[derive(Debug)]
pub enum Provisioned {
    Ready,
    /// Everything made was removed; the tenant is gone. Why:
    Undone(Undone),
}

#[derive(Debug)]
pub enum Undone {
    /// The server could not create a database or its roles.
    Create(EngineError),
    /// The blueprint's statements failed on the new database.
    Migrate(EngineError),
    Other(String),
}

impl std::fmt::Display for Undone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Create(e) => write!(f, "creating the database failed: {e}"),
            Self::Migrate(e) => write!(f, "applying the blueprint failed: {e}"),
            Self::Other(m) => f.write_str(m),
        }
    }
}

/// Builds (or, for a `failed` tenant, undoes) the tenant `tenant_id`. `resumed` when an earlier
/// run may have left parts behind (a runner took the job over). `Err` when the undo itself could
/// not finish: the job is run again.
pub async fn run(runner: &Runner, tenant_id: &str, resumed: bool) -> Result<Provisioned, JobError> {
    let catalog = &runner.catalog;
    let Some(tenant) = catalog.tenant_by_id(tenant_id).await? else {
        return Ok(Provisioned::Undone(Undone::Other(
            "the tenant is gone".into(),
        )));
    };
    match tenant.status {
        TenantStatus::Provisioning => {}
        TenantStatus::Failed => {
            undo(runner, &tenant).await?;
            return Ok(Provisioned::Undone(Undone::Other(
                "its creation was cancelled".into(),
            )));
        }
        _ => return Ok(Provisioned::Ready),
    }
    let databases = catalog.tenant_databases(&tenant.id).await?;
    for db in &databases {
        if let Err(why) = build(runner, &tenant, db, resumed).await {
            // From here on a crash undoes; it never builds again.
            let _ = catalog
                .move_tenant(
                    &tenant.id,
                    &[TenantStatus::Provisioning],
                    TenantStatus::Failed,
                )
                .await;
            tracing::warn!(tenant = %tenant.id, error = %why, "creating a tenant failed; undoing it");
            undo(runner, &tenant).await?;
            return Ok(Provisioned::Undone(why));
        }
    }
    catalog.mark_placed(&tenant.id).await?;
    match catalog
        .move_tenant(
            &tenant.id,
            &[TenantStatus::Provisioning],
            TenantStatus::Ready,
        )
        .await?
    {
        None => Ok(Provisioned::Ready),
        Some(TenantStatus::Failed) => {
            undo(runner, &tenant).await?;
            Ok(Provisioned::Undone(Undone::Other(
                "its deletion was asked for while it was being created".into(),
            )))
        }
        Some(_) => Ok(Provisioned::Ready),
    }
}

/// Creates one database with its roles and applies its blueprint's current version.
async fn build(
    runner: &Runner,
    tenant: &Tenant,
    db: &TenantDatabase,
    resumed: bool,
) -> Result<(), Undone> {
    let other = |e: &dyn std::fmt::Display| Undone::Other(e.to_string());
    let catalog = &runner.catalog;
    let mut server = catalog
        .find_server(&db.server_id)
        .await
        .map_err(|e| other(&e))?;
    if crate::dedicated::is_ours(runner, &server) {
        // An L2 database's own server first: made now, or started again by a resumed run.
        server = crate::dedicated::start(runner, &server)
            .await
            .map_err(|e| Undone::Other(format!("its dedicated server did not start: {e}")))?;
    }
    if resumed {
        // Whatever an interrupted run made goes first: the build starts from nothing.
        let admin = admin_endpoint(&runner.master_key, &server).map_err(|e| other(&e))?;
        runner
            .engine(db.engine)
            .map_err(|e| other(&e))?
            .drop_database(&admin, &db.physical_db, &db.roles())
            .await
            .map_err(Undone::Create)?;
    }
    let blueprint = catalog
        .find_blueprint(&tenant.project_id, &db.blueprint)
        .await
        .map_err(|e| other(&e))?;
    build_on(runner, tenant, db, &server, blueprint.current_version).await?;
    if blueprint.current_version > 0 {
        catalog
            .set_database_version(&db.id, blueprint.current_version)
            .await
            .map_err(|e| other(&e))?;
    }
    Ok(())
}

/// Creates the tenant database `db` with its roles on `server` and brings it to `version` of
/// its blueprint (a new tenant's build, a move's target).
pub(crate) async fn build_on(
    runner: &Runner,
    tenant: &Tenant,
    db: &TenantDatabase,
    server: &tdb_catalog::servers::Server,
    version: i32,
) -> Result<(), Undone> {
    let other = |e: &dyn std::fmt::Display| Undone::Other(e.to_string());
    let catalog = &runner.catalog;
    let admin = admin_endpoint(&runner.master_key, server).map_err(|e| other(&e))?;
    let owner = owner_access(&runner.master_key, server, db).map_err(|e| other(&e))?;
    let app = app_access(&runner.master_key, server, db).map_err(|e| other(&e))?;
    let read = read_access(&runner.master_key, server, db)
        .ok_or_else(|| Undone::Other("the database has no read role".into()))?
        .map_err(|e| other(&e))?;
    let engine = runner.engine(db.engine).map_err(|e| other(&e))?;
    let spec = TenantSpec {
        name: &db.physical_db,
        owner_role: &db.owner_role,
        owner_password: &owner.password,
        app_role: &db.app_role,
        app_password: &app.password,
        read_role: &read.user,
        read_password: &read.password,
        connection_limit: connection_limit(runner, tenant, db, server).await?,
    };
    engine
        .create_tenant_database(&admin, &spec)
        .await
        .map_err(Undone::Create)?;
    if engine.sql().is_none()
        && let Some(rules) = engine.key_value_settings()
    {
        return crate::forward::apply_key_rules(
            catalog,
            rules,
            &admin,
            &db.physical_db,
            &db.blueprint_id,
            version,
        )
        .await
        .map_err(|e| other(&e));
    }
    if version > 0 {
        let statements = catalog
            .blueprint_schema(&db.blueprint_id, version)
            .await
            .map_err(|e| other(&e))?;
        let plan = MigrationPlan {
            owner: &owner,
            admin: &admin,
            from: 0,
            statements: &statements,
            version,
            dry_run: false,
            timeout: runner.config.migration_timeout,
        };
        engine
            .require_sql()
            .map_err(Undone::Migrate)?
            .migrate(&plan)
            .await
            .map_err(Undone::Migrate)?;
    }
    Ok(())
}

/// Connections each role of a tenant database may hold on its server: the most any tenant
/// database may be allowed there, plus a few for tdb's own work as the role (admin queries), so
/// a tenant at its limit through the proxy leaves those free. The proxy holds each tenant to its
/// own `max_connections`; the server holds it to this, whatever the setting becomes. Without a
/// known budget, the workspace's `max_connections` (and the few).
pub(crate) async fn connection_limit(
    runner: &Runner,
    tenant: &Tenant,
    db: &TenantDatabase,
    server: &tdb_catalog::servers::Server,
) -> Result<u32, Undone> {
    if let Some(ceiling) = server.tenant_connection_ceiling() {
        return Ok(ceiling + TDB_OWN_CONNECTIONS);
    }
    let ws = runner
        .catalog
        .find_workspace(&tenant.project_id, &db.blueprint)
        .await
        .map_err(|e| Undone::Other(e.to_string()))?;
    Ok(Settings::from_json(&ws.settings.0).max_connections + TDB_OWN_CONNECTIONS)
}

/// Connections of a tenant role kept for tdb's own use of it.
const TDB_OWN_CONNECTIONS: u32 = 3;

/// Drops every database of the tenant with its roles, then forgets the tenant; the catalog keeps
/// what the server still holds, so a retry finds it.
async fn undo(runner: &Runner, tenant: &Tenant) -> Result<(), JobError> {
    crate::teardown::drop_tenant(runner, tenant).await
}
