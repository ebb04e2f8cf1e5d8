//! Point-in-time recovery against a real `tdb serve`, its managed servers archiving their WAL
//! with pgBackRest: rows written around a known moment, the tenant recovered to it holds exactly
//! what was committed before (L1 beside neighbours that are never touched and stay reachable;
//! L2 on a new server of its own), the undo brings the state before the recovery back, the
//! window shown in `pitr` is honest at both ends, bad requests are refused with reasons, and a
//! recovery cut off by `kill -9` finishes after a restart.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use common::*;
use reqwest::Method;
use serde_json::{Value, json};
use tdb_testkit::{ServeOptions, TdbServer};

const OPERATOR: &str = "ops@example.com";

/// tdb with archives that switch segments every 2 s and are looked at every second, so the
/// recoverable window follows within seconds; `paid` for L2 tenants.
async fn start_pitr(extra_toml: &str) -> TdbServer {
    let options = ServeOptions {
        config_toml: Some(format!(
            "default_tier = \"paid\"\noperators = [\"{OPERATOR}\"]\n\
             pitr_archive_timeout_secs = 2\npitr_check_secs = 1\n\
             backup_schedule_tick_secs = 1\n{extra_toml}"
        )),
        ..Default::default()
    };
    TdbServer::start_with(bin(), options)
        .await
        .expect("tdb serve starts")
}

/// The operator's account with blueprint `app` (table `items`) deployed; returns its key.
async fn operator_with_blueprint(s: &TdbServer) -> String {
    let key = account_with_blueprint(s, OPERATOR, "Ops", "app").await;
    ws_query(
        s,
        &key,
        "app",
        "CREATE TABLE items (id int PRIMARY KEY, note text NOT NULL)",
    )
    .await;
    let d = deploy_and_wait(s, &key, "app").await;
    assert_eq!(d["status"], "completed", "{d}");
    key
}

fn psql(url: &str, sql: &str) -> String {
    psql_with_options(url, "", sql).unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// The rows of `items`, in order, as `id|note` lines joined by commas.
fn rows(url: &str) -> String {
    psql(
        url,
        "SELECT coalesce(string_agg(id || '|' || note, ',' ORDER BY id), '') FROM items",
    )
}

async fn tenant(s: &TdbServer, key: &str, name: &str) -> Value {
    let (st, t) = get(s, &format!("/tenants/{name}"), key).await;
    assert_eq!(st, 200, "{t}");
    t
}

fn at(v: &Value) -> DateTime<Utc> {
    v.as_str()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|| panic!("not a moment: {v}"))
}

