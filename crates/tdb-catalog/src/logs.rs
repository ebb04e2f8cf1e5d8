//! Reading the query log: one tenant's (or workspace's) records newest first with filters, and
//! aggregates over them (counts, latency percentiles, time buckets); retention by age.

use chrono::{DateTime, Utc};
use sqlx::FromRow;

use crate::{Catalog, Result};

/// Whose records: a tenant's, or a workspace's (records with no tenant).
#[derive(Debug, Clone, Copy)]
pub enum LogTarget<'a> {
    Tenant(&'a str),
    Workspace(&'a str),
}

impl LogTarget<'_> {
    fn clause(&self) -> &'static str {
        match self {
            Self::Tenant(_) => "project_id = $1 AND tenant = $2",
            Self::Workspace(_) => "project_id = $1 AND tenant IS NULL AND workspace = $2",
        }
    }

    fn name(&self) -> &str {
        match self {
            Self::Tenant(n) | Self::Workspace(n) => n,
        }
    }
}

/// Filters of `GET /tenants/{id}/logs`.
#[derive(Debug, Clone, Default)]
pub struct LogFilter {
    pub limit: i64,
    pub offset: i64,
    /// Only failed statements.
    pub errors_only: bool,
    /// Only statements at least this slow (microseconds).
    pub slower_than_us: Option<i64>,
    /// Case-insensitive substring of the statement.
    pub search: Option<String>,
    /// `proxy` or `api`.
    pub source: Option<String>,
    pub since: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, FromRow)]
pub struct LogEntry {
    pub id: i64,
    pub database: String,
    pub source: String,
    pub username: String,
    pub statement: String,
    pub duration_us: i64,
    pub success: bool,
    pub sqlstate: Option<String>,
    pub rows: Option<i64>,
    pub started_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Default, FromRow)]
pub struct LogStats {
    pub total: i64,
    pub successful: i64,
    pub failed: i64,
    pub slow: i64,
    pub proxy: i64,
    pub api: i64,
    /// Mean duration in microseconds (0 with no records).
    pub avg_us: f64,
}

#[derive(Debug, Clone, Default, FromRow)]
pub struct LatencySummary {
    pub total: i64,
    pub failed: i64,
    pub slow: i64,
    pub avg_us: Option<f64>,
    pub p50_us: Option<f64>,
    pub p95_us: Option<f64>,
    pub p99_us: Option<f64>,
    pub max_us: Option<i64>,
}

#[derive(Debug, Clone, FromRow)]
pub struct Bucket {
    pub bucket: DateTime<Utc>,
    pub total: i64,
    pub failed: i64,
    pub slow: i64,
    pub avg_us: Option<f64>,
    pub p95_us: Option<f64>,
}

/// Escapes `%`, `_` and `\` for a LIKE pattern.
fn like_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

impl Catalog {
    /// A page of records, newest first; the second value says whether more match.
    pub async fn query_logs(
        &self,
        project_id: &str,
        target: LogTarget<'_>,
        filter: &LogFilter,
    ) -> Result<(Vec<LogEntry>, bool)> {
        let sql = format!(
            "SELECT id, database, source, username, statement, duration_us, success, sqlstate,
                    rows, started_at
               FROM query_log
              WHERE {}
                AND ($3::bool IS FALSE OR NOT success)
                AND ($4::int8 IS NULL OR duration_us >= $4)
                AND ($5::text IS NULL OR statement ILIKE $5)
                AND ($6::text IS NULL OR source = $6)
                AND ($7::timestamptz IS NULL OR started_at >= $7)
              ORDER BY started_at DESC, id DESC
              LIMIT $8 OFFSET $9",
            target.clause()
        );
        let mut rows: Vec<LogEntry> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(project_id)
            .bind(target.name())
            .bind(filter.errors_only)
            .bind(filter.slower_than_us)
            .bind(
                filter
                    .search
                    .as_deref()
                    .map(|s| format!("%{}%", like_escape(s))),
            )
            .bind(filter.source.as_deref())
            .bind(filter.since)
            .bind(filter.limit + 1)
            .bind(filter.offset)
            .fetch_all(self.pool())
            .await?;
        let more = rows.len() as i64 > filter.limit;
        rows.truncate(usize::try_from(filter.limit).unwrap_or(0));
        Ok((rows, more))
    }

