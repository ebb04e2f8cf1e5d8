//! A client written against the reference (the TenantsDB and AutoDB pages in `spec/`) works on
//! its first day: each request here uses the reference's form of a field, and each answer is
//! read where and how the reference shows it.

mod common;

use common::*;
use reqwest::Method;
use serde_json::{Value, json};
use tdb_testkit::TdbServer;

/// A signed-up account with a tenant-mode workspace `fintech`; returns its key.
async fn setup(s: &TdbServer) -> String {
    account_with_blueprint(s, "ref@example.com", "Reference", "fintech").await
}

/// An AutoDB error (the `ErrorDetail` of the connection page): `success: false` and
/// `error: {code, message, details}` with the upper-case code.
fn assert_autodb_code(body: &Value, code: &str) {
    assert_eq!(body["success"], false, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "message: {body}"
    );
    assert!(body["error"].get("details").is_some(), "details: {body}");
}

#[tokio::test]
async fn isolation_level_is_read_as_a_number_or_a_label() {
    let s = start().await;
    let key = setup(&s).await;
    ws_query(
        &s,
        &key,
        "fintech",
        "CREATE TABLE accounts (id serial PRIMARY KEY)",
    )
    .await;
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
    ws_query(
        &s,
        &key,
        "fintech",
        "CREATE TABLE accounts (id serial PRIMARY KEY)",
    )
    .await;
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
        "fintech",
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

#[tokio::test]
async fn api_v1_errors_take_autodbs_shape() {
    let s = start().await;
    let key = setup(&s).await;

    let (st, body) = raw_call(
        &s,
        Method::GET,
        "/api/v1/connections/nope",
        Some(&key),
        None,
    )
    .await;
    assert_eq!(st, 404, "{body}");
    assert_autodb_code(&body, "NOT_FOUND");

    // Validation: AutoDB's error object, and FastAPI's `detail` list as the page shows for 422.
    let (st, body) = raw_call(
        &s,
        Method::POST,
        "/api/v1/provision",
        Some(&key),
        Some("{}"),
    )
    .await;
    assert_eq!(st, 422, "{body}");
    assert_autodb_code(&body, "VALIDATION_ERROR");
    assert_eq!(
        body["error"]["details"][0]["loc"],
        json!(["body", "name"]),
        "{body}"
    );
    assert_eq!(body["detail"][0]["type"], "missing", "{body}");

    // Failures before any handler runs: authentication, unknown paths, wrong methods.
    let (st, body) = raw_call(&s, Method::GET, "/api/v1/connections", None, None).await;
    assert_eq!(st, 401, "{body}");
    assert_autodb_code(&body, "AUTH_REQUIRED");
    let (st, body) = raw_call(
        &s,
        Method::GET,
        "/api/v1/connections",
        Some("tdb_sk_00"),
        None,
    )
    .await;
    assert_eq!(st, 401, "{body}");
    assert_autodb_code(&body, "UNAUTHORIZED");
    let (st, body) = raw_call(&s, Method::GET, "/api/v1/nothing-here", Some(&key), None).await;
    assert_eq!(st, 404, "{body}");
    assert_autodb_code(&body, "NOT_FOUND");
    let (st, body) = raw_call(&s, Method::PUT, "/api/v1/provision", Some(&key), Some("{}")).await;
    assert_eq!(st, 405, "{body}");
    assert_autodb_code(&body, "METHOD_NOT_ALLOWED");

    // A body over the limit is refused by the framework, before the handler; same shape.
    let huge = format!("{{\"name\": \"{}\"}}", "x".repeat(2 << 20));
    let (st, body) = raw_call(
        &s,
        Method::POST,
        "/api/v1/provision",
        Some(&key),
        Some(&huge),
    )
    .await;
    assert_eq!(st, 413, "{body}");
    assert_autodb_code(&body, "PAYLOAD_TOO_LARGE");

    // The rest of the API keeps tdb's envelope.
    let (st, body) = raw_call(&s, Method::GET, "/tenants/nope", Some(&key), None).await;
    assert_eq!(
        (st, body["code"].as_str()),
        (404, Some("not_found")),
        "{body}"
    );
    assert!(body["error"].is_string(), "{body}");
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
    // (The 200 answer may wrap it with the envelope, so it is found by name.)
    let ok = doc["paths"]["/workspaces/{id}/schema"]["get"]["responses"]["200"].to_string();
    assert!(ok.contains("#/components/schemas/WorkspaceSchema"), "{ok}");
    let answer = &doc["components"]["schemas"]["WorkspaceSchema"];
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

    // /api/v1 errors: AutoDB's ErrorDetail, 401 included.
    for status in ["401", "404"] {
        let response = &doc["paths"]["/api/v1/connections/{id}"]["get"]["responses"][status];
        let body = component(
            &doc,
            &response["content"]["application/json"]["schema"]["$ref"],
        );
        let detail = resolve(&doc, &body["properties"]["error"]);
        for field in ["code", "message", "details"] {
            assert!(detail["properties"][field].is_object(), "{field}: {detail}");
        }
    }
}

#[tokio::test]
async fn answers_use_the_references_words() {
    let s = start().await;
    let key = setup(&s).await;
    ws_query(
        &s,
        &key,
        "fintech",
        "CREATE TABLE accounts (id serial PRIMARY KEY)",
    )
    .await;
    let (st, body) = post(
        &s,
        "/deployments",
        Some(&key),
        json!({"blueprint_name": "fintech"}),
    )
    .await;
    assert_eq!(st, 201, "{body}");
    let (st, created) = post(
        &s,
        "/tenants",
        Some(&key),
        json!({"tenant_id": "acme", "databases": [{"blueprint": "fintech"}]}),
    )
    .await;
    assert_eq!(st, 201, "{created}");
    // The reference's POST says "PostgreSQL", its GETs "postgresql".
    assert_eq!(
        created["databases"][0]["database_type"], "PostgreSQL",
        "{created}"
    );
    let (_, list) = get(&s, "/tenants", &key).await;
    assert_eq!(
        list["tenants"][0]["databases"][0]["database_type"], "postgresql",
        "{list}"
    );
    let (_, one) = get(&s, "/tenants/acme", &key).await;
    assert_eq!(one["databases"][0]["database_type"], "postgresql", "{one}");

    // Deleting a workspace its tenants use: the reference's 409 says why in `message`.
    let (st, body) = delete(&s, "/workspaces/fintech", &key).await;
    assert_eq!(st, 409, "{body}");
    assert_eq!(
        body["message"], "cannot delete workspace with deployed tenants",
        "{body}"
    );
    assert_eq!(body["reason"], "tenants_deployed", "{body}");
    assert_eq!(body["deployed_to"], json!(["acme"]), "{body}");
}
