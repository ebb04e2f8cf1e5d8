//! Workspaces: create (with the database and a workspace-scoped proxy credential), list, get,
//! delete, run queries (capturing DDL), read the schema, and the pending-change queue.

use axum::extract::State;
use tdb_catalog::CatalogError;
use tdb_catalog::workspaces::NewWorkspace;
use tdb_core::aad::Aad;
use tdb_core::keyrules::KeyRules;
use tdb_core::routing::RoutingName;
use tdb_core::{
    Engine, ErrorCode, KeyRole, ResourceName, ScopeType, ServerRole, WorkspaceMode, ids, secrets,
};
use tdb_engines::DatabaseSpec;
use tdb_types::{
    Change, Connection, CreateWorkspace, CreatedWorkspace, DeletedWorkspace, DeletionDetails,
    DiffList, Message, QueryRequest, QueryResponse, SettingsPatch, SettingsResponse, SettingsSaved,
    WorkspaceDetail, WorkspaceItem, WorkspaceList, WorkspaceSettings,
};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::envelope::{ApiError, ApiResult, Reply};
use crate::extract::{ApiJson, ApiPath, Auth};
use crate::workspace::{self, Resolved, Settings, display_engine, engine_error};
use tdb_types::schema::WorkspaceSchema;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_workspaces, create_workspace))
        .routes(routes!(get_workspace, delete_workspace))
        .routes(routes!(run_queries))
        .routes(routes!(get_schema, crate::import::import_schema))
        .routes(routes!(list_diff))
        .routes(routes!(skip_ddl))
        .routes(routes!(revert_ddl))
        .routes(routes!(get_settings, patch_settings, post_settings))
}

fn connection(
    state: &AppState,
    engine: tdb_core::Engine,
    name: &str,
    user: &str,
    password: &str,
) -> (Connection, String) {
    let c = &state.config;
    let database = RoutingName::workspace(name).to_string();
    if engine == Engine::Redis {
        // Redis logs in with a user and a key: the workspace's routing name, and the
        // credential's name and password in one (as for tenants).
        let key = super::tenants::redis_key(user, password);
        let url = c.connection_url(engine, &database, &key, "0");
        let conn = Connection {
            host: c.pg_public_host.clone(),
            port: c.proxy_port(engine),
            database: "0".into(),
            user: database.clone(),
            username: database,
            password: key,
        };
        return (conn, url);
    }
    let url = c.connection_url(engine, user, password, &database);
    let conn = Connection {
        host: c.pg_public_host.clone(),
        port: c.proxy_port(engine),
        database,
        user: user.to_string(),
        username: user.to_string(),
        password: password.to_string(),
    };
    (conn, url)
}

const MASK: &str = "••••••••";

/// The project's workspaces (those the key's scope covers).
#[utoipa::path(get, path = "/workspaces", tag = "workspaces",
    responses((status = 200, body = WorkspaceList)))]
async fn list_workspaces(State(state): State<AppState>, auth: Auth) -> ApiResult<WorkspaceList> {
    let workspaces: Vec<WorkspaceItem> = state
        .catalog
        .list_workspaces(&auth.project_id)
        .await?
        .into_iter()
        .filter(|w| auth.sees_workspace(&w.name))
        .map(|w| WorkspaceItem {
            id: w.name.clone(),
            name: w.name,
            mode: w.mode,
            database: w.engine,
            created_at: w.created_at,
            version: w.version,
        })
        .collect();
    Ok(Reply::ok(WorkspaceList {
        count: workspaces.len(),
        workspaces,
    }))
}

/// Creates a workspace: its database on a shared server and, in tenant mode, its blueprint.
#[utoipa::path(post, path = "/workspaces", tag = "workspaces", request_body = CreateWorkspace,
    responses((status = 201, body = CreatedWorkspace), (status = 400), (status = 409)))]
