//! Projects and their proxy passwords.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tdb_core::ProjectStatus;
use utoipa::ToSchema;

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ProjectItem {
    pub project_id: String,
    pub name: String,
    /// `active`, or `deleting` while its deletion runs.
    pub status: ProjectStatus,
    pub api_key_count: i64,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ProjectList {
    pub projects: Vec<ProjectItem>,
    pub count: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateProject {
    /// 1 to 63 characters; no `__`; unique within the account.
    pub name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreatedProject {
    pub project_id: String,
    pub name: String,
    /// An admin key for the new project; shown only now.
    pub api_key: String,
    /// The project's proxy password; shown only now.
    pub proxy_password: String,
    pub message: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SwitchedProject {
    pub project_id: String,
    pub name: String,
    /// A key minted for the target project.
    pub api_key: String,
    /// When the key stops working (`login_key_days` after the switch).
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeletedProject {
    pub project_id: String,
    /// `deleted`, or `deleting` while the job still removes what the project had.
    pub status: String,
    pub message: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RotatedPassword {
    pub project_id: String,
    /// The new proxy password; shown only now. The old one stops working at once.
    pub proxy_password: String,
    pub message: String,
}
