//! Server-wide fairness in transaction pooling: the connections a server keeps for tenants are
//! shared among the tenants that want them, so busy tenants that fill the server cannot starve
//! a quiet one.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use sqlx::{Connection, PgConnection};

use common::*;

/// Tenant backends on the managed server, and the connections it keeps for tenants.
async fn tenant_backends(admin: &str, catalog: &str) -> (i64, i32) {
    let mut a = PgConnection::connect(admin).await.expect("admin");
    let n: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity
          WHERE datname LIKE 'tdb\\_t\\_%' ESCAPE '\\' AND usename <> current_user",
    )
    .fetch_one(&mut a)
    .await
    .expect("count");
    let mut c = PgConnection::connect(catalog).await.expect("catalog");
    let budget: i32 = sqlx::query_scalar(
        "SELECT tenant_connection_budget FROM servers WHERE tenant_connection_budget IS NOT NULL",
    )
    .fetch_one(&mut c)
    .await
    .expect("budget");
    (n, budget)
}

/// A busy client: transactions of about a second back to back until `stop`, reconnecting
/// after an error.
async fn busy(url: String, stop: tokio_util::sync::CancellationToken, errors: Arc<Errors>) {
    while !stop.is_cancelled() {
        let mut c = match PgConnection::connect(&url).await {
            Ok(c) => c,
            Err(e) => {
                errors.add(e);
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        while !stop.is_cancelled() {
            if let Err(e) = sqlx::raw_sql("SELECT pg_sleep(0.5 + random())")
                .execute(&mut c)
                .await
            {
                errors.add(e);
                break;
            }
        }
    }
}

/// Errors the busy clients met: how many, and the first few.
#[derive(Default)]
struct Errors {
    count: AtomicUsize,
    first: std::sync::Mutex<Vec<String>>,
}

impl Errors {
    fn add(&self, e: sqlx::Error) {
        if self.count.fetch_add(1, Ordering::Relaxed) < 5 {
            self.first.lock().expect("lock").push(e.to_string());
        }
    }

    fn report(&self) -> String {
        let first = self.first.lock().expect("lock");
        format!(
            "{} errors, first: {first:#?}",
            self.count.load(Ordering::Relaxed)
        )
    }
}

#[tokio::test]
async fn busy_tenants_filling_the_server_do_not_starve_a_quiet_one() {
    // A small server: 60 connections, 57 for non-superusers, 28 of them kept for tdb: 29 for
    // tenants, at most 7 each (a quarter).
    // Every client here comes from 127.0.0.1: the cap on unauthenticated connections per
    // address (32 by default) would close some of the busy clients' reconnections, and the
    // quiet one's, at once. This test is about the server's budget, so that cap is lifted.
    let s = start_with_env(&[
        ("TDB_MANAGED_MAX_CONNECTIONS", "60"),
        ("TDB_SERVER_RESERVED_CONNECTIONS", "35"),
        ("TDB_PG_MAX_UNAUTHENTICATED_PER_ADDRESS", "256"),
    ])
    .await;
    let (key, quiet) = account_with_tenant(&s, "fair@example.com").await;
    transaction_pooling(&s, &key, &quiet, json!({"max_connections": 7})).await;
    let mut busy_urls = Vec::new();
    for i in 0..16 {
        busy_urls.push(create_tenant_url(&s, &key, "app", &format!("busy{i}")).await);
    }
    let admin = s.managed_admin_url("postgres").expect("admin url");
    let catalog = s.managed_admin_url("tdb_catalog").expect("catalog url");

    // Sixteen busy tenants, eight clients each, in transactions of 0.5 to 1.5 s: they want 112
    // server connections of the 29.
    let stop = tokio_util::sync::CancellationToken::new();
    let busy_errors = Arc::new(Errors::default());
    let mut clients = Vec::new();
    for url in &busy_urls {
        for _ in 0..8 {
            clients.push(tokio::spawn(busy(
                url.clone(),
                stop.clone(),
                busy_errors.clone(),
            )));
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let budget = loop {
        let (n, budget) = tenant_backends(&admin, &catalog).await;
        if n >= i64::from(budget) {
            eprintln!("{n} tenant backends, budget {budget}");
            break budget;
        }
        assert!(
            Instant::now() < deadline,
            "never saturated: {n} of {budget}; busy clients: {}\n{}",
            busy_errors.report(),
            s.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(budget, 29);

    // The quiet tenant: one client, a query now and then. Every one is served, each after a
    // wait far below the 2 s a new server connection may wait for its place.
    let mut quiet_errors = Vec::new();
    let mut slowest = Duration::ZERO;
    let mut conn = None;
    for _ in 0..10 {
        let started = Instant::now();
        let c = match conn.take() {
            Some(c) => Ok(c),
            None => PgConnection::connect(&quiet).await,
        };
        let answer = match c {
            Ok(mut c) => {
                let r = sqlx::raw_sql("SELECT 1").execute(&mut c).await;
                if r.is_ok() {
                    conn = Some(c);
                }
                r.map(|_| ())
            }
            Err(e) => Err(e),
        };
        slowest = slowest.max(started.elapsed());
        if let Err(e) = answer {
            quiet_errors.push(e.to_string());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (still, _) = tenant_backends(&admin, &catalog).await;
    stop.cancel();
    for c in clients {
        c.await.expect("client");
    }
    eprintln!(
        "quiet tenant: slowest query {slowest:?}; busy clients: {}; tenant backends at the end \
         {still}",
        busy_errors.report()
    );
    assert!(quiet_errors.is_empty(), "{quiet_errors:#?}");
    assert!(
        still <= i64::from(budget),
        "{still} tenant backends over the budget"
    );
}
