//! Tenant operations behind the handlers: creating a tenant's databases from blueprints at
//! their current version (a durable job that the request runs itself), and the connection
//! details handed to applications.

use tdb_catalog::blueprints::Blueprint;
use tdb_catalog::tenants::{NewTenant, NewTenantDatabase, TenantDatabase};
use tdb_core::aad::{Aad, TenantRole};
use tdb_core::{ErrorCode, KeyRole, ScopeType, ids, secrets};
use tdb_jobs::provision::{Provisioned, Undone};

use crate::AppState;
use crate::envelope::ApiError;
use crate::workspace::engine_error;

/// One database of a new tenant, resolved and validated.
pub struct Planned {
    pub blueprint: Blueprint,
}

/// The names and sealed passwords of one database to make.
struct Named {
    id: String,
    physical_db: String,
    owner_role: String,
    app_role: String,
    read_role: String,
    server_id: String,
    owner_sealed: Vec<u8>,
    app_sealed: Vec<u8>,
    read_sealed: Vec<u8>,
}

/// Records the tenant with its `tenant_create` job and runs the job here, in a task of its own
/// under the job's lease: a client that goes away does not stop it, and if this process dies a
/// runner finishes or undoes it. On failure everything made is removed and the error says why.
pub async fn provision(
    state: &AppState,
    project_id: &str,
    name: &str,
    planned: &[Planned],
) -> Result<Vec<TenantDatabase>, ApiError> {
    let region = state.config.default_region().to_string();
    let mut named = Vec::new();
    for p in planned {
        let server = state
            .catalog
            .place_shared(p.blueprint.engine, &region)
            .await?
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::ServiceUnavailable,
                    format!("no shared server in region '{region}'"),
                )
            })?;
        named.push(name_database(state, server.id));
    }
    let tenant_id = ids::new_id("tnt");
    let rows: Vec<NewTenantDatabase<'_>> = named
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
    let runner = state.jobs.clone();
    let tenant = NewTenant {
        id: &tenant_id,
        project_id,
        name,
    };
    let job = match state
        .catalog
        .create_tenant(&tenant, &rows, &runner.owner, tdb_jobs::LEASE_SECONDS)
        .await
    {
        Err(tdb_catalog::CatalogError::Conflict(_)) => {
            return Err(ApiError::conflict(format!(
                "tenant '{name}' already exists"
            )));
        }
        other => other?,
    };
    let work = {
        let tenant_id = tenant_id.clone();
        async move {
            let outcome = runner
                .under_lease(job, tdb_jobs::provision::run(&runner, &tenant_id, false))
                .await;
            let recorded = match &outcome {
                Some(Ok(_)) => runner.catalog.finish_job(job, &runner.owner).await,
                // The undo could not finish: a runner takes the job over shortly.
                Some(Err(_)) => runner.catalog.retry_job(job, &runner.owner, 1).await,
                None => Ok(()),
            };
            if let Err(e) = recorded {
                tracing::warn!(job, error = %e, "recording a tenant creation's end failed");
            }
            outcome
        }
    };
    match tokio::spawn(work).await {
        Ok(Some(Ok(Provisioned::Ready))) => Ok(state.catalog.tenant_databases(&tenant_id).await?),
        Ok(Some(Ok(Provisioned::Undone(why)))) => Err(undone_error(why)),
        Ok(Some(Err(e))) => Err(ApiError::new(
            ErrorCode::ServiceUnavailable,
            format!(
                "creating tenant '{name}' failed, and removing what was made is not finished \
                 ({e}); tdb keeps at it, so the tenant disappears on its own"
            ),
        )),
        Ok(None) | Err(_) => Err(ApiError::new(
            ErrorCode::ServiceUnavailable,
            format!(
                "creating tenant '{name}' was interrupted; tdb finishes or undoes it on its own \
                 (see GET /tenants/{name})"
            ),
        )),
    }
}

/// Opaque names and fresh sealed passwords for one database on `server_id`.
fn name_database(state: &AppState, server_id: String) -> Named {
    let id = ids::new_id("tdb");
    let suffix = id[4..].to_string();
    let seal = |role| {
        state.master_key.seal(
            secrets::new_password("").as_bytes(),
            Aad::TenantRole(&id, role),
        )
    };
    Named {
        physical_db: format!("tdb_t_{suffix}"),
        owner_role: format!("tdb_to_{suffix}"),
        app_role: format!("tdb_ta_{suffix}"),
        read_role: format!("tdb_tr_{suffix}"),
        owner_sealed: seal(TenantRole::Owner),
        app_sealed: seal(TenantRole::App),
        read_sealed: seal(TenantRole::Read),
        server_id,
        id,
    }
}

/// Why a creation was undone, as the client sees it.
fn undone_error(why: Undone) -> ApiError {
    match why {
        Undone::Create(e) => crate::workspace::admin_error(e),
        Undone::Migrate(e) => engine_error(e),
        Undone::Other(m) => ApiError::conflict(format!("the tenant was not created: {m}")),
    }
}

/// A tenant-scoped proxy login with row privileges (API.md deviation 2).
pub async fn mint_credential(
    state: &AppState,
    project_id: &str,
    tenant: &str,
) -> Result<(String, String), ApiError> {
    mint_role_credential(state, project_id, tenant, KeyRole::Write).await
}

/// A tenant-scoped proxy login with `role` (`write`: rows; `read`: SELECT only).
pub async fn mint_role_credential(
    state: &AppState,
    project_id: &str,
    tenant: &str,
    role: KeyRole,
) -> Result<(String, String), ApiError> {
    crate::mint::scoped_credential(state, project_id, ScopeType::Tenant, tenant, role, "t").await
}
