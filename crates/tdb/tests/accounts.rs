//! The account flow over the real HTTP API against a real managed PostgreSQL: sign-up, keys,
//! projects, switching, revocation, and the walls between projects and between accounts.

mod common;

use common::*;
use serde_json::json;

#[tokio::test]
async fn account_flow_behaves_as_the_contract_says() {
    let s = start().await;
    let alice = signup(&s, "Alice@Example.com", "Healthcare SaaS").await;
    let key = str_of(&alice, "api_key");
    let first = str_of(&alice, "project_id");
    assert!(key.starts_with("tdb_sk_") && key.len() == 71, "{key}");
    assert!(str_of(&alice, "proxy_password").starts_with("tdb_pw_"));
    assert_eq!(alice["code"], "created");

    // Same e-mail (any case) again: conflict.
    let (st, body) = post(
        &s,
        "/signup",
        None,
        json!({"email": "alice@example.COM", "password": "whatever123"}),
    )
    .await;
    assert_eq!(
        (st, body["code"].as_str()),
        (409, Some("conflict")),
        "{body}"
    );

    // Projects: one, then a second.
    let (st, list) = get(&s, "/projects", key).await;
    assert_eq!(st, 200);
    assert_eq!(list["count"], 1);
    assert_eq!(list["projects"][0]["name"], "Healthcare SaaS");
    assert_eq!(list["projects"][0]["api_key_count"], 1);
    let (st, second) = post(
        &s,
        "/projects",
        Some(key),
        json!({"name": "E-commerce Platform"}),
    )
    .await;
    assert_eq!(st, 201, "{second}");
    let second_id = str_of(&second, "project_id").to_string();
    let second_key = str_of(&second, "api_key").to_string();
    let (st, dup) = post(
        &s,
        "/projects",
        Some(key),
        json!({"name": "E-commerce Platform"}),
    )
    .await;
    assert_eq!(st, 409, "{dup}");
    let (_, list) = get(&s, "/projects", key).await;
    assert_eq!(list["count"], 2);

    // Switch by name and by id: each mints a working key of the target project.
    for target in ["E-commerce Platform", second_id.as_str()] {
        let (st, sw) = post(
            &s,
            &format!("/projects/{}/switch", target.replace(' ', "%20")),
            Some(key),
            json!({}),
        )
        .await;
        assert_eq!(st, 200, "{sw}");
        assert_eq!(sw["project_id"], second_id.as_str());
        let (st, keys) = get(&s, "/apikeys", str_of(&sw, "api_key")).await;
        assert_eq!(st, 200);
        assert!(keys["api_keys"].as_array().is_some_and(|k| !k.is_empty()));
    }
    let (st, _) = post(&s, "/projects/nope/switch", Some(key), json!({})).await;
    assert_eq!(st, 404);

    // Keys: create a read key, see it listed without its secret, revoke it, see it refused.
    let (st, created) = post(
        &s,
        "/apikeys",
        Some(key),
        json!({"name": "ci", "role": "read"}),
    )
    .await;
    assert_eq!(st, 201, "{created}");
    let read_key = str_of(&created, "api_key").to_string();
    let read_id = str_of(&created, "id").to_string();
    assert_eq!(created["role"], "read");
    assert_eq!(created["scope_type"], "project");
    let (_, keys) = get(&s, "/apikeys", key).await;
    assert_eq!(keys["count"], 2);
    assert!(!keys.to_string().contains(&read_key), "secret listed");
    assert!(keys.to_string().contains(&read_key[..13]), "prefix missing");
    let (st, _) = get(&s, "/projects", &read_key).await;
    assert_eq!(st, 200, "a read key can read");
    let (st, body) = post(&s, "/projects", Some(&read_key), json!({"name": "nope"})).await;
    assert_eq!(
        (st, body["code"].as_str()),
        (403, Some("role_required")),
        "{body}"
    );
    let (st, _) = delete(&s, &format!("/apikeys/{read_id}"), key).await;
    assert_eq!(st, 200);
    let (st, body) = get(&s, "/projects", &read_key).await;
    assert_eq!(
        (st, body["code"].as_str()),
        (401, Some("unauthorized")),
        "revoked key: {body}"
    );
    let (st, _) = delete(&s, &format!("/apikeys/{read_id}"), key).await;
    assert_eq!(st, 404, "revoking twice");

    // A scoped admin key may not manage keys or projects.
    let (st, scoped) = post(
        &s,
        "/apikeys",
        Some(key),
        json!({"scope_type": "tenant", "scope_values": ["acme"]}),
    )
    .await;
    assert_eq!(st, 201, "{scoped}");
    let (st, body) = post(&s, "/apikeys", Some(str_of(&scoped, "api_key")), json!({})).await;
    assert_eq!(
        (st, body["code"].as_str()),
        (403, Some("scope_denied")),
        "{body}"
    );

    // Proxy password rotation returns a new password once; only its verifier is kept.
    let (st, rotated) = post(
        &s,
        &format!("/projects/{first}/proxy-password"),
        Some(key),
        json!({}),
    )
    .await;
    assert_eq!(st, 200, "{rotated}");
    assert_ne!(rotated["proxy_password"], alice["proxy_password"]);

    // Login mints a fresh key per project.
    let (st, login) = post(
        &s,
        "/login",
        None,
        json!({"email": "alice@example.com", "password": "correct-horse"}),
    )
    .await;
    assert_eq!(st, 200, "{login}");
    let projects = login["projects"].as_array().expect("projects");
    assert_eq!(projects.len(), 2);
    for p in projects {
        let k = str_of(p, "api_key");
        assert_ne!(k, key);
        let (st, keys) = get(&s, "/apikeys", k).await;
        assert_eq!(st, 200, "{keys}");
    }
    let (st, body) = post(
        &s,
        "/login",
        None,
        json!({"email": "alice@example.com", "password": "wrong-horse"}),
    )
    .await;
    assert_eq!((st, body["code"].as_str()), (401, Some("unauthorized")));
    let (st2, body2) = post(
        &s,
        "/login",
        None,
        json!({"email": "nobody@example.com", "password": "wrong-horse"}),
    )
    .await;
    assert_eq!(
        (st2, &body2["error"]),
        (st, &body["error"]),
        "unknown e-mail looks like a wrong password"
    );

    // Deleting a project removes it and its keys.
    let (st, _) = delete(&s, &format!("/projects/{second_id}"), key).await;
    assert_eq!(st, 200);
    let (st, _) = get(&s, "/apikeys", &second_key).await;
    assert_eq!(st, 401, "keys of a deleted project are gone");
    let (_, list) = get(&s, "/projects", key).await;
    assert_eq!(list["count"], 1);
}

