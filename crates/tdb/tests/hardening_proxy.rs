//! The PostgreSQL proxy under faults, with real clients (sqlx and psql): the workspace's
//! `query_timeout_ms` holds whatever a session sets, a client that leaves has its statement
//! stopped, pooled server connections survive a restart of the server, and every session that a
//! shutdown ends is told so with SQLSTATE 57P01.

mod common;

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use reqwest::Method;
use serde_json::json;
use sqlx::{Connection, PgConnection, Row};
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

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// The SQLSTATE of a database error, or what the error was instead.
fn sqlstate(e: &sqlx::Error) -> String {
    match e.as_database_error().and_then(|d| d.code()) {
        Some(code) => code.into_owned(),
        None => format!("no SQLSTATE: {e}"),
    }
}

async fn connect(url: &str) -> PgConnection {
    PgConnection::connect(url).await.expect("connects")
}

/// The managed server as its administrator sees it.
async fn admin(s: &TdbServer) -> PgConnection {
    let url = s.managed_admin_url("postgres").expect("admin url");
    PgConnection::connect(&url).await.expect("admin connects")
}

/// Server backends whose current or last statement contains `marker` (other than the asking
/// one), with their state.
async fn backends_running(admin: &mut PgConnection, marker: &str) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT coalesce(state, '?') FROM pg_stat_activity \
         WHERE pid <> pg_backend_pid() AND strpos(query, $1) > 0 AND state = 'active'",
    )
    .bind(marker)
    .fetch_all(admin)
    .await
    .expect("pg_stat_activity")
}

/// Server backends, in any state, whose current or last statement contains `marker`.
async fn backends_with(admin: &mut PgConnection, marker: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity \
         WHERE pid <> pg_backend_pid() AND strpos(query, $1) > 0",
    )
    .bind(marker)
    .fetch_one(admin)
    .await
    .expect("pg_stat_activity")
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

/// Sets the workspace's `query_timeout_ms` and waits until new sessions of `url` run with it.
async fn set_query_timeout(s: &TdbServer, f: &Fixture, url: &str, ms: u64, shown: &str) {
    patch_settings(s, &f.key, "app", json!({"query_timeout_ms": ms})).await;
    let applied = eventually(Duration::from_secs(30), async || {
        let mut c = connect(url).await;
        let now: String = sqlx::query_scalar("SHOW statement_timeout")
            .fetch_one(&mut c)
            .await
            .expect("SHOW");
        now == shown
    })
    .await;
    assert!(applied, "query_timeout_ms {ms} never reached new sessions");
}

#[tokio::test]
async fn a_client_that_leaves_has_its_statement_stopped() {
    let s = start().await;
    let f = fixture(&s, None).await;
    let mut adm = admin(&s).await;
    // The timeout is long here: only the leaving can stop the statement.
    set_query_timeout(&s, &f, &f.app, 120_000, "2min").await;
    for (pooling, url) in [("session", &f.app), ("transaction", &f.pooled)] {
        let marker = format!("tdb_probe_left_{pooling}");
        let url = url.clone();
        let sql = format!("SELECT pg_sleep(60) /* {marker} */");
        let leaving = tokio::spawn(async move {
            let mut c = connect(&url).await;
            let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&mut c)
                .await;
        });
        let seen = eventually(Duration::from_secs(30), async || {
            !backends_running(&mut adm, &marker).await.is_empty()
        })
        .await;
        assert!(seen, "{pooling} pooling: the statement never started");
        // The client goes away without a word.
        leaving.abort();
        let _ = leaving.await;
        let closed = eventually(Duration::from_secs(15), async || {
            backends_with(&mut adm, &marker).await == 0
        })
        .await;
        assert!(
            closed,
            "{pooling} pooling: the statement of a client that left, or its server connection, \
             was still there 15 s later"
        );
    }
}

