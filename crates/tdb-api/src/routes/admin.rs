//! Admin queries: data statements run on one tenant's database or on every tenant of a
//! blueprint, as the tenant's row-only role. DDL is refused by the parser with the reference's
//! message, and would be refused again by the database.

use std::time::Instant;

use axum::extract::State;
use futures_util::{StreamExt, TryStreamExt};
use tdb_catalog::tenants::TenantDatabase;
use tdb_core::{ErrorCode, KeyRole, TenantStatus};
use tdb_engines::{Limits, QueryOutput};
use tdb_sql::{Kind, Statement};
use tdb_types::admin::{AdminAnswer, AdminQuery, AllTenantRows, Rows, TenantOutcome, TenantRows};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::envelope::{ApiError, ApiResult, Reply};
use crate::extract::{ApiJson, Auth};
use crate::workspace::{Settings, engine_error, format_duration};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(admin_query))
}

/// Tenants one `all_tenants` query reaches at once.
const ALL_TENANTS_PARALLELISM: usize = 8;

pub const DDL_REFUSED: &str =
    "DDL not allowed on tenant databases. Deploy schema through blueprints.";

/// Data statements only. TRUNCATE is refused too (it bypasses row triggers and takes an
/// exclusive lock; use DELETE), as are COPY (no streaming over HTTP), LOCK and EXECUTE (nothing
/// can be prepared), transaction control and session settings.
pub fn check_statements(statements: &[Statement<'_>]) -> Result<(), ApiError> {
    if statements.is_empty() {
        return Err(ApiError::field("query", "holds no statement"));
    }
    for s in statements {
        match (&s.kind, s.tag.as_str()) {
            (Kind::Ddl, _) => {
                return Err(ApiError::bad_request(DDL_REFUSED).with("statement", s.text));
            }
            (Kind::Query, _) => {}
            (Kind::Dml, "TRUNCATE") => {
                return Err(ApiError::bad_request(
                    "TRUNCATE is not allowed on tenant databases; use DELETE",
                ));
            }
            (Kind::Dml, tag @ ("COPY" | "LOCK" | "EXECUTE"))
            | (Kind::Other | Kind::Transaction(_), tag) => {
                return Err(ApiError::bad_request(format!(
                    "admin queries run data statements only (SELECT, INSERT, UPDATE, DELETE, MERGE, CALL); {tag} is not allowed"
                )));
            }
            (Kind::Dml, _) => {}
        }
    }
    Ok(())
}

/// Runs data statements on one tenant (`tenant_id`) or all tenants (`all_tenants`) of a blueprint.
#[utoipa::path(post, path = "/admin/query", tag = "admin", request_body = AdminQuery,
    responses((status = 200, body = AdminAnswer, description = "one tenant's rows (tenant_id) or every tenant's (all_tenants)"),
              (status = 400), (status = 403), (status = 404), (status = 409)))]
async fn admin_query(
    State(state): State<AppState>,
    auth: Auth,
    ApiJson(req): ApiJson<AdminQuery>,
) -> ApiResult<AdminAnswer> {
    auth.require_role(KeyRole::Admin)?;
    let bp = state.catalog.find_blueprint(&auth.project_id, &req.blueprint).await.map_err(|_| {
        ApiError::not_found(format!("blueprint '{}' not found (control-mode workspaces have none; use their queries endpoint)", req.blueprint))
    })?;
    let ws = state
        .catalog
        .find_workspace(&auth.project_id, &bp.name)
        .await?;
    let dialect = crate::workspace::dialect(ws.engine);
    let text = req
        .query
        .text(dialect == tdb_sql::Dialect::Redis)
        .map_err(|why| ApiError::field("query", why))?;
    let statements = dialect.classify_all(&text).map_err(|e| {
        ApiError::field("query", format!("syntax error: {e}")).with("sqlstate", "42601")
    })?;
    check_statements(&statements)?;
    let settings = Settings::from_json(&ws.settings.0);
    // One answer for the whole request, however many tenants it reads.
    let limits = crate::workspace::limits(&state, &auth.project_id, &settings);
    let databases = state.catalog.blueprint_databases(&bp.id).await?;
    let started = Instant::now();
    match (&req.tenant_id, req.all_tenants.unwrap_or(false)) {
        (Some(_), true) => Err(ApiError::bad_request(
            "give tenant_id or all_tenants, not both",
        )),
        (None, false) => Err(ApiError::bad_request("give tenant_id or all_tenants: true")),
        (Some(name), false) => {
            auth.require_tenant(name)?;
            let db = databases
                .iter()
                .find(|d| &d.tenant_name == name)
                .ok_or_else(|| {
                    ApiError::not_found(format!("tenant '{name}' has no '{}' database", bp.name))
                })?;
            let status = state
                .catalog
                .find_tenant(&auth.project_id, name)
                .await?
                .status;
            if status != TenantStatus::Ready {
                return Err(ApiError::conflict(not_ready(name, Some(status))));
            }
            let out = run_on(&state, &auth, db, &statements, &limits).await?;
            Ok(Reply::ok(AdminAnswer::One(TenantRows {
                rows: rows(out),
                tenant_id: name.clone(),
                execution_time: format_duration(started.elapsed()),
            })))
        }
        (None, true) => {
            auth.require_project_scope()?;
            let tenants = state.catalog.list_tenants(&auth.project_id).await?;
            // Tenants are queried a bounded number at a time, in the blueprint's tenant order.
            let mut pending = Vec::with_capacity(databases.len());
            for db in &databases {
                let status = tenants
                    .iter()
                    .find(|t| t.id == db.tenant_id)
                    .map(|t| t.status);
                pending.push(query_tenant(
                    &state,
                    &auth,
                    db,
                    status,
                    &statements,
                    &limits,
                ));
            }
            let results: Vec<TenantOutcome> = futures_util::stream::iter(pending)
                .buffered(ALL_TENANTS_PARALLELISM)
                .try_collect()
                .await?;
            Ok(Reply::ok(AdminAnswer::All(AllTenantRows {
                results,
                total_tenants: databases.len(),
                execution_time: format_duration(started.elapsed()),
            })))
        }
    }
}

