//! A client written against the reference (the TenantsDB and AutoDB pages in `spec/`) works on
//! its first day: each request here uses the reference's form of a field, and each answer is
//! read where and how the reference shows it.

mod common;

use common::*;
use serde_json::{Value, json};
use tdb_testkit::TdbServer;

/// A signed-up account with a tenant-mode workspace `fintech`; returns its key.
async fn setup(s: &TdbServer) -> String {
    let key = str_of(&signup(s, "ref@example.com", "Reference").await, "api_key").to_string();
    let (st, body) = post(
        s,
        "/workspaces",
        Some(&key),
        json!({"name": "fintech", "database": "PostgreSQL", "mode": "tenant"}),
    )
    .await;
    assert_eq!(st, 201, "{body}");
    key
}

async fn ws_query(s: &TdbServer, key: &str, sql: &str) {
    let (st, body) = post(
        s,
        "/workspaces/fintech/queries",
        Some(key),
        json!({ "query": sql }),
    )
    .await;
    assert_eq!(st, 200, "{sql}: {body}");
}

#[tokio::test]
async fn isolation_level_is_read_as_a_number_or_a_label() {
    let s = start().await;
    let key = setup(&s).await;
    ws_query(&s, &key, "CREATE TABLE accounts (id serial PRIMARY KEY)").await;
    let (st, body) = post(
        &s,
        "/deployments",
        Some(&key),
        json!({"blueprint_name": "fintech"}),
    )
    .await;
    assert_eq!(st, 201, "{body}");

    // The tenants page's GET shows "L1"; a client sends back what it reads.
    let (st, created) = post(
        &s,
        "/tenants",
        Some(&key),
        json!({"tenant_id": "acme", "databases": [{"blueprint": "fintech", "isolation_level": "L1"}]}),
    )
    .await;
    assert_eq!(st, 201, "{created}");
    // POST answers the number, as the reference's POST does.
    assert_eq!(created["databases"][0]["isolation_level"], 1, "{created}");
    let (st, created) = post(
        &s,
        "/tenants",
        Some(&key),
        json!({"tenant_id": "globex", "databases": [{"blueprint": "fintech", "isolation_level": 1}]}),
    )
    .await;
    assert_eq!(st, 201, "{created}");

    // "L2" means what 2 means: a paid plan's dedicated server (403 on the free tier).
    let (st, body) = post(
        &s,
        "/tenants",
        Some(&key),
        json!({"tenant_id": "initech", "databases": [{"blueprint": "fintech", "isolation_level": "L2"}]}),
    )
    .await;
    assert_eq!(
        (st, body["code"].as_str()),
        (403, Some("forbidden")),
        "{body}"
    );
    for wrong in [json!("L3"), json!(3), json!("dedicated"), json!(true)] {
        let (st, body) = post(
            &s,
            "/tenants",
            Some(&key),
            json!({"tenant_id": "initech", "databases": [{"blueprint": "fintech", "isolation_level": wrong}]}),
        )
        .await;
        assert_eq!(st, 400, "{wrong}: {body}");
        assert_eq!(
            body["field"], "databases[0].isolation_level",
            "{wrong}: {body}"
        );
    }

    // GET /tenants and GET /tenants/{id} answer the label, as the reference shows them.
    let (st, list) = get(&s, "/tenants", &key).await;
    assert_eq!(st, 200, "{list}");
    for t in list["tenants"].as_array().expect("tenants") {
        assert_eq!(t["databases"][0]["isolation_level"], "L1", "{t}");
    }
    let (st, one) = get(&s, "/tenants/acme", &key).await;
    assert_eq!(st, 200, "{one}");
    assert_eq!(one["databases"][0]["isolation_level"], "L1", "{one}");
}

#[tokio::test]
async fn a_deployment_version_may_be_a_string() {
    let s = start().await;
    let key = setup(&s).await;
    ws_query(&s, &key, "CREATE TABLE accounts (id serial PRIMARY KEY)").await;
    let (st, first) = post(
        &s,
        "/deployments",
        Some(&key),
        json!({"blueprint_name": "fintech"}),
    )
    .await;
    assert_eq!((st, first["version"].as_i64()), (201, Some(1)), "{first}");

    // The reference types `version` as a string.
    let (st, again) = post(
        &s,
        "/deployments",
        Some(&key),
        json!({"blueprint_name": "fintech", "version": "1"}),
    )
    .await;
    assert_eq!(st, 201, "{again}");
    assert_eq!(again["version"], 1, "{again}");
    let (st, again) = post(
        &s,
        "/deployments",
        Some(&key),
        json!({"blueprint_name": "fintech", "version": 1}),
    )
    .await;
    assert_eq!(st, 201, "{again}");

    for wrong in [
        json!("one"),
        json!("1.5"),
        json!(""),
        json!(1.5),
        json!([1]),
    ] {
        let (st, body) = post(
            &s,
            "/deployments",
            Some(&key),
            json!({"blueprint_name": "fintech", "version": wrong}),
        )
        .await;
        assert_eq!(st, 400, "{wrong}: {body}");
        assert_eq!(body["field"], "version", "{wrong}: {body}");
    }
    // A well-formed version that does not exist is still refused by range.
    let (st, body) = post(
        &s,
        "/deployments",
        Some(&key),
        json!({"blueprint_name": "fintech", "version": "7"}),
    )
    .await;
    assert_eq!(
        (st, body["field"].as_str()),
        (400, Some("version")),
        "{body}"
    );
}

