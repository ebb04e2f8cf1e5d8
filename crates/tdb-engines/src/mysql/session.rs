//! A MariaDB session for statements tdb runs for users (the API's queries): one `sqlx-mysql`
//! connection, each statement sent as text (`COM_QUERY`, so any statement runs as written),
//! rows decoded to JSON, capped at `max_rows` and at the request's memory. A row is charged to
//! the answer as it arrives (the driver holds one row at a time, at most `max_allowed_packet`).
//!
//! The server enforces the timeout (`max_statement_time`, which ends the statement with error
//! 1969); the session enforces it too, since a statement may lift the setting and the server's
//! timer skips some statements: one that outlives its timeout has its connection dropped and
//! ended (`KILL CONNECTION`) by tdb's administrator when given, else by the session's own user
//! on a second connection (MariaDB lets a user end its own sessions), which only fails should
//! the statement have changed that user's password.

use std::time::Duration;

use async_trait::async_trait;
use futures_util::TryStreamExt;
use sqlx::mysql::MySqlConnection;
use sqlx::{Connection, Either, SqlSafeStr};

use super::{SessionPlace, admin_access, connect, errno, error_number, exec, from_sqlx, values};
use crate::AdminEndpoint;
use crate::budget::Answer;
use crate::engine::{DatabaseAccess, EngineError, Limits, QueryOutput, Result, Session};

/// How long past its timeout a statement may run before tdb stops it itself (the server's own
/// timeout fires first).
const GRACE: Duration = Duration::from_secs(1);

pub struct MysqlSession {
    conn: Option<MySqlConnection>,
    limits: Limits,
    /// The server's id of this connection (`CONNECTION_ID()`), for `KILL`.
    id: i64,
    /// Who ends the connection when a statement outlives its timeout, and the session's user
    /// (only a connection of that user with that id is ended).
    stopper: DatabaseAccess,
    user: String,
    _place: SessionPlace,
}

impl MysqlSession {
    pub async fn open(
        target: &DatabaseAccess,
        limits: Limits,
        admin: Option<&AdminEndpoint>,
        place: SessionPlace,
    ) -> Result<Self> {
        let mut conn = connect(target).await?;
        let seconds = limits.timeout.as_secs_f64().max(0.001);
        exec(
            &mut conn,
            format!("SET SESSION max_statement_time = {seconds:.3}"),
        )
        .await?;
        let id: i64 = sqlx::query_scalar("SELECT CAST(CONNECTION_ID() AS SIGNED)")
            .fetch_one(&mut conn)
            .await
            .map_err(from_sqlx)?;
        let stopper = match admin {
            Some(admin) => admin_access(admin, ""),
            None => target.clone(),
        };
        Ok(Self {
            conn: Some(conn),
            limits,
            id,
            stopper,
            user: target.user.clone(),
            _place: place,
        })
    }

    /// Gives the connection up and has the server end it (and whatever it still runs).
    fn abandon(&mut self) {
        let conn = self.conn.take();
        let (stopper, id, user) = (self.stopper.clone(), self.id, self.user.clone());
        tokio::spawn(async move {
            drop(conn);
            end_connection(&stopper, id, &user).await;
        });
    }
}

/// Ends connection `id` of `user` as `stopper`.
pub(super) async fn end_connection(stopper: &DatabaseAccess, id: i64, user: &str) {
    let Ok(mut conn) = connect(stopper).await else {
        tracing::warn!(id, "cannot reach the server to end a stuck statement");
        return;
    };
    let still_there: std::result::Result<i64, _> = sqlx::query_scalar(
        "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = ? AND USER = ?",
    )
    .bind(id)
    .bind(user)
    .fetch_one(&mut conn)
    .await;
    if let Ok(1..) = still_there
        && exec(&mut conn, format!("KILL CONNECTION {id}"))
            .await
            .is_ok()
    {
        tracing::warn!(id, "ended a statement that outlived its timeout");
    }
    let _ = conn.close().await;
}

#[async_trait]
impl Session for MysqlSession {
    async fn run(&mut self, statement: &str) -> Result<QueryOutput> {
        let Some(conn) = self.conn.as_mut() else {
            return Err(EngineError::Internal(
                "the session ended after an earlier statement".into(),
            ));
        };
        let work = query(conn, statement, self.limits.max_rows, &self.limits.answer);
        match tokio::time::timeout(self.limits.timeout + GRACE, work).await {
            Ok(Ok(out)) => Ok(out),
            Ok(Err(e)) if error_number(&e) == Some(errno::STATEMENT_TIMEOUT) => {
                Err(EngineError::Timeout(self.limits.timeout))
            }
            Ok(Err(e)) => {
                if matches!(
                    e,
                    EngineError::TooLarge(_) | EngineError::Connect(_) | EngineError::Internal(_)
                ) {
                    // Mid-answer or broken: the connection is of no further use.
                    self.abandon();
                }
                Err(e)
            }
            Err(_) => {
                self.abandon();
                Err(EngineError::Timeout(self.limits.timeout))
            }
        }
    }

    async fn close(mut self: Box<Self>) {
        if let Some(conn) = self.conn.take() {
            let _ = conn.close().await;
        }
    }
}

/// Runs `sql` and collects its rows: at most `max_rows` kept (the rest read past, `truncated`
/// set), each charged to `answer`. `row_count` is the rows returned, or else the rows affected.
async fn query(
    conn: &mut MySqlConnection,
    sql: &str,
    max_rows: usize,
    answer: &Answer,
) -> Result<QueryOutput> {
    let mut out = QueryOutput::default();
    let (mut returned, mut affected) = (0u64, 0u64);
    {
        let mut results =
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string())).fetch_many(&mut *conn);
        while let Some(item) = results.try_next().await.map_err(from_sqlx)? {
            match item {
                Either::Left(done) => affected += done.rows_affected(),
                Either::Right(row) => {
                    returned += 1;
                    if out.columns.is_empty() {
                        out.columns = values::names(&row);
                    }
                    if out.rows.len() >= max_rows {
                        out.truncated = true;
                        continue;
                    }
                    answer
                        .take(values::cost(&row))
                        .map_err(EngineError::TooLarge)?;
                    out.rows.push(values::row_to_json(&row));
                }
            }
        }
    }
    if returned == 0 {
        out.columns = empty_result_columns(conn, sql).await;
    }
    out.row_count = if returned > 0 { returned } else { affected };
    Ok(out)
}

/// The columns of a query that returned no rows (the text protocol sends them only with rows):
/// the statement is prepared, not run again, to read them. Statements that return no result
/// set, or cannot be prepared, have none.
async fn empty_result_columns(conn: &mut MySqlConnection, sql: &str) -> Vec<String> {
    use sqlx::{Column, Executor, Statement};
    let prepared = conn
        .prepare(sqlx::AssertSqlSafe(sql.to_string()).into_sql_str())
        .await;
    prepared.map_or_else(
        |_| Vec::new(),
        |s| s.columns().iter().map(|c| c.name().to_string()).collect(),
    )
}
