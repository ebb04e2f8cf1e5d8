//! The proxy on several worker threads: its sessions run on every worker, and the limits that
//! live in the shared state (a tenant's `max_connections`, failed-login throttles) hold across
//! workers exactly as with one.

mod common;

use common::*;
use reqwest::Method;
use serde_json::json;
use sqlx::{Connection, PgConnection};

/// The names of the threads of process `pid`.
fn thread_names(pid: u32) -> Vec<String> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("/proc");
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|n| n.trim().to_string())
        .collect()
}

#[tokio::test]
async fn limits_hold_across_four_workers() {
    let s = start_with_env(&[
        ("TDB_PROXY_WORKERS", "4"),
        ("TDB_PG_MAX_AUTH_FAILURES_PER_USER", "5"),
    ])
    .await;
    let names = thread_names(s.pid().expect("pid"));
    let workers = names.iter().filter(|n| *n == "tdb-proxy").count();
    assert_eq!(workers, 4, "threads: {names:?}");

    let (key, acme) = account_with_tenant(&s, "workers@example.com").await;
    let body = json!({"max_connections": 3}).to_string();
    let (st, reply) = call(
        &s,
        Method::PATCH,
        "/workspaces/app/settings",
        Some(&key),
        Some(&body),
    )
    .await;
    assert_eq!(st, 200, "{reply}");

    // Sixteen clients at once, spread over the workers: three get in, the rest wait their
    // 2 s and are refused, however the sessions fall on the workers.
    let attempts = (0..16).map(|_| {
        let url = acme.clone();
        tokio::spawn(async move { PgConnection::connect(&url).await })
    });
    let results = futures_util::future::join_all(attempts).await;
    let mut held = Vec::new();
    let mut refused = Vec::new();
    for r in results {
        match r.expect("task") {
            Ok(c) => held.push(c),
            Err(e) => refused.push(e.to_string()),
        }
    }
    assert_eq!(held.len(), 3, "refusals: {refused:#?}");
    for e in &refused {
        assert!(
            e.contains("too many connections for tenant \"acme\""),
            "{e}"
        );
    }
    // Each held session really runs, on whichever worker took it.
    for c in &mut held {
        let one: i32 = sqlx::query_scalar("SELECT 1")
            .fetch_one(&mut *c)
            .await
            .expect("query");
        assert_eq!(one, 1);
    }
    // Slots given back on one worker are taken on another.
    for c in held {
        c.close().await.expect("close");
    }
    let mut again = Vec::new();
    for _ in 0..3 {
        again.push(PgConnection::connect(&acme).await.expect("a freed slot"));
    }
    drop(again);

    // Failed logins count across workers: five wrong passwords, on whichever workers, and the
    // sixth attempt is refused even with the right one.
    let user = acme
        .split("//")
        .nth(1)
        .and_then(|r| r.split(':').next())
        .expect("user")
        .to_string();
    let wrong = acme.replacen(&format!("{user}:"), &format!("{user}:wrong-"), 1);
    let tries = (0..5).map(|_| {
        let url = wrong.clone();
        tokio::spawn(async move { PgConnection::connect(&url).await.map(|_| ()) })
    });
    for r in futures_util::future::join_all(tries).await {
        let e = r.expect("task").expect_err("a wrong password").to_string();
        assert!(e.contains("password authentication failed"), "{e}");
    }
    let e = PgConnection::connect(&acme)
        .await
        .expect_err("throttled")
        .to_string();
    assert!(e.contains("too many failed logins"), "{e}");
}
