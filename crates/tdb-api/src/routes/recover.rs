//! Point-in-time recovery: `POST /tenants/{id}/recover` puts one tenant database back to a
//! moment inside its recoverable window (`pitr` in `GET /tenants/{id}`), as a durable
//! `tenant_recover` job (see `tdb_jobs::recover`); `POST /tenants/{id}/recover-undo` swaps the
//! original back while it is kept. Unlike the reference, L1 tenants (on a shared server) may be
//! recovered too: only their own database is restored, beside the neighbours.

use axum::extract::State;
use chrono::{DateTime, Utc};
use tdb_catalog::CatalogError;
use tdb_catalog::recoveries::{NewRecovery, NoWindow, Recovery, Window};
use tdb_catalog::servers::NewDedicatedServer;
use tdb_catalog::tenants::TenantDatabase;
use tdb_core::aad::Aad;
use tdb_core::{Engine, KeyRole, TenantStatus, ids};
use tdb_types::tenants::{
    PitrWindow, RecoverRequest, RecoveringTenant, RecoveryStarted, RecoveryState, RecoveryUndo,
    TenantState, TenantTransition,
};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::envelope::{ApiError, ApiResult, Reply};
use crate::extract::{ApiJson, ApiPath, Auth};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(recover))
        .routes(routes!(recover_undo))
}

/// Recovers one database of the tenant to a moment of its past: restored from its server's WAL
/// archive beside the live one, then switched to behind a hold of a moment. The original is kept
/// for the undo window.
#[utoipa::path(post, path = "/tenants/{id}/recover", tag = "tenants",
    params(("id" = String, Path)), request_body = RecoverRequest,
    responses((status = 200, body = RecoveryStarted, description = "the recovery has started; follow it in GET /tenants/{id} (last_recovery)"),
              (status = 400, description = "the timestamp is not ISO 8601, is in the future or outside the recoverable window (named); an unknown blueprint"),
              (status = 404),
              (status = 409, description = "the tenant is moving, restoring, recovering, suspended or in the trash; a recovery can still be undone; its server has no archive (yet)")))]
async fn recover(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath(name): ApiPath<String>,
    ApiJson(req): ApiJson<RecoverRequest>,
) -> ApiResult<RecoveryStarted> {
    auth.require_role(KeyRole::Admin)?;
    let t = super::tenants::find(&state, &auth, &name).await?;
    let at = parse_moment(&req.timestamp)?;
    let databases = state.catalog.tenant_databases(&t.id).await?;
    let db = database_of(&databases, &name, req.blueprint.as_deref())?;
    if db.engine != Engine::Postgresql {
        return Err(ApiError::conflict(format!(
            "point-in-time recovery covers PostgreSQL databases; '{}' is {}",
            db.blueprint, db.engine
        )));
    }
    let window = window_of(&state, db).await?;
    check_inside(at, &window)?;
    if t.status != TenantStatus::Ready {
        return Err(busy(&name, t.status));
    }
    if let Some(last) = state.catalog.last_recovery(&t.id).await?
        && last.undoable(Utc::now())
    {
        return Err(ApiError::conflict(format!(
            "the recovery of tenant '{name}' to {} can still be undone until {}; undo it first \
             (tdb tenants recover-undo {name}) or wait until then",
            moment(last.target_at),
            moment(last.undo_until)
        )));
    }
    let recovery_id = record(&state, &auth.project_id, &t.id, db, at)
        .await
        .map_err(|e| match e {
            RecordError::Busy(status) => busy(&name, status),
            RecordError::Api(e) => e,
        })?;
    let hours = state.jobs.config.recovery_undo_window.as_secs() / 3600;
    Ok(Reply::ok(RecoveryStarted {
        message: format!(
            "Recovery initiated for tenant '{name}' to {}. Original database preserved for {hours}h.",
            moment(at)
        ),
        tenant: RecoveringTenant {
            tenant_id: name,
            status: TenantStatus::Recovering,
            target_timestamp: moment(at),
        },
        recovery_id,
    }))
}

enum RecordError {
    Busy(TenantStatus),
    Api(ApiError),
}

impl<E: Into<ApiError>> From<E> for RecordError {
    fn from(e: E) -> Self {
        Self::Api(e.into())
    }
}

