//! A PostgreSQL session: one connection, each statement sent with the simple protocol (so any
//! statement, DDL included, runs as written), rows decoded to JSON, capped at `max_rows`.

use async_trait::async_trait;
use futures_util::TryStreamExt;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{Column, Connection, Either, Executor, Row, SqlSafeStr};

use super::{connect_with, from_sqlx, options, values};
use crate::engine::{DatabaseAccess, EngineError, Limits, QueryOutput, Result, Session};

pub struct PgSession {
    conn: PgConnection,
    limits: Limits,
    target: PgConnectOptions,
    /// The server process serving this session, to stop it if the server stops answering.
    backend_pid: i32,
}

impl PgSession {
    pub async fn open(target: &DatabaseAccess, limits: Limits) -> Result<Self> {
        Self::open_with(options(target), limits).await
    }

    pub async fn open_with(target: PgConnectOptions, limits: Limits) -> Result<Self> {
        let mut conn = connect_with(&target).await?;
        // The server enforces the timeout (and cancels the statement); the client-side timeout
        // below is only a backstop for a server that stops answering.
        let ms = limits.timeout.as_millis().max(1);
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("SET statement_timeout = {ms}")))
            .execute(&mut conn)
            .await
            .map_err(from_sqlx)?;
        let backend_pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(&mut conn)
            .await
            .map_err(from_sqlx)?;
        Ok(Self {
            conn,
            limits,
            target,
            backend_pid,
        })
    }

    async fn run_inner(&mut self, statement: &str) -> Result<QueryOutput> {
        let mut out = QueryOutput::default();
        let sql = sqlx::AssertSqlSafe(statement.to_string());
        let mut stream = self.conn.fetch_many(sqlx::raw_sql(sql));
        let mut affected = 0u64;
        let mut returned = 0u64;
        while let Some(item) = stream.try_next().await.map_err(from_sqlx)? {
            match item {
                Either::Left(result) => affected += result.rows_affected(),
                Either::Right(row) => {
                    returned += 1;
                    if out.columns.is_empty() {
                        out.columns = row.columns().iter().map(|c| c.name().to_string()).collect();
                    }
                    if out.rows.len() < self.limits.max_rows {
                        out.rows.push(values::row_to_json(&row));
                    } else {
                        out.truncated = true;
                    }
                }
            }
        }
        drop(stream);
        out.row_count = if returned > 0 {
            out.rows.len() as u64
        } else {
            affected
        };
        if returned == 0 && out.columns.is_empty() {
            out.columns = self.describe_columns(statement).await;
        }
        Ok(out)
    }

    /// Column names of a query that returned no rows (DDL and DML have none).
    async fn describe_columns(&mut self, statement: &str) -> Vec<String> {
        let sql = sqlx::AssertSqlSafe(statement.to_string()).into_sql_str();
        match (&mut self.conn).describe(sql).await {
            Ok(d) => d.columns().iter().map(|c| c.name().to_string()).collect(),
            Err(_) => Vec::new(),
        }
    }
}

#[async_trait]
impl Session for PgSession {
    async fn run(&mut self, statement: &str) -> Result<QueryOutput> {
        let backstop = self.limits.timeout + std::time::Duration::from_secs(5);
        match tokio::time::timeout(backstop, self.run_inner(statement)).await {
            Ok(result) => result,
            Err(_) => {
                // The statement outlived its timeout (e.g. the session turned statement_timeout
                // off). A role may end its own backends: do so, or the query runs on unseen.
                if let Ok(mut other) = connect_with(&self.target).await {
                    let _ = sqlx::query("SELECT pg_terminate_backend($1)")
                        .bind(self.backend_pid)
                        .execute(&mut other)
                        .await;
                    let _ = other.close().await;
                }
                Err(EngineError::Timeout(self.limits.timeout))
            }
        }
    }

    async fn close(self: Box<Self>) {
        let _ = self.conn.close().await;
    }
}
