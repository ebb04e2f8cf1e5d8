//! Deployments, which roll a blueprint's versions out to its tenants, and admin queries, which
//! run one data statement on one tenant or on all tenants of a blueprint.

use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, Extensions};
use rmcp::{tool, tool_router};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::reply;
use crate::server::TdbMcp;

#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateDeploymentArgs {
    /// The blueprint whose pending changes (or `version`) to deploy.
    pub blueprint_name: String,
    /// A version to deploy instead of the pending changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<i32>,
    /// Deploy to every tenant of the blueprint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deploy_all: Option<bool>,
    /// Deploy to these tenants only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_ids: Option<Vec<String>>,
    /// Apply and roll back on every tenant, reporting what would fail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dry_run: Option<bool>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeploymentRef {
    /// The deployment's id.
    pub deployment_id: String,
}

#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AdminQueryArgs {
    /// The blueprint whose tenants to query.
    pub blueprint: String,
    /// One data statement (DDL is refused: deploy schema changes instead).
    pub query: String,
    /// Run on this tenant only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    /// Run on every tenant of the blueprint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub all_tenants: Option<bool>,
}

#[tool_router(router = deployment_tools, vis = "pub(crate)")]
impl TdbMcp {
    /// List the project's deployments with their progress.
    #[tool(annotations(read_only_hint = true))]
    async fn list_deployments(&self, ext: Extensions) -> CallToolResult {
        self.with_client(&ext, |c| async move {
            reply::result(c.list_deployments().await.map(reply::fields))
        })
        .await
    }

    /// Start a deployment of a blueprint to its tenants; follow it with get_deployment.
    #[tool]
    async fn create_deployment(
        &self,
        ext: Extensions,
        Parameters(args): Parameters<CreateDeploymentArgs>,
    ) -> CallToolResult {
        self.with_client(&ext, |c| async move {
            let body = match serde_json::to_value(&args) {
                Ok(v) => v,
                Err(e) => return reply::bad_request(&e.to_string()),
            };
            reply::result(c.create_deployment(&body).await.map(reply::fields))
        })
        .await
    }

    /// Show a deployment with its result per tenant.
    #[tool(annotations(read_only_hint = true))]
    async fn get_deployment(
        &self,
        ext: Extensions,
        Parameters(args): Parameters<DeploymentRef>,
    ) -> CallToolResult {
        self.with_client(&ext, |c| async move {
            reply::result(
                c.get_deployment(&args.deployment_id)
                    .await
                    .map(reply::fields),
            )
        })
        .await
    }

    /// Run one data statement on a tenant, or on all tenants of a blueprint (admin keys only).
    #[tool]
    async fn admin_query(
        &self,
        ext: Extensions,
        Parameters(args): Parameters<AdminQueryArgs>,
    ) -> CallToolResult {
        self.with_client(&ext, |c| async move {
            let body = match serde_json::to_value(&args) {
                Ok(v) => v,
                Err(e) => return reply::bad_request(&e.to_string()),
            };
            reply::result(c.admin_query(&body).await.map(reply::fields))
        })
        .await
    }
}
