//! Deployments: blueprint versions rolled out to tenants.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tdb_core::{DeploymentStatus, TargetStatus};
use utoipa::ToSchema;

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeploymentSummary {
    pub id: String,
    pub blueprint_name: String,
    pub version: i32,
    pub status: DeploymentStatus,
    /// A dry run applies and rolls back; it changes nothing.
    pub dry_run: bool,
    pub tenants_total: i64,
    pub tenants_completed: i64,
    pub tenants_failed: i64,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeploymentList {
    pub count: usize,
    pub deployments: Vec<DeploymentSummary>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreatedDeployment {
    pub id: String,
    /// `pending`: poll `GET /deployments/{id}`.
    pub status: DeploymentStatus,
    pub blueprint_name: String,
    pub version: i32,
    pub dry_run: bool,
    pub tenants_total: usize,
    /// How many statements the new version (or the dry run) holds; 0 for a redeploy.
    pub statements: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TenantResult {
    pub tenant_id: String,
    pub status: TargetStatus,
    /// `123ms`.
    pub duration: Option<String>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeploymentDetail {
    #[serde(flatten)]
    pub summary: DeploymentSummary,
    pub results: Vec<TenantResult>,
    pub started_at: Option<DateTime<Utc>>,
}