async fn create_workspace(
    State(state): State<AppState>,
    auth: Auth,
    ApiJson(req): ApiJson<CreateWorkspace>,
) -> ApiResult<CreatedWorkspace> {
    let name = ResourceName::parse(&req.name).map_err(|e| ApiError::field("name", e))?;
    let kind: tdb_core::Engine = req
        .database
        .parse()
        .map_err(|e| ApiError::field("database", e))?;
    let mode: WorkspaceMode = req.mode.parse().map_err(|e| ApiError::field("mode", e))?;
    auth.require_role(KeyRole::Write)?;
    auth.require_workspace(name.as_str())?;
    let engine = workspace::engine_for(&state, kind)?;
    workspace::ensure_shared(&state, kind).await?;
    let region = state.config.default_region().to_string();
    let server = state
        .catalog
        .place_shared(kind, &region)
        .await?
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::ServiceUnavailable,
                format!(
                    "no shared {} server in region '{region}'",
                    display_engine(kind)
                ),
            )
        })?;
    let id = ids::new_id("ws");
    let suffix = &id[3..];
    let owner_role = format!("tdb_wo_{suffix}");
    let mut physical_db = format!("tdb_ws_{suffix}");
    if kind == tdb_core::Engine::Mysql {
        let routing = tdb_core::routing::RoutingName::workspace(name.as_str()).to_string();
        if let Some(same) = crate::tenant::same_name(&state, &routing).await? {
            physical_db = same;
        }
    }
    let owner_password = secrets::new_password("");
    let settings = serde_json::to_value(Settings::default()).map_err(ApiError::internal)?;
    let blueprint_id = (mode == WorkspaceMode::Tenant).then(|| ids::new_id("bp"));
    let sealed = state
        .master_key
        .seal(owner_password.as_bytes(), Aad::WorkspaceOwner(&id));
    let record = NewWorkspace {
        id: &id,
        project_id: &auth.project_id,
        name: name.as_str(),
        engine: kind,
        mode,
        server_id: &server.id,
        physical_db: &physical_db,
        owner_role: &owner_role,
        owner_secret: &sealed,
        settings: &settings,
        blueprint_id: blueprint_id.as_deref(),
    };
    match state.catalog.create_workspace(&record).await {
        Err(CatalogError::Conflict(_)) => {
            return Err(ApiError::conflict(format!(
                "workspace '{name}' already exists"
            )));
        }
        other => other?,
    }
    let admin = workspace::admin_endpoint(&state, &server)?;
    let spec = DatabaseSpec {
        name: &physical_db,
        owner_role: &owner_role,
        owner_password: &owner_password,
        connection_limit: 100,
    };
    if let Err(e) = engine.create_database(&admin, &spec).await {
        let _ = state
            .catalog
            .delete_workspace(&auth.project_id, &id, name.as_str())
            .await;
        return Err(workspace::admin_error(e));
    }
    let (user, password) = match mint_credential(&state, &auth.project_id, name.as_str()).await {
        Ok(credential) => credential,
        Err(e) => {
            let _ = engine
                .drop_database(&admin, &physical_db, &[&owner_role])
                .await;
            let _ = state
                .catalog
                .delete_workspace(&auth.project_id, &id, name.as_str())
                .await;
            return Err(e);
        }
    };
    let (connection, connection_string) = connection(&state, kind, name.as_str(), &user, &password);
    Ok(Reply::created(CreatedWorkspace {
        id: name.to_string(),
        blueprint: (mode == WorkspaceMode::Tenant).then(|| name.to_string()),
        mode,
        database: display_engine(kind).to_string(),
        connection,
        connection_string,
    }))
}

/// A workspace-scoped proxy login (API.md deviation 2); returns the user name and password.
async fn mint_credential(
    state: &AppState,
    project_id: &str,
    workspace: &str,
) -> Result<(String, String), ApiError> {
    crate::mint::scoped_credential(
        state,
        project_id,
        ScopeType::Workspace,
        workspace,
        KeyRole::Admin,
        "w",
    )
    .await
}

async fn resolve_for(
    state: &AppState,
    auth: &Auth,
    name: &str,
    role: KeyRole,
) -> Result<Resolved, ApiError> {
    auth.require_workspace(name)?;
    auth.require_role(role)?;
    workspace::resolve(state, &auth.project_id, name).await
}

/// A workspace with its schema history, pending count, masked connection and settings.
#[utoipa::path(get, path = "/workspaces/{id}", tag = "workspaces",
    params(("id" = String, Path, description = "workspace name")),
    responses((status = 200, body = WorkspaceDetail), (status = 404)))]
