//! The query log read back: a tenant's (or workspace's) statements newest first with filters,
//! their statistics, and latency metrics over a window with per-hour, -day or -week buckets.

use axum::extract::State;
use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;
use tdb_catalog::CatalogError;
use tdb_catalog::logs::{LatencySummary, LogFilter, LogTarget};
use tdb_types::logs::{BySource, LatencyMs, LogItem, LogPage, LogStats, Metrics, MetricsBucket};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::envelope::{ApiError, ApiResult, Reply};
use crate::extract::{ApiPath, ApiQuery, Auth};
use tdb_core::LogSource;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(tenant_logs))
        .routes(routes!(tenant_stats))
        .routes(routes!(tenant_metrics))
        .routes(routes!(workspace_logs))
        .routes(routes!(workspace_metrics))
}

async fn workspace_target(state: &AppState, auth: &Auth, name: &str) -> Result<(), ApiError> {
    auth.require_workspace(name)?;
    match state.catalog.find_workspace(&auth.project_id, name).await {
        Ok(_) => Ok(()),
        Err(CatalogError::NotFound) => {
            Err(ApiError::not_found(format!("workspace '{name}' not found")))
        }
        Err(e) => Err(e.into()),
    }
}

/// `1h`, `24h`, `7d`, `30d`.
fn window(field: &str, text: &str) -> Result<Duration, ApiError> {
    match text {
        "1h" => Ok(Duration::hours(1)),
        "24h" => Ok(Duration::hours(24)),
        "7d" => Ok(Duration::days(7)),
        "30d" => Ok(Duration::days(30)),
        other => Err(ApiError::field(
            field,
            format!("must be 1h, 24h, 7d or 30d, not '{other}'"),
        )),
    }
}

fn slow_us(state: &AppState) -> i64 {
    i64::try_from(state.config.slow_query_ms.saturating_mul(1000)).unwrap_or(i64::MAX)
}

fn ms(us: f64) -> f64 {
    (us / 10.0).round() / 100.0
}

#[derive(Deserialize)]
struct LogParams {
    limit: Option<i64>,
    offset: Option<i64>,
    #[serde(rename = "type")]
    kind: Option<String>,
    search: Option<String>,
    source: Option<String>,
    since: Option<String>,
}

fn filter(state: &AppState, p: LogParams) -> Result<LogFilter, ApiError> {
    let limit = p.limit.unwrap_or(50);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::field("limit", "must be between 1 and 1000"));
    }
    let offset = p.offset.unwrap_or(0);
    if !(0..=1_000_000).contains(&offset) {
        return Err(ApiError::field("offset", "must be between 0 and 1000000"));
    }
    let (errors_only, slower_than_us) = match p.kind.as_deref() {
        None => (false, None),
        Some("error") => (true, None),
        Some("slow") => (false, Some(slow_us(state))),
        Some(other) => {
            return Err(ApiError::field(
                "type",
                format!("must be error or slow, not '{other}'"),
            ));
        }
    };
    let source = p
        .source
        .map(|s| {
            s.parse::<LogSource>()
                .map(|source| source.as_str().to_string())
                .map_err(|_| ApiError::field("source", format!("must be proxy or api, not '{s}'")))
        })
        .transpose()?;
    let since = p
        .since
        .as_deref()
        .map(|s| window("since", s).map(|d| Utc::now() - d))
        .transpose()?;
    let search = p.search.filter(|s| !s.is_empty());
    if search.as_ref().is_some_and(|s| s.len() > 500) {
        return Err(ApiError::field("search", "must be at most 500 bytes"));
    }
    Ok(LogFilter {
        limit,
        offset,
        errors_only,
        slower_than_us,
        search,
        source,
        since,
    })
}

