//! Tenants: a customer's databases, created from blueprints (L1: a database on a shared server),
//! with the trash, suspension and deployment history.

use axum::extract::State;
use serde::Deserialize;
use tdb_catalog::CatalogError;
use tdb_catalog::tenants::{Tenant, TenantDatabase};
use tdb_core::routing::RoutingName;
use tdb_core::{ErrorCode, KeyRole, ResourceName, ScopeType, TenantStatus, Tier};
use tdb_types::tenants::{
    CreateCredential, CreatedCredential, CreatedTenant, CreatedTenantDatabase, DeletedTenant,
    HistoryItem, RestoredTenant, RollbackState, TenantConnection, TenantDatabaseDetail,
    TenantDatabaseItem, TenantDeployments, TenantDetail, TenantItem, TenantList, TenantState,
    TenantTransition,
};
use tdb_types::tenants::{CreateTenant, DatabaseRequest, MoveState};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::behind::{self, Standing};
use crate::compat::isolation::{self, IsolationLevel};
use crate::envelope::{ApiError, ApiResult, Reply};
use crate::extract::{ApiJson, ApiPath, ApiQuery, Auth};
use crate::tenant::{self, Planned};
use crate::workspace::display_engine;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_tenants, create_tenant))
        .routes(routes!(get_tenant, delete_tenant))
        .routes(routes!(restore_tenant))
        .routes(routes!(suspend_tenant))
        .routes(routes!(resume_tenant))
        .routes(routes!(tenant_deployments))
        .routes(routes!(create_credential))
}

const MAX_DATABASES: usize = 10;

fn engine_name(engine: &tdb_core::Engine) -> String {
    display_engine(*engine).to_string()
}

/// An engine as the reference's `GET /tenants` and `GET /tenants/{id}` name it: `postgresql`
/// (its `POST /tenants` says `PostgreSQL`, as [`engine_name`] gives).
fn engine_key(engine: &tdb_core::Engine) -> &'static str {
    engine.as_str()
}

fn connection(
    state: &AppState,
    db: &TenantDatabase,
    user: &str,
    password: &str,
) -> TenantConnection {
    let c = &state.config;
    let database = RoutingName::tenant(&db.blueprint, &db.tenant_name).to_string();
    if db.engine == tdb_core::Engine::Redis {
        // The reference's Redis login: the tenant's id, and a key (the credential's name and
        // password in one), in database 0.
        let key = redis_key(user, password);
        return TenantConnection {
            host: c.pg_public_host.clone(),
            port: c.proxy_port(db.engine),
            connection_string: c.connection_url(db.engine, &db.tenant_name, &key, "0"),
            database: "0".into(),
            username: db.tenant_name.clone(),
            password: key,
        };
    }
    TenantConnection {
        host: c.pg_public_host.clone(),
        port: c.proxy_port(db.engine),
        connection_string: c.connection_url(db.engine, user, password, &database),
        database,
        username: user.to_string(),
        password: password.to_string(),
    }
}

/// A credential as one Redis key: `AUTH` carries a user (the tenant) and a password, so the
/// credential's own name travels in the password, before the first `.` (names have none).
/// A masked password stays masked.
pub(crate) fn redis_key(user: &str, password: &str) -> String {
    if password.starts_with('•') {
        return password.to_string();
    }
    format!("{user}.{password}")
}

/// The caller's tenant `name` (scope checked), or 404.
pub(super) async fn find(state: &AppState, auth: &Auth, name: &str) -> Result<Tenant, ApiError> {
    auth.require_tenant(name)?;
    state
        .catalog
        .find_tenant(&auth.project_id, name)
        .await
        .map_err(|e| match e {
            CatalogError::NotFound => ApiError::not_found(format!("tenant '{name}' not found")),
            other => other.into(),
        })
}