/// Waits until the tenant's `pitr` window reaches `moment` (2 minutes at most); returns it.
async fn window_reaching(s: &TdbServer, key: &str, name: &str, moment: DateTime<Utc>) -> Value {
    let started = Instant::now();
    loop {
        let t = tenant(s, key, name).await;
        if let Some(p) = t.get("pitr")
            && at(&p["to"]) >= moment
            && at(&p["from"]) <= moment
        {
            return p.clone();
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the window of {name} never reached {moment}: {t}\n{}\n{}",
            s.log_tail(),
            server_complaints(s)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Waits until the tenant has a recoverable window (2 minutes at most); returns it.
async fn some_window(s: &TdbServer, key: &str, name: &str) -> Value {
    let started = Instant::now();
    loop {
        let t = tenant(s, key, name).await;
        if let Some(p) = t.get("pitr") {
            return p.clone();
        }
        assert!(started.elapsed() < Duration::from_secs(120), "{t}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The errors in the managed servers' logs (archiving that fails says why there), for failures.
fn server_complaints(s: &TdbServer) -> String {
    let data = s.data_dir();
    let mut logs: Vec<std::path::PathBuf> =
        vec![data.join("servers/postgresql-shared/postgres.log")];
    if let Ok(dirs) = std::fs::read_dir(data.join("dedicated")) {
        logs.extend(dirs.flatten().map(|d| d.path().join("postgres.log")));
    }
    let tdb_log = std::fs::read_to_string(s.log_path()).unwrap_or_default();
    let mut out: String = tdb_log
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR") || l.contains("panicked"))
        .map(|l| format!("{l}\n"))
        .collect();
    if let Ok(catalog) = s.managed_admin_url("tdb_catalog") {
        out += &psql_with_options(
            &catalog,
            "",
            "SELECT a.stanza, s.status, a.ready, a.recoverable_from, a.recoverable_to, a.error,
                    a.updated_at
               FROM server_archives a JOIN servers s ON s.id = a.server_id",
        )
        .unwrap_or_else(|e| e);
        out.push('\n');
    }
    if let Ok(dirs) = std::fs::read_dir(data.join("dedicated")) {
        for dir in dirs.flatten() {
            if let Some(url) = dedicated_admin_url(s, &dir.path()) {
                out += &format!(
                    "{}: {}\n",
                    dir.path().display(),
                    psql_with_options(
                        &url,
                        "",
                        "SELECT clock_timestamp(), pg_current_wal_insert_lsn(), a.*,
                                pg_current_snapshot(), current_setting('archive_mode'),
                                current_setting('archive_timeout'), pg_postmaster_start_time()
                           FROM pg_stat_archiver a"
                    )
                    .unwrap_or_else(|e| e)
                );
            }
        }
    }
    for log in logs {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let bad: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("ERROR") || l.contains("FATAL") || l.contains("archive"))
            .collect();
        out += &format!(
            "--- {}\n{}\n",
            log.display(),
            bad[bad.len().saturating_sub(8)..].join("\n")
        );
    }
    out
}

/// The administrator's URL of the dedicated server in `dir`, for diagnostics.
fn dedicated_admin_url(s: &TdbServer, dir: &std::path::Path) -> Option<String> {
    let key = tdb_core::secrets::MasterKey::parse(
        &std::fs::read_to_string(s.data_dir().join("master.key")).ok()?,
    )
    .ok()?;
    let state: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("state.json")).ok()?).ok()?;
    let sealed = hex::decode(state["admin_password_sealed"].as_str()?).ok()?;
    let password = key
        .open_string(&sealed, tdb_core::aad::Aad::ManagedServerAdmin)
        .ok()?;
    Some(format!(
        "postgresql://{}:{password}@localhost:{}/postgres?host={}",
        state["admin_user"].as_str()?,
        state["port"],
        dir.join("socket").display()
    ))
}

/// Asks for a recovery of `name` to `moment`, which must start.
async fn recover(s: &TdbServer, key: &str, name: &str, moment: &str) -> Value {
    let path = format!("/tenants/{name}/recover");
    let (st, body) = post(s, &path, Some(key), json!({ "timestamp": moment })).await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["tenant"]["status"], "recovering", "{body}");
    body
}

/// Waits until the tenant's newest recovery reaches one of `steps` and the tenant is `ready`
/// (5 minutes at most); returns the tenant.
async fn recovery_reaches(s: &TdbServer, key: &str, name: &str, steps: &[&str]) -> Value {
    let started = Instant::now();
    loop {
        let t = tenant(s, key, name).await;
        let step = t["last_recovery"]["step"].as_str().unwrap_or_default();
        if steps.contains(&step) && t["status"] == "ready" {
            return t;
        }
        assert!(
            step != "failed" || steps.contains(&"failed"),
            "the recovery failed: {t}\n{}",
            s.log_tail()
        );
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "the recovery of {name} did not reach {steps:?}: {t}\n{}",
            s.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A moment between two writes: rows before it committed at least a second earlier, rows after
/// it a second later.
async fn moment_between() -> DateTime<Utc> {
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let moment = Utc::now();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    moment
}

fn iso(moment: DateTime<Utc>) -> String {
    moment.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// A checksum of every row a tenant holds.
fn checksum(url: &str) -> String {
    psql(
        url,
        "SELECT md5(coalesce(string_agg(id || ':' || note, ',' ORDER BY id), '')) FROM items",
    )
}

/// Queries `url` every 100 ms until stopped; counts the failures.
fn keep_querying(
    url: String,
) -> (
    Arc<AtomicBool>,
    Arc<AtomicUsize>,
    std::thread::JoinHandle<usize>,
) {
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicUsize::new(0));
    let handle = {
        let (stop, failures) = (stop.clone(), failures.clone());
        std::thread::spawn(move || {
            let mut queries = 0;
            while !stop.load(Ordering::Relaxed) {
                if psql_with_options(&url, "", "SELECT count(*) FROM items").is_err() {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
                queries += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
            queries
        })
    };
    (stop, failures, handle)
}

/// Asks for a full base backup of the shared server and waits until one newer than `after`
/// is in its archive.
async fn base_backup(s: &TdbServer, key: &str, after: DateTime<Utc>) {
    let (st, body) = post(s, "/servers/postgresql-shared/backup", Some(key), json!({})).await;
    assert_eq!(st, 200, "{body}");
    let started = Instant::now();
    loop {
        let (st, list) = get(s, "/servers", key).await;
        assert_eq!(st, 200, "{list}");
        let shared = list["servers"]
            .as_array()
            .and_then(|all| all.iter().find(|v| v["name"] == "postgresql-shared"))
            .cloned()
            .expect("the shared server");
        if shared["archive"]["last_backup_at"]
            .as_str()
            .is_some_and(|t| at(&json!(t)) > after)
        {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no new base backup: {shared}\n{}",
            s.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn an_l1_tenant_goes_back_to_a_moment_beside_its_neighbours() {
    let s = start_pitr("").await;
    let key = operator_with_blueprint(&s).await;
    let acme = create_tenant_url(&s, &key, "app", "acme").await;
    let n1 = create_tenant_url(&s, &key, "app", "n1").await;
    let n2 = create_tenant_url(&s, &key, "app", "n2").await;
    psql(&n1, "INSERT INTO items VALUES (1, 'n1')");
    psql(&n2, "INSERT INTO items VALUES (1, 'n2')");
    // A base backup that holds the tenants, so the restore can take acme's files alone (asked
    // for once the first one, taken at start, is done).
    some_window(&s, &key, "n1").await;
    base_backup(&s, &key, Utc::now()).await;

    psql(&acme, "INSERT INTO items VALUES (1, 'before')");
    let moment = moment_between().await;
    psql(
        &acme,
        "INSERT INTO items VALUES (2, 'after'); UPDATE items SET note = 'changed' WHERE id = 1",
    );
    psql(&n1, "INSERT INTO items VALUES (2, 'n1 later')");
    let neighbours = (checksum(&n1), checksum(&n2));
    window_reaching(&s, &key, "acme", moment).await;

    let (stop, failures, querying) = keep_querying(n2.clone());
    let started = recover(&s, &key, "acme", &iso(moment)).await;
    assert_eq!(started["tenant"]["tenant_id"], "acme", "{started}");
    let t = recovery_reaches(&s, &key, "acme", &["completed"]).await;
    stop.store(true, Ordering::Relaxed);
    let queries = querying.join().expect("the neighbour's queries");
    assert_eq!(rows(&acme), "1|before", "{t}");
    assert_eq!((checksum(&n1), checksum(&n2)), neighbours);
    assert!(queries > 5, "the neighbour was queried {queries} times");
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "a neighbour's query failed"
    );
    let history = t["last_recovery"]["history"].to_string();
    assert!(history.contains("only its database restored"), "{history}");
    let undo = &t["recovery_undo"];
    assert_eq!(undo["available"], true, "{t}");
    assert_eq!(undo["command"], "tdb tenants recover-undo acme", "{t}");
    assert!(
        str_of(undo, "original_host").starts_with("postgresql-shared/"),
        "{undo}"
    );
    assert!(str_of(undo, "expires_in").starts_with("23h "), "{undo}");

    // The undo brings back what the tenant held before the recovery.
    let (st, body) = post(&s, "/tenants/acme/recover-undo", Some(&key), json!({})).await;
    assert_eq!(st, 200, "{body}");
    let t = recovery_reaches(&s, &key, "acme", &["undone"]).await;
    assert_eq!(rows(&acme), "1|changed,2|after", "{t}");
    assert!(t.get("recovery_undo").is_none(), "{t}");
    let (st, body) = post(&s, "/tenants/acme/recover-undo", Some(&key), json!({})).await;
    assert_eq!(st, 409, "{body}");
    assert!(body.to_string().contains("undone already"), "{body}");
    assert_eq!((checksum(&n1), checksum(&n2)), neighbours);

    // The window is honest at both ends: its newest moment, then its oldest.
    psql(&acme, "INSERT INTO items VALUES (3, 'latest')");
    // (The window starts a second after the undo's switch.)
    let written = moment_between().await;
    let window = window_reaching(&s, &key, "acme", written).await;
    recover(&s, &key, "acme", str_of(&window, "to")).await;
    recovery_reaches(&s, &key, "acme", &["completed"]).await;
    assert_eq!(rows(&acme), "1|changed,2|after,3|latest");
    post(&s, "/tenants/acme/recover-undo", Some(&key), json!({})).await;
    recovery_reaches(&s, &key, "acme", &["undone"]).await;
    let window = some_window(&s, &key, "acme").await;
    recover(&s, &key, "acme", str_of(&window, "from")).await;
    recovery_reaches(&s, &key, "acme", &["completed"]).await;
    assert_eq!(rows(&acme), "1|changed,2|after,3|latest");

    // Once the undo window is over the original goes, and with it the undo.
    let catalog = s.managed_admin_url("tdb_catalog").expect("catalog url");
    let original = psql(
        &catalog,
        "UPDATE recoveries SET undo_until = now() - interval '1 second'
          WHERE id = (SELECT id FROM recoveries ORDER BY created_at DESC LIMIT 1)
         RETURNING original_db",
    );
    let (st, body) = post(&s, "/tenants/acme/recover-undo", Some(&key), json!({})).await;
    assert_eq!(st, 409, "{body}");
    let shared = s.managed_admin_url("postgres").expect("admin url");
    let started = Instant::now();
    let gone = format!("SELECT count(*) FROM pg_database WHERE datname = '{original}'");
    while psql(&shared, &gone) != "0" {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the expired original {original} was not dropped\n{}",
            s.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        tenant(&s, &key, "acme")
            .await
            .get("recovery_undo")
            .is_none()
    );
    assert_eq!(rows(&acme), "1|changed,2|after,3|latest");
}

/// A write login's connection string for the tenant, through the proxy, in plaintext.
async fn login(s: &TdbServer, key: &str, tenant: &str) -> String {
    let (st, c) = post(
        s,
        &format!("/tenants/{tenant}/credentials"),
        Some(key),
        json!({"role": "write"}),
    )
    .await;
    assert_eq!(st, 201, "{c}");
    str_of(&c["connection"], "connection_string").replace("sslmode=require", "sslmode=disable")
}

async fn dedicated_names(s: &TdbServer, key: &str) -> Vec<String> {
    let (st, list) = get(s, "/servers", key).await;
    assert_eq!(st, 200, "{list}");
    let mut names: Vec<String> = list["servers"]
        .as_array()
        .expect("servers")
        .iter()
        .filter(|v| v["role"] == "dedicated" && v["status"] == "active")
        .map(|v| str_of(v, "name").to_string())
        .collect();
    names.sort();
    names
}

async fn create_l2(s: &TdbServer, key: &str, name: &str) -> String {
    let (st, t) = post(
        s,
        "/tenants",
        Some(key),
        json!({"tenant_id": name, "databases": [{"blueprint": "app", "isolation_level": 2}]}),
    )
    .await;
    assert_eq!(st, 201, "{t}");
    let started = Instant::now();
    while tenant(s, key, name).await["status"] != "ready" {
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "{}",
            s.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    login(s, key, name).await
}

/// psql until it succeeds (a server just switched to may still be starting), 90 s at most.
async fn rows_eventually(url: &str) -> String {
    let started = Instant::now();
    loop {
        match psql_with_options(
            url,
            "",
            "SELECT coalesce(string_agg(id || '|' || note, ',' ORDER BY id), '') FROM items",
        ) {
            Ok(rows) => return rows,
            Err(e) => assert!(started.elapsed() < Duration::from_secs(90), "{e}"),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn an_l2_tenant_goes_back_on_a_new_server_and_the_undo_swaps_the_original_back() {
    let s = start_pitr("").await;
    let key = operator_with_blueprint(&s).await;
    let url = create_l2(&s, &key, "acme").await;
    // Nothing is recoverable before the new server's first base backup.
    some_window(&s, &key, "acme").await;
    psql(&url, "INSERT INTO items VALUES (1, 'before')");
    let moment = moment_between().await;
    psql(
        &url,
        "INSERT INTO items VALUES (2, 'after'); DELETE FROM items WHERE id = 1",
    );
    window_reaching(&s, &key, "acme", moment).await;
    let servers_before = dedicated_names(&s, &key).await;
    assert_eq!(servers_before.len(), 1, "{servers_before:?}");

    recover(&s, &key, "acme", &iso(moment)).await;
    let t = recovery_reaches(&s, &key, "acme", &["completed"]).await;
    assert_eq!(rows_eventually(&url).await, "1|before", "{t}");
    let servers_after = dedicated_names(&s, &key).await;
    assert_eq!(
        servers_after.len(),
        1,
        "the original is stopped: {servers_after:?}"
    );
    assert_ne!(
        servers_after, servers_before,
        "a new server serves the tenant"
    );
    assert_eq!(
        t["recovery_undo"]["original_host"],
        json!(servers_before[0]),
        "{t}"
    );
    assert_eq!(t["last_recovery"]["isolation_level"], 2, "{t}");
    // The recovered server takes writes, and archives them in its turn.
    psql(
        &url,
        "INSERT INTO items VALUES (3, 'on the recovered server')",
    );

    let (st, body) = post(&s, "/tenants/acme/recover-undo", Some(&key), json!({})).await;
    assert_eq!(st, 200, "{body}");
    // As the reference answers: the original serves again when the answer comes.
    assert_eq!(body["tenant"]["status"], "ready", "{body}");
    assert!(
        body.to_string()
            .contains("Recovery undone for tenant 'acme'"),
        "{body}"
    );
    recovery_reaches(&s, &key, "acme", &["undone"]).await;
    assert_eq!(rows_eventually(&url).await, "2|after");
    assert_eq!(dedicated_names(&s, &key).await, servers_before);

    // Again, to the newest moment; once the undo window is over, the original server goes.
    psql(&url, "INSERT INTO items VALUES (4, 'newest')");
    let written = moment_between().await;
    let window = window_reaching(&s, &key, "acme", written).await;
    recover(&s, &key, "acme", str_of(&window, "to")).await;
    recovery_reaches(&s, &key, "acme", &["completed"]).await;
    assert_eq!(rows_eventually(&url).await, "2|after,4|newest");
    let original = &servers_before[0];
    assert!(server_dir(&s, original).exists());
    let catalog = s.managed_admin_url("tdb_catalog").expect("catalog url");
    psql(
        &catalog,
        "UPDATE recoveries SET undo_until = now() - interval '1 second'
          WHERE id = (SELECT id FROM recoveries ORDER BY created_at DESC LIMIT 1)",
    );
    let started = Instant::now();
    loop {
        let (st, list) = get(&s, "/servers", &key).await;
        assert_eq!(st, 200, "{list}");
        if !server_dir(&s, original).exists() && !list.to_string().contains(original.as_str()) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the expired original {original} was not removed: {list}\n{}",
            s.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        tenant(&s, &key, "acme")
            .await
            .get("recovery_undo")
            .is_none()
    );
    assert_eq!(rows_eventually(&url).await, "2|after,4|newest");
}

/// The directory the local provisioner keeps a dedicated server in.
fn server_dir(s: &TdbServer, name: &str) -> std::path::PathBuf {
    s.data_dir().join("dedicated").join(name)
}

#[tokio::test]
async fn bad_recovery_requests_are_refused_with_their_reasons() {
    let s = start_pitr("").await;
    let key = operator_with_blueprint(&s).await;
    let url = create_tenant_url(&s, &key, "app", "acme").await;
    some_window(&s, &key, "acme").await;
    psql(&url, "INSERT INTO items VALUES (1, 'x')");
    let window = window_reaching(&s, &key, "acme", Utc::now()).await;
    let refused = |status: u16, body: &Value, says: &str| {
        assert_eq!(status, 400, "{body}");
        assert!(body.to_string().contains(says), "{says}: {body}");
    };
    let path = "/tenants/acme/recover";
    for bad in [
        "yesterday",
        "2026-12-05",
        "2026-12-05 10:11:12",
        "2026-12-05T10:11:12",
    ] {
        let (st, body) = post(&s, path, Some(&key), json!({ "timestamp": bad })).await;
        refused(st, &body, "ISO 8601");
    }
    let (st, body) = post(&s, path, Some(&key), json!({})).await;
    assert_eq!(st, 400, "{body}");
    let future = iso(Utc::now() + chrono::Duration::hours(1));
    let (st, body) = post(&s, path, Some(&key), json!({ "timestamp": future })).await;
    refused(st, &body, "in the future");
    assert!(body.to_string().contains("from "), "{body}");
    let early = iso(at(&window["from"]) - chrono::Duration::seconds(10));
    let (st, body) = post(&s, path, Some(&key), json!({ "timestamp": early })).await;
    refused(st, &body, "outside the recoverable window");
    let (st, body) = post(
        &s,
        path,
        Some(&key),
        json!({ "timestamp": str_of(&window, "to"), "blueprint": "nope" }),
    )
    .await;
    refused(st, &body, "no database of blueprint 'nope'");

    let good = json!({ "timestamp": str_of(&window, "to") });
    let catalog = s.managed_admin_url("tdb_catalog").expect("catalog url");
    for (status, says) in [
        ("syncing", "moving"),
        ("migrating", "moving"),
        ("restoring", "being restored"),
    ] {
        psql(
            &catalog,
            &format!("UPDATE tenants SET status = '{status}' WHERE name = 'acme'"),
        );
        let (st, body) = post(&s, path, Some(&key), good.clone()).await;
        assert_eq!(st, 409, "{status}: {body}");
        assert!(body.to_string().contains(says), "{body}");
    }
    psql(
        &catalog,
        "UPDATE tenants SET status = 'ready' WHERE name = 'acme'",
    );
    let (st, body) = post(&s, "/tenants/acme/suspend", Some(&key), json!({})).await;
    assert_eq!(st, 200, "{body}");
    let (st, body) = post(&s, path, Some(&key), good.clone()).await;
    assert_eq!(st, 409, "{body}");
    assert!(body.to_string().contains("suspended"), "{body}");
    let (st, body) = post(&s, "/tenants/acme/resume", Some(&key), json!({})).await;
    assert_eq!(st, 200, "{body}");
    let (st, body) = call(&s, Method::DELETE, "/tenants/acme", Some(&key), None).await;
    assert_eq!(st, 200, "{body}");
    let (st, body) = post(&s, path, Some(&key), good.clone()).await;
    assert_eq!(st, 409, "{body}");
    assert!(body.to_string().contains("trash"), "{body}");
    let (st, body) = post(&s, "/tenants/acme/restore", Some(&key), json!({})).await;
    assert_eq!(st, 200, "{body}");

    let (st, body) = post(&s, "/tenants/acme/recover-undo", Some(&key), json!({})).await;
    assert_eq!(st, 409, "{body}");
    assert!(body.to_string().contains("no recovery to undo"), "{body}");

    // Read keys may not recover.
    let (st, created) = post(
        &s,
        "/apikeys",
        Some(&key),
        json!({"name": "r", "role": "read"}),
    )
    .await;
    assert_eq!(st, 201, "{created}");
    let (st, body) = post(&s, path, Some(str_of(&created, "api_key")), good).await;
    assert_eq!(st, 403, "{body}");
}

#[tokio::test]
async fn a_recovery_cut_off_by_kill_9_finishes_after_a_restart() {
    let mut s = start_pitr("").await;
    let key = operator_with_blueprint(&s).await;
    let acme = create_tenant_url(&s, &key, "app", "acme").await;
    some_window(&s, &key, "acme").await;
    // A large enough table that the restore and the load take a moment.
    psql(
        &acme,
        "INSERT INTO items SELECT g, repeat('x', 200) FROM generate_series(1, 200000) g",
    );
    let moment = moment_between().await;
    psql(&acme, "DELETE FROM items WHERE id > 100000");
    window_reaching(&s, &key, "acme", moment).await;
    recover(&s, &key, "acme", &iso(moment)).await;
    let started = Instant::now();
    loop {
        let t = tenant(&s, &key, "acme").await;
        let step = t["last_recovery"]["step"].as_str().unwrap_or_default();
        if step == "restoring" || step == "loading" {
            break;
        }
        assert!(
            step == "queued",
            "the recovery went past its work before the kill: {t}"
        );
        assert!(started.elapsed() < Duration::from_secs(60), "{t}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    s.kill9().expect("kill -9");
    s.restart().await.expect("tdb restarts");
    // The tenant is served throughout: its current data until the switch, then the
    // recovered data.
    let served = psql(&acme, "SELECT count(*) FROM items");
    assert!(served == "100000" || served == "200000", "{served}");
    let t = recovery_reaches(&s, &key, "acme", &["completed"]).await;
    assert_eq!(psql(&acme, "SELECT count(*) FROM items"), "200000", "{t}");
    let scratch = s.data_dir().join("pitr").join("scratch");
    let left: Vec<_> = std::fs::read_dir(&scratch)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "scratch servers left behind: {left:?}");
}

type McpClient = rmcp::service::RunningService<rmcp::service::RoleClient, ()>;

async fn mcp_client(s: &TdbServer, key: &str) -> McpClient {
    use rmcp::ServiceExt;
    use rmcp::transport::StreamableHttpClientTransport;
    use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
    let config = StreamableHttpClientTransportConfig::with_uri(format!("{}/mcp", s.api_url))
        .auth_header(key);
    let transport = StreamableHttpClientTransport::from_config(config);
    ().serve(transport).await.expect("MCP handshake over HTTP")
}

async fn mcp_call(
    client: &McpClient,
    tool: &'static str,
    args: Value,
) -> rmcp::model::CallToolResult {
    let args = args.as_object().cloned().expect("arguments are an object");
    client
        .call_tool(rmcp::model::CallToolRequestParams::new(tool).with_arguments(args))
        .await
        .unwrap_or_else(|e| panic!("{tool}: {e}"))
}

#[tokio::test]
async fn the_cli_and_mcp_recover_and_undo() {
    let s = start_pitr("").await;
    let key = operator_with_blueprint(&s).await;
    let acme = create_tenant_url(&s, &key, "app", "acme").await;
    some_window(&s, &key, "acme").await;
    psql(&acme, "INSERT INTO items VALUES (1, 'before')");
    let moment = moment_between().await;
    psql(&acme, "INSERT INTO items VALUES (2, 'after')");
    window_reaching(&s, &key, "acme", moment).await;

    let home = tempfile::tempdir().expect("home");
    let cli = Cli {
        home: home.path(),
        api_url: &s.api_url,
        key: Some(&key),
    };
    let shown = cli.ok(&["tenants", "get", "acme"]);
    assert!(shown.contains("pitr: recoverable from "), "{shown}");
    let refused = cli.fails(&["tenants", "recover", "acme", "--to", "yesterday"]);
    assert!(refused.contains("ISO 8601"), "{refused}");
    let out = cli.ok(&["tenants", "recover", "acme", "--to", &iso(moment)]);
    assert!(
        out.contains("Recovery initiated for tenant 'acme'"),
        "{out}"
    );
    assert!(
        out.contains("restoring the archive of 'postgresql-shared'"),
        "{out}"
    );
    assert!(out.contains("tenant 'acme' is at "), "{out}");
    assert_eq!(rows(&acme), "1|before");
    let shown = cli.ok(&["tenants", "get", "acme"]);
    assert!(shown.contains("tdb tenants recover-undo acme"), "{shown}");
    let out = cli.ok(&["tenants", "recover-undo", "acme"]);
    assert!(out.contains("back on its original"), "{out}");
    assert_eq!(rows(&acme), "1|before,2|after");

    // A recovery and its undo start the window again: a moment after the undo.
    let mcp = mcp_client(&s, &key).await;
    some_window(&s, &key, "acme").await;
    psql(&acme, "INSERT INTO items VALUES (3, 'later')");
    let later = moment_between().await;
    psql(&acme, "INSERT INTO items VALUES (4, 'latest')");
    window_reaching(&s, &key, "acme", later).await;
    let refused = mcp_call(
        &mcp,
        "recover_tenant",
        json!({"tenant_id": "acme", "timestamp": "yesterday"}),
    )
    .await;
    assert_eq!(refused.is_error, Some(true), "{refused:?}");
    let started = mcp_call(
        &mcp,
        "recover_tenant",
        json!({"tenant_id": "acme", "timestamp": iso(later)}),
    )
    .await;
    assert_ne!(started.is_error, Some(true), "{started:?}");
    let body = started.structured_content.expect("structured");
    assert_eq!(body["tenant"]["status"], "recovering", "{body}");
    recovery_reaches(&s, &key, "acme", &["completed"]).await;
    assert_eq!(rows(&acme), "1|before,2|after,3|later");
    let undone = mcp_call(&mcp, "recover_undo", json!({"tenant_id": "acme"})).await;
    assert_ne!(undone.is_error, Some(true), "{undone:?}");
    recovery_reaches(&s, &key, "acme", &["undone"]).await;
    assert_eq!(rows(&acme), "1|before,2|after,3|later,4|latest");
}

/// Polls until the tenant's newest recovery is at `step`; kills tdb there with `kill -9` and
/// starts it again.
async fn kill_at(s: &mut TdbServer, key: &str, name: &str, steps: &[&str]) {
    let started = Instant::now();
    loop {
        let t = tenant(s, key, name).await;
        let step = t["last_recovery"]["step"].as_str().unwrap_or_default();
        if steps.contains(&step) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "never at {steps:?}: {t}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    s.kill9().expect("kill -9");
    s.restart().await.expect("tdb restarts");
}

#[tokio::test]
async fn an_l2_recovery_and_its_undo_cut_off_by_kill_9_finish_after_a_restart() {
    let mut s = start_pitr("").await;
    let key = operator_with_blueprint(&s).await;
    let url = create_l2(&s, &key, "acme").await;
    some_window(&s, &key, "acme").await;
    psql(&url, "INSERT INTO items VALUES (1, 'before')");
    let moment = moment_between().await;
    psql(&url, "INSERT INTO items VALUES (2, 'after')");
    window_reaching(&s, &key, "acme", moment).await;

    recover(&s, &key, "acme", &iso(moment)).await;
    kill_at(&mut s, &key, "acme", &["restoring"]).await;
    // Served from its original until the switch, from the recovered server after it.
    let served = rows_eventually(&url).await;
    assert!(
        served == "1|before,2|after" || served == "1|before",
        "{served}"
    );
    recovery_reaches(&s, &key, "acme", &["completed"]).await;
    assert_eq!(rows_eventually(&url).await, "1|before");
    assert_eq!(dedicated_names(&s, &key).await.len(), 1);

    // The undo, cut off while it runs (its request is answered by nobody).
    let undo = {
        let (api, key) = (s.api_url.clone(), key.clone());
        tokio::spawn(async move {
            reqwest::Client::new()
                .post(format!("{api}/tenants/acme/recover-undo"))
                .bearer_auth(key)
                .json(&json!({}))
                .send()
                .await
        })
    };
    kill_at(&mut s, &key, "acme", &["undoing"]).await;
    let _ = undo.await;
    recovery_reaches(&s, &key, "acme", &["undone"]).await;
    assert_eq!(rows_eventually(&url).await, "1|before,2|after");
    assert_eq!(
        dedicated_names(&s, &key).await.len(),
        1,
        "the recovered server is gone"
    );
}

#[tokio::test]
async fn a_tenant_on_an_attached_server_is_told_what_is_missing() {
    let eu = tdb_testkit::TestPostgres::start()
        .await
        .expect("server in eu");
    let toml = format!(
        "[[regions]]\nzone = \"local\"\nlabel = \"This machine\"\nis_default = true\n\
         [[regions]]\nzone = \"eu\"\nlabel = \"Europe\"\n\
         [[servers]]\nname = \"pg-eu\"\nregion = \"eu\"\nurl = \"{}\"\n",
        eu.url("postgres")
    );
    let s = start_pitr(&toml).await;
    let key = operator_with_blueprint(&s).await;
    let (st, t) = post(
        &s,
        "/tenants",
        Some(&key),
        json!({"tenant_id": "acme", "databases": [{"blueprint": "app", "region": "eu"}]}),
    )
    .await;
    assert_eq!(st, 201, "{t}");
    let t = tenant(&s, &key, "acme").await;
    assert!(t.get("pitr").is_none(), "{t}");
    assert!(
        str_of(&t, "pitr_unavailable").contains("'pg-eu' is attached"),
        "{t}"
    );
    let moment = iso(Utc::now() - chrono::Duration::seconds(5));
    let (st, body) = post(
        &s,
        "/tenants/acme/recover",
        Some(&key),
        json!({ "timestamp": moment }),
    )
    .await;
    assert_eq!(st, 409, "{body}");
    assert!(
        body.to_string().contains("server 'pg-eu' is attached"),
        "{body}"
    );
    let (st, list) = get(&s, "/servers", &key).await;
    assert_eq!(st, 200, "{list}");
    let attached = list["servers"]
        .as_array()
        .and_then(|all| all.iter().find(|v| v["name"] == "pg-eu"))
        .cloned()
        .expect("pg-eu listed");
    assert!(attached["archive"].is_null(), "{attached}");

    // The operator's CLI asks for base backups: refused for the attached server, taken for the
    // managed one.
    let home = tempfile::tempdir().expect("home");
    let cli = Cli {
        home: home.path(),
        api_url: &s.api_url,
        key: Some(&key),
    };
    let refused = cli.fails(&["servers", "backup", "pg-eu"]);
    assert!(refused.contains("archives no WAL"), "{refused}");
    let asked = cli.ok(&["servers", "backup", "postgresql-shared"]);
    assert!(
        asked.contains("A full base backup of server 'postgresql-shared'"),
        "{asked}"
    );
}
