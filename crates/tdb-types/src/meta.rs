//! Health, regions and the error-code table.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A region tenants can be placed in, from configuration.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Region {
    pub zone: String,
    pub label: String,
    #[serde(default)]
    pub is_default: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RegionsResponse {
    pub regions: Vec<Region>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CodeInfo {
    pub status: u16,
    pub description: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorsResponse {
    pub codes: BTreeMap<String, CodeInfo>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Health {
    pub status: String,
    pub catalog: String,
    pub version: String,
}
