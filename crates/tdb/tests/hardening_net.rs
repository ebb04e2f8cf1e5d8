//! What a hostile client on the network can no longer do to `tdb serve`: reach internal
//! addresses through server-side fetches.

mod common;

use common::*;
use serde_json::json;

/// Signs up and creates a tenant-mode workspace `app`; returns the API key.
async fn account_with_workspace(s: &tdb_testkit::TdbServer, email: &str) -> String {
    let key = str_of(&signup(s, email, "Hardening").await, "api_key").to_string();
    let (st, body) = post(
        s,
        "/workspaces",
        Some(&key),
        json!({"name": "app", "database": "postgresql", "mode": "tenant"}),
    )
    .await;
    assert_eq!(st, 201, "{body}");
    key
}

#[tokio::test]
async fn ipv4_compatible_ipv6_addresses_count_as_internal() {
    let s = start().await;
    let key = account_with_workspace(&s, "ssrf6@example.com").await;

    // A JSON document on loopback, asked for through its IPv4-compatible IPv6 form.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let url = format!("http://[::127.0.0.1]:{port}/schema.json");
    let (st, body) = post(
        &s,
        "/workspaces/app/schema",
        Some(&key),
        json!({"source": "url", "url": url}),
    )
    .await;
    assert_eq!(st, 400, "{body}");
    assert!(
        str_of(&body, "error").contains("internal address"),
        "{body}"
    );

    // The database source, and a registered connection's introspection.
    let (st, body) = post(
        &s,
        "/workspaces/app/schema",
        Some(&key),
        json!({"source": "database", "connection":
            {"host": "::10.0.0.1", "database": "postgres", "user": "postgres"}}),
    )
    .await;
    assert_eq!(st, 400, "{body}");
    assert!(
        str_of(&body, "error").contains("internal address"),
        "{body}"
    );
    let (st, c) = post(
        &s,
        "/api/v1/connections",
        Some(&key),
        json!({"name": "metadata", "db_type": "postgresql",
               "connection_string": "postgresql://u:pw@[::169.254.169.254]:5432/postgres"}),
    )
    .await;
    assert_eq!(st, 201, "{c}");
    let id = str_of(&c["data"], "id");
    let (st, body) = get(&s, &format!("/api/v1/connections/{id}/introspect"), &key).await;
    assert_eq!(st, 400, "{body}");
    assert!(
        str_of(&body, "error").contains("internal address"),
        "{body}"
    );
}
