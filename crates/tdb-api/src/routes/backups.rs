//! Backups of a tenant's databases, rollbacks to them, and the project's backup policy (daily
//! schedule, retention, hourly quota of manual backups).

use axum::extract::State;
use chrono::Utc;
use tdb_catalog::CatalogError;
use tdb_catalog::backups::{Backup, StoredPolicy};
use tdb_core::{BackupStatus, ErrorCode, KeyRole, TenantStatus};
use tdb_jobs::backup::{BackupPolicy, Source, plan};
use tdb_jobs::store::StoreError;
use tdb_types::backups::{
    BackupItem, BackupList, BackupPolicyResponse, BackupStarted, PolicyPatch, RollbackRequest,
    RollbackStarted,
};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::envelope::{ApiError, ApiResult, Reply};
use crate::extract::{ApiJson, ApiPath, Auth};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_backup))
        .routes(routes!(list_backups))
        .routes(routes!(rollback))
        .routes(routes!(get_policy, patch_policy))
}

fn backup_item(b: Backup) -> BackupItem {
    BackupItem {
        kind: b.kind,
        date: b.taken_at,
        database_type: b.database_type,
        blueprint: b.blueprint,
        storage_path: b.storage_path,
        status: b.status,
        size_bytes: b.size_bytes,
        sha256: b.sha256,
        error: b.error,
        created_at: b.created_at,
        finished_at: b.finished_at,
    }
}

fn policy_response(policy: BackupPolicy, project_id: String) -> BackupPolicyResponse {
    BackupPolicyResponse {
        schedule_enabled: policy.schedule_enabled,
        daily_at: policy.daily_at,
        keep_count: policy.keep_count,
        keep_days: policy.keep_days,
        hourly_limit: policy.hourly_limit,
        project_id,
    }
}

async fn policy_of(state: &AppState, project_id: &str) -> Result<BackupPolicy, ApiError> {
    let stored = state.catalog.backup_policy(project_id).await?;
    Ok(state.backup_defaults.with(&stored))
}

/// Refuses a manual backup past the project's hourly quota, saying when the next one is allowed.
async fn check_quota(state: &AppState, auth: &Auth) -> Result<(), ApiError> {
    let limit = policy_of(state, &auth.project_id).await?.hourly_limit;
    let recent = state
        .catalog
        .recent_manual_backups(&auth.project_id)
        .await?;
    if (recent.len() as i64) < limit {
        return Ok(());
    }
    // The oldest request in the window leaves it first.
    let retry = recent
        .first()
        .map(|oldest| (*oldest + chrono::Duration::hours(1) - Utc::now()).num_seconds())
        .unwrap_or(3600)
        .clamp(1, 3600);
    Err(ApiError {
        retry_after: Some(u64::try_from(retry).unwrap_or(1)),
        ..ApiError::new(
            ErrorCode::RateLimited,
            format!("rate limit exceeded: max {limit} backup requests per hour"),
        )
    })
}

/// Backs up every database of the tenant (a durable job each); answers at once with the paths.
#[utoipa::path(post, path = "/tenants/{id}/backup", tag = "backups", params(("id" = String, Path)),
    responses((status = 200, body = BackupStarted), (status = 404),
              (status = 409), (status = 429, description = "hourly backup quota reached; Retry-After")))]
async fn create_backup(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<BackupStarted> {
    auth.require_role(KeyRole::Write)?;
    let t = super::tenants::find(&state, &auth, &name).await?;
    if !matches!(
        t.status,
        TenantStatus::Ready | TenantStatus::Suspended | TenantStatus::Restoring
    ) {
        return Err(ApiError::conflict(format!(
            "tenant '{name}' is {}; backups need it ready or suspended",
            t.status
        )));
    }
    check_quota(&state, &auth).await?;
    let databases = state.catalog.tenant_databases(&t.id).await?;
    let sources: Vec<Source<'_>> = databases
        .iter()
        .map(|d| Source {
            tenant_database_id: &d.id,
            blueprint: &d.blueprint,
            engine: d.engine,
        })
        .collect();
    let planned = plan(
        &auth.project_id,
        &t.id,
        &name,
        &sources,
        tdb_core::BackupKind::Manual,
        Utc::now(),
    );
    let rows: Vec<_> = planned.iter().map(|p| p.as_new()).collect();
    match state.catalog.create_backups(&rows).await {
        Err(CatalogError::Conflict(_)) => {
            return Err(ApiError {
                retry_after: Some(1),
                ..ApiError::conflict(format!(
                    "a backup of tenant '{name}' was started this second; try again in a second"
                ))
            });
        }
        other => other?,
    }
    let paths = planned.iter().map(|p| p.storage_path.clone()).collect();
    Ok(Reply::ok(BackupStarted {
        message: format!("Backup scheduled for tenant: {name}"),
        tenant_id: name,
        kind: tdb_core::BackupKind::Manual,
        timestamp: planned.first().map(|p| p.taken_at.clone()),
        paths,
    }))
}

/// The tenant's backups, newest first: manual, scheduled, and the safety backups rollbacks take.
#[utoipa::path(get, path = "/tenants/{id}/backups", tag = "backups", params(("id" = String, Path)),
    responses((status = 200, body = BackupList), (status = 404)))]
