//! Job failures through the real API and job runner: a statement a tenant database refuses is
//! recorded as failed once and never run again, while a server that cannot be reached for a
//! while is tried again, with a back-off, until the deployment succeeds.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use sqlx::Connection;
use tdb_testkit::TdbServer;

async fn setup(s: &TdbServer) -> String {
    let key = account_with_blueprint(s, "alice@example.com", "Alpha", "fintech").await;
    ws_query(
        s,
        &key,
        "fintech",
        "CREATE TABLE accounts (id serial PRIMARY KEY)",
    )
    .await;
    let d = deploy(s, &key).await;
    assert_eq!(d["status"], "completed", "{d}");
    let (st, body) = post(
        s,
        "/tenants",
        Some(&key),
        json!({"tenant_id": "acme", "databases": [{"blueprint": "fintech"}]}),
    )
    .await;
    assert_eq!(st, 201, "{body}");
    key
}

/// Queues a deployment of the workspace's changes; returns its id.
async fn start_deploy(s: &TdbServer, key: &str) -> String {
    let (st, created) = post(
        s,
        "/deployments",
        Some(key),
        json!({"blueprint_name": "fintech"}),
    )
    .await;
    assert_eq!(st, 201, "{created}");
    str_of(&created, "id").to_string()
}

fn finished(d: &Value) -> bool {
    ["completed", "completed_with_errors", "failed"].contains(&d["status"].as_str().unwrap_or(""))
}

async fn deployment(s: &TdbServer, key: &str, id: &str) -> Value {
    let (st, d) = get(s, &format!("/deployments/{id}"), key).await;
    assert_eq!(st, 200, "{d}");
    d
}

async fn deploy(s: &TdbServer, key: &str) -> Value {
    let id = start_deploy(s, key).await;
    wait_deployment(s, key, &id).await
}

async fn wait_deployment(s: &TdbServer, key: &str, id: &str) -> Value {
    for _ in 0..1200 {
        let d = deployment(s, key, id).await;
        if finished(&d) {
            return d;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("deployment {id} did not finish\n{}", s.log_tail());
}

async fn catalog(s: &TdbServer) -> sqlx::PgConnection {
    let url = s.managed_admin_url("tdb_catalog").expect("catalog url");
    sqlx::PgConnection::connect(&url).await.expect("catalog")
}

/// `(attempts, status)` of the deployment's job.
async fn job_of(s: &TdbServer, deployment_id: &str) -> (i32, String) {
    sqlx::query_as("SELECT attempts, status FROM jobs WHERE kind = 'deployment' AND ref_id = $1")
        .bind(deployment_id)
        .fetch_one(&mut catalog(s).await)
        .await
        .expect("the deployment's job")
}

#[tokio::test]
async fn a_statement_that_fails_on_a_tenant_is_recorded_once_and_not_run_again() {
    let s = start().await;
    let key = setup(&s).await;
    // The tenant already has the column the next version adds, so its DDL fails there.
    let physical: String = sqlx::query_scalar(
        "SELECT d.physical_db FROM tenant_databases d JOIN tenants t ON t.id = d.tenant_id
          WHERE t.name = 'acme'",
    )
    .fetch_one(&mut catalog(&s).await)
    .await
    .expect("physical name");
    let url = s.managed_admin_url(&physical).expect("tenant url");
    let mut tenant = sqlx::PgConnection::connect(&url).await.expect("tenant db");
    sqlx::raw_sql("ALTER TABLE accounts ADD COLUMN note int")
        .execute(&mut tenant)
        .await
        .expect("sabotage");
    ws_query(
        &s,
        &key,
        "fintech",
        "ALTER TABLE accounts ADD COLUMN note text",
    )
    .await;

    let d = deploy(&s, &key).await;
    assert_eq!(
        (d["status"].as_str(), d["tenants_failed"].as_i64()),
        (Some("completed_with_errors"), Some(1)),
        "{d}"
    );
    let result = &d["results"][0];
    assert_eq!(result["status"], "failed", "{d}");
    assert!(
        result["error"]
            .as_str()
            .is_some_and(|e| e.contains("already exists")),
        "the tenant's own error is recorded: {d}"
    );
    // One run, ended: a claim takes only queued jobs and lapsed leases, so it never runs again.
    assert_eq!(job_of(&s, str_of(&d, "id")).await, (1, "done".into()));
    let (st, t) = get(&s, "/tenants/acme", &key).await;
    assert_eq!(st, 200, "{t}");
    assert_eq!(
        (t["status"].as_str(), t["databases"][0]["version"].as_i64()),
        (Some("ready"), Some(1)),
        "{t}"
    );
}

#[tokio::test]
async fn a_server_briefly_unreachable_is_retried_until_the_deployment_succeeds() {
    let s = start().await;
    let key = setup(&s).await;
    ws_query(
        &s,
        &key,
        "fintech",
        "ALTER TABLE accounts ADD COLUMN note text",
    )
    .await;
    // The tenant's server moves, as far as tdb knows, to a port where nothing listens.
    let (server_id, port): (String, i32) = sqlx::query_as(
        "SELECT s.id, s.port FROM servers s
           JOIN tenant_databases d ON d.server_id = s.id
           JOIN tenants t ON t.id = d.tenant_id WHERE t.name = 'acme'",
    )
    .fetch_one(&mut catalog(&s).await)
    .await
    .expect("the tenant's server");
    let closed = i32::from(tdb_testkit::free_port().expect("a free port"));
    let moved = |port: i32| {
        let (s, server_id) = (&s, server_id.clone());
        async move {
            sqlx::query("UPDATE servers SET port = $2 WHERE id = $1")
                .bind(server_id)
                .bind(port)
                .execute(&mut catalog(s).await)
                .await
                .expect("move the server");
        }
    };
    moved(closed).await;
    let id = start_deploy(&s, &key).await;
    // The connection is refused: the job runs again instead of recording the tenant failed.
    let mut retried = false;
    for _ in 0..600 {
        let d = deployment(&s, &key, &id).await;
        assert!(
            !finished(&d),
            "the deployment ended while its server was unreachable: {d}"
        );
        if job_of(&s, &id).await.0 >= 2 {
            assert_eq!(d["status"], "in_progress", "{d}");
            assert_eq!(d["results"][0]["status"], "pending", "{d}");
            retried = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(retried, "the job did not run again\n{}", s.log_tail());

    moved(port).await;
    let d = wait_deployment(&s, &key, &id).await;
    assert_eq!(
        (d["status"].as_str(), d["tenants_completed"].as_i64()),
        (Some("completed"), Some(1)),
        "{d}"
    );
    let (attempts, status) = job_of(&s, &id).await;
    assert!(attempts >= 2, "{attempts}");
    assert_eq!(status, "done");
    let (_, t) = get(&s, "/tenants/acme", &key).await;
    assert_eq!(
        (t["status"].as_str(), t["databases"][0]["version"].as_i64()),
        (Some("ready"), Some(2)),
        "{t}"
    );
}
