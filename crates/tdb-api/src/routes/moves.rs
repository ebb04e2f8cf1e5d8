//! `PATCH /tenants/{id}/isolation`: moves one database of a tenant to another server (L1 -> L2,
//! L2 -> L1, a dedicated server's region, or one shared server to another), as a durable
//! `tenant_move` job (see `tdb_jobs::moves`). The answer comes at once; `GET /tenants/{id}`
//! follows the move in `last_move`.

use axum::extract::State;
use tdb_catalog::CatalogError;
use tdb_catalog::moves::NewMove;
use tdb_catalog::servers::{NewDedicatedServer, Server};
use tdb_catalog::tenants::TenantDatabase;
use tdb_core::aad::Aad;
use tdb_core::{ErrorCode, KeyRole, ServerRole, ServerStatus, TenantStatus, Tier, ids};
use tdb_types::tenants::{MoveRequest, MoveStarted};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::envelope::{ApiError, ApiResult, Reply};
use crate::extract::{ApiJson, ApiPath, Auth};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(move_tenant))
}

/// Where a move goes.
enum Target {
    /// An existing shared server.
    Shared(Server),
    /// A new dedicated server in this region.
    Dedicated(String),
}

/// Moves one database of the tenant to another server while it serves: a safety backup, the
/// target built, replication (or a dump and restore behind a hold), a cutover of a moment.
#[utoipa::path(patch, path = "/tenants/{id}/isolation", tag = "tenants",
    params(("id" = String, Path)), request_body = MoveRequest,
    responses((status = 200, body = MoveStarted, description = "the move has started; follow it in GET /tenants/{id} (last_move)"),
              (status = 400, description = "unknown blueprint, region or server (the message names the choices), level 2 for an engine without servers of their own (MySQL), or nothing would change"),
              (status = 403, description = "L2 on the free tier"), (status = 404),
              (status = 409, description = "the tenant is moving, suspended, in the trash, being created or restored")))]
async fn move_tenant(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath(name): ApiPath<String>,
    ApiJson(req): ApiJson<MoveRequest>,
) -> ApiResult<MoveStarted> {
    auth.require_role(KeyRole::Write)?;
    let t = super::tenants::find(&state, &auth, &name).await?;
    let to_level = req.isolation_level.number();
    if to_level == 2 && auth.tier == Tier::Free {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "L2 dedicated isolation requires a paid plan",
        ));
    }
    if t.status != TenantStatus::Ready {
        return Err(busy(&name, t.status));
    }
    let databases = state.catalog.tenant_databases(&t.id).await?;
    let db = database_of(&databases, &name, &req.blueprint)?;
    let to_region = region_of(&state, db, req.region.as_deref())?;
    let target = choose_target(
        &state,
        db,
        to_level,
        (&to_region, req.region.is_some()),
        req.server.as_deref(),
    )
    .await?;
    let move_id = record(
        &state,
        &auth.project_id,
        (&name, &t.id),
        db,
        (&target, to_level),
    )
    .await?;
    Ok(Reply::ok(started(&name, db, &target, to_level, move_id)))
}

