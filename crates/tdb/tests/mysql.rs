//! MySQL tenants on tdb's managed MariaDB, through the real API: a MySQL workspace whose DDL is
//! captured by the MySQL parser, deployments to every tenant, admin queries with the DDL wall,
//! suspension, and a backup that a rollback brings back row for row.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use tdb_testkit::TdbServer;

/// Signs up and makes the tenant-mode MySQL workspace `shop`; returns the key and the
/// workspace as created.
async fn mysql_account(s: &TdbServer, email: &str) -> (String, Value) {
    let key = str_of(&signup(s, email, "Shop").await, "api_key").to_string();
    let body = json!({"name": "shop", "database": "MySQL", "mode": "tenant"});
    let (st, ws) = post(s, "/workspaces", Some(&key), body).await;
    assert_eq!(st, 201, "{ws}\n{}", s.log_tail());
    (key, ws)
}

async fn admin_query(s: &TdbServer, key: &str, tenant: &str, sql: &str) -> (u16, Value) {
    post(
        s,
        "/admin/query",
        Some(key),
        json!({"blueprint": "shop", "tenant_id": tenant, "query": sql}),
    )
    .await
}

/// Rows of a query on `tenant` that must succeed.
async fn rows(s: &TdbServer, key: &str, tenant: &str, sql: &str) -> Vec<Value> {
    let (st, body) = admin_query(s, key, tenant, sql).await;
    assert_eq!(st, 200, "{sql}: {body}");
    body["rows"].as_array().cloned().unwrap_or_default()
}

async fn count(s: &TdbServer, key: &str, tenant: &str) -> i64 {
    rows(s, key, tenant, "SELECT COUNT(*) FROM users").await[0][0]
        .as_i64()
        .expect("a count")
}

/// Row count and an order-free checksum of every column of `users`.
async fn users_sum(s: &TdbServer, key: &str, tenant: &str) -> Value {
    let sql = "SELECT COUNT(*) AS n, \
               COALESCE(SUM(CRC32(CONCAT_WS('|', id, email, COALESCE(plan, '-')))), 0) AS sum \
               FROM users";
    rows(s, key, tenant, sql).await.remove(0)
}

async fn create_tenant(s: &TdbServer, key: &str, name: &str) -> Value {
    let body = json!({"tenant_id": name, "databases": [{"blueprint": "shop"}]});
    let (st, t) = post(s, "/tenants", Some(key), body).await;
    assert_eq!(st, 201, "{t}\n{}", s.log_tail());
    assert_eq!(t["status"], "ready", "{t}");
    t
}

