//! Blueprints: the versioned schemas of tenant-mode workspaces.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tdb_core::Engine;
use utoipa::ToSchema;

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BlueprintItem {
    pub name: String,
    pub database: Engine,
    pub workspace_id: String,
    pub current_version: i32,
    pub tenant_count: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BlueprintList {
    pub blueprints: Vec<BlueprintItem>,
    pub count: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BlueprintDetail {
    #[serde(flatten)]
    pub item: BlueprintItem,
    /// The DDL of the current version, in order.
    pub schema: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct VersionItem {
    pub version: i32,
    pub ddl_count: usize,
    pub statements: Vec<String>,
    pub deployed_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct VersionList {
    pub versions: Vec<VersionItem>,
    pub count: usize,
}