/// Records the recovery (with the dedicated server an L2 recovery makes) and its job.
async fn record(
    state: &AppState,
    project_id: &str,
    tenant_id: &str,
    db: &TenantDatabase,
    at: DateTime<Utc>,
) -> Result<String, RecordError> {
    let archive = state
        .catalog
        .archive_of(&db.server_id)
        .await?
        .ok_or_else(|| ApiError::conflict("the tenant's server archives no WAL"))?;
    let id = ids::new_id("rec");
    let original = state.catalog.find_server(&db.server_id).await?;
    let (recovered_server_id, recovered_db, dedicated_name, sealed) = if db.isolation_level == 2 {
        let server_id = ids::server_id();
        let sealed = state.master_key.seal(b"", Aad::ServerAdmin(&server_id));
        let name = format!("pg-l2-{}", &server_id[4..]);
        (server_id, db.physical_db.clone(), Some(name), sealed)
    } else {
        let name = format!("tdb_t_{}", &ids::new_id("r")[2..]);
        (db.server_id.clone(), name, None, Vec::new())
    };
    let undo = chrono::Duration::from_std(state.jobs.config.recovery_undo_window)
        .unwrap_or(chrono::Duration::hours(24));
    let created = state
        .catalog
        .create_recovery(&NewRecovery {
            id: &id,
            project_id,
            tenant_id,
            tenant_database_id: &db.id,
            level: db.isolation_level,
            target_at: at,
            original_server_id: &db.server_id,
            original_db: &db.physical_db,
            recovered_server_id: &recovered_server_id,
            recovered_db: &recovered_db,
            undo_until: Utc::now() + undo,
            dedicated: dedicated_name.as_deref().map(|name| NewDedicatedServer {
                id: &recovered_server_id,
                name,
                engine: db.engine,
                region: &db.region,
                admin_user: &original.admin_user,
                admin_secret: &sealed,
                provisioner: &archive.node,
            }),
            node: &archive.node,
        })
        .await;
    match created {
        Ok(()) => Ok(id),
        Err(CatalogError::Conflict(status)) => Err(RecordError::Busy(
            TenantStatus::try_from(status).unwrap_or(TenantStatus::Failed),
        )),
        Err(e) => Err(e.into()),
    }
}

/// Swaps the tenant's newest recovery back: its original (kept for the undo window) serves the
/// tenant again, and the recovered copy goes.
#[utoipa::path(post, path = "/tenants/{id}/recover-undo", tag = "tenants",
    params(("id" = String, Path)),
    responses((status = 200, body = TenantTransition, description = "the original serves the tenant again (`ready`), or, when that takes over 30 s, is being swapped back (`recovering`)"),
              (status = 404),
              (status = 409, description = "nothing to undo, the undo window is over, or the tenant is busy")))]
async fn recover_undo(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<TenantTransition> {
    auth.require_role(KeyRole::Admin)?;
    let t = super::tenants::find(&state, &auth, &name).await?;
    let Some(last) = state.catalog.last_recovery(&t.id).await? else {
        return Err(ApiError::conflict(format!(
            "tenant '{name}' has no recovery to undo"
        )));
    };
    if !last.undoable(Utc::now()) {
        return Err(ApiError::conflict(not_undoable(&name, &last)));
    }
    if t.status != TenantStatus::Ready {
        return Err(busy(&name, t.status));
    }
    let node = state
        .catalog
        .archive_of(&last.original_server_id)
        .await?
        .map(|a| a.node)
        .unwrap_or_else(|| state.jobs.provisioner.kind().to_string());
    match state.catalog.start_recovery_undo(&last, &node).await {
        Ok(()) => {}
        Err(CatalogError::Conflict(status)) => {
            return Err(match TenantStatus::try_from(status) {
                Ok(status) if status != TenantStatus::Ready => busy(&name, status),
                _ => ApiError::conflict(not_undoable(&name, &last)),
            });
        }
        Err(e) => return Err(e.into()),
    }
    let status = wait_undone(&state, &name, &last).await?;
    let message = if status == TenantStatus::Ready {
        format!("Recovery undone for tenant '{name}'. Original database restored.")
    } else {
        format!(
            "Undoing the recovery of tenant '{name}'; GET /tenants/{name} shows it `ready` on its \
             original once done."
        )
    };
    Ok(Reply::ok(TenantTransition {
        message,
        tenant: TenantState {
            tenant_id: name,
            status,
        },
    }))
}

/// How long `recover-undo` waits for its job to swap the original back before it answers
/// `recovering` instead of `ready`.
const UNDO_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Waits for the undo's job: `ready` once the original serves again, `recovering` when it takes
/// longer than UNDO_WAIT; an error when the undo did not happen.
async fn wait_undone(state: &AppState, name: &str, r: &Recovery) -> Result<TenantStatus, ApiError> {
    let started = std::time::Instant::now();
    while started.elapsed() < UNDO_WAIT {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let now = state.catalog.find_recovery(&r.id).await?;
        match now.step {
            tdb_core::RecoveryStep::Undone => return Ok(TenantStatus::Ready),
            tdb_core::RecoveryStep::Completed => {
                return Err(ApiError::conflict(format!(
                    "the recovery of tenant '{name}' could not be undone: {}",
                    now.history.last().cloned().unwrap_or_default()
                )));
            }
            _ => {}
        }
    }
    Ok(TenantStatus::Recovering)
}

fn not_undoable(name: &str, r: &Recovery) -> String {
    match r.step {
        tdb_core::RecoveryStep::Undone => {
            format!("the recovery of tenant '{name}' was undone already")
        }
        tdb_core::RecoveryStep::Failed => format!(
            "the last recovery of tenant '{name}' failed; the tenant kept its data and there is \
             nothing to undo"
        ),
        tdb_core::RecoveryStep::Completed => format!(
            "the undo window of tenant '{name}' ended at {}; the original is gone",
            moment(r.undo_until)
        ),
        _ => format!("the recovery of tenant '{name}' is still running; undo it once it is done"),
    }
}

/// ISO 8601 with a time zone (RFC 3339), to the microsecond.
fn parse_moment(text: &str) -> Result<DateTime<Utc>, ApiError> {
    DateTime::parse_from_rfc3339(text.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            ApiError::field(
                "timestamp",
                format!(
                    "'{text}' is not an ISO 8601 timestamp with a time zone, e.g. \
                     2026-02-03T17:10:59Z"
                ),
            )
        })
}

