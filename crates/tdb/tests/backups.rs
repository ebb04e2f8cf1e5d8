//! Backups and rollbacks of L1 tenants against a real `tdb serve`: a tenant full of varied data
//! comes back identical (per-table row counts and order-independent checksums, sequence
//! positions) after being changed and rolled back; the safety backup undoes the rollback;
//! missing, truncated and corrupt backup files are refused or fail cleanly with the tenant on its
//! data; the daily schedule, retention and the hourly quota; `kill -9` during a rollback.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection, Row};
use tdb_testkit::TdbServer;

const SCHEMA: &str = "
CREATE TABLE kinds (
    id bigserial PRIMARY KEY,
    i2 smallint, i4 integer, i8 bigint, n numeric(20,6), r real, d double precision,
    b boolean, t text, vc varchar(50), ch char(5), by bytea,
    ts timestamp, tz timestamptz, dt date, tm time, iv interval,
    u uuid, j json, jb jsonb, ia integer[], ta text[], ip inet
);
CREATE TABLE notes (
    id serial PRIMARY KEY,
    kind_id bigint REFERENCES kinds (id),
    body text NOT NULL
);
CREATE INDEX notes_kind_idx ON notes (kind_id);
CREATE SEQUENCE invoice_seq;
";

/// Rows with every column type, a NULL in each column every seventh row, large text and bytea
/// values, and sequences well past 1,000.
const FILL: &str = "
INSERT INTO kinds (i2, i4, i8, n, r, d, b, t, vc, ch, by, ts, tz, dt, tm, iv, u, j, jb, ia, ta, ip)
SELECT
    CASE WHEN g % 7 = 0 THEN NULL ELSE (g % 30000)::smallint END,
    CASE WHEN g % 7 = 1 THEN NULL ELSE g * 3 END,
    CASE WHEN g % 7 = 2 THEN NULL ELSE g::bigint * 1000000007 END,
    CASE WHEN g % 7 = 3 THEN NULL ELSE g / 7.0 END,
    g / 3.0, g * 1.5e10,
    CASE WHEN g % 7 = 4 THEN NULL ELSE g % 2 = 0 END,
    CASE WHEN g % 7 = 5 THEN NULL WHEN g % 500 = 0 THEN repeat('large text ', 20000)
         ELSE 'row ' || g || E' with \\ and '' and \\t and é' END,
    'vc' || g, 'c' || (g % 100),
    CASE WHEN g % 7 = 6 THEN NULL WHEN g % 500 = 1 THEN decode(repeat(md5(g::text), 40000), 'hex')
         ELSE decode(md5(g::text), 'hex') END,
    timestamp '2020-01-01' + g * interval '1 hour',
    timestamptz '2020-01-01 00:00:00+00' + g * interval '1 minute',
    date '2000-01-01' + g, time '00:00' + g * interval '1 second', g * interval '1 day',
    md5(g::text)::uuid,
    json_build_object('g', g, 'name', 'n' || g),
    jsonb_build_object('g', g, 'tags', jsonb_build_array('a', g)),
    ARRAY[g, g + 1, NULL], ARRAY['x' || g, NULL], ('10.0.' || (g % 250) || '.1')::inet
FROM generate_series(1, 1500) g;
INSERT INTO notes (kind_id, body) SELECT (g % 1500) + 1, 'note ' || g FROM generate_series(1, 1200) g;
SELECT setval('invoice_seq', 4321);
";

/// Per table: row count and an order-independent checksum; per sequence: its position.
async fn snapshot(url: &str) -> Vec<String> {
    let mut conn = PgConnection::connect(url).await.expect("connect to tenant");
    let mut out = Vec::new();
    for table in ["kinds", "notes"] {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT count(*)::text || ' ' || coalesce(md5(string_agg(h, '' ORDER BY h)), '-')
               FROM (SELECT md5(t::text) AS h FROM {table} t) s"
        )))
        .fetch_one(&mut conn)
        .await
        .expect("checksum");
        out.push(format!("{table}: {}", row.get::<String, _>(0)));
    }
    for seq in ["kinds_id_seq", "notes_id_seq", "invoice_seq"] {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT last_value::text || ' ' || is_called::text FROM {seq}"
        )))
        .fetch_one(&mut conn)
        .await
        .expect("sequence");
        out.push(format!("{seq}: {}", row.get::<String, _>(0)));
    }
    let _ = conn.close().await;
    out
}

