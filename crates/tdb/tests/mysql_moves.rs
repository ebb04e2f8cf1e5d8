//! A MySQL tenant moved between two shared MariaDB servers (tdb's managed `mysql-shared` and an
//! operator's, attached under `[[servers]]`) while a client writes through tdb's MySQL proxy:
//! the move goes by dump and restore behind the hold, keeps every acknowledged write and every
//! row from before, leaves the old copy locked away until the tenant's hard delete drops it,
//! and the proxy routes the same credentials to the new server, where new rows get fresh ids.
//! A move to a server of the tenant's own (L2), which MySQL does not have, is refused.

mod common;

use std::time::{Duration, Instant};

use common::*;
use reqwest::Method;
use serde_json::{Value, json};
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection, MySqlSslMode};
use sqlx::{Connection, Row};
use tdb_core::aad::Aad;
use tdb_core::secrets::MasterKey;
use tdb_engines::managed::mariadb::Listen;
use tdb_engines::{ManagedMariadb, ManagedMariadbOptions, RunAs};
use tdb_testkit::{ServeOptions, TdbServer};

const OPERATOR: &str = "ops@example.com";
/// The attached server's name in the catalog.
const ATTACHED: &str = "maria-b";
/// Rows in the tenant before the move.
const ROWS: usize = 5000;

/// An operator's MariaDB on loopback, and tdb (paid tier) with it attached beside its own.
async fn start_with_attached(root: &std::path::Path) -> (TdbServer, ManagedMariadb) {
    let server = ManagedMariadb::start(ManagedMariadbOptions {
        dir: root.join("attached-mariadb"),
        run_as: RunAs::resolve("mysql").expect("mysql user"),
        master_key: MasterKey::generate(),
        label: "attached".into(),
        listen: Listen::Loopback,
        settings: vec![],
    })
    .await
    .expect("the attached MariaDB starts");
    let e = server.endpoint().clone();
    let toml = format!(
        "default_tier = \"paid\"\noperators = [\"{OPERATOR}\"]\n\n[[servers]]\n\
         name = \"{ATTACHED}\"\nengine = \"mysql\"\nurl = \"mysql://{}:{}@127.0.0.1:{}\"\n",
        e.user, e.password, e.port
    );
    let s = TdbServer::start_with(
        bin(),
        ServeOptions {
            config_toml: Some(toml),
            ..Default::default()
        },
    )
    .await
    .expect("tdb serve starts");
    (s, server)
}

/// A MySQL server's admin login, as tdb has it in its catalog (sealed with its master key).
async fn server_admin(s: &TdbServer, name: &str) -> MySqlConnection {
    let catalog = s.managed_admin_url("tdb_catalog").expect("catalog url");
    let mut pg = sqlx::PgConnection::connect(&catalog)
        .await
        .expect("catalog");
    let (id, host, port, user, secret): (String, String, i32, String, Vec<u8>) = sqlx::query_as(
        "SELECT id, host, port, admin_user, admin_secret FROM servers WHERE name = $1",
    )
    .bind(name)
    .fetch_one(&mut pg)
    .await
    .expect("the server in the catalog");
    let _ = pg.close().await;
    let key = std::fs::read_to_string(s.data_dir().join("master.key")).expect("master key");
    let key = MasterKey::parse(&key).expect("a master key");
    let password = key
        .open_string(&secret, Aad::ServerAdmin(&id))
        .expect("unsealed");
    let opts = MySqlConnectOptions::new()
        .username(&user)
        .password(&password);
    let opts = if host.starts_with('/') {
        opts.socket(&host)
    } else {
        opts.host(&host).port(u16::try_from(port).expect("port"))
    };
    MySqlConnection::connect_with(&opts)
        .await
        .expect("admin login")
}

/// How one client reaches the tenant through the proxy, in plaintext from loopback.
fn proxy_options(s: &TdbServer, connection: &Value) -> MySqlConnectOptions {
    MySqlConnectOptions::new()
        .host("127.0.0.1")
        .port(s.mysql_port)
        .username(str_of(connection, "username"))
        .password(str_of(connection, "password"))
        .database(str_of(connection, "database"))
        .ssl_mode(MySqlSslMode::Disabled)
}

