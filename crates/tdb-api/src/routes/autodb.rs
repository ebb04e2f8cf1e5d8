//! The AutoDB-compatible surface under `/api/v1`: schema-per-tenant databases provisioned on the
//! shared PostgreSQL server, and registered connections (stored sealed, introspected and queried
//! with their own credentials). Responses carry the endpoint's fields in `data`; request
//! validation answers 422 with a FastAPI-style `detail` list, as the spec shows.

use std::time::Instant;

use axum::extract::{FromRequest, Request, State};
use serde_json::{Value, json};
use tdb_catalog::autodb::{Connection, NewConnection, NewProvisioned, Provisioned};
use tdb_core::aad::Aad;
use tdb_core::routing::RoutingName;
use tdb_core::settings::Settings;
use tdb_core::{ConnectionStatus, ErrorCode, KeyRole, ScopeType, ids, secrets};
use tdb_engines::{EngineError, SchemaTenantSpec};
use tdb_types::Data;
use tdb_types::autodb::{
    ConnectionDeactivated, ConnectionItem, ConnectionList, ConnectionQuery, ConnectionRows,
    CreateConnection, Introspection, ProvisionRequest, ProvisionedCreated, ProvisionedDeleted,
    ProvisionedItem, ProvisionedList,
};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::envelope::{ApiError, ApiResult, Reply};
use crate::extract::{ApiPath, Auth};
use crate::workspace::{admin_endpoint, admin_error, engine_error, format_duration, limits};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(provision, list_provisioned))
        .routes(routes!(delete_provisioned))
        .routes(routes!(create_connection, list_connections))
        .routes(routes!(get_connection, delete_connection))
        .routes(routes!(introspect))
        .routes(routes!(query))
}

/// The provider types a connection may name (the spec's pattern).
const DB_TYPE_PATTERN: &str =
    "^(supabase|postgres_gcp|postgresql_local|postgresql_aws|postgresql)$";
const DB_TYPES: [&str; 5] = [
    "supabase",
    "postgres_gcp",
    "postgresql_local",
    "postgresql_aws",
    "postgresql",
];
/// Excluded from introspection unless a connection says otherwise: Supabase's own schemas.
pub const DEFAULT_EXCLUDED_SCHEMAS: [&str; 8] = [
    "auth",
    "storage",
    "realtime",
    "extensions",
    "vault",
    "pgsodium",
    "graphql",
    "graphql_public",
];
/// URL parameters a registered connection string may carry. Others (`host` naming a socket
/// path, client key files, ...) could make tdb reach what the user could not.
const URL_PARAMS: [&str; 3] = ["sslmode", "application_name", "options"];

// --- validation --------------------------------------------------------------------------------

/// FastAPI-style validation problems, answered together as one 422. They stay `json!` values:
/// `loc` mixes names and indexes and `input` echoes whatever JSON the client sent; the OpenAPI
/// document describes them as `ErrorBody.detail` (`ValidationProblem`).
#[derive(Default)]
struct Problems(Vec<Value>);

impl Problems {
    fn add(
        &mut self,
        loc: &[Value],
        kind: &str,
        msg: &str,
        input: Option<&Value>,
        ctx: Option<Value>,
    ) {
        let mut p = json!({ "loc": loc, "msg": msg, "type": kind });
        if let Some(input) = input {
            p["input"] = input.clone();
        }
        if let Some(ctx) = ctx {
            p["ctx"] = ctx;
        }
        self.0.push(p);
    }

    fn into_result(self) -> Result<(), ApiError> {
        let Some(first) = self.0.first() else {
            return Ok(());
        };
        let field = first["loc"]
            .as_array()
            .and_then(|l| l.last())
            .map(|f| f.to_string().trim_matches('"').to_string())
            .unwrap_or_default();
        let message = format!("{field}: {}", first["msg"].as_str().unwrap_or("invalid"));
        Err(ApiError::new(ErrorCode::ValidationError, message).with("detail", Value::Array(self.0)))
    }

