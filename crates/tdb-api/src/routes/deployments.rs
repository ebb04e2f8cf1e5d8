//! Deployments: fold a workspace's pending DDL into a new blueprint version (or pick an existing
//! one) and roll it out to tenants through a durable job.

use axum::extract::State;
use tdb_catalog::CatalogError;
use tdb_catalog::deployments::{Deployment, NewDeployment, NewVersion};
use tdb_core::keyrules::KeyRules;
use tdb_core::{KeyRole, ids};
use tdb_types::deployments::{
    CreateDeployment, CreatedDeployment, DeploymentDetail, DeploymentList, DeploymentSummary,
    TenantResult,
};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::envelope::{ApiError, ApiResult, Reply};
use crate::extract::{ApiJson, ApiPath, Auth};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_deployments, create_deployment))
        .routes(routes!(get_deployment))
}

fn summary(d: &Deployment) -> DeploymentSummary {
    DeploymentSummary {
        id: d.id.clone(),
        blueprint_name: d.blueprint_name.clone(),
        version: d.version,
        status: d.status,
        dry_run: d.dry_run_statements.is_some(),
        tenants_total: d.tenants_total,
        tenants_completed: d.tenants_completed,
        tenants_failed: d.tenants_failed,
        created_at: d.created_at,
        finished_at: d.finished_at,
    }
}

/// The project's deployments, newest first.
#[utoipa::path(get, path = "/deployments", tag = "deployments", responses((status = 200, body = DeploymentList)))]
async fn list_deployments(State(state): State<AppState>, auth: Auth) -> ApiResult<DeploymentList> {
    auth.require_project_scope()?;
    let list: Vec<DeploymentSummary> = state
        .catalog
        .list_deployments(&auth.project_id)
        .await?
        .iter()
        .map(summary)
        .collect();
    Ok(Reply::ok(DeploymentList {
        count: list.len(),
        deployments: list,
    }))
}

/// Starts a deployment; poll `GET /deployments/{id}` for progress.
#[utoipa::path(post, path = "/deployments", tag = "deployments", request_body = CreateDeployment,
    responses((status = 201, body = CreatedDeployment), (status = 400), (status = 404)))]
