//! The PostgreSQL proxy under faults, with real clients (sqlx and psql): pooled server
//! connections survive a restart of the server.

mod common;

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use reqwest::Method;
use serde_json::json;
use sqlx::{Connection, PgConnection};
use tdb_testkit::TdbServer;

/// A project with two blueprints, `app` (session pooling) and `pooled` (transaction pooling),
/// each with an `items` table, and tenants `acme` and `globex` holding a database of each.
struct Fixture {
    key: String,
    /// `app__acme`.
    app: String,
    /// `pooled__acme`.
    pooled: String,
    /// `app__globex`.
    app_globex: String,
    /// `pooled__globex`.
    pooled_globex: String,
}

/// `app_settings`, when given, is applied to `app` before the tenants exist (their roles'
/// connection limits are set when they are created).
async fn fixture(s: &TdbServer, app_settings: Option<serde_json::Value>) -> Fixture {
    tdb_testkit::init();
    let account = signup(s, "hardening@example.com", "Hardening").await;
    let key = str_of(&account, "api_key").to_string();
    for name in ["app", "pooled"] {
        let (st, ws) = post(
            s,
            "/workspaces",
            Some(&key),
            json!({"name": name, "database": "PostgreSQL", "mode": "tenant"}),
        )
        .await;
        assert_eq!(st, 201, "{ws}");
        let out = psql(
            str_of(&ws, "connection_string"),
            &[
                "-c",
                "CREATE TABLE items (id serial PRIMARY KEY, name text NOT NULL)",
            ],
        );
        assert!(out.status.success(), "{}", stderr(&out));
        let (st, dep) = post(
            s,
            "/deployments",
            Some(&key),
            json!({"blueprint_name": name}),
        )
        .await;
        assert_eq!(st, 201, "{dep}");
        wait_deployment(s, &key, str_of(&dep, "id")).await;
    }
    patch_settings(s, &key, "pooled", json!({"pool_mode": "transaction"})).await;
    if let Some(settings) = app_settings {
        patch_settings(s, &key, "app", settings).await;
    }
    let mut urls = std::collections::HashMap::new();
    for tenant in ["acme", "globex"] {
        let (st, t) = post(
            s,
            "/tenants",
            Some(&key),
            json!({"tenant_id": tenant, "databases": [{"blueprint": "app"}, {"blueprint": "pooled"}]}),
        )
        .await;
        assert_eq!(st, 201, "{t}");
        for db in t["databases"].as_array().expect("databases") {
            let url = str_of(&db["connection"], "connection_string").to_string();
            urls.insert(format!("{}__{tenant}", str_of(db, "blueprint")), url);
        }
    }
    let mut url = |name: &str| urls.remove(name).expect(name);
    Fixture {
        key,
        app: url("app__acme"),
        pooled: url("pooled__acme"),
        app_globex: url("app__globex"),
        pooled_globex: url("pooled__globex"),
    }
}

async fn patch_settings(s: &TdbServer, key: &str, workspace: &str, body: serde_json::Value) {
    let (st, reply) = call(
        s,
        Method::PATCH,
        &format!("/workspaces/{workspace}/settings"),
        Some(key),
        Some(&body.to_string()),
    )
    .await;
    assert_eq!(st, 200, "{reply}");
}

async fn wait_deployment(s: &TdbServer, key: &str, id: &str) {
    for _ in 0..600 {
        let (_, d) = get(s, &format!("/deployments/{id}"), key).await;
        if d["status"] == "completed" {
            return;
        }
        assert_ne!(d["status"], "failed", "{d}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("deployment {id} did not finish");
}

fn psql(url: &str, args: &[&str]) -> Output {
    Command::new("psql")
        .args([
            "-X",
            "-v",
            "ON_ERROR_STOP=1",
            "-v",
            "VERBOSITY=verbose",
            "-At",
        ])
        .arg(url)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("psql runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).trim().to_string()
}

async fn connect(url: &str) -> PgConnection {
    PgConnection::connect(url).await.expect("connects")
}

/// Waits (generously) until `check` holds; false if it never did.
async fn eventually(limit: Duration, mut check: impl AsyncFnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Kills the managed server's postmaster (tdb's supervisor starts it again) and waits until it
/// answers its administrator.
async fn restart_managed_postgres(s: &TdbServer) {
    let old = s.managed_postgres_pid().expect("postmaster pid");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(old),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill the postmaster");
    let url = s.managed_admin_url("postgres").expect("admin url");
    let back = eventually(Duration::from_secs(90), async || {
        s.managed_postgres_pid().is_some_and(|pid| pid != old)
            && match PgConnection::connect(&url).await {
                Ok(mut c) => sqlx::query("SELECT 1").execute(&mut c).await.is_ok(),
                Err(_) => false,
            }
    })
    .await;
    assert!(back, "the managed PostgreSQL did not come back");
}

#[tokio::test]
async fn pooled_connections_are_checked_after_a_server_restart() {
    let s = start().await;
    let f = fixture(&s, None).await;
    let databases = [
        ("app__acme, session pooling", &f.app),
        ("app__globex, session pooling", &f.app_globex),
        ("pooled__acme, transaction pooling", &f.pooled),
        ("pooled__globex, transaction pooling", &f.pooled_globex),
    ];
    // Each client leaves its server connection in the pool.
    for (_, url) in databases {
        let mut c = connect(url).await;
        sqlx::query("INSERT INTO items (name) VALUES ('before')")
            .execute(&mut c)
            .await
            .expect("insert");
        c.close().await.expect("close");
    }
    restart_managed_postgres(&s).await;
    for (what, url) in databases {
        let mut c = connect(url).await;
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM items")
            .fetch_one(&mut c)
            .await
            .unwrap_or_else(|e| panic!("{what}: the first query failed: {e}"));
        assert_eq!(n, 1, "{what}");
        sqlx::query("INSERT INTO items (name) VALUES ('after')")
            .execute(&mut c)
            .await
            .expect("insert after the restart");
    }
    // The control plane is back too.
    let (st, t) = get(&s, "/tenants/acme", &f.key).await;
    assert_eq!(st, 200, "{t}");
}