    /// A required string of `min..=max` characters; `secret` keeps the input out of the answer.
    fn string(
        &mut self,
        body: &Value,
        field: &str,
        min: usize,
        max: Option<usize>,
        secret: bool,
    ) -> Option<String> {
        let loc = [json!("body"), json!(field)];
        let shown = |v: &Value| (!secret).then(|| v.clone());
        match body.get(field) {
            None => {
                self.add(
                    &loc,
                    "missing",
                    "Field required",
                    Some(&redacted(body)),
                    None,
                );
                None
            }
            Some(Value::String(s)) => {
                let len = s.chars().count();
                if len < min {
                    let msg = format!(
                        "String should have at least {min} character{}",
                        if min == 1 { "" } else { "s" }
                    );
                    let input = shown(&body[field]);
                    self.add(
                        &loc,
                        "string_too_short",
                        &msg,
                        input.as_ref(),
                        Some(json!({ "min_length": min })),
                    );
                    return None;
                }
                if let Some(max) = max
                    && len > max
                {
                    let msg = format!("String should have at most {max} characters");
                    let input = shown(&body[field]);
                    self.add(
                        &loc,
                        "string_too_long",
                        &msg,
                        input.as_ref(),
                        Some(json!({ "max_length": max })),
                    );
                    return None;
                }
                Some(s.clone())
            }
            Some(other) => {
                let input = shown(other);
                self.add(
                    &loc,
                    "string_type",
                    "Input should be a valid string",
                    input.as_ref(),
                    None,
                );
                None
            }
        }
    }
}

/// The body as a validation problem may show it: without the connection string, which carries
/// a password.
fn redacted(body: &Value) -> Value {
    let mut shown = body.clone();
    if let Some(fields) = shown.as_object_mut()
        && fields.contains_key("connection_string")
    {
        fields.insert("connection_string".into(), json!("<redacted>"));
    }
    shown
}

/// A JSON object body for the `/api/v1` endpoints: malformed JSON or another JSON type is a 422
/// as FastAPI answers it; a body over the size limit is the usual 413.
struct V1Body(Value);

impl<S: Send + Sync> FromRequest<S> for V1Body {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = crate::extract::body_bytes(req, state).await?;
        let mut problems = Problems::default();
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(v @ Value::Object(_)) => return Ok(Self(v)),
            Ok(other) => problems.add(
                &[json!("body")],
                "model_attributes_type",
                "Input should be a valid dictionary or object to extract fields from",
                Some(&other),
                None,
            ),
            Err(e) => problems.add(
                &[json!("body"), json!(e.column())],
                "json_invalid",
                "JSON decode error",
                Some(&json!({})),
                Some(json!({ "error": e.to_string() })),
            ),
        }
        problems.into_result()?;
        unreachable!("a problem was recorded")
    }
}

/// What a registered connection string says, once checked.
struct ParsedUrl {
    host: String,
    port: u16,
    database: String,
}

/// Parses a PostgreSQL URI: `postgres://` or `postgresql://`, a user and password (so nothing
/// of tdb's own environment, such as `PGPASSWORD` or `~/.pgpass`, is ever offered to the
/// server), a host, an optional port, the database (default: the user name, as libpq does),
/// and only harmless parameters.
fn parse_connection_string(text: &str) -> Result<ParsedUrl, String> {
    let url = url::Url::parse(text).map_err(|e| format!("not a valid URI ({e})"))?;
    if !matches!(url.scheme(), "postgres" | "postgresql") {
        return Err("must start with postgresql:// or postgres://".into());
    }
    let host = url
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or("must name a host")?
        .to_string();
    for (key, _) in url.query_pairs() {
        if !URL_PARAMS.contains(&key.as_ref()) {
            return Err(format!(
                "parameter '{key}' is not supported (allowed: {})",
                URL_PARAMS.join(", ")
            ));
        }
    }
    let user = percent_decode(url.username())?;
    if user.is_empty() || url.password().is_none_or(str::is_empty) {
        return Err("must include a user name and a password".into());
    }
    let database = percent_decode(url.path().trim_start_matches('/'))?;
    let database = if database.is_empty() { user } else { database };
    tdb_engines::postgres::url_options(text, None).map_err(|e| e.to_string())?;
    Ok(ParsedUrl {
        host,
        port: url.port().unwrap_or(5432),
        database,
    })
}

