//! Per-workspace limits. A workspace's settings also govern the tenants of its blueprint: the
//! proxy's connection cap and statement timeout, the REST query limits.

use serde::{Deserialize, Serialize};

/// How the proxy shares server connections among a database's client sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PoolMode {
    /// A client holds one server connection for its whole session (reset when it leaves).
    #[default]
    Session,
    /// A client holds a server connection only while a transaction runs. Its settings and
    /// named prepared statements go with it from one server connection to the next; LISTEN
    /// and SQL PREPARE are refused; temporary tables do not carry.
    Transaction,
}

/// As stored and as `GET/PATCH .../settings` show them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Settings {
    pub query_timeout_ms: u64,
    pub max_rows_per_query: u64,
    /// Session pooling: client sessions at once. Transaction pooling: server connections at
    /// once (transactions beyond them wait their turn).
    pub max_connections: u32,
    #[serde(default)]
    pub pool_mode: PoolMode,
    /// Transaction pooling: client sessions at once.
    #[serde(default = "default_max_client_connections")]
    pub max_client_connections: u32,
}

fn default_max_client_connections() -> u32 {
    100
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            query_timeout_ms: 30_000,
            max_rows_per_query: 1_000,
            max_connections: 10,
            pool_mode: PoolMode::Session,
            max_client_connections: default_max_client_connections(),
        }
    }
}

impl Settings {
    pub const FIELDS: [&'static str; 5] = [
        "query_timeout_ms",
        "max_rows_per_query",
        "max_connections",
        "pool_mode",
        "max_client_connections",
    ];
    pub const TIMEOUT_MS: (u64, u64) = (100, 600_000);
    pub const MAX_ROWS: (u64, u64) = (1, 100_000);
    pub const MAX_CONNECTIONS: (u32, u32) = (1, 500);
    pub const MAX_CLIENT_CONNECTIONS: (u32, u32) = (1, 10_000);

    /// Client sessions at once under this pool mode.
    pub fn client_sessions(&self) -> u32 {
        match self.pool_mode {
            PoolMode::Session => self.max_connections,
            PoolMode::Transaction => self.max_client_connections,
        }
    }

    pub fn from_json(value: &serde_json::Value) -> Self {
        serde_json::from_value(value.clone()).unwrap_or_default()
    }
}