/// The project's tenants with their databases; a database behind its blueprint's current
/// version carries `behind` (see `GET /tenants/{id}`).
#[utoipa::path(get, path = "/tenants", tag = "tenants", responses((status = 200, body = TenantList)))]
async fn list_tenants(State(state): State<AppState>, auth: Auth) -> ApiResult<TenantList> {
    // Tenants before their databases, as in `GET /tenants/{id}`: a tenant listed `ready` has
    // its databases' versions recorded already.
    let listed = state.catalog.list_tenants(&auth.project_id).await?;
    let databases = state
        .catalog
        .project_tenant_databases(&auth.project_id)
        .await?;
    let standing = Standing::load(&state, &auth.project_id, &databases).await?;
    let tenants: Vec<TenantItem> = listed
        .into_iter()
        .filter(|t| auth.sees_tenant(&t.name))
        .map(|t| {
            let dbs = databases
                .iter()
                .filter(|d| d.tenant_id == t.id)
                .map(|d| TenantDatabaseItem {
                    blueprint: d.blueprint.clone(),
                    database_type: engine_key(&d.engine).to_string(),
                    isolation_level: isolation::label(d.isolation_level),
                    version: d.version,
                    blueprint_version: standing.blueprint_version(d),
                    behind: standing.behind(d),
                })
                .collect();
            TenantItem {
                tenant_id: t.name,
                status: t.status,
                databases: dbs,
                created_at: t.created_at,
            }
        })
        .collect();
    Ok(Reply::ok(TenantList {
        count: tenants.len(),
        tenants,
    }))
}

/// Creates a tenant: one database per blueprint, at the blueprint's current version.
#[utoipa::path(post, path = "/tenants", tag = "tenants", request_body = CreateTenant,
    responses((status = 201, body = CreatedTenant, description = "L1: ready, with connections carrying a fresh credential; with an L2 database: provisioning, without connections"), (status = 400), (status = 403),
              (status = 409, description = "the tenant exists, or a blueprint has no deployed version yet"),
              (status = 503, description = "the server is out of space or unreachable, or the creation was interrupted (tdb finishes or undoes it)")))]
async fn create_tenant(
    State(state): State<AppState>,
    auth: Auth,
    ApiJson(req): ApiJson<CreateTenant>,
) -> ApiResult<CreatedTenant> {
    let name = ResourceName::parse(&req.tenant_id).map_err(|e| ApiError::field("tenant_id", e))?;
    auth.require_role(KeyRole::Write)?;
    auth.require_tenant(name.as_str())?;
    if req.databases.is_empty() || req.databases.len() > MAX_DATABASES {
        return Err(ApiError::field(
            "databases",
            format!("must hold 1 to {MAX_DATABASES} entries"),
        ));
    }
    let mut planned = Vec::new();
    for (i, d) in req.databases.iter().enumerate() {
        planned.push(plan(&state, &auth, i, d).await?);
    }
    let mut names: Vec<&str> = planned.iter().map(|p| p.blueprint.name.as_str()).collect();
    names.sort();
    names.dedup();
    if names.len() != planned.len() {
        return Err(ApiError::field("databases", "names a blueprint twice"));
    }
    if let Ok(existing) = state
        .catalog
        .find_tenant(&auth.project_id, name.as_str())
        .await
    {
        return Err(ApiError::conflict(
            if existing.status == TenantStatus::Deleted {
                format!(
                    "Tenant '{name}' is in trash. Use POST /tenants/{name}/restore or DELETE /tenants/{name}?hard=true"
                )
            } else {
                format!("tenant '{name}' already exists")
            },
        ));
    }
    let (databases, status) =
        match tenant::provision(&state, &auth.project_id, name.as_str(), &planned).await? {
            tenant::Created::Ready(dbs) => (dbs, TenantStatus::Ready),
            tenant::Created::Provisioning(dbs) => (dbs, TenantStatus::Provisioning),
        };
    let mut out = Vec::new();
    for db in &databases {
        // A tenant still being made gets no connection yet (as the reference answers): it
        // is reached once `GET /tenants/{id}` says `ready`, with a credential from
        // `POST /tenants/{id}/credentials` or the project's proxy password.
        let connection = match status {
            TenantStatus::Ready => {
                let (user, password) =
                    tenant::mint_credential(&state, &auth.project_id, name.as_str()).await?;
                Some(connection(&state, db, &user, &password))
            }
            _ => None,
        };
        out.push(CreatedTenantDatabase {
            blueprint: db.blueprint.clone(),
            database_type: engine_name(&db.engine),
            isolation_level: db.isolation_level,
            region: db.region.clone(),
            version: db.version,
            connection,
        });
    }
    Ok(Reply::created(CreatedTenant {
        tenant_id: name.as_str().to_string(),
        status,
        databases: out,
    }))
}