fn moment(at: DateTime<Utc>) -> String {
    if at.timestamp_subsec_micros() == 0 {
        at.format("%Y-%m-%dT%H:%M:%SZ").to_string()
    } else {
        at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
    }
}

async fn window_of(state: &AppState, db: &TenantDatabase) -> Result<Window, ApiError> {
    match state.catalog.recovery_window(&db.id).await? {
        Ok(window) => Ok(window),
        Err(NoWindow::NotArchived(server)) => Err(ApiError::conflict(format!(
            "server '{server}' is attached, and tdb does not archive its WAL: point-in-time \
             recovery needs a server tdb manages (see docs/API.md, point-in-time recovery)"
        ))),
        Err(NoWindow::NotYet(why)) => Err(ApiError::conflict(format!(
            "nothing can be recovered yet: {why}; GET /tenants/{{id}} shows `pitr` once it can"
        ))),
    }
}

fn check_inside(at: DateTime<Utc>, w: &Window) -> Result<(), ApiError> {
    let range = format!("from {} to {}", moment(w.from), moment(w.to));
    if at > Utc::now() {
        return Err(ApiError::field(
            "timestamp",
            format!(
                "{} is in the future; the recoverable window is {range}",
                moment(at)
            ),
        ));
    }
    if at < w.from || at > w.to {
        return Err(ApiError::field(
            "timestamp",
            format!("{} is outside the recoverable window, {range}", moment(at)),
        ));
    }
    Ok(())
}