async fn get_workspace(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<WorkspaceDetail> {
    let r = resolve_for(&state, &auth, &name, KeyRole::Read).await?;
    let mut schema = Vec::new();
    if r.tenant_mode() {
        let bp = state
            .catalog
            .find_blueprint(&auth.project_id, &name)
            .await?;
        schema = state
            .catalog
            .blueprint_schema(&bp.id, bp.current_version)
            .await?;
        schema.extend(
            state
                .catalog
                .pending_ddl(&bp.id)
                .await?
                .into_iter()
                .map(|d| d.statement),
        );
    }
    let user = state
        .catalog
        .credential_username(&auth.project_id, ScopeType::Workspace, &name)
        .await?
        .unwrap_or_else(|| auth.project_id.clone());
    let (connection, connection_string) = connection(&state, r.ws.engine, &name, &user, MASK);
    let ws = r.ws;
    Ok(Reply::ok(WorkspaceDetail {
        id: ws.name.clone(),
        name: ws.name,
        database: ws.engine,
        schema,
        schema_error: None,
        undeployed_changes: ws
            .undeployed_changes
            .filter(|_| ws.mode == WorkspaceMode::Tenant),
        connection,
        connection_string,
        settings: WorkspaceSettings {
            limits: r.settings,
            keys: KeyRules::from_json(&ws.settings),
        },
        version: ws.version,
        mode: ws.mode,
        created_at: ws.created_at,
    }))
}

/// Deletes a workspace, its database, its blueprint and versions, and its credentials.
#[utoipa::path(delete, path = "/workspaces/{id}", tag = "workspaces",
    params(("id" = String, Path, description = "workspace name")),
    responses((status = 200, body = DeletedWorkspace), (status = 404), (status = 409)))]
async fn delete_workspace(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<DeletedWorkspace> {
    let r = resolve_for(&state, &auth, &name, KeyRole::Admin).await?;
    let versions = match r.tenant_mode() {
        true => {
            let bp = state
                .catalog
                .find_blueprint(&auth.project_id, &name)
                .await?;
            let deployed_to = state.catalog.tenants_using_blueprint(&bp.id).await?;
            if !deployed_to.is_empty() {
                return Err(
                    ApiError::conflict("cannot delete workspace with deployed tenants")
                        // The reference's 409 says it in `message`.
                        .with("message", "cannot delete workspace with deployed tenants")
                        .with("reason", "tenants_deployed")
                        .with("deployed_to", deployed_to)
                        .with(
                            "action_required",
                            "Delete all tenants first or use a different workspace",
                        ),
                );
            }
            state.catalog.blueprint_versions(&bp.id).await?.len()
        }
        false => 0,
    };
    tdb_jobs::teardown::drop_workspace(&state.jobs, &r.ws)
        .await
        .map_err(|e| ApiError::new(tdb_core::ErrorCode::ServiceUnavailable, e.to_string()))?;
    Ok(Reply::ok(DeletedWorkspace {
        message: "workspace deleted".into(),
        details: DeletionDetails {
            workspace: name,
            mode: r.ws.mode,
            versions_deleted: versions,
            deletion_type: "full".into(),
            physical_db: true,
        },
    }))
}

/// Runs one or more statements in the workspace; DDL that commits is queued on the blueprint.
#[utoipa::path(post, path = "/workspaces/{id}/queries", tag = "workspaces",
    params(("id" = String, Path, description = "workspace name")), request_body = QueryRequest,
    responses((status = 200, body = QueryResponse), (status = 400)))]
async fn run_queries(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath(name): ApiPath<String>,
    ApiJson(req): ApiJson<QueryRequest>,
) -> ApiResult<QueryResponse> {
    let r = resolve_for(&state, &auth, &name, KeyRole::Read).await?;
    let dialect = crate::workspace::dialect(r.ws.engine);
    let text = req
        .query
        .text(dialect == tdb_sql::Dialect::Redis)
        .map_err(|why| ApiError::field("query", why))?;
    let statements = dialect.classify_all(&text).map_err(|e| {
        ApiError::field("query", format!("syntax error: {e}")).with("sqlstate", "42601")
    })?;
    if statements.is_empty() {
        return Err(ApiError::field("query", "holds no statement"));
    }
    let reads_only = statements.iter().all(|s| s.kind == tdb_sql::Kind::Query);
    if !reads_only {
        auth.require_role(KeyRole::Write)?;
    }
    let read_key = auth.role == KeyRole::Read;
    let outcome = workspace::run_batch(&state, &r, &statements, read_key, &auth.key_id).await?;
    if let Some((index, text, e)) = outcome.failure {
        return Err(engine_error(e)
            .with("statement_index", index)
            .with("statement", text)
            .with("statements_executed", outcome.executed)
            .with("ddl_captured", outcome.captured));
    }
    let last = outcome.last;
    Ok(Reply::ok(QueryResponse {
        columns: last.columns,
        rows: last.rows,
        row_count: last.row_count,
        truncated: last.truncated,
        execution_time: workspace::format_duration(outcome.elapsed),
        statements_executed: outcome.executed,
        ddl_captured: outcome.captured,
    }))
}