#[tokio::test]
async fn workspace_connections_name_the_user_both_ways() {
    let s = start().await;
    let key = str_of(&signup(&s, "ref@example.com", "Reference").await, "api_key").to_string();
    let (st, created) = post(
        &s,
        "/workspaces",
        Some(&key),
        json!({"name": "fintech", "database": "PostgreSQL", "mode": "tenant"}),
    )
    .await;
    assert_eq!(st, 201, "{created}");
    // The reference's POST answer says `user`, its GET answer `username`: both are there.
    let conn = &created["connection"];
    assert!(conn["user"].is_string(), "{created}");
    assert_eq!(conn["username"], conn["user"], "{created}");

    let (st, shown) = get(&s, "/workspaces/fintech", &key).await;
    assert_eq!(st, 200, "{shown}");
    let conn = &shown["connection"];
    assert_eq!(conn["username"], created["connection"]["user"], "{shown}");
    assert_eq!(conn["user"], conn["username"], "{shown}");
}

#[tokio::test]
async fn schema_indexes_are_the_references_list_of_names() {
    let s = start().await;
    let key = setup(&s).await;
    ws_query(
        &s,
        &key,
        "CREATE TABLE users (id serial PRIMARY KEY, name text NOT NULL);
         CREATE INDEX users_name_idx ON users (name)",
    )
    .await;
    let (st, schema) = get(&s, "/workspaces/fintech/schema", &key).await;
    assert_eq!(st, 200, "{schema}");
    let users = &schema["tables"][0];
    assert_eq!(users["name"], "users", "{schema}");
    assert_eq!(
        users["indexes"],
        json!(["users_name_idx", "users_pkey"]),
        "{schema}"
    );
    // The details tdb adds sit beside them, under their own name.
    let details = users["index_details"].as_array().expect("index_details");
    let names: Vec<&str> = details.iter().map(|i| str_of(i, "name")).collect();
    assert_eq!(names, ["users_name_idx", "users_pkey"], "{schema}");
    assert!(
        str_of(&details[0], "definition").contains("(name)"),
        "{schema}"
    );
    assert_eq!(details[1]["primary"], true, "{schema}");

    // The CLI still shows each index's definition.
    let home = tempfile::tempdir().expect("home");
    let cli = Cli {
        home: home.path(),
        api_url: &s.api_url,
        key: Some(&key),
    };
    let shown = cli.ok(&["workspaces", "schema", "fintech"]);
    assert!(shown.contains("CREATE INDEX users_name_idx"), "{shown}");
    assert!(shown.contains("CREATE UNIQUE INDEX users_pkey"), "{shown}");
}

/// `/openapi.json`, raw (it carries no envelope).
async fn openapi(s: &TdbServer) -> Value {
    reqwest::get(format!("{}/openapi.json", s.api_url))
        .await
        .expect("get")
        .json()
        .await
        .expect("json")
}

/// The schema a `$ref` names, from the document's components.
fn component<'a>(doc: &'a Value, reference: &Value) -> &'a Value {
    let name = reference
        .as_str()
        .and_then(|r| r.strip_prefix("#/components/schemas/"))
        .unwrap_or_else(|| panic!("not a component reference: {reference}"));
    let schema = &doc["components"]["schemas"][name];
    assert!(schema.is_object(), "no component {name}");
    schema
}

/// A property's schema with references followed, an optional one's `null` alternative left out.
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    if schema["$ref"].is_string() {
        return component(doc, &schema["$ref"]);
    }
    let alternatives = schema["oneOf"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    match alternatives {
        [one, null] | [null, one] if null["type"] == "null" => resolve(doc, one),
        _ => schema,
    }
}

#[tokio::test]
async fn the_openapi_document_shows_the_references_forms() {
    let s = start().await;
    let doc = openapi(&s).await;

    // isolation_level: the number or the label.
    let create = component(
        &doc,
        &doc["paths"]["/tenants"]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"],
    );
    let database = component(&doc, &create["properties"]["databases"]["items"]["$ref"]);
    let level = resolve(&doc, &database["properties"]["isolation_level"]);
    let forms: Vec<&Value> = level["oneOf"]
        .as_array()
        .unwrap_or_else(|| panic!("isolation_level: {level}"))
        .iter()
        .flat_map(|f| f["enum"].as_array().unwrap_or_else(|| panic!("{level}")))
        .collect();
    assert_eq!(
        forms,
        [&json!(1), &json!(2), &json!("L1"), &json!("L2")],
        "{level}"
    );

    // version of POST /deployments: a number or a numeric string.
    let create = component(
        &doc,
        &doc["paths"]["/deployments"]["post"]["requestBody"]["content"]["application/json"]["schema"]
            ["$ref"],
    );
    let version = resolve(&doc, &create["properties"]["version"]);
    let types: Vec<&Value> = version["oneOf"]
        .as_array()
        .unwrap_or_else(|| panic!("version: {version}"))
        .iter()
        .map(|f| &f["type"])
        .collect();
    assert_eq!(types, [&json!("integer"), &json!("string")], "{version}");

    // A workspace's connection names its login both ways.
    let connection = &doc["components"]["schemas"]["Connection"];
    for field in ["user", "username"] {
        assert_eq!(
            connection["properties"][field]["type"], "string",
            "{connection}"
        );
        assert!(
            connection["required"]
                .as_array()
                .is_some_and(|r| r.contains(&json!(field))),
            "{connection}"
        );
    }

    // A table's indexes are names; their details have a field of their own.
    let answer = component(
        &doc,
        &doc["paths"]["/workspaces/{id}/schema"]["get"]["responses"]["200"]["content"]["application/json"]
            ["schema"]["$ref"],
    );
    let table = component(&doc, &answer["properties"]["tables"]["items"]["$ref"]);
    assert_eq!(
        table["properties"]["indexes"]["items"]["type"], "string",
        "{table}"
    );
    let index = component(&doc, &table["properties"]["index_details"]["items"]["$ref"]);
    assert_eq!(
        index["properties"]["definition"]["type"], "string",
        "{index}"
    );
}
