//! A deployment survives `kill -9` of `tdb serve`: killed several times while migrating 200
//! tenants, it resumes after each restart and finishes with every tenant at the target version
//! exactly once (a second application would fail on the existing column) and none half-applied
//! (the column and the index arrive together or not at all).

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

const TENANTS: usize = 200;

#[tokio::test]
async fn deployment_resumes_after_kill_9() {
    let mut s = start_with_env(&[("TDB_DEPLOY_PARALLELISM", "2")]).await;
    let key = str_of(&signup(&s, "alice@example.com", "Alpha").await, "api_key").to_string();
    post(
        &s,
        "/workspaces",
        Some(&key),
        json!({"name": "app", "database": "postgresql", "mode": "tenant"}),
    )
    .await;
    post(
        &s,
        "/workspaces/app/queries",
        Some(&key),
        json!({"query": "CREATE TABLE events (id serial PRIMARY KEY, body text)"}),
    )
    .await;
    let (_, first) = post(
        &s,
        "/deployments",
        Some(&key),
        json!({"blueprint_name": "app"}),
    )
    .await;
    let first_id = str_of(&first, "id").to_string();
    for _ in 0..100 {
        let (_, d) = get(&s, &format!("/deployments/{first_id}"), &key).await;
        if d["status"] == "completed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let started = Instant::now();
    for i in 0..TENANTS {
        let (st, body) = post(
            &s,
            "/tenants",
            Some(&key),
            json!({"tenant_id": format!("t{i:03}"), "databases": [{"blueprint": "app"}]}),
        )
        .await;
        assert_eq!(st, 201, "{body}");
    }
    eprintln!("created {TENANTS} tenants in {:?}", started.elapsed());

    post(
        &s,
        "/workspaces/app/queries",
        Some(&key),
        json!({"query":
        "ALTER TABLE events ADD COLUMN kind text; CREATE INDEX events_kind_idx ON events (kind)"}),
    )
    .await;
    let (st, dep) = post(
        &s,
        "/deployments",
        Some(&key),
        json!({"blueprint_name": "app"}),
    )
    .await;
    assert_eq!(st, 201, "{dep}");
    let id = str_of(&dep, "id").to_string();

    let mut kills = 0;
    let mut last_done = -1;
    while kills < 3 {
        let (_, d) = get(&s, &format!("/deployments/{id}"), &key).await;
        let done = d["tenants_completed"].as_i64().unwrap_or(0);
        assert!(
            d["status"] != "completed",
            "finished before it could be killed {kills} times; slow it down"
        );
        if done > last_done && done > 0 {
            s.kill9().expect("kill -9");
            kills += 1;
            eprintln!("kill -9 #{kills} at {done}/{TENANTS} completed");
            s.restart().await.expect("restart");
            last_done = done;
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }

    let deadline = Instant::now() + Duration::from_secs(300);
    let finished = loop {
        let (_, d) = get(&s, &format!("/deployments/{id}"), &key).await;
        if d["status"] == "completed" || d["status"] == "completed_with_errors" {
            break d;
        }
        assert!(Instant::now() < deadline, "deployment did not finish: {d}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(finished["status"], "completed", "{finished}");
    assert_eq!(
        (
            finished["tenants_total"].as_i64(),
            finished["tenants_failed"].as_i64()
        ),
        (Some(TENANTS as i64), Some(0))
    );
    let results = finished["results"].as_array().expect("results");
    assert!(
        results
            .iter()
            .all(|r| r["status"] == "completed" || r["status"] == "skipped"),
        "{finished}"
    );

    // Every tenant has the column and the index; the catalog agrees on the version.
    let (st, all) = post(&s, "/admin/query", Some(&key), json!({"blueprint": "app", "all_tenants": true, "query":
        "SELECT (SELECT count(*) FROM information_schema.columns WHERE table_name = 'events' AND column_name = 'kind'), \
                (SELECT count(*) FROM pg_indexes WHERE indexname = 'events_kind_idx')"})).await;
    assert_eq!(st, 200);
    let rows: Vec<&serde_json::Value> =
        all["results"].as_array().expect("results").iter().collect();
    assert_eq!(rows.len(), TENANTS);
    for r in rows {
        assert_eq!(r["rows"], json!([[1, 1]]), "{}", r["tenant_id"]);
    }
    let (_, tenants) = get(&s, "/tenants", &key).await;
    assert!(
        tenants["tenants"]
            .as_array()
            .expect("tenants")
            .iter()
            .all(|t| t["databases"][0]["version"] == 2)
    );
}