/// Tables with columns, indexes (their names, as the reference lists them, and under
/// `index_details` their definitions), foreign keys and checks, read from the database itself.
#[utoipa::path(get, path = "/workspaces/{id}/schema", tag = "workspaces",
    params(("id" = String, Path, description = "workspace name")),
    responses((status = 200, body = WorkspaceSchema), (status = 404)))]
async fn get_schema(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<WorkspaceSchema> {
    let r = resolve_for(&state, &auth, &name, KeyRole::Read).await?;
    let schema = r
        .engine
        .require_introspection()
        .map_err(engine_error)?
        .introspect(&r.access)
        .await
        .map_err(engine_error)?;
    Ok(Reply::ok(WorkspaceSchema::from(schema)))
}

async fn blueprint_of(state: &AppState, r: &Resolved) -> Result<String, ApiError> {
    if !r.tenant_mode() {
        return Err(ApiError::bad_request(format!(
            "workspace '{}' is in control mode: it has no blueprint and no pending changes",
            r.ws.name
        )));
    }
    Ok(state
        .catalog
        .find_blueprint(&r.ws.project_id, &r.ws.name)
        .await?
        .id)
}

/// Pending DDL, oldest first (tenant mode only).
#[utoipa::path(get, path = "/workspaces/{id}/diff", tag = "workspaces",
    params(("id" = String, Path, description = "workspace name")),
    responses((status = 200, body = DiffList), (status = 400)))]
async fn list_diff(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<DiffList> {
    let r = resolve_for(&state, &auth, &name, KeyRole::Read).await?;
    let bp = blueprint_of(&state, &r).await?;
    let changes: Vec<Change> = state
        .catalog
        .pending_ddl(&bp)
        .await?
        .into_iter()
        .map(|d| Change {
            id: d.id,
            statement: d.statement,
            tag: d.tag,
            created_at: d.created_at,
        })
        .collect();
    Ok(Reply::ok(DiffList {
        count: changes.len(),
        changes,
    }))
}

fn ddl_id(text: &str) -> Result<i64, ApiError> {
    text.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| ApiError::bad_request(format!("'{text}' is not a DDL id")))
}

fn ddl_error(e: CatalogError, id: i64) -> ApiError {
    match e {
        CatalogError::NotFound => ApiError::not_found(format!(
            "DDL {id} is not pending (unknown, removed or deployed)"
        )),
        other => other.into(),
    }
}

/// Removes a change from the deploy queue (the workspace database keeps it).
#[utoipa::path(delete, path = "/workspaces/{id}/diff/{ddl_id}", tag = "workspaces",
    params(("id" = String, Path, description = "workspace name"), ("ddl_id" = i64, Path)),
    responses((status = 200, body = Message), (status = 404)))]
async fn skip_ddl(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath((name, id)): ApiPath<(String, String)>,
) -> ApiResult<Message> {
    let id = ddl_id(&id)?;
    let r = resolve_for(&state, &auth, &name, KeyRole::Write).await?;
    let bp = blueprint_of(&state, &r).await?;
    state
        .catalog
        .remove_pending_ddl(&bp, id)
        .await
        .map_err(|e| ddl_error(e, id))?;
    Ok(Reply::ok(Message {
        message: format!("DDL {id} removed from deploy queue"),
    }))
}

/// Undoes a pending change in the workspace with its reverse statement, then drops it.
#[utoipa::path(post, path = "/workspaces/{id}/diff/{ddl_id}/revert", tag = "workspaces",
    params(("id" = String, Path, description = "workspace name"), ("ddl_id" = i64, Path)),
    responses((status = 200, body = Message), (status = 400), (status = 404)))]
