//! Run-time parameters clients ask for when they connect through the proxy, with the real
//! drivers: libpq's `options` (`PGOPTIONS`), asyncpg's `server_settings`, node-postgres'
//! `statement_timeout` and sqlx's `options`. Each is applied on the server, or the login is
//! refused with an error naming it; the statement timeout never past `query_timeout_ms`, and no
//! client chooses its role. Also what else drivers do on connecting and after: LISTEN under
//! transaction pooling, cancel requests over TLS, a pipeline longer than the relay's queue.

mod common;

use std::process::Command;

use common::*;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection};

const ASYNCPG: &str = r#"
import asyncio, sys, asyncpg
async def main():
    conn = await asyncpg.connect(sys.argv[1], server_settings={
        "statement_timeout": "2500", "timezone": "Asia/Tokyo", "application_name": "billing"})
    row = await conn.fetchrow("SELECT current_setting('statement_timeout') AS t, "
                              "current_setting('TimeZone') AS z, "
                              "current_setting('application_name') AS a")
    await conn.close()
    print(row["t"], row["z"], row["a"])
asyncio.run(main())
"#;

const NODE_PG: &str = r#"
const { Client } = require('pg');
(async () => {
  const client = new Client({ connectionString: process.argv[1], statement_timeout: 3500 });
  await client.connect();
  const r = await client.query("SELECT current_setting('statement_timeout') AS t");
  await client.end();
  console.log(r.rows[0].t);
})().catch((e) => { console.error(e.message); process.exit(1); });
"#;

#[tokio::test]
async fn startup_parameters_are_applied_or_refused_by_name() {
    let s = start().await;
    // query_timeout_ms is 30000 (the default).
    let (_, url) = account_with_tenant(&s, "params@example.com").await;

    // libpq's options: applied.
    let shown = psql_with_options(
        &url,
        "-c statement_timeout=1500 --lock-timeout=2s -c DateStyle=German",
        "SELECT current_setting('statement_timeout') || ' ' || current_setting('lock_timeout') \
         || ' ' || current_setting('DateStyle')",
    );
    assert_eq!(shown.as_deref(), Ok("1500ms 2s German, DMY"));

    // Refused, each with its reason: a timeout past the database's limit (or none at all), a
    // role, a parameter the server does not know, one the tenant may not set, a switch that
    // is not a setting.
    for (options, says) in [
        (
            "-c statement_timeout=0",
            "over this database's query_timeout_ms (30000 ms)",
        ),
        (
            "-c statement_timeout=1h",
            "over this database's query_timeout_ms (30000 ms)",
        ),
        (
            "-c role=postgres",
            "parameter \"role\" cannot be set when connecting through tdb",
        ),
        // Settable only as a backend starts: it would keep a server connection asleep after
        // the proxy gave up on it.
        (
            "-c post_auth_delay=1",
            "parameter \"post_auth_delay\" cannot be set when connecting through tdb",
        ),
        (
            "-c no_such_setting=1",
            "unrecognized configuration parameter \"no_such_setting\"",
        ),
        (
            "-c log_statement=all",
            "permission denied to set parameter \"log_statement\"",
        ),
        ("-D /tmp", "the startup option \"-D\" is not supported"),
    ] {
        let refused = psql_with_options(&url, options, "SELECT 1");
        let Err(e) = refused else {
            panic!("{options} was accepted: {refused:?}");
        };
        assert!(e.contains(says), "{options}: {e}");
    }

    // asyncpg's server_settings.
    let said = run_client(python(ASYNCPG, &url), "asyncpg");
    assert_eq!(said, "2500ms Asia/Tokyo billing");

    // node-postgres' statement_timeout.
    let node_modules = clients_dir().join("node/node_modules");
    let mut node = Command::new("node");
    node.env("NODE_PATH", &node_modules)
        .args(["-e", NODE_PG, &url]);
    assert_eq!(run_client(node, "node-postgres"), "3500ms");

    // sqlx's options (sent as `options=-c …`).
    let options: PgConnectOptions = url.parse().expect("url");
    let mut conn = options
        .options([("statement_timeout", "4500")])
        .connect()
        .await
        .expect("connect with options");
    let t: String = sqlx::query_scalar("SELECT current_setting('statement_timeout')")
        .fetch_one(&mut conn)
        .await
        .expect("show");
    assert_eq!(t, "4500ms");
    conn.close().await.expect("close");

    // Without any, the session runs under the database's limit.
    let mut plain = PgConnection::connect(&url).await.expect("connect");
    let t: String = sqlx::query_scalar("SELECT current_setting('statement_timeout')")
        .fetch_one(&mut plain)
        .await
        .expect("show");
    assert_eq!(t, "30s");
}

const ASYNCPG_LISTENER: &str = r#"
import asyncio, sys, asyncpg
async def main():
    conn = await asyncpg.connect(sys.argv[1])
    try:
        await conn.add_listener("jobs", lambda *args: None)
        print("listening")
    except asyncpg.PostgresError as e:
        print(e.sqlstate, e)
    # The session goes on after the refusal.
    print(await conn.fetchval("SELECT 41 + 1"))
    await conn.close()
