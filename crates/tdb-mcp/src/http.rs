//! MCP over streamable HTTP, for `tdb serve` to mount at `/mcp`. The service is stateless:
//! every POST is answered on its own (as JSON), with no session kept between requests, so each
//! request is authenticated by its own bearer key and a server restart loses nothing. Clients
//! that open a session with `initialize` still work; they simply get no session id back.

use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use tokio_util::sync::CancellationToken;

use crate::caller::Caller;
use crate::server::TdbMcp;

/// The tower service that answers MCP requests.
pub type McpHttpService = StreamableHttpService<TdbMcp, NeverSessionManager>;

#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// Largest request body accepted, in bytes (the API's own limit).
    pub max_body_bytes: usize,
    /// Cancelled at shutdown: in-flight requests end.
    pub shutdown: CancellationToken,
}

/// The `/mcp` service; every call is made with the client `caller` gives for its request.
pub fn http_service(caller: Caller, options: HttpOptions) -> McpHttpService {
    let server = TdbMcp::new(caller);
    // rmcp checks the Host header against loopback names by default, against DNS rebinding of
    // servers that trust whoever reaches them. tdb is reached by its public name and never
    // trusts a request without a bearer key (which a rebound page does not have), so the check
    // would only refuse legitimate clients.
    let config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_json_response(true)
        .with_sse_keep_alive(None)
        .disable_allowed_hosts()
        .with_max_request_body_bytes(options.max_body_bytes)
        .with_cancellation_token(options.shutdown);
    StreamableHttpService::new(move || Ok(server.clone()), Default::default(), config)
}
