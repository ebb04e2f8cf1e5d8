//! The AutoDB-compatible surface under `/api/v1`: provisioned databases and registered
//! connections. Its answers put these inside `data` ([`crate::Data`]).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tdb_core::ConnectionStatus;
use utoipa::ToSchema;

use crate::schema::SchemaOverview;

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ProvisionRequest {
    /// 1 to 200 characters.
    pub name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ProvisionedItem {
    pub id: String,
    /// The registered connection that stands for it (for introspection and queries).
    pub connection_id: String,
    pub name: String,
    pub schema_name: String,
    pub status: ConnectionStatus,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ProvisionedCreated {
    #[serde(flatten)]
    pub item: ProvisionedItem,
    /// Through tdb's PostgreSQL proxy; shown only now.
    pub connection_string: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ProvisionedList {
    pub databases: Vec<ProvisionedItem>,
    /// The account's, across its projects.
    pub count: i64,
    pub limit: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ProvisionedDeleted {
    pub id: String,
    pub status: String,
}

/// A connection to register: `connection_string` is sent once and never returned.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreateConnection {
    pub name: String,
    /// supabase, postgres_gcp, postgresql_local, postgresql_aws or postgresql.
    pub db_type: String,
    pub connection_string: String,
    /// Schemas introspection leaves out; Supabase's own schemas when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub excluded_schemas: Option<Vec<String>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ConnectionItem {
    pub id: String,
    pub name: String,
    pub db_type: String,
    pub host: String,
    pub port: i32,
    pub database_name: String,
    pub excluded_schemas: Vec<String>,
    pub is_active: bool,
    pub created_at: DateTime<Utc>,
    pub last_introspected_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ConnectionList {
    pub connections: Vec<ConnectionItem>,
    pub count: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ConnectionDeactivated {
    pub id: String,
    pub is_active: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Introspection {
    pub connection_id: String,
    pub database_name: String,
    pub introspected_at: DateTime<Utc>,
    pub excluded_schemas: Vec<String>,
    pub table_count: usize,
    pub schemas: Vec<SchemaOverview>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ConnectionQuery {
    /// One or more SQL statements.
    pub query: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ConnectionRows {
    pub columns: Vec<String>,
    #[schema(value_type = Vec<Vec<Object>>)]
    pub rows: Vec<Vec<Value>>,
    pub row_count: u64,
    pub truncated: bool,
    pub execution_time: String,
}