async fn logs(
    state: &AppState,
    auth: &Auth,
    target: LogTarget<'_>,
    params: LogParams,
) -> Result<(Vec<LogItem>, bool), ApiError> {
    let filter = filter(state, params)?;
    let (entries, more) = state
        .catalog
        .query_logs(&auth.project_id, target, &filter)
        .await?;
    let logs = entries
        .into_iter()
        .map(|e| LogItem {
            id: e.id,
            query: e.statement,
            source: e.source,
            success: e.success,
            duration_ms: ms(e.duration_us as f64),
            created_at: e.started_at,
            error_code: e.sqlstate,
            rows: e.rows,
            database: e.database,
            username: e.username,
        })
        .collect();
    Ok((logs, more))
}

/// The tenant's statements (proxy and API), newest first.
#[utoipa::path(get, path = "/tenants/{id}/logs", tag = "logs",
    params(("id" = String, Path), ("limit" = Option<i64>, Query, description = "1-1000, default 50"),
           ("offset" = Option<i64>, Query), ("type" = Option<String>, Query, description = "error or slow"),
           ("search" = Option<String>, Query, description = "substring of the statement"),
           ("source" = Option<String>, Query, description = "proxy or api"),
           ("since" = Option<String>, Query, description = "1h, 24h, 7d or 30d")),
    responses((status = 200, body = LogPage, description = "with tenant_id"), (status = 400), (status = 404)))]
async fn tenant_logs(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath(name): ApiPath<String>,
    ApiQuery(params): ApiQuery<LogParams>,
) -> ApiResult<LogPage> {
    super::tenants::find(&state, &auth, &name).await?;
    let (logs, more) = logs(&state, &auth, LogTarget::Tenant(&name), params).await?;
    Ok(Reply::ok(LogPage {
        tenant_id: Some(name),
        workspace_id: None,
        count: logs.len(),
        has_more: more,
        logs,
    }))
}

/// The workspace's statements (proxy and API), newest first.
#[utoipa::path(get, path = "/workspaces/{id}/logs", tag = "logs",
    params(("id" = String, Path), ("limit" = Option<i64>, Query), ("offset" = Option<i64>, Query),
           ("type" = Option<String>, Query), ("search" = Option<String>, Query),
           ("source" = Option<String>, Query), ("since" = Option<String>, Query)),
    responses((status = 200, body = LogPage, description = "with workspace_id"), (status = 400), (status = 404)))]
async fn workspace_logs(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath(name): ApiPath<String>,
    ApiQuery(params): ApiQuery<LogParams>,
) -> ApiResult<LogPage> {
    workspace_target(&state, &auth, &name).await?;
    let (logs, more) = logs(&state, &auth, LogTarget::Workspace(&name), params).await?;
    Ok(Reply::ok(LogPage {
        tenant_id: None,
        workspace_id: Some(name),
        count: logs.len(),
        has_more: more,
        logs,
    }))
}

/// Totals over the tenant's whole log: outcomes, sources, mean duration, slow statements.
#[utoipa::path(get, path = "/tenants/{id}/logs/stats", tag = "logs", params(("id" = String, Path)),
    responses((status = 200, body = LogStats), (status = 404)))]