/// Records the move (with a new dedicated server when it goes to L2) and its job; returns its
/// id. The tenant must still be `ready` (409 otherwise).
async fn record(
    state: &AppState,
    project_id: &str,
    (name, tenant_id): (&str, &str),
    db: &TenantDatabase,
    (target, to_level): (&Target, i32),
) -> Result<String, ApiError> {
    // A named server decides the region when none was asked for.
    let to_region = match target {
        Target::Shared(server) => server.region.clone(),
        Target::Dedicated(region) => region.clone(),
    };
    let move_id = ids::new_id("mov");
    let (to_server_id, dedicated_name, sealed) = match target {
        Target::Shared(server) => (server.id.clone(), None, Vec::new()),
        Target::Dedicated(_) => {
            let id = ids::server_id();
            let sealed = state.master_key.seal(b"", Aad::ServerAdmin(&id));
            let name = format!("pg-l2-{}", &id[4..]);
            (id, Some(name), sealed)
        }
    };
    // A dedicated server is run by the tdb whose provisioner made it: the move is that tdb's
    // to run (the source's when it is dedicated, else this one's when the target is).
    let source = state.catalog.find_server(&db.server_id).await?;
    let node = match (&source.provisioner, target) {
        (Some(owner), _) => Some(owner.clone()),
        (None, Target::Dedicated(_)) => Some(state.jobs.provisioner.kind().to_string()),
        (None, Target::Shared(_)) => None,
    };
    let created = state
        .catalog
        .create_move(&NewMove {
            id: &move_id,
            project_id,
            tenant_id,
            tenant_database_id: &db.id,
            from_server_id: &db.server_id,
            to_server_id: &to_server_id,
            from_level: db.isolation_level,
            to_level,
            from_region: &db.region,
            to_region: &to_region,
            dedicated: dedicated_name.as_deref().map(|n| NewDedicatedServer {
                id: &to_server_id,
                name: n,
                engine: db.engine,
                region: &to_region,
                admin_user: "",
                admin_secret: &sealed,
                provisioner: node.as_deref().unwrap_or_default(),
            }),
            node: node.as_deref(),
        })
        .await;
    match created {
        Ok(()) => {}
        Err(CatalogError::Conflict(status)) => {
            let status = TenantStatus::try_from(status).unwrap_or(TenantStatus::Migrating);
            return Err(busy(name, status));
        }
        Err(e) => return Err(e.into()),
    }
    tracing::info!(tenant = %tenant_id, move_id = %move_id, from = %db.server_id, to = %to_server_id, "move queued");
    Ok(move_id)
}

/// The tenant's database of `blueprint`, or a 400 naming the ones it has.
fn database_of<'a>(
    databases: &'a [TenantDatabase],
    tenant: &str,
    blueprint: &str,
) -> Result<&'a TenantDatabase, ApiError> {
    databases
        .iter()
        .find(|d| d.blueprint == blueprint)
        .ok_or_else(|| {
            let names: Vec<&str> = databases.iter().map(|d| d.blueprint.as_str()).collect();
            ApiError::field(
                "blueprint",
                format!(
                    "tenant '{tenant}' has no database of blueprint '{blueprint}'; it has: {}",
                    names.join(", ")
                ),
            )
        })
}

/// The region asked for (a configured zone), else the database's own.
fn region_of(
    state: &AppState,
    db: &TenantDatabase,
    asked: Option<&str>,
) -> Result<String, ApiError> {
    match asked {
        None => Ok(db.region.clone()),
        Some(r) if state.config.regions.iter().any(|z| z.zone == r) => Ok(r.to_string()),
        Some(r) => {
            let zones: Vec<&str> = state
                .config
                .regions
                .iter()
                .map(|z| z.zone.as_str())
                .collect();
            Err(ApiError::field(
                "region",
                format!(
                    "unknown region '{r}'; choose one of: {} (GET /regions)",
                    zones.join(", ")
                ),
            ))
        }
    }
}

/// The answer, as the reference words it (`change` and the regions when the region changes).
fn started(
    tenant: &str,
    db: &TenantDatabase,
    target: &Target,
    to_level: i32,
    move_id: String,
) -> MoveStarted {
    let to_region = match target {
        Target::Shared(server) => server.region.clone(),
        Target::Dedicated(region) => region.clone(),
    };
    let region_changed = to_region != db.region;
    MoveStarted {
        tenant_id: tenant.to_string(),
        blueprint: db.blueprint.clone(),
        status: TenantStatus::Migrating.as_str().to_string(),
        from: db.isolation_level,
        to: to_level,
        change: region_changed.then(|| "region".to_string()).or_else(|| {
            (to_level == db.isolation_level && to_level == 1).then(|| "server".to_string())
        }),
        from_region: region_changed.then(|| db.region.clone()),
        to_region: region_changed.then_some(to_region),
        to_server: match target {
            Target::Shared(server) => Some(server.name.clone()),
            Target::Dedicated(_) => None,
        },
        message: format!(
            "Migration in progress for '{}'. Check tenant status for completion.",
            db.blueprint
        ),
        move_id,
    }
}