#[tokio::test]
async fn another_accounts_resources_are_not_found() {
    let s = start().await;
    let alice = signup(&s, "alice@example.com", "Alpha").await;
    let bob = signup(&s, "bob@example.com", "Beta").await;
    let (a_key, a_project) = (str_of(&alice, "api_key"), str_of(&alice, "project_id"));
    let b_key = str_of(&bob, "api_key");
    let (_, a_keys) = get(&s, "/apikeys", a_key).await;
    let a_key_id = a_keys["api_keys"][0]["id"]
        .as_str()
        .expect("id")
        .to_string();

    // Bob sees none of Alice's projects, cannot switch to, rotate or delete them (by id or
    // name), and cannot revoke her keys: each is a plain 404, as if absent.
    let (_, b_list) = get(&s, "/projects", b_key).await;
    assert!(!b_list.to_string().contains(a_project));
    for path in [
        format!("/projects/{a_project}/switch"),
        "/projects/Alpha/switch".into(),
        format!("/projects/{a_project}/proxy-password"),
    ] {
        let (st, body) = post(&s, &path, Some(b_key), json!({})).await;
        assert_eq!(
            (st, body["code"].as_str()),
            (404, Some("not_found")),
            "{path}: {body}"
        );
    }
    let (st, _) = delete(&s, &format!("/projects/{a_project}"), b_key).await;
    assert_eq!(st, 404);
    let (st, _) = delete(&s, &format!("/apikeys/{a_key_id}"), b_key).await;
    assert_eq!(st, 404);

    // Alice's things are untouched.
    let (_, a_list) = get(&s, "/projects", a_key).await;
    assert_eq!(a_list["count"], 1);
    let (st, _) = get(&s, "/apikeys", a_key).await;
    assert_eq!(st, 200);

    // Within one account, a key of project A lists only A's keys.
    let (_, second) = post(&s, "/projects", Some(a_key), json!({"name": "Gamma"})).await;
    let (_, gamma_keys) = get(&s, "/apikeys", str_of(&second, "api_key")).await;
    assert_eq!(gamma_keys["count"], 1);
    assert_ne!(gamma_keys["api_keys"][0]["id"], a_key_id.as_str());
    let (st, _) = delete(
        &s,
        &format!("/apikeys/{a_key_id}"),
        str_of(&second, "api_key"),
    )
    .await;
    assert_eq!(
        st, 404,
        "a key of project Gamma cannot revoke project Alpha's key"
    );
}