/// The operator's MySQL blueprint `shop` (`items`, `writes`) deployed and tenant `acme` made
/// with [`ROWS`] items; returns the key and acme's connection.
async fn shop_with_acme(s: &TdbServer) -> (String, Value) {
    let key = str_of(&signup(s, OPERATOR, "Ops").await, "api_key").to_string();
    let body = json!({"name": "shop", "database": "MySQL", "mode": "tenant"});
    let (st, ws) = post(s, "/workspaces", Some(&key), body).await;
    assert_eq!(st, 201, "{ws}\n{}", s.log_tail());
    ws_query(
        s,
        &key,
        "shop",
        "CREATE TABLE items (id int AUTO_INCREMENT PRIMARY KEY, name varchar(64) NOT NULL, \
         qty int, price decimal(10,2), note text, seen datetime, data varbinary(16)); \
         CREATE TABLE writes (id bigint AUTO_INCREMENT PRIMARY KEY, n int NOT NULL UNIQUE)",
    )
    .await;
    assert_eq!(
        deploy_and_wait(s, &key, "shop").await["status"],
        "completed"
    );
    let body = json!({"tenant_id": "acme", "databases": [{"blueprint": "shop"}]});
    let (st, t) = post(s, "/tenants", Some(&key), body).await;
    assert_eq!(st, 201, "{t}\n{}", s.log_tail());
    let connection = t["databases"][0]["connection"].clone();
    let mut conn = MySqlConnection::connect_with(&proxy_options(s, &connection))
        .await
        .expect("acme through the proxy");
    for chunk in (0..ROWS).collect::<Vec<_>>().chunks(1000) {
        let values: Vec<String> = chunk
            .iter()
            .map(|i| {
                format!(
                    "('item-{i}', {}, {i}.25, {}, NOW() - INTERVAL {i} MINUTE, X'{:08x}')",
                    if i % 7 == 0 {
                        "NULL".into()
                    } else {
                        (i % 97).to_string()
                    },
                    if i % 3 == 0 {
                        "NULL".into()
                    } else {
                        format!("'note {i}, with ''quotes'''")
                    },
                    i * 2654435761_usize % (1 << 32)
                )
            })
            .collect();
        let sql = format!(
            "INSERT INTO items (name, qty, price, note, seen, data) VALUES {}",
            values.join(", ")
        );
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await
            .expect("items");
    }
    let _ = conn.close().await;
    (key, connection)
}

/// Count and an order-free checksum of every column of `items`.
const ITEMS_SUM: &str = "SELECT COUNT(*), CAST(COALESCE(SUM(CRC32(CONCAT_WS('|', id, name, \
    COALESCE(qty, '-'), price, COALESCE(note, '-'), seen, HEX(data)))), 0) AS SIGNED) FROM items";

/// Inserts a new number every few milliseconds through the proxy, reconnecting after any
/// error; keeps the numbers acknowledged and those whose outcome the error left unknown.
struct Writer {
    stop: tokio_util::sync::CancellationToken,
    task: tokio::task::JoinHandle<(Vec<i32>, Vec<i32>)>,
}