struct Tenant {
    key: String,
    /// The tenant's application connection through the proxy.
    url: String,
}

/// A workspace with the varied schema, deployed, and a tenant created from it.
async fn tenant_with_schema(s: &TdbServer, email: &str, tenant: &str) -> Tenant {
    tdb_testkit::init();
    let key = str_of(&signup(s, email, "Backups").await, "api_key").to_string();
    let (st, ws) = post(
        s,
        "/workspaces",
        Some(&key),
        json!({"name": "app", "database": "postgresql", "mode": "tenant"}),
    )
    .await;
    assert_eq!(st, 201, "{ws}");
    let (st, q) = post(
        s,
        "/workspaces/app/queries",
        Some(&key),
        json!({ "query": SCHEMA }),
    )
    .await;
    assert_eq!(st, 200, "{q}");
    let (st, dep) = post(
        s,
        "/deployments",
        Some(&key),
        json!({"blueprint_name": "app"}),
    )
    .await;
    assert_eq!(st, 201, "{dep}");
    wait_for(
        s,
        &key,
        &format!("/deployments/{}", str_of(&dep, "id")),
        |d| d["status"] == "completed",
    )
    .await;
    let url = add_tenant(s, &key, tenant).await;
    Tenant { key, url }
}

async fn add_tenant(s: &TdbServer, key: &str, tenant: &str) -> String {
    let (st, t) = post(
        s,
        "/tenants",
        Some(key),
        json!({"tenant_id": tenant, "databases": [{"blueprint": "app"}]}),
    )
    .await;
    assert_eq!(st, 201, "{t}");
    t["databases"][0]["connection"]["connection_string"]
        .as_str()
        .expect("connection string")
        .replace("sslmode=require", "sslmode=disable")
}

async fn run_sql(url: &str, sql: &str) {
    let mut conn = PgConnection::connect(url).await.expect("connect");
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let _ = conn.close().await;
}

/// Takes a manual backup and waits for it; returns its storage path.
async fn backup(s: &TdbServer, key: &str, tenant: &str) -> String {
    let (st, b) = post(
        s,
        &format!("/tenants/{tenant}/backup"),
        Some(key),
        json!({}),
    )
    .await;
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["type"], "manual");
    let path = b["paths"][0].as_str().expect("a path").to_string();
    let list = wait_for(s, key, &format!("/tenants/{tenant}/backups"), |l| {
        l["backups"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|b| b["storage_path"] == path.as_str() && b["status"] != "pending")
    })
    .await;
    let mine = list["backups"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|b| b["storage_path"] == path.as_str())
        .cloned()
        .unwrap_or_default();
    assert_eq!(mine["status"], "completed", "{mine}\n{}", s.log_tail());
    path
}

/// Starts a rollback and waits for it to end; returns `last_rollback`.
async fn rollback(s: &TdbServer, key: &str, tenant: &str, path: &str) -> Value {
    let (st, r) = post(
        s,
        &format!("/tenants/{tenant}/rollback"),
        Some(key),
        json!({ "storage_path": path }),
    )
    .await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["status"], "restoring");
    assert_eq!(r["paths"][0], path);
    let id = r["rollback_id"].as_str().expect("rollback id").to_string();
    wait_for(s, key, &format!("/tenants/{tenant}"), |t| {
        t["last_rollback"]["rollback_id"] == id.as_str()
            && matches!(
                t["last_rollback"]["step"].as_str(),
                Some("completed" | "failed")
            )
    })
    .await;
    // The tenant and its last rollback are read by two queries, so that answer may pair the
    // ended rollback with the status from just before the same commit; a new read cannot.
    let (st, t) = get(s, &format!("/tenants/{tenant}"), key).await;
    assert_eq!(st, 200, "{t}");
    assert_eq!(t["last_rollback"]["rollback_id"], id.as_str(), "{t}");
    assert_eq!(t["status"], "ready", "{t}");
    t["last_rollback"].clone()
}

