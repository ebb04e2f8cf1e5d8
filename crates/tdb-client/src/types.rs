//! Request and response shapes of the API, as the client sees them.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Health {
    pub status: String,
    pub catalog: String,
    pub version: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SignupRequest {
    pub email: String,
    pub password: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub project_name: Option<String>,
    /// Required when the server's sign-up is by invitation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invite_code: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Signup {
    pub api_key: String,
    pub project_id: String,
    pub proxy_password: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoginProject {
    pub project_id: String,
    pub name: String,
    pub api_key: String,
    /// When the minted key stops working.
    #[serde(default)]
    pub expires_at: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Login {
    pub projects: Vec<LoginProject>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProjectItem {
    pub project_id: String,
    pub name: String,
    /// `active`, or `deleting` while its deletion runs.
    #[serde(default)]
    pub status: String,
    pub api_key_count: i64,
    pub created_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProjectList {
    pub projects: Vec<ProjectItem>,
    pub count: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreatedProject {
    pub project_id: String,
    pub name: String,
    pub api_key: String,
    pub proxy_password: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SwitchedProject {
    pub project_id: String,
    pub name: String,
    pub api_key: String,
    /// When the minted key stops working.
    #[serde(default)]
    pub expires_at: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RotatedPassword {
    pub project_id: String,
    pub proxy_password: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Message {
    pub message: String,
}

/// What `DELETE /projects/{id}` answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeletedProject {
    pub project_id: String,
    /// `deleted`, or `deleting` while its job still removes what it had.
    pub status: String,
    pub message: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiKeyItem {
    pub id: String,
    pub name: String,
    pub prefix: String,
    pub role: String,
    pub scope_type: String,
    pub scope_values: Vec<String>,
    pub created_at: String,
    pub last_used_at: Option<String>,
    /// Keys minted by login and project switch expire; others last until revoked.
    #[serde(default)]
    pub expires_at: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiKeyList {
    pub api_keys: Vec<ApiKeyItem>,
    pub count: usize,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CreateApiKey {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope_values: Option<Vec<String>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreatedApiKey {
    #[serde(flatten)]
    pub key: ApiKeyItem,
    pub api_key: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CreateInvitation {
    /// 1 to 720 hours [default: 168]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_in_hours: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreatedInvitation {
    pub id: String,
    /// Shown only once.
    pub invite_code: String,
    pub expires_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkspaceItem {
    pub id: String,
    pub name: String,
    pub mode: String,
    pub database: String,
    pub created_at: String,
    pub version: Option<i32>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkspaceList {
    pub workspaces: Vec<WorkspaceItem>,
    pub count: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Connection {
    pub host: String,
    pub port: u16,
    pub database: String,
    pub user: String,
    pub password: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreatedWorkspace {
    pub id: String,
    pub mode: String,
    pub blueprint: Option<String>,
    pub database: String,
    pub connection: Connection,
    pub connection_string: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueryResult {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<serde_json::Value>>,
    pub row_count: u64,
    pub truncated: bool,
    pub execution_time: String,
    pub statements_executed: usize,
    pub ddl_captured: Vec<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Change {
    pub id: i64,
    pub statement: String,
    pub tag: String,
    pub created_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DiffList {
    pub changes: Vec<Change>,
    pub count: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BlueprintItem {
    pub name: String,
    pub database: String,
    pub workspace_id: String,
    pub current_version: i32,
    pub tenant_count: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BlueprintList {
    pub blueprints: Vec<BlueprintItem>,
    pub count: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VersionItem {
    pub version: i32,
    pub ddl_count: usize,
    pub statements: Vec<String>,
    pub deployed_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VersionList {
    pub versions: Vec<VersionItem>,
    pub count: usize,
}
