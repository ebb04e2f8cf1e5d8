//! Backups of tenant databases, rollbacks to them, and a project's backup policy.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tdb_core::{BackupKind, BackupStatus};
use utoipa::ToSchema;

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BackupItem {
    /// `manual`, `scheduled` or `safety` (taken before a rollback).
    #[serde(rename = "type")]
    pub kind: BackupKind,
    /// When it was taken, as in its storage path.
    pub date: String,
    pub database_type: String,
    pub blueprint: String,
    pub storage_path: String,
    pub status: BackupStatus,
    pub size_bytes: Option<i64>,
    pub sha256: Option<String>,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BackupList {
    pub tenant_id: String,
    pub count: usize,
    pub backups: Vec<BackupItem>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BackupStarted {
    pub message: String,
    pub tenant_id: String,
    #[serde(rename = "type")]
    pub kind: BackupKind,
    pub timestamp: Option<String>,
    /// One storage path per database.
    pub paths: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackRequest {
    /// The exact `storage_path` from `GET /tenants/{id}/backups`.
    pub storage_path: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RollbackStarted {
    pub message: String,
    pub tenant_id: String,
    /// `restoring` until the rollback ends.
    pub status: String,
    pub rollback_id: String,
    pub paths: Vec<String>,
}

/// A project's backup policy with the server's defaults filled in.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BackupPolicyResponse {
    /// Daily scheduled backups of every tenant database.
    pub schedule_enabled: bool,
    /// When, UTC: `HH:MM` or `HH:MM:SS`.
    pub daily_at: String,
    /// Backups kept per tenant database (newest first); older ones are deleted.
    pub keep_count: i64,
    /// Backups older than this many days are deleted.
    pub keep_days: i64,
    /// Manual backups (requests) per project per hour.
    pub hourly_limit: i64,
    pub project_id: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyPatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule_enabled: Option<bool>,
    /// `HH:MM` or `HH:MM:SS`, UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daily_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_count: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_days: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hourly_limit: Option<i64>,
}
