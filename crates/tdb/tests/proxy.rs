//! The PostgreSQL proxy with real clients: psql (sslmode=require and verify-full), pgbench and
//! sqlx, against tenants and workspaces; credentials and their scopes; suspension, holds,
//! limits, malformed packets, the query log and DDL capture.

mod common;

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use reqwest::Method;
use serde_json::json;
use sqlx::{Connection, PgConnection, Row};
use tdb_testkit::TdbServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Fixture {
    key: String,
    project_id: String,
    proxy_password: String,
    /// The workspace's connection string (its own minted credential).
    workspace: String,
    acme: String,
    globex: String,
    port: u16,
}

async fn fixture(s: &TdbServer) -> Fixture {
    tdb_testkit::init();
    let account = signup(s, "proxy@example.com", "Proxy").await;
    let key = str_of(&account, "api_key").to_string();
    let (st, ws) = post(
        s,
        "/workspaces",
        Some(&key),
        json!({"name": "app", "database": "PostgreSQL", "mode": "tenant"}),
    )
    .await;
    assert_eq!(st, 201, "{ws}");
    let workspace = str_of(&ws, "connection_string").to_string();
    // The schema is designed through the proxy: its DDL must land in the pending changes.
    let out = psql(
        &workspace,
        &[
            "-c",
            "CREATE TABLE items (id serial PRIMARY KEY, name text NOT NULL, qty int NOT NULL DEFAULT 0)",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let (st, diff) = get(s, "/workspaces/app/diff", &key).await;
    assert_eq!(st, 200);
    assert_eq!(diff["count"], 1, "{diff}");
    let (st, dep) = post(
        s,
        "/deployments",
        Some(&key),
        json!({"blueprint_name": "app"}),
    )
    .await;
    assert_eq!(st, 201, "{dep}");
    wait_deployment(s, &key, str_of(&dep, "id")).await;
    let mut urls = Vec::new();
    for tenant in ["acme", "globex"] {
        let (st, t) = post(
            s,
            "/tenants",
            Some(&key),
            json!({"tenant_id": tenant, "databases": [{"blueprint": "app"}]}),
        )
        .await;
        assert_eq!(st, 201, "{t}");
        urls.push(str_of(&t["databases"][0]["connection"], "connection_string").to_string());
    }
    let port = ws["connection"]["port"].as_u64().expect("port") as u16;
    Fixture {
        key,
        project_id: str_of(&account, "project_id").to_string(),
        proxy_password: str_of(&account, "proxy_password").to_string(),
        workspace,
        globex: urls.pop().expect("globex"),
        acme: urls.pop().expect("acme"),
        port,
    }
}

/// Changes the workspace's settings (which also govern its blueprint's tenants).
async fn patch_settings(s: &TdbServer, f: &Fixture, body: serde_json::Value) -> serde_json::Value {
    let (st, reply) = call(
        s,
        Method::PATCH,
        "/workspaces/app/settings",
        Some(&f.key),
        Some(&body.to_string()),
    )
    .await;
    assert_eq!(st, 200, "{reply}");
    reply
}

async fn wait_deployment(s: &TdbServer, key: &str, id: &str) {
    for _ in 0..300 {
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
        .arg("-X")
        .arg("-v")
        .arg("ON_ERROR_STOP=1")
        .arg("-At")
        .arg(url)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("psql runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).trim().to_string()
}

/// A connection string with another user and password.
fn with_login(url: &str, user: &str, password: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("url");
    let (_, host) = rest.split_once('@').expect("userinfo");
    format!("{scheme}://{user}:{password}@{host}")
}

fn with_database(url: &str, database: &str) -> String {
    let (base, query) = url.split_once('?').expect("query");
    let (server, _) = base.rsplit_once('/').expect("path");
    format!("{server}/{database}?{query}")
}

async fn catalog(s: &TdbServer) -> PgConnection {
    let url = s.managed_admin_url("tdb_catalog").expect("catalog url");
    PgConnection::connect(&url).await.expect("catalog connects")
}

/// The catalog as the control plane uses it (holds, releases, route announcements).
async fn control(s: &TdbServer) -> tdb_catalog::Catalog {
    let url = s.managed_admin_url("tdb_catalog").expect("catalog url");
    let options: sqlx::postgres::PgConnectOptions = url.parse().expect("catalog url parses");
    tdb_catalog::Catalog::open(options, 2)
        .await
        .expect("catalog opens")
}

#[tokio::test]
async fn psql_pgbench_and_sqlx_work_through_the_proxy() {
    let s = start().await;
    let f = fixture(&s).await;

    // psql over TLS (sslmode=require): simple protocol, COPY in and out.
    let out = psql(
        &f.acme,
        &[
            "-c",
            "INSERT INTO items (name, qty) VALUES ('bolt', 3), ('nut', 5)",
            "-c",
            "\\copy items (name, qty) FROM STDIN WITH (FORMAT csv)",
            "-c",
            "SELECT count(*), sum(qty) FROM items",
        ],
    );
    // `\copy FROM STDIN` reads psql's stdin, which is empty here: zero rows, still a COPY.
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).ends_with("2|8"), "{}", stdout(&out));
    let mut copy_in = Command::new("psql")
        .args(["-X", "-At", "-v", "ON_ERROR_STOP=1", &f.acme, "-c"])
        .arg("COPY items (name, qty) FROM STDIN WITH (FORMAT csv)")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("psql");
    {
        use std::io::Write;
        let mut stdin = copy_in.stdin.take().expect("stdin");
        for i in 0..5000 {
            writeln!(stdin, "washer{i},{}", i % 7).expect("write");
        }
    }
    let out = copy_in.wait_with_output().expect("psql");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "COPY 5000");
    let out = psql(
        &f.acme,
        &["-c", "COPY (SELECT name FROM items ORDER BY id) TO STDOUT"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).lines().count(), 5002);

    // verify-full against the CA tdb generated.
    let ca = s.data_dir().join("tls/ca.crt");
    let verify = format!(
        "{}&sslrootcert={}",
        f.acme.replace("sslmode=require", "sslmode=verify-full"),
        ca.display()
    );
    let out = psql(&verify, &["-c", "SELECT count(*) FROM items"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "5002");
    let wrong_ca = format!(
        "{}&sslrootcert={}",
        f.acme.replace("sslmode=require", "sslmode=verify-full"),
        s.data_dir().join("master.key").display()
    );
    assert!(!psql(&wrong_ca, &["-c", "SELECT 1"]).status.success());

    // DDL on a tenant gets the spec's message.
    let out = psql(&f.acme, &["-c", "CREATE TABLE sneaky (id int)"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out)
            .contains("DDL not allowed on tenant databases. Deploy schema through blueprints."),
        "{}",
        stderr(&out)
    );

    // sqlx over verify-full: extended protocol with parameters, a large result, notifications.
    let mut conn = PgConnection::connect(&verify).await.expect("sqlx connects");
    let row = sqlx::query("SELECT name, qty FROM items WHERE qty = $1 AND name = $2")
        .bind(5i32)
        .bind("nut")
        .fetch_one(&mut conn)
        .await
        .expect("prepared query");
    assert_eq!(row.get::<String, _>(0), "nut");
    let big: Vec<(i64, String)> =
        sqlx::query_as("SELECT g::int8, repeat('x', 200) FROM generate_series(1, 200000) g")
            .fetch_all(&mut conn)
            .await
            .expect("large result");
    assert_eq!(big.len(), 200_000);
    assert_eq!(big[199_999].0, 200_000);
    let mut listener = sqlx::postgres::PgListener::connect(&verify)
        .await
        .expect("listener");
    listener.listen("items_changed").await.expect("listen");
    sqlx::query("SELECT pg_notify('items_changed', 'bolt')")
        .execute(&mut conn)
        .await
        .expect("notify");
    let note = tokio::time::timeout(Duration::from_secs(5), listener.recv())
        .await
        .expect("notification in time")
        .expect("notification");
    assert_eq!(note.payload(), "bolt");
    drop(listener);

    // Session pooling: the same server connection serves the next client, reset.
    sqlx::query("SET application_name = 'dirty'")
        .execute(&mut conn)
        .await
        .expect("set");
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut conn)
        .await
        .expect("pid");
    conn.close().await.expect("close");
    // Released to the pool once its reset (DISCARD ALL) has run; on a loaded machine that can
    // take a moment, so wait for the server to show it rather than for a fixed time.
    let admin_url = s.managed_admin_url("postgres").expect("admin url");
    let mut admin = PgConnection::connect(&admin_url).await.expect("admin");
    let released = Instant::now();
    loop {
        let reset: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_stat_activity
                             WHERE pid = $1 AND state = 'idle' AND query = 'DISCARD ALL')",
        )
        .bind(pid)
        .fetch_one(&mut admin)
        .await
        .expect("pg_stat_activity");
        if reset {
            break;
        }
        assert!(
            released.elapsed() < Duration::from_secs(10),
            "the server connection was never reset for reuse"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The server shows the reset as done a moment before the proxy has read its answer and put
    // the connection back in the pool.
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The listener's server connection was released too (same role and database), so the pool
    // may hand out either of the reset connections: the next client must get one of them.
    let pooled: Vec<i32> = sqlx::query_scalar(
        "SELECT pid FROM pg_stat_activity WHERE state = 'idle' AND query = 'DISCARD ALL'",
    )
    .fetch_all(&mut admin)
    .await
    .expect("pooled connections");
    let _ = admin.close().await;
    assert!(pooled.contains(&pid), "{pooled:?}");
    let mut again = PgConnection::connect(&verify).await.expect("reconnect");
    let (pid2, app): (i32, String) =
        sqlx::query_as("SELECT pg_backend_pid(), current_setting('application_name')")
            .fetch_one(&mut again)
            .await
            .expect("pid");
    assert!(
        pooled.contains(&pid2),
        "the server connection was not reused: {pid2} is not one of {pooled:?}"
    );
    assert_ne!(app, "dirty", "the pooled session was not reset");
    again.close().await.expect("close");

    // Cancel: psql sends a CancelRequest on SIGINT; the proxy maps it to the right backend.
    let started = Instant::now();
    let mut sleeper = Command::new("psql")
        .args(["-X", "-At", &f.acme, "-c", "SELECT pg_sleep(30)"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("psql");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(sleeper.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .expect("SIGINT");
    let out = tokio::task::spawn_blocking(move || {
        let status = sleeper.wait().expect("wait");
        let mut err = String::new();
        std::io::Read::read_to_string(&mut sleeper.stderr.take().expect("stderr"), &mut err)
            .expect("read");
        (status, err)
    })
    .await
    .expect("join");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "cancel took {:?}",
        started.elapsed()
    );
    assert!(
        out.1.contains("canceling statement due to user request"),
        "{}",
        out.1
    );

    // sqlx on the workspace: extended protocol, and DDL through a prepared statement is captured.
    let mut ws = PgConnection::connect(&f.workspace)
        .await
        .expect("workspace connects");
    sqlx::query("CREATE TABLE audit (id bigserial PRIMARY KEY, at timestamptz DEFAULT now())")
        .execute(&mut ws)
        .await
        .expect("DDL on the workspace");
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM items WHERE qty >= $1")
        .bind(0i32)
        .fetch_one(&mut ws)
        .await
        .expect("workspace query");
    assert_eq!(n, 0, "the workspace has its own rows");
    ws.close().await.expect("close");

    // pgbench through the proxy: the workspace takes its schema, then select-only (simple and
    // prepared) and TPC-B with several clients.
    let out = Command::new("pgbench")
        .args(["-i", "-s", "1", "-q", &f.workspace])
        .output()
        .expect("pgbench -i");
    assert!(out.status.success(), "{}", stderr(&out));
    for args in [
        &[
            "-n", "-S", "-M", "simple", "-c", "4", "-j", "2", "-t", "200",
        ][..],
        &[
            "-n", "-S", "-M", "prepared", "-c", "4", "-j", "2", "-t", "200",
        ][..],
        &["-n", "-M", "extended", "-c", "4", "-j", "2", "-t", "50"][..],
        &["-n", "-c", "2", "-t", "50"][..],
    ] {
        let out = Command::new("pgbench")
            .args(args)
            .arg(&f.workspace)
            .output()
            .expect("pgbench");
        let text = stdout(&out);
        assert!(out.status.success(), "{args:?}: {}\n{text}", stderr(&out));
        assert!(text.contains("number of failed transactions: 0"), "{text}");
    }
    // A tenant under pgbench with a custom script (tenants cannot run DDL, so no -i).
    let script = tempfile::NamedTempFile::new().expect("tmp");
    std::fs::write(
        script.path(),
        "\\set id random(1, 2)\nSELECT name FROM items WHERE id = :id;\nUPDATE items SET qty = qty + 1 WHERE id = :id;\n",
    )
    .expect("script");
    let out = Command::new("pgbench")
        .args([
            "-n", "-M", "prepared", "-c", "4", "-j", "2", "-t", "100", "-f",
        ])
        .arg(script.path())
        .arg(&f.acme)
        .output()
        .expect("pgbench");
    assert!(out.status.success(), "{}\n{}", stderr(&out), stdout(&out));
    let out = psql(&f.acme, &["-c", "SELECT sum(qty) FROM items WHERE id <= 2"]);
    assert_eq!(stdout(&out), "408", "{}", stderr(&out));

    // The workspace's pgbench DDL was captured; DDL in a rolled-back transaction was not.
    let out = psql(
        &f.workspace,
        &[
            "-c",
            "BEGIN",
            "-c",
            "CREATE TABLE scratch (id int)",
            "-c",
            "ROLLBACK",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    // A statement past the inline parsing limit is analysed off the proxy's thread, and captured
    // all the same.
    let columns: Vec<String> = (0..900).map(|i| format!("wide_column_{i} int")).collect();
    let wide = format!("CREATE TABLE wide ({})", columns.join(", "));
    assert!(wide.len() > 16 * 1024, "{}", wide.len());
    let out = psql(&f.workspace, &["-c", &wide]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (_, diff) = get(&s, "/workspaces/app/diff", &f.key).await;
    let statements: Vec<&str> = diff["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .map(|c| c["statement"].as_str().unwrap_or(""))
        .collect();
    assert!(
        statements.iter().any(|t| t.contains("pgbench_accounts")),
        "{statements:?}"
    );
    assert!(
        statements.iter().any(|t| t.contains("CREATE TABLE audit")),
        "{statements:?}"
    );
    assert!(
        !statements.iter().any(|t| t.contains("scratch")),
        "{statements:?}"
    );
    assert!(
        statements
            .iter()
            .any(|t| t.starts_with("CREATE TABLE wide") && t.contains("wide_column_899 int)")),
        "the long CREATE TABLE was not captured"
    );

    // The query log has the tenant's statements, with rows, errors and their SQLSTATE.
    let mut cat = catalog(&s).await;
    let mut rows = Vec::new();
    for _ in 0..100 {
        rows = sqlx::query(
            "SELECT statement, success, sqlstate, rows, source, duration_us FROM query_log
              WHERE project_id = $1 AND tenant = 'acme' ORDER BY id",
        )
        .bind(&f.project_id)
        .fetch_all(&mut cat)
        .await
        .expect("query log");
        // The writer stores a batch a moment after its first record: wait for the last one.
        let updates = rows
            .iter()
            .filter(|r| r.get::<String, _>(0).starts_with("UPDATE items SET qty"))
            .count();
        if updates >= 400 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let find = |needle: &str| {
        rows.iter()
            .find(|r| r.get::<String, _>(0).contains(needle))
            .unwrap_or_else(|| panic!("no log record for {needle}"))
    };
    let insert = find("INSERT INTO items (name, qty) VALUES");
    assert!(insert.get::<bool, _>(1));
    assert_eq!(insert.get::<Option<i64>, _>(3), Some(2));
    assert_eq!(insert.get::<String, _>(4), "proxy");
    let ddl = find("CREATE TABLE sneaky");
    assert!(!ddl.get::<bool, _>(1));
    assert_eq!(ddl.get::<Option<String>, _>(2).as_deref(), Some("42501"));
    let prepared = find("WHERE qty = $1 AND name = $2");
    assert_eq!(prepared.get::<Option<i64>, _>(3), Some(1));
    let updates = rows
        .iter()
        .filter(|r| r.get::<String, _>(0).starts_with("UPDATE items SET qty"))
        .count();
    assert_eq!(updates, 400, "every pgbench UPDATE is logged");
    assert!(
        !rows
            .iter()
            .any(|r| r.get::<String, _>(0).contains("generate_series")
                && r.get::<Option<String>, _>(2).is_some())
    );
}

#[tokio::test]
async fn credentials_open_only_what_they_cover() {
    let s = start().await;
    let f = fixture(&s).await;
    let acme_user = f
        .acme
        .split("://")
        .nth(1)
        .and_then(|r| r.split(':').next())
        .expect("user");

    // A tenant credential opens its own tenant only.
    let out = psql(&with_database(&f.acme, "app__globex"), &["-c", "SELECT 1"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("permission denied for database \"app__globex\""),
        "{}",
        stderr(&out)
    );
    let out = psql(
        &with_database(&f.acme, "app_workspace"),
        &["-c", "SELECT 1"],
    );
    assert!(!out.status.success());
    // Another tenant's data is out of reach even by name: each database has its own roles.
    let out = psql(
        &f.globex,
        &["-c", "INSERT INTO items (name) VALUES ('globex-only')"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = psql(&f.acme, &["-c", "SELECT count(*) FROM items"]);
    assert_eq!(stdout(&out), "0");

    // Unknown routing names and unknown tenants.
    let project = with_login(&f.acme, &f.project_id, &f.proxy_password);
    let out = psql(&with_database(&project, "app__nobody"), &["-c", "SELECT 1"]);
    assert!(
        stderr(&out).contains("database \"app__nobody\" does not exist"),
        "{}",
        stderr(&out)
    );
    let out = psql(&with_database(&project, "postgres"), &["-c", "SELECT 1"]);
    assert!(
        stderr(&out).contains("database \"postgres\" does not exist"),
        "{}",
        stderr(&out)
    );
    // The project's proxy password opens every tenant and the workspace.
    for db in ["app__acme", "app__globex", "app_workspace"] {
        let out = psql(
            &with_database(&project, db),
            &["-c", "SELECT count(*) FROM items"],
        );
        assert!(out.status.success(), "{db}: {}", stderr(&out));
    }

    // A read credential reads and cannot write.
    let (st, minted) = post(
        &s,
        "/tenants/acme/credentials",
        Some(&f.key),
        json!({"role": "read"}),
    )
    .await;
    assert_eq!(st, 201, "{minted}");
    let read = str_of(&minted["connection"], "connection_string").to_string();
    let out = psql(&read, &["-c", "SELECT count(*) FROM items"]);
    assert!(out.status.success(), "{}", stderr(&out));
    for write in [
        "INSERT INTO items (name) VALUES ('x')",
        "BEGIN READ WRITE; INSERT INTO items (name) VALUES ('x'); COMMIT",
        "SET default_transaction_read_only = off; UPDATE items SET qty = 1",
        "DELETE FROM items",
    ] {
        let out = psql(&read, &["-c", write]);
        assert!(!out.status.success(), "a read credential ran: {write}");
    }
    let (st, bad) = post(
        &s,
        "/tenants/acme/credentials",
        Some(&f.key),
        json!({"role": "owner"}),
    )
    .await;
    assert_eq!((st, bad["field"].as_str()), (400, Some("role")), "{bad}");

    // A wrong password and an unknown user look the same.
    let wrong = psql(
        &with_login(&f.acme, acme_user, "tdb_pw_wrong"),
        &["-c", "SELECT 1"],
    );
    let unknown = psql(
        &with_login(&f.acme, "t_nobody", "tdb_pw_wrong"),
        &["-c", "SELECT 1"],
    );
    assert!(!wrong.status.success() && !unknown.status.success());
    let wrong_err = stderr(&wrong).replace(acme_user, "USER");
    let unknown_err = stderr(&unknown).replace("t_nobody", "USER");
    assert!(
        wrong_err.contains("password authentication failed"),
        "{wrong_err}"
    );
    assert_eq!(wrong_err, unknown_err);
}

#[tokio::test]
async fn suspension_ends_sessions_and_holds_park_queries() {
    let s = start().await;
    let f = fixture(&s).await;
    let mut conn = PgConnection::connect(&f.acme).await.expect("connect");
    sqlx::query("SELECT 1")
        .execute(&mut conn)
        .await
        .expect("works");

    // Suspend: the open session ends and new ones are refused, within a second.
    let (st, body) = call(
        &s,
        Method::POST,
        "/tenants/acme/suspend",
        Some(&f.key),
        None,
    )
    .await;
    assert_eq!(st, 200, "{body}");
    let suspended = Instant::now();
    let mut ended = None;
    while suspended.elapsed() < Duration::from_secs(3) {
        if sqlx::query("SELECT 1").execute(&mut conn).await.is_err() {
            ended = Some(suspended.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ended = ended.expect("the session survived the suspension");
    eprintln!("suspension ended the open session after {ended:?}");
    assert!(ended < Duration::from_secs(1), "took {ended:?}");
    let out = psql(&f.acme, &["-c", "SELECT 1"]);
    assert!(
        stderr(&out).contains("tenant \"acme\" is suspended"),
        "{}",
        stderr(&out)
    );
    // Another tenant is untouched.
    assert!(psql(&f.globex, &["-c", "SELECT 1"]).status.success());

    let (st, _) = call(&s, Method::POST, "/tenants/acme/resume", Some(&f.key), None).await;
    assert_eq!(st, 200);
    let out = psql(&f.acme, &["-c", "SELECT 1"]);
    assert!(out.status.success(), "{}", stderr(&out));

    // A hold parks new queries (not connections) until released; the client sees a delay.
    let mut cat = catalog(&s).await;
    let control = control(&s).await;
    let tenant_id: String = sqlx::query_scalar("SELECT id FROM tenants WHERE name = 'acme'")
        .fetch_one(&mut cat)
        .await
        .expect("tenant id");
    let mut conn = PgConnection::connect(&f.acme).await.expect("connect");
    control.hold_tenant(&tenant_id, 20000).await.expect("hold");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let parked = tokio::spawn(async move {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM items")
            .fetch_one(&mut conn)
            .await
            .expect("the held query succeeds");
        (n, started.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(!parked.is_finished(), "a held tenant answered a query");
    // New connections still open while held (their queries wait).
    let mut other = PgConnection::connect(&f.globex)
        .await
        .expect("globex connect");
    sqlx::query("SELECT 1")
        .execute(&mut other)
        .await
        .expect("globex is not held");
    control.release_tenant(&tenant_id).await.expect("release");
    let (n, waited) = parked.await.expect("join");
    assert_eq!(n, 0);
    assert!(waited >= Duration::from_millis(700), "{waited:?}");
    assert!(waited < Duration::from_secs(5), "{waited:?}");

    // A hold also ends by itself at its deadline.
    let mut conn = PgConnection::connect(&f.acme).await.expect("connect");
    control.hold_tenant(&tenant_id, 800).await.expect("hold");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    sqlx::query("SELECT 1")
        .execute(&mut conn)
        .await
        .expect("runs after the deadline");
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );

    // Moving a tenant to the trash ends its sessions too.
    let (st, _) = delete(&s, "/tenants/acme", &f.key).await;
    assert_eq!(st, 200);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(sqlx::query("SELECT 1").execute(&mut conn).await.is_err());
    let out = psql(&f.acme, &["-c", "SELECT 1"]);
    assert!(
        stderr(&out).contains("tenant \"acme\" is deleted"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn limits_apply_to_tenant_sessions() {
    let s = start().await;
    let f = fixture(&s).await;
    patch_settings(
        &s,
        &f,
        json!({"max_connections": 2, "query_timeout_ms": 300}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut a = PgConnection::connect(&f.acme).await.expect("first");
    let _b = PgConnection::connect(&f.acme).await.expect("second");
    let started = Instant::now();
    let third = PgConnection::connect(&f.acme).await;
    let err = third
        .expect_err("a third connection over max_connections")
        .to_string();
    assert!(
        err.contains("too many connections for tenant \"acme\""),
        "{err}"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "it should wait briefly first"
    );
    // The statement timeout is the workspace's query_timeout_ms.
    let err = sqlx::query("SELECT pg_sleep(2)")
        .execute(&mut a)
        .await
        .expect_err("statement timeout")
        .to_string();
    assert!(err.contains("statement timeout"), "{err}");
    drop(a);
    tokio::time::sleep(Duration::from_millis(200)).await;
    PgConnection::connect(&f.acme)
        .await
        .expect("a slot freed up");
}

/// Sends `bytes` as the first thing on a fresh connection and reports whether the proxy closed
/// it (reading to the end, at most 5 s), with what it sent.
async fn probe(port: u16, bytes: &[u8]) -> Vec<u8> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    stream.write_all(bytes).await.expect("write");
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut got))
        .await
        .expect("the proxy closed the connection")
        .ok();
    got
}

#[tokio::test]
async fn malformed_startup_packets_are_closed() {
    let s = start().await;
    let f = fixture(&s).await;
    let v3 = 196_608u32.to_be_bytes();
    let packet = |len: i32, rest: &[u8]| [&len.to_be_bytes()[..], rest].concat();
    let mut startup = Vec::new();
    for (k, v) in [("user", f.project_id.as_str()), ("database", "app__acme")] {
        startup.extend_from_slice(k.as_bytes());
        startup.push(0);
        startup.extend_from_slice(v.as_bytes());
        startup.push(0);
    }
    startup.push(0);
    let good = packet(8 + startup.len() as i32, &[&v3[..], &startup].concat());
    let ssl = packet(8, &80_877_103u32.to_be_bytes());
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("length < 8", packet(4, &v3)),
        ("length > 10,000", packet(10_001, &v3)),
        ("negative length", packet(-8, &v3)),
        ("length 2^31", packet(i32::MIN, &v3)),
        ("protocol 2.0", packet(8, &0x0002_0000u32.to_be_bytes())),
        ("protocol 4.0", packet(12, &[0, 4, 0, 0, 0, 0, 0, 0])),
        (
            "data after SSLRequest",
            [ssl.clone(), good.clone()].concat(),
        ),
        (
            "a second StartupMessage",
            [good.clone(), good.clone()].concat(),
        ),
        ("garbage", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
    ];
    for (what, bytes) in cases {
        let got = probe(f.port, &bytes).await;
        match what {
            // The proxy agrees to TLS, then the handshake sees a startup packet, not a
            // ClientHello: nothing sent before TLS is taken as protocol.
            "data after SSLRequest" => assert_eq!(got.first(), Some(&b'S'), "{what}"),
            // The second packet arrives where the SASL response belongs.
            "a second StartupMessage" => {
                assert_eq!(got.first(), Some(&b'R'), "{what}");
                assert!(
                    !got.windows(5).any(|w| w == [b'R', 0, 0, 0, 8]),
                    "{what}: authenticated"
                );
            }
            _ => assert!(got.is_empty() || got[0] == b'E', "{what}: {got:?}"),
        }
    }
    // Still serving.
    let out = psql(&f.acme, &["-c", "SELECT 1"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[tokio::test]
async fn shutdown_lets_open_transactions_finish() {
    let mut s = start().await;
    let f = fixture(&s).await;
    let mut busy = PgConnection::connect(&f.acme).await.expect("connect");
    let mut idle = PgConnection::connect(&f.globex).await.expect("connect");
    sqlx::raw_sql("BEGIN; INSERT INTO items (name) VALUES ('in-flight')")
        .execute(&mut busy)
        .await
        .expect("open a transaction");
    let pid = nix::unistd::Pid::from_raw(s.pid().expect("running") as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
    tokio::time::sleep(Duration::from_millis(500)).await;
    // A session between transactions is closed at once; new connections are refused.
    assert!(sqlx::query("SELECT 1").execute(&mut idle).await.is_err());
    assert!(PgConnection::connect(&f.acme).await.is_err());
    // The open transaction may finish, and then its session ends too.
    sqlx::raw_sql("INSERT INTO items (name) VALUES ('still'); COMMIT")
        .execute(&mut busy)
        .await
        .expect("the transaction finishes during shutdown");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(sqlx::query("SELECT 1").execute(&mut busy).await.is_err());
    s.restart().await.expect("restart");
    let out = psql(
        &f.acme,
        &["-c", "SELECT string_agg(name, ',' ORDER BY id) FROM items"],
    );
    assert_eq!(stdout(&out), "in-flight,still", "{}", stderr(&out));
}

#[tokio::test]
async fn transaction_pooling_shares_server_connections_and_keeps_prepared_statements() {
    let s = start().await;
    let f = fixture(&s).await;
    let body = patch_settings(&s, &f, json!({"pool_mode": "transaction"})).await;
    assert_eq!(body["settings"]["pool_mode"], "transaction");
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Six open client sessions, used one after another, share one server connection.
    let mut clients = Vec::new();
    for _ in 0..6 {
        clients.push(PgConnection::connect(&f.acme).await.expect("connect"));
    }
    let mut pids = std::collections::HashSet::new();
    for round in 0..3 {
        for (i, c) in clients.iter_mut().enumerate() {
            // Named prepared statements (sqlx prepares and caches them): every client names its
            // first statement alike, with different text.
            let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
                .fetch_one(&mut *c)
                .await
                .expect("pid");
            pids.insert(pid);
            let sql = format!("SELECT $1::int + {i}");
            let n: i32 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .bind(round)
                .fetch_one(&mut *c)
                .await
                .expect("a prepared statement on whichever server connection");
            assert_eq!(n, round + i as i32);
        }
    }
    assert!(pids.len() <= 2, "server connections used: {pids:?}");
    // An explicit transaction keeps its server connection to the end.
    let c = &mut clients[0];
    sqlx::raw_sql("BEGIN; INSERT INTO items (name) VALUES ('tx')")
        .execute(&mut *c)
        .await
        .expect("begin");
    let inside: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut *c)
        .await
        .expect("pid");
    let mut other = PgConnection::connect(&f.acme).await.expect("connect");
    let seen: i64 = sqlx::query_scalar("SELECT count(*) FROM items WHERE name = 'tx'")
        .fetch_one(&mut other)
        .await
        .expect("other client");
    assert_eq!(seen, 0, "another client saw an uncommitted row");
    let still: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut *c)
        .await
        .expect("pid");
    assert_eq!(
        inside, still,
        "a transaction moved between server connections"
    );
    sqlx::raw_sql("COMMIT")
        .execute(&mut *c)
        .await
        .expect("commit");
    // Under transaction pooling max_connections (10) counts server connections in use, and
    // client sessions have max_client_connections (100): see tests/proxy_pooling.rs.
    drop(clients);
    drop(other);
    tokio::time::sleep(Duration::from_millis(300)).await;

    // pgbench's prepared and extended modes, several clients at once.
    let script = tempfile::NamedTempFile::new().expect("tmp");
    std::fs::write(
        script.path(),
        "\\set id random(1, 2)\nBEGIN;\nSELECT name FROM items WHERE id = :id;\nUPDATE items SET qty = qty + 1 WHERE id = :id;\nEND;\n",
    )
    .expect("script");
    psql(
        &f.acme,
        &["-c", "INSERT INTO items (name) VALUES ('a'), ('b')"],
    );
    for mode in ["prepared", "extended", "simple"] {
        let out = Command::new("pgbench")
            .args(["-n", "-M", mode, "-c", "4", "-j", "2", "-t", "100", "-f"])
            .arg(script.path())
            .arg(&f.acme)
            .output()
            .expect("pgbench");
        let text = stdout(&out);
        assert!(out.status.success(), "{mode}: {}\n{text}", stderr(&out));
        assert!(text.contains("number of failed transactions: 0"), "{text}");
    }
    let out = psql(&f.acme, &["-c", "SELECT sum(qty) FROM items WHERE id <= 2"]);
    assert_eq!(stdout(&out), "1200", "{}", stderr(&out));

    // A cutover: hold the tenant, point it at another address, release. The parked transaction
    // waits without holding a server connection, then runs at the new location, where its named
    // statement is prepared again.
    let mut cat = catalog(&s).await;
    let control = control(&s).await;
    let tenant_id: String = sqlx::query_scalar("SELECT id FROM tenants WHERE name = 'acme'")
        .fetch_one(&mut cat)
        .await
        .expect("tenant id");
    let mut c = PgConnection::connect(&f.acme).await.expect("connect");
    let before: i32 = sqlx::query_scalar("SELECT pg_backend_pid() + $1")
        .bind(0i32)
        .fetch_one(&mut c)
        .await
        .expect("pid");
    // Every server connection to the tenant's database that exists before the move.
    let mut admin = PgConnection::connect(&s.managed_admin_url("postgres").expect("admin url"))
        .await
        .expect("admin");
    let physical: String = sqlx::query_scalar(
        "SELECT d.physical_db FROM tenant_databases d JOIN tenants t ON t.id = d.tenant_id
          WHERE t.name = 'acme'",
    )
    .fetch_one(&mut cat)
    .await
    .expect("physical name");
    let old_pids: Vec<i32> =
        sqlx::query_scalar("SELECT pid FROM pg_stat_activity WHERE datname = $1")
            .bind(&physical)
            .fetch_all(&mut admin)
            .await
            .expect("server connections");
    assert!(old_pids.contains(&before), "{old_pids:?} {before}");
    control.hold_tenant(&tenant_id, 20000).await.expect("hold");
    sqlx::query(
        // Another spelling of the same server's socket directory: a new address for the route.
        "UPDATE servers SET host = host || '/.' WHERE id =
           (SELECT d.server_id FROM tenant_databases d JOIN tenants t ON t.id = d.tenant_id
             WHERE t.name = 'acme')",
    )
    .execute(&mut cat)
    .await
    .expect("move");
    control
        .notify_tenant_changed(&tenant_id)
        .await
        .expect("announce");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let parked = tokio::spawn(async move {
        let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid() + $1")
            .bind(0i32)
            .fetch_one(&mut c)
            .await
            .expect("the parked query runs after the release");
        pid
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!parked.is_finished(), "a held tenant answered");
    control.release_tenant(&tenant_id).await.expect("release");
    let after = parked.await.expect("join");
    assert!(
        !old_pids.contains(&after),
        "the transaction ran on a connection to the old location"
    );
}
