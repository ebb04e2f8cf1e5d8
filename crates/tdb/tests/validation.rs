//! Bad input answers 400 in the envelope naming the field; unknown paths, wrong methods, huge
//! bodies and missing or bad credentials answer their own codes. Nothing is half-written.

mod common;

use common::*;
use reqwest::Method;
use serde_json::{Value, json};

/// `(path, needs_key, body, field)`: each body must be refused naming `field`.
fn bad_bodies() -> Vec<(&'static str, bool, Value, &'static str)> {
    let long = "x".repeat(300);
    vec![
        (
            "/signup",
            false,
            json!({"password": "password123"}),
            "email",
        ),
        (
            "/signup",
            false,
            json!({"email": "a@example.com"}),
            "password",
        ),
        (
            "/signup",
            false,
            json!({"email": 5, "password": "password123"}),
            "email",
        ),
        (
            "/signup",
            false,
            json!({"email": "a@example.com", "password": ["x"]}),
            "password",
        ),
        (
            "/signup",
            false,
            json!({"email": "a@example.com", "password": "password123", "project_name": 7}),
            "project_name",
        ),
        (
            "/signup",
            false,
            json!({"email": "not-an-email", "password": "password123"}),
            "email",
        ),
        (
            "/signup",
            false,
            json!({"email": "a@nodot", "password": "password123"}),
            "email",
        ),
        (
            "/signup",
            false,
            json!({"email": format!("{long}@example.com"), "password": "password123"}),
            "email",
        ),
        (
            "/signup",
            false,
            json!({"email": "a@example.com", "password": "short"}),
            "password",
        ),
        (
            "/signup",
            false,
            json!({"email": "a@example.com", "password": "p".repeat(2000)}),
            "password",
        ),
        (
            "/signup",
            false,
            json!({"email": "a@example.com", "password": "password123", "project_name": "my__app"}),
            "project_name",
        ),
        (
            "/signup",
            false,
            json!({"email": "a@example.com", "password": "password123", "project_name": long}),
            "project_name",
        ),
        (
            "/signup",
            false,
            json!({"email": "a@example.com", "password": "password123", "project_name": ""}),
            "project_name",
        ),
        (
            "/signup",
            false,
            json!({"email": "a@example.com", "password": "password123", "projectname": "x"}),
            "projectname",
        ),
        ("/login", false, json!({"password": "password123"}), "email"),
        (
            "/login",
            false,
            json!({"email": "a@example.com"}),
            "password",
        ),
        (
            "/login",
            false,
            json!({"email": "a@example.com", "password": 12345678}),
            "password",
        ),
        ("/projects", true, json!({}), "name"),
        ("/projects", true, json!({"name": 3}), "name"),
        ("/projects", true, json!({"name": "bad__name"}), "name"),
        ("/projects", true, json!({"name": long}), "name"),
        ("/projects", true, json!({"name": "tab\there"}), "name"),
        ("/apikeys", true, json!({"role": "owner"}), "role"),
        ("/apikeys", true, json!({"role": 1}), "role"),
        (
            "/apikeys",
            true,
            json!({"scope_type": "galaxy"}),
            "scope_type",
        ),
        (
            "/apikeys",
            true,
            json!({"scope_type": "tenant"}),
            "scope_values",
        ),
        (
            "/apikeys",
            true,
            json!({"scope_type": "tenant", "scope_values": ["a__b"]}),
            "scope_values",
        ),
        (
            "/apikeys",
            true,
            json!({"scope_type": "tenant", "scope_values": "acme"}),
            "scope_values",
        ),
        (
            "/apikeys",
            true,
            json!({"scope_values": ["acme"]}),
            "scope_values",
        ),
        ("/apikeys", true, json!({"name": long}), "name"),
        ("/apikeys", true, json!({"name": ""}), "name"),
    ]
}

#[tokio::test]
async fn bad_input_is_refused_naming_the_field() {
    let s = start().await;
    let alice = signup(&s, "alice@example.com", "Alpha").await;
    let key = str_of(&alice, "api_key");
    for (path, needs_key, body, field) in bad_bodies() {
        let (st, answer) = post(&s, path, needs_key.then_some(key), body.clone()).await;
        assert_eq!(st, 400, "{path} {body}: {answer}");
        assert_eq!(answer["code"], "bad_request");
        assert_eq!(answer["field"], field, "{path} {body}: {answer}");
        assert!(str_of(&answer, "error").contains(field), "{answer}");
    }
    // Nothing of the refused requests was written.
    let (_, projects) = get(&s, "/projects", key).await;
    assert_eq!(projects["count"], 1);
    let (_, keys) = get(&s, "/apikeys", key).await;
    assert_eq!(keys["count"], 1);
    let (st, _) = post(
        &s,
        "/login",
        None,
        json!({"email": "a@example.com", "password": "password123"}),
    )
    .await;
    assert_eq!(st, 401, "no account was created by a refused sign-up");
}

