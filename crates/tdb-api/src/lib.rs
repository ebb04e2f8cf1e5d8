//! The REST API of the control plane: axum routers (one file per resource), the API-key
//! extractor, the response envelope and the OpenAPI document generated from the handlers.

pub mod envelope;
pub mod extract;
mod mint;
mod openapi;
mod routes;

use std::net::SocketAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tdb_catalog::Catalog;
use tokio::net::TcpListener;

pub use routes::router;

/// A region tenants can be placed in, from configuration.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Region {
    pub zone: String,
    pub label: String,
    #[serde(default)]
    pub is_default: bool,
}

/// Settings the API reads; built by the binary from the layered configuration.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    pub regions: Vec<Region>,
    /// Tier given to new accounts (`free` or `paid`).
    pub default_tier: String,
    /// Largest request body accepted, in bytes.
    pub body_limit: usize,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            regions: vec![Region {
                zone: "local".into(),
                label: "This machine".into(),
                is_default: true,
            }],
            default_tier: "free".into(),
            body_limit: 1 << 20,
        }
    }
}

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub catalog: Catalog,
    pub config: Arc<ApiConfig>,
}

/// Serves the API on `listener` until `shutdown` resolves, then lets in-flight requests finish.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