impl Writer {
    fn start(opts: MySqlConnectOptions) -> Self {
        let stop = tokio_util::sync::CancellationToken::new();
        let until = stop.clone();
        let task = tokio::spawn(async move {
            let (mut acknowledged, mut unknown) = (Vec::new(), Vec::new());
            let mut conn: Option<MySqlConnection> = None;
            let mut n = 0;
            while !until.is_cancelled() {
                let Some(c) = conn.as_mut() else {
                    conn = MySqlConnection::connect_with(&opts).await.ok();
                    if conn.is_none() {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    continue;
                };
                n += 1;
                match sqlx::query("INSERT INTO writes (n) VALUES (?)")
                    .bind(n)
                    .execute(&mut *c)
                    .await
                {
                    Ok(_) => acknowledged.push(n),
                    Err(_) => {
                        unknown.push(n);
                        conn = None;
                    }
                }
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
            (acknowledged, unknown)
        });
        Self { stop, task }
    }

    /// Stops it; every acknowledged number is stored once, and nothing else but numbers whose
    /// outcome was unknown. Returns how many were acknowledged.
    async fn check(self, conn: &mut MySqlConnection) -> usize {
        self.stop.cancel();
        let (acknowledged, unknown) = self.task.await.expect("writer");
        let stored: Vec<i32> = sqlx::query_scalar("SELECT n FROM writes WHERE n > 0 ORDER BY n")
            .fetch_all(&mut *conn)
            .await
            .expect("read writes");
        let lost: Vec<&i32> = acknowledged
            .iter()
            .filter(|n| stored.binary_search(n).is_err())
            .collect();
        assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
        let strays: Vec<&i32> = stored
            .iter()
            .filter(|n| acknowledged.binary_search(n).is_err() && !unknown.contains(n))
            .collect();
        assert!(
            strays.is_empty(),
            "writes stored that never were sent: {strays:?}"
        );
        assert!(
            acknowledged.len() > 50,
            "the writer hardly wrote: {acknowledged:?}"
        );
        eprintln!(
            "writer: {} acknowledged, {} stored, {} errors (outcome unknown)",
            acknowledged.len(),
            stored.len(),
            unknown.len()
        );
        acknowledged.len()
    }
}

/// Which MariaDB serves a session: its port and data directory.
async fn served_by(conn: &mut MySqlConnection) -> (i64, String) {
    let row = sqlx::query("SELECT CAST(@@port AS SIGNED), @@datadir")
        .fetch_one(conn)
        .await
        .expect("server variables");
    (row.get(0), row.get(1))
}

async fn patch_move(s: &TdbServer, key: &str, body: Value) -> (u16, Value) {
    call(
        s,
        Method::PATCH,
        "/tenants/acme/isolation",
        Some(key),
        Some(&body.to_string()),
    )
    .await
}

/// Polls the tenant until move `id` has ended; returns `last_move`.
async fn wait_move(s: &TdbServer, key: &str, id: &str) -> Value {
    let begun = Instant::now();
    loop {
        let (st, t) = get(s, "/tenants/acme", key).await;
        assert_eq!(st, 200, "{t}");
        let m = &t["last_move"];
        if m["move_id"] == id && matches!(m["step"].as_str(), Some("completed" | "failed")) {
            assert_eq!(t["status"], "ready", "{t}");
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

/// L2 (no MySQL server of a tenant's own), a server of another engine, and the server the
/// tenant is on are each refused, naming why.
async fn bad_moves_are_refused(s: &TdbServer, key: &str) {
    let (st, body) = patch_move(s, key, json!({"isolation_level": 2, "blueprint": "shop"})).await;
    assert_eq!(st, 400, "{body}");
    assert_eq!(body["field"], "isolation_level", "{body}");
    assert!(
        str_of(&body, "error").contains("not available for MySQL tenants"),
        "{body}"
    );
    let (st, body) = patch_move(
        s,
        key,
        json!({"isolation_level": 1, "blueprint": "shop", "server": "postgresql-shared"}),
    )
    .await;
    assert_eq!(st, 400, "{body}");
    let error = str_of(&body, "error");
    assert!(
        error.contains("unknown shared server") && error.contains(ATTACHED),
        "{body}"
    );
    let (st, body) = patch_move(
        s,
        key,
        json!({"isolation_level": 1, "blueprint": "shop", "server": "mysql-shared"}),
    )
    .await;
    assert_eq!(st, 400, "{body}");
    assert!(str_of(&body, "error").contains("already on"), "{body}");
    let (_, t) = get(s, "/tenants/acme", key).await;
    assert_eq!(t["status"], "ready", "{t}");
    assert!(t.get("last_move").is_none_or(Value::is_null), "{t}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mysql_tenant_moves_to_another_mariadb_by_dump_behind_a_hold() {
    let root = tdb_testkit::reachable_tempdir().expect("tempdir");
    let (s, attached) = start_with_attached(root.path()).await;
    let (key, connection) = shop_with_acme(&s).await;
    let opts = proxy_options(&s, &connection);
    let db = str_of(&connection, "database").to_string();
    let mut before = MySqlConnection::connect_with(&opts).await.expect("proxy");
    let items: (i64, i64) = sqlx::query_as(ITEMS_SUM)
        .fetch_one(&mut before)
        .await
        .expect("items sum");
    assert_eq!(items.0, ROWS as i64);
    let (from_port, from_dir) = served_by(&mut before).await;
    let _ = before.close().await;
    // Placement put the workspace on the attached server (the older), and acme beside it.
    assert_ne!(
        from_port,
        i64::from(attached.endpoint().port),
        "acme is on {from_dir}"
    );
    bad_moves_are_refused(&s, &key).await;
    a_database_of_the_same_name_is_left_alone(&s, &key, &db).await;

    let writer = Writer::start(opts.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let began = Instant::now();
    let (st, started) = patch_move(
        &s,
        &key,
        json!({"isolation_level": 1, "blueprint": "shop", "server": ATTACHED}),
    )
    .await;
    assert_eq!(st, 200, "{started}");
    assert_eq!(
        (started["change"].as_str(), started["to_server"].as_str()),
        (Some("server"), Some(ATTACHED)),
        "{started}"
    );
    let m = wait_move(&s, &key, str_of(&started, "move_id")).await;
    let took = began.elapsed();
    assert_eq!(
        (m["step"].as_str(), m["method"].as_str()),
        (Some("completed"), Some("dump")),
        "{m}\n{}",
        s.log_tail()
    );
    assert!(m["history"].to_string().contains("dump and restore"), "{m}");
    eprintln!("move took {took:?}, held {} ms: {m}", m["held_ms"]);
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Through the same credentials, the proxy now reaches the attached server.
    let mut after = MySqlConnection::connect_with(&opts)
        .await
        .expect("proxy after");
    writer.check(&mut after).await;
    let (to_port, _) = served_by(&mut after).await;
    assert_eq!(to_port, i64::from(attached.endpoint().port));
    let moved: (i64, i64) = sqlx::query_as(ITEMS_SUM)
        .fetch_one(&mut after)
        .await
        .expect("items sum");
    assert_eq!(moved, items, "the items differ after the move");
    // AUTO_INCREMENT came along: a new row takes an id past every one written.
    let max: i64 = sqlx::query_scalar("SELECT MAX(id) FROM writes")
        .fetch_one(&mut after)
        .await
        .expect("max id");
    let done = sqlx::query("INSERT INTO writes (n) VALUES (-1)")
        .execute(&mut after)
        .await
        .expect("insert after the move");
    assert!(
        done.last_insert_id() as i64 > max,
        "{} <= {max}",
        done.last_insert_id()
    );
    let _ = after.close().await;
    old_copy_is_locked_then_dropped(&s, &key, &db).await;
    drop(s);
    attached.shutdown().await;
}

/// An operator's own database named as acme's on the attached server stops the move before it
/// touches the server, and the database is left as it was; once it is gone, the move can run.
async fn a_database_of_the_same_name_is_left_alone(s: &TdbServer, key: &str, db: &str) {
    let mut operator = server_admin(s, ATTACHED).await;
    let made = format!(
        "CREATE DATABASE `{db}`; CREATE TABLE `{db}`.mine (v int); INSERT INTO `{db}`.mine VALUES (7)"
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(made))
        .execute(&mut operator)
        .await
        .expect("the operator's database");
    let (st, started) = patch_move(
        s,
        key,
        json!({"isolation_level": 1, "blueprint": "shop", "server": ATTACHED}),
    )
    .await;
    assert_eq!(st, 200, "{started}");
    let m = wait_move(s, key, str_of(&started, "move_id")).await;
    assert_eq!(m["step"], "failed", "{m}");
    assert!(
        str_of(&m, "error").contains("already holds a database"),
        "{m}"
    );
    let mine: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT v FROM `{db}`.mine")))
        .fetch_one(&mut operator)
        .await
        .expect("the operator's table is still there");
    assert_eq!(mine, 7);
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP DATABASE `{db}`")))
        .execute(&mut operator)
        .await
        .expect("drop");
    let _ = operator.close().await;
}

/// The tenant's database is on the attached server; the managed one keeps its old copy, every
/// login of it locked, until the tenant's hard delete drops both.
async fn old_copy_is_locked_then_dropped(s: &TdbServer, key: &str, db: &str) {
    let mut to = server_admin(s, ATTACHED).await;
    let mut from = server_admin(s, "mysql-shared").await;
    let rows = |table: &str| format!("SELECT COUNT(*) FROM `{db}`.{table}");
    let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(rows("items")))
        .fetch_one(&mut to)
        .await
        .expect("items on the attached server");
    assert_eq!(n, ROWS as i64);
    let locked: Vec<(String, Option<String>)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT User, JSON_VALUE(Priv, '$.account_locked') FROM mysql.global_priv
          WHERE User IN (SELECT User FROM mysql.db WHERE Db = '{}')
            AND User NOT LIKE 'tdb\\_to\\_%'",
        db.replace('_', "\\\\_")
    )))
    .fetch_all(&mut from)
    .await
    .expect("the old copy's users");
    assert_eq!(locked.len(), 2, "{locked:?}");
    assert!(
        locked
            .iter()
            .all(|(_, l)| matches!(l.as_deref(), Some("1" | "true"))),
        "the old copy's logins are open: {locked:?}"
    );
    assert!(
        has_database(&mut from, db).await,
        "the old copy was not kept"
    );
    let (st, gone) = delete(s, "/tenants/acme?hard=true", key).await;
    assert_eq!(st, 200, "{gone}");
    assert!(!has_database(&mut from, db).await, "the old copy stays");
    assert!(!has_database(&mut to, db).await, "the database stays");
    let _ = to.close().await;
    let _ = from.close().await;
}

async fn has_database(conn: &mut MySqlConnection, db: &str) -> bool {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?",
    )
    .bind(db)
    .fetch_one(conn)
    .await
    .expect("schemata");
    n > 0
}