/// One tenant's entry in an `all_tenants` answer; the request fails as a whole only when the
/// answer outgrows its memory.
async fn query_tenant(
    state: &AppState,
    auth: &Auth,
    db: &TenantDatabase,
    status: Option<TenantStatus>,
    statements: &[Statement<'_>],
    limits: &Limits,
) -> Result<TenantOutcome, ApiError> {
    let tenant = db.tenant_name.clone();
    if status != Some(TenantStatus::Ready) {
        return Ok(TenantOutcome::not_ready(
            tenant.clone(),
            not_ready(&tenant, status),
            status,
        ));
    }
    match run_on(state, auth, db, statements, limits).await {
        Ok(out) => Ok(TenantOutcome::rows(tenant, rows(out))),
        Err(e) if e.code == ErrorCode::PayloadTooLarge => Err(e),
        Err(e) => Ok(TenantOutcome::failed(tenant, e.message)),
    }
}

fn rows(out: QueryOutput) -> Rows {
    Rows {
        columns: out.columns,
        rows: out.rows,
        row_count: out.row_count,
        truncated: out.truncated,
    }
}

/// Why a tenant that is not ready is not queried (`None`: it is gone), and for a suspended one
/// how to resume it.
fn not_ready(name: &str, status: Option<TenantStatus>) -> String {
    match status {
        Some(TenantStatus::Suspended) => format!(
            "tenant '{name}' is suspended: its queries are refused until it is resumed \
             (POST /tenants/{name}/resume)"
        ),
        Some(other) => format!("tenant '{name}' is {other}"),
        None => format!("tenant '{name}' is gone"),
    }
}

async fn run_on(
    state: &AppState,
    auth: &Auth,
    db: &TenantDatabase,
    statements: &[Statement<'_>],
    limits: &Limits,
) -> Result<QueryOutput, ApiError> {
    let server = state.catalog.find_server(&db.server_id).await?;
    let access =
        tdb_jobs::access::app_access(&state.master_key, &server, db).map_err(ApiError::internal)?;
    let admin = crate::workspace::admin_endpoint(state, &server)?;
    let mut session = state
        .engines
        .require(db.engine)
        .map_err(engine_error)?
        .open(&access, limits.clone(), Some(&admin))
        .await
        .map_err(engine_error)?;
    let mut last = QueryOutput::default();
    let mut log = crate::querylog::ApiLog::tenant(
        &auth.project_id,
        &db.blueprint,
        &db.tenant_name,
        &auth.key_id,
    );
    for s in statements {
        let (at, started) = (chrono::Utc::now(), Instant::now());
        let ran = session.run(s.text).await;
        log.ran(s.text, at, started.elapsed(), ran.as_ref());
        match ran {
            Ok(out) => last = out,
            Err(e) => {
                log.flush(state);
                session.close().await;
                let err = engine_error(e);
                let denied = err
                    .extra
                    .as_ref()
                    .and_then(|x| x.get("sqlstate"))
                    .is_some_and(|c| c == "42501");
                return Err(if denied {
                    ApiError::new(ErrorCode::PermissionDenied, err.message)
                        .with("sqlstate", "42501")
                } else {
                    err
                });
            }
        }
    }
    session.close().await;
    log.flush(state);
    Ok(last)
}
