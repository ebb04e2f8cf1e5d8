//! The database servers tdb places databases on, as operators see them (`GET /servers`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
pub use tdb_core::{ServerRole, ServerStatus};
use utoipa::ToSchema;

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ServerItem {
    pub name: String,
    /// `postgresql`, …
    pub engine: String,
    pub role: ServerRole,
    pub region: String,
    pub status: ServerStatus,
    /// Whether tdb runs the server itself (its shared server, dedicated servers) rather than an
    /// operator's attached one.
    pub managed: bool,
    /// The backend that made a dedicated server (`local`); null for shared servers.
    pub provisioner: Option<String>,
    /// Tenants with a database on the server.
    pub tenants: i64,
    /// Databases on it: tenant databases, workspaces and provisioned databases.
    pub databases: i64,
    /// The most databases placement puts on it; null: no limit.
    pub max_databases: Option<i32>,
    /// Bytes its databases take on disk; null when the server could not be asked (stopped,
    /// unreachable).
    pub size_bytes: Option<i64>,
    /// Its WAL archive (point-in-time recovery); null when tdb archives none (attached
    /// servers, or pgBackRest missing).
    #[serde(default)]
    pub archive: Option<ServerArchiveItem>,
    pub created_at: DateTime<Utc>,
}

/// A server's WAL archive: its pgBackRest stanza and what it can recover now.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ServerArchiveItem {
    pub stanza: String,
    /// Whether the stanza exists in the repository.
    pub ready: bool,
    pub recoverable_from: Option<DateTime<Utc>>,
    pub recoverable_to: Option<DateTime<Utc>>,
    pub last_full_backup_at: Option<DateTime<Utc>>,
    pub last_backup_at: Option<DateTime<Utc>>,
    /// The last archiving or backup error, until it succeeds again.
    pub error: Option<String>,
}

/// `POST /servers/{name}/backup`: a full base backup was asked for.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BackupRequested {
    pub message: String,
    pub server: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ServerList {
    pub count: usize,
    pub servers: Vec<ServerItem>,
}

/// `PATCH /servers/{name}`: take a shared server out of placement (`draining`: it keeps what it
/// holds) or back in (`active`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateServer {
    pub status: ServerStatus,
}
