//! Tenants: one database per customer from a blueprint, their backups and their query logs.

use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, Extensions};
use rmcp::{tool, tool_router};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::reply;
use crate::server::TdbMcp;

#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantDatabase {
    /// The blueprint (a tenant-mode workspace's name) to create the database from.
    pub blueprint: String,
    /// 1 (shared server, the default) or 2 (a dedicated server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 2))]
    pub isolation_level: Option<u8>,
    /// A region zone from the server's configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenantArgs {
    /// Lower case letters, digits and `_`, starting with a letter (no `__`).
    pub tenant_id: String,
    /// One database per blueprint.
    pub databases: Vec<TenantDatabase>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantRef {
    /// The tenant's id.
    pub tenant_id: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RecoverTenantArgs {
    /// The tenant's id.
    pub tenant_id: String,
    /// The moment to go back to: ISO 8601 with a time zone (e.g. "2026-12-05T10:11:12Z"),
    /// inside the `pitr` window `get_tenant` shows.
    pub timestamp: String,
    /// The blueprint whose database goes back; needed only when the tenant has several.
    #[serde(default)]
    pub blueprint: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantLogsArgs {
    /// The tenant's id.
    pub tenant_id: String,
    /// "error" or "slow" to see only those statements.
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    /// "1h", "24h", "7d" or "30d".
    #[serde(default)]
    pub since: Option<String>,
    /// Only statements containing this text (case-insensitive).
    #[serde(default)]
    pub search: Option<String>,
    /// "proxy" or "api".
    #[serde(default)]
    pub source: Option<String>,
    /// How many records (50 by default, at most 1000).
    #[serde(default)]
    pub limit: Option<u32>,
    /// How many of the newest records to skip.
    #[serde(default)]
    pub offset: Option<u32>,
}

impl TenantLogsArgs {
    fn query(&self) -> Vec<(&'static str, String)> {
        let text = [
            ("type", &self.kind),
            ("since", &self.since),
            ("search", &self.search),
            ("source", &self.source),
        ];
        let numbers = [("limit", self.limit), ("offset", self.offset)];
        text.into_iter()
            .filter_map(|(k, v)| v.clone().map(|v| (k, v)))
            .chain(
                numbers
                    .into_iter()
                    .filter_map(|(k, v)| v.map(|v| (k, v.to_string()))),
            )
            .collect()
    }
}

#[tool_router(router = tenant_tools, vis = "pub(crate)")]
impl TdbMcp {
    /// List the project's tenants with their databases and states.
    #[tool(annotations(read_only_hint = true))]
    async fn list_tenants(&self, ext: Extensions) -> CallToolResult {
        self.with_client(&ext, |c| async move {
            reply::result(c.list_tenants().await.map(reply::fields))
        })
        .await
    }

    /// Create a tenant with one database per blueprint. Each database's connection string
    /// carries a fresh credential that is shown only this once.
    #[tool]
    async fn create_tenant(
        &self,
        ext: Extensions,
        Parameters(args): Parameters<CreateTenantArgs>,
    ) -> CallToolResult {
        self.with_client(&ext, |c| async move {
            let databases = match serde_json::to_value(&args.databases) {
                Ok(v) => v,
                Err(e) => return reply::bad_request(&e.to_string()),
            };
            let outcome = c.create_tenant(&args.tenant_id, &databases).await;
            reply::result(outcome.map(reply::fields))
        })
        .await
    }

    /// Show a tenant: state, databases (passwords masked) and recovery options.
    #[tool(annotations(read_only_hint = true))]
    async fn get_tenant(
        &self,
        ext: Extensions,
        Parameters(args): Parameters<TenantRef>,
    ) -> CallToolResult {
        self.with_client(&ext, |c| async move {
            reply::result(c.get_tenant(&args.tenant_id).await.map(reply::fields))
        })
        .await
    }

    /// Start a backup of every database of a tenant to the backup store.
    #[tool]
    async fn backup_tenant(
        &self,
        ext: Extensions,
        Parameters(args): Parameters<TenantRef>,
    ) -> CallToolResult {
        self.with_client(&ext, |c| async move {
            reply::result(c.backup_tenant(&args.tenant_id).await.map(reply::fields))
        })
        .await
    }

    /// Recover one database of a tenant to a moment of its past (point-in-time recovery) from
    /// its server's WAL archive. Starts a job and answers at once; `get_tenant` follows it
    /// (`last_recovery`) and shows how to undo it (`recovery_undo`) while the original is kept.
    #[tool(annotations(destructive_hint = true))]
    async fn recover_tenant(
        &self,
        ext: Extensions,
        Parameters(args): Parameters<RecoverTenantArgs>,
    ) -> CallToolResult {
        self.with_client(&ext, |c| async move {
            let request = tdb_client::tenants::RecoverRequest {
                timestamp: args.timestamp,
                blueprint: args.blueprint,
            };
            let outcome = c.recover_tenant(&args.tenant_id, &request).await;
            reply::result(outcome.map(reply::fields))
        })
        .await
    }

    /// Undo a tenant's last point-in-time recovery while its original is kept: the original
    /// serves the tenant again and the recovered copy goes.
    #[tool(annotations(destructive_hint = true))]
    async fn recover_undo(
        &self,
        ext: Extensions,
        Parameters(args): Parameters<TenantRef>,
    ) -> CallToolResult {
        self.with_client(&ext, |c| async move {
            reply::result(c.recover_undo(&args.tenant_id).await.map(reply::fields))
        })
        .await
    }

    /// List a tenant's backups, newest first.
    #[tool(annotations(read_only_hint = true))]
    async fn list_tenant_backups(
        &self,
        ext: Extensions,
        Parameters(args): Parameters<TenantRef>,
    ) -> CallToolResult {
        self.with_client(&ext, |c| async move {
            reply::result(c.tenant_backups(&args.tenant_id).await.map(reply::fields))
        })
        .await
    }

    /// A tenant's query log, newest first, with filters.
    #[tool(annotations(read_only_hint = true))]
    async fn tenant_logs(
        &self,
        ext: Extensions,
        Parameters(args): Parameters<TenantLogsArgs>,
    ) -> CallToolResult {
        self.with_client(&ext, |c| async move {
            let query = args.query();
            let outcome = c.tenant_logs(&args.tenant_id, &query).await;
            reply::result(outcome.map(reply::fields))
        })
        .await
    }
}