#[tokio::test]
async fn query_timeout_is_enforced_whatever_the_session_sets() {
    let s = start().await;
    let f = fixture(&s, None).await;
    let mut adm = admin(&s).await;

    set_query_timeout(&s, &f, &f.app, 1000, "1s").await;
    // The session lifts the server's statement_timeout; the proxy's own timer still cancels,
    // and the session goes on.
    let mut c = connect(&f.app).await;
    let err = sqlx::raw_sql("SET statement_timeout = 0; SELECT pg_sleep(20)")
        .execute(&mut c)
        .await
        .expect_err("the statement outlived query_timeout_ms");
    assert_eq!(sqlstate(&err), "57014", "{err}");
    assert!(err.to_string().contains("query_timeout_ms"), "{err}");
    let one: i32 = sqlx::query_scalar("SELECT 1")
        .fetch_one(&mut c)
        .await
        .expect("the session goes on after the cancel");
    assert_eq!(one, 1);

    // psql, simple protocol, two commands.
    let out = psql(
        &f.app,
        &[
            "-c",
            "SET statement_timeout = 0",
            "-c",
            "SELECT pg_sleep(20)",
        ],
    );
    assert!(!out.status.success(), "psql: {}", stdout(&out));
    assert!(stderr(&out).contains("57014"), "{}", stderr(&out));

    // Inside a transaction, with SET LOCAL, over the extended protocol.
    sqlx::raw_sql("BEGIN; SET LOCAL statement_timeout = 0")
        .execute(&mut c)
        .await
        .expect("begin");
    let err = sqlx::query("SELECT pg_sleep($1)")
        .bind(20.0f64)
        .execute(&mut c)
        .await
        .expect_err("the statement outlived query_timeout_ms in a transaction");
    assert_eq!(sqlstate(&err), "57014", "{err}");
    sqlx::raw_sql("ROLLBACK")
        .execute(&mut c)
        .await
        .expect("rollback");

    // The role's own default lifted too.
    sqlx::raw_sql("ALTER ROLE CURRENT_USER SET statement_timeout = 0")
        .execute(&mut c)
        .await
        .expect("alter role");
    let mut d = connect(&f.app).await;
    let err = sqlx::raw_sql("SET statement_timeout = 0; SELECT pg_sleep(20)")
        .execute(&mut d)
        .await
        .expect_err("the statement outlived query_timeout_ms after ALTER ROLE");
    assert_eq!(sqlstate(&err), "57014", "{err}");
    sqlx::raw_sql("ALTER ROLE CURRENT_USER RESET statement_timeout")
        .execute(&mut d)
        .await
        .expect("reset role");

    // A statement that swallows cancels: the proxy ends it and the session, with a clear error.
    let mut e = connect(&f.app).await;
    let stubborn = sqlx::raw_sql(
        "SET statement_timeout = 0; \
         DO $$ BEGIN LOOP BEGIN PERFORM pg_sleep(0.2); \
         EXCEPTION WHEN query_canceled THEN NULL; END; END LOOP; END $$ /* tdb_probe_stubborn */",
    )
    .execute(&mut e);
    let err = tokio::time::timeout(Duration::from_secs(60), stubborn)
        .await
        .expect("the proxy never ended a statement that ignores cancels")
        .expect_err("a statement that ignores cancels");
    assert_eq!(sqlstate(&err), "57014", "{err}");
    assert!(err.to_string().contains("did not stop"), "{err}");
    let gone = eventually(Duration::from_secs(15), async || {
        backends_running(&mut adm, "tdb_probe_stubborn")
            .await
            .is_empty()
    })
    .await;
    assert!(
        gone,
        "the statement that ignores cancels still runs on the server"
    );
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

/// What one client saw of the shutdown: `Ok` for 57P01, else what it saw instead.
type Seen = Result<(), String>;

/// An idle session's next query must fail with 57P01.
async fn next_query_sees_57p01(mut c: PgConnection) -> Seen {
    match sqlx::query("SELECT 1").execute(&mut c).await {
        Ok(_) => Err("the query ran after shutdown".into()),
        Err(e) if sqlstate(&e) == "57P01" => Ok(()),
        Err(e) => Err(sqlstate(&e)),
    }
}

async fn insert(c: &mut PgConnection, name: &str) {
    sqlx::query("INSERT INTO items (name) VALUES ($1)")
        .bind(name)
        .execute(c)
        .await
        .expect("insert");
}

async fn open_transaction(c: &mut PgConnection, name: &str) {
    sqlx::raw_sql("BEGIN")
        .execute(&mut *c)
        .await
        .expect("begin");
    insert(c, name).await;
}

/// Opens `n` sessions that have run a statement and sit idle.
async fn idle_sessions(url: &str, n: usize) -> Vec<PgConnection> {
    let mut all = Vec::new();
    for _ in 0..n {
        let mut c = connect(url).await;
        sqlx::query("SELECT 1")
            .execute(&mut c)
            .await
            .expect("ready");
        all.push(c);
    }
    all
}

/// Opens one session per name, each inside a transaction that inserted that name.
async fn open_transactions(url: &str, names: &[String]) -> Vec<PgConnection> {
    let mut all = Vec::new();
    for name in names {
        let mut c = connect(url).await;
        open_transaction(&mut c, name).await;
        all.push(c);
    }
    all
}

fn names(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

/// Holds tenant `acme` (as a cutover does) and has `c` start a transaction, which the hold
/// parks; resolves to what the client saw in the end.
async fn hold_next_transaction(
    s: &TdbServer,
    mut c: PgConnection,
) -> tokio::task::JoinHandle<Seen> {
    let url = s.managed_admin_url("tdb_catalog").expect("catalog url");
    let options: sqlx::postgres::PgConnectOptions = url.parse().expect("catalog url parses");
    let control = tdb_catalog::Catalog::open(options, 1)
        .await
        .expect("catalog opens");
    let mut cat = PgConnection::connect(&url).await.expect("catalog");
    let tenant_id: String = sqlx::query_scalar("SELECT id FROM tenants WHERE name = 'acme'")
        .fetch_one(&mut cat)
        .await
        .expect("tenant id");
    control
        .hold_tenant(&tenant_id, 120_000)
        .await
        .expect("hold");
    // Until the proxy has heard of the hold, the statement runs; then it parks. Hearing of it
    // takes the catalog's notification, which on a loaded machine can outlast many quick
    // statements: the wait is bounded by time, not by a number of tries.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while tokio::time::Instant::now() < deadline {
        let mut parked = tokio::spawn(async move {
            let seen = match sqlx::query("SELECT 1").execute(&mut c).await {
                Ok(_) => return Err(c),
                Err(e) if sqlstate(&e) == "57P01" => Ok(()),
                Err(e) => Err(sqlstate(&e)),
            };
            Ok(seen)
        });
        match tokio::time::timeout(Duration::from_secs(1), &mut parked).await {
            Err(_) => {
                return tokio::spawn(async move {
                    match parked.await.expect("parked") {
                        Ok(seen) => seen,
                        Err(_) => Err("the parked statement ran".into()),
                    }
                });
            }
            Ok(ran) => match ran.expect("held") {
                Err(again) => c = again,
                Ok(seen) => panic!("the held session ended early: {seen:?}"),
            },
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the hold never parked a statement in 60 s");
}

#[tokio::test]
async fn shutdown_tells_every_client_57p01() {
    let s = start_with_env(&[("TDB_PG_SHUTDOWN_GRACE_SECS", "3")]).await;
    // app__acme's four slots are held by transactions that outlive the grace period, so the
    // clients waiting for one are still waiting when tdb shuts down.
    let f = fixture(&s, Some(json!({"max_connections": 4}))).await;
    let outliving = open_transactions(&f.app, &names("outlive", 3)).await;
    let mut sleeper = connect(&f.app).await;
    open_transaction(&mut sleeper, "sleeper").await;
    let sleeping = tokio::spawn(async move {
        match sqlx::query("SELECT pg_sleep(20)")
            .execute(&mut sleeper)
            .await
        {
            Ok(_) => Err("the statement ran to its end".to_string()),
            Err(e) if sqlstate(&e) == "57P01" => Ok(()),
            Err(e) => Err(sqlstate(&e)),
        }
    });
    // Transactions that commit during the grace period, under both poolings.
    let mut finishing = open_transactions(&f.app_globex, &names("finish", 2)).await;
    finishing.extend(open_transactions(&f.pooled_globex, &names("pfinish", 3)).await);
    // Idle sessions, and transaction-pooled sessions between transactions.
    let idle = idle_sessions(&f.app_globex, 1).await;
    let mut between = idle_sessions(&f.pooled, 4).await;
    between.extend(idle_sessions(&f.pooled_globex, 2).await);
    // A transaction-pooled client whose next transaction a hold on acme parks.
    let held = hold_next_transaction(&s, connect(&f.pooled).await).await;
    // psql, idle, reading its commands from a pipe.
    let mut psql_idle = Command::new("psql")
        .args(["-X", "-v", "VERBOSITY=verbose", "-At", &f.app_globex])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("psql");
    let mut psql_in = psql_idle.stdin.take().expect("stdin");
    {
        use std::io::Write;
        writeln!(psql_in, "SELECT 'psql ready';").expect("write");
    }
    let mut admin_conn = admin(&s).await;
    let all_in = eventually(Duration::from_secs(30), async || {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(20)'",
        )
        .fetch_one(&mut admin_conn)
        .await
        .expect("count");
        n == 1
    })
    .await;
    assert!(all_in, "the sleeper's statement never started");
    drop(admin_conn);
    // Every slot of app__acme is taken: these two wait for one.
    let waiting: Vec<_> = (0..2)
        .map(|_| {
            let url = f.app.clone();
            tokio::spawn(async move {
                match PgConnection::connect(&url).await {
                    Ok(c) => next_query_sees_57p01(c).await,
                    Err(e) if sqlstate(&e) == "57P01" => Ok(()),
                    Err(e) => Err(sqlstate(&e)),
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;

    // SIGTERM; tdb exits on its own once every session is over.
    let stopping = tokio::task::spawn_blocking(move || {
        let mut s = s;
        let status = s.stop();
        (s, status)
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    for (c, name) in finishing
        .iter_mut()
        .zip(["finish0", "finish1", "pfinish0", "pfinish1", "pfinish2"])
    {
        insert(c, &format!("{name}b")).await;
        sqlx::raw_sql("COMMIT")
            .execute(c)
            .await
            .expect("a transaction finishes within the grace period");
    }
    let (mut s, status) = stopping.await.expect("stop");
    assert!(status.expect("tdb stops").success(), "tdb's exit status");

    let mut seen: Vec<(String, Seen)> = Vec::new();
    let groups = [
        ("outliving", outliving),
        ("committed", finishing),
        ("idle", idle),
        ("between transactions", between),
    ];
    for (what, sessions) in groups {
        for (i, c) in sessions.into_iter().enumerate() {
            seen.push((format!("{what} {i}"), next_query_sees_57p01(c).await));
        }
    }
    seen.push(("sleeper".into(), sleeping.await.expect("sleeper")));
    seen.push(("parked by a hold".into(), held.await.expect("held")));
    for (i, w) in waiting.into_iter().enumerate() {
        seen.push((format!("waiting for a slot {i}"), w.await.expect("waiting")));
    }
    {
        use std::io::Write;
        let _ = writeln!(psql_in, "SELECT 'after shutdown';");
    }
    drop(psql_in);
    let out = psql_idle.wait_with_output().expect("psql");
    let said = stderr(&out);
    seen.push((
        "psql".into(),
        if said.contains("57P01") {
            Ok(())
        } else {
            Err(said)
        },
    ));
    assert_eq!(seen.len(), 20);
    let wrong: Vec<_> = seen.iter().filter(|(_, r)| r.is_err()).collect();
    assert!(
        wrong.is_empty(),
        "clients that did not see 57P01: {wrong:?}"
    );

    // What committed is there; what did not is not.
    s.restart().await.expect("restart");
    for (url, expected) in [
        (&f.app, vec![]),
        (
            &f.app_globex,
            vec!["finish0", "finish0b", "finish1", "finish1b"],
        ),
        (
            &f.pooled_globex,
            vec![
                "pfinish0",
                "pfinish0b",
                "pfinish1",
                "pfinish1b",
                "pfinish2",
                "pfinish2b",
            ],
        ),
    ] {
        let mut c = connect(url).await;
        let names: Vec<String> = sqlx::query("SELECT name FROM items ORDER BY name")
            .fetch_all(&mut c)
            .await
            .expect("items")
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(names, expected, "{url}");
    }
}