#[tokio::test]
async fn a_mysql_blueprint_deploys_to_every_tenant() {
    // Paid accounts, so that a tenant of its own server (L2) is refused for its engine alone.
    let s = start_with_env(&[("TDB_DEFAULT_TIER", "paid")]).await;
    let (key, ws) = mysql_account(&s, "mysql@example.com").await;
    assert_eq!(ws["database"], "MySQL");
    let url = str_of(&ws, "connection_string");
    assert!(
        url.starts_with("mysql://") && url.ends_with(&format!(":{}/shop_workspace", s.mysql_port)),
        "{url}"
    );

    // DDL is captured by the MySQL parser; rows are not, nor is a string that looks like DDL.
    ws_query(
        &s,
        &key,
        "shop",
        "CREATE TABLE users (id int AUTO_INCREMENT PRIMARY KEY, email varchar(120) NOT NULL UNIQUE); \
         INSERT INTO users (email) VALUES ('DROP TABLE users')",
    )
    .await;
    let (_, diff) = get(&s, "/workspaces/shop/diff", &key).await;
    assert_eq!(diff["count"], 1, "{diff}");
    assert_eq!(diff["changes"][0]["tag"], "CREATE TABLE", "{diff}");
    let (st, schema) = get(&s, "/workspaces/shop/schema", &key).await;
    assert_eq!(st, 200, "{schema}");
    assert!(schema.to_string().contains("email"), "{schema}");
    // A MySQL syntax error is a 400 naming it.
    let (st, bad) = post(
        &s,
        "/workspaces/shop/queries",
        Some(&key),
        json!({"query": "CREATE TABLE (oops"}),
    )
    .await;
    assert_eq!(st, 400, "{bad}");

    let d = deploy_and_wait(&s, &key, "shop").await;
    assert_eq!(
        (d["status"].as_str(), d["version"].as_i64()),
        (Some("completed"), Some(1)),
        "{d}"
    );
    for name in ["acme", "globex"] {
        let t = create_tenant(&s, &key, name).await;
        let db = &t["databases"][0];
        assert_eq!(db["version"], 1, "{t}");
        let conn = str_of(&db["connection"], "connection_string");
        assert!(
            conn.starts_with("mysql://")
                && conn.ends_with(&format!(":{}/shop__{name}", s.mysql_port)),
            "{conn}"
        );
    }

    // Point-in-time recovery covers PostgreSQL databases: a MySQL tenant is told so.
    let (_, t) = get(&s, "/tenants/acme", &key).await;
    assert!(
        t["pitr_unavailable"]
            .as_str()
            .is_some_and(|w| w.contains("PostgreSQL")),
        "{t}"
    );
    let (st, refused) = post(
        &s,
        "/tenants/acme/recover",
        Some(&key),
        json!({"timestamp": chrono::Utc::now().to_rfc3339()}),
    )
    .await;
    assert_eq!(st, 409, "{refused}");
    // Nor is there a server of its own for a MySQL tenant yet.
    let body =
        json!({"tenant_id": "solo", "databases": [{"blueprint": "shop", "isolation_level": 2}]});
    let (st, refused) = post(&s, "/tenants", Some(&key), body).await;
    assert_eq!(st, 400, "{refused}");
    assert!(
        refused.to_string().contains("isolation level 2"),
        "{refused}"
    );

    // Rows go in through admin queries; DDL does not.
    let (st, ins) = admin_query(
        &s,
        &key,
        "acme",
        "INSERT INTO users (email) VALUES ('a@acme.test'), ('b@acme.test')",
    )
    .await;
    assert_eq!(st, 200, "{ins}");
    let (st, refused) = admin_query(&s, &key, "acme", "DROP TABLE users").await;
    assert_eq!(st, 400, "{refused}");
    assert!(
        refused
            .to_string()
            .contains("DDL not allowed on tenant databases"),
        "{refused}"
    );
    assert_eq!(count(&s, &key, "globex").await, 0);

    // A second version reaches both tenants, their rows kept.
    ws_query(
        &s,
        &key,
        "shop",
        "ALTER TABLE users ADD COLUMN plan varchar(20)",
    )
    .await;
    let d = deploy_and_wait(&s, &key, "shop").await;
    assert_eq!(
        (d["status"].as_str(), d["version"].as_i64()),
        (Some("completed"), Some(2)),
        "{d}"
    );
    for name in ["acme", "globex"] {
        let cols = rows(
            &s,
            &key,
            name,
            "SELECT column_name FROM information_schema.columns \
             WHERE table_schema = DATABASE() AND table_name = 'users' ORDER BY ordinal_position",
        )
        .await;
        assert_eq!(cols.len(), 3, "{name}: {cols:?}");
    }
    assert_eq!(count(&s, &key, "acme").await, 2);

    // A pending CREATE INDEX is reverted in the workspace (DROP INDEX … ON …) and forgotten.
    ws_query(&s, &key, "shop", "CREATE INDEX users_plan ON users (plan)").await;
    let (_, diff) = get(&s, "/workspaces/shop/diff", &key).await;
    let id = diff["changes"][0]["id"].as_i64().expect("change id");
    let (st, reverted) = post(
        &s,
        &format!("/workspaces/shop/diff/{id}/revert"),
        Some(&key),
        json!({}),
    )
    .await;
    assert_eq!(st, 200, "{reverted}");
    let (_, diff) = get(&s, "/workspaces/shop/diff", &key).await;
    assert_eq!(diff["count"], 0, "{diff}");
}