/// Why a tenant in `status` cannot move now.
fn busy(name: &str, status: TenantStatus) -> ApiError {
    let why = match status {
        TenantStatus::Syncing | TenantStatus::Migrating => {
            format!("tenant '{name}' is already moving; see GET /tenants/{name} (last_move)")
        }
        TenantStatus::Suspended => format!("tenant '{name}' is suspended; resume it first"),
        TenantStatus::Deleted => format!("tenant '{name}' is in the trash; restore it first"),
        TenantStatus::Restoring | TenantStatus::Recovering => {
            format!("tenant '{name}' is being restored; move it once that is done")
        }
        other => format!("tenant '{name}' is {other}; only a ready tenant can move"),
    };
    ApiError::conflict(why).with("status", status.as_str())
}

/// The server the database goes to: a new dedicated one (L2), the named shared server, or the
/// shared server placement picks in the region. Refuses a move that changes nothing.
async fn choose_target(
    state: &AppState,
    db: &TenantDatabase,
    to_level: i32,
    (to_region, region_asked): (&str, bool),
    server: Option<&str>,
) -> Result<Target, ApiError> {
    if to_level == 2 {
        crate::tenant::dedicated_available(db.engine)?;
        if server.is_some() {
            return Err(ApiError::field(
                "server",
                "names a shared server, for isolation_level 1 only (dedicated servers are \
                 made by tdb)",
            ));
        }
        if db.isolation_level == 2 && to_region == db.region {
            return Err(ApiError::bad_request(format!(
                "the database is already on a dedicated server in region '{to_region}'; name \
                 another region to move it"
            )));
        }
        return Ok(Target::Dedicated(to_region.to_string()));
    }
    let shared: Vec<Server> = state
        .catalog
        .list_servers()
        .await?
        .into_iter()
        .filter(|s| s.role == ServerRole::Shared && s.engine == db.engine)
        .collect();
    let Some(name) = server else {
        let placed = state
            .catalog
            .place_shared(db.engine, to_region)
            .await?
            .filter(|s| s.id != db.server_id);
        return placed.map(Target::Shared).ok_or_else(|| {
            if db.isolation_level == 1 && to_region == db.region {
                ApiError::bad_request(format!(
                    "the database is already on a shared server in region '{to_region}'; name \
                     a server (\"server\") to move it to another one"
                ))
            } else {
                ApiError::new(
                    ErrorCode::ServiceUnavailable,
                    format!("no other shared server in region '{to_region}' takes new databases"),
                )
            }
        });
    };
    named_shared(&shared, db, name, (to_region, region_asked)).map(Target::Shared)
}

/// The shared server `name`, if the database may move there: it exists, is active, is not
/// where the database is, and is in the region asked for.
fn named_shared(
    shared: &[Server],
    db: &TenantDatabase,
    name: &str,
    (to_region, region_asked): (&str, bool),
) -> Result<Server, ApiError> {
    let choices = || {
        shared
            .iter()
            .filter(|s| s.status == ServerStatus::Active && s.id != db.server_id)
            .map(|s| format!("{} ({})", s.name, s.region))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let Some(found) = shared.iter().find(|s| s.name == name) else {
        return Err(ApiError::field(
            "server",
            format!(
                "unknown shared server '{name}'; choose one of: {}",
                choices()
            ),
        ));
    };
    if found.id == db.server_id {
        return Err(ApiError::field(
            "server",
            format!(
                "the database is already on '{name}'; choose one of: {}",
                choices()
            ),
        ));
    }
    if found.status != ServerStatus::Active {
        return Err(ApiError::field(
            "server",
            format!(
                "server '{name}' is {} and takes no new databases; choose one of: {}",
                found.status,
                choices()
            ),
        ));
    }
    if region_asked && found.region != to_region {
        return Err(ApiError::field(
            "server",
            format!(
                "server '{name}' is in region '{}', not '{to_region}'",
                found.region
            ),
        ));
    }
    Ok(found.clone())
}
