//! The MCP server handler: the tool routers of every resource file joined into one, and the
//! client each call is made with.

use std::sync::Arc;

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::model::{CallToolResult, Extensions, Implementation, ServerCapabilities, ServerConfig};
use rmcp::{ServerHandler, tool_handler};
use tdb_client::Client;

use crate::caller::Caller;
use crate::reply;

const INSTRUCTIONS: &str = "Tools over a tdb platform's REST API, acting with the caller's API \
key. provision_database creates a PostgreSQL database (its connection string is shown once); \
query_connection and introspect_connection work on it through its connection_id. Workspaces \
hold schemas that deployments roll out to tenants. A failed call is a tool error that carries \
the API's code and message.";

/// tdb's MCP server; cheap to clone (the tool router is shared).
#[derive(Clone)]
pub struct TdbMcp {
    caller: Caller,
    tools: Arc<ToolRouter<Self>>,
}

impl TdbMcp {
    pub fn new(caller: Caller) -> Self {
        let tools = Self::provision_tools()
            + Self::connection_tools()
            + Self::workspace_tools()
            + Self::tenant_tools()
            + Self::deployment_tools();
        Self {
            caller,
            tools: Arc::new(tools),
        }
    }

    /// Runs `call` with the client for this request, or answers why there is none.
    pub(crate) async fn with_client<F, Fut>(
        &self,
        extensions: &Extensions,
        call: F,
    ) -> CallToolResult
    where
        F: FnOnce(Client) -> Fut,
        Fut: Future<Output = CallToolResult>,
    {
        match self.caller.client(extensions) {
            Ok(client) => call(client).await,
            Err(e) => reply::caller_error(&e),
        }
    }
}

#[tool_handler(router = self.tools)]
impl ServerHandler for TdbMcp {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("tdb", env!("CARGO_PKG_VERSION")))
            .with_instructions(INSTRUCTIONS.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tool_has_an_object_schema_and_a_description() {
        let server = TdbMcp::new(Caller::Fixed(Client::new("http://127.0.0.1:1", None)));
        let tools = server.tools.list_all();
        assert_eq!(
            tools.len(),
            26,
            "{:?}",
            tools.iter().map(|t| &t.name).collect::<Vec<_>>()
        );
        for tool in &tools {
            assert_eq!(tool.input_schema["type"], "object", "{}", tool.name);
            assert!(
                tool.description.as_deref().is_some_and(|d| d.len() > 20),
                "{} lacks a description",
                tool.name
            );
        }
        let provision = server
            .tools
            .get("provision_database")
            .expect("provision_database");
        assert_eq!(
            provision.input_schema["required"],
            serde_json::json!(["name"])
        );
        let logs = server.tools.get("tenant_logs").expect("tenant_logs");
        assert!(logs.input_schema["properties"].get("type").is_some());
    }
}
