//! The router: one file per resource, assembled here with the envelope's fallbacks, the body
//! limit and panic handling.

pub(crate) mod accounts;
mod admin;
mod apikeys;
pub(crate) mod autodb;
mod backups;
mod blueprints;
mod deployments;
mod invitations;
mod logs;
mod meta;
mod moves;
mod projects;
mod recover;
mod servers;
mod tenants;
pub(crate) mod workspaces;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::AppState;
use crate::openapi::ApiDoc;

/// The whole API, with `/openapi.json` describing it.
pub fn router(state: AppState) -> Router {
    router_with(state, Router::new())
}

/// The whole API plus `extra` routes that are no part of the API's own document (the binary
/// mounts `/mcp` here), behind the same address guard, metrics, tracing and panic handling.
pub fn router_with(state: AppState, extra: Router<AppState>) -> Router {
    let body_limit = state.config.body_limit;
    let (router, mut doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(meta::routes())
        .merge(accounts::routes())
        .merge(invitations::routes())
        .merge(projects::routes())
        .merge(apikeys::routes())
        .merge(workspaces::routes())
        .merge(blueprints::routes())
        .merge(tenants::routes())
        .merge(moves::routes())
        .merge(recover::routes())
        .merge(backups::routes())
        .merge(logs::routes())
        .merge(deployments::routes())
        .merge(admin::routes())
        .merge(servers::routes())
        .merge(autodb::routes())
        .merge(crate::console::routes())
        .split_for_parts();
    crate::openapi::finish(&mut doc);
    crate::compat::autodb_error::document(&mut doc);
    let doc = std::sync::Arc::new(doc);
    router
        .route(
            "/openapi.json",
            axum::routing::get(move || meta::openapi(doc.clone())),
        )
        .merge(extra)
        .merge(crate::console::pages())
        .fallback(meta::unknown_path)
        .method_not_allowed_fallback(meta::wrong_method)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            meta::guard_address,
        ))
        .layer(CatchPanicLayer::custom(meta::panicked))
        .layer(axum::middleware::from_fn(
            crate::compat::autodb_error::render,
        ))
        .layer(axum::middleware::from_fn(meta::record_http))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}