fn database_of<'a>(
    databases: &'a [TenantDatabase],
    tenant: &str,
    blueprint: Option<&str>,
) -> Result<&'a TenantDatabase, ApiError> {
    let names = || {
        databases
            .iter()
            .map(|d| d.blueprint.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match blueprint {
        Some(b) => databases.iter().find(|d| d.blueprint == b).ok_or_else(|| {
            ApiError::field(
                "blueprint",
                format!(
                    "tenant '{tenant}' has no database of blueprint '{b}'; it has: {}",
                    names()
                ),
            )
        }),
        None if databases.len() == 1 => Ok(&databases[0]),
        None => Err(ApiError::field(
            "blueprint",
            format!(
                "tenant '{tenant}' has several databases; name the one to recover: {}",
                names()
            ),
        )),
    }
}

fn busy(name: &str, status: TenantStatus) -> ApiError {
    let why = match status {
        TenantStatus::Syncing | TenantStatus::Migrating => {
            format!("tenant '{name}' is moving; recover it once the move is done")
        }
        TenantStatus::Suspended => format!("tenant '{name}' is suspended; resume it first"),
        TenantStatus::Deleted => format!("tenant '{name}' is in the trash; restore it first"),
        TenantStatus::Restoring => {
            format!("tenant '{name}' is being restored from a backup; try again once that is done")
        }
        TenantStatus::Recovering => format!(
            "tenant '{name}' is already being recovered; see GET /tenants/{name} (last_recovery)"
        ),
        other => format!("tenant '{name}' is {other}; only a ready tenant can be recovered"),
    };
    ApiError::conflict(why).with("status", status.as_str())
}

/// What `GET /tenants/{id}` shows of recovery: the window (or why there is none), the undo
/// while it is possible, and the newest recovery.
pub(super) struct RecoveryView {
    pub pitr: Option<PitrWindow>,
    pub pitr_unavailable: Option<String>,
    pub recovery_undo: Option<RecoveryUndo>,
    pub last_recovery: Option<RecoveryState>,
}

pub(super) async fn view(
    state: &AppState,
    name: &str,
    tenant_id: &str,
    databases: &[TenantDatabase],
) -> Result<RecoveryView, ApiError> {
    let (mut pitr, mut pitr_unavailable) = (None::<PitrWindow>, None);
    if let Some(db) = databases.iter().find(|d| d.engine != Engine::Postgresql) {
        pitr_unavailable = Some(format!(
            "point-in-time recovery covers PostgreSQL databases; '{}' is {}",
            db.blueprint, db.engine
        ));
    }
    for db in databases.iter().filter(|d| d.engine == Engine::Postgresql) {
        match state.catalog.recovery_window(&db.id).await? {
            Ok(w) => {
                pitr = Some(match pitr {
                    None => PitrWindow {
                        from: w.from,
                        to: w.to,
                    },
                    Some(p) => PitrWindow {
                        from: p.from.max(w.from),
                        to: p.to.min(w.to),
                    },
                });
            }
            Err(NoWindow::NotArchived(server)) => {
                pitr_unavailable = Some(format!(
                    "server '{server}' is attached; tdb does not archive its WAL"
                ));
            }
            Err(NoWindow::NotYet(why)) => pitr_unavailable = Some(why),
        }
    }
    if pitr_unavailable.is_some() || pitr.as_ref().is_some_and(|p| p.from > p.to) {
        pitr = None;
    }
    let last = state.catalog.last_recovery(tenant_id).await?;
    let now = Utc::now();
    let recovery_undo = match &last {
        Some(r) if r.undoable(now) => {
            let original = state.catalog.find_server(&r.original_server_id).await?;
            Some(RecoveryUndo {
                available: true,
                original_host: if r.level == 2 {
                    original.name
                } else {
                    format!("{}/{}", original.name, r.original_db)
                },
                expires_at: r.undo_until,
                expires_in: tdb_jobs::recover::remaining(r.undo_until, now),
                command: format!("tdb tenants recover-undo {name}"),
            })
        }
        _ => None,
    };
    let last_recovery = last.map(|r| RecoveryState {
        recovery_id: r.id,
        blueprint: databases
            .iter()
            .find(|d| d.id == r.tenant_database_id)
            .map(|d| d.blueprint.clone())
            .unwrap_or_default(),
        step: r.step,
        target_timestamp: r.target_at,
        isolation_level: r.level,
        history: r.history,
        error: r.error,
        held_ms: r.held_ms,
        created_at: r.created_at,
        finished_at: r.finished_at,
    });
    Ok(RecoveryView {
        pitr,
        pitr_unavailable,
        recovery_undo,
        last_recovery,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moments_are_iso_8601_with_a_zone() {
        let at = parse_moment("2026-12-05T10:11:12Z").expect("zulu");
        assert_eq!(moment(at), "2026-12-05T10:11:12Z");
        let at = parse_moment("2026-12-05T11:11:12.5+01:00").expect("offset");
        assert_eq!(moment(at), "2026-12-05T10:11:12.500000Z");
        for bad in [
            "yesterday",
            "2026-12-05",
            "2026-12-05 10:11:12",
            "2026-12-05T10:11:12",
        ] {
            assert!(parse_moment(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_window_is_checked_with_its_bounds_named() {
        let now = Utc::now();
        let w = Window {
            from: now - chrono::Duration::hours(1),
            to: now - chrono::Duration::minutes(1),
        };
        assert!(check_inside(w.from, &w).is_ok());
        assert!(check_inside(w.to, &w).is_ok());
        let early = check_inside(w.from - chrono::Duration::seconds(1), &w).expect_err("early");
        assert!(
            early.message.contains("outside the recoverable window"),
            "{early:?}"
        );
        let future = check_inside(now + chrono::Duration::hours(1), &w).expect_err("future");
        assert!(future.message.contains("in the future"), "{future:?}");
    }
}
