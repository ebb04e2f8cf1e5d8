//! The query log, its statistics and latency metrics of tenants and workspaces.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LogItem {
    pub id: i64,
    pub query: String,
    /// `proxy` or `api`.
    pub source: String,
    pub success: bool,
    pub duration_ms: f64,
    pub created_at: DateTime<Utc>,
    /// The SQLSTATE of a failed statement.
    pub error_code: Option<String>,
    pub rows: Option<i64>,
    pub database: String,
    pub username: String,
}

/// A page of a tenant's (`tenant_id`) or a workspace's (`workspace_id`) log.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LogPage {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace_id: Option<String>,
    pub count: usize,
    pub has_more: bool,
    pub logs: Vec<LogItem>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BySource {
    pub proxy: i64,
    pub api: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LogStats {
    pub tenant_id: String,
    pub total_queries: i64,
    pub successful: i64,
    pub failed: i64,
    pub by_source: BySource,
    pub avg_duration_ms: f64,
    pub slow_queries: i64,
    pub slow_threshold_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LatencyMs {
    pub avg: Option<f64>,
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
    pub max: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MetricsBucket {
    pub start: DateTime<Utc>,
    pub queries: i64,
    pub failed: i64,
    pub slow: i64,
    pub avg_ms: Option<f64>,
    pub p95_ms: Option<f64>,
}

/// Latency and outcomes of a tenant's (`tenant_id`) or a workspace's (`workspace_id`)
/// statements over a window, with a series per bucket.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Metrics {
    pub queries: i64,
    pub successful: i64,
    pub failed: i64,
    pub slow: i64,
    /// Percent of statements that succeeded; null without statements.
    pub success_rate: Option<f64>,
    pub latency_ms: LatencyMs,
    pub window: String,
    /// `hour`, `day` or `week`.
    pub bucket: String,
    pub slow_threshold_ms: u64,
    pub series: Vec<MetricsBucket>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace_id: Option<String>,
}