fn percent_decode(text: &str) -> Result<String, String> {
    percent_encoding::percent_decode_str(text)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| "is not valid UTF-8 once decoded".to_string())
}

// --- responses -------------------------------------------------------------------------------

fn connection_item(c: &Connection) -> ConnectionItem {
    ConnectionItem {
        id: c.id.clone(),
        name: c.name.clone(),
        db_type: c.db_type.clone(),
        host: c.host.clone(),
        port: c.port,
        database_name: c.database_name.clone(),
        excluded_schemas: c.excluded_schemas.clone(),
        is_active: c.is_active,
        created_at: c.created_at,
        last_introspected_at: c.last_introspected_at,
    }
}

fn provisioned_item(p: &Provisioned) -> ProvisionedItem {
    ProvisionedItem {
        id: p.id.clone(),
        connection_id: p.connection_id.clone(),
        name: p.name.clone(),
        schema_name: p.schema_name.clone(),
        status: p.status,
        created_at: p.created_at,
    }
}

fn data<T>(data: T) -> Data<T> {
    Data { data }
}

/// Only keys for the whole project reach these resources; writes need the write role.
fn require(auth: &Auth, role: KeyRole) -> Result<(), ApiError> {
    auth.require_project_scope()?;
    auth.require_role(role)
}

// --- provisioning ----------------------------------------------------------------------------

/// Creates a schema-per-tenant PostgreSQL database on the shared server, registered as a
/// connection at once; `connection_string` (through tdb's PostgreSQL proxy) is shown only here.
#[utoipa::path(post, path = "/api/v1/provision", tag = "autodb", request_body = ProvisionRequest,
    responses((status = 201, body = Data<ProvisionedCreated>),
              (status = 403, description = "the account's limit is reached; data: {count, limit}"),
              (status = 422, description = "validation error with detail[]")))]