    /// Counts by outcome and source, the mean duration, and statements at least `slow_us` long.
    pub async fn query_log_stats(
        &self,
        project_id: &str,
        target: LogTarget<'_>,
        slow_us: i64,
    ) -> Result<LogStats> {
        let sql = format!(
            "SELECT count(*) AS total,
                    count(*) FILTER (WHERE success) AS successful,
                    count(*) FILTER (WHERE NOT success) AS failed,
                    count(*) FILTER (WHERE duration_us >= $3) AS slow,
                    count(*) FILTER (WHERE source = 'proxy') AS proxy,
                    count(*) FILTER (WHERE source = 'api') AS api,
                    coalesce(avg(duration_us), 0)::float8 AS avg_us
               FROM query_log WHERE {}",
            target.clause()
        );
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(project_id)
            .bind(target.name())
            .bind(slow_us)
            .fetch_one(self.pool())
            .await?)
    }

    /// Latency summary since `since`.
    pub async fn query_log_latency(
        &self,
        project_id: &str,
        target: LogTarget<'_>,
        since: DateTime<Utc>,
        slow_us: i64,
    ) -> Result<LatencySummary> {
        let sql = format!(
            "SELECT count(*) AS total,
                    count(*) FILTER (WHERE NOT success) AS failed,
                    count(*) FILTER (WHERE duration_us >= $4) AS slow,
                    avg(duration_us)::float8 AS avg_us,
                    percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_us) AS p50_us,
                    percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_us) AS p95_us,
                    percentile_cont(0.99) WITHIN GROUP (ORDER BY duration_us) AS p99_us,
                    max(duration_us) AS max_us
               FROM query_log WHERE {} AND started_at >= $3",
            target.clause()
        );
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(project_id)
            .bind(target.name())
            .bind(since)
            .bind(slow_us)
            .fetch_one(self.pool())
            .await?)
    }

    /// Counts per `unit` (`hour`, `day` or `week`, UTC) since `since`, oldest first; buckets
    /// without records are left out.
    pub async fn query_log_buckets(
        &self,
        project_id: &str,
        target: LogTarget<'_>,
        since: DateTime<Utc>,
        unit: &str,
        slow_us: i64,
    ) -> Result<Vec<Bucket>> {
        let unit = match unit {
            "day" => "day",
            "week" => "week",
            _ => "hour",
        };
        let sql = format!(
            "SELECT date_trunc('{unit}', started_at, 'UTC') AS bucket,
                    count(*) AS total,
                    count(*) FILTER (WHERE NOT success) AS failed,
                    count(*) FILTER (WHERE duration_us >= $4) AS slow,
                    avg(duration_us)::float8 AS avg_us,
                    percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_us) AS p95_us
               FROM query_log WHERE {} AND started_at >= $3
              GROUP BY 1 ORDER BY 1",
            target.clause()
        );
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(project_id)
            .bind(target.name())
            .bind(since)
            .bind(slow_us)
            .fetch_all(self.pool())
            .await?)
    }

    /// Deletes records older than `days`, a batch at a time so the writer never waits long;
    /// returns how many went.
    pub async fn expire_query_log(&self, days: i64) -> Result<u64> {
        let mut total = 0;
        loop {
            let done = sqlx::query(
                "DELETE FROM query_log WHERE id IN (
                     SELECT id FROM query_log
                      WHERE started_at < now() - make_interval(days => $1) LIMIT 10000)",
            )
            .bind(i32::try_from(days).unwrap_or(i32::MAX))
            .execute(self.pool())
            .await?;
            total += done.rows_affected();
            if done.rows_affected() < 10_000 {
                return Ok(total);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_text_is_taken_literally() {
        assert_eq!(like_escape("50%_off\\"), "50\\%\\_off\\\\");
        assert_eq!(like_escape("plain"), "plain");
    }
}
