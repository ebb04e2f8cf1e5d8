//! Tenant operations behind the handlers: provisioning a tenant's databases from blueprints at
//! their current version, dropping them, and the connection details handed to applications.

use tdb_catalog::blueprints::Blueprint;
use tdb_catalog::tenants::{NewTenantDatabase, TenantDatabase};
use tdb_core::{ErrorCode, ids, secrets};
use tdb_engines::TenantSpec;
use tdb_jobs::access::{self, app_aad, owner_aad, read_aad};

use crate::AppState;
use crate::envelope::ApiError;
use crate::workspace::{Settings, engine_error};

/// One database of a new tenant, resolved and validated.
pub struct Planned {
    pub blueprint: Blueprint,
    pub connection_limit: u32,
}

struct Made {
    id: String,
    physical_db: String,
    owner_role: String,
    owner_password: String,
    app_role: String,
    app_password: String,
    read_role: String,
    read_password: String,
    server_id: String,
    owner_sealed: Vec<u8>,
    app_sealed: Vec<u8>,
    read_sealed: Vec<u8>,
}

fn secret_err(e: tdb_core::secrets::SecretError) -> ApiError {
    ApiError::internal(e)
}

/// Records the tenant, creates each database on a shared server and brings it to its
/// blueprint's current version. On any failure everything made so far is removed.
pub async fn provision(
    state: &AppState,
    project_id: &str,
    name: &str,
    planned: &[Planned],
) -> Result<Vec<TenantDatabase>, ApiError> {
    let region = state.config.default_region().to_string();
    let mut made = Vec::new();
    for p in planned {
        let server = state
            .catalog
            .place_shared(&p.blueprint.engine, &region)
            .await?
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::ServiceUnavailable,
                    format!("no shared server in region '{region}'"),
                )
            })?;
        let id = ids::new_id("tdb");
        let suffix = id[4..].to_string();
        let owner_password = secrets::new_password("");
        let app_password = secrets::new_password("");
        let read_password = secrets::new_password("");
        made.push(Made {
            physical_db: format!("tdb_t_{suffix}"),
            owner_role: format!("tdb_to_{suffix}"),
            app_role: format!("tdb_ta_{suffix}"),
            read_role: format!("tdb_tr_{suffix}"),
            owner_sealed: state
                .master_key
                .seal(owner_password.as_bytes(), &owner_aad(&id)),
            app_sealed: state
                .master_key
                .seal(app_password.as_bytes(), &app_aad(&id)),
            read_sealed: state
                .master_key
                .seal(read_password.as_bytes(), &read_aad(&id)),
            owner_password,
            read_password,
            app_password,
            server_id: server.id,
            id,
        });
    }
    let tenant_id = ids::new_id("tnt");
    let rows: Vec<NewTenantDatabase<'_>> = made
        .iter()
        .zip(planned)
        .map(|(m, p)| NewTenantDatabase {
            id: &m.id,
            blueprint_id: &p.blueprint.id,
            server_id: &m.server_id,
            isolation_level: 1,
            region: &region,
            physical_db: &m.physical_db,
            owner_role: &m.owner_role,
            owner_secret: &m.owner_sealed,
            app_role: &m.app_role,
            app_secret: &m.app_sealed,
            read_role: &m.read_role,
            read_secret: &m.read_sealed,
        })
        .collect();
    match state
        .catalog
        .create_tenant(&tenant_id, project_id, name, &rows)
        .await
    {
        Err(tdb_catalog::CatalogError::Conflict(_)) => {
            return Err(ApiError::conflict(format!(
                "tenant '{name}' already exists"
            )));
        }
        other => other?,
    }
    let databases = state.catalog.tenant_databases(&tenant_id).await?;
    for (m, p) in made.iter().zip(planned) {
        if let Err(e) = build_one(state, m, p).await {
            drop_databases(state, &databases).await;
            let _ = state.catalog.delete_tenant(&tenant_id).await;
            return Err(e);
        }
    }
    state
        .catalog
        .move_tenant(&tenant_id, &["provisioning"], "ready")
        .await?;
    Ok(state.catalog.tenant_databases(&tenant_id).await?)
}