async fn plan(
    state: &AppState,
    auth: &Auth,
    i: usize,
    d: &DatabaseRequest,
) -> Result<Planned, ApiError> {
    let field = format!("databases[{i}]");
    let isolation_level = match d.isolation_level.unwrap_or(IsolationLevel::L1) {
        IsolationLevel::L1 => 1,
        IsolationLevel::L2 if auth.tier == Tier::Free => {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                "L2 dedicated isolation requires a paid plan",
            ));
        }
        IsolationLevel::L2 => 2,
    };
    let region = match &d.region {
        None => state.config.default_region().to_string(),
        Some(region) if state.config.regions.iter().any(|r| &r.zone == region) => region.clone(),
        Some(region) => {
            let zones: Vec<&str> = state
                .config
                .regions
                .iter()
                .map(|r| r.zone.as_str())
                .collect();
            return Err(ApiError::field(
                &format!("{field}.region"),
                format!(
                    "unknown region '{region}'; choose one of: {} (GET /regions)",
                    zones.join(", ")
                ),
            ));
        }
    };
    let blueprint = state
        .catalog
        .find_blueprint(&auth.project_id, &d.blueprint)
        .await
        .map_err(|e| match e {
            CatalogError::NotFound => ApiError::field(
                &format!("{field}.blueprint"),
                format!(
                    "no blueprint '{}' (control-mode workspaces have none)",
                    d.blueprint
                ),
            ),
            other => other.into(),
        })?;
    if blueprint.current_version == 0 {
        return Err(ApiError {
            field: Some(format!("{field}.blueprint")),
            ..undeployed(&blueprint.name)
        });
    }
    Ok(Planned {
        blueprint,
        isolation_level,
        region,
    })
}

/// A blueprint that was never deployed has no version to create a database at: a tenant made
/// from it would get an empty database that no deployment was ever checked against.
fn undeployed(blueprint: &str) -> ApiError {
    ApiError::conflict(format!(
        "blueprint '{blueprint}' has no deployed version yet, so a tenant created from it would \
         get an empty database; deploy it first with `tdb deployments create {blueprint}`"
    ))
    .with("blueprint", blueprint)
}

/// A tenant with its databases (passwords masked). Each database has its `version` and its
/// blueprint's (`blueprint_version`); one behind carries `behind`: by how many versions, the
/// error of the last deployment that failed on it, and the request (and CLI command) that
/// deploys the current version to it.
#[utoipa::path(get, path = "/tenants/{id}", tag = "tenants", params(("id" = String, Path)),
    responses((status = 200, body = TenantDetail), (status = 404)))]
async fn get_tenant(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<TenantDetail> {
    let t = find(&state, &auth, &name).await?;
    let user = state
        .catalog
        .credential_username(&auth.project_id, ScopeType::Tenant, &name)
        .await?
        .unwrap_or_else(|| auth.project_id.clone());
    // The status is read before the databases: a creation records each database's version
    // before it makes the tenant `ready`, so a `ready` read here is never shown at a version
    // it had not reached yet.
    let (status, last_rollback) = state.catalog.status_and_last_rollback(&t.id).await?;
    let rows = state.catalog.tenant_databases(&t.id).await?;
    let standing = Standing::load(&state, &auth.project_id, &rows).await?;
    let databases = rows
        .iter()
        .map(|db| {
            let conn = connection(&state, db, &user, "••••••••");
            TenantDatabaseDetail {
                blueprint: db.blueprint.clone(),
                database_type: engine_key(&db.engine).to_string(),
                isolation_level: isolation::label(db.isolation_level),
                region: db.region.clone(),
                connection_string: conn.connection_string.clone(),
                connection: conn,
                version: db.version,
                blueprint_version: standing.blueprint_version(db),
                behind: standing.behind(db),
            }
        })
        .collect();
    let last_rollback = last_rollback.map(|r| RollbackState {
        rollback_id: r.id,
        storage_path: r.storage_path,
        step: r.step,
        bytes_done: r.bytes_done,
        bytes_total: r.bytes_total,
        error: r.error,
        created_at: r.created_at,
        finished_at: r.finished_at,
    });
    let last_move = match state.catalog.last_move(&t.id).await? {
        Some(m) => {
            let blueprint = rows
                .iter()
                .find(|d| d.id == m.tenant_database_id)
                .map(|d| d.blueprint.clone())
                .unwrap_or_default();
            Some(MoveState {
                move_id: m.id.clone(),
                blueprint,
                step: m.step,
                method: m.method(),
                from: m.from_level,
                to: m.to_level,
                from_region: m.from_region,
                to_region: m.to_region,
                history: m.history,
                error: m.error,
                held_ms: m.held_ms,
                created_at: m.created_at,
                finished_at: m.finished_at,
            })
        }
        None => None,
    };
    let recovery = super::recover::view(&state, &name, &t.id, &rows).await?;
    Ok(Reply::ok(TenantDetail {
        tenant_id: t.name,
        status,
        databases,
        created_at: t.created_at,
        deleted_at: t.deleted_at,
        last_rollback,
        last_move,
        pitr: recovery.pitr,
        pitr_unavailable: recovery.pitr_unavailable,
        recovery_undo: recovery.recovery_undo,
        last_recovery: recovery.last_recovery,
    }))
}

#[derive(Deserialize)]
struct DeleteParams {
    hard: Option<bool>,
}

/// Moves a tenant to the trash, or with `?hard=true` drops its databases for good.
#[utoipa::path(delete, path = "/tenants/{id}", tag = "tenants",
    params(("id" = String, Path), ("hard" = Option<bool>, Query)),
    responses((status = 200, body = DeletedTenant), (status = 404), (status = 409),
              (status = 503, description = "the server refused a drop; the tenant stays in the trash with what is left")))]