asyncio.run(main())
"#;

#[tokio::test]
async fn listen_is_refused_under_transaction_pooling() {
    let s = start().await;
    let (key, url) = account_with_tenant(&s, "listen@example.com").await;

    // Session pooling: LISTEN works as on the server.
    assert_eq!(
        psql_with_options(&url, "", "LISTEN jobs").map(|_| ()),
        Ok(())
    );

    let body = serde_json::json!({"pool_mode": "transaction"}).to_string();
    let (st, reply) = call(
        &s,
        reqwest::Method::PATCH,
        "/workspaces/app/settings",
        Some(&key),
        Some(&body),
    )
    .await;
    assert_eq!(st, 200, "{reply}");
    // New sessions follow the setting; wait until one does.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let refused = loop {
        match psql_with_options(&url, "", "LISTEN jobs") {
            Err(e) => break e,
            Ok(_) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            Ok(_) => panic!("LISTEN still accepted in transaction mode"),
        }
    };
    assert!(
        refused.contains("LISTEN is not available under transaction pooling"),
        "{refused}"
    );
    // Other statements that merely say the word still run.
    assert_eq!(
        psql_with_options(&url, "", "SELECT 'listen'").as_deref(),
        Ok("listen")
    );
    let said = run_client(python(ASYNCPG_LISTENER, &url), "asyncpg");
    let lines: Vec<&str> = said.lines().collect();
    assert!(
        lines
            .first()
            .is_some_and(|l| l.starts_with("0A000 LISTEN is not available")),
        "{said}"
    );
    assert_eq!(lines.last(), Some(&"42"), "{said}");
}

/// Cancels the statement of a session over TLS with libpq's encrypted cancel (psycopg's
/// `cancel_safe`), until the statement ends; prints how the statement ended, then each cancel
/// that failed.
const PSYCOPG_CANCEL: &str = r#"
import sys, threading, time, psycopg
conn = psycopg.connect(sys.argv[1])
done = threading.Event()
failures = []
def cancel():
    while not done.is_set():
        try:
            conn.cancel_safe(timeout=10)
        except Exception as e:
            failures.append(f"{type(e).__name__}: {e}")
        time.sleep(0.2)
t = threading.Thread(target=cancel)
t.start()
try:
    conn.execute("SELECT pg_sleep(60)")
    print("not cancelled")
except psycopg.errors.QueryCanceled:
    print("cancelled")
done.set()
t.join()
for f in failures:
    print(f)
"#;

#[tokio::test]
async fn a_cancel_over_tls_ends_cleanly() {
    let s = start().await;
    let (_, url) = account_with_tenant(&s, "cancel@example.com").await;
    let url = url.replace("sslmode=disable", "sslmode=require");
    let said = run_client(python(PSYCOPG_CANCEL, &url), "psycopg cancel_safe");
    assert_eq!(
        said, "cancelled",
        "the statement ended, and no cancel failed"
    );
}

/// psycopg's pipeline mode: 25,000 statements in one pipeline, more than the relay queues
/// (10,000); the relay holds the client back whenever it gets that far ahead of the server.
const PSYCOPG_PIPELINE: &str = r#"
import sys, psycopg
with psycopg.connect(sys.argv[1]) as conn:
    with conn.pipeline():
        cursors = [conn.execute("SELECT %s::int", (i,)) for i in range(25000)]
    total = sum(c.fetchone()[0] for c in cursors)
    print(total)
"#;

#[tokio::test]
async fn a_pipeline_longer_than_the_relay_queue_is_answered_in_full() {
    let s = start().await;
    let (_, url) = account_with_tenant(&s, "pipeline@example.com").await;
    let said = run_client(python(PSYCOPG_PIPELINE, &url), "psycopg pipeline");
    assert_eq!(said, (0..25_000u64).sum::<u64>().to_string());
}

/// psycopg (libpq) requiring channel binding: the login succeeds and says it used it.
const PSYCOPG_CHANNEL_BINDING: &str = r#"
import sys, psycopg
with psycopg.connect(sys.argv[1] + "&channel_binding=require") as c:
    print(c.execute("SELECT 42").fetchone()[0])
"#;

#[tokio::test]
async fn channel_binding_is_offered_over_tls() {
    let s = start().await;
    let (_, url) = account_with_tenant(&s, "binding@example.com").await;
    let tls = url.replace("sslmode=disable", "sslmode=require");
    assert!(tls.contains("sslmode=require"), "{tls}");
    // libpq with channel_binding=require: SCRAM-SHA-256-PLUS over TLS.
    assert_eq!(
        psql_with_options(&format!("{tls}&channel_binding=require"), "", "SELECT 1").as_deref(),
        Ok("1")
    );
    assert_eq!(
        run_client(python(PSYCOPG_CHANNEL_BINDING, &tls), "psycopg"),
        "42"
    );
    // Without TLS there is nothing to bind to, and libpq refuses to go on.
    let plain = tls.replace("sslmode=require", "sslmode=disable");
    let refused = psql_with_options(&format!("{plain}&channel_binding=require"), "", "SELECT 1");
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.contains("channel binding")),
        "{refused:?}"
    );
}
