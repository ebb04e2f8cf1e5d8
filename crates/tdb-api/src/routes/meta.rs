//! Public endpoints about the service itself, and the envelope's answers for unknown paths,
//! wrong methods and panics.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use tdb_core::ErrorCode;
use tdb_types::{CodeInfo, ErrorsResponse, Health, RegionsResponse};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::envelope::{ApiError, ApiResult, Reply};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(regions))
        .routes(routes!(errors))
        .routes(routes!(health))
}

/// Regions tenants can be placed in.
#[utoipa::path(get, path = "/regions", tag = "meta", security(()),
    responses((status = 200, body = RegionsResponse)))]
async fn regions(State(state): State<AppState>) -> Reply<RegionsResponse> {
    Reply::ok(RegionsResponse {
        regions: state.config.regions.clone(),
    })
}

/// Every response code with its HTTP status.
#[utoipa::path(get, path = "/errors", tag = "meta", security(()),
    responses((status = 200, body = ErrorsResponse)))]
async fn errors() -> Reply<ErrorsResponse> {
    let codes = ErrorCode::ALL
        .iter()
        .map(|c| {
            let info = CodeInfo {
                status: c.status(),
                description: c.description().to_string(),
            };
            (c.as_str().to_string(), info)
        })
        .collect();
    Reply::ok(ErrorsResponse { codes })
}

/// Liveness and catalog reachability; 503 when the catalog does not answer.
#[utoipa::path(get, path = "/health", tag = "meta", security(()),
    responses((status = 200, body = Health), (status = 503, description = "catalog unreachable")))]
async fn health(State(state): State<AppState>) -> ApiResult<Health> {
    if !state.catalog.ping().await {
        return Err(ApiError::new(
            ErrorCode::ServiceUnavailable,
            "catalog unreachable",
        ));
    }
    Ok(Reply::ok(Health {
        status: "ok".into(),
        catalog: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
    }))
}

/// The OpenAPI 3.1 document (served raw, without the envelope, so tools can read it).
pub async fn openapi(doc: Arc<utoipa::openapi::OpenApi>) -> Response {
    axum::Json(doc.as_ref().clone()).into_response()
}

pub async fn unknown_path(uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!("no such path: {}", uri.path()))
}

pub async fn wrong_method(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        format!("method {method} is not allowed on {}", uri.path()),
    )
}

pub fn panicked(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    ApiError::internal("handler panicked").into_response()
}

/// In front of everything, authentication included: the client address's rate, shared with the
/// proxies (a ban earned here bars the address there too, and the other way round).
pub async fn guard_address(
    State(state): State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    use tdb_core::ratelimit::Verdict;
    let ip = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    let verdict = ip.map_or(Verdict::Allowed, |ip| state.limits.ip.check(ip));
    let (retry_after, message) = match verdict {
        Verdict::Allowed => return next.run(req).await,
        refused => {
            if let (
                Verdict::Banned {
                    retry_after,
                    fresh: true,
                },
                Some(ip),
            ) = (refused, ip)
            {
                tracing::warn!(
                    address = %ip,
                    ban_secs = retry_after,
                    surface = "api",
                    "address banned: over the request rate too often"
                );
                metrics::counter!("tdb_address_bans_total", "surface" => "api").increment(1);
            }
            let kind = if matches!(refused, Verdict::Banned { .. }) {
                "banned"
            } else {
                "limited"
            };
            metrics::counter!("tdb_rate_limited_total", "surface" => "api", "kind" => kind)
                .increment(1);
            refused_reply(&state, refused)
        }
    };
    ApiError {
        retry_after: Some(retry_after),
        ..ApiError::new(ErrorCode::RateLimited, message)
    }
    .into_response()
}

/// The Retry-After and message of a refused request.
fn refused_reply(state: &AppState, verdict: tdb_core::ratelimit::Verdict) -> (u64, String) {
    use tdb_core::ratelimit::Verdict;
    match verdict {
        Verdict::Allowed => (0, String::new()),
        Verdict::Limited { retry_after } => (
            retry_after,
            format!(
                "rate limit exceeded: max {} requests per second",
                state.limits.ip.limits().per_second
            ),
        ),
        Verdict::Banned { retry_after, .. } => (
            retry_after,
            format!("too many requests: this address is banned for {retry_after} s"),
        ),
    }
}

/// Counts every request and its duration per route (the route's pattern, never the raw path,
/// so tenant names do not become label values).
pub async fn record_http(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let method = req.method().as_str().to_string();
    let started = std::time::Instant::now();
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("tdb_http_requests_total", "route" => route.clone(), "method" => method.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("tdb_http_request_duration_seconds", "route" => route, "method" => method)
        .record(started.elapsed().as_secs_f64());
    response
}
