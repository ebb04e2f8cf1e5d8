//! Workspaces: where schemas are designed (tenant mode, whose DDL becomes the blueprint that
//! deployments roll out) or where shared data lives (control mode).

use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, Extensions};
use rmcp::{tool, tool_router};
use schemars::JsonSchema;
use serde::Deserialize;

use crate::reply;
use crate::server::TdbMcp;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWorkspaceArgs {
    /// Lower case letters, digits and `_`, starting with a letter (no `__`).
    pub name: String,
    /// PostgreSQL, MySQL, MongoDB or Redis (case-insensitive).
    pub database: String,
    /// "tenant" (its schema becomes a blueprint for tenants) or "control" (shared data).
    pub mode: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkspaceRef {
    /// The workspace's name.
    pub workspace: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkspaceQueryArgs {
    /// The workspace's name.
    pub workspace: String,
    /// The SQL to run (Redis: commands, one per line). In a tenant-mode workspace, DDL is
    /// recorded as a pending blueprint change.
    pub query: String,
}

#[tool_router(router = workspace_tools, vis = "pub(crate)")]
impl TdbMcp {
    /// List the project's workspaces.
    #[tool(annotations(read_only_hint = true))]
    async fn list_workspaces(&self, ext: Extensions) -> CallToolResult {
        self.with_client(&ext, |c| async move {
            reply::result(c.list_workspaces().await.map(reply::fields))
        })
        .await
    }

    /// Create a workspace with a database of its own; returns its connection details.
    #[tool]
    async fn create_workspace(
        &self,
        ext: Extensions,
        Parameters(args): Parameters<CreateWorkspaceArgs>,
    ) -> CallToolResult {
        self.with_client(&ext, |c| async move {
            let outcome = c
                .create_workspace(&args.name, &args.database, &args.mode)
                .await;
            reply::result(outcome.map(reply::fields))
        })
        .await
    }

    /// Show a workspace: its schema as DDL, undeployed changes, settings and version.
    #[tool(annotations(read_only_hint = true))]
    async fn get_workspace(
        &self,
        ext: Extensions,
        Parameters(args): Parameters<WorkspaceRef>,
    ) -> CallToolResult {
        self.with_client(&ext, |c| async move {
            reply::result(c.get_workspace(&args.workspace).await.map(reply::fields))
        })
        .await
    }

    /// A workspace's tables with their columns, indexes and foreign keys.
    #[tool(annotations(read_only_hint = true))]
    async fn get_workspace_schema(
        &self,
        ext: Extensions,
        Parameters(args): Parameters<WorkspaceRef>,
    ) -> CallToolResult {
        self.with_client(&ext, |c| async move {
            reply::result(c.workspace_schema(&args.workspace).await.map(reply::fields))
        })
        .await
    }

    /// Run SQL in a workspace's database (for a Redis workspace, commands one per line);
    /// returns columns, rows, row_count and execution_time.
    #[tool]
    async fn query_workspace(
        &self,
        ext: Extensions,
        Parameters(args): Parameters<WorkspaceQueryArgs>,
    ) -> CallToolResult {
        self.with_client(&ext, |c| async move {
            let outcome = c.query_workspace(&args.workspace, &args.query).await;
            reply::result(outcome.map(reply::fields))
        })
        .await
    }
}
