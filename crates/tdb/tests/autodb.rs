//! The AutoDB-compatible surface with real clients: schema-per-tenant databases provisioned,
//! used with psql through the proxy, isolated from each other and dropped; registered
//! connections validated as the spec shows, sealed at rest and introspected.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::*;
use reqwest::Method;
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection};
use tdb_testkit::TdbServer;

fn psql(url: &str, sql: &str) -> Output {
    Command::new("psql")
        .args(["-X", "-v", "ON_ERROR_STOP=1", "-At", url, "-c", sql])
        .stdin(Stdio::null())
        .output()
        .expect("psql runs")
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).trim().to_string()
}

/// Runs `sql` and expects the server (or the proxy) to refuse it with `needle` in the error.
fn refused(url: &str, sql: &str, needle: &str) {
    let o = psql(url, sql);
    assert!(
        !o.status.success(),
        "{sql} should be refused; got {}",
        out(&o)
    );
    assert!(
        err(&o).contains(needle),
        "{sql}: expected '{needle}' in: {}",
        err(&o)
    );
}

async fn provision(s: &TdbServer, key: &str, name: &str) -> (u16, Value) {
    post(s, "/api/v1/provision", Some(key), json!({ "name": name })).await
}

/// The managed server's view of a provisioned database: (role exists, schema exists), its
/// schema looked for in the database of its own that the catalog names.
async fn on_server(s: &TdbServer, provision_id: &str, role: &str, schema: &str) -> (bool, bool) {
    let mut catalog = PgConnection::connect(&s.managed_admin_url("tdb_catalog").expect("url"))
        .await
        .expect("catalog connect");
    let database: String =
        sqlx::query_scalar("SELECT database FROM provisioned_databases WHERE id = $1")
            .bind(provision_id)
            .fetch_one(&mut catalog)
            .await
            .expect("its database");
    let url = s.managed_admin_url("postgres").expect("admin url");
    let mut conn = PgConnection::connect(&url).await.expect("admin connect");
    let role: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)")
            .bind(role)
            .fetch_one(&mut conn)
            .await
            .expect("roles");
    let Ok(mut inside) = PgConnection::connect(&s.managed_admin_url(&database).expect("url")).await
    else {
        return (role, false);
    };
    let schema: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
            .bind(schema)
            .fetch_one(&mut inside)
            .await
            .expect("schemas");
    (role, schema)
}

async fn role_of(s: &TdbServer, provision_id: &str) -> String {
    let url = s.managed_admin_url("tdb_catalog").expect("catalog url");
    let mut conn = PgConnection::connect(&url).await.expect("catalog connect");
    sqlx::query_scalar("SELECT role_name FROM provisioned_databases WHERE id = $1")
        .bind(provision_id)
        .fetch_one(&mut conn)
        .await
        .expect("role name")
}

