//! API keys of the current project.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tdb_core::{KeyRole, ScopeType};
use utoipa::ToSchema;

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct KeyItem {
    pub id: String,
    pub name: String,
    /// The first characters of the key, for recognising it.
    pub prefix: String,
    pub role: KeyRole,
    pub scope_type: ScopeType,
    pub scope_values: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    /// When the key stops working: keys minted by login and project switch expire; others
    /// last until revoked (null).
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct KeyList {
    pub api_keys: Vec<KeyItem>,
    pub count: usize,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApiKey {
    /// Free text, at most 63 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// admin (default), write or read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// project (default), workspace or tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope_type: Option<String>,
    /// Workspace or tenant names the key is limited to; required unless the scope is project.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope_values: Option<Vec<String>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreatedKey {
    #[serde(flatten)]
    pub key: KeyItem,
    /// The key itself; shown only now.
    pub api_key: String,
    pub message: String,
}
