//! Sessions: values as JSON, row counts, the server's errors with their numbers, timeouts
//! kept by the server and by tdb, and the answer's memory.

use std::time::Duration;

use sqlx::Connection;

use super::support::*;
use tdb_engines::budget::MemoryBudget;
use tdb_engines::{Engine, EngineError, Session};

pub async fn sessions_answer_rows_counts_errors_and_timeouts(ctx: &Ctx) {
    let (engine, e, acme) = (&ctx.engine, &ctx.e, &ctx.acme);
    let mut session = engine
        .open(&acme.app(e), limits(Duration::from_secs(1), 3), Some(e))
        .await
        .expect("session");
    values_and_counts(session.as_mut()).await;
    errors_carry_their_numbers(session.as_mut()).await;
    timeouts_end_statements(ctx, session.as_mut()).await;
    session.close().await;
    answers_over_their_memory_fail_alone(ctx).await;
}

async fn values_and_counts(session: &mut dyn Session) {
    use serde_json::json;
    let out = session
        .run(
            "SELECT 1 AS i, -5 AS neg, 18446744073709551615 AS big, 'x' AS s, 1.5e0 AS f, \
             CAST(2.50 AS DECIMAL(5,2)) AS d, NULL AS n, X'FF00' AS b, DATE '2024-01-02' AS dt, \
             label FROM parent",
        )
        .await
        .expect("select");
    assert_eq!(
        out.columns,
        ["i", "neg", "big", "s", "f", "d", "n", "b", "dt", "label"]
    );
    assert_eq!(
        out.rows,
        vec![vec![
            json!(1),
            json!(-5),
            json!(18446744073709551615u64),
            json!("x"),
            json!(1.5),
            json!("2.50"),
            json!(null),
            json!("0xff00"),
            json!("2024-01-02"),
            // A utf8mb4_bin column is text, not bytes.
            json!("Alpha"),
        ]]
    );
    assert_eq!((out.row_count, out.truncated), (1, false));

    // DML answers the rows it affected.
    let out = session
        .run("INSERT INTO items VALUES (10, 'a'), (11, 'b'), (12, 'c'), (13, 'd')")
        .await
        .expect("insert");
    assert_eq!((out.row_count, out.columns.len()), (4, 0));
    let out = session
        .run("UPDATE items SET name = 'z' WHERE id >= 12")
        .await
        .expect("update");
    assert_eq!(out.row_count, 2);
    // Rows past max_rows are counted, not kept.
    let out = session
        .run("SELECT id FROM items ORDER BY id")
        .await
        .expect("many");
    assert_eq!((out.rows.len(), out.row_count, out.truncated), (3, 6, true));
    // A query without rows still names its columns.
    let out = session
        .run("SELECT id, name FROM items WHERE id < 0")
        .await
        .expect("empty");
    assert_eq!((out.columns.len(), out.row_count), (2, 0));
}

/// Errors carry the server's message, SQLSTATE and error number.
async fn errors_carry_their_numbers(session: &mut dyn Session) {
    let query_error = |e: EngineError| match e {
        EngineError::Query {
            message,
            sqlstate,
            detail,
            ..
        } => (message, sqlstate, detail),
        other => panic!("{other:?}"),
    };
    let err = session
        .run("INSERT INTO items VALUES (10, 'again')")
        .await
        .expect_err("duplicate");
    let (message, sqlstate, detail) = query_error(err);
    assert!(message.contains("Duplicate entry"), "{message}");
    assert_eq!(
        (sqlstate.as_str(), detail.as_deref()),
        ("23000", Some("1062"))
    );
    let err = session.run("SELEC 1").await.expect_err("syntax");
    let (_, sqlstate, detail) = query_error(err);
    assert_eq!(
        (sqlstate.as_str(), detail.as_deref()),
        ("42000", Some("1064"))
    );
    // The session goes on after refused statements.
    session.run("SELECT 1").await.expect("still usable");
}

async fn kills(admin: &mut sqlx::mysql::MySqlConnection) -> i64 {
    scalar_i64(
        admin,
        "SELECT CAST(VARIABLE_VALUE AS SIGNED) FROM information_schema.GLOBAL_STATUS
          WHERE VARIABLE_NAME = 'COM_KILL'",
    )
    .await
}

/// The server's timeout ends a long statement and the session stays usable; a statement that
/// lifts it is stopped by tdb, which ends the connection.
async fn timeouts_end_statements(ctx: &Ctx, session: &mut dyn Session) {
    let started = std::time::Instant::now();
    let err = session.run("SELECT SLEEP(5)").await.expect_err("timeout");
    assert!(matches!(err, EngineError::Timeout(_)), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
    session
        .run("SELECT 1")
        .await
        .expect("usable after a server timeout");

    // A statement that lifts the server's timeout is stopped by tdb: the connection is ended.
    let mut admin = admin(&ctx.e).await;
    let kills_before = kills(&mut admin).await;
    let before = scalar_i64(
        &mut admin,
        "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = 'acme_app'",
    )
    .await;
    assert!(before >= 1);
    let started = std::time::Instant::now();
    let err = session
        .run("SET STATEMENT max_statement_time = 0 FOR SELECT SLEEP(30)")
        .await
        .expect_err("client timeout");
    assert!(matches!(err, EngineError::Timeout(_)), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(4));
    let mut gone = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let left = scalar_i64(
            &mut admin,
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = 'acme_app'",
        )
        .await;
        if left == 0 {
            gone = true;
            break;
        }
    }
    assert!(gone, "the stuck statement's connection was not ended");
    assert_eq!(
        kills(&mut admin).await,
        kills_before + 1,
        "ended by tdb's KILL"
    );
    session
        .run("SELECT 1")
        .await
        .expect_err("the session has ended");
    let _ = admin.close().await;
}

async fn answers_over_their_memory_fail_alone(ctx: &Ctx) {
    let (engine, e, acme) = (&ctx.engine, &ctx.e, &ctx.acme);
    let mut small = limits(Duration::from_secs(5), 1000);
    small.answer = MemoryBudget::new(4096).answer(4096);
    let mut session = engine
        .open(&acme.app(e), small, None)
        .await
        .expect("session");
    let err = session
        .run("SELECT REPEAT('x', 1000) FROM items a, items b")
        .await
        .expect_err("too large");
    assert!(matches!(err, EngineError::TooLarge(_)), "{err:?}");
    session.close().await;
}