#[tokio::test]
async fn provisioning_as_a_new_user() {
    let s = start().await;
    let account = signup(&s, "agent@example.com", "Agents").await;
    let key = str_of(&account, "api_key").to_string();

    let mut made = Vec::new();
    for name in ["staging", "preview", "scratch"] {
        let (st, body) = provision(&s, &key, name).await;
        assert_eq!(st, 201, "{body}");
        assert_envelope(st, &body);
        let d = &body["data"];
        assert_eq!(d["name"], name);
        assert_eq!(d["status"], "active");
        let schema = str_of(d, "schema_name");
        assert!(
            schema.starts_with("tenant_") && schema.len() == 28,
            "{schema}"
        );
        for field in ["id", "connection_id", "created_at", "connection_string"] {
            assert!(d[field].is_string(), "{field} in {d}");
        }
        made.push(d.clone());
    }
    let (st, body) = provision(&s, &key, "one too many").await;
    assert_eq!(st, 403, "{body}");
    assert_eq!(body["error"]["code"], "FORBIDDEN");
    assert_eq!(body["data"], json!({ "count": 3, "limit": 3 }));
    assert!(
        str_of(&body["error"], "message").contains("limit"),
        "{body}"
    );

    let (st, list) = get(&s, "/api/v1/provision", &key).await;
    assert_eq!(st, 200, "{list}");
    assert_eq!(list["data"]["count"], 3);
    assert_eq!(list["data"]["limit"], 3);
    assert_eq!(list["data"]["databases"].as_array().map(Vec::len), Some(3));
    assert!(
        list["data"]["databases"][0]
            .get("connection_string")
            .is_none()
    );

    // psql through the proxy: the schema is the database's whole world.
    let staging = &made[0];
    let url = str_of(staging, "connection_string");
    let schema = str_of(staging, "schema_name");
    let o = psql(
        url,
        "CREATE TABLE notes (id serial PRIMARY KEY, body text NOT NULL);
         INSERT INTO notes (body) VALUES ('hello'), ('world');",
    );
    assert!(o.status.success(), "{}", err(&o));
    let o = psql(
        url,
        "SELECT current_schema() || ':' || string_agg(body, ',' ORDER BY id) FROM notes",
    );
    assert_eq!(out(&o), format!("{schema}:hello,world"), "{}", err(&o));
    // Another provisioned database's table is not among what this one sees.
    let o = psql(
        str_of(&made[1], "connection_string"),
        "CREATE TABLE other_table (id int)",
    );
    assert!(o.status.success(), "{}", err(&o));
    let o = psql(
        url,
        "SELECT string_agg(table_schema || '.' || table_name, ',') FROM information_schema.tables
          WHERE table_schema NOT IN ('pg_catalog', 'information_schema')",
    );
    assert_eq!(out(&o), format!("{schema}.notes"), "{}", err(&o));
    let o = Command::new("psql")
        .args(["-X", "-At", url, "-c", "\\dt"])
        .stdin(Stdio::null())
        .output()
        .expect("psql");
    assert!(
        out(&o).contains("notes") && !out(&o).contains("other_table"),
        "{}",
        out(&o)
    );

    // The provisioned database is a connection at once: introspection and queries work on it.
    let connection_id = str_of(staging, "connection_id");
    let (st, intro) = get(
        &s,
        &format!("/api/v1/connections/{connection_id}/introspect"),
        &key,
    )
    .await;
    assert_eq!(st, 200, "{intro}");
    let schemas = intro["data"]["schemas"].as_array().expect("schemas");
    assert_eq!(schemas.len(), 1, "only its own schema: {intro}");
    assert_eq!(schemas[0]["name"], schema);
    assert_eq!(schemas[0]["tables"][0]["name"], "notes");
    assert_eq!(schemas[0]["tables"][0]["primary_key"], json!(["id"]));
    let (st, q) = post(
        &s,
        &format!("/api/v1/connections/{connection_id}/query"),
        Some(&key),
        json!({ "query": "SELECT count(*) AS n FROM notes" }),
    )
    .await;
    assert_eq!(st, 200, "{q}");
    assert_eq!(q["data"]["rows"], json!([[2]]));

    // Delete: schema, data and role are gone, the credential no longer opens anything, the
    // connection is inactive and the account has room again.
    let id = str_of(staging, "id");
    let role = role_of(&s, id).await;
    assert_eq!(on_server(&s, id, &role, schema).await, (true, true));
    let (st, body) = delete(&s, &format!("/api/v1/provision/{id}"), &key).await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["data"]["status"], "deleted");
    assert_eq!(on_server(&s, id, &role, schema).await, (false, false));
    let o = psql(url, "SELECT 1");
    assert!(!o.status.success(), "a deleted database still opens");
    let (st, c) = get(&s, &format!("/api/v1/connections/{connection_id}"), &key).await;
    assert_eq!(st, 200, "{c}");
    assert_eq!(c["data"]["is_active"], false);
    let (st, body) = delete(&s, &format!("/api/v1/provision/{id}"), &key).await;
    assert_eq!(st, 404, "deleting twice: {body}");
    let (st, body) = provision(&s, &key, "room again").await;
    assert_eq!(st, 201, "{body}");

    // Another account's key reaches none of it.
    let other = signup(&s, "other@example.com", "Other").await;
    let other_key = str_of(&other, "api_key");
    let preview_id = str_of(&made[1], "id");
    let (st, _) = delete(&s, &format!("/api/v1/provision/{preview_id}"), other_key).await;
    assert_eq!(st, 404);
    let preview_conn = str_of(&made[1], "connection_id");
    let (st, _) = get(
        &s,
        &format!("/api/v1/connections/{preview_conn}"),
        other_key,
    )
    .await;
    assert_eq!(st, 404);
}

