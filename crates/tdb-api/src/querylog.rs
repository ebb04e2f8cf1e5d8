//! Statements run through the REST API (admin queries, workspace queries) go into the same query
//! log as the proxy's, with source `api`. They are written after the answer is on its way, in one
//! insert per request; a failed write is logged and does not fail the request.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tdb_catalog::routing::{LogBatch, LoggedStatement, QueryOrigin};
use tdb_core::routing::RoutingName;
use tdb_engines::{EngineError, QueryOutput};

use crate::AppState;

/// The longest statement text kept, in bytes (as the proxy keeps).
const MAX_STATEMENT_LEN: usize = 2048;

/// Records of one request: one origin (the request's target and API key) and its statements.
pub struct ApiLog {
    origin: Arc<QueryOrigin>,
    batch: LogBatch,
}

impl ApiLog {
    /// Statements on a tenant's database (`<blueprint>__<tenant>`), run by API key `key_id`.
    pub fn tenant(project_id: &str, blueprint: &str, tenant: &str, key_id: &str) -> Self {
        Self::new(QueryOrigin {
            project_id: project_id.into(),
            tenant: Some(tenant.into()),
            workspace: None,
            database: RoutingName::tenant(blueprint, tenant).to_string().into(),
            source: "api",
            username: key_id.into(),
        })
    }

    /// Statements in a workspace (`<workspace>_workspace`).
    pub fn workspace(project_id: &str, workspace: &str, key_id: &str) -> Self {
        Self::new(QueryOrigin {
            project_id: project_id.into(),
            tenant: None,
            workspace: Some(workspace.into()),
            database: RoutingName::workspace(workspace).to_string().into(),
            source: "api",
            username: key_id.into(),
        })
    }

    fn new(origin: QueryOrigin) -> Self {
        Self {
            origin: Arc::new(origin),
            batch: LogBatch::default(),
        }
    }

    /// One statement that ran (or failed) for `took`, starting at `started_at`.
    pub fn ran(
        &mut self,
        statement: &str,
        started_at: DateTime<Utc>,
        took: Duration,
        outcome: Result<&QueryOutput, &EngineError>,
    ) {
        let (success, sqlstate, rows) = match outcome {
            Ok(out) => (true, None, i64::try_from(out.row_count).ok()),
            Err(EngineError::Query { sqlstate, .. }) => (false, Some(sqlstate.as_str()), None),
            Err(EngineError::Timeout(_)) => (false, Some("57014"), None),
            Err(_) => (false, Some("08006"), None),
        };
        self.batch.push(
            &self.origin,
            &LoggedStatement {
                text: bounded(statement),
                duration_us: i64::try_from(took.as_micros()).unwrap_or(i64::MAX),
                success,
                sqlstate,
                rows,
                started_at,
            },
        );
    }

    /// Writes the records in the background.
    pub fn flush(self, state: &AppState) {
        if self.batch.is_empty() {
            return;
        }
        let catalog = state.catalog.clone();
        tokio::spawn(async move {
            if let Err(e) = catalog.append_log_batch(&self.batch).await {
                tracing::warn!(error = %e, records = self.batch.len(), "API query log records lost");
            }
        });
    }
}

/// At most `MAX_STATEMENT_LEN` bytes, cut at a character boundary.
fn bounded(text: &str) -> &str {
    if text.len() <= MAX_STATEMENT_LEN {
        return text;
    }
    let mut end = MAX_STATEMENT_LEN;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_statements_are_cut_at_a_character() {
        let text = "é".repeat(2000);
        let cut = bounded(&text);
        assert!(cut.len() <= MAX_STATEMENT_LEN && cut.len() >= MAX_STATEMENT_LEN - 1);
        assert!(cut.chars().all(|c| c == 'é'));
        assert_eq!(bounded("SELECT 1"), "SELECT 1");
    }
}