async fn provision(
    State(state): State<AppState>,
    auth: Auth,
    V1Body(body): V1Body,
) -> ApiResult<Data<ProvisionedCreated>> {
    require(&auth, KeyRole::Write)?;
    let mut problems = Problems::default();
    let name = problems.string(&body, "name", 1, Some(200), false);
    problems.into_result()?;
    let name = name.unwrap_or_default();
    let limit = state.config.provision_limit;
    let count = state.catalog.count_provisioned(&auth.account_id).await?;
    if count >= i64::from(limit) {
        return Err(limit_reached(count, limit));
    }
    let region = state.config.default_region().to_string();
    let server = state
        .catalog
        .place_shared(tdb_core::Engine::Postgresql, &region)
        .await?
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::ServiceUnavailable,
                format!("no shared PostgreSQL server in region '{region}'"),
            )
        })?;
    let engine = crate::workspace::engine_for(&state, tdb_core::Engine::Postgresql)?;
    let admin = admin_endpoint(&state, &server)?;

    let id = ids::uuid_v4();
    let connection_id = ids::uuid_v4();
    let schema_name = RoutingName::provisioned(&ids::random_hex(10))
        .ok_or_else(|| ApiError::internal("random_hex(10) gives 20 hex digits"))?
        .to_string();
    let role_name = format!("tdb_pr_{}", ids::random_hex(10));
    let role_password = secrets::new_password("");
    // A database of its own: channels and other things PostgreSQL shares within a database
    // stay its own.
    let database = format!("tdb_p_{}", ids::random_hex(10));
    let internal_url = server_url(&server, &role_name, &role_password, &database);
    let sealed_url = state
        .master_key
        .seal(internal_url.as_bytes(), Aad::Connection(&connection_id));
    let sealed_password = state
        .master_key
        .seal(role_password.as_bytes(), Aad::Provisioned(&id));
    let excluded: Vec<String> = Vec::new();
    let reserved = state
        .catalog
        .reserve_provisioned(
            &NewProvisioned {
                id: &id,
                project_id: &auth.project_id,
                account_id: &auth.account_id,
                name: &name,
                schema_name: &schema_name,
                role_name: &role_name,
                role_secret: &sealed_password,
                server_id: &server.id,
                database: &database,
            },
            &NewConnection {
                id: &connection_id,
                project_id: &auth.project_id,
                name: &name,
                db_type: "postgresql",
                host: &state.config.pg_public_host,
                port: i32::from(state.config.pg_public_port),
                database_name: &schema_name,
                excluded_schemas: &excluded,
                secret: &sealed_url,
            },
            limit,
        )
        .await?;
    if let Some(count) = reserved {
        return Err(limit_reached(count, limit));
    }
    // Built in a task of its own: a client that goes away mid-way does not leave half a
    // database behind.
    let build = {
        let (state, engine, project_id) = (state.clone(), engine.clone(), auth.project_id.clone());
        let (id, database, schema_name, role_name) = (
            id.clone(),
            database.clone(),
            schema_name.clone(),
            role_name.clone(),
        );
        let connection_limit = state.config.provision_connection_limit;
        async move {
            let spec = SchemaTenantSpec {
                database: &database,
                schema: &schema_name,
                role: &role_name,
                password: &role_password,
                connection_limit,
            };
            let built = async {
                engine
                    .require_schema_tenants()
                    .map_err(admin_error)?
                    .create_schema_tenant(&admin, &spec)
                    .await
                    .map_err(admin_error)?;
                let (username, password) =
                    mint_provision_credential(&state, &project_id, &schema_name).await?;
                let p = state
                    .catalog
                    .activate_provisioned(&id)
                    .await?
                    .ok_or_else(|| {
                        ApiError::conflict("the database was deleted while it was being made")
                    })?;
                Ok::<_, ApiError>((p, username, password))
            };
            match built.await {
                Ok(done) => Ok(done),
                Err(e) => {
                    let _ = state
                        .catalog
                        .delete_scope_credentials(&project_id, ScopeType::Provision, &schema_name)
                        .await;
                    // The record goes only once the server holds nothing of it; otherwise it
                    // stays (`provisioning`) so that DELETE can finish the job.
                    let dropped = match engine.require_schema_tenants() {
                        Ok(tenants) => {
                            tenants
                                .drop_schema_tenant(&admin, &database, &schema_name, &role_name)
                                .await
                        }
                        Err(e) => Err(e),
                    };
                    if dropped.is_ok() {
                        let _ = state.catalog.forget_provisioned(&id).await;
                    }
                    Err(e)
                }
            }
        }
    };
    let (p, username, password) = tokio::spawn(build).await.map_err(ApiError::internal)??;
    Ok(Reply::created(data(ProvisionedCreated {
        item: provisioned_item(&p),
        connection_string: format!(
            "postgresql://{username}:{password}@{}:{}/{schema_name}?sslmode=require",
            url_host(&state.config.pg_public_host),
            state.config.pg_public_port
        ),
    })))
}

/// IPv6 literals go in brackets inside a URL.
fn url_host(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

fn limit_reached(count: i64, limit: u32) -> ApiError {
    ApiError::new(
        ErrorCode::Forbidden,
        format!("provisioned database limit reached: {count} of {limit} in use; delete one first"),
    )
    // An error's particular field (ErrorBody keeps such fields in `extra`), as the reference
    // sends it.
    .with("data", json!({ "count": count, "limit": limit }))
}

/// A proxy login that opens only this provisioned database.
async fn mint_provision_credential(
    state: &AppState,
    project_id: &str,
    schema_name: &str,
) -> Result<(String, String), ApiError> {
    crate::mint::scoped_credential(
        state,
        project_id,
        ScopeType::Provision,
        schema_name,
        KeyRole::Write,
        "p",
    )
    .await
}

/// The project's provisioned databases, with the account's use of its limit.
#[utoipa::path(get, path = "/api/v1/provision", tag = "autodb",
    responses((status = 200, body = Data<ProvisionedList>, description = "count is the account's, across its projects")))]
