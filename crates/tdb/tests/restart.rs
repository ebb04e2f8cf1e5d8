//! Durability of `tdb serve`: accounts, projects and keys survive a clean restart and a
//! `kill -9`; a clean stop stops the managed server with it, and a start after `kill -9` finds
//! no stray server in its way.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;
use tdb_engines::managed::process::alive;

async fn wait_gone(pid: i32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        // A process we did not spawn may linger as a zombie where nothing reaps orphans; a
        // zombie holds no port, files or memory, so count it as gone.
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let zombie = state
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z'));
        if !alive(pid) || zombie {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test]
async fn everything_survives_restart_and_kill_9() {
    let mut s = start().await;
    let alice = signup(&s, "alice@example.com", "Alpha").await;
    let key = str_of(&alice, "api_key").to_string();
    let (_, second) = post(&s, "/projects", Some(&key), json!({"name": "Beta"})).await;
    let (_, extra) = post(
        &s,
        "/apikeys",
        Some(&key),
        json!({"name": "ci", "role": "write"}),
    )
    .await;
    let extra_key = str_of(&extra, "api_key").to_string();
    let snapshot = |projects: &serde_json::Value| {
        projects["projects"]
            .as_array()
            .expect("projects")
            .iter()
            .map(|p| {
                (
                    p["project_id"].clone(),
                    p["name"].clone(),
                    p["api_key_count"].clone(),
                )
            })
            .collect::<Vec<_>>()
    };
    let (_, mut before) = get(&s, "/projects", &key).await;

    // Clean stop: tdb exits 0 and its PostgreSQL stops with it.
    let pg = s.managed_postgres_pid().expect("managed postgres pid");
    let status = s.stop().expect("stop");
    assert!(status.success(), "exit status {status}");
    assert!(wait_gone(pg).await, "managed PostgreSQL {pg} outlived tdb");
    s.restart().await.expect("restart");
    let (st, after) = get(&s, "/projects", &key).await;
    assert_eq!(st, 200, "key works after restart: {after}");
    assert_eq!(snapshot(&after), snapshot(&before));

    // kill -9 (twice): nothing lost, and the next start is not blocked by the old server.
    for round in 0..2 {
        let pg = s.managed_postgres_pid().expect("managed postgres pid");
        s.kill9().expect("kill -9");
        assert!(
            wait_gone(pg).await,
            "round {round}: managed PostgreSQL outlived a killed tdb"
        );
        s.restart().await.expect("restart after kill -9");
        let (st, after) = get(&s, "/projects", &key).await;
        assert_eq!(st, 200, "round {round}: {after}");
        assert_eq!(snapshot(&after), snapshot(&before), "round {round}");
        let (st, _) = get(&s, "/apikeys", &extra_key).await;
        assert_eq!(st, 200, "round {round}: created key still valid");
        let (st, _) = get(&s, "/apikeys", str_of(&second, "api_key")).await;
        assert_eq!(st, 200, "round {round}: second project's key still valid");
        let (st, login) = post(
            &s,
            "/login",
            None,
            json!({"email": "alice@example.com", "password": "correct-horse"}),
        )
        .await;
        assert_eq!(st, 200, "round {round}: {login}");
        // Login minted a key per project: the counts move, so take the snapshot again.
        before = get(&s, "/projects", &key).await.1;
    }
}