#[tokio::test]
async fn malformed_requests_answer_in_the_envelope() {
    let s = start().await;
    let alice = signup(&s, "alice@example.com", "Alpha").await;
    let key = str_of(&alice, "api_key");

    for raw in [
        "{bad",
        "",
        "[1,2]",
        "\"text\"",
        "{\"email\": \"a@b.co\"} trailing",
        "null",
    ] {
        let (st, body) = call(&s, Method::POST, "/signup", None, Some(raw)).await;
        assert_eq!(st, 400, "{raw:?}: {body}");
        assert_eq!(body["code"], "bad_request");
    }
    let (st, body) = call(&s, Method::GET, "/no/such/path", None, None).await;
    assert_eq!((st, body["code"].as_str()), (404, Some("not_found")));
    let (st, body) = call(&s, Method::GET, "/projects/x/y/z", Some(key), None).await;
    assert_eq!((st, body["code"].as_str()), (404, Some("not_found")));
    let (st, body) = call(&s, Method::PUT, "/signup", None, Some("{}")).await;
    assert_eq!(
        (st, body["code"].as_str()),
        (405, Some("method_not_allowed"))
    );
    let (st, body) = call(&s, Method::DELETE, "/projects", Some(key), None).await;
    assert_eq!(
        (st, body["code"].as_str()),
        (405, Some("method_not_allowed"))
    );

    let huge = format!("{{\"name\": \"{}\"}}", "x".repeat(2 << 20));
    let (st, body) = call(&s, Method::POST, "/projects", Some(key), Some(&huge)).await;
    assert_eq!(
        (st, body["code"].as_str()),
        (413, Some("payload_too_large")),
        "{body}"
    );

    // Authentication: missing header vs bad or malformed credentials.
    let (st, body) = call(&s, Method::GET, "/projects", None, None).await;
    assert_eq!((st, body["code"].as_str()), (401, Some("auth_required")));
    let (st, body) = call(&s, Method::GET, "/projects", Some("tdb_sk_00"), None).await;
    assert_eq!((st, body["code"].as_str()), (401, Some("unauthorized")));
    let resp = reqwest::Client::new()
        .get(format!("{}/projects", s.api_url))
        .header("authorization", format!("Basic {key}"))
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status(), 401);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["code"], "unauthorized");
}

#[tokio::test]
async fn public_endpoints_describe_the_service() {
    let s = start().await;
    let (st, health) = call(&s, Method::GET, "/health", None, None).await;
    assert_eq!((st, health["catalog"].as_str()), (200, Some("ok")));

    let (_, regions) = call(&s, Method::GET, "/regions", None, None).await;
    let regions = regions["regions"].as_array().expect("regions");
    assert_eq!(
        regions.iter().filter(|r| r["is_default"] == true).count(),
        1
    );

    let (_, errors) = call(&s, Method::GET, "/errors", None, None).await;
    for (code, status) in [
        ("ok", 200),
        ("created", 201),
        ("bad_request", 400),
        ("auth_required", 401),
        ("unauthorized", 401),
        ("forbidden", 403),
        ("role_required", 403),
        ("scope_denied", 403),
        ("not_found", 404),
        ("conflict", 409),
        ("rate_limited", 429),
        ("internal_error", 500),
    ] {
        assert_eq!(errors["codes"][code]["status"], status, "{code}");
    }

    // The OpenAPI document is 3.1 and lists every endpoint of the accounts table.
    let doc: Value = reqwest::get(format!("{}/openapi.json", s.api_url))
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")),
        "{}",
        doc["openapi"]
    );
    for (path, method) in [
        ("/signup", "post"),
        ("/login", "post"),
        ("/projects", "get"),
        ("/projects", "post"),
        ("/projects/{id}/switch", "post"),
        ("/projects/{id}", "delete"),
        ("/projects/{id}/proxy-password", "post"),
        ("/apikeys", "get"),
        ("/apikeys", "post"),
        ("/apikeys/{id}", "delete"),
        ("/regions", "get"),
        ("/errors", "get"),
        ("/health", "get"),
        ("/workspaces", "get"),
        ("/workspaces", "post"),
        ("/workspaces/{id}", "get"),
        ("/workspaces/{id}", "delete"),
        ("/workspaces/{id}/queries", "post"),
        ("/workspaces/{id}/schema", "get"),
        ("/workspaces/{id}/schema", "post"),
        ("/workspaces/{id}/diff", "get"),
        ("/workspaces/{id}/diff/{ddl_id}", "delete"),
        ("/workspaces/{id}/diff/{ddl_id}/revert", "post"),
        ("/workspaces/{id}/settings", "get"),
        ("/workspaces/{id}/settings", "patch"),
        ("/workspaces/{id}/settings", "post"),
        ("/blueprints", "get"),
        ("/blueprints/{name}", "get"),
        ("/blueprints/{name}/versions", "get"),
        ("/tenants", "get"),
        ("/tenants", "post"),
        ("/tenants/{id}", "get"),
        ("/tenants/{id}", "delete"),
        ("/tenants/{id}/restore", "post"),
        ("/tenants/{id}/suspend", "post"),
        ("/tenants/{id}/resume", "post"),
        ("/tenants/{id}/deployments", "get"),
        ("/tenants/{id}/credentials", "post"),
        ("/tenants/{id}/backup", "post"),
        ("/tenants/{id}/backups", "get"),
        ("/tenants/{id}/rollback", "post"),
        ("/projects/{id}/backup-policy", "get"),
        ("/projects/{id}/backup-policy", "patch"),
        ("/deployments", "get"),
        ("/deployments", "post"),
        ("/deployments/{id}", "get"),
        ("/admin/query", "post"),
        ("/api/v1/provision", "post"),
        ("/api/v1/provision", "get"),
        ("/api/v1/provision/{id}", "delete"),
        ("/api/v1/connections", "post"),
        ("/api/v1/connections", "get"),
        ("/api/v1/connections/{id}", "get"),
        ("/api/v1/connections/{id}", "delete"),
        ("/api/v1/connections/{id}/introspect", "get"),
        ("/api/v1/connections/{id}/query", "post"),
    ] {
        assert!(
            doc["paths"][path][method].is_object(),
            "openapi lacks {method} {path}"
        );
    }
}