async fn list_provisioned(
    State(state): State<AppState>,
    auth: Auth,
) -> ApiResult<Data<ProvisionedList>> {
    require(&auth, KeyRole::Read)?;
    let databases = state.catalog.list_provisioned(&auth.project_id).await?;
    let count = state.catalog.count_provisioned(&auth.account_id).await?;
    Ok(Reply::ok(data(ProvisionedList {
        databases: databases.iter().map(provisioned_item).collect(),
        count,
        limit: state.config.provision_limit,
    })))
}

/// Drops the schema, everything in it and its role, and deactivates its connection. Final.
#[utoipa::path(delete, path = "/api/v1/provision/{id}", tag = "autodb", params(("id" = String, Path)),
    responses((status = 200, body = Data<ProvisionedDeleted>), (status = 404)))]
async fn delete_provisioned(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Data<ProvisionedDeleted>> {
    require(&auth, KeyRole::Write)?;
    let p = state
        .catalog
        .find_provisioned(&auth.project_id, &id)
        .await
        .map_err(|e| ApiError::from_catalog(e, "provisioned database"))?;
    tdb_jobs::teardown::drop_provisioned(&state.jobs, &p)
        .await
        .map_err(|e| ApiError::new(ErrorCode::ServiceUnavailable, e.to_string()))?;
    Ok(Reply::ok(data(ProvisionedDeleted {
        id: p.id,
        status: "deleted".into(),
    })))
}

// --- connections -----------------------------------------------------------------------------

/// Registers a database connection; the string is sealed at rest and never returned.
#[utoipa::path(post, path = "/api/v1/connections", tag = "autodb", request_body = CreateConnection,
    responses((status = 201, body = Data<ConnectionItem>),
              (status = 422, description = "validation error with detail[]")))]
async fn create_connection(
    State(state): State<AppState>,
    auth: Auth,
    V1Body(body): V1Body,
) -> ApiResult<Data<ConnectionItem>> {
    require(&auth, KeyRole::Write)?;
    let mut problems = Problems::default();
    let name = problems.string(&body, "name", 1, Some(200), false);
    let db_type = problems.string(&body, "db_type", 0, None, false);
    if let Some(t) = &db_type
        && !DB_TYPES.contains(&t.as_str())
    {
        problems.add(
            &[json!("body"), json!("db_type")],
            "string_pattern_mismatch",
            &format!("String should match pattern '{DB_TYPE_PATTERN}'"),
            Some(&body["db_type"]),
            Some(json!({ "pattern": DB_TYPE_PATTERN })),
        );
    }
    let connection_string = problems.string(&body, "connection_string", 10, None, true);
    let parsed = connection_string
        .as_deref()
        .and_then(|s| match parse_connection_string(s) {
            Ok(p) => Some(p),
            Err(why) => {
                problems.add(
                    &[json!("body"), json!("connection_string")],
                    "value_error",
                    &format!("Value error, connection_string {why}"),
                    None,
                    None,
                );
                None
            }
        });
    let excluded = match body.get("excluded_schemas") {
        None | Some(Value::Null) => DEFAULT_EXCLUDED_SCHEMAS
            .iter()
            .map(|s| s.to_string())
            .collect(),
        Some(Value::Array(items)) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                match item {
                    Value::String(s) => out.push(s.clone()),
                    other => problems.add(
                        &[json!("body"), json!("excluded_schemas"), json!(i)],
                        "string_type",
                        "Input should be a valid string",
                        Some(other),
                        None,
                    ),
                }
            }
            out
        }
        Some(other) => {
            problems.add(
                &[json!("body"), json!("excluded_schemas")],
                "list_type",
                "Input should be a valid list",
                Some(other),
                None,
            );
            Vec::new()
        }
    };
    problems.into_result()?;
    let (Some(name), Some(db_type), Some(connection_string), Some(parsed)) =
        (name, db_type, connection_string, parsed)
    else {
        return Err(ApiError::internal("validation passed without values"));
    };
    let id = ids::uuid_v4();
    let sealed = state
        .master_key
        .seal(connection_string.as_bytes(), Aad::Connection(&id));
    let c = state
        .catalog
        .create_connection(&NewConnection {
            id: &id,
            project_id: &auth.project_id,
            name: &name,
            db_type: &db_type,
            host: &parsed.host,
            port: i32::from(parsed.port),
            database_name: &parsed.database,
            excluded_schemas: &excluded,
            secret: &sealed,
        })
        .await?;
    Ok(Reply::created(data(connection_item(&c))))
}