async fn delete_tenant(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath(name): ApiPath<String>,
    ApiQuery(params): ApiQuery<DeleteParams>,
) -> ApiResult<DeletedTenant> {
    auth.require_role(KeyRole::Admin)?;
    let t = find(&state, &auth, &name).await?;
    let hard = params.hard == Some(true);
    if hard && t.status == TenantStatus::Provisioning {
        // Its creation job sees `failed` and removes everything it made.
        move_to(
            &state,
            &t,
            &[TenantStatus::Provisioning],
            TenantStatus::Failed,
        )
        .await?;
        return Ok(Reply::ok(DeletedTenant {
            message: format!(
                "Tenant '{name}' was being created; its creation is cancelled and everything made for it is being removed"
            ),
            tenant_id: name,
            status: Some(TenantStatus::Failed),
        }));
    }
    let busy = [
        TenantStatus::Provisioning,
        TenantStatus::Migrating,
        TenantStatus::Syncing,
        TenantStatus::Restoring,
        TenantStatus::Recovering,
    ];
    if busy.contains(&t.status) {
        return Err(ApiError::conflict(format!(
            "tenant '{name}' is {}; try again when it is done",
            t.status
        )));
    }
    if hard {
        return hard_delete(&state, &t).await;
    }
    move_to(
        &state,
        &t,
        &[
            TenantStatus::Ready,
            TenantStatus::Suspended,
            TenantStatus::Failed,
        ],
        TenantStatus::Deleted,
    )
    .await?;
    // A trashed tenant's own servers stop, their data kept for a restore. One that does not
    // stop now is not started again with tdb (the trash keeps it out).
    for server in dedicated_servers(&state, &t).await? {
        if let Err(e) = tdb_jobs::dedicated::stop(&state.jobs, &server).await {
            tracing::error!(tenant = %t.id, server = %server.name, error = %e,
                "could not stop a trashed tenant's dedicated server");
        }
    }
    Ok(Reply::ok(DeletedTenant {
        message: format!(
            "Tenant '{name}' moved to trash. Restore with POST /tenants/{name}/restore"
        ),
        tenant_id: name,
        status: Some(TenantStatus::Deleted),
    }))
}

/// Drops the tenant's databases, roles and backups for good. It leaves service first (in the
/// trash), and the catalog forgets each database only once its server has dropped it: when a
/// drop fails, the answer says so and the tenant stays in the trash, with what is left, for a
/// retry.
async fn hard_delete(state: &AppState, t: &Tenant) -> ApiResult<DeletedTenant> {
    let name = &t.name;
    if t.status != TenantStatus::Deleted {
        move_to(
            state,
            t,
            &[
                TenantStatus::Ready,
                TenantStatus::Suspended,
                TenantStatus::Failed,
            ],
            TenantStatus::Deleted,
        )
        .await?;
    }
    if let Err(e) = tdb_jobs::teardown::drop_tenant(&state.jobs, t).await {
        tracing::error!(tenant = %t.id, error = %e, "a hard delete did not finish");
        return Err(ApiError::new(
            tdb_core::ErrorCode::ServiceUnavailable,
            format!(
                "tenant '{name}' was not fully deleted: {e}. It stays in the trash with what is \
                 left; retry DELETE /tenants/{name}?hard=true"
            ),
        ));
    }
    Ok(Reply::ok(DeletedTenant {
        message: format!("Tenant '{name}' permanently deleted"),
        tenant_id: name.clone(),
        status: None,
    }))
}

