//! tdb's MCP server. Its tools are thin: each one calls the REST API through `tdb-client`, so
//! the MCP server is a client of the API like the CLI, and every rule of the API (keys, scopes,
//! roles, rate limits) applies to it unchanged. Served over stdio (`tdb mcp`) or as streamable
//! HTTP at `/mcp` inside `tdb serve`.

mod caller;
mod http;
mod reply;
mod server;
mod stdio;
mod tools;

pub use caller::{Caller, Prepare};
pub use http::{HttpOptions, McpHttpService, http_service};
pub use server::TdbMcp;
pub use stdio::{StdioError, serve_stdio};
