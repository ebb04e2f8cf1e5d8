//! Projects of the caller's account: list, create, switch (mints a key), delete, and rotation of
//! the proxy password. Another account's project is answered as absent.

use axum::extract::State;
use tdb_catalog::CatalogError;
use tdb_catalog::projects::{NewProject, Project};
use tdb_core::{ProjectName, ProjectStatus, ids};
use tdb_types::{
    CreateProject, CreatedProject, DeletedProject, ProjectItem, ProjectList, RotatedPassword,
    SwitchedProject,
};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::envelope::{ApiError, ApiResult, Reply};
use crate::extract::{ApiJson, ApiPath, Auth};
use crate::mint::{self, MintedKey};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_projects, create_project))
        .routes(routes!(delete_project))
        .routes(routes!(switch_project))
        .routes(routes!(rotate_proxy_password))
}

fn project_error(e: CatalogError, id: &str) -> ApiError {
    match e {
        CatalogError::NotFound => ApiError::not_found(format!("project '{id}' not found")),
        other => ApiError::from_catalog(other, "project"),
    }
}

/// A project of the caller's account, by id or name, for an admin key; 404 otherwise.
pub(super) async fn own_project(
    state: &AppState,
    auth: &Auth,
    id: &str,
) -> Result<Project, ApiError> {
    auth.require_project_admin()?;
    state
        .catalog
        .find_project(&auth.account_id, id)
        .await
        .map_err(|e| project_error(e, id))
}

/// As [`own_project`], for changes: a project being deleted takes none.
async fn active_project(state: &AppState, auth: &Auth, id: &str) -> Result<Project, ApiError> {
    let project = own_project(state, auth, id).await?;
    if project.status != ProjectStatus::Active {
        return Err(ApiError::conflict(format!(
            "project '{}' is being deleted",
            project.id
        )));
    }
    Ok(project)
}

/// The account's projects.
#[utoipa::path(get, path = "/projects", tag = "projects",
    responses((status = 200, body = ProjectList), (status = 401)))]
async fn list_projects(State(state): State<AppState>, auth: Auth) -> ApiResult<ProjectList> {
    let projects: Vec<ProjectItem> = state
        .catalog
        .list_projects(&auth.account_id)
        .await?
        .into_iter()
        .map(|p| ProjectItem {
            project_id: p.id,
            name: p.name,
            status: p.status,
            api_key_count: p.api_key_count,
            created_at: p.created_at,
        })
        .collect();
    Ok(Reply::ok(ProjectList {
        count: projects.len(),
        projects,
    }))
}

/// Creates a project with its first admin key and its proxy password.
#[utoipa::path(post, path = "/projects", tag = "projects", request_body = CreateProject,
    responses((status = 201, body = CreatedProject), (status = 400), (status = 409)))]
async fn create_project(
    State(state): State<AppState>,
    auth: Auth,
    ApiJson(req): ApiJson<CreateProject>,
) -> ApiResult<CreatedProject> {
    auth.require_project_admin()?;
    let name = ProjectName::parse(&req.name).map_err(|e| ApiError::field("name", e))?;
    let project_id = ids::project_id();
    let proxy = mint::proxy_password();
    let key = MintedKey::admin("default");
    let project = NewProject {
        id: &project_id,
        name: name.as_str(),
        proxy_verifier: &proxy.verifier,
        proxy_mysql_verifier: &proxy.mysql_verifier,
    };
    match state
        .catalog
        .create_project(&auth.account_id, &project, &key.record())
        .await
    {
        Ok(()) => {}
        Err(CatalogError::Conflict(_)) => {
            return Err(ApiError::conflict(format!(
                "a project named '{}' already exists",
                name.as_str()
            )));
        }
        Err(e) => return Err(ApiError::from_catalog(e, "project")),
    }
    Ok(Reply::created(CreatedProject {
        project_id,
        name: name.as_str().to_string(),
        api_key: key.secret.plaintext,
        proxy_password: proxy.plaintext,
        message:
            "Project created. Save your API key and proxy password - they won't be shown again!"
                .into(),
    }))
}

/// Switches to another project of the account (by id or name): mints an admin key for it that
/// expires after `login_key_days` (30 by default).
#[utoipa::path(post, path = "/projects/{id}/switch", tag = "projects",
    params(("id" = String, Path, description = "project id or name")),
    responses((status = 200, body = SwitchedProject), (status = 404)))]
async fn switch_project(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<SwitchedProject> {
    if auth.console {
        // Its answer holds a key, which the console's page must never see.
        return Err(ApiError::new(
            tdb_core::ErrorCode::Forbidden,
            "the console switches projects with POST /console/session/project",
        ));
    }
    let project = active_project(&state, &auth, &id).await?;
    let key = MintedKey::expiring_admin("switch", state.config.login_key_days);
    state
        .catalog
        .create_api_key(&project.id, &key.record())
        .await?;
    Ok(Reply::ok(SwitchedProject {
        project_id: project.id,
        name: project.name,
        api_key: key.secret.plaintext,
        expires_at: key.expires_at,
    }))
}

/// How long `DELETE /projects/{id}` waits for its job before answering `deleting`.
const DELETE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Deletes a project and everything in it. Its API keys and proxy logins stop working at once
/// and its tenants leave service; a durable job then drops its databases and roles on every
/// server, its backups and their files, its provisioned databases and registered connections,
/// and last its records (resumed after a crash). The answer waits a little for the job: it says
/// `deleted`, or `deleting` while the job goes on (`GET /projects` from another project shows it).
#[utoipa::path(delete, path = "/projects/{id}", tag = "projects",
    params(("id" = String, Path, description = "project id or name")),
    responses((status = 200, body = DeletedProject), (status = 404)))]
async fn delete_project(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<DeletedProject> {
    let project = own_project(&state, &auth, &id).await?;
    let job = state
        .catalog
        .begin_project_deletion(&auth.account_id, &project.id)
        .await
        .map_err(|e| project_error(e, &id))?;
    let deadline = tokio::time::Instant::now() + DELETE_WAIT;
    let mut done = false;
    while tokio::time::Instant::now() < deadline {
        if state.catalog.job_done(job).await? {
            done = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let (status, message) = if done {
        (
            "deleted",
            format!("Project '{}' deleted successfully", project.id),
        )
    } else {
        (
            "deleting",
            format!(
                "Project '{}' is being deleted: its keys no longer work, and its databases and \
                 backups are being removed",
                project.id
            ),
        )
    };
    Ok(Reply::ok(DeletedProject {
        project_id: project.id,
        status: status.into(),
        message,
    }))
}

/// Replaces the project's proxy password.
#[utoipa::path(post, path = "/projects/{id}/proxy-password", tag = "projects",
    params(("id" = String, Path, description = "project id or name")),
    responses((status = 200, body = RotatedPassword), (status = 404)))]
async fn rotate_proxy_password(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<RotatedPassword> {
    let project = active_project(&state, &auth, &id).await?;
    let proxy = mint::proxy_password();
    state
        .catalog
        .set_proxy_verifier(
            &auth.account_id,
            &project.id,
            &proxy.verifier,
            &proxy.mysql_verifier,
        )
        .await
        .map_err(|e| project_error(e, &id))?;
    Ok(Reply::ok(RotatedPassword {
        project_id: project.id,
        proxy_password: proxy.plaintext,
        message: "Proxy password rotated. Save it - it won't be shown again!".into(),
    }))
}