async fn list_backups(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<BackupList> {
    let t = super::tenants::find(&state, &auth, &name).await?;
    let backups: Vec<BackupItem> = state
        .catalog
        .tenant_backups(&t.id)
        .await?
        .into_iter()
        .map(backup_item)
        .collect();
    Ok(Reply::ok(BackupList {
        tenant_id: name,
        count: backups.len(),
        backups,
    }))
}

/// Restores one of the tenant's databases from a backup (a durable job): a safety backup first,
/// then a restore into a fresh database while the tenant keeps serving, then an atomic switch.
/// The tenant is `restoring` until it ends; `GET /tenants/{id}` shows `last_rollback`.
#[utoipa::path(post, path = "/tenants/{id}/rollback", tag = "backups", params(("id" = String, Path)),
    request_body = RollbackRequest,
    responses((status = 200, body = RollbackStarted, description = "scheduled; status restoring"), (status = 400),
              (status = 404, description = "no such backup, or its file is missing"),
              (status = 409)))]
async fn rollback(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath(name): ApiPath<String>,
    ApiJson(req): ApiJson<RollbackRequest>,
) -> ApiResult<RollbackStarted> {
    auth.require_role(KeyRole::Admin)?;
    let t = super::tenants::find(&state, &auth, &name).await?;
    if req.storage_path.trim().is_empty() {
        return Err(ApiError::field("storage_path", "is required"));
    }
    let backup = state
        .catalog
        .find_backup_by_path(&t.id, &req.storage_path)
        .await
        .map_err(|e| match e {
            CatalogError::NotFound => ApiError::not_found(format!(
                "tenant '{name}' has no backup at '{}'; see GET /tenants/{name}/backups",
                req.storage_path
            )),
            other => other.into(),
        })?;
    if backup.status != BackupStatus::Completed {
        return Err(ApiError::conflict(format!(
            "backup '{}' is {}{}; only completed backups can be restored",
            backup.storage_path,
            backup.status,
            backup
                .error
                .as_deref()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        )));
    }
    // A missing or truncated file is refused before anything changes.
    let size = match state.backups.size(&backup.storage_path).await {
        Ok(size) => size,
        Err(StoreError::Missing(_)) => {
            return Err(ApiError::not_found(format!(
                "backup file '{}' is missing from the backup store; the tenant is unchanged",
                backup.storage_path
            )));
        }
        Err(e) => return Err(ApiError::new(ErrorCode::ServiceUnavailable, e.to_string())),
    };
    if Some(size) != backup.size_bytes.and_then(|s| u64::try_from(s).ok()) {
        return Err(ApiError::conflict(format!(
            "backup file '{}' is corrupt: it has {size} bytes, {} were written; the tenant \
                 is unchanged",
            backup.storage_path,
            backup.size_bytes.unwrap_or_default()
        )));
    }
    let id = tdb_core::ids::new_id("rbk");
    let started = state
        .catalog
        .start_rollback(&id, &backup, i64::try_from(size).unwrap_or(i64::MAX))
        .await;
    match started {
        Ok(Ok(())) => {}
        Ok(Err(status)) => {
            return Err(ApiError::conflict(format!(
                "tenant '{name}' is {status}; a rollback needs it ready"
            )));
        }
        Err(CatalogError::Conflict(_)) => {
            return Err(ApiError::conflict(format!(
                "tenant '{name}' already has a rollback in progress"
            )));
        }
        Err(e) => return Err(e.into()),
    }
    Ok(Reply::ok(RollbackStarted {
        message: format!("Rollback scheduled for tenant: {name}"),
        tenant_id: name,
        status: "restoring".into(),
        rollback_id: id,
        paths: vec![backup.storage_path],
    }))
}

async fn policy_project(state: &AppState, auth: &Auth, id: &str) -> Result<String, ApiError> {
    Ok(super::projects::own_project(state, auth, id).await?.id)
}

/// The project's backup policy, defaults filled in.
#[utoipa::path(get, path = "/projects/{id}/backup-policy", tag = "backups",
    params(("id" = String, Path, description = "project id or name")),
    responses((status = 200, body = BackupPolicyResponse), (status = 404)))]
async fn get_policy(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<BackupPolicyResponse> {
    let project_id = policy_project(&state, &auth, &id).await?;
    let policy = policy_of(&state, &project_id).await?;
    Ok(Reply::ok(policy_response(policy, project_id)))
}

/// Changes the project's backup policy; fields left out keep their values.
#[utoipa::path(patch, path = "/projects/{id}/backup-policy", tag = "backups",
    params(("id" = String, Path, description = "project id or name")),
    request_body = PolicyPatch,
    responses((status = 200, body = BackupPolicyResponse, description = "the whole policy"), (status = 400), (status = 404)))]
async fn patch_policy(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath(id): ApiPath<String>,
    ApiJson(patch): ApiJson<PolicyPatch>,
) -> ApiResult<BackupPolicyResponse> {
    auth.require_role(KeyRole::Admin)?;
    let project_id = policy_project(&state, &auth, &id).await?;
    let before = state.catalog.backup_policy(&project_id).await?;
    let stored = StoredPolicy {
        schedule_enabled: patch.schedule_enabled.or(before.schedule_enabled),
        daily_at: patch.daily_at.clone().or(before.daily_at.clone()),
        keep_count: patch.keep_count.or(before.keep_count),
        keep_days: patch.keep_days.or(before.keep_days),
        hourly_limit: patch.hourly_limit.or(before.hourly_limit),
    };
    let policy = state.backup_defaults.with(&stored);
    policy.validate().map_err(ApiError::bad_request)?;
    let schedule_changed =
        stored.daily_at != before.daily_at || stored.schedule_enabled != before.schedule_enabled;
    state
        .catalog
        .set_backup_policy(&project_id, &stored, schedule_changed)
        .await?;
    Ok(Reply::ok(policy_response(policy, project_id)))
}