async fn build_one(state: &AppState, m: &Made, p: &Planned) -> Result<(), ApiError> {
    let server = state.catalog.find_server(&m.server_id).await?;
    let admin = access::admin_endpoint(&state.master_key, &server).map_err(secret_err)?;
    let spec = TenantSpec {
        name: &m.physical_db,
        owner_role: &m.owner_role,
        owner_password: &m.owner_password,
        app_role: &m.app_role,
        app_password: &m.app_password,
        read_role: &m.read_role,
        read_password: &m.read_password,
        connection_limit: p.connection_limit,
    };
    let engine = &state.engines.postgres;
    engine
        .create_tenant_database(&admin, &spec)
        .await
        .map_err(crate::workspace::admin_error)?;
    let version = p.blueprint.current_version;
    if version > 0 {
        let statements = state
            .catalog
            .blueprint_schema(&p.blueprint.id, version)
            .await?;
        let owner = tdb_engines::DatabaseAccess {
            host: server.host.clone(),
            port: u16::try_from(server.port).unwrap_or(5432),
            database: m.physical_db.clone(),
            user: m.owner_role.clone(),
            password: m.owner_password.clone(),
        };
        engine
            .migrate(&owner, 0, &statements, version, false)
            .await
            .map_err(engine_error)?;
        state.catalog.set_database_version(&m.id, version).await?;
    }
    Ok(())
}

/// Drops each database and its roles; failures are logged (the caller is already failing or
/// deleting, and DROP … IF EXISTS makes a retry safe).
pub async fn drop_databases(state: &AppState, databases: &[TenantDatabase]) {
    for db in databases {
        let dropped = async {
            let server = state.catalog.find_server(&db.server_id).await?;
            let admin = access::admin_endpoint(&state.master_key, &server).map_err(secret_err)?;
            state
                .engines
                .postgres
                .drop_database(&admin, &db.physical_db, &db.roles())
                .await
                .map_err(engine_error)
        };
        if let Err(e) = dropped.await {
            tracing::error!(database = %db.id, error = %e.message, "dropping a tenant database failed");
        }
    }
}

/// The connection limit a blueprint's tenants get: its workspace's `max_connections`.
pub async fn connection_limit(state: &AppState, blueprint: &Blueprint) -> Result<u32, ApiError> {
    let ws = state
        .catalog
        .find_workspace(&blueprint.project_id, &blueprint.name)
        .await?;
    Ok(Settings::from_json(&ws.settings.0).max_connections)
}

/// A tenant-scoped proxy login with row privileges (API.md deviation 2).
pub async fn mint_credential(
    state: &AppState,
    project_id: &str,
    tenant: &str,
) -> Result<(String, String), ApiError> {
    mint_role_credential(state, project_id, tenant, "write").await
}

/// A tenant-scoped proxy login with `role` (`write`: rows; `read`: SELECT only).
pub async fn mint_role_credential(
    state: &AppState,
    project_id: &str,
    tenant: &str,
    role: &str,
) -> Result<(String, String), ApiError> {
    crate::mint::scoped_credential(state, project_id, "tenant", tenant, role, "t").await
}

/// Deletes backup objects from the store before their rows go (with a tenant or a project). A
/// failure stops the deletion, so the catalog keeps the rows and a retry finds them.
pub async fn delete_backup_objects(state: &AppState, paths: Vec<String>) -> Result<(), ApiError> {
    for path in paths {
        state.backups.delete(&path).await.map_err(|e| {
            ApiError::new(
                ErrorCode::ServiceUnavailable,
                format!("cannot delete backup '{path}': {e}"),
            )
        })?;
    }
    Ok(())
}
