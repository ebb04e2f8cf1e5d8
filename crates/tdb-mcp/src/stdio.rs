//! MCP over stdio, for `tdb mcp`: the MCP client starts the process and speaks JSON-RPC on its
//! stdin and stdout, so nothing else may be written to stdout.

use rmcp::ServiceExt;
use rmcp::transport::stdio_pipes;

use crate::caller::Caller;
use crate::server::TdbMcp;

#[derive(Debug, thiserror::Error)]
pub enum StdioError {
    #[error("the MCP handshake failed: {0}")]
    Handshake(String),
    #[error("the MCP server stopped abnormally: {0}")]
    Stopped(String),
}

/// Serves MCP on stdin/stdout until the client closes stdin.
pub async fn serve_stdio(caller: Caller) -> Result<(), StdioError> {
    let running = TdbMcp::new(caller)
        .serve(stdio_pipes())
        .await
        .map_err(|e| StdioError::Handshake(e.to_string()))?;
    running
        .waiting()
        .await
        .map_err(|e| StdioError::Stopped(e.to_string()))?;
    Ok(())
}
