//! Connections: databases registered with tdb (external ones, and every provisioned one), to
//! introspect and to query with the connection's own credentials.

use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, Extensions};
use rmcp::{tool, tool_router};
use schemars::JsonSchema;
use serde::Deserialize;
use tdb_client::autodb::CreateConnection;

use super::ConnectionRef;
use crate::reply;
use crate::server::TdbMcp;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterArgs {
    /// A display name for the connection.
    pub name: String,
    /// The kind of PostgreSQL: postgresql, postgresql_local, postgresql_aws, postgres_gcp or
    /// supabase.
    pub db_type: String,
    /// A URL such as postgresql://user:password@host:5432/db. Stored encrypted; never shown
    /// again.
    pub connection_string: String,
    /// Schemas that introspection leaves out; when omitted, Supabase's own schemas (auth,
    /// storage, realtime, extensions, vault, pgsodium, graphql, graphql_public).
    #[serde(default)]
    pub excluded_schemas: Option<Vec<String>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QueryArgs {
    /// The connection's id (a provisioned database's `connection_id` works too).
    pub connection_id: String,
    /// The SQL to run, with the connection's own credentials.
    pub query: String,
}

#[tool_router(router = connection_tools, vis = "pub(crate)")]
impl TdbMcp {
    /// Register an external database by connection string so it can be introspected and
    /// queried. The connection string is stored encrypted and never returned.
    #[tool]
    async fn register_connection(
        &self,
        ext: Extensions,
        Parameters(args): Parameters<RegisterArgs>,
    ) -> CallToolResult {
        self.with_client(&ext, |c| async move {
            let conn = CreateConnection {
                name: args.name,
                db_type: args.db_type,
                connection_string: args.connection_string,
                excluded_schemas: args.excluded_schemas,
            };
            reply::result(c.create_connection(&conn).await.map(reply::fields))
        })
        .await
    }

    /// List your connections (provisioned databases included).
    #[tool(annotations(read_only_hint = true))]
    async fn list_connections(&self, ext: Extensions) -> CallToolResult {
        self.with_client(&ext, |c| async move {
            reply::result(c.list_connections().await.map(reply::fields))
        })
        .await
    }

    /// Show one connection: engine, host, port, database, excluded schemas, state.
    #[tool(annotations(read_only_hint = true))]
    async fn get_connection(
        &self,
        ext: Extensions,
        Parameters(args): Parameters<ConnectionRef>,
    ) -> CallToolResult {
        self.with_client(&ext, |c| async move {
            reply::result(
                c.get_connection(&args.connection_id)
                    .await
                    .map(reply::fields),
            )
        })
        .await
    }

    /// Deactivate a connection; the database itself is left as it is.
    #[tool(annotations(destructive_hint = true))]
    async fn delete_connection(
        &self,
        ext: Extensions,
        Parameters(args): Parameters<ConnectionRef>,
    ) -> CallToolResult {
        self.with_client(&ext, |c| async move {
            reply::result(
                c.delete_connection(&args.connection_id)
                    .await
                    .map(reply::fields),
            )
        })
        .await
    }

    /// Describe a connection's database: its schemas and tables with columns, primary keys,
    /// indexes, foreign keys and row estimates (minus the excluded schemas).
    #[tool(annotations(read_only_hint = true))]
    async fn introspect_connection(
        &self,
        ext: Extensions,
        Parameters(args): Parameters<ConnectionRef>,
    ) -> CallToolResult {
        self.with_client(&ext, |c| async move {
            let id = &args.connection_id;
            reply::result(c.introspect_connection(id).await.map(reply::fields))
        })
        .await
    }

    /// Run SQL on a connection's database with the connection's own credentials (for a
    /// provisioned database, its own role). Returns columns, rows, row_count, truncated and
    /// execution_time.
    #[tool]
    async fn query_connection(
        &self,
        ext: Extensions,
        Parameters(args): Parameters<QueryArgs>,
    ) -> CallToolResult {
        self.with_client(&ext, |c| async move {
            let outcome = c.query_connection(&args.connection_id, &args.query).await;
            reply::result(outcome.map(reply::fields))
        })
        .await
    }
}