#[tokio::test]
async fn a_mysql_tenant_is_backed_up_broken_and_rolled_back() {
    let s = start().await;
    let (key, _) = mysql_account(&s, "backup@example.com").await;
    ws_query(
        &s,
        &key,
        "shop",
        "CREATE TABLE users (id int AUTO_INCREMENT PRIMARY KEY, email varchar(120) NOT NULL UNIQUE, \
         plan varchar(20))",
    )
    .await;
    assert_eq!(
        deploy_and_wait(&s, &key, "shop").await["status"],
        "completed"
    );
    create_tenant(&s, &key, "acme").await;
    let mut values = Vec::new();
    for i in 0..500 {
        values.push(format!(
            "('u{i}@acme.test', {})",
            if i % 3 == 0 { "'pro'" } else { "NULL" }
        ));
    }
    let sql = format!(
        "INSERT INTO users (email, plan) VALUES {}",
        values.join(", ")
    );
    assert_eq!(admin_query(&s, &key, "acme", &sql).await.0, 200);
    let before = users_sum(&s, &key, "acme").await;
    assert_eq!(before[0], 500, "{before}");

    let (st, b) = post(&s, "/tenants/acme/backup", Some(&key), json!({})).await;
    assert_eq!(st, 200, "{b}");
    let path = b["paths"][0].as_str().expect("a path").to_string();
    assert!(
        path.starts_with("mysql/manual/") && path.ends_with(".sql.gz"),
        "{path}"
    );
    let list = wait_for(&s, &key, "/tenants/acme/backups", |l| {
        l["backups"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|b| b["storage_path"] == path.as_str() && b["status"] != "pending")
    })
    .await;
    assert!(
        list.to_string().contains("completed"),
        "{list}\n{}",
        s.log_tail()
    );

    // Break it: rows gone, rows changed, rows added.
    for sql in [
        "DELETE FROM users WHERE id % 2 = 0",
        "UPDATE users SET plan = 'free' WHERE plan IS NULL",
        "INSERT INTO users (email) VALUES ('intruder@x.test')",
    ] {
        assert_eq!(admin_query(&s, &key, "acme", sql).await.0, 200, "{sql}");
    }
    assert_ne!(users_sum(&s, &key, "acme").await, before);

    let (st, r) = post(
        &s,
        "/tenants/acme/rollback",
        Some(&key),
        json!({ "storage_path": path }),
    )
    .await;
    assert_eq!(st, 200, "{r}");
    let id = r["rollback_id"].as_str().expect("rollback id").to_string();
    let t = wait_for(&s, &key, "/tenants/acme", |t| {
        t["last_rollback"]["rollback_id"] == id.as_str()
            && matches!(
                t["last_rollback"]["step"].as_str(),
                Some("completed" | "failed")
            )
    })
    .await;
    assert_eq!(
        t["last_rollback"]["step"],
        "completed",
        "{t}\n{}",
        s.log_tail()
    );
    assert_eq!(users_sum(&s, &key, "acme").await, before);
    // New rows still get fresh ids after the rollback.
    let (st, _) = admin_query(
        &s,
        &key,
        "acme",
        "INSERT INTO users (email) VALUES ('new@acme.test')",
    )
    .await;
    assert_eq!(st, 200);

    // Suspended, it answers no admin query; resumed, it does.
    let (st, _) = post(&s, "/tenants/acme/suspend", Some(&key), json!({})).await;
    assert_eq!(st, 200);
    assert_eq!(admin_query(&s, &key, "acme", "SELECT 1").await.0, 409);
    let (st, _) = post(&s, "/tenants/acme/resume", Some(&key), json!({})).await;
    assert_eq!(st, 200);
    assert_eq!(count(&s, &key, "acme").await, 501);

    // The trash keeps the rows out of reach; a restore brings them back; a hard delete drops
    // the database, so the name can be taken again, empty.
    let (st, _) = delete(&s, "/tenants/acme", &key).await;
    assert_eq!(st, 200);
    assert_ne!(admin_query(&s, &key, "acme", "SELECT 1").await.0, 200);
    let (st, restored) = post(&s, "/tenants/acme/restore", Some(&key), json!({})).await;
    assert_eq!(st, 200, "{restored}");
    wait_for(&s, &key, "/tenants/acme", |t| t["status"] == "ready").await;
    assert_eq!(count(&s, &key, "acme").await, 501);
    let (st, gone) = delete(&s, "/tenants/acme?hard=true", &key).await;
    assert_eq!(st, 200, "{gone}");
    let (st, _) = get(&s, "/tenants/acme", &key).await;
    assert_eq!(st, 404);
    create_tenant(&s, &key, "acme").await;
    assert_eq!(count(&s, &key, "acme").await, 0);
}