async fn revert_ddl(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath((name, id)): ApiPath<(String, String)>,
) -> ApiResult<Message> {
    let id = ddl_id(&id)?;
    let r = resolve_for(&state, &auth, &name, KeyRole::Write).await?;
    let bp = blueprint_of(&state, &r).await?;
    let change = state
        .catalog
        .find_pending_ddl(&bp, id)
        .await
        .map_err(|e| ddl_error(e, id))?;
    let reverse = crate::workspace::dialect(r.ws.engine)
        .reverse(&change.statement)
        .map_err(|why| ApiError::bad_request(format!("cannot revert DDL {id}: {why}")))?;
    let mut session = r
        .engine
        .open(
            &r.access,
            crate::workspace::limits(&state, &r.ws.project_id, &r.settings),
            Some(&r.admin),
        )
        .await
        .map_err(engine_error)?;
    let ran = session.run(&reverse).await;
    session.close().await;
    ran.map_err(engine_error)?;
    state
        .catalog
        .remove_pending_ddl(&bp, id)
        .await
        .map_err(|e| ddl_error(e, id))?;
    Ok(Reply::ok(Message {
        message: format!("Reverted: {reverse};"),
    }))
}

/// Current limits of the workspace.
#[utoipa::path(get, path = "/workspaces/{id}/settings", tag = "workspaces",
    params(("id" = String, Path, description = "workspace name")),
    responses((status = 200, body = SettingsResponse)))]
async fn get_settings(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<SettingsResponse> {
    let r = resolve_for(&state, &auth, &name, KeyRole::Read).await?;
    Ok(Reply::ok(SettingsResponse {
        database_type: display_engine(r.ws.engine).to_string(),
        settings: WorkspaceSettings {
            limits: r.settings,
            keys: KeyRules::from_json(&r.ws.settings),
        },
        available_fields: available_fields(r.ws.engine)
            .iter()
            .map(|f| f.to_string())
            .collect(),
    }))
}

/// The settings a workspace of `engine` has: Redis has rules for keys, and of the limits only
/// those its proxy and queries keep (no rows per query, no transaction pooling).
fn available_fields(engine: Engine) -> Vec<&'static str> {
    match engine {
        Engine::Redis => {
            let mut fields = KeyRules::FIELDS.to_vec();
            fields.extend(["query_timeout_ms", "max_connections"]);
            fields
        }
        _ => Settings::FIELDS.to_vec(),
    }
}

/// A field of `req` that workspaces of `engine` do not have, as the 400 it gets.
fn unavailable_field(engine: Engine, req: &SettingsPatch) -> Option<ApiError> {
    let given = [
        ("query_timeout_ms", req.query_timeout_ms.is_some()),
        ("max_rows_per_query", req.max_rows_per_query.is_some()),
        ("max_connections", req.max_connections.is_some()),
        ("pool_mode", req.pool_mode.is_some()),
        (
            "max_client_connections",
            req.max_client_connections.is_some(),
        ),
        ("default_ttl", req.default_ttl.is_some()),
        ("max_keys", req.max_keys.is_some()),
        ("patterns", req.patterns.is_some()),
    ];
    let available = available_fields(engine);
    let (field, _) = given
        .into_iter()
        .find(|(field, given)| *given && !available.contains(field))?;
    Some(
        ApiError::field(
            field,
            format!(
                "{} workspaces have no {field} setting (available: {})",
                display_engine(engine),
                available.join(", ")
            ),
        )
        .with("available_fields", available),
    )
}

fn in_range<T: PartialOrd + std::fmt::Display + Copy>(
    field: &str,
    value: Option<T>,
    (lo, hi): (T, T),
) -> Result<Option<T>, ApiError> {
    match value {
        Some(v) if v < lo || v > hi => Err(ApiError::field(
            field,
            format!("must be between {lo} and {hi}"),
        )),
        other => Ok(other),
    }
}

/// Partial update of the limits; unknown fields are refused.
#[utoipa::path(patch, path = "/workspaces/{id}/settings", tag = "workspaces",
    params(("id" = String, Path, description = "workspace name")), request_body = SettingsPatch,
    responses((status = 200, body = SettingsSaved), (status = 400)))]
