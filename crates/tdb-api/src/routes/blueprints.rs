//! Blueprints: the versioned schemas of tenant-mode workspaces.

use axum::extract::State;
use tdb_catalog::CatalogError;
use tdb_catalog::blueprints::Blueprint;
use tdb_types::{BlueprintDetail, BlueprintItem, BlueprintList, VersionItem, VersionList};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::envelope::{ApiError, ApiResult, Reply};
use crate::extract::{ApiPath, Auth};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_blueprints))
        .routes(routes!(get_blueprint))
        .routes(routes!(list_versions))
}

fn blueprint_item(b: Blueprint) -> BlueprintItem {
    BlueprintItem {
        workspace_id: b.name.clone(),
        name: b.name,
        database: b.engine,
        current_version: b.current_version,
        tenant_count: b.tenant_count,
    }
}

/// The project's blueprints.
#[utoipa::path(get, path = "/blueprints", tag = "blueprints",
    responses((status = 200, body = BlueprintList)))]
async fn list_blueprints(State(state): State<AppState>, auth: Auth) -> ApiResult<BlueprintList> {
    let blueprints: Vec<BlueprintItem> = state
        .catalog
        .list_blueprints(&auth.project_id)
        .await?
        .into_iter()
        .filter(|b| auth.sees_workspace(&b.name))
        .map(blueprint_item)
        .collect();
    Ok(Reply::ok(BlueprintList {
        count: blueprints.len(),
        blueprints,
    }))
}

async fn find(state: &AppState, auth: &Auth, name: &str) -> Result<Blueprint, ApiError> {
    auth.require_workspace(name)?;
    state
        .catalog
        .find_blueprint(&auth.project_id, name)
        .await
        .map_err(|e| match e {
            CatalogError::NotFound => ApiError::not_found(format!("blueprint '{name}' not found")),
            other => other.into(),
        })
}

/// A blueprint with the DDL of its current version.
#[utoipa::path(get, path = "/blueprints/{name}", tag = "blueprints",
    params(("name" = String, Path)), responses((status = 200, body = BlueprintDetail), (status = 404)))]
async fn get_blueprint(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<BlueprintDetail> {
    let b = find(&state, &auth, &name).await?;
    let schema = state
        .catalog
        .blueprint_schema(&b.id, b.current_version)
        .await?;
    Ok(Reply::ok(BlueprintDetail {
        item: blueprint_item(b),
        schema,
    }))
}

/// Every deployed version, newest first.
#[utoipa::path(get, path = "/blueprints/{name}/versions", tag = "blueprints",
    params(("name" = String, Path)), responses((status = 200, body = VersionList), (status = 404)))]
async fn list_versions(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<VersionList> {
    let b = find(&state, &auth, &name).await?;
    let versions: Vec<VersionItem> = state
        .catalog
        .blueprint_versions(&b.id)
        .await?
        .into_iter()
        .map(|v| VersionItem {
            version: v.version,
            ddl_count: v.statements.len(),
            statements: v.statements,
            deployed_at: v.deployed_at,
        })
        .collect();
    Ok(Reply::ok(VersionList {
        count: versions.len(),
        versions,
    }))
}
