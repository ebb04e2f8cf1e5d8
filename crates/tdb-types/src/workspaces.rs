//! Workspaces: design databases, their queries, the pending DDL queue and their limits.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tdb_core::keyrules::{KeyRules, PatternRule};
use tdb_core::settings::{PoolMode, Settings};
use tdb_core::{Engine, WorkspaceMode};
use utoipa::ToSchema;

/// Connection details for a workspace through the proxy of its engine (PostgreSQL or MySQL).
/// The reference names the login `user` in `POST /workspaces` and `username` in
/// `GET /workspaces/{id}`: both are here.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Connection {
    pub host: String,
    pub port: u16,
    pub database: String,
    pub user: String,
    /// The same as `user`.
    pub username: String,
    pub password: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WorkspaceItem {
    pub id: String,
    pub name: String,
    pub mode: WorkspaceMode,
    pub database: Engine,
    pub created_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<i32>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WorkspaceList {
    pub workspaces: Vec<WorkspaceItem>,
    pub count: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWorkspace {
    /// `^[a-z][a-z0-9_]{0,62}$`, no `__`.
    pub name: String,
    /// PostgreSQL, MySQL, MongoDB or Redis (any case).
    pub database: String,
    /// `tenant` (schema captured into a blueprint) or `control` (standalone).
    pub mode: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreatedWorkspace {
    pub id: String,
    pub mode: WorkspaceMode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blueprint: Option<String>,
    pub database: String,
    /// A workspace-scoped proxy credential; its password is shown only now.
    pub connection: Connection,
    pub connection_string: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WorkspaceDetail {
    pub id: String,
    pub name: String,
    pub mode: WorkspaceMode,
    pub database: Engine,
    /// The DDL that built the workspace: deployed versions, then pending changes.
    pub schema: Vec<String>,
    pub schema_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undeployed_changes: Option<i64>,
    pub connection: Connection,
    pub connection_string: String,
    pub settings: WorkspaceSettings,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<i32>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeletionDetails {
    pub workspace: String,
    pub mode: WorkspaceMode,
    pub versions_deleted: usize,
    /// Always `full`: the database, blueprint, versions and credentials.
    pub deletion_type: String,
    pub physical_db: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeletedWorkspace {
    pub message: String,
    pub details: DeletionDetails,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueryRequest {
    /// One or more SQL statements, or Redis commands one per line (or one per element).
    pub query: QueryText,
}

/// What a query request runs: text (SQL statements, or Redis commands one per line), or, for
/// Redis, an array with one command per element.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum QueryText {
    Text(String),
    Commands(Vec<String>),
}

impl From<&str> for QueryText {
    fn from(text: &str) -> Self {
        Self::Text(text.to_string())
    }
}

impl From<String> for QueryText {
    fn from(text: String) -> Self {
        Self::Text(text)
    }
}

impl QueryText {
    /// The text the engine's dialect splits: an array's commands one per line. An array is for
    /// engines whose statements are lines (Redis), and none of its commands may hold a line
    /// break; `Err` says why otherwise.
    pub fn text(&self, lines: bool) -> Result<std::borrow::Cow<'_, str>, String> {
        match self {
            Self::Text(text) => Ok(std::borrow::Cow::Borrowed(text)),
            Self::Commands(_) if !lines => {
                Err("an array of commands is for Redis workspaces; send SQL as one string".into())
            }
            Self::Commands(commands) => {
                if let Some(at) = commands.iter().position(|c| c.contains(['\n', '\r'])) {
                    return Err(format!("command {at} holds a line break: one command each"));
                }
                Ok(std::borrow::Cow::Owned(commands.join("\n")))
            }
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct QueryResponse {
    /// Columns and rows of the last statement.
    pub columns: Vec<String>,
    #[schema(value_type = Vec<Vec<Object>>)]
    pub rows: Vec<Vec<Value>>,
    pub row_count: u64,
    /// True when the last statement returned more rows than `max_rows_per_query`.
    pub truncated: bool,
    pub execution_time: String,
    pub statements_executed: usize,
    /// Ids of the DDL changes this batch queued on the blueprint (tenant mode).
    pub ddl_captured: Vec<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Change {
    pub id: i64,
    pub statement: String,
    pub tag: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DiffList {
    pub changes: Vec<Change>,
    pub count: usize,
}

/// A workspace's settings: the limits every engine has and, for Redis, the rules for keys
/// (`default_ttl`, `max_keys`, `patterns`), side by side as the reference shows them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WorkspaceSettings {
    #[serde(flatten)]
    pub limits: Settings,
    #[serde(flatten)]
    pub keys: KeyRules,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SettingsResponse {
    pub database_type: String,
    pub settings: WorkspaceSettings,
    pub available_fields: Vec<String>,
}

/// A field that may be set, cleared with `null`, or left out.
fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SettingsPatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_timeout_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_rows_per_query: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u32>,
    /// `session` or `transaction`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool_mode: Option<PoolMode>,
    /// Transaction pooling: client sessions at once (1..10000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_client_connections: Option<u32>,
    /// Redis: seconds a key written without a TTL lives; `null` removes it.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<u64>)]
    pub default_ttl: Option<Option<u64>>,
    /// Redis: keys one tenant may hold; `null` removes the limit.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<u64>)]
    pub max_keys: Option<Option<u64>>,
    /// Redis: glob patterns and the TTL of the keys they match (`{"cache:*": {"ttl": 300}}`);
    /// replaces the patterns there were; `null` or `{}` removes them.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<std::collections::BTreeMap<String, PatternRule>>)]
    pub patterns: Option<Option<std::collections::BTreeMap<String, PatternRule>>>,
}

impl SettingsPatch {
    /// Whether the patch changes the rules for keys (Redis).
    pub fn changes_key_rules(&self) -> bool {
        self.default_ttl.is_some() || self.max_keys.is_some() || self.patterns.is_some()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SettingsSaved {
    pub settings: WorkspaceSettings,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_deploy: Option<bool>,
    pub database_type: String,
}

/// `POST /workspaces/{id}/schema`: where the schema to import comes from.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportRequest {
    /// template, json, database or url.
    pub source: String,
    /// ecommerce, saas, blog or fintech.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// Table definitions (json source).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tables: Option<Vec<TableDef>>,
    /// MongoDB collections (not available for PostgreSQL workspaces).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub collections: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection: Option<ExternalConnection>,
    /// A JSON document `{"tables": [...]}` to fetch (http or https, at most 1 MiB, 10 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TableDef {
    pub name: String,
    pub columns: Vec<ColumnDef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub indexes: Option<Vec<IndexDef>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ColumnDef {
    pub name: String,
    #[serde(rename = "type")]
    pub data_type: String,
    /// Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nullable: Option<bool>,
    /// An SQL expression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_key: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unique: Option<bool>,
    /// `table(column)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub references: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IndexDef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub columns: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unique: Option<bool>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExternalConnection {
    /// The workspace's engine: postgresql (the default for a PostgreSQL workspace) or mysql
    /// (the default for a MySQL one; `mariadb` is read as mysql).
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    pub host: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    pub database: String,
    pub user: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StatementError {
    pub statement: String,
    pub error: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ImportDetails {
    pub workspace: String,
    pub database_type: String,
    pub statements_executed: usize,
    pub statements_skipped: usize,
    pub statements_failed: usize,
    pub statements_total: usize,
    pub ddl_captured: Vec<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ImportResponse {
    pub message: String,
    pub source: String,
    pub created: Vec<String>,
    pub skipped: Vec<String>,
    pub errors: Vec<StatementError>,
    pub details: ImportDetails,
}
