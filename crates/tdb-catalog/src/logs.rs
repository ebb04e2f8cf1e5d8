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

/// A chunk with the key of one of its matching records, or with none (`id` and `started_at`
/// NULL).
#[derive(FromRow)]
struct ChunkKey {
    chunk: i64,
    chunk_last_at: DateTime<Utc>,
    id: Option<i64>,
    started_at: Option<DateTime<Utc>>,
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

/// How many chunks the first look at a target's log reads; each further look reads twice as
/// many, up to [`CHUNK_PAGE_MAX`].
const CHUNK_PAGE: i64 = 16;
const CHUNK_PAGE_MAX: i64 = 1024;
/// A chunk `c`'s records as rows `r`, with their place in the chunk (`ord`, from 1).
const RECORDS: &str = "unnest(c.statements, c.durations_us, c.successes, c.sqlstates, \
                       c.row_counts, c.started) WITH ORDINALITY \
                       AS r(statement, duration_us, success, sqlstate, rows, started_at, ord)";

impl Catalog {
    /// A page of records, newest first; the second value says whether more match.
    ///
    /// Records are stored in chunks (see `query_log_chunk`), which the target's index gives
    /// newest last record first. Chunks are read a few at a time and the keys (start, id) of
    /// their matching records collected until `offset + limit` are found and no chunk left can
    /// hold a record as new as the oldest of them: every record of a chunk started at or
    /// before its `last_at`. Only the page's records are then read whole, so a deep offset
    /// costs the API a key per record skipped, not the records.
    pub async fn query_logs(
        &self,
        project_id: &str,
        target: LogTarget<'_>,
        filter: &LogFilter,
    ) -> Result<(Vec<LogEntry>, bool)> {
        let limit = usize::try_from(filter.limit).unwrap_or(0);
        let offset = usize::try_from(filter.offset).unwrap_or(0);
        let wanted = offset.saturating_add(limit).saturating_add(1);
        // The next `$6` chunks of the target, newest first, each with its matching records'
        // keys, or with one row of NULLs when none match (so the reader sees where it got to).
        let sql = format!(
            "SELECT c.id AS chunk, c.last_at AS chunk_last_at, (c.id << 16) | r.ord AS id,
                    r.started_at
               FROM (SELECT * FROM query_log_chunk
                      WHERE {}
                        AND ($3::timestamptz IS NULL OR last_at >= $3)
                        AND ($4::timestamptz IS NULL
                             OR (last_at <= $4 AND (last_at, id) < ($4, $5)))
                      ORDER BY last_at DESC, id DESC
                      LIMIT $6) c
               LEFT JOIN LATERAL (
                    SELECT * FROM {RECORDS}
                     WHERE ($7::bool IS FALSE OR NOT r.success)
                       AND ($8::int8 IS NULL OR r.duration_us >= $8)
                       AND ($9::text IS NULL OR r.statement ILIKE $9)
                       AND ($10::text IS NULL OR c.source = $10)
                       AND ($3::timestamptz IS NULL OR r.started_at >= $3)) r ON true",
            target.clause()
        );
        let pattern = filter
            .search
            .as_deref()
            .map(|s| format!("%{}%", like_escape(s)));
        // (start, id, its chunk's last_at), newest first.
        type Key = (DateTime<Utc>, i64, DateTime<Utc>);
        let newest_first = |a: &Key, b: &Key| b.cmp(a);
        let mut found: Vec<Key> = Vec::new();
        let mut after: Option<(DateTime<Utc>, i64)> = None;
        let mut page = CHUNK_PAGE;
        loop {
            let rows: Vec<ChunkKey> = sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str()))
                .bind(project_id)
                .bind(target.name())
                .bind(filter.since)
                .bind(after.map(|(at, _)| at))
                .bind(after.map(|(_, id)| id))
                .bind(page)
                .bind(filter.errors_only)
                .bind(filter.slower_than_us)
                .bind(pattern.as_deref())
                .bind(filter.source.as_deref())
                .fetch_all(self.pool())
                .await?;
            // The oldest chunk read, and how many were read.
            let Some(last) = rows.iter().map(|r| (r.chunk_last_at, r.chunk)).min() else {
                break;
            };
            let chunks = rows
                .iter()
                .map(|r| r.chunk)
                .collect::<std::collections::HashSet<_>>()
                .len();
            found.extend(
                rows.iter()
                    .filter_map(|r| Some((r.started_at?, r.id?, r.chunk_last_at))),
            );
            if found.len() >= wanted {
                found.sort_unstable_by(newest_first);
                found.truncate(wanted);
                // The chunks left hold only records that started at or before `last.0`.
                if last.0 < found[wanted - 1].0 {
                    break;
                }
            }
            if (chunks as i64) < page {
                break;
            }
            after = Some(last);
            page = (page * 2).min(CHUNK_PAGE_MAX);
        }
        found.sort_unstable_by(newest_first);
        let more = found.len() > offset.saturating_add(limit);
        let keys: Vec<Key> = found.into_iter().skip(offset).take(limit).collect();
        let (Some(newest), Some(oldest)) = (
            keys.iter().map(|k| k.2).max(),
            keys.iter().map(|k| k.2).min(),
        ) else {
            return Ok((Vec::new(), more));
        };
        let ids: Vec<i64> = keys.iter().map(|k| k.1).collect();
        let chunks: Vec<i64> = ids.iter().map(|id| id >> 16).collect();
        // The page's chunks through the target's index, between their `last_at`s.
        let sql = format!(
            "SELECT (c.id << 16) | r.ord AS id, c.database, c.source, c.username, r.statement,
                    r.duration_us, r.success, r.sqlstate, r.rows, r.started_at
               FROM (SELECT * FROM query_log_chunk
                      WHERE {} AND last_at BETWEEN $3 AND $4 AND id = ANY($5)) c
              CROSS JOIN LATERAL {RECORDS}
              WHERE (c.id << 16) | r.ord = ANY($6)",
            target.clause()
        );
        let mut entries: Vec<LogEntry> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(project_id)
            .bind(target.name())
            .bind(oldest)
            .bind(newest)
            .bind(&chunks)
            .bind(&ids)
            .fetch_all(self.pool())
            .await?;
        // A chunk that retention deleted between the two reads leaves its records out.
        entries.sort_unstable_by_key(|e| std::cmp::Reverse((e.started_at, e.id)));
        Ok((entries, more))
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
        // `chunk_last_at` skips, through the index, the chunks that hold only older records.
        let sql = format!(
            "SELECT count(*) AS total,
                    count(*) FILTER (WHERE NOT success) AS failed,
                    count(*) FILTER (WHERE duration_us >= $4) AS slow,
                    avg(duration_us)::float8 AS avg_us,
                    percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_us) AS p50_us,
                    percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_us) AS p95_us,
                    percentile_cont(0.99) WITHIN GROUP (ORDER BY duration_us) AS p99_us,
                    max(duration_us) AS max_us
               FROM query_log WHERE {} AND chunk_last_at >= $3 AND started_at >= $3",
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
               FROM query_log WHERE {} AND chunk_last_at >= $3 AND started_at >= $3
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

    /// Deletes the records older than `days`, a thousand chunks at a time so the writer never
    /// waits long, each batch found through the `last_at` index and deleted by tuple id;
    /// returns how many records went. A chunk goes with its newest record, so one
    /// writer batch's worth of records may outlive the limit by the batch's span.
    pub async fn expire_query_log(&self, days: i64) -> Result<u64> {
        let mut total = 0;
        loop {
            let (chunks, records): (i64, i64) = sqlx::query_as(
                "WITH gone AS (
                     DELETE FROM query_log_chunk WHERE ctid = ANY(ARRAY(
                         SELECT ctid FROM query_log_chunk
                          WHERE last_at < now() - make_interval(days => $1) LIMIT 1000))
                     RETURNING records)
                 SELECT count(*), coalesce(sum(records), 0)::int8 FROM gone",
            )
            .bind(i32::try_from(days).unwrap_or(i32::MAX))
            .fetch_one(self.pool())
            .await?;
            total += u64::try_from(records).unwrap_or(0);
            if chunks < 1000 {
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
