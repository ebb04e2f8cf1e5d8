//! The DDL wall on `/admin/query`: every bypass attempt is refused and nothing changes in the
//! tenant's database; ordinary data statements all run.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use tdb_testkit::TdbServer;

const BYPASSES: &[&str] = &[
    "DROP TABLE items",
    "CREATE TABLE sneaky (a int)",
    "ALTER TABLE items ADD COLUMN sneaky int",
    "SELECT 1; DROP TABLE items",
    "INSERT INTO items (name) VALUES ('x'); CREATE TABLE sneaky (a int)",
    "/* harmless */ DROP TABLE items",
    "-- comment\nDROP TABLE items",
    "SELECT 1 /* ; */ ; ALTER TABLE items RENAME TO gone",
    "DO $$ BEGIN EXECUTE 'DROP TABLE items'; END $$",
    "DO $x$ BEGIN CREATE TABLE sneaky (a int); END $x$",
    "DO LANGUAGE plpgsql $$ BEGIN EXECUTE 'ALTER TABLE items ADD COLUMN s int'; END $$",
    "SELECT * INTO sneaky FROM items",
    "SELECT name INTO TEMP sneaky FROM items",
    "CREATE TABLE sneaky AS SELECT * FROM items",
    "CREATE TEMP TABLE sneaky AS SELECT 1",
    "CREATE MATERIALIZED VIEW sneaky AS SELECT * FROM items",
    "EXPLAIN ANALYZE CREATE TABLE sneaky AS SELECT 1",
    "EXPLAIN ANALYZE SELECT * INTO sneaky FROM items",
    "PREPARE p AS SELECT * INTO sneaky FROM items",
    "PREPARE p AS DELETE FROM items",
    "PREPARE p AS SELECT 1; EXECUTE p",
    "EXECUTE p",
    "COPY items TO STDOUT",
    "COPY items FROM STDIN",
    "COPY (SELECT 1) TO PROGRAM 'id'",
    "GRANT ALL ON items TO PUBLIC",
    "REVOKE SELECT ON items FROM PUBLIC",
    "TRUNCATE items",
    "CREATE INDEX sneaky ON items (name)",
    "CREATE VIEW sneaky AS SELECT 1",
    "CREATE FUNCTION sneaky() RETURNS int LANGUAGE sql AS 'SELECT 1'",
    "CREATE SCHEMA sneaky",
    "CREATE EXTENSION pgcrypto",
    "COMMENT ON TABLE items IS 'owned'",
    "CREATE ROLE sneaky",
    "ALTER ROLE CURRENT_USER SUPERUSER",
    "SET ROLE postgres",
    "RESET ROLE",
    "BEGIN; DROP TABLE items; COMMIT",
    "BEGIN",
    "LOCK TABLE items",
    "CREATE TRIGGER t BEFORE INSERT ON items FOR EACH ROW EXECUTE FUNCTION suppress_redundant_updates_trigger()",
    "CREATE POLICY p ON items USING (true)",
    "SECURITY LABEL ON TABLE items IS 'x'",
    "SET search_path = pg_temp",
];

async fn admin(s: &TdbServer, key: &str, sql: &str) -> (u16, Value) {
    post(
        s,
        "/admin/query",
        Some(key),
        json!({"blueprint": "shop", "tenant_id": "acme", "query": sql}),
    )
    .await
}

async fn fingerprint(s: &TdbServer, key: &str) -> Value {
    let (st, body) = admin(s, key, "SELECT (SELECT string_agg(table_schema || '.' || table_name || ':' || column_name, ',' ORDER BY 1) \
        FROM information_schema.columns WHERE table_schema NOT IN ('pg_catalog', 'information_schema')) AS columns, \
        (SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace) AS relations, \
        (SELECT count(*) FROM items) AS items").await;
    assert_eq!(st, 200, "{body}");
    body["rows"].clone()
}

