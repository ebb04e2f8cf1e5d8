//! `/mcp` inside `tdb serve`: the MCP server over streamable HTTP, mounted in the API's router
//! so the API's address guard, metrics and tracing cover it too. A request without a valid
//! bearer key is refused by the API's own `Auth` before any MCP handling; each tool call is
//! then sent in-process to a second instance of the API router, with the caller's key and
//! peer address, so the API applies its rules to the real client and not to loopback.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::Response;
use tdb_api::AppState;
use tdb_api::extract::Auth;
use tdb_client::Client;
use tdb_mcp::{Caller, HttpOptions};
use tokio_util::sync::CancellationToken;

/// The API with `/mcp` mounted; `shutdown` ends in-flight MCP requests.
pub fn app(state: AppState, shutdown: CancellationToken) -> axum::Router {
    let api = Client::in_process(tdb_api::router(state.clone()), None);
    let caller = Caller::per_request(api, forward_peer);
    let options = HttpOptions {
        max_body_bytes: state.config.body_limit,
        shutdown,
    };
    let mcp = axum::Router::new()
        .route_service("/mcp", tdb_mcp::http_service(caller, options))
        .route_layer(axum::middleware::map_response(json_rpc_errors))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_key,
        ));
    tdb_api::router_with(state, mcp)
}

/// Lets a request through only with a valid key; `Auth` answers 401 in the envelope otherwise.
async fn require_key(_auth: Auth, req: Request, next: Next) -> Response {
    next.run(req).await
}

/// rmcp refuses some requests in plain text (406 without an `Accept` naming both JSON and event
/// streams, 415 without a JSON body); an MCP client reads JSON-RPC, so such a refusal becomes a
/// JSON-RPC error, with the same status and words.
async fn json_rpc_errors(resp: Response) -> Response {
    use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
    let status = resp.status();
    let json = resp
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if json || !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let message = if text.is_empty() {
        status.canonical_reason().unwrap_or("refused").to_string()
    } else {
        text
    };
    let body = serde_json::json!({
        "jsonrpc": "2.0", "id": null,
        "error": { "code": -32600, "message": message },
    });
    parts.headers.remove(CONTENT_LENGTH);
    parts.headers.insert(
        CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, axum::body::Body::from(body.to_string()))
}

/// The MCP request's peer address goes with each of its calls to the API.
fn forward_peer(parts: &Parts, client: Client) -> Client {
    match parts.extensions.get::<ConnectInfo<SocketAddr>>() {
        Some(peer) => client.with_extension(*peer),
        None => client,
    }
}

#[cfg(test)]
mod tests {
    use axum::http::Method;
    use serde_json::{Value, json};

    use super::*;

    /// What the API's address guard reads, read the same way by a stand-in route.
    async fn peer(ConnectInfo(addr): ConnectInfo<SocketAddr>) -> axum::Json<Value> {
        axum::Json(
            json!({ "success": true, "http_status": 200, "code": "ok", "peer": addr.to_string() }),
        )
    }

    #[tokio::test]
    async fn calls_carry_the_mcp_requests_peer_address() {
        let router = axum::Router::new().route("/peer", axum::routing::get(peer));
        let client = Client::in_process(router, Some("tdb_k".into()));
        let (mut parts, ()) = axum::http::Request::new(()).into_parts();
        parts
            .extensions
            .insert(ConnectInfo(SocketAddr::from(([198, 51, 100, 7], 4242))));
        let client = forward_peer(&parts, client);
        let reply = client
            .request::<Value>(Method::GET, "/peer", None::<&Value>, true)
            .await
            .expect("the route sees a peer address");
        assert_eq!(reply.raw["peer"], "198.51.100.7:4242");
    }
}