async fn create_deployment(
    State(state): State<AppState>,
    auth: Auth,
    ApiJson(req): ApiJson<CreateDeployment>,
) -> ApiResult<CreatedDeployment> {
    auth.require_role(KeyRole::Admin)?;
    auth.require_project_scope()?;
    let bp = state
        .catalog
        .find_blueprint(&auth.project_id, &req.blueprint_name)
        .await
        .map_err(|e| match e {
            CatalogError::NotFound => {
                ApiError::not_found(format!("blueprint '{}' not found", req.blueprint_name))
            }
            other => other.into(),
        })?;
    let dry_run = req.dry_run.unwrap_or(false);
    let ws = state
        .catalog
        .find_workspace(&auth.project_id, &bp.name)
        .await?;
    let rules_pending = key_rules_pending(&state, &bp, &ws).await?;
    let pending = state.catalog.pending_ddl(&bp.id).await?;
    let statements: Vec<String> = pending.iter().map(|p| p.statement.clone()).collect();
    let pending_ids: Vec<i64> = pending.iter().map(|p| p.id).collect();
    let (version, creates) = match (req.version.map(|v| v.0), dry_run) {
        (Some(v), _) if v < 1 || v > bp.current_version => {
            return Err(ApiError::field(
                "version",
                format!(
                    "blueprint '{}' has versions 1 to {}",
                    bp.name, bp.current_version
                ),
            ));
        }
        (Some(v), false) => (v, false),
        (Some(_), true) => {
            return Err(ApiError::field(
                "version",
                "a dry run tries the pending changes; leave version out",
            ));
        }
        (None, true) if statements.is_empty() && rules_pending => {
            return Err(ApiError::bad_request(
                "nothing to try: rules for keys have no dry run; deploy them",
            ));
        }
        (None, true) if statements.is_empty() => {
            return Err(ApiError::bad_request(
                "nothing to try: the workspace has no pending changes",
            ));
        }
        (None, true) => (bp.current_version + 1, false),
        (None, false) if !statements.is_empty() || rules_pending => (bp.current_version + 1, true),
        (None, false) if bp.current_version == 0 => {
            return Err(ApiError::bad_request(
                "nothing to deploy: the workspace has no pending changes",
            ));
        }
        (None, false) => (bp.current_version, false),
    };
    let databases = state.catalog.blueprint_databases(&bp.id).await?;
    let targets: Vec<(String, String)> = match (&req.tenant_ids, req.deploy_all) {
        (Some(_), Some(true)) => {
            return Err(ApiError::field(
                "tenant_ids",
                "give tenant_ids or deploy_all, not both",
            ));
        }
        (Some(names), _) => {
            let mut picked = Vec::new();
            for name in names {
                let db = databases
                    .iter()
                    .find(|d| &d.tenant_name == name)
                    .ok_or_else(|| {
                        ApiError::field(
                            "tenant_ids",
                            format!("tenant '{name}' has no '{}' database", bp.name),
                        )
                    })?;
                picked.push((db.id.clone(), db.tenant_name.clone()));
            }
            picked
        }
        (None, _) => databases
            .iter()
            .map(|d| (d.id.clone(), d.tenant_name.clone()))
            .collect(),
    };
    let id = ids::new_id("dep");
    let new_version = creates.then_some(NewVersion {
        statements: &statements,
        pending_ids: &pending_ids,
        settings: &ws.settings.0,
    });
    state
        .catalog
        .create_deployment(&NewDeployment {
            id: &id,
            project_id: &auth.project_id,
            blueprint_id: &bp.id,
            version,
            new_version,
            dry_run_statements: dry_run.then_some(statements.as_slice()),
            targets: &targets,
        })
        .await?;
    Ok(Reply::created(CreatedDeployment {
        id,
        status: tdb_core::DeploymentStatus::Pending,
        blueprint_name: bp.name,
        version,
        dry_run,
        tenants_total: targets.len(),
        statements: if creates || dry_run {
            statements.len()
        } else {
            0
        },
    }))
}

/// Whether a Redis workspace's rules for keys differ from those of its blueprint's latest
/// version (a version carries them to tenants, as it carries DDL).
async fn key_rules_pending(
    state: &AppState,
    bp: &tdb_catalog::blueprints::Blueprint,
    ws: &tdb_catalog::workspaces::Workspace,
) -> Result<bool, ApiError> {
    if ws.engine != tdb_core::Engine::Redis {
        return Ok(false);
    }
    let latest = state
        .catalog
        .version_settings(&bp.id, bp.current_version)
        .await?
        .map(|settings| KeyRules::from_json(&settings))
        .unwrap_or_default();
    let now = KeyRules::from_json(&ws.settings.0);
    Ok(now != latest || bp.current_version == 0)
}

/// A deployment with per-tenant status, duration and error.
#[utoipa::path(get, path = "/deployments/{id}", tag = "deployments", params(("id" = String, Path)),
    responses((status = 200, body = DeploymentDetail), (status = 404)))]
async fn get_deployment(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<DeploymentDetail> {
    auth.require_project_scope()?;
    let d = state
        .catalog
        .find_deployment(&id)
        .await
        .ok()
        .filter(|d| d.project_id == auth.project_id)
        .ok_or_else(|| ApiError::not_found(format!("deployment '{id}' not found")))?;
    let results = state
        .catalog
        .deployment_results(&d.id)
        .await?
        .into_iter()
        .map(|r| TenantResult {
            tenant_id: r.tenant_name,
            status: r.status,
            duration: r.duration_ms.map(|ms| format!("{ms}ms")),
            error: r.error,
        })
        .collect();
    Ok(Reply::ok(DeploymentDetail {
        summary: summary(&d),
        results,
        started_at: d.started_at,
    }))
}