#[utoipa::path(get, path = "/api/v1/connections", tag = "autodb",
    responses((status = 200, body = Data<ConnectionList>)))]
async fn list_connections(
    State(state): State<AppState>,
    auth: Auth,
) -> ApiResult<Data<ConnectionList>> {
    require(&auth, KeyRole::Read)?;
    let all = state.catalog.list_connections(&auth.project_id).await?;
    Ok(Reply::ok(data(ConnectionList {
        connections: all.iter().map(connection_item).collect(),
        count: all.len(),
    })))
}

async fn find_connection(state: &AppState, auth: &Auth, id: &str) -> Result<Connection, ApiError> {
    state
        .catalog
        .find_connection(&auth.project_id, id)
        .await
        .map_err(|e| ApiError::from_catalog(e, "connection"))
}

#[utoipa::path(get, path = "/api/v1/connections/{id}", tag = "autodb", params(("id" = String, Path)),
    responses((status = 200, body = Data<ConnectionItem>), (status = 404)))]
async fn get_connection(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Data<ConnectionItem>> {
    require(&auth, KeyRole::Read)?;
    let c = find_connection(&state, &auth, &id).await?;
    Ok(Reply::ok(data(connection_item(&c))))
}

/// Soft delete: the connection stays listed with `is_active: false` and can no longer be used.
/// A provisioned database's connection goes with the database (`DELETE /api/v1/provision/{id}`).
#[utoipa::path(delete, path = "/api/v1/connections/{id}", tag = "autodb", params(("id" = String, Path)),
    responses((status = 200, body = Data<ConnectionDeactivated>), (status = 404), (status = 409)))]