/// MySQL DDL is not transactional, so a deployment records each statement as it completes on
/// each tenant. Killed with `kill -9` several times mid-fan-out, it resumes and applies every
/// statement exactly once on every tenant: each of them fails if run twice, and each tenant
/// ends with all of them.
#[tokio::test]
async fn a_mysql_deployment_resumes_after_kill_9_without_running_a_statement_twice() {
    const TENANTS: usize = 40;
    let mut s = start_with_env(&[("TDB_DEPLOY_PARALLELISM", "2")]).await;
    let (key, _) = mysql_account(&s, "crash@example.com").await;
    ws_query(
        &s,
        &key,
        "shop",
        "CREATE TABLE events (id int AUTO_INCREMENT PRIMARY KEY, body text)",
    )
    .await;
    assert_eq!(
        deploy_and_wait(&s, &key, "shop").await["status"],
        "completed"
    );
    for i in 0..TENANTS {
        create_tenant(&s, &key, &format!("t{i:02}")).await;
    }
    ws_query(
        &s,
        &key,
        "shop",
        "ALTER TABLE events ADD COLUMN kind varchar(20); \
         CREATE INDEX events_kind ON events (kind); \
         ALTER TABLE events ADD COLUMN seen_at datetime; \
         CREATE TABLE tags (id int PRIMARY KEY, name varchar(20)); \
         ALTER TABLE tags ADD COLUMN weight int",
    )
    .await;
    let (st, dep) = post(
        &s,
        "/deployments",
        Some(&key),
        json!({"blueprint_name": "shop"}),
    )
    .await;
    assert_eq!(st, 201, "{dep}");
    let id = str_of(&dep, "id").to_string();
    let mut kills = 0;
    let mut last_done = -1;
    while kills < 3 {
        let (_, d) = get(&s, &format!("/deployments/{id}"), &key).await;
        if d["status"] == "completed" {
            break;
        }
        let done = d["tenants_completed"].as_i64().unwrap_or(0);
        if done > last_done {
            s.kill9().expect("kill -9");
            kills += 1;
            eprintln!("kill -9 #{kills} at {done}/{TENANTS} completed");
            s.restart().await.expect("restart");
            last_done = done;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        kills >= 1,
        "the deployment finished before it could be killed"
    );
    let finished = wait_for(&s, &key, &format!("/deployments/{id}"), |d| {
        matches!(
            d["status"].as_str(),
            Some("completed" | "completed_with_errors" | "failed")
        )
    })
    .await;
    assert_eq!(
        finished["status"],
        "completed",
        "{finished}\n{}",
        s.log_tail()
    );
    assert_eq!(finished["tenants_failed"], 0, "{finished}");
    let (st, all) = post(&s, "/admin/query", Some(&key), json!({"blueprint": "shop", "all_tenants": true,
        "query": "SELECT (SELECT COUNT(*) FROM information_schema.columns WHERE table_schema = DATABASE() \
                    AND column_name IN ('kind', 'seen_at', 'weight')), \
                  (SELECT COUNT(*) FROM information_schema.statistics WHERE table_schema = DATABASE() \
                    AND index_name = 'events_kind')"})).await;
    assert_eq!(st, 200, "{all}");
    let results = all["results"].as_array().expect("results");
    assert_eq!(results.len(), TENANTS);
    for r in results {
        assert_eq!(r["rows"], json!([[3, 1]]), "{r}");
    }
}

/// An operator's own MariaDB, attached under `[[servers]]` by a `mysql://` URL, takes the MySQL
/// workspaces and tenants; tdb starts no MariaDB of its own (`mysql_managed = false`), and the
/// attached server is secured as a managed one is (no anonymous users, no `test` database).
#[tokio::test]
async fn an_attached_mariadb_serves_mysql_tenants() {
    use tdb_engines::managed::mariadb::Listen;
    let root = tdb_testkit::reachable_tempdir().expect("tempdir");
    let server = tdb_engines::ManagedMariadb::start(tdb_engines::ManagedMariadbOptions {
        dir: root.path().join("own-mariadb"),
        run_as: tdb_engines::RunAs::resolve("mysql").expect("mysql user"),
        master_key: tdb_core::secrets::MasterKey::generate(),
        label: "operator-mariadb".into(),
        listen: Listen::Loopback,
        settings: vec![],
    })
    .await
    .expect("the operator's MariaDB starts");
    let e = server.endpoint().clone();
    let toml = format!(
        "mysql_managed = false\nimport_allow_private_urls = true\n\n[[servers]]\n\
         name = \"maria-own\"\nengine = \"mysql\"\n\
         url = \"mysql://{}:{}@127.0.0.1:{}\"\n",
        e.user, e.password, e.port
    );
    // A schema elsewhere on the operator's server, to import from.
    let opts = sqlx::mysql::MySqlConnectOptions::new()
        .host("127.0.0.1")
        .port(e.port)
        .username(&e.user)
        .password(&e.password);
    let mut conn = <sqlx::MySqlConnection as sqlx::Connection>::connect_with(&opts)
        .await
        .expect("admin login");
    for sql in [
        "CREATE DATABASE legacy",
        "CREATE TABLE legacy.customers (id int PRIMARY KEY, name varchar(40) NOT NULL)",
        "CREATE TABLE legacy.orders (id int PRIMARY KEY, customer_id int NOT NULL, \
         FOREIGN KEY (customer_id) REFERENCES legacy.customers (id))",
    ] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|err| panic!("{sql}: {err}"));
    }
    let s = TdbServer::start_with(
        bin(),
        tdb_testkit::ServeOptions {
            config_toml: Some(toml),
            ..Default::default()
        },
    )
    .await
    .expect("tdb serve starts");
    let (key, _) = mysql_account(&s, "attached@example.com").await;
    // Import from an external MySQL database: its tables, foreign keys first, captured as DDL.
    let source = json!({"source": "database", "connection": {"type": "mysql", "host": "127.0.0.1",
        "port": e.port, "database": "legacy", "user": e.user, "password": e.password}});
    let (st, imported) = post(&s, "/workspaces/shop/schema", Some(&key), source).await;
    assert_eq!(st, 200, "{imported}");
    let (_, diff) = get(&s, "/workspaces/shop/diff", &key).await;
    assert_eq!(diff["count"], 2, "{diff}");
    ws_query(
        &s,
        &key,
        "shop",
        "CREATE TABLE users (id int PRIMARY KEY, email varchar(80), plan varchar(20))",
    )
    .await;
    assert_eq!(
        deploy_and_wait(&s, &key, "shop").await["status"],
        "completed"
    );
    create_tenant(&s, &key, "acme").await;
    assert_eq!(
        admin_query(
            &s,
            &key,
            "acme",
            "INSERT INTO users VALUES (1, 'a@x', NULL)"
        )
        .await
        .0,
        200
    );
    assert_eq!(count(&s, &key, "acme").await, 1);
    assert!(
        !s.data_dir().join("servers/mysql-shared").exists(),
        "tdb started a MariaDB of its own"
    );
    // The tenant's database is on the operator's server, under the name clients use.
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM shop__acme.users")
        .fetch_one(&mut conn)
        .await
        .expect("the tenant's table on the attached server");
    assert_eq!(n, 1);
    drop(conn);
    drop(s);
    server.shutdown().await;
}