#[tokio::test]
async fn ddl_is_refused_and_dml_runs() {
    let s = start().await;
    let key = str_of(&signup(&s, "alice@example.com", "Alpha").await, "api_key").to_string();
    post(
        &s,
        "/workspaces",
        Some(&key),
        json!({"name": "shop", "database": "postgresql", "mode": "tenant"}),
    )
    .await;
    let (st, _) = post(&s, "/workspaces/shop/queries", Some(&key), json!({"query":
        "CREATE TABLE items (id serial PRIMARY KEY, name text NOT NULL, qty int NOT NULL DEFAULT 0)"})).await;
    assert_eq!(st, 200);
    let (_, dep) = post(
        &s,
        "/deployments",
        Some(&key),
        json!({"blueprint_name": "shop"}),
    )
    .await;
    for _ in 0..100 {
        let (_, d) = get(&s, &format!("/deployments/{}", str_of(&dep, "id")), &key).await;
        if d["status"] == "completed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (st, _) = post(
        &s,
        "/tenants",
        Some(&key),
        json!({"tenant_id": "acme", "databases": [{"blueprint": "shop"}]}),
    )
    .await;
    assert_eq!(st, 201);

    let before = fingerprint(&s, &key).await;
    assert!(BYPASSES.len() >= 40, "{} attempts", BYPASSES.len());
    for sql in BYPASSES {
        let (st, body) = admin(&s, &key, sql).await;
        assert!(st == 400 || st == 403, "{sql}: {st} {body}");
        assert_eq!(body["success"], false, "{sql}");
    }
    let (_, ddl) = admin(&s, &key, "DROP TABLE items").await;
    assert_eq!(
        ddl["error"],
        "DDL not allowed on tenant databases. Deploy schema through blueprints."
    );
    assert_eq!(
        fingerprint(&s, &key).await,
        before,
        "a bypass attempt changed the database"
    );

    // 100 legitimate data statements.
    let mut dml: Vec<String> = Vec::new();
    for i in 0..40 {
        dml.push(format!(
            "INSERT INTO items (name, qty) VALUES ('item {i}', {i})"
        ));
    }
    for i in 0..20 {
        dml.push(format!(
            "UPDATE items SET qty = qty + 1 WHERE name = 'item {i}'"
        ));
    }
    for i in 0..10 {
        dml.push(format!(
            "SELECT id, name, qty FROM items WHERE qty > {i} ORDER BY id LIMIT 5"
        ));
    }
    for i in 0..10 {
        dml.push(format!("WITH moved AS (UPDATE items SET qty = 0 WHERE name = 'item {}' RETURNING id) SELECT count(*) FROM moved", 20 + i));
    }
    for i in 0..10 {
        dml.push(format!("DELETE FROM items WHERE name = 'item {}'", 30 + i));
    }
    dml.extend([
        "INSERT INTO items (name) VALUES ('create table drop table') RETURNING id".to_string(),
        "INSERT INTO items (name) VALUES ($$ALTER TABLE items$$)".to_string(),
        "SELECT count(*) FROM items WHERE name LIKE '%DROP%'".to_string(),
        "MERGE INTO items t USING (VALUES ('item 1', 5)) v(name, qty) ON t.name = v.name WHEN MATCHED THEN UPDATE SET qty = v.qty".to_string(),
        "SELECT name FROM items UNION ALL SELECT 'x'".to_string(),
        "SELECT 1; SELECT 2".to_string(),
        "INSERT INTO items (name) SELECT 'copy of ' || name FROM items WHERE qty = 5".to_string(),
        "UPDATE items SET name = upper(name) WHERE id IN (SELECT id FROM items ORDER BY id LIMIT 3)".to_string(),
        "EXPLAIN SELECT * FROM items".to_string(),
        "SELECT jsonb_agg(items) FROM items".to_string(),
    ]);
    assert!(dml.len() >= 100, "{}", dml.len());
    for sql in &dml {
        let (st, body) = admin(&s, &key, sql).await;
        assert_eq!(st, 200, "{sql}: {body}");
    }
    let (_, all) = post(
        &s,
        "/admin/query",
        Some(&key),
        json!({"blueprint": "shop", "all_tenants": true, "query": "SELECT count(*) FROM items"}),
    )
    .await;
    assert_eq!(all["total_tenants"], 1);
    assert_eq!(all["results"][0]["tenant_id"], "acme");
}