async fn delete_connection(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Data<ConnectionDeactivated>> {
    require(&auth, KeyRole::Write)?;
    let c = find_connection(&state, &auth, &id).await?;
    if let Some(p) = state.catalog.provisioned_by_connection(&c.id).await?
        && p.status != ConnectionStatus::Deleted
    {
        return Err(ApiError::conflict(format!(
            "connection {} belongs to provisioned database {}; delete that instead",
            c.id, p.id
        )));
    }
    state
        .catalog
        .deactivate_connection(&auth.project_id, &c.id)
        .await?;
    Ok(Reply::ok(data(ConnectionDeactivated {
        id: c.id,
        is_active: false,
    })))
}

/// An active connection with its string unsealed, and the provisioned database it stands for
/// when tdb made it (whose string points at the shared server, on a private address).
struct Opened {
    connection: Connection,
    url: String,
    provisioned: Option<Provisioned>,
}

impl Opened {
    /// Errors of a user's own database are the user's to see (400). A provisioned database's
    /// server is tdb's: its address stays out of the answer.
    fn error(&self, e: EngineError) -> ApiError {
        match e {
            EngineError::Connect(m) if self.provisioned.is_none() => {
                ApiError::bad_request(format!("cannot connect to the database: {m}"))
            }
            other => engine_error(other),
        }
    }
}

async fn open_connection(state: &AppState, auth: &Auth, id: &str) -> Result<Opened, ApiError> {
    let c = find_connection(state, auth, id).await?;
    if !c.is_active {
        return Err(ApiError::conflict(format!(
            "connection {} is inactive (deleted)",
            c.id
        )));
    }
    let provisioned = state.catalog.provisioned_by_connection(&c.id).await?;
    let url = match &provisioned {
        // Where a provisioned database lives is tdb's to say now, not when it was made: the
        // server's address may have changed since (its socket, its port).
        Some(p) => provisioned_url(state, p).await?,
        None => state
            .master_key
            .open_string(&c.secret, Aad::Connection(&c.id))
            .map_err(|e| ApiError::internal(format!("cannot unseal connection {}: {e}", c.id)))?,
    };
    Ok(Opened {
        connection: c,
        url,
        provisioned,
    })
}

/// How tdb itself reaches a provisioned database: as its role, at its server's address (a
/// Unix socket directory for tdb's managed servers).
async fn provisioned_url(state: &AppState, p: &Provisioned) -> Result<String, ApiError> {
    let server = state.catalog.find_server(&p.server_id).await?;
    let password = state
        .master_key
        .open_string(&p.role_secret, Aad::Provisioned(&p.id))
        .map_err(|e| ApiError::internal(format!("cannot unseal database {}: {e}", p.id)))?;
    Ok(server_url(&server, &p.role_name, &password, &p.database))
}

/// A URL for `user` on `database` of `server`; a socket directory goes in the `host` parameter.
fn server_url(
    server: &tdb_catalog::servers::Server,
    user: &str,
    password: &str,
    database: &str,
) -> String {
    if server.host.starts_with('/') {
        let dir: String = url::form_urlencoded::byte_serialize(server.host.as_bytes()).collect();
        format!(
            "postgresql://{user}:{password}@localhost:{}/{database}?host={dir}",
            server.port
        )
    } else {
        format!(
            "postgresql://{user}:{password}@{}:{}/{database}",
            url_host(&server.host),
            server.port
        )
    }
}

/// The address to connect to. A registered (not provisioned) connection may reach internal
/// addresses only when the operator allows it; its host is resolved once and the connection
/// pinned to that address, unless `sslmode=verify-full` makes the certificate prove the name
/// (pinning would check it against the address instead).
async fn checked_address(
    state: &AppState,
    opened: &Opened,
) -> Result<Option<std::net::IpAddr>, ApiError> {
    if opened.provisioned.is_some() {
        return Ok(None);
    }
    let parsed = url::Url::parse(&opened.url)
        .map_err(|_| ApiError::bad_request("the stored connection string is not a URI"))?;
    let host = parsed.host_str().unwrap_or_default().to_string();
    let port = parsed.port().unwrap_or(5432);
    let ip = crate::import::resolve_checked(
        &host,
        port,
        state.config.connections_allow_private,
        "connections_allow_private",
    )
    .await
    .map_err(|m| ApiError::new(ErrorCode::BadRequest, m))?;
    let verify_full = parsed
        .query_pairs()
        .any(|(k, v)| k == "sslmode" && v == "verify-full");
    Ok((!verify_full).then_some(ip))
}

/// Schemas (minus the excluded ones), tables and views with columns, primary keys, indexes,
/// foreign keys and row estimates, as the connection's own user sees them.
#[utoipa::path(get, path = "/api/v1/connections/{id}/introspect", tag = "autodb", params(("id" = String, Path)),
    responses((status = 200, body = Data<Introspection>),
              (status = 404), (status = 409, description = "the connection is inactive")))]
async fn introspect(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Data<Introspection>> {
    require(&auth, KeyRole::Read)?;
    let opened = open_connection(&state, &auth, &id).await?;
    let pin = checked_address(&state, &opened).await?;
    let engine = crate::workspace::engine_for(&state, tdb_core::Engine::Postgresql)?;
    let c = &opened.connection;
    let overview = engine
        .require_url_sessions()
        .map_err(|e| opened.error(e))?
        .overview_url(&opened.url, pin, &c.excluded_schemas)
        .await
        .map_err(|e| opened.error(e))?;
    let at = state.catalog.mark_introspected(&c.id).await?;
    Ok(Reply::ok(data(Introspection {
        connection_id: c.id.clone(),
        database_name: c.database_name.clone(),
        introspected_at: at,
        excluded_schemas: c.excluded_schemas.clone(),
        table_count: overview.table_count(),
        schemas: overview.schemas,
    })))
}

/// Runs SQL on the connection's database as its own user (a provisioned database's own role),
/// with the default query timeout and row cap. An extension of the spec's surface, which says
/// a connection is usable for queries.
#[utoipa::path(post, path = "/api/v1/connections/{id}/query", tag = "autodb", params(("id" = String, Path)),
    request_body = ConnectionQuery,
    responses((status = 200, body = Data<ConnectionRows>),
              (status = 400, description = "the database refused the statement"), (status = 404), (status = 409)))]