#[tokio::test]
async fn provisioned_schemas_are_isolated_from_each_other() {
    let s = start().await;
    let account = signup(&s, "iso@example.com", "Isolation").await;
    let key = str_of(&account, "api_key").to_string();
    let (_, a) = provision(&s, &key, "a").await;
    let (_, b) = provision(&s, &key, "b").await;
    let (a, b) = (&a["data"], &b["data"]);
    let (a_url, b_url) = (
        str_of(a, "connection_string"),
        str_of(b, "connection_string"),
    );
    let a_schema = str_of(a, "schema_name");
    let a_role = role_of(&s, str_of(a, "id")).await;

    let o = psql(
        a_url,
        "CREATE TABLE secret (v text); INSERT INTO secret VALUES ('a-only');
         SELECT lo_from_bytea(0, 'large secret');",
    );
    assert!(o.status.success(), "{}", err(&o));
    let lo = out(&o).lines().last().unwrap_or_default().to_string();
    assert!(lo.parse::<u32>().is_ok(), "large object oid: {lo}");

    // Each provisioned database is a PostgreSQL database of its own: the other's schema is not
    // even there to be refused.
    let schema_absent = format!("relation \"{a_schema}.secret\" does not exist");
    refused(
        b_url,
        &format!("SELECT * FROM {a_schema}.secret"),
        &schema_absent,
    );
    refused(
        b_url,
        &format!("INSERT INTO {a_schema}.secret VALUES ('b')"),
        &schema_absent,
    );
    let b_schema = str_of(b, "schema_name");
    let path_refused = format!("SET search_path may name only this database's schema ({b_schema})");
    refused(
        b_url,
        &format!("SET search_path TO {a_schema}"),
        &path_refused,
    );
    refused(
        b_url,
        &format!("SELECT 1; SET search_path = {b_schema}, {a_schema}"),
        &path_refused,
    );
    // Naming its own schema is fine (migration tools do).
    let o = psql(
        b_url,
        &format!("SET search_path TO {b_schema}, public; SHOW search_path"),
    );
    assert!(o.status.success(), "{}", err(&o));
    // LISTEN and NOTIFY stay refused (the proxy's guard), and so does the function.
    refused(b_url, "LISTEN changes", "LISTEN and NOTIFY are not allowed");
    refused(
        b_url,
        "NOTIFY changes, 'x'",
        "LISTEN and NOTIFY are not allowed",
    );
    refused(
        b_url,
        "SELECT pg_notify('changes', 'x')",
        "permission denied for function pg_notify",
    );
    refused(
        b_url,
        &format!("ALTER ROLE CURRENT_USER SET search_path = {a_schema}"),
        "ALTER ROLE is not allowed",
    );
    refused(
        b_url,
        &format!("SET ROLE {a_role}"),
        "SET ROLE is not allowed",
    );
    refused(b_url, "SET SESSION AUTHORIZATION DEFAULT", "is not allowed");
    // Long batches are analysed off the proxy's thread, with the same verdicts.
    let filler = "SELECT 1;".repeat(2_000);
    let o = psql(b_url, &format!("{filler} SET ROLE {a_role}"));
    assert!(
        !o.status.success() && err(&o).contains("SET ROLE is not allowed"),
        "a long batch ending in SET ROLE: {}",
        err(&o).chars().rev().take(300).collect::<String>()
    );
    let rows: Vec<String> = (0..3_000).map(|i| format!("({i}, 'row {i}')")).collect();
    let o = psql(
        b_url,
        &format!(
            "CREATE TABLE long_batch (id int, v text); INSERT INTO long_batch VALUES {}; \
             SELECT count(*) FROM long_batch",
            rows.join(", ")
        ),
    );
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(out(&o).lines().last(), Some("3000"), "{}", out(&o));
    // The search path set through a function reaches nothing either: the schema stays closed.
    refused(
        b_url,
        &format!("SELECT set_config('search_path', '{a_schema}', false); SELECT * FROM secret"),
        "relation \"secret\" does not exist",
    );
    refused(
        b_url,
        "CREATE SCHEMA mine",
        "permission denied for database",
    );
    refused(
        b_url,
        "CREATE TABLE public.x (id int)",
        "permission denied for schema public",
    );
    refused(b_url, "CREATE TEMP TABLE t (id int)", "permission denied");
    refused(
        b_url,
        &format!("SELECT lo_get({lo})"),
        &format!("large object {lo} does not exist"),
    );
    refused(
        b_url,
        &format!("SELECT lo_unlink({lo})"),
        &format!("large object {lo} does not exist"),
    );

    // The extended protocol is guarded too (sqlx prepares its statements), and a long Parse is
    // analysed off the proxy's thread with the same verdict.
    let mut conn = PgConnection::connect(b_url).await.expect("b connects");
    let padding = "x".repeat(12 * 1024);
    for sql in [
        format!("SET search_path TO {a_schema}"),
        format!("/* {padding} */ SET search_path TO {a_schema}"),
    ] {
        let e = sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await
            .expect_err("refused");
        assert!(e.to_string().contains(&path_refused), "{e}");
    }
    let path: String = sqlx::query_scalar("SHOW search_path")
        .fetch_one(&mut conn)
        .await
        .expect("show");
    assert_eq!(path, str_of(b, "schema_name"));
    conn.close().await.expect("close");

    // A's data is untouched.
    let o = psql(
        a_url,
        &format!("SELECT v FROM secret; SELECT encode(lo_get({lo}), 'escape')"),
    );
    assert_eq!(out(&o), "a-only\nlarge secret", "{}", err(&o));

    // The query endpoint keeps the same rules.
    let (st, body) = post(
        &s,
        &format!("/api/v1/connections/{}/query", str_of(b, "connection_id")),
        Some(&key),
        json!({ "query": "ALTER ROLE CURRENT_USER PASSWORD 'mine now'" }),
    )
    .await;
    assert_eq!(st, 403, "{body}");
    assert_eq!(body["error"]["details"]["sqlstate"], "42501");

    // Each credential opens only its own database.
    let crossed = a_url.replace(a_schema, b_schema);
    refused(&crossed, "SELECT 1", "this credential opens only database");
}