async fn move_to(
    state: &AppState,
    t: &Tenant,
    from: &[TenantStatus],
    to: TenantStatus,
) -> Result<(), ApiError> {
    match state.catalog.move_tenant(&t.id, from, to).await? {
        None => Ok(()),
        Some(actual) => Err(ApiError::conflict(format!(
            "tenant '{}' is {actual}; this needs status {}",
            t.name,
            from.iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(" or ")
        ))),
    }
}

async fn transition(
    state: AppState,
    auth: Auth,
    name: String,
    from: &[TenantStatus],
    to: TenantStatus,
    verb: &str,
) -> ApiResult<TenantTransition> {
    auth.require_role(KeyRole::Write)?;
    let t = find(&state, &auth, &name).await?;
    move_to(&state, &t, from, to).await?;
    Ok(Reply::ok(TenantTransition {
        message: format!("Tenant '{name}' {verb} successfully"),
        tenant: TenantState {
            tenant_id: name,
            status: to,
        },
    }))
}

/// Restores a tenant from the trash. Deployments skip the trash, so first, while its queries are
/// still refused, each of its databases behind its blueprint is brought to the current version
/// (recorded as a deployment); one whose migration fails comes back as it was, with `behind`.
#[utoipa::path(post, path = "/tenants/{id}/restore", tag = "tenants", params(("id" = String, Path)),
    responses((status = 200, body = RestoredTenant), (status = 404), (status = 409)))]
async fn restore_tenant(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<RestoredTenant> {
    auth.require_role(KeyRole::Write)?;
    let t = find(&state, &auth, &name).await?;
    if t.status != TenantStatus::Deleted {
        return Err(ApiError::conflict(format!(
            "tenant '{name}' is {}; this needs status deleted",
            t.status
        )));
    }
    for server in dedicated_servers(&state, &t).await? {
        tdb_jobs::dedicated::start(&state.jobs, &server)
            .await
            .map_err(|e| {
                ApiError::new(
                    tdb_core::ErrorCode::ServiceUnavailable,
                    format!(
                        "tenant '{name}' stays in the trash: its server '{}' did not start ({e})",
                        server.name
                    ),
                )
            })?;
    }
    ensure_whole(&state, &t).await?;
    behind::bring_forward(&state, &t).await?;
    move_to(&state, &t, &[TenantStatus::Deleted], TenantStatus::Ready).await?;
    let rows = state.catalog.tenant_databases(&t.id).await?;
    let standing = Standing::load(&state, &auth.project_id, &rows).await?;
    let databases = rows.iter().map(|db| standing.entry(db)).collect();
    Ok(Reply::ok(RestoredTenant {
        message: format!("Tenant '{name}' restored successfully"),
        tenant: TenantState {
            tenant_id: name,
            status: TenantStatus::Ready,
        },
        databases,
    }))
}

/// The dedicated servers of the tenant's databases that this tdb's provisioner made.
async fn dedicated_servers(
    state: &AppState,
    t: &Tenant,
) -> Result<Vec<tdb_catalog::servers::Server>, ApiError> {
    let mut servers = Vec::new();
    for db in state.catalog.tenant_databases(&t.id).await? {
        let server = state.catalog.find_server(&db.server_id).await?;
        if tdb_jobs::dedicated::is_ours(&state.jobs, &server) {
            servers.push(server);
        }
    }
    Ok(servers)
}

/// A tenant in the trash comes back only with every database it had: one whose hard delete did
/// not finish may have lost some (the catalog keeps their records for the retry).
async fn ensure_whole(state: &AppState, t: &Tenant) -> Result<(), ApiError> {
    for db in state.catalog.tenant_databases(&t.id).await? {
        let server = state.catalog.find_server(&db.server_id).await?;
        let admin = crate::workspace::admin_endpoint(state, &server)?;
        let exists = state
            .engines
            .require(db.engine)
            .map_err(crate::workspace::engine_error)?
            .database_exists(&admin, &db.physical_db)
            .await
            .map_err(crate::workspace::engine_error)?;
        if !exists {
            return Err(ApiError::conflict(format!(
                "tenant '{}' cannot be restored: its hard delete did not finish and its database \
                 for blueprint '{}' is gone; finish it with DELETE /tenants/{}?hard=true",
                t.name, db.blueprint, t.name
            )));
        }
    }
    Ok(())
}

/// Suspends a ready tenant: its connections are refused.
#[utoipa::path(post, path = "/tenants/{id}/suspend", tag = "tenants", params(("id" = String, Path)),
    responses((status = 200, body = TenantTransition, description = "suspended"), (status = 404), (status = 409)))]