async fn query(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath(id): ApiPath<String>,
    V1Body(body): V1Body,
) -> ApiResult<Data<ConnectionRows>> {
    require(&auth, KeyRole::Write)?;
    let mut problems = Problems::default();
    let sql = problems.string(&body, "query", 1, None, false);
    problems.into_result()?;
    let sql = sql.unwrap_or_default();
    let opened = open_connection(&state, &auth, &id).await?;
    // A provisioned database keeps its role and schema here as through the proxy.
    if let Some(p) = &opened.provisioned
        && let Some(why) = tdb_sql::pinned_session_refusal(&sql, &p.schema_name)
    {
        return Err(ApiError::new(ErrorCode::PermissionDenied, why).with("sqlstate", "42501"));
    }
    let pin = checked_address(&state, &opened).await?;
    let engine = crate::workspace::engine_for(&state, tdb_core::Engine::Postgresql)?;
    let mut session = engine
        .require_url_sessions()
        .map_err(|e| opened.error(e))?
        .open_url(
            &opened.url,
            pin,
            limits(&state, &auth.project_id, &Settings::default()),
        )
        .await
        .map_err(|e| opened.error(e))?;
    let started = Instant::now();
    let result = session.run(&sql).await;
    session.close().await;
    let out = result.map_err(|e| opened.error(e))?;
    Ok(Reply::ok(data(ConnectionRows {
        columns: out.columns,
        rows: out.rows,
        row_count: out.row_count,
        truncated: out.truncated,
        execution_time: format_duration(started.elapsed()),
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_strings_parse_to_host_port_and_database() {
        let p = parse_connection_string(
            "postgresql://u:p%40ss@db.example.com:6543/app?sslmode=require",
        )
        .expect("parses");
        assert_eq!(
            (p.host.as_str(), p.port, p.database.as_str()),
            ("db.example.com", 6543, "app")
        );
        let p = parse_connection_string("postgres://alice:x@10.0.0.5").expect("parses");
        assert_eq!(p.host, "10.0.0.5");
        assert_eq!((p.port, p.database.as_str()), (5432, "alice"));
        let p = parse_connection_string("postgres://bob:x@h/a%26b").expect("parses");
        assert_eq!(p.database, "a&b");
        let p = parse_connection_string("postgres://u:p@[::1]:5433/d%20b").expect("parses");
        assert_eq!((p.host.as_str(), p.database.as_str()), ("[::1]", "d b"));
        for bad in [
            "mysql://u:p@h/db",
            "postgresql:///db?host=/var/run/postgresql",
            "postgresql://u:p@h/db?host=/tmp",
            "postgresql://u:p@h/db?sslkey=/etc/shadow",
            "not a uri at all",
            "postgresql://db.example.com/app",
            "postgresql://alice@db.example.com/app",
        ] {
            assert!(parse_connection_string(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn problems_read_like_fastapi() {
        let body = json!({ "name": "", "db_type": 5 });
        let mut p = Problems::default();
        assert_eq!(p.string(&body, "name", 1, Some(200), false), None);
        assert_eq!(p.string(&body, "db_type", 0, None, false), None);
        assert_eq!(p.string(&body, "connection_string", 10, None, true), None);
        let err = p.into_result().expect_err("invalid");
        assert_eq!(err.code, ErrorCode::ValidationError);
        let detail = &err.extra.expect("extra")["detail"];
        assert_eq!(detail[0]["type"], "string_too_short");
        assert_eq!(detail[0]["loc"], json!(["body", "name"]));
        assert_eq!(detail[0]["ctx"]["min_length"], 1);
        assert_eq!(detail[1]["type"], "string_type");
        assert_eq!(detail[2]["type"], "missing");
        assert_eq!(detail[2]["msg"], "Field required");
    }
}