/// Every file under `dir`, read whole, searched for `needle`.
fn found_in(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(bytes) = std::fs::read(&p)
                && bytes.windows(needle.len()).any(|w| w == needle)
            {
                hits.push(p.display().to_string());
            }
        }
    }
    hits
}

async fn create_connection(s: &TdbServer, key: &str, body: Value) -> (u16, Value) {
    post(s, "/api/v1/connections", Some(key), body).await
}

#[tokio::test]
async fn connections_are_validated_sealed_and_introspected() {
    let s = start_with_env(&[("TDB_CONNECTIONS_ALLOW_PRIVATE", "true")]).await;
    let account = signup(&s, "conn@example.com", "Connections").await;
    let key = str_of(&account, "api_key").to_string();

    // An external database with its own login, on a server of the harness's own (tdb's managed
    // servers take no TCP connections).
    let password = format!("ext-{}", std::process::id()) + "-Zq8wRk3vT1";
    let external = tdb_testkit::TestPostgres::start()
        .await
        .expect("external server");
    let mut conn = PgConnection::connect(&external.url("postgres"))
        .await
        .expect("admin");
    for sql in [
        format!("CREATE ROLE shopkeeper LOGIN PASSWORD '{password}'"),
        "CREATE DATABASE shop OWNER shopkeeper".to_string(),
    ] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await
            .expect("setup");
    }
    conn.close().await.expect("close");
    let port = Value::from(external.endpoint.port);
    let url = format!("postgresql://shopkeeper:{password}@127.0.0.1:{port}/shop");
    let mut shop = PgConnection::connect(&url).await.expect("shop");
    sqlx::raw_sql(
        "CREATE SCHEMA sales;
         CREATE TABLE sales.customers (id bigserial PRIMARY KEY, email text NOT NULL UNIQUE,
                                       created timestamptz DEFAULT now());
         CREATE TABLE sales.orders (id int PRIMARY KEY,
                                    customer_id bigint REFERENCES sales.customers ON DELETE CASCADE,
                                    total numeric(10,2));
         CREATE INDEX orders_customer ON sales.orders (customer_id);
         CREATE VIEW sales.big_orders AS SELECT * FROM sales.orders WHERE total > 100;
         INSERT INTO sales.customers (email) SELECT 'c' || g || '@x' FROM generate_series(1, 500) g;
         ANALYZE sales.customers;
         CREATE SCHEMA auth; CREATE TABLE auth.users (id int);",
    )
    .execute(&mut shop)
    .await
    .expect("shop schema");
    shop.close().await.expect("close");

    // Validation: FastAPI-style 422s, the connection string never echoed.
    let long = "x".repeat(201);
    for (body, loc, kind) in [
        (
            json!({"name": "", "db_type": "postgresql", "connection_string": url}),
            json!(["body", "name"]),
            "string_too_short",
        ),
        (
            json!({"name": long, "db_type": "postgresql", "connection_string": url}),
            json!(["body", "name"]),
            "string_too_long",
        ),
        (
            json!({"name": "n", "db_type": "oracle", "connection_string": url}),
            json!(["body", "db_type"]),
            "string_pattern_mismatch",
        ),
        (
            json!({"name": "n", "db_type": "postgresql", "connection_string": "pg://x"}),
            json!(["body", "connection_string"]),
            "string_too_short",
        ),
        (
            json!({"name": "n", "connection_string": url}),
            json!(["body", "db_type"]),
            "missing",
        ),
        (
            json!({"name": "n", "db_type": "postgresql",
                   "connection_string": "postgresql://127.0.0.1/shop"}),
            json!(["body", "connection_string"]),
            "value_error",
        ),
        (
            json!({"name": "n", "db_type": "postgresql"}),
            json!(["body", "connection_string"]),
            "missing",
        ),
        (
            json!({"name": "n", "db_type": "postgresql", "connection_string": "mysql://u:secretpw@h/db"}),
            json!(["body", "connection_string"]),
            "value_error",
        ),
        (
            json!({"name": "n", "db_type": "postgresql", "connection_string": url, "excluded_schemas": "auth"}),
            json!(["body", "excluded_schemas"]),
            "list_type",
        ),
        (
            json!({"name": 7, "db_type": "postgresql", "connection_string": url}),
            json!(["body", "name"]),
            "string_type",
        ),
    ] {
        let (st, resp) = create_connection(&s, &key, body.clone()).await;
        assert_eq!(st, 422, "{body} -> {resp}");
        assert_eq!(resp["error"]["code"], "VALIDATION_ERROR");
        let detail = &resp["detail"][0];
        assert_eq!(detail["loc"], loc, "{resp}");
        assert_eq!(detail["type"], kind, "{resp}");
        assert!(detail["msg"].is_string(), "{resp}");
        let text = resp.to_string();
        assert!(
            !text.contains(&password) && !text.contains("secretpw"),
            "echoed: {text}"
        );
    }
    let (st, resp) = call(
        &s,
        Method::POST,
        "/api/v1/connections",
        Some(&key),
        Some("{\"name\": "),
    )
    .await;
    assert_eq!(st, 422, "{resp}");
    assert_eq!(resp["detail"][0]["type"], "json_invalid");

    // Registered: host, port and database read from the URI; the string itself never returned.
    let (st, c) = create_connection(
        &s,
        &key,
        json!({"name": "shop", "db_type": "postgresql", "connection_string": url}),
    )
    .await;
    assert_eq!(st, 201, "{c}");
    let c = &c["data"];
    assert_eq!(c["host"], "127.0.0.1");
    assert_eq!(c["port"], port);
    assert_eq!(c["database_name"], "shop");
    assert_eq!(c["is_active"], true);
    assert_eq!(c["last_introspected_at"], Value::Null);
    assert_eq!(c["excluded_schemas"].as_array().map(Vec::len), Some(8));
    let id = str_of(c, "id").to_string();
    let (st, everything) = get(&s, "/api/v1/connections", &key).await;
    assert_eq!(st, 200);
    assert_eq!(everything["data"]["count"], 1);
    assert!(!everything.to_string().contains(&password));

    // Introspection: the default exclusions hide `auth`; keys, indexes, foreign keys, estimates.
    let (st, intro) = get(&s, &format!("/api/v1/connections/{id}/introspect"), &key).await;
    assert_eq!(st, 200, "{intro}");
    let d = &intro["data"];
    let names: Vec<&str> = d["schemas"]
        .as_array()
        .expect("present")
        .iter()
        .map(|s| s["name"].as_str().expect("present"))
        .collect();
    assert!(
        names.contains(&"sales") && !names.contains(&"auth"),
        "{names:?}"
    );
    let sales = d["schemas"]
        .as_array()
        .expect("present")
        .iter()
        .find(|s| s["name"] == "sales")
        .expect("present");
    let table = |n: &str| {
        sales["tables"]
            .as_array()
            .expect("present")
            .iter()
            .find(|t| t["name"] == n)
            .cloned()
            .expect("present")
    };
    let customers = table("customers");
    assert_eq!(customers["kind"], "table");
    assert_eq!(customers["row_estimate"], 500);
    assert_eq!(customers["primary_key"], json!(["id"]));
    assert_eq!(
        customers["columns"][1],
        json!({"name": "email", "type": "text", "nullable": false, "default": null})
    );
    assert!(
        customers["columns"][2]["default"]
            .as_str()
            .expect("present")
            .contains("now()")
    );
    assert!(
        customers["indexes"]
            .as_array()
            .expect("present")
            .iter()
            .any(|i| i["unique"] == true && i["columns"] == json!(["email"]))
    );
    let orders = table("orders");
    assert_eq!(orders["columns"][2]["type"], "numeric(10,2)");
    let fk = &orders["foreign_keys"][0];
    assert_eq!(fk["columns"], json!(["customer_id"]));
    assert_eq!(
        (fk["ref_schema"].as_str(), fk["ref_table"].as_str()),
        (Some("sales"), Some("customers"))
    );
    assert_eq!(fk["ref_columns"], json!(["id"]));
    assert_eq!(fk["on_delete"], "CASCADE");
    assert!(
        orders["indexes"]
            .as_array()
            .expect("present")
            .iter()
            .any(|i| i["name"] == "orders_customer")
    );
    assert_eq!(table("big_orders")["kind"], "view");
    let (_, c) = get(&s, &format!("/api/v1/connections/{id}"), &key).await;
    assert!(c["data"]["last_introspected_at"].is_string(), "{c}");
    // `[]` excludes nothing.
    let (st, all) = create_connection(
        &s,
        &key,
        json!({"name": "shop, all", "db_type": "supabase", "connection_string": url, "excluded_schemas": []}),
    )
    .await;
    assert_eq!(st, 201, "{all}");
    let id2 = str_of(&all["data"], "id").to_string();
    let (_, intro) = get(&s, &format!("/api/v1/connections/{id2}/introspect"), &key).await;
    assert!(
        intro["data"]["schemas"]
            .as_array()
            .expect("present")
            .iter()
            .any(|s| s["name"] == "auth"),
        "{intro}"
    );

    // Sealed at rest: neither the password nor the string is anywhere in the data dir.
    let hits = found_in(&s.data_dir(), password.as_bytes());
    assert!(hits.is_empty(), "plaintext password found in {hits:?}");

    // The record id is bound to its ciphertext: swapped ciphertexts do not decrypt.
    let catalog = s.managed_admin_url("tdb_catalog").expect("catalog url");
    let mut cat = PgConnection::connect(&catalog).await.expect("catalog");
    let swap = "UPDATE connections c SET secret = o.secret
                  FROM connections o WHERE c.id IN ($1, $2) AND o.id IN ($1, $2) AND o.id <> c.id";
    sqlx::query(swap)
        .bind(&id)
        .bind(&id2)
        .execute(&mut cat)
        .await
        .expect("swap");
    for which in [&id, &id2] {
        let (st, body) = get(&s, &format!("/api/v1/connections/{which}/introspect"), &key).await;
        assert_eq!(st, 500, "a swapped ciphertext decrypted: {body}");
        assert!(!body.to_string().contains(&password));
    }
    sqlx::query(swap)
        .bind(&id)
        .bind(&id2)
        .execute(&mut cat)
        .await
        .expect("swap back");
    cat.close().await.expect("close");
    let (st, body) = get(&s, &format!("/api/v1/connections/{id}/introspect"), &key).await;
    assert_eq!(st, 200, "restored ciphertexts decrypt again: {body}");

    // Soft delete.
    let (st, body) = delete(&s, &format!("/api/v1/connections/{id}"), &key).await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["data"]["is_active"], false);
    let (_, c) = get(&s, &format!("/api/v1/connections/{id}"), &key).await;
    assert_eq!(c["data"]["is_active"], false);
    let (st, _) = get(&s, &format!("/api/v1/connections/{id}/introspect"), &key).await;
    assert_eq!(st, 409);
    external.stop().await;
}

#[tokio::test]
async fn connections_to_internal_addresses_need_the_operators_consent() {
    let s = start().await;
    let account = signup(&s, "ssrf@example.com", "Ssrf").await;
    let key = str_of(&account, "api_key").to_string();
    let (st, c) = create_connection(
        &s,
        &key,
        json!({"name": "internal", "db_type": "postgresql",
               "connection_string": "postgresql://postgres:pw@127.0.0.1:5432/postgres"}),
    )
    .await;
    assert_eq!(st, 201, "{c}");
    let id = str_of(&c["data"], "id");
    let (st, body) = get(&s, &format!("/api/v1/connections/{id}/introspect"), &key).await;
    assert_eq!(st, 400, "{body}");
    assert!(
        str_of(&body["error"], "message").contains("connections_allow_private"),
        "{body}"
    );
}
