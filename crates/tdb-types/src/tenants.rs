//! Tenants: a customer's databases created from blueprints, their trash, suspension, proxy
//! logins and deployment history.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tdb_core::{KeyRole, RollbackStep, TargetStatus, TenantStatus};
use utoipa::ToSchema;

use crate::isolation::IsolationLevel;

/// How to reach a tenant database through the PostgreSQL proxy.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TenantConnection {
    pub host: String,
    pub port: u16,
    pub database: String,
    pub username: String,
    /// Masked except in the answer that minted it.
    pub password: String,
    pub connection_string: String,
}

/// The deployment request body that brings a database to its blueprint's current version.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CatchUpBody {
    pub blueprint_name: String,
    pub version: i32,
    pub tenant_ids: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CatchUpRequest {
    pub method: String,
    pub path: String,
    pub body: CatchUpBody,
}

/// A database behind its blueprint's current version: by how much, why the last deployment
/// to it failed, and what deploys the current version to it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Behind {
    pub versions: i32,
    pub error: Option<String>,
    /// The CLI command that deploys the current version to it.
    pub cli: String,
    pub request: CatchUpRequest,
}

/// A database's version beside its blueprint's; `behind` is null when it is current.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DatabaseStanding {
    pub blueprint: String,
    pub version: i32,
    pub blueprint_version: i32,
    pub behind: Option<Behind>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TenantDatabaseItem {
    pub blueprint: String,
    pub database_type: String,
    pub isolation_level: String,
    pub version: i32,
    pub blueprint_version: i32,
    pub behind: Option<Behind>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TenantItem {
    pub tenant_id: String,
    pub status: TenantStatus,
    pub databases: Vec<TenantDatabaseItem>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TenantList {
    pub count: usize,
    pub tenants: Vec<TenantItem>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreatedTenantDatabase {
    pub blueprint: String,
    pub database_type: String,
    pub isolation_level: i32,
    pub region: String,
    pub version: i32,
    /// Carries a fresh credential, shown only now; absent while the tenant is `provisioning`
    /// (a dedicated server is being made).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection: Option<TenantConnection>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreatedTenant {
    pub tenant_id: String,
    pub status: TenantStatus,
    pub databases: Vec<CreatedTenantDatabase>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TenantDatabaseDetail {
    pub blueprint: String,
    pub database_type: String,
    pub isolation_level: String,
    pub region: String,
    pub connection_string: String,
    pub connection: TenantConnection,
    pub version: i32,
    pub blueprint_version: i32,
    pub behind: Option<Behind>,
}

/// The tenant's newest rollback and how far it got.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RollbackState {
    pub rollback_id: String,
    pub storage_path: String,
    pub step: RollbackStep,
    pub bytes_done: i64,
    pub bytes_total: i64,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TenantDetail {
    pub tenant_id: String,
    pub status: TenantStatus,
    pub databases: Vec<TenantDatabaseDetail>,
    pub created_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
    pub last_rollback: Option<RollbackState>,
    /// The tenant's newest move between servers and how far it got; absent when it never
    /// moved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_move: Option<MoveState>,
    /// The oldest and newest moment the tenant can be recovered to now (`POST
    /// /tenants/{id}/recover`), read from its server's WAL archive; absent when there is none
    /// yet (`pitr_unavailable` says why).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pitr: Option<PitrWindow>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pitr_unavailable: Option<String>,
    /// Present while the tenant's newest recovery can be undone (`POST
    /// /tenants/{id}/recover-undo`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_undo: Option<RecoveryUndo>,
    /// The tenant's newest point-in-time recovery and how far it got; absent when it never had
    /// one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_recovery: Option<RecoveryState>,
}

/// The moments a tenant can be recovered to now.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PitrWindow {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

/// A recovery that can still be undone, as the reference shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RecoveryUndo {
    pub available: bool,
    /// Where the original is kept: its dedicated server, or its database on the shared server.
    pub original_host: String,
    pub expires_at: DateTime<Utc>,
    /// The time left, e.g. `23h 45m`.
    pub expires_in: String,
    /// The CLI command that undoes it.
    pub command: String,
}

/// A point-in-time recovery of one tenant database, as far as it got.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RecoveryState {
    pub recovery_id: String,
    pub blueprint: String,
    pub step: tdb_core::RecoveryStep,
    pub target_timestamp: DateTime<Utc>,
    pub isolation_level: i32,
    /// What happened, in order (the restore, the load, the switch and its hold).
    pub history: Vec<String>,
    pub error: Option<String>,
    /// How long the switch held the tenant's new queries, in ms.
    pub held_ms: Option<i32>,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// `POST /tenants/{id}/recover`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecoverRequest {
    /// ISO 8601 with a time zone, e.g. `2026-02-03T17:10:59Z`; inside `pitr`.
    pub timestamp: String,
    /// Which of the tenant's databases; needed only when it has several.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blueprint: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RecoveringTenant {
    pub tenant_id: String,
    pub status: TenantStatus,
    pub target_timestamp: String,
}

/// The answer to a recovery request.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RecoveryStarted {
    pub message: String,
    pub tenant: RecoveringTenant,
    pub recovery_id: String,
}

/// A move of one tenant database between servers, as far as it got.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MoveState {
    pub move_id: String,
    pub blueprint: String,
    pub step: tdb_core::MoveStep,
    /// `replication` or `dump` once chosen.
    pub method: Option<tdb_core::MoveMethod>,
    pub from: i32,
    pub to: i32,
    pub from_region: String,
    pub to_region: String,
    /// What happened, in order (the method and why, the cutover's checks).
    pub history: Vec<String>,
    pub error: Option<String>,
    /// How long the cutover held the tenant's new queries, in ms.
    pub held_ms: Option<i32>,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// `PATCH /tenants/{id}/isolation`: move one database of the tenant to another server.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MoveRequest {
    /// 1 (a shared server) or 2 (a server of its own), or "L1"/"L2".
    pub isolation_level: IsolationLevel,
    pub blueprint: String,
    /// A zone from `GET /regions`; default: where the database is now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// With level 1: the shared server to move to (rebalancing); default: placement's choice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
}