async fn suspend_tenant(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<TenantTransition> {
    transition(
        state,
        auth,
        name,
        &[TenantStatus::Ready],
        TenantStatus::Suspended,
        "suspended",
    )
    .await
}

/// Resumes a suspended tenant.
#[utoipa::path(post, path = "/tenants/{id}/resume", tag = "tenants", params(("id" = String, Path)),
    responses((status = 200, body = TenantTransition, description = "resumed"), (status = 404), (status = 409)))]
async fn resume_tenant(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<TenantTransition> {
    transition(
        state,
        auth,
        name,
        &[TenantStatus::Suspended],
        TenantStatus::Ready,
        "resumed",
    )
    .await
}

#[derive(Deserialize)]
struct LimitParams {
    limit: Option<i64>,
}

/// The deployments that touched this tenant, newest first.
#[utoipa::path(get, path = "/tenants/{id}/deployments", tag = "tenants",
    params(("id" = String, Path), ("limit" = Option<i64>, Query)),
    responses((status = 200, body = TenantDeployments), (status = 404)))]
async fn tenant_deployments(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath(name): ApiPath<String>,
    ApiQuery(params): ApiQuery<LimitParams>,
) -> ApiResult<TenantDeployments> {
    let t = find(&state, &auth, &name).await?;
    let limit = params.limit.unwrap_or(1000).clamp(1, 1000);
    let history: Vec<HistoryItem> = state
        .catalog
        .tenant_deployment_history(&t.id, limit)
        .await?
        .into_iter()
        .map(|(d, r)| HistoryItem {
            deployment_id: d.id,
            blueprint_name: d.blueprint_name,
            version: d.version,
            dry_run: d.dry_run_statements.is_some(),
            status: r.status,
            duration: r.duration_ms.map(|ms| format!("{ms}ms")),
            error: r.error,
            created_at: d.created_at,
        })
        .collect();
    Ok(Reply::ok(TenantDeployments {
        tenant_id: name,
        count: history.len(),
        deployments: history,
    }))
}

/// Mints another proxy login for a tenant, shown once (API.md deviation 2): `read` logins reach
/// the database as a role that can only SELECT.
#[utoipa::path(post, path = "/tenants/{id}/credentials", tag = "tenants",
    params(("id" = String, Path)),
    request_body = CreateCredential,
    responses((status = 201, body = CreatedCredential), (status = 400), (status = 404), (status = 409)))]
async fn create_credential(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath(name): ApiPath<String>,
    ApiJson(req): ApiJson<CreateCredential>,
) -> ApiResult<CreatedCredential> {
    auth.require_role(KeyRole::Admin)?;
    let role = match req.role.parse::<KeyRole>() {
        Ok(role @ (KeyRole::Read | KeyRole::Write)) => role,
        _ => {
            return Err(ApiError::field(
                "role",
                format!("role must be 'read' or 'write', not '{}'", req.role),
            ));
        }
    };
    let t = find(&state, &auth, &name).await?;
    let databases = state.catalog.tenant_databases(&t.id).await?;
    let db = match &req.blueprint {
        Some(bp) => databases
            .iter()
            .find(|d| &d.blueprint == bp)
            .ok_or_else(|| {
                ApiError::field(
                    "blueprint",
                    format!("tenant '{name}' has no database from blueprint '{bp}'"),
                )
            })?,
        None => databases
            .first()
            .ok_or_else(|| ApiError::conflict(format!("tenant '{name}' has no database")))?,
    };
    if role == KeyRole::Read && db.read_role.is_none() {
        return Err(ApiError::conflict(format!(
            "tenant '{name}' was created before read-only roles existed; it has none"
        )));
    }
    let (user, password) =
        tenant::mint_role_credential(&state, &auth.project_id, &name, role).await?;
    Ok(Reply::created(CreatedCredential {
        connection: connection(&state, db, &user, &password),
        tenant_id: name,
        role,
        username: user,
        password,
    }))
}
