//! The servers tdb places databases on, for the accounts that operate it (`operators` in the
//! configuration): every project's tenants live on them, so no one else sees them.

use axum::extract::State;
use tdb_core::ServerStatus;
use tdb_core::{ErrorCode, KeyRole};
use tdb_types::servers::{
    BackupRequested, ServerArchiveItem, ServerItem, ServerList, UpdateServer,
};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::envelope::{ApiError, ApiResult, Reply};
use crate::extract::{ApiJson, ApiPath, Auth};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_servers))
        .routes(routes!(update_server))
        .routes(routes!(request_backup))
}

/// Refuses everyone but an operator's admin key.
async fn require_operator(state: &AppState, auth: &Auth) -> Result<(), ApiError> {
    auth.require_role(KeyRole::Admin)?;
    let email = state.catalog.account_email(&auth.account_id).await?;
    match email {
        Some(e) if state.config.operators.contains(&e.to_ascii_lowercase()) => Ok(()),
        _ => Err(ApiError::new(
            ErrorCode::Forbidden,
            "servers are shown to the operators of this tdb only (`operators` in its \
             configuration)",
        )),
    }
}

/// Every server with its role, region, status, tenant count and size.
#[utoipa::path(get, path = "/servers", tag = "servers",
    responses((status = 200, body = ServerList),
              (status = 403, description = "the key is not an operator's admin key")))]
async fn list_servers(State(state): State<AppState>, auth: Auth) -> ApiResult<ServerList> {
    require_operator(&state, &auth).await?;
    Ok(Reply::ok(server_list(&state).await?))
}

async fn server_list(state: &AppState) -> Result<ServerList, ApiError> {
    let usage = state.catalog.server_usage().await?;
    let sizes = futures_util::future::join_all(usage.iter().map(|u| size_of(state, &u.server)));
    let mut archives = Vec::with_capacity(usage.len());
    for u in &usage {
        archives.push(
            state
                .catalog
                .archive_of(&u.server.id)
                .await?
                .map(|a| ServerArchiveItem {
                    stanza: a.stanza,
                    ready: a.ready,
                    recoverable_from: a.recoverable_from,
                    recoverable_to: a.recoverable_to,
                    last_full_backup_at: a.last_full_at,
                    last_backup_at: a.last_backup_at,
                    error: a.error,
                }),
        );
    }
    let servers: Vec<ServerItem> = usage
        .iter()
        .zip(sizes.await)
        .zip(archives)
        .map(|((u, size_bytes), archive)| ServerItem {
            name: u.server.name.clone(),
            engine: u.server.engine.as_str().to_string(),
            role: u.server.role,
            region: u.server.region.clone(),
            status: u.server.status,
            managed: u.server.managed,
            provisioner: u.server.provisioner.clone(),
            tenants: u.tenants,
            databases: u.databases,
            max_databases: u.server.max_databases,
            size_bytes,
            archive,
            created_at: u.server.created_at,
        })
        .collect();
    Ok(ServerList {
        count: servers.len(),
        servers,
    })
}

/// Marks a shared server `draining` (placement passes it by; what it holds stays) or `active`.
#[utoipa::path(patch, path = "/servers/{name}", tag = "servers", params(("name" = String, Path)),
    request_body = UpdateServer,
    responses((status = 200, body = ServerList, description = "every server, as changed"),
              (status = 400, description = "a status other than active or draining, or a dedicated server"),
              (status = 403), (status = 404, description = "no such server; the message names them")))]
async fn update_server(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath(name): ApiPath<String>,
    ApiJson(req): ApiJson<UpdateServer>,
) -> ApiResult<ServerList> {
    require_operator(&state, &auth).await?;
    if !matches!(req.status, ServerStatus::Active | ServerStatus::Draining) {
        return Err(ApiError::field(
            "status",
            "must be active or draining (tdb sets the others itself)",
        ));
    }
    let Some(server) = state.catalog.find_server_by_name(&name).await? else {
        let names: Vec<String> = state
            .catalog
            .list_servers()
            .await?
            .into_iter()
            .map(|s| s.name)
            .collect();
        return Err(ApiError::new(
            ErrorCode::NotFound,
            format!("no server '{name}'; servers: {}", names.join(", ")),
        ));
    };
    if server.role != tdb_core::ServerRole::Shared {
        return Err(ApiError::bad_request(format!(
            "server '{name}' is a tenant's dedicated server; placement never uses it"
        )));
    }
    state
        .catalog
        .set_server_status(&server.id, req.status)
        .await?;
    tracing::info!(server = %name, status = %req.status, "server status changed by an operator");
    Ok(Reply::ok(server_list(&state).await?))
}

/// Asks for a full base backup of the server's WAL archive now (before risky work, or to start
/// a recoverable window at once); the tdb that keeps the archive takes it within seconds.
#[utoipa::path(post, path = "/servers/{name}/backup", tag = "servers", params(("name" = String, Path)),
    responses((status = 200, body = BackupRequested),
              (status = 403), (status = 404, description = "no such server"),
              (status = 409, description = "tdb archives no WAL of this server")))]
async fn request_backup(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<BackupRequested> {
    require_operator(&state, &auth).await?;
    let Some(server) = state.catalog.find_server_by_name(&name).await? else {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            format!("no server '{name}'"),
        ));
    };
    if !state.catalog.request_base_backup(&server.id).await? {
        return Err(ApiError::conflict(format!(
            "tdb archives no WAL of server '{name}' (attached servers, or pgBackRest missing)"
        )));
    }
    Ok(Reply::ok(BackupRequested {
        message: format!("A full base backup of server '{name}' was asked for"),
        server: name,
    }))
}

/// What the server's databases take on disk; `None` when it is not running or does not answer
/// within a few seconds (one slow server does not hold up the list).
async fn size_of(state: &AppState, server: &tdb_catalog::servers::Server) -> Option<i64> {
    use tdb_core::ServerStatus;
    if !matches!(server.status, ServerStatus::Active | ServerStatus::Draining) {
        return None;
    }
    let engine = state.engines.require(server.engine).ok()?;
    let admin = tdb_jobs::access::admin_endpoint(&state.master_key, server).ok()?;
    let asked = tokio::time::timeout(std::time::Duration::from_secs(5), engine.size_bytes(&admin));
    match asked.await {
        Ok(Ok(bytes)) => i64::try_from(bytes).ok(),
        Ok(Err(e)) => {
            tracing::warn!(server = %server.name, error = %e, "could not read the server's size");
            None
        }
        Err(_) => None,
    }
}