#[tokio::test]
async fn a_rollback_brings_back_every_row_and_sequence() {
    let s = start().await;
    let t = tenant_with_schema(&s, "backup@example.com", "acme").await;
    run_sql(&t.url, FILL).await;
    run_sql(&t.url, "SELECT nextval('invoice_seq')").await;
    let at_backup = snapshot(&t.url).await;
    assert!(
        at_backup[2].starts_with("kinds_id_seq: 1500 "),
        "{at_backup:?}"
    );

    let path = backup(&s, &t.key, "acme").await;
    let project = {
        let (_, me) = get(&s, "/projects", &t.key).await;
        me["projects"][0]["project_id"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    assert!(
        path.starts_with("postgresql/manual/")
            && path.ends_with(&format!("/{project}_tenant_acme.sql.gz")),
        "{path}"
    );
    // The object is where the default store keeps it, gzip, and not plain SQL.
    let bytes = std::fs::read(s.data_dir().join("backups").join(&path)).expect("backup file");
    assert_eq!(&bytes[..2], &[0x1f, 0x8b], "gzip magic");
    assert!(!String::from_utf8_lossy(&bytes).contains("CREATE TABLE"));

    // Change everything, including the sequences.
    run_sql(
        &t.url,
        "DELETE FROM notes WHERE id % 2 = 0; DELETE FROM kinds WHERE id > 1000 AND id NOT IN
         (SELECT kind_id FROM notes); UPDATE kinds SET t = 'changed', jb = NULL WHERE id < 300;
         INSERT INTO kinds (t) SELECT 'new' FROM generate_series(1, 50);
         SELECT setval('invoice_seq', 99999); DELETE FROM notes WHERE id > 100",
    )
    .await;
    let changed = snapshot(&t.url).await;
    assert_ne!(changed, at_backup);

    let done = rollback(&s, &t.key, "acme", &path).await;
    assert_eq!(done["step"], "completed", "{done}\n{}", s.log_tail());
    assert!(done["bytes_done"].as_u64().unwrap_or(0) > 0, "{done}");
    assert_eq!(snapshot(&t.url).await, at_backup, "the data of the backup");

    // The restored database keeps the privilege model and the blueprint version.
    let (_, tenant) = get(&s, "/tenants/acme", &t.key).await;
    assert_eq!(tenant["databases"][0]["version"], 1, "{tenant}");
    run_sql(
        &t.url,
        "INSERT INTO notes (kind_id, body) VALUES (1, 'after')",
    )
    .await;
    let mut conn = PgConnection::connect(&t.url).await.expect("connect");
    let ddl = sqlx::raw_sql("CREATE TABLE sneaky (id int)")
        .execute(&mut conn)
        .await
        .expect_err("no DDL on tenants");
    assert!(
        ddl.to_string().contains("DDL") || ddl.to_string().contains("permission"),
        "{ddl}"
    );
    let version: i32 = sqlx::query_scalar("SELECT version FROM tdb_meta.schema_version")
        .fetch_one(&mut conn)
        .await
        .map_err(|e| e.to_string())
        .map_or(-1, |v| v);
    // The application role cannot read tdb_meta, as before the rollback.
    assert_eq!(version, -1);
    let _ = conn.close().await;
    let (st, cred) = post(
        &s,
        "/tenants/acme/credentials",
        Some(&t.key),
        json!({"role": "read"}),
    )
    .await;
    assert_eq!(st, 201, "{cred}");
    let read_url = cred["connection"]["connection_string"]
        .as_str()
        .unwrap_or_default()
        .replace("sslmode=require", "sslmode=disable");
    let mut reader = PgConnection::connect(&read_url).await.expect("read login");
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM kinds")
        .fetch_one(&mut reader)
        .await
        .expect("read role reads");
    assert_eq!(n, 1500);
    assert!(
        sqlx::query("DELETE FROM kinds")
            .execute(&mut reader)
            .await
            .is_err(),
        "the read role cannot write after a restore"
    );
    let _ = reader.close().await;

    // The rollback took a safety backup of the changed data; rolling back to it undoes it.
    let (_, list) = get(&s, "/tenants/acme/backups", &t.key).await;
    let safety = list["backups"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|b| b["type"] == "safety")
        .cloned()
        .unwrap_or_default();
    assert_eq!(safety["status"], "completed", "{list}");
    assert_eq!(list["backups"][0]["type"], "safety", "newest first: {list}");
    let undo = rollback(
        &s,
        &t.key,
        "acme",
        safety["storage_path"].as_str().unwrap_or_default(),
    )
    .await;
    assert_eq!(undo["step"], "completed", "{undo}");
    assert_eq!(
        snapshot(&t.url).await,
        changed,
        "the data before the rollback"
    );

    // No database is left behind: the replaced ones were dropped.
    let admin = s.managed_admin_url("postgres").expect("admin url");
    let mut admin = PgConnection::connect(&admin).await.expect("admin");
    let tenant_dbs: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_database WHERE datname LIKE 'tdb_t_%'")
            .fetch_one(&mut admin)
            .await
            .expect("count");
    assert_eq!(tenant_dbs, 1, "one database for the one tenant");

    // Deleting the tenant for good deletes its backups from the store too.
    let store = s.data_dir().join("backups");
    let files = |dir: &std::path::Path| -> usize {
        fn walk(dir: &std::path::Path, n: &mut usize) {
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    walk(&path, n);
                } else if path.to_string_lossy().contains("_tenant_acme") {
                    *n += 1;
                }
            }
        }
        let mut n = 0;
        walk(dir, &mut n);
        n
    };
    assert!(files(&store) >= 3, "the manual and two safety backups");
    let (st, gone) = delete(&s, "/tenants/acme?hard=true", &t.key).await;
    assert_eq!(st, 200, "{gone}");
    assert_eq!(files(&store), 0, "backup files left behind");
}