/// The answer to a move request, as the reference shows it (`change` and the regions only when
/// the region changes; `to_server` beyond the reference).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MoveStarted {
    pub tenant_id: String,
    pub blueprint: String,
    pub status: String,
    pub from: i32,
    pub to: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_region: Option<String>,
    /// The shared server an L1 database moves to (dedicated servers are tdb's to name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_server: Option<String>,
    pub move_id: String,
    pub message: String,
}

/// What `DELETE /tenants/{id}` answers; a hard delete has no `status` left to show.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeletedTenant {
    pub message: String,
    pub tenant_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<TenantStatus>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TenantState {
    pub tenant_id: String,
    pub status: TenantStatus,
}

/// A suspension or a resumption.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TenantTransition {
    pub message: String,
    pub tenant: TenantState,
}

/// A restore from the trash, with where each database stands after it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RestoredTenant {
    pub message: String,
    pub tenant: TenantState,
    pub databases: Vec<DatabaseStanding>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct HistoryItem {
    pub deployment_id: String,
    pub blueprint_name: String,
    pub version: i32,
    /// A dry run: the version's statements were tried and rolled back, nothing changed.
    pub dry_run: bool,
    pub status: TargetStatus,
    /// `123ms`.
    pub duration: Option<String>,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TenantDeployments {
    pub tenant_id: String,
    pub count: usize,
    pub deployments: Vec<HistoryItem>,
}

/// One database of a new tenant.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DatabaseRequest {
    pub blueprint: String,
    /// 1 (shared, default) or 2 (dedicated), or the reference's "L1" or "L2".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isolation_level: Option<IsolationLevel>,
    /// A zone from `GET /regions`; default: the default region. A dedicated server is made
    /// there; a shared database goes on one of the region's shared servers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
}

/// `POST /tenants`: a tenant with one database per blueprint.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    pub tenant_id: String,
    pub databases: Vec<DatabaseRequest>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCredential {
    /// `read` (SELECT only) or `write` (rows).
    pub role: String,
    /// The blueprint whose database the connection string names; default: the first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blueprint: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreatedCredential {
    pub tenant_id: String,
    pub role: KeyRole,
    pub username: String,
    /// Shown only now.
    pub password: String,
    pub connection: TenantConnection,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_hard_delete_shows_no_status_and_a_current_database_a_null_behind() {
        let hard = DeletedTenant {
            message: "gone".into(),
            tenant_id: "acme".into(),
            status: None,
        };
        assert_eq!(
            serde_json::to_value(&hard).expect("encodes"),
            json!({ "message": "gone", "tenant_id": "acme" })
        );
        let current = DatabaseStanding {
            blueprint: "shop".into(),
            version: 2,
            blueprint_version: 2,
            behind: None,
        };
        let value = serde_json::to_value(&current).expect("encodes");
        assert_eq!(value["behind"], serde_json::Value::Null);
        assert!(value.as_object().is_some_and(|o| o.contains_key("behind")));
    }
}
