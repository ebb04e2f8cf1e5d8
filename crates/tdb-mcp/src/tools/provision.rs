//! Provisioned databases: a schema and a login role of their own on tdb's shared PostgreSQL
//! server, registered as a connection at once.

use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, Extensions};
use rmcp::{tool, tool_router};
use schemars::JsonSchema;
use serde::Deserialize;

use crate::reply;
use crate::server::TdbMcp;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProvisionArgs {
    /// A display name for the database, 1 to 200 characters.
    pub name: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProvisionRef {
    /// The provisioned database's id (`id` from provision_database or the list).
    pub provision_id: String,
}

#[tool_router(router = provision_tools, vis = "pub(crate)")]
impl TdbMcp {
    /// Create a managed PostgreSQL database: a schema and login role of its own on tdb's
    /// shared server. Returns its id, its connection_id (for query_connection and
    /// introspect_connection) and a connection string that is shown only this once.
    #[tool]
    async fn provision_database(
        &self,
        ext: Extensions,
        Parameters(args): Parameters<ProvisionArgs>,
    ) -> CallToolResult {
        self.with_client(&ext, |c| async move {
            reply::result(c.provision(&args.name).await.map(reply::fields))
        })
        .await
    }

    /// List your provisioned databases, with how many you have and the limit per account.
    #[tool(annotations(read_only_hint = true))]
    async fn list_provisioned_databases(&self, ext: Extensions) -> CallToolResult {
        self.with_client(&ext, |c| async move {
            reply::result(c.list_provisioned().await.map(reply::fields))
        })
        .await
    }

    /// Drop a provisioned database for good: its schema, every table and row, and its role.
    /// Its connection is deactivated. This cannot be undone.
    #[tool(annotations(destructive_hint = true))]
    async fn delete_provisioned_database(
        &self,
        ext: Extensions,
        Parameters(args): Parameters<ProvisionRef>,
    ) -> CallToolResult {
        self.with_client(&ext, |c| async move {
            reply::result(
                c.delete_provisioned(&args.provision_id)
                    .await
                    .map(reply::fields),
            )
        })
        .await
    }
}
