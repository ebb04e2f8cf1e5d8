//! API keys of the caller's project: list, create (with role and scope), revoke.

use axum::extract::State;
use chrono::Utc;
use tdb_catalog::CatalogError;
use tdb_catalog::api_keys::ApiKey;
use tdb_core::{KeyRole, ResourceName, ScopeType};
use tdb_types::{CreateApiKey, CreatedKey, KeyItem, KeyList, Message};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::envelope::{ApiError, ApiResult, Reply};
use crate::extract::{ApiJson, ApiPath, Auth};
use crate::mint::MintedKey;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_keys, create_key))
        .routes(routes!(revoke_key))
}

/// The most scope values one key may name.
const MAX_SCOPE_VALUES: usize = 100;
const MAX_KEY_NAME_CHARS: usize = 63;

fn key_item(k: ApiKey) -> Result<KeyItem, ApiError> {
    Ok(KeyItem {
        role: k.role,
        scope_type: k.scope_type,
        id: k.id,
        name: k.name,
        prefix: k.prefix,
        scope_values: k.scope_values,
        created_at: k.created_at,
        last_used_at: k.last_used_at,
        expires_at: k.expires_at,
    })
}

/// The project's live keys (never their secrets); expired ones are left out.
#[utoipa::path(get, path = "/apikeys", tag = "apikeys",
    responses((status = 200, body = KeyList), (status = 401)))]
async fn list_keys(State(state): State<AppState>, auth: Auth) -> ApiResult<KeyList> {
    let api_keys = state
        .catalog
        .list_api_keys(&auth.project_id)
        .await?
        .into_iter()
        .map(key_item)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Reply::ok(KeyList {
        count: api_keys.len(),
        api_keys,
    }))
}

struct ValidKey {
    name: String,
    role: KeyRole,
    scope_type: ScopeType,
    scope_values: Vec<String>,
}

fn validate(req: CreateApiKey) -> Result<ValidKey, ApiError> {
    let name = req.name.unwrap_or_else(|| "api key".into());
    if name.is_empty()
        || name.chars().count() > MAX_KEY_NAME_CHARS
        || name.chars().any(char::is_control)
    {
        return Err(ApiError::field(
            "name",
            format!("must be 1 to {MAX_KEY_NAME_CHARS} characters without control characters"),
        ));
    }
    let role = match req.role {
        Some(r) => r.parse().map_err(|e| ApiError::field("role", e))?,
        None => KeyRole::Admin,
    };
    let scope_type = match req.scope_type {
        Some(s) => s.parse().map_err(|e| ApiError::field("scope_type", e))?,
        None => ScopeType::Project,
    };
    let scope_values = req.scope_values.unwrap_or_default();
    match scope_type {
        ScopeType::Project if !scope_values.is_empty() => {
            return Err(ApiError::field(
                "scope_values",
                "must be empty when scope_type is 'project'",
            ));
        }
        ScopeType::Workspace | ScopeType::Tenant if scope_values.is_empty() => {
            return Err(ApiError::field(
                "scope_values",
                format!("must name at least one {scope_type}"),
            ));
        }
        _ => {}
    }
    if scope_values.len() > MAX_SCOPE_VALUES {
        return Err(ApiError::field(
            "scope_values",
            format!("must name at most {MAX_SCOPE_VALUES} resources"),
        ));
    }
    for value in &scope_values {
        ResourceName::parse(value)
            .map_err(|e| ApiError::field("scope_values", format!("'{value}' {e}")))?;
    }
    Ok(ValidKey {
        name,
        role,
        scope_type,
        scope_values,
    })
}

/// Creates a key for the current project.
#[utoipa::path(post, path = "/apikeys", tag = "apikeys", request_body = CreateApiKey,
    responses((status = 201, body = CreatedKey), (status = 400), (status = 403)))]
async fn create_key(
    State(state): State<AppState>,
    auth: Auth,
    ApiJson(req): ApiJson<CreateApiKey>,
) -> ApiResult<CreatedKey> {
    auth.require_project_admin()?;
    let valid = validate(req)?;
    let key = MintedKey::new(
        &valid.name,
        valid.role,
        valid.scope_type,
        valid.scope_values,
    );
    state
        .catalog
        .create_api_key(&auth.project_id, &key.record())
        .await?;
    let item = KeyItem {
        id: key.id,
        name: key.name,
        prefix: key.secret.prefix,
        role: key.role,
        scope_type: key.scope_type,
        scope_values: key.scope_values,
        created_at: Utc::now(),
        last_used_at: None,
        expires_at: key.expires_at,
    };
    Ok(Reply::created(CreatedKey {
        key: item,
        api_key: key.secret.plaintext,
        message: "API key created. Save it - it won't be shown again!".into(),
    }))
}

/// Revokes a key; it is refused from the next request on.
#[utoipa::path(delete, path = "/apikeys/{id}", tag = "apikeys",
    params(("id" = String, Path, description = "key id")),
    responses((status = 200, body = Message), (status = 404)))]
async fn revoke_key(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Message> {
    auth.require_project_admin()?;
    match state.catalog.revoke_api_key(&auth.project_id, &id).await {
        Ok(()) => Ok(Reply::ok(Message {
            message: format!("API key '{id}' revoked"),
        })),
        Err(CatalogError::NotFound) => {
            Err(ApiError::not_found(format!("API key '{id}' not found")))
        }
        Err(e) => Err(ApiError::from_catalog(e, "API key")),
    }
}