async fn tenant_stats(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<LogStats> {
    super::tenants::find(&state, &auth, &name).await?;
    let s = state
        .catalog
        .query_log_stats(&auth.project_id, LogTarget::Tenant(&name), slow_us(&state))
        .await?;
    Ok(Reply::ok(LogStats {
        tenant_id: name,
        total_queries: s.total,
        successful: s.successful,
        failed: s.failed,
        by_source: BySource {
            proxy: s.proxy,
            api: s.api,
        },
        avg_duration_ms: ms(s.avg_us),
        slow_queries: s.slow,
        slow_threshold_ms: state.config.slow_query_ms,
    }))
}

#[derive(Deserialize)]
struct MetricsParams {
    window: Option<String>,
    bucket: Option<String>,
}

fn success_rate(l: &LatencySummary) -> Option<f64> {
    (l.total != 0)
        .then(|| ((l.total - l.failed) as f64 / l.total as f64 * 10_000.0).round() / 100.0)
}

fn latency_ms(l: &LatencySummary) -> LatencyMs {
    LatencyMs {
        avg: l.avg_us.map(ms),
        p50: l.p50_us.map(ms),
        p95: l.p95_us.map(ms),
        p99: l.p99_us.map(ms),
        max: l.max_us.map(|m| ms(m as f64)),
    }
}

/// Which log the metrics are of, named as the answer names it.
enum Owner {
    Tenant(String),
    Workspace(String),
}

async fn metrics(
    state: &AppState,
    auth: &Auth,
    target: LogTarget<'_>,
    params: MetricsParams,
    owner: Owner,
) -> Result<Metrics, ApiError> {
    let window_text = params.window.unwrap_or_else(|| "24h".into());
    let length = window("window", &window_text)?;
    let bucket = match params.bucket.as_deref() {
        None if length <= Duration::hours(24) => "hour",
        None => "day",
        Some(b @ ("hour" | "day" | "week")) => b,
        Some(other) => {
            return Err(ApiError::field(
                "bucket",
                format!("must be hour, day or week, not '{other}'"),
            ));
        }
    };
    let since: DateTime<Utc> = Utc::now() - length;
    let slow = slow_us(state);
    let summary = state
        .catalog
        .query_log_latency(&auth.project_id, target, since, slow)
        .await?;
    let series = state
        .catalog
        .query_log_buckets(&auth.project_id, target, since, bucket, slow)
        .await?
        .into_iter()
        .map(|b| MetricsBucket {
            start: b.bucket,
            queries: b.total,
            failed: b.failed,
            slow: b.slow,
            avg_ms: b.avg_us.map(ms),
            p95_ms: b.p95_us.map(ms),
        })
        .collect();
    let (tenant_id, workspace_id) = match owner {
        Owner::Tenant(name) => (Some(name), None),
        Owner::Workspace(name) => (None, Some(name)),
    };
    Ok(Metrics {
        queries: summary.total,
        successful: summary.total - summary.failed,
        failed: summary.failed,
        slow: summary.slow,
        success_rate: success_rate(&summary),
        latency_ms: latency_ms(&summary),
        window: window_text,
        bucket: bucket.to_string(),
        slow_threshold_ms: state.config.slow_query_ms,
        series,
        tenant_id,
        workspace_id,
    })
}

/// Query counts, latency (avg, p50, p95, p99, max), success rate, failed and slow statements
/// over a window, with a series per hour, day or week.
#[utoipa::path(get, path = "/tenants/{id}/metrics", tag = "logs",
    params(("id" = String, Path), ("window" = Option<String>, Query, description = "1h, 24h (default), 7d or 30d"),
           ("bucket" = Option<String>, Query, description = "hour, day or week")),
    responses((status = 200, body = Metrics), (status = 400), (status = 404)))]
async fn tenant_metrics(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath(name): ApiPath<String>,
    ApiQuery(params): ApiQuery<MetricsParams>,
) -> ApiResult<Metrics> {
    super::tenants::find(&state, &auth, &name).await?;
    let target = LogTarget::Tenant(&name);
    let body = metrics(&state, &auth, target, params, Owner::Tenant(name.clone())).await?;
    Ok(Reply::ok(body))
}

/// The same metrics for a workspace's own statements.
#[utoipa::path(get, path = "/workspaces/{id}/metrics", tag = "logs",
    params(("id" = String, Path), ("window" = Option<String>, Query), ("bucket" = Option<String>, Query)),
    responses((status = 200, body = Metrics), (status = 400), (status = 404)))]
async fn workspace_metrics(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath(name): ApiPath<String>,
    ApiQuery(params): ApiQuery<MetricsParams>,
) -> ApiResult<Metrics> {
    workspace_target(&state, &auth, &name).await?;
    let target = LogTarget::Workspace(&name);
    let body = metrics(
        &state,
        &auth,
        target,
        params,
        Owner::Workspace(name.clone()),
    )
    .await?;
    Ok(Reply::ok(body))
}