#[tokio::test]
async fn bad_backup_files_leave_the_tenant_on_its_data() {
    let s = start().await;
    let t = tenant_with_schema(&s, "badfiles@example.com", "acme").await;
    run_sql(&t.url, FILL).await;
    let path = backup(&s, &t.key, "acme").await;
    run_sql(&t.url, "DELETE FROM notes; UPDATE kinds SET t = 'now'").await;
    let current = snapshot(&t.url).await;
    let file = s.data_dir().join("backups").join(&path);
    let original = std::fs::read(&file).expect("backup file");
    let admin = s.managed_admin_url("postgres").expect("admin url");
    let databases = || async {
        let mut admin = PgConnection::connect(&admin).await.expect("admin");
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_database")
            .fetch_one(&mut admin)
            .await
            .expect("count");
        n
    };
    let before = databases().await;

    // A path that is not one of the tenant's backups.
    let (st, body) = post(
        &s,
        "/tenants/acme/rollback",
        Some(&t.key),
        json!({"storage_path": "postgresql/manual/2020-01-01T00-00-00/nope.sql.gz"}),
    )
    .await;
    assert_eq!(st, 404, "{body}");
    assert!(str_of(&body, "error").contains("no backup"), "{body}");

    // A missing file: refused before anything changes.
    std::fs::remove_file(&file).expect("remove");
    let (st, body) = post(
        &s,
        "/tenants/acme/rollback",
        Some(&t.key),
        json!({ "storage_path": path }),
    )
    .await;
    assert_eq!(st, 404, "{body}");
    assert!(str_of(&body, "error").contains("missing"), "{body}");

    // A truncated file: its size gives it away.
    std::fs::write(&file, &original[..original.len() / 2]).expect("truncate");
    let (st, body) = post(
        &s,
        "/tenants/acme/rollback",
        Some(&t.key),
        json!({ "storage_path": path }),
    )
    .await;
    assert_eq!(st, 409, "{body}");
    assert!(str_of(&body, "error").contains("corrupt"), "{body}");

    // Same size, bytes flipped in the middle: the restore fails, the tenant keeps its data.
    let mut flipped = original.clone();
    let middle = flipped.len() / 2;
    for b in &mut flipped[middle..middle + 16] {
        *b ^= 0x5a;
    }
    std::fs::write(&file, &flipped).expect("corrupt");
    let failed = rollback(&s, &t.key, "acme", &path).await;
    assert_eq!(failed["step"], "failed", "{failed}");
    let why = failed["error"].as_str().unwrap_or_default();
    assert!(
        why.contains("corrupt") || why.contains("cannot be read") || why.contains("psql"),
        "{why}"
    );
    assert_eq!(snapshot(&t.url).await, current, "the tenant's own data");
    assert_eq!(
        databases().await,
        before,
        "the half-restored database is gone"
    );

    // Put the right bytes back: the same backup restores.
    std::fs::write(&file, &original).expect("restore file");
    let done = rollback(&s, &t.key, "acme", &path).await;
    assert_eq!(done["step"], "completed", "{done}");
    assert_ne!(snapshot(&t.url).await, current);
}

