//! Dedicated (L2) tenants and server pools against a real `tdb serve`: an L2 tenant from
//! `provisioning` to `ready` on a PostgreSQL server of its own, used through the proxy with psql
//! and a driver, deployed to, queried, backed up, trashed (its server stops), restored (it
//! starts) and deleted (it goes); its server back after a restart of tdb and after it dies;
//! placement over two shared servers and two regions, full and draining servers; the server
//! list for operators only.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::*;
use reqwest::Method;
use serde_json::{Value, json};
use tdb_testkit::{ServeOptions, TdbServer, TestPostgres};

const OPERATOR: &str = "ops@example.com";

async fn start_paid(extra_toml: &str) -> TdbServer {
    let options = ServeOptions {
        config_toml: Some(format!(
            "default_tier = \"paid\"\noperators = [\"{OPERATOR}\"]\n{extra_toml}"
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

/// Polls `GET /tenants/{name}` until its status is not `provisioning` (3 minutes at most).
async fn wait_ready(s: &TdbServer, key: &str, name: &str) -> Value {
    let started = Instant::now();
    loop {
        let (st, t) = get(s, &format!("/tenants/{name}"), key).await;
        assert_eq!(st, 200, "{t}");
        if t["status"] != "provisioning" {
            return t;
        }
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "tenant {name} is still provisioning\n{}",
            s.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
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

fn psql(url: &str, sql: &str) -> Result<String, String> {
    psql_with_options(url, "", sql)
}

/// Runs `sql` with psql until it succeeds (a server still starting refuses), 90 s at most.
async fn psql_eventually(s: &TdbServer, url: &str, sql: &str) -> String {
    let started = Instant::now();
    loop {
        match psql(url, sql) {
            Ok(out) => return out,
            Err(e) => assert!(
                started.elapsed() < Duration::from_secs(90),
                "{sql}: {e}\n{}",
                s.log_tail()
            ),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn servers(s: &TdbServer, key: &str) -> Vec<Value> {
    let (st, list) = get(s, "/servers", key).await;
    assert_eq!(st, 200, "{list}");
    list["servers"].as_array().expect("servers").clone()
}

fn named<'a>(servers: &'a [Value], name: &str) -> &'a Value {
    servers
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no server {name} in {servers:?}"))
}

fn dedicated(servers: &[Value]) -> Vec<&Value> {
    servers
        .iter()
        .filter(|s| s["role"] == "dedicated")
        .collect()
}

async fn hard_delete(s: &TdbServer, key: &str, tenant: &str) {
    let path = format!("/tenants/{tenant}?hard=true");
    let (st, body) = call(s, Method::DELETE, &path, Some(key), None).await;
    assert_eq!(st, 200, "{body}");
}

/// The directory the local provisioner keeps a dedicated server in.
fn server_dir(s: &TdbServer, name: &str) -> PathBuf {
    s.data_dir().join("dedicated").join(name)
}

/// The pid of the dedicated server's postmaster, when it runs.
fn postmaster_pid(s: &TdbServer, name: &str) -> Option<i32> {
    let text = std::fs::read_to_string(server_dir(s, name).join("pgdata/postmaster.pid")).ok()?;
    let pid: i32 = text.lines().next()?.trim().parse().ok()?;
    std::path::Path::new(&format!("/proc/{pid}"))
        .exists()
        .then_some(pid)
}

#[tokio::test]
async fn an_l2_tenant_lives_on_a_server_of_its_own() {
    let s = start_paid("").await;
    let key = operator_with_blueprint(&s).await;

    // Answered at once, as the reference shows: provisioning, no connection yet.
    let (st, created) = post(
        &s,
        "/tenants",
        Some(&key),
        json!({"tenant_id": "acme", "databases": [{"blueprint": "app", "isolation_level": 2}]}),
    )
    .await;
    assert_eq!(st, 201, "{created}");
    assert_eq!(created["status"], "provisioning", "{created}");
    let db = &created["databases"][0];
    assert_eq!(
        (
            db["isolation_level"].as_i64(),
            db["region"].as_str(),
            db.get("connection")
        ),
        (Some(2), Some("local"), None),
        "{created}"
    );
    // Not reachable while it is being made.
    let t = wait_ready(&s, &key, "acme").await;
    assert_eq!(t["status"], "ready", "{t}\n{}", s.log_tail());
    assert_eq!(
        (
            t["databases"][0]["isolation_level"].as_str(),
            t["databases"][0]["version"].as_i64()
        ),
        (Some("L2"), Some(1)),
        "{t}"
    );

    // Its own server, listed for the operator; the shared server holds no tenant of it.
    let list = servers(&s, &key).await;
    let own = dedicated(&list);
    assert_eq!(own.len(), 1, "{list:?}");
    let own = own[0].clone();
    let name = str_of(&own, "name").to_string();
    assert_eq!(
        (
            own["status"].as_str(),
            own["region"].as_str(),
            own["provisioner"].as_str().map(|p| p.starts_with("local:")),
            own["tenants"].as_i64(),
            own["databases"].as_i64()
        ),
        (Some("active"), Some("local"), Some(true), Some(1), Some(1)),
        "{own}"
    );
    assert!(own["size_bytes"].as_i64().unwrap_or(0) > 0, "{own}");
    assert_eq!(named(&list, "postgresql-shared")["tenants"], 0, "{list:?}");
    assert!(postmaster_pid(&s, &name).is_some(), "the server runs");

    // psql and a driver through the proxy.
    let url = login(&s, &key, "acme").await;
    psql(&url, "INSERT INTO items VALUES (1, 'from psql')").expect("insert");
    let script = "import sys, psycopg\n\
        with psycopg.connect(sys.argv[1]) as c:\n\
        \x20   c.execute(\"INSERT INTO items VALUES (2, 'from psycopg')\")\n\
        \x20   print(c.execute('SELECT count(*) FROM items').fetchone()[0])";
    assert_eq!(run_client(python(script, &url), "psycopg"), "2");
    // The role is the tenant's data role, on a server with nothing else on it.
    let others = psql(
        &url,
        "SELECT count(*) FROM pg_database WHERE datname LIKE 'tdb_t_%'",
    )
    .expect("count databases");
    assert_eq!(others, "1");

    // Deployments reach it and an L1 tenant alike; admin queries reach it like any tenant.
    let (st, l1) = post(
        &s,
        "/tenants",
        Some(&key),
        json!({"tenant_id": "globex", "databases": [{"blueprint": "app"}]}),
    )
    .await;
    assert_eq!(st, 201, "{l1}");
    ws_query(&s, &key, "app", "ALTER TABLE items ADD COLUMN extra int").await;
    let d = deploy_and_wait(&s, &key, "app").await;
    assert_eq!(
        (d["status"].as_str(), d["tenants_completed"].as_i64()),
        (Some("completed"), Some(2)),
        "{d}"
    );
    let (st, q) = post(
        &s,
        "/admin/query",
        Some(&key),
        json!({"blueprint": "app", "tenant_id": "acme", "query": "SELECT count(extra) + count(*) FROM items"}),
    )
    .await;
    assert_eq!((st, q["rows"][0][0].as_i64()), (200, Some(2)), "{q}");

    // A backup of it lands in the store.
    let (st, b) = post(&s, "/tenants/acme/backup", Some(&key), json!({})).await;
    assert!(st == 200 || st == 201 || st == 202, "{st} {b}");
    let started = Instant::now();
    loop {
        let (_, list) = get(&s, "/tenants/acme/backups", &key).await;
        if list["backups"]
            .as_array()
            .is_some_and(|b| b.iter().any(|b| b["status"] == "completed"))
        {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(120), "{list}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // A rollback to it puts the database back on its own server (a row added since goes).
    let (_, list) = get(&s, "/tenants/acme/backups", &key).await;
    let path = list["backups"][0]["storage_path"]
        .as_str()
        .expect("storage path")
        .to_string();
    psql(&url, "INSERT INTO items VALUES (3, 'after the backup')").expect("insert");
    let (st, r) = post(
        &s,
        "/tenants/acme/rollback",
        Some(&key),
        json!({ "storage_path": path }),
    )
    .await;
    assert_eq!(st, 200, "{r}");
    let started = Instant::now();
    loop {
        let (_, t) = get(&s, "/tenants/acme", &key).await;
        let step = t["last_rollback"]["step"]
            .as_str()
            .unwrap_or("")
            .to_string();
        if step == "completed" && t["status"] == "ready" {
            break;
        }
        assert!(step != "failed", "{t}");
        assert!(started.elapsed() < Duration::from_secs(120), "{t}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(
        psql_eventually(&s, &url, "SELECT count(*) FROM items").await,
        "2"
    );
    assert_eq!(named(&servers(&s, &key).await, &name)["tenants"], 1);

    // Its statements are in its query log, as an L1 tenant's are.
    let (st, logs) = get(&s, "/tenants/acme/logs?search=from%20psql", &key).await;
    assert_eq!(st, 200, "{logs}");
    assert!(logs.to_string().contains("from psql"), "{logs}");

    // The trash stops its server; a restore starts it again with the data.
    let (st, body) = delete(&s, "/tenants/acme", &key).await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(named(&servers(&s, &key).await, &name)["status"], "stopped");
    assert!(
        postmaster_pid(&s, &name).is_none(),
        "a trashed tenant's server stops"
    );
    assert!(psql(&url, "SELECT 1").is_err());
    let (st, body) = post(&s, "/tenants/acme/restore", Some(&key), json!({})).await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(named(&servers(&s, &key).await, &name)["status"], "active");
    assert_eq!(
        psql_eventually(
            &s,
            &url,
            "SELECT string_agg(note, ',' ORDER BY id) FROM items"
        )
        .await,
        "from psql,from psycopg"
    );

    // A hard delete removes the server and its directory.
    hard_delete(&s, &key, "acme").await;
    assert!(dedicated(&servers(&s, &key).await).is_empty());
    assert!(!server_dir(&s, &name).exists(), "its directory is gone");
}

#[tokio::test]
async fn a_dedicated_server_comes_back_with_tdb_and_after_it_dies() {
    let mut s = start_paid("").await;
    let key = operator_with_blueprint(&s).await;
    let (st, created) = post(
        &s,
        "/tenants",
        Some(&key),
        json!({"tenant_id": "acme", "databases": [{"blueprint": "app", "isolation_level": "L2"}]}),
    )
    .await;
    assert_eq!(st, 201, "{created}");
    assert_eq!(wait_ready(&s, &key, "acme").await["status"], "ready");
    let url = login(&s, &key, "acme").await;
    psql(&url, "INSERT INTO items VALUES (1, 'kept')").expect("insert");
    let name = str_of(dedicated(&servers(&s, &key).await)[0], "name").to_string();

    // Stopped with tdb, started again with it.
    s.stop().expect("stop");
    assert!(postmaster_pid(&s, &name).is_none(), "stopped with tdb");
    s.restart().await.expect("restart");
    assert_eq!(
        psql_eventually(&s, &url, "SELECT note FROM items").await,
        "kept"
    );

    // Supervised: killed, it is started again.
    let pid = postmaster_pid(&s, &name).expect("running");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill the server");
    let started = Instant::now();
    while postmaster_pid(&s, &name).is_none_or(|p| p == pid) {
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "not restarted\n{}",
            s.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(
        psql_eventually(&s, &url, "SELECT note FROM items").await,
        "kept"
    );
}

#[tokio::test]
async fn placement_fills_the_emptiest_shared_server_with_room_in_the_region() {
    let extra = TestPostgres::start().await.expect("second shared server");
    let eu = TestPostgres::start().await.expect("server in eu");
    let toml = format!(
        "[[regions]]\nzone = \"local\"\nlabel = \"This machine\"\nis_default = true\n\
         [[regions]]\nzone = \"eu\"\nlabel = \"Europe\"\n\
         [[servers]]\nname = \"pg-extra\"\nurl = \"{}\"\nmax_databases = 2\n\
         [[servers]]\nname = \"pg-eu\"\nregion = \"eu\"\nurl = \"{}\"\n",
        extra.url("postgres"),
        eu.url("postgres")
    );
    let s = start_paid(&toml).await;
    let key = operator_with_blueprint(&s).await;
    let create = |name: &str, region: Option<&str>| {
        let mut db = json!({"blueprint": "app"});
        if let Some(r) = region {
            db["region"] = json!(r);
        }
        json!({"tenant_id": name, "databases": [db]})
    };
    let mut urls = Vec::new();
    ws_query(
        &s,
        &key,
        "app",
        "CREATE TABLE writes (id bigserial PRIMARY KEY, n int NOT NULL)",
    )
    .await;
    assert_eq!(
        deploy_and_wait(&s, &key, "app").await["status"],
        "completed"
    );
    for name in ["t1", "t2", "t3", "t4", "t5"] {
        let (st, t) = post(&s, "/tenants", Some(&key), create(name, None)).await;
        assert_eq!(st, 201, "{t}");
        urls.push(
            str_of(&t["databases"][0]["connection"], "connection_string")
                .replace("sslmode=require", "sslmode=disable"),
        );
    }
    // Fewest databases first, never past a server's max_databases: the workspace and three
    // tenants on the managed server, two tenants on pg-extra (full), none in eu.
    let list = servers(&s, &key).await;
    let summary = |name: &str| {
        let s = named(&list, name);
        (s["tenants"].as_i64(), s["databases"].as_i64())
    };
    assert_eq!(summary("pg-extra"), (Some(2), Some(2)), "{list:?}");
    assert_eq!(summary("postgresql-shared"), (Some(3), Some(4)), "{list:?}");
    assert_eq!(summary("pg-eu"), (Some(0), Some(0)), "{list:?}");
    assert_eq!(named(&list, "pg-extra")["max_databases"], 2);
    // Every one of them works through the proxy, wherever it is.
    for url in &urls {
        psql(url, "INSERT INTO items VALUES (1, 'x')").expect("insert");
    }

    // A region's tenants go to its own servers; an unknown region is refused, naming them.
    let (st, t) = post(&s, "/tenants", Some(&key), create("euro", Some("eu"))).await;
    assert_eq!(st, 201, "{t}");
    assert_eq!(t["databases"][0]["region"], "eu");
    assert_eq!(summary_of(&s, &key, "pg-eu").await, Some(1));
    let (st, body) = post(&s, "/tenants", Some(&key), create("mars", Some("mars"))).await;
    assert_eq!(st, 400, "{body}");
    let message = str_of(&body, "error");
    assert!(
        message.contains("mars") && message.contains("local, eu"),
        "{body}"
    );

    // Rebalancing: an L1 tenant onto another shared server, named (here in another region).
    let on_managed = ["t2", "t4", "t5"];
    let t2 = &urls[1];
    psql(t2, "INSERT INTO writes (n) VALUES (42)").expect("write before the move");
    let m = move_and_wait(
        &s,
        &key,
        on_managed[0],
        json!({"isolation_level": 1, "blueprint": "app", "server": "pg-eu"}),
    )
    .await;
    assert_eq!(
        (
            m["step"].as_str(),
            m["method"].as_str(),
            m["to_region"].as_str()
        ),
        (Some("completed"), Some("replication"), Some("eu")),
        "{m}"
    );
    assert_eq!(summary_of(&s, &key, "pg-eu").await, Some(2));
    assert_eq!(
        psql(t2, "SELECT string_agg(n::text, ',') FROM writes").expect("read after the move"),
        "42"
    );

    // A draining server takes nothing new; with none left the answer says why.
    let (st, body) = call(
        &s,
        Method::PATCH,
        "/servers/pg-eu",
        Some(&key),
        Some(&json!({"status": "draining"}).to_string()),
    )
    .await;
    assert_eq!(st, 200, "{body}");
    let (st, body) = post(&s, "/tenants", Some(&key), create("euro2", Some("eu"))).await;
    assert_eq!(st, 503, "{body}");
    assert!(str_of(&body, "error").contains("draining"), "{body}");
    assert_eq!(summary_of(&s, &key, "pg-eu").await, Some(2));
    let (st, body) = call(
        &s,
        Method::PATCH,
        "/servers/pg-nowhere",
        Some(&key),
        Some(&json!({"status": "draining"}).to_string()),
    )
    .await;
    assert_eq!(st, 404, "{body}");
    assert!(str_of(&body, "error").contains("pg-extra"), "{body}");
    drop(s);
    extra.stop().await;
    eu.stop().await;
}

async fn summary_of(s: &TdbServer, key: &str, name: &str) -> Option<i64> {
    named(&servers(s, key).await, name)["tenants"].as_i64()
}

#[tokio::test]
async fn only_operators_see_the_servers() {
    let s = start_paid("").await;
    let operator = operator_with_blueprint(&s).await;
    let other = str_of(&signup(&s, "dev@example.com", "Dev").await, "api_key").to_string();
    let (st, body) = get(&s, "/servers", &other).await;
    assert_eq!(
        (st, body["code"].as_str()),
        (403, Some("forbidden")),
        "{body}"
    );
    let (st, body) = call(
        &s,
        Method::PATCH,
        "/servers/postgresql-shared",
        Some(&other),
        Some(&json!({"status": "draining"}).to_string()),
    )
    .await;
    assert_eq!(st, 403, "{body}");
    // The operator's read key is not enough either.
    let (_, read) = post(&s, "/apikeys", Some(&operator), json!({"role": "read"})).await;
    let (st, _) = get(&s, "/servers", str_of(&read, "api_key")).await;
    assert_eq!(st, 403);
    // Only active and draining are the operator's to set.
    let (st, body) = call(
        &s,
        Method::PATCH,
        "/servers/postgresql-shared",
        Some(&operator),
        Some(&json!({"status": "offline"}).to_string()),
    )
    .await;
    assert_eq!(st, 400, "{body}");

    // The CLI shows the same list.
    let home = tempfile::tempdir().expect("home");
    let cli = Cli {
        home: home.path(),
        api_url: &s.api_url,
        key: Some(&operator),
    };
    let out = cli.ok(&["servers", "list"]);
    assert!(
        out.contains("postgresql-shared") && out.contains("shared") && out.contains("local"),
        "{out}"
    );
    let listed = cli.json(&["servers", "list"]);
    assert_eq!(listed["count"], 1, "{listed}");
    let refused = Cli {
        key: Some(&other),
        ..cli
    }
    .fails(&["servers", "list"]);
    assert!(refused.contains("operators"), "{refused}");

    // `tdb tenants move` follows a move to its end.
    create_tenant_url(&s, &operator, "app", "acme").await;
    let out = cli.ok(&[
        "tenants",
        "move",
        "acme",
        "--blueprint",
        "app",
        "--isolation-level",
        "2",
    ]);
    assert!(
        out.contains("L1 -> L2") && out.contains("moved by replication"),
        "{out}"
    );
    let drained = cli.json(&["servers", "list"]);
    assert_eq!(drained["count"], 2, "{drained}");
}

/// A client that inserts a new number every few milliseconds through the proxy, reconnecting
/// after any error, and keeps the numbers whose commits were acknowledged.
struct Writer {
    stop: tokio_util::sync::CancellationToken,
    task: tokio::task::JoinHandle<(Vec<i32>, u32)>,
}

impl Writer {
    fn start(url: &str) -> Self {
        let stop = tokio_util::sync::CancellationToken::new();
        let (url, until) = (url.to_string(), stop.clone());
        let task = tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            let mut errors = 0;
            let mut n = 0;
            let mut client = None;
            while !until.is_cancelled() {
                if client.is_none() {
                    match tokio_postgres::connect(&url, tokio_postgres::NoTls).await {
                        Ok((c, conn)) => {
                            tokio::spawn(conn);
                            client = Some(c);
                        }
                        Err(_) => {
                            errors += 1;
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            continue;
                        }
                    }
                }
                n += 1;
                let c = client.as_ref().expect("connected");
                match c.execute("INSERT INTO writes (n) VALUES ($1)", &[&n]).await {
                    Ok(_) => acknowledged.push(n),
                    Err(_) => {
                        errors += 1;
                        client = None;
                    }
                }
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
            (acknowledged, errors)
        });
        Self { stop, task }
    }

    /// Stops it; every acknowledged number must be in the table exactly once.
    async fn check(self, url: &str) -> usize {
        self.stop.cancel();
        let (acknowledged, errors) = self.task.await.expect("writer");
        let stored = psql(
            url,
            "SELECT string_agg(n::text, ',' ORDER BY n) FROM writes",
        )
        .expect("read writes");
        let stored: Vec<i32> = stored
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().expect("number"))
            .collect();
        let mut distinct = stored.clone();
        distinct.dedup();
        assert_eq!(distinct.len(), stored.len(), "a write was applied twice");
        let lost: Vec<&i32> = acknowledged
            .iter()
            .filter(|n| stored.binary_search(n).is_err())
            .collect();
        assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
        assert!(
            acknowledged.len() > 20,
            "the writer hardly wrote: {acknowledged:?}"
        );
        eprintln!(
            "writer: {} acknowledged, {} stored, {errors} errors",
            acknowledged.len(),
            stored.len()
        );
        acknowledged.len()
    }
}

/// A blueprint `app` with keyed tables (`items`, with a json column whose type has no hash
/// function, so the move's checksum reads it as text; `writes`) and, with `keyless`, one
/// without a key.
async fn mover_with_blueprint(s: &TdbServer, keyless: bool) -> String {
    let key = account_with_blueprint(s, OPERATOR, "Ops", "app").await;
    ws_query(
        s,
        &key,
        "app",
        "CREATE TABLE items (id int PRIMARY KEY, note text NOT NULL, meta json)",
    )
    .await;
    ws_query(
        s,
        &key,
        "app",
        "CREATE TABLE writes (id bigserial PRIMARY KEY, n int NOT NULL)",
    )
    .await;
    if keyless {
        ws_query(s, &key, "app", "CREATE TABLE events (what text)").await;
    }
    let d = deploy_and_wait(s, &key, "app").await;
    assert_eq!(d["status"], "completed", "{d}");
    key
}

/// Starts a move and waits for it to end; returns `last_move`.
async fn move_and_wait(s: &TdbServer, key: &str, tenant: &str, body: Value) -> Value {
    let (st, started) = call(
        s,
        Method::PATCH,
        &format!("/tenants/{tenant}/isolation"),
        Some(key),
        Some(&body.to_string()),
    )
    .await;
    assert_eq!(st, 200, "{started}");
    assert_eq!(started["status"], "migrating", "{started}");
    wait_move(s, key, tenant, str_of(&started, "move_id")).await
}

async fn wait_move(s: &TdbServer, key: &str, tenant: &str, id: &str) -> Value {
    let begun = Instant::now();
    loop {
        let (st, t) = get(s, &format!("/tenants/{tenant}"), key).await;
        assert_eq!(st, 200, "{t}");
        let m = &t["last_move"];
        if m["move_id"] == id && (m["step"] == "completed" || m["step"] == "failed") {
            assert_eq!(t["status"], "ready", "{t}");
            if m["step"] == "failed" {
                eprintln!("move {id} failed; tdb's log:\n{}", s.log_tail());
            }
            return m.clone();
        }
        assert!(
            begun.elapsed() < Duration::from_secs(240),
            "move {id} did not end: {t}\n{}",
            s.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_tenant_moves_to_a_server_of_its_own_and_back_without_losing_a_write() {
    let s = start_paid("").await;
    let key = mover_with_blueprint(&s, false).await;
    let url = create_tenant_url(&s, &key, "app", "acme").await;
    psql(&url, "INSERT INTO items VALUES (1, 'before')").expect("insert");
    let writer = Writer::start(&url);
    tokio::time::sleep(Duration::from_millis(300)).await;

    // L1 -> L2; a second move meanwhile is refused.
    let (st, started) = call(
        &s,
        Method::PATCH,
        "/tenants/acme/isolation",
        Some(&key),
        Some(&json!({"isolation_level": 2, "blueprint": "app"}).to_string()),
    )
    .await;
    assert_eq!(st, 200, "{started}");
    assert_eq!(
        (started["from"].as_i64(), started["to"].as_i64()),
        (Some(1), Some(2))
    );
    let (st, again) = call(
        &s,
        Method::PATCH,
        "/tenants/acme/isolation",
        Some(&key),
        Some(&json!({"isolation_level": 2, "blueprint": "app"}).to_string()),
    )
    .await;
    assert_eq!(st, 409, "{again}");
    assert!(
        str_of(&again, "error").contains("already moving"),
        "{again}"
    );
    let m = wait_move(&s, &key, "acme", str_of(&started, "move_id")).await;
    assert_eq!(
        (m["step"].as_str(), m["method"].as_str()),
        (Some("completed"), Some("replication")),
        "{m}"
    );
    eprintln!("L1 -> L2 held {} ms: {m}", m["held_ms"]);
    let (_, t) = get(&s, "/tenants/acme", &key).await;
    assert_eq!(t["databases"][0]["isolation_level"], "L2", "{t}");
    let list = servers(&s, &key).await;
    assert_eq!(named(&list, "postgresql-shared")["tenants"], 0, "{list:?}");
    assert_eq!(dedicated(&list)[0]["tenants"], 1, "{list:?}");
    // The safety backup is listed with the tenant's backups.
    let (_, backups) = get(&s, "/tenants/acme/backups", &key).await;
    assert!(
        backups["backups"].as_array().is_some_and(|b| b
            .iter()
            .any(|b| b["type"] == "safety" || b["kind"] == "safety")),
        "{backups}"
    );

    // L2 -> L1, still writing.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let m = move_and_wait(
        &s,
        &key,
        "acme",
        json!({"isolation_level": 1, "blueprint": "app"}),
    )
    .await;
    assert_eq!(m["step"], "completed", "{m}");
    eprintln!("L2 -> L1 held {} ms: {m}", m["held_ms"]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    writer.check(&url).await;
    let (_, t) = get(&s, "/tenants/acme", &key).await;
    assert_eq!(t["databases"][0]["isolation_level"], "L1", "{t}");
    // Sequences came along: a new row takes the next id.
    assert_eq!(
        psql(
            &url,
            "WITH i AS (INSERT INTO writes (n) VALUES (-1) RETURNING id) \
             SELECT id > (SELECT max(id) FROM writes) FROM i"
        )
        .expect("insert after the moves"),
        "t"
    );
    assert_eq!(
        psql(&url, "SELECT note FROM items").expect("read"),
        "before"
    );

    // The dedicated server the second move left (stopped, kept for the undo window) goes with
    // the tenant's hard delete; so does every copy on the shared server.
    let kept = dedicated(&servers(&s, &key).await)
        .iter()
        .map(|s| (s["name"].clone(), s["status"].clone()))
        .collect::<Vec<_>>();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(kept[0].1, "stopped", "{kept:?}");
    let before = database_count(&s).await;
    hard_delete(&s, &key, "acme").await;
    assert!(dedicated(&servers(&s, &key).await).is_empty());
    assert_eq!(database_count(&s).await, before - 1);
}

#[tokio::test]
async fn a_table_without_a_key_moves_by_dump_behind_a_hold() {
    let s = start_paid("").await;
    let key = mover_with_blueprint(&s, true).await;
    let url = create_tenant_url(&s, &key, "app", "acme").await;
    psql(&url, "INSERT INTO events VALUES ('one'), ('two')").expect("insert");
    let writer = Writer::start(&url);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let m = move_and_wait(
        &s,
        &key,
        "acme",
        json!({"isolation_level": "L2", "blueprint": "app"}),
    )
    .await;
    assert_eq!(
        (m["step"].as_str(), m["method"].as_str()),
        (Some("completed"), Some("dump")),
        "{m}"
    );
    let history = m["history"].to_string();
    assert!(
        history.contains("public.events") && history.contains("no primary key"),
        "{m}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    writer.check(&url).await;
    assert_eq!(
        psql(
            &url,
            "SELECT string_agg(what, ',' ORDER BY what) FROM events"
        )
        .expect("read"),
        "one,two"
    );
}

#[tokio::test]
async fn bad_moves_are_refused_with_the_reason() {
    let s = start_paid("").await;
    let key = mover_with_blueprint(&s, false).await;
    create_tenant_url(&s, &key, "app", "acme").await;
    let patch = |body: Value| {
        let (s, key) = (&s, key.clone());
        async move {
            call(
                s,
                Method::PATCH,
                "/tenants/acme/isolation",
                Some(&key),
                Some(&body.to_string()),
            )
            .await
        }
    };
    let (st, body) =
        patch(json!({"isolation_level": 2, "blueprint": "app", "region": "mars"})).await;
    assert_eq!(st, 400, "{body}");
    assert!(str_of(&body, "error").contains("local"), "{body}");
    let (st, body) =
        patch(json!({"isolation_level": 1, "blueprint": "app", "server": "pg-x"})).await;
    assert_eq!(st, 400, "{body}");
    assert!(str_of(&body, "error").contains("pg-x"), "{body}");
    let (st, body) =
        patch(json!({"isolation_level": 1, "blueprint": "app", "server": "postgresql-shared"}))
            .await;
    assert_eq!(st, 400, "{body}");
    assert!(str_of(&body, "error").contains("already on"), "{body}");
    let (st, body) = patch(json!({"isolation_level": 1, "blueprint": "app"})).await;
    assert_eq!(st, 400, "{body}");
    let (st, body) = patch(json!({"isolation_level": 2, "blueprint": "nope"})).await;
    assert_eq!(st, 400, "{body}");
    assert!(str_of(&body, "error").contains("app"), "{body}");
    let (st, _) = post(&s, "/tenants/acme/suspend", Some(&key), json!({})).await;
    assert_eq!(st, 200);
    let (st, body) = patch(json!({"isolation_level": 2, "blueprint": "app"})).await;
    assert_eq!(st, 409, "{body}");
    assert!(str_of(&body, "error").contains("suspended"), "{body}");
    let (st, _) = post(&s, "/tenants/acme/resume", Some(&key), json!({})).await;
    assert_eq!(st, 200);
    // A tenant being restored (a rollback) waits for it to end.
    let catalog = s.managed_admin_url("tdb_catalog").expect("catalog url");
    psql(
        &catalog,
        "UPDATE tenants SET status = 'restoring' WHERE name = 'acme'",
    )
    .expect("mark restoring");
    let (st, body) = patch(json!({"isolation_level": 2, "blueprint": "app"})).await;
    assert_eq!(st, 409, "{body}");
    assert!(str_of(&body, "error").contains("being restored"), "{body}");
    psql(
        &catalog,
        "UPDATE tenants SET status = 'ready' WHERE name = 'acme'",
    )
    .expect("mark ready");
    let (st, _) = delete(&s, "/tenants/acme", &key).await;
    assert_eq!(st, 200);
    let (st, body) = patch(json!({"isolation_level": 2, "blueprint": "app"})).await;
    assert_eq!(st, 409, "{body}");
    assert!(str_of(&body, "error").contains("trash"), "{body}");
}

/// Opens a session through the proxy that runs `sql` in a transaction and keeps it open.
async fn open_transaction(url: &str, sql: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    client.batch_execute("BEGIN").await.expect("begin");
    client.batch_execute(sql).await.expect(sql);
    client
}

/// Starts a move, waits until it reaches `step` (held there by the test), kills tdb with
/// SIGKILL, restarts it, and waits for the move to end.
async fn kill_during(s: &mut TdbServer, key: &str, body: Value, step: &str) -> Value {
    let (st, started) = call(
        s,
        Method::PATCH,
        "/tenants/acme/isolation",
        Some(key),
        Some(&body.to_string()),
    )
    .await;
    assert_eq!(st, 200, "{started}");
    let id = str_of(&started, "move_id").to_string();
    let begun = Instant::now();
    loop {
        let (_, t) = get(s, "/tenants/acme", key).await;
        if t["last_move"]["move_id"] == id.as_str() && t["last_move"]["step"] == step {
            break;
        }
        assert!(
            begun.elapsed() < Duration::from_secs(60),
            "the move never reached {step}: {t}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Held at that step by the test's session; tdb dies there.
    tokio::time::sleep(Duration::from_millis(300)).await;
    s.kill9().expect("kill -9");
    s.restart().await.expect("restart");
    wait_move(s, key, "acme", &id).await
}

#[tokio::test]
async fn a_move_cut_off_by_kill_9_finishes_after_a_restart() {
    let mut s = start_paid("move_drain_ms = 60000\n").await;
    let key = mover_with_blueprint(&s, false).await;
    let url = create_tenant_url(&s, &key, "app", "acme").await;
    psql(&url, "INSERT INTO items VALUES (1, 'kept')").expect("insert");
    let writer = Writer::start(&url);
    let to_l2 = json!({"isolation_level": 2, "blueprint": "app"});
    let to_l1 = json!({"isolation_level": 1, "blueprint": "app"});

    // Queued: the safety backup waits for a lock the test holds.
    let lock = open_transaction(&url, "LOCK TABLE items IN ACCESS EXCLUSIVE MODE").await;
    let m = kill_during(&mut s, &key, to_l2.clone(), "queued").await;
    drop(lock);
    assert_eq!(m["step"], "completed", "{m}");

    // Syncing: the publication waits for a lock the test holds (reads go on).
    let lock = open_transaction(&url, "LOCK TABLE items IN EXCLUSIVE MODE").await;
    let m = kill_during(&mut s, &key, to_l1.clone(), "syncing").await;
    drop(lock);
    assert_eq!(m["step"], "completed", "{m}");

    // Cutover: draining waits for a transaction the test keeps open (one that reads: one that
    // wrote would hold up replication's start as well, until it ended).
    let open = open_transaction(&url, "SELECT count(*) FROM items").await;
    let m = kill_during(&mut s, &key, to_l2, "cutover").await;
    drop(open);
    assert_eq!(
        (m["step"].as_str(), m["method"].as_str()),
        (Some("completed"), Some("replication")),
        "{m}"
    );
    let (_, t) = get(&s, "/tenants/acme", &key).await;
    assert_eq!(t["databases"][0]["isolation_level"], "L2", "{t}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    writer.check(&url).await;
    assert_eq!(
        psql(&url, "SELECT string_agg(note, ',') FROM items").expect("read"),
        "kept"
    );
    // Nothing of the moves is left on the servers: no slot, no publication, no subscription.
    let admin = s.managed_admin_url("postgres").expect("admin url");
    assert_eq!(
        psql(&admin, "SELECT count(*) FROM pg_replication_slots").expect("slots"),
        "0"
    );
}

/// Lines of a node's log that say it claimed the job of `ref_id`.
fn claims(s: &TdbServer, ref_id: &str) -> usize {
    std::fs::read_to_string(s.log_path())
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("job claimed") && l.contains(ref_id))
        .count()
}

/// Runs `sql` through a proxy until `ok` says the answer (or refusal) is the awaited one;
/// returns how long that took.
async fn until_proxy(
    url: &str,
    sql: &str,
    ok: impl Fn(&Result<String, String>) -> bool,
) -> Duration {
    let started = Instant::now();
    loop {
        if ok(&psql(url, sql)) {
            return started.elapsed();
        }
        assert!(started.elapsed() < Duration::from_secs(20), "{url}: {sql}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn two_nodes_share_a_catalog_and_serve_the_same_tenants() {
    let catalog = TestPostgres::start().await.expect("catalog server");
    let options = ServeOptions {
        catalog_url: Some(catalog.url("postgres")),
        env: vec![
            ("TDB_MASTER_KEY".into(), tdb_core::ids::random_hex(32)),
            ("TDB_DEFAULT_TIER".into(), "paid".into()),
        ],
        ..Default::default()
    };
    let a = TdbServer::start_with(bin(), options.clone())
        .await
        .expect("node a");
    let b = TdbServer::start_with(bin(), options).await.expect("node b");

    // Designed on one node, deployed (one claim of the job, by either), created on the other.
    let key = mover_with_blueprint(&a, false).await;
    let (st, t) = post(
        &b,
        "/tenants",
        Some(&key),
        json!({"tenant_id": "acme", "databases": [{"blueprint": "app"}]}),
    )
    .await;
    assert_eq!(st, 201, "{t}");
    let url_b = str_of(&t["databases"][0]["connection"], "connection_string")
        .replace("sslmode=require", "sslmode=disable");
    let url_a = url_b.replace(&format!(":{}/", b.pg_port), &format!(":{}/", a.pg_port));
    assert_ne!(url_a, url_b);
    psql(&url_a, "INSERT INTO items VALUES (1, 'via a')").expect("write through a");
    assert_eq!(
        psql(&url_b, "SELECT note FROM items").expect("read through b"),
        "via a"
    );

    // A suspension through one node reaches the other's proxy (and its open sessions).
    let (st, _) = post(&a, "/tenants/acme/suspend", Some(&key), json!({})).await;
    assert_eq!(st, 200);
    let took = until_proxy(&url_b, "SELECT 1", |r| r.is_err()).await;
    eprintln!("suspension reached the other node's proxy in {took:?}");
    let (st, _) = post(&b, "/tenants/acme/resume", Some(&key), json!({})).await;
    assert_eq!(st, 200);
    let took = until_proxy(&url_a, "SELECT 1", |r| r.is_ok()).await;
    eprintln!("resumption reached the other node's proxy in {took:?}");

    // A credential minted on one node logs in on the other's proxy.
    let minted = login(&a, &key, "acme")
        .await
        .replace(&format!(":{}/", a.pg_port), &format!(":{}/", b.pg_port));
    assert_eq!(
        psql(&minted, "SELECT count(*) FROM items").expect("minted login"),
        "1"
    );

    // A deployment runs once, whichever node claims it.
    ws_query(&a, &key, "app", "ALTER TABLE items ADD COLUMN extra int").await;
    let d = deploy_and_wait(&b, &key, "app").await;
    assert_eq!(
        (d["status"].as_str(), d["tenants_completed"].as_i64()),
        (Some("completed"), Some(1)),
        "{d}"
    );
    let id = str_of(&d, "id");
    assert_eq!(
        claims(&a, id) + claims(&b, id),
        1,
        "the deployment was claimed once"
    );

    // A move started on one node: the other's proxy follows the tenant to its new server.
    let m = move_and_wait(
        &a,
        &key,
        "acme",
        json!({"isolation_level": 2, "blueprint": "app"}),
    )
    .await;
    assert_eq!(m["step"], "completed", "{m}");
    let mid = str_of(&m, "move_id");
    assert_eq!(
        claims(&a, mid) + claims(&b, mid),
        1,
        "the move was claimed once"
    );
    until_proxy(&url_b, "SELECT note FROM items", |r| {
        r.as_deref() == Ok("via a")
    })
    .await;
    psql(&url_b, "INSERT INTO items VALUES (2, 'via b')").expect("write through b after the move");
    assert_eq!(
        psql(&url_a, "SELECT count(*) FROM items").expect("read through a"),
        "2"
    );
    drop(a);
    drop(b);
    catalog.stop().await;
}

#[tokio::test]
async fn every_kind_of_move_keeps_every_write() {
    // A second shared server in the default region, without logical WAL (so moves off it go by
    // dump and restore), and a second region for dedicated servers.
    let other = TestPostgres::start().await.expect("second shared server");
    let toml = format!(
        "[[regions]]\nzone = \"local\"\nlabel = \"This machine\"\nis_default = true\n\
         [[regions]]\nzone = \"eu\"\nlabel = \"Europe\"\n\
         [[servers]]\nname = \"pg-b\"\nurl = \"{}\"\n",
        other.url("postgres")
    );
    let s = start_paid(&toml).await;
    let key = mover_with_blueprint(&s, false).await;
    let (st, body) = call(
        &s,
        Method::PATCH,
        "/servers/pg-b",
        Some(&key),
        Some(&json!({"status": "draining"}).to_string()),
    )
    .await;
    assert_eq!(st, 200, "{body}");
    let url = create_tenant_url(&s, &key, "app", "acme").await;
    let writer = Writer::start(&url);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (st, body) = call(
        &s,
        Method::PATCH,
        "/servers/pg-b",
        Some(&key),
        Some(&json!({"status": "active"}).to_string()),
    )
    .await;
    assert_eq!(st, 200, "{body}");
    let where_is = |t: &Value| {
        (
            t["databases"][0]["isolation_level"]
                .as_str()
                .map(String::from),
            t["databases"][0]["region"].as_str().map(String::from),
        )
    };
    let kinds = [
        // L1 -> L1: rebalanced onto another shared server (replication off the managed one).
        (
            json!({"isolation_level": 1, "blueprint": "app", "server": "pg-b"}),
            ("L1", "local", "replication"),
        ),
        // L1 -> L2 in another region (a dump and restore: pg-b has no logical WAL).
        (
            json!({"isolation_level": 2, "blueprint": "app", "region": "eu"}),
            ("L2", "eu", "dump"),
        ),
        // L2 -> L2: the region changes (replication off the dedicated server).
        (
            json!({"isolation_level": 2, "blueprint": "app", "region": "local"}),
            ("L2", "local", "replication"),
        ),
        // L2 -> L1, back on a shared server.
        (
            json!({"isolation_level": 1, "blueprint": "app"}),
            ("L1", "local", "replication"),
        ),
    ];
    for (body, (level, region, method)) in kinds {
        let m = move_and_wait(&s, &key, "acme", body.clone()).await;
        assert_eq!(
            (m["step"].as_str(), m["method"].as_str()),
            (Some("completed"), Some(method)),
            "{body}: {m}"
        );
        let (_, t) = get(&s, "/tenants/acme", &key).await;
        assert_eq!(
            where_is(&t),
            (Some(level.to_string()), Some(region.to_string())),
            "{body}: {t}"
        );
        eprintln!("{body}: held {} ms by {method}", m["held_ms"]);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    writer.check(&url).await;
    drop(s);
    other.stop().await;
}

/// A session of a server's administrator that keeps a transaction open with `sql` run in it.
async fn admin_transaction(url: &str, sql: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("admin connect");
    tokio::spawn(conn);
    client.batch_execute("BEGIN").await.expect("begin");
    client.batch_execute(sql).await.expect(sql);
    client
}

#[tokio::test]
async fn a_move_cut_off_while_building_its_target_or_after_its_switch_finishes() {
    let other = TestPostgres::start().await.expect("second shared server");
    let toml = format!(
        "[[servers]]\nname = \"pg-b\"\nurl = \"{}\"\n",
        other.url("postgres")
    );
    let mut s = start_paid(&toml).await;
    let key = mover_with_blueprint(&s, false).await;
    let (st, _) = call(
        &s,
        Method::PATCH,
        "/servers/pg-b",
        Some(&key),
        Some(&json!({"status": "draining"}).to_string()),
    )
    .await;
    assert_eq!(st, 200);
    let url = create_tenant_url(&s, &key, "app", "acme").await;
    psql(&url, "INSERT INTO items VALUES (1, 'kept')").expect("insert");
    let writer = Writer::start(&url);

    let (st, body) = call(
        &s,
        Method::PATCH,
        "/servers/pg-b",
        Some(&key),
        Some(&json!({"status": "active"}).to_string()),
    )
    .await;
    assert_eq!(st, 200, "{body}");

    // Target: pg-b's catalog of databases is locked, so the target cannot be built there.
    let lock = admin_transaction(
        &other.url("postgres"),
        "LOCK TABLE pg_catalog.pg_database IN ACCESS EXCLUSIVE MODE",
    )
    .await;
    let (st, started) = call(
        &s,
        Method::PATCH,
        "/tenants/acme/isolation",
        Some(&key),
        Some(&json!({"isolation_level": 1, "blueprint": "app", "server": "pg-b"}).to_string()),
    )
    .await;
    assert_eq!(st, 200, "{started}");
    let id = str_of(&started, "move_id").to_string();
    let begun = Instant::now();
    loop {
        let (_, t) = get(&s, "/tenants/acme", &key).await;
        if t["last_move"]["step"] == "target" {
            break;
        }
        assert!(begun.elapsed() < Duration::from_secs(60), "{t}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    s.kill9().expect("kill -9");
    drop(lock);
    s.restart().await.expect("restart");
    let m = wait_move(&s, &key, "acme", &id).await;
    assert_eq!(m["step"], "completed", "{m}");

    // Back to the managed server (a dump: pg-b has no logical WAL), whose logical WAL lets the
    // next move replicate.
    let m = move_and_wait(
        &s,
        &key,
        "acme",
        json!({"isolation_level": 1, "blueprint": "app", "server": "postgresql-shared"}),
    )
    .await;
    assert_eq!(
        (m["step"].as_str(), m["method"].as_str()),
        (Some("completed"), Some("dump")),
        "{m}"
    );

    // Switched: the source's marker table is held, so the clean-up after the switch waits.
    let admin = s.managed_admin_url("postgres").expect("admin url");
    let db = psql(
        &admin,
        "SELECT datname FROM pg_database WHERE datname LIKE 'tdb_t_%'",
    )
    .expect("databases");
    assert_eq!(db.lines().count(), 1, "{db}");
    let lock = admin_transaction(
        &s.managed_admin_url(db.trim()).expect("admin url"),
        "CREATE TABLE IF NOT EXISTS tdb_meta.move_marker \
         (id integer PRIMARY KEY, token text NOT NULL); \
         DO $$ BEGIN EXECUTE format('ALTER TABLE tdb_meta.move_marker OWNER TO %s', \
         (SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = 'tdb_meta')); \
         END $$; COMMIT; BEGIN; LOCK TABLE tdb_meta.move_marker IN ACCESS SHARE MODE",
    )
    .await;
    let m = kill_during(
        &mut s,
        &key,
        json!({"isolation_level": 2, "blueprint": "app"}),
        "switched",
    )
    .await;
    drop(lock);
    assert_eq!(m["step"], "completed", "{m}");
    let (_, t) = get(&s, "/tenants/acme", &key).await;
    assert_eq!(t["databases"][0]["isolation_level"], "L2", "{t}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    writer.check(&url).await;
    assert_eq!(psql(&url, "SELECT note FROM items").expect("read"), "kept");
    drop(s);
    other.stop().await;
}
