//! Deployments: blueprint versions rolled out to tenants.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tdb_core::{DeploymentStatus, TargetStatus};
use utoipa::ToSchema;

use crate::version::VersionNumber;

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

/// `POST /deployments`: which version of which blueprint goes to which tenants.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateDeployment {
    pub blueprint_name: String,
    /// Redeploy this existing version (default: a new version from the pending DDL, or the
    /// current version when nothing is pending). A number, or a numeric string as the
    /// reference sends it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<VersionNumber>,
    /// Deploy to every tenant of the blueprint (default when `tenant_ids` is absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deploy_all: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_ids: Option<Vec<String>>,
    /// Apply and roll back on every tenant; report what would fail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dry_run: Option<bool>,
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