#[tokio::test]
async fn the_schedule_retention_and_quota_hold() {
    let s = start_with_env(&[
        ("TDB_BACKUP_SCHEDULE_TICK_SECS", "1"),
        ("TDB_BACKUP_HOURLY_LIMIT", "3"),
    ])
    .await;
    let t = tenant_with_schema(&s, "schedule@example.com", "acme").await;
    run_sql(&t.url, "INSERT INTO notes (body) VALUES ('hello')").await;
    let project = {
        let (_, me) = get(&s, "/projects", &t.key).await;
        me["projects"][0]["project_id"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let policy_path = format!("/projects/{project}/backup-policy");
    let (st, p) = get(&s, &policy_path, &t.key).await;
    assert_eq!(st, 200, "{p}");
    assert_eq!(p["hourly_limit"], 3, "the configured default: {p}");
    let (st, bad) = call(
        &s,
        reqwest::Method::PATCH,
        &policy_path,
        Some(&t.key),
        Some(r#"{"daily_at": "25:61"}"#),
    )
    .await;
    assert_eq!(st, 400, "{bad}");

    // Three daily slots, each a few seconds ahead; keep two.
    let scheduled = |list: &Value| -> Vec<Value> {
        list["backups"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|b| b["type"] == "scheduled")
            .cloned()
            .collect()
    };
    let mut seen = Vec::new();
    for _ in 0..3 {
        let at = (chrono::Utc::now() + chrono::Duration::seconds(2)).format("%H:%M:%S");
        let (st, p) = call(
            &s,
            reqwest::Method::PATCH,
            &policy_path,
            Some(&t.key),
            Some(&json!({"daily_at": at.to_string(), "keep_count": 2}).to_string()),
        )
        .await;
        assert_eq!(st, 200, "{p}");
        assert_eq!(p["keep_count"], 2);
        let list = wait_for(&s, &t.key, "/tenants/acme/backups", |l| {
            let mine = scheduled(l);
            mine.iter().all(|b| b["status"] == "completed")
                && mine.iter().any(|b| !seen.contains(&b["storage_path"]))
        })
        .await;
        let newest = scheduled(&list)
            .into_iter()
            .find(|b| !seen.contains(&b["storage_path"]))
            .expect("a new scheduled backup");
        assert!(
            str_of(&newest, "storage_path").starts_with("postgresql/scheduled/"),
            "{newest}"
        );
        seen.push(newest["storage_path"].clone());
        // Slots have one-second paths: the next round must not share this one's second.
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    // Retention: the oldest is gone from the catalog and the store; the two newest stay.
    let list = wait_for(&s, &t.key, "/tenants/acme/backups", |l| {
        scheduled(l).len() == 2
    })
    .await;
    let kept: Vec<Value> = scheduled(&list)
        .iter()
        .map(|b| b["storage_path"].clone())
        .collect();
    assert_eq!(kept, vec![seen[2].clone(), seen[1].clone()], "{list}");
    let gone = s
        .data_dir()
        .join("backups")
        .join(seen[0].as_str().unwrap_or_default());
    assert!(!gone.exists(), "{} still in the store", gone.display());
    for path in &kept {
        assert!(
            s.data_dir()
                .join("backups")
                .join(path.as_str().unwrap_or_default())
                .exists()
        );
    }

    // The hourly quota of manual backups: three pass, the fourth is 429 with Retry-After.
    let (st, p) = call(
        &s,
        reqwest::Method::PATCH,
        &policy_path,
        Some(&t.key),
        Some(r#"{"keep_count": 50, "schedule_enabled": false}"#),
    )
    .await;
    assert_eq!(st, 200, "{p}");
    for _ in 0..3 {
        let (st, b) = post(&s, "/tenants/acme/backup", Some(&t.key), json!({})).await;
        assert_eq!(st, 200, "{b}");
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    let resp = reqwest::Client::new()
        .post(format!("{}/tenants/acme/backup", s.api_url))
        .bearer_auth(&t.key)
        .json(&json!({}))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status().as_u16(), 429);
    let retry: u64 = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After");
    assert!((1..=3600).contains(&retry), "{retry}");
    let body: Value = resp.json().await.expect("json");
    assert_envelope(429, &body);
    assert_eq!(body["code"], "rate_limited");
    assert!(
        str_of(&body, "error").contains("max 3 backup requests per hour"),
        "{body}"
    );
}

#[tokio::test]
async fn kill_9_during_a_rollback_leaves_the_tenant_readable() {
    let mut s = start().await;
    let t = tenant_with_schema(&s, "crash@example.com", "acme").await;
    // Enough data that the restore takes a while: with 900,000 rows a CI machine once finished
    // the resumed restore (about 10 s) before the test saw it move.
    run_sql(
        &t.url,
        "INSERT INTO notes (body) SELECT md5(g::text) || md5((g * 7)::text) || md5((g * 13)::text)
           FROM generate_series(1, 1800000) g",
    )
    .await;
    let at_backup = snapshot(&t.url).await;
    let path = backup(&s, &t.key, "acme").await;
    run_sql(&t.url, "DELETE FROM notes WHERE id % 3 = 0").await;
    let changed = snapshot(&t.url).await;

    let (st, r) = post(
        &s,
        "/tenants/acme/rollback",
        Some(&t.key),
        json!({ "storage_path": path }),
    )
    .await;
    assert_eq!(st, 200, "{r}");
    let id = str_of(&r, "rollback_id").to_string();
    // Kill twice while restoring: once on the first attempt, once on the resumed one.
    for kill in 0..2 {
        // A restore in progress: its byte count moves between two looks.
        let mut last = 0;
        let started = Instant::now();
        loop {
            let (_, t) = get(&s, "/tenants/acme", &t.key).await;
            let r = &t["last_rollback"];
            assert!(
                r["step"] != "completed" && r["step"] != "failed",
                "finished before kill {kill}; make the tenant bigger: {r}"
            );
            let done = r["bytes_done"].as_u64().unwrap_or(0);
            if r["step"] == "restoring" && done > 0 && last > 0 && done != last {
                break;
            }
            last = done;
            assert!(started.elapsed() < Duration::from_secs(120), "{r}");
            // Progress is written every 500 ms; a quick machine restores this tenant in a
            // second or two, so look often enough to see two of its writes.
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        s.kill9().expect("kill -9");
        s.restart().await.expect("restart");
        // Before the cut-off job's lease runs out and it resumes, the tenant answers through
        // the proxy with one of the two states.
        let state = snapshot(&t.url).await;
        assert!(
            state == changed || state == at_backup,
            "kill {kill}: neither the old nor the restored data: {state:?}"
        );
    }
    let t2 = wait_for(&s, &t.key, "/tenants/acme", |t| {
        t["last_rollback"]["rollback_id"] == id.as_str()
            && matches!(
                t["last_rollback"]["step"].as_str(),
                Some("completed" | "failed")
            )
    })
    .await;
    assert_eq!(t2["status"], "ready", "{t2}");
    assert_eq!(t2["last_rollback"]["step"], "completed", "{t2}");
    assert_eq!(snapshot(&t.url).await, at_backup);
    let admin = s.managed_admin_url("postgres").expect("admin url");
    let mut admin = PgConnection::connect(&admin).await.expect("admin");
    let tenant_dbs: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_database WHERE datname LIKE 'tdb_t_%'")
            .fetch_one(&mut admin)
            .await
            .expect("count");
    assert_eq!(tenant_dbs, 1, "no half-restored database is left");
}
