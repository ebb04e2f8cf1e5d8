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
    /// A client holds a server connection only while a transaction runs; session state (SET,
    /// temporary tables, LISTEN) does not carry from one transaction to the next, named
    /// prepared statements do.
    Transaction,
}

/// As stored and as `GET/PATCH .../settings` show them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Settings {
    pub query_timeout_ms: u64,
    pub max_rows_per_query: u64,
    pub max_connections: u32,
    #[serde(default)]
    pub pool_mode: PoolMode,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            query_timeout_ms: 30_000,
            max_rows_per_query: 1_000,
            max_connections: 10,
            pool_mode: PoolMode::Session,
        }
    }
}

impl Settings {
    pub const FIELDS: [&'static str; 4] = [
        "query_timeout_ms",
        "max_rows_per_query",
        "max_connections",
        "pool_mode",
    ];
    pub const TIMEOUT_MS: (u64, u64) = (100, 600_000);
    pub const MAX_ROWS: (u64, u64) = (1, 100_000);
    pub const MAX_CONNECTIONS: (u32, u32) = (1, 500);

    pub fn from_json(value: &serde_json::Value) -> Self {
        serde_json::from_value(value.clone()).unwrap_or_default()
    }
}