async fn patch_settings(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath(name): ApiPath<String>,
    ApiJson(req): ApiJson<SettingsPatch>,
) -> ApiResult<SettingsSaved> {
    let timeout = in_range(
        "query_timeout_ms",
        req.query_timeout_ms,
        Settings::TIMEOUT_MS,
    )?;
    let rows = in_range(
        "max_rows_per_query",
        req.max_rows_per_query,
        Settings::MAX_ROWS,
    )?;
    let conns = in_range(
        "max_connections",
        req.max_connections,
        Settings::MAX_CONNECTIONS,
    )?;
    let clients = in_range(
        "max_client_connections",
        req.max_client_connections,
        Settings::MAX_CLIENT_CONNECTIONS,
    )?;
    let r = resolve_for(&state, &auth, &name, KeyRole::Write).await?;
    if let Some(e) = unavailable_field(r.ws.engine, &req) {
        return Err(e);
    }
    let mut keys = KeyRules::from_json(&r.ws.settings);
    let before = keys.clone();
    if let Some(ttl) = req.default_ttl {
        keys.default_ttl = ttl;
    }
    if let Some(max) = req.max_keys {
        keys.max_keys = max;
    }
    if let Some(patterns) = req.patterns.clone() {
        keys.patterns = patterns.unwrap_or_default();
    }
    keys.validate()
        .map_err(|e| ApiError::field(&e.field, e.message))?;
    if let Some(n) = conns {
        check_connection_ceiling(&state, r.ws.engine, n).await?;
    }
    let mut settings = r.settings;
    settings.query_timeout_ms = timeout.unwrap_or(settings.query_timeout_ms);
    settings.max_rows_per_query = rows.unwrap_or(settings.max_rows_per_query);
    settings.max_connections = conns.unwrap_or(settings.max_connections);
    settings.pool_mode = req.pool_mode.unwrap_or(settings.pool_mode);
    settings.max_client_connections = clients.unwrap_or(settings.max_client_connections);
    let mut value = serde_json::to_value(settings).map_err(ApiError::internal)?;
    keys.merge_into(&mut value);
    state
        .catalog
        .update_workspace_settings(&r.ws.id, &value)
        .await?;
    let kind = r.ws.engine;
    let tenant = r.tenant_mode();
    // Rules for keys travel with blueprint versions: tenants get them from a deployment.
    let rules_changed = keys != before;
    Ok(Reply::ok(SettingsSaved {
        settings: WorkspaceSettings {
            limits: settings,
            keys,
        },
        message: if tenant && rules_changed {
            "Settings saved. Deploy to apply to tenants."
        } else if tenant {
            "Settings saved. New proxy sessions of the blueprint's tenants follow them at once, as \
             do API queries: no deployment is needed (sessions already open keep the limits they \
             started with)."
        } else {
            "Settings saved."
        }
        .into(),
        // The reference's field, answered truthfully: only rules for keys wait for one.
        pending_deploy: tenant.then_some(rules_changed),
        database_type: display_engine(kind).to_string(),
    }))
}

/// Refuses a `max_connections` the shared servers cannot honour: one tenant database may have a
/// quarter of the connections a server keeps for tenants (what it accepts, less what tdb keeps
/// for its own work), so no tenant can take what the others share.
async fn check_connection_ceiling(
    state: &AppState,
    engine: Engine,
    wanted: u32,
) -> Result<(), ApiError> {
    let servers = state.catalog.list_servers().await?;
    let tightest = servers
        .iter()
        .filter(|s| s.engine == engine && s.role == ServerRole::Shared)
        .filter_map(|s| Some((s.tenant_connection_ceiling()?, s.tenant_connection_budget?)))
        .min();
    match tightest {
        Some((ceiling, budget)) if wanted > ceiling => Err(ApiError::field(
            "max_connections",
            format!(
                "can be at most {ceiling} here: the shared server keeps {budget} connections for \
                 all tenants, and one tenant database may have a quarter of them"
            ),
        )
        .with("maximum", ceiling)),
        _ => Ok(()),
    }
}

/// Alias of PATCH for clients that cannot send PATCH.
#[utoipa::path(post, path = "/workspaces/{id}/settings", tag = "workspaces",
    params(("id" = String, Path, description = "workspace name")), request_body = SettingsPatch,
    responses((status = 200, body = SettingsSaved), (status = 400)))]
async fn post_settings(
    state: State<AppState>,
    auth: Auth,
    name: ApiPath<String>,
    body: ApiJson<SettingsPatch>,
) -> ApiResult<SettingsSaved> {
    patch_settings(state, auth, name, body).await
}
