//! Workspaces, DDL capture and blueprints through the real API on a real managed PostgreSQL.

mod common;

use common::*;
use reqwest::Method;
use serde_json::{Value, json};
use sqlx::Connection;

async fn workspace(s: &tdb_testkit::TdbServer, key: &str, name: &str, mode: &str) -> Value {
    let (st, body) = post(
        s,
        "/workspaces",
        Some(key),
        json!({"name": name, "database": "PostgreSQL", "mode": mode}),
    )
    .await;
    assert_eq!(st, 201, "{body}");
    body
}

async fn query(s: &tdb_testkit::TdbServer, key: &str, ws: &str, sql: &str) -> (u16, Value) {
    post(
        s,
        &format!("/workspaces/{ws}/queries"),
        Some(key),
        json!({ "query": sql }),
    )
    .await
}

async fn pending(s: &tdb_testkit::TdbServer, key: &str, ws: &str) -> Vec<(i64, String)> {
    let (st, diff) = get(s, &format!("/workspaces/{ws}/diff"), key).await;
    assert_eq!(st, 200, "{diff}");
    diff["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .map(|c| {
            (
                c["id"].as_i64().expect("id"),
                c["statement"].as_str().expect("statement").to_string(),
            )
        })
        .collect()
}

fn columns_of(schema: &Value, table: &str) -> Vec<String> {
    schema["tables"]
        .as_array()
        .expect("tables")
        .iter()
        .find(|t| t["name"] == table)
        .unwrap_or_else(|| panic!("no table {table} in {schema}"))["columns"]
        .as_array()
        .expect("columns")
        .iter()
        .map(|c| c["name"].as_str().expect("name").to_string())
        .collect()
}

/// The physical databases on the managed server, as its administrator sees them.
async fn server_databases(s: &tdb_testkit::TdbServer) -> Vec<String> {
    let url = s.managed_admin_url("postgres").expect("admin url");
    let mut conn = sqlx::PgConnection::connect(&url)
        .await
        .expect("admin connect");
    sqlx::query_scalar("SELECT datname::text FROM pg_database ORDER BY 1")
        .fetch_all(&mut conn)
        .await
        .expect("list databases")
}

#[tokio::test]
async fn a_new_user_designs_a_schema() {
    let s = start().await;
    let key = str_of(&signup(&s, "alice@example.com", "Alpha").await, "api_key").to_string();
    let created = workspace(&s, &key, "myapp", "tenant").await;
    assert_eq!(created["blueprint"], "myapp");
    assert_eq!(created["connection"]["database"], "myapp_workspace");
    let url = str_of(&created, "connection_string");
    assert!(
        url.starts_with("postgresql://w_") && url.ends_with("/myapp_workspace?sslmode=require"),
        "{url}"
    );

    // One request: DDL, DML, DDL, DDL. Exactly the three DDL statements are pending, in order.
    let (st, out) = query(
        &s,
        &key,
        "myapp",
        "CREATE TABLE users (id serial PRIMARY KEY, name text NOT NULL);\n\
        INSERT INTO users (name) VALUES ('alice'), ('bob');\n\
        CREATE INDEX users_name_idx ON users (name);\n\
        ALTER TABLE users ADD COLUMN email text",
    )
    .await;
    assert_eq!(st, 200, "{out}");
    assert_eq!(out["statements_executed"], 4);
    let changes = pending(&s, &key, "myapp").await;
    let statements: Vec<&str> = changes.iter().map(|(_, s)| s.as_str()).collect();
    assert_eq!(
        statements,
        [
            "CREATE TABLE users (id serial PRIMARY KEY, name text NOT NULL)",
            "CREATE INDEX users_name_idx ON users (name)",
            "ALTER TABLE users ADD COLUMN email text",
        ]
    );
    let (st, rows) = query(&s, &key, "myapp", "SELECT name FROM users ORDER BY id").await;
    assert_eq!(st, 200);
    assert_eq!(rows["columns"], json!(["name"]));
    assert_eq!(rows["rows"], json!([["alice"], ["bob"]]));

    // Revert the column: gone from the database and from the queue.
    let (st, body) = post(
        &s,
        &format!("/workspaces/myapp/diff/{}/revert", changes[2].0),
        Some(&key),
        json!({}),
    )
    .await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(
        body["message"],
        "Reverted: ALTER TABLE users DROP COLUMN IF EXISTS email;"
    );
    let (_, schema) = get(&s, "/workspaces/myapp/schema", &key).await;
    assert_eq!(columns_of(&schema, "users"), ["id", "name"]);

    // Skip the index: out of the queue, still in the database.
    let (st, _) = delete(
        &s,
        &format!("/workspaces/myapp/diff/{}", changes[1].0),
        &key,
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(pending(&s, &key, "myapp").await.len(), 1);
    let (_, schema) = get(&s, "/workspaces/myapp/schema", &key).await;
    let users = schema["tables"]
        .as_array()
        .expect("tables")
        .iter()
        .find(|t| t["name"] == "users")
        .expect("users")
        .clone();
    assert!(users["indexes"].to_string().contains("users_name_idx"));

    // Import the saas template; its `users` already exists and is skipped.
    let (st, imported) = post(
        &s,
        "/workspaces/myapp/schema",
        Some(&key),
        json!({"source": "template", "template": "saas"}),
    )
    .await;
    assert_eq!(st, 200, "{imported}");
    assert_eq!(imported["skipped"], json!(["users"]));
    assert_eq!(imported["errors"], json!([]));
    for table in [
        "organizations",
        "memberships",
        "subscriptions",
        "invoices",
        "audit_events",
    ] {
        assert!(
            imported["created"]
                .as_array()
                .expect("created")
                .contains(&json!(table)),
            "{table}: {imported}"
        );
    }
    let (_, schema) = get(&s, "/workspaces/myapp/schema", &key).await;
    assert_eq!(schema["tables"].as_array().expect("tables").len(), 6);
    let memberships = schema["tables"]
        .as_array()
        .expect("tables")
        .iter()
        .find(|t| t["name"] == "memberships")
        .expect("memberships")
        .clone();
    assert_eq!(
        memberships["foreign_keys"].as_array().expect("fks").len(),
        2,
        "{memberships}"
    );
    let after_import = pending(&s, &key, "myapp").await;
    assert_eq!(
        after_import.len(),
        1 + imported["details"]["statements_executed"]
            .as_u64()
            .expect("n") as usize
    );

    // The workspace view and the blueprint agree.
    let (_, ws) = get(&s, "/workspaces/myapp", &key).await;
    assert_eq!(ws["undeployed_changes"], after_import.len());
    assert_eq!(ws["connection"]["password"], "••••••••");
    assert_eq!(ws["version"], 0);
    assert_eq!(
        ws["schema"].as_array().expect("schema").len(),
        after_import.len()
    );
    let (_, bps) = get(&s, "/blueprints", &key).await;
    assert_eq!(bps["blueprints"][0]["name"], "myapp");
    assert_eq!(bps["blueprints"][0]["current_version"], 0);
    let (st, bp) = get(&s, "/blueprints/myapp", &key).await;
    assert_eq!(
        (st, &bp["schema"]),
        (200, &json!([])),
        "nothing deployed yet"
    );
    let (_, versions) = get(&s, "/blueprints/myapp/versions", &key).await;
    assert_eq!(versions["count"], 0);
}

#[tokio::test]
async fn only_committed_ddl_is_captured_and_limits_hold() {
    let s = start().await;
    let key = str_of(&signup(&s, "alice@example.com", "Alpha").await, "api_key").to_string();
    workspace(&s, &key, "app", "tenant").await;

    let (st, _) = query(
        &s,
        &key,
        "app",
        "BEGIN; CREATE TABLE gone (a int); ROLLBACK",
    )
    .await;
    assert_eq!(st, 200);
    let (st, _) = query(&s, &key, "app", "BEGIN; CREATE TABLE kept (a int); SAVEPOINT s; CREATE TABLE dropped (a int); ROLLBACK TO SAVEPOINT s; COMMIT").await;
    assert_eq!(st, 200);
    let (st, _) = query(&s, &key, "app", "BEGIN; CREATE TABLE unfinished (a int)").await;
    assert_eq!(st, 200);
    // A failure stops the batch; what ran before it (outside a transaction) stays captured.
    let (st, err) = query(
        &s,
        &key,
        "app",
        "CREATE TABLE first (a int); CREATE TABLE first (a int); CREATE TABLE never (a int)",
    )
    .await;
    assert_eq!(st, 400, "{err}");
    assert_eq!(
        (err["sqlstate"].as_str(), &err["statement_index"]),
        (Some("42P07"), &json!(1))
    );
    assert!(str_of(&err, "error").contains("already exists"));
    // Where the server points in the failed statement, counted from 1 in `statement`.
    let (st, err) = query(&s, &key, "app", "SELECT 1; SELECT a, nope FROM kept").await;
    assert_eq!(st, 400, "{err}");
    assert_eq!(
        (&err["statement"], &err["sqlstate"], &err["position"]),
        (
            &json!("SELECT a, nope FROM kept"),
            &json!("42703"),
            &json!(11)
        ),
        "{err}"
    );
    let statements: Vec<String> = pending(&s, &key, "app")
        .await
        .into_iter()
        .map(|(_, s)| s)
        .collect();
    assert_eq!(
        statements,
        ["CREATE TABLE kept (a int)", "CREATE TABLE first (a int)"]
    );
    let (_, schema) = get(&s, "/workspaces/app/schema", &key).await;
    let mut tables: Vec<&str> = schema["tables"]
        .as_array()
        .expect("tables")
        .iter()
        .map(|t| t["name"].as_str().expect("name"))
        .collect();
    tables.sort();
    assert_eq!(tables, ["first", "kept"], "the database matches the queue");

    // Row cap and timeout from the settings.
    let (st, saved) = call(
        &s,
        Method::PATCH,
        "/workspaces/app/settings",
        Some(&key),
        Some(r#"{"max_rows_per_query": 5, "query_timeout_ms": 300}"#),
    )
    .await;
    assert_eq!(st, 200, "{saved}");
    // Nothing waits for a deployment: the settings apply at once (below).
    assert_eq!(saved["pending_deploy"], false);
    let (_, rows) = query(&s, &key, "app", "SELECT g FROM generate_series(1, 100) g").await;
    assert_eq!(
        (rows["rows"].as_array().map(Vec::len), &rows["truncated"]),
        (Some(5), &json!(true))
    );
    let (st, slow) = query(&s, &key, "app", "SELECT pg_sleep(3)").await;
    assert_eq!(
        (st, slow["sqlstate"].as_str()),
        (400, Some("57014")),
        "{slow}"
    );
    let (_, settings) = get(&s, "/workspaces/app/settings", &key).await;
    assert_eq!(
        settings["settings"],
        json!({"query_timeout_ms": 300, "max_rows_per_query": 5, "max_connections": 10, "pool_mode": "session", "max_client_connections": 100})
    );
    assert_eq!(
        settings["available_fields"],
        json!([
            "query_timeout_ms",
            "max_rows_per_query",
            "max_connections",
            "pool_mode",
            "max_client_connections"
        ])
    );
    // An array of commands is Redis's: SQL comes as one string.
    let (st, refused) = post(
        &s,
        "/workspaces/app/queries",
        Some(&key),
        json!({"query": ["SELECT 1", "SELECT 2"]}),
    )
    .await;
    assert_eq!(
        (st, refused["field"].as_str()),
        (400, Some("query")),
        "{refused}"
    );
    // Rules for keys are Redis's: a PostgreSQL workspace says which fields it has.
    let (st, refused) = call(
        &s,
        Method::PATCH,
        "/workspaces/app/settings",
        Some(&key),
        Some(r#"{"default_ttl": 60}"#),
    )
    .await;
    assert_eq!(st, 400, "{refused}");
    assert_eq!(refused["field"], "default_ttl", "{refused}");
    assert!(
        refused["error"]
            .as_str()
            .is_some_and(|m| m.contains("PostgreSQL workspaces have no default_ttl")),
        "{refused}"
    );
}

#[tokio::test]
async fn control_mode_records_nothing_and_deletion_drops_databases() {
    let s = start().await;
    let key = str_of(&signup(&s, "alice@example.com", "Alpha").await, "api_key").to_string();
    let created = workspace(&s, &key, "control", "control").await;
    assert!(created.get("blueprint").is_none());
    let (st, _) = query(
        &s,
        &key,
        "control",
        "CREATE TABLE billing (id int); INSERT INTO billing VALUES (1)",
    )
    .await;
    assert_eq!(st, 200);
    let (st, body) = get(&s, "/workspaces/control/diff", &key).await;
    assert_eq!(st, 400, "control mode has no diff: {body}");
    let (_, bps) = get(&s, "/blueprints", &key).await;
    assert_eq!(bps["count"], 0);
    let (_, saved) = post(
        &s,
        "/workspaces/control/settings",
        Some(&key),
        json!({"max_connections": 20}),
    )
    .await;
    assert_eq!(saved["message"], "Settings saved.");

    let before = server_databases(&s).await;
    let (st, body) = delete(&s, "/workspaces/control", &key).await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["details"]["physical_db"], true);
    let after = server_databases(&s).await;
    assert_eq!(
        after.len(),
        before.len() - 1,
        "database dropped: {before:?} -> {after:?}"
    );
    let (st, _) = get(&s, "/workspaces/control", &key).await;
    assert_eq!(st, 404);

    // Deleting a project drops the databases of its workspaces.
    let (_, beta) = post(&s, "/projects", Some(&key), json!({"name": "Beta"})).await;
    let beta_key = str_of(&beta, "api_key");
    workspace(&s, beta_key, "one", "tenant").await;
    workspace(&s, beta_key, "two", "control").await;
    assert_eq!(server_databases(&s).await.len(), after.len() + 2);
    let (st, _) = delete(
        &s,
        &format!("/projects/{}", str_of(&beta, "project_id")),
        &key,
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(server_databases(&s).await, after);
    assert!(
        after
            .iter()
            .all(|d| !d.contains("myapp") && !d.contains("control")),
        "opaque names only: {after:?}"
    );
}

#[tokio::test]
async fn bad_input_answers_the_right_4xx() {
    let s = start().await;
    let key = str_of(&signup(&s, "alice@example.com", "Alpha").await, "api_key").to_string();
    workspace(&s, &key, "app", "tenant").await;
    workspace(&s, &key, "ctl", "control").await;
    let bodies = [
        (
            json!({"name": "app", "database": "PostgreSQL", "mode": "tenant"}),
            409,
            None,
        ),
        (
            json!({"name": "App", "database": "PostgreSQL", "mode": "tenant"}),
            400,
            Some("name"),
        ),
        (
            json!({"name": "a__b", "database": "PostgreSQL", "mode": "tenant"}),
            400,
            Some("name"),
        ),
        (
            json!({"name": "x", "database": "oracle", "mode": "tenant"}),
            400,
            Some("database"),
        ),
        (
            json!({"name": "x", "database": "MongoDB", "mode": "tenant"}),
            400,
            Some("database"),
        ),
        (
            json!({"name": "x", "database": "mongodb", "mode": "control"}),
            400,
            Some("database"),
        ),
        (
            json!({"name": "x", "database": "PostgreSQL", "mode": "staging"}),
            400,
            Some("mode"),
        ),
        (
            json!({"name": "x", "database": "PostgreSQL"}),
            400,
            Some("mode"),
        ),
    ];
    for (body, status, field) in bodies {
        let (st, answer) = post(&s, "/workspaces", Some(&key), body.clone()).await;
        assert_eq!(st, status, "{body}: {answer}");
        if let Some(field) = field {
            assert_eq!(answer["field"], field, "{answer}");
        }
    }
    // An engine not built yet is named, with those that are.
    let (_, mongo) = post(
        &s,
        "/workspaces",
        Some(&key),
        json!({"name": "x", "database": "MongoDB", "mode": "tenant"}),
    )
    .await;
    let error = str_of(&mongo, "error");
    assert!(
        error.contains("MongoDB") && error.contains("PostgreSQL, MySQL, Redis"),
        "{mongo}"
    );

    let cases: Vec<(Method, &str, Option<Value>, u16)> = vec![
        (Method::GET, "/workspaces/nope", None, 404),
        (
            Method::POST,
            "/workspaces/nope/queries",
            Some(json!({"query": "SELECT 1"})),
            404,
        ),
        (Method::GET, "/workspaces/nope/schema", None, 404),
        (Method::GET, "/blueprints/nope", None, 404),
        (Method::GET, "/blueprints/ctl", None, 404),
        (
            Method::POST,
            "/workspaces/app/queries",
            Some(json!({"query": "SELEC 1"})),
            400,
        ),
        (
            Method::POST,
            "/workspaces/app/queries",
            Some(json!({"query": "  ;  "})),
            400,
        ),
        (
            Method::POST,
            "/workspaces/app/queries",
            Some(json!({"query": 7})),
            400,
        ),
        (
            Method::POST,
            "/workspaces/app/queries",
            Some(json!({"query": "SELECT * FROM missing"})),
            400,
        ),
        (Method::GET, "/workspaces/ctl/diff", None, 400),
        (Method::DELETE, "/workspaces/app/diff/999999", None, 404),
        (Method::DELETE, "/workspaces/app/diff/abc", None, 400),
        (
            Method::POST,
            "/workspaces/app/diff/999999/revert",
            Some(json!({})),
            404,
        ),
        (
            Method::PATCH,
            "/workspaces/app/settings",
            Some(json!({"query_timeout_ms": 5})),
            400,
        ),
        (
            Method::PATCH,
            "/workspaces/app/settings",
            Some(json!({"max_rows_per_query": 0})),
            400,
        ),
        (
            Method::PATCH,
            "/workspaces/app/settings",
            Some(json!({"max_connections": 100000})),
            400,
        ),
        (
            Method::PATCH,
            "/workspaces/app/settings",
            Some(json!({"max_connections": "ten"})),
            400,
        ),
        (
            Method::PATCH,
            "/workspaces/app/settings",
            Some(json!({"max_client_connections": 0})),
            400,
        ),
        (
            Method::PATCH,
            "/workspaces/app/settings",
            Some(json!({"max_client_connections": 10001})),
            400,
        ),
        (
            Method::PATCH,
            "/workspaces/app/settings",
            Some(json!({"default_ttl": 3})),
            400,
        ),
        (
            Method::POST,
            "/workspaces/app/schema",
            Some(json!({"source": "template", "template": "ecommmerce"})),
            400,
        ),
        (
            Method::POST,
            "/workspaces/app/schema",
            Some(json!({"source": "template"})),
            400,
        ),
        (
            Method::POST,
            "/workspaces/app/schema",
            Some(json!({"source": "ftp"})),
            400,
        ),
        (
            Method::POST,
            "/workspaces/app/schema",
            Some(json!({"source": "json"})),
            400,
        ),
        (
            Method::POST,
            "/workspaces/app/schema",
            Some(
                json!({"source": "json", "tables": [{"name": "t", "columns": [{"name": "a", "type": "int); DROP TABLE x; --"}]}]}),
            ),
            400,
        ),
        (
            Method::POST,
            "/workspaces/app/schema",
            Some(
                json!({"source": "database", "connection": {"host": "127.0.0.1", "port": 1, "database": "x", "user": "u"}}),
            ),
            400,
        ),
        (
            Method::POST,
            "/workspaces/app/schema",
            Some(json!({"source": "url", "url": "http://127.0.0.1:1/schema.json"})),
            400,
        ),
        (
            Method::POST,
            "/workspaces/app/schema",
            Some(json!({"source": "url", "url": "file:///etc/passwd"})),
            400,
        ),
        (
            Method::POST,
            "/workspaces/app/schema",
            Some(json!({"source": "url", "url": "http://169.254.169.254/latest"})),
            400,
        ),
    ];
    for (method, path, body, status) in cases {
        let text = body.as_ref().map(Value::to_string);
        let (st, answer) = call(&s, method.clone(), path, Some(&key), text.as_deref()).await;
        assert_eq!(st, status, "{method} {path} {body:?}: {answer}");
    }
    // Loopback URLs are refused by default (server-side request forgery), with a reason.
    let (_, answer) = post(
        &s,
        "/workspaces/app/schema",
        Some(&key),
        json!({"source": "url", "url": "http://127.0.0.1:1/x.json"}),
    )
    .await;
    assert!(
        str_of(&answer, "error").contains("internal address"),
        "{answer}"
    );

    // A DDL change without a reverse: a clear 400, the change stays queued.
    let (_, _) = query(&s, &key, "app", "CREATE VIEW v AS SELECT 1 AS one").await;
    let (id, _) = pending(&s, &key, "app").await.pop().expect("pending view");
    let (st, answer) = post(
        &s,
        &format!("/workspaces/app/diff/{id}/revert"),
        Some(&key),
        json!({}),
    )
    .await;
    assert_eq!(st, 400);
    assert!(
        str_of(&answer, "error").contains("no automatic reverse"),
        "{answer}"
    );
    assert_eq!(pending(&s, &key, "app").await.len(), 1);
}

#[tokio::test]
async fn keys_reach_only_their_project_scope_and_role() {
    let s = start().await;
    let alice = str_of(&signup(&s, "alice@example.com", "Alpha").await, "api_key").to_string();
    let bob = str_of(&signup(&s, "bob@example.com", "Beta").await, "api_key").to_string();
    workspace(&s, &alice, "app", "tenant").await;
    workspace(&s, &alice, "other", "tenant").await;

    let (st, _) = get(&s, "/workspaces/app", &bob).await;
    assert_eq!(st, 404, "another account's workspace is absent");
    let (st, _) = query(&s, &bob, "app", "SELECT 1").await;
    assert_eq!(st, 404);
    let (_, list) = get(&s, "/workspaces", &bob).await;
    assert_eq!(list["count"], 0);

    let (_, scoped) = post(
        &s,
        "/apikeys",
        Some(&alice),
        json!({"role": "write", "scope_type": "workspace", "scope_values": ["app"]}),
    )
    .await;
    let scoped = str_of(&scoped, "api_key").to_string();
    let (st, _) = query(&s, &scoped, "app", "CREATE TABLE t (a int)").await;
    assert_eq!(st, 200);
    let (st, body) = query(&s, &scoped, "other", "SELECT 1").await;
    assert_eq!((st, body["code"].as_str()), (403, Some("scope_denied")));
    let (_, list) = get(&s, "/workspaces", &scoped).await;
    assert_eq!(list["count"], 1, "the list shows only the scope: {list}");

    let (_, read) = post(&s, "/apikeys", Some(&alice), json!({"role": "read"})).await;
    let read = str_of(&read, "api_key").to_string();
    let (st, _) = query(&s, &read, "app", "SELECT * FROM t").await;
    assert_eq!(st, 200, "a read key may read");
    let (st, body) = query(&s, &read, "app", "CREATE TABLE u (a int)").await;
    assert_eq!((st, body["code"].as_str()), (403, Some("role_required")));
    let (st, body) = query(&s, &read, "app", "INSERT INTO t VALUES (1)").await;
    assert_eq!((st, body["code"].as_str()), (403, Some("role_required")));
    // A read key's SELECT runs in a read-only transaction: functions that write fail too.
    let (st, _) = query(&s, &alice, "app", "CREATE SEQUENCE counter").await;
    assert_eq!(st, 200);
    let (st, body) = query(&s, &read, "app", "SELECT nextval('counter')").await;
    assert_eq!(
        (st, body["sqlstate"].as_str()),
        (400, Some("25006")),
        "{body}"
    );
    let (_, value) = query(
        &s,
        &alice,
        "app",
        "SELECT last_value, is_called FROM counter",
    )
    .await;
    assert_eq!(
        value["rows"],
        json!([[1, false]]),
        "the sequence did not move"
    );

    // The workspace's database role cannot reach beyond its own database.
    let (st, body) = query(
        &s,
        &alice,
        "app",
        "SELECT * FROM dblink('dbname=postgres', 'select 1') AS t(a int)",
    )
    .await;
    assert_eq!(st, 400, "{body}");
    for sql in [
        "CREATE ROLE sneaky LOGIN",
        "COPY t FROM PROGRAM 'id'",
        "SELECT pg_read_file('/etc/passwd')",
    ] {
        let (st, body) = query(&s, &alice, "app", sql).await;
        assert_eq!(
            (st, body["code"].as_str(), body["sqlstate"].as_str()),
            (403, Some("permission_denied"), Some("42501")),
            "{sql}: {body}"
        );
    }
}
