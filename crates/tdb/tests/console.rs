//! The web console over real HTTP against a real `tdb serve`: its files and their security
//! headers, and its session (cookie flags, CSRF, no key ever in an answer, sign-out, switching
//! projects, a revoked key ending the session). The browser flow is in `console_browser.rs`.

mod common;

use common::*;
use reqwest::header::{HeaderMap, SET_COOKIE};
use serde_json::{Value, json};
use tdb_testkit::TdbServer;

/// A call carrying a console cookie (and optionally the CSRF header and more headers).
async fn with_cookie(
    s: &TdbServer,
    method: reqwest::Method,
    path: &str,
    cookie: &str,
    csrf: Option<&str>,
    extra: &[(&str, &str)],
    body: Option<Value>,
) -> (u16, Value) {
    let client = reqwest::Client::new();
    let mut req = client
        .request(method, format!("{}{path}", s.api_url))
        .header("cookie", format!("tdb_console={cookie}"));
    if let Some(csrf) = csrf {
        req = req.header("x-tdb-csrf", csrf);
    }
    for (name, value) in extra {
        req = req.header(*name, *value);
    }
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.expect("request sent");
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.expect("JSON body");
    assert_envelope(status, &body);
    (status, body)
}

/// A GET with the console cookie alone.
async fn read(s: &TdbServer, path: &str, cookie: &str) -> (u16, Value) {
    with_cookie(s, reqwest::Method::GET, path, cookie, None, &[], None).await
}

/// Signs in; returns the status, the body and the `Set-Cookie` header.
async fn sign_in(s: &TdbServer, body: Value, extra: &[(&str, &str)]) -> (u16, Value, String) {
    let client = reqwest::Client::new();
    let mut req = client
        .post(format!("{}/console/session", s.api_url))
        .json(&body);
    for (name, value) in extra {
        req = req.header(*name, *value);
    }
    let resp = req.send().await.expect("request sent");
    let status = resp.status().as_u16();
    let cookie = set_cookie(resp.headers());
    let body: Value = resp.json().await.expect("JSON body");
    assert_envelope(status, &body);
    (status, body, cookie)
}

fn set_cookie(headers: &HeaderMap) -> String {
    headers
        .get(SET_COOKIE)
        .map(|v| v.to_str().expect("ASCII").to_string())
        .unwrap_or_default()
}

fn token_of(cookie: &str) -> &str {
    cookie
        .strip_prefix("tdb_console=")
        .and_then(|rest| rest.split(';').next())
        .unwrap_or_else(|| panic!("not a console cookie: {cookie}"))
}

fn holds_no_key(body: &Value) {
    let text = body.to_string();
    assert!(!text.contains("tdb_sk_"), "an API key in {text}");
    assert!(body.get("api_key").is_none(), "{text}");
}

#[tokio::test]
async fn the_console_page_is_served_with_a_strict_policy() {
    let s = start().await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let root = client.get(&s.api_url).send().await.expect("GET /");
    assert!(root.status().is_redirection(), "{}", root.status());
    assert_eq!(root.headers()["location"], "/console");
    for (path, kind) in [
        ("/console", "text/html"),
        ("/console/tenants/acme", "text/html"),
        ("/console/app.js", "text/javascript"),
        ("/console/app.css", "text/css"),
    ] {
        let resp = client
            .get(format!("{}{path}", s.api_url))
            .send()
            .await
            .expect("GET");
        assert_eq!(resp.status(), 200, "{path}");
        let headers = resp.headers();
        assert!(
            headers["content-type"]
                .to_str()
                .expect("ASCII")
                .starts_with(kind),
            "{path}: {:?}",
            headers["content-type"]
        );
        let policy = headers["content-security-policy"].to_str().expect("ASCII");
        assert!(policy.contains("script-src 'self'"), "{policy}");
        assert!(!policy.contains("unsafe-inline") && !policy.contains("unsafe-eval"));
        assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
        assert_eq!(headers["x-content-type-options"], "nosniff");
    }
}

#[tokio::test]
async fn a_console_session_holds_no_key_and_refuses_writes_without_its_token() {
    let s = start().await;
    let signed_up = signup(&s, "console@example.com", "First").await;
    let key = str_of(&signed_up, "api_key").to_string();
    let (st, second) = post(&s, "/projects", Some(&key), json!({"name": "Second"})).await;
    assert_eq!(st, 201, "{second}");

    // Wrong password, an unknown e-mail, and a body that is neither form: refused, no cookie.
    for body in [
        json!({"email": "console@example.com", "password": "wrong-horse"}),
        json!({"email": "nobody@example.com", "password": "correct-horse"}),
    ] {
        let (st, answer, cookie) = sign_in(&s, body, &[]).await;
        assert_eq!((st, answer["code"].as_str()), (401, Some("unauthorized")));
        assert!(cookie.is_empty(), "{cookie}");
    }
    let both = json!({"email": "console@example.com", "password": "correct-horse", "api_key": key});
    let (st, answer, _) = sign_in(&s, both, &[]).await;
    assert_eq!(st, 400, "{answer}");

    // A sign-in another site's page could send (a form posting JSON-shaped text/plain, or a
    // request the browser marks as from elsewhere) is refused and sets no cookie: a visitor
    // cannot be signed in to someone else's account.
    let login = json!({"email": "console@example.com", "password": "correct-horse"});
    let client = reqwest::Client::new();
    let forged = client
        .post(format!("{}/console/session", s.api_url))
        .header("content-type", "text/plain")
        .body(login.to_string())
        .send()
        .await
        .expect("request sent");
    assert_eq!(forged.status(), 403);
    assert!(set_cookie(forged.headers()).is_empty());
    for site in ["cross-site", "same-site"] {
        let (st, answer, cookie) = sign_in(&s, login.clone(), &[("sec-fetch-site", site)]).await;
        assert_eq!(
            (st, answer["code"].as_str()),
            (403, Some("forbidden")),
            "{answer}"
        );
        assert!(cookie.is_empty(), "{cookie}");
    }

    // Password sign-in: the cookie's flags, an answer without any key.
    let body = json!({"email": "console@example.com", "password": "correct-horse"});
    let (st, session, cookie) = sign_in(&s, body.clone(), &[]).await;
    assert_eq!(st, 200, "{session}");
    holds_no_key(&session);
    assert_eq!(session["project_name"], "First");
    assert_eq!(session["signed_in_with"], "password");
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=43200"] {
        assert!(cookie.contains(flag), "{flag} missing: {cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP: {cookie}");
    let (_, _, behind_tls) = sign_in(&s, body, &[("x-forwarded-proto", "https")]).await;
    assert!(
        behind_tls.starts_with("__Host-tdb_console=") && behind_tls.contains("; Secure"),
        "{behind_tls}"
    );
    let token = token_of(&cookie).to_string();
    let csrf = str_of(&session, "csrf_token").to_string();
    assert_ne!(csrf, token);

    // GET needs the cookie alone; a change needs the token too, and not from another site.
    let (st, again) = read(&s, "/console/session", &token).await;
    assert_eq!((st, &again["csrf_token"]), (200, &session["csrf_token"]));
    holds_no_key(&again);
    let (st, listed) = read(&s, "/workspaces", &token).await;
    assert_eq!(st, 200, "{listed}");
    let workspace = json!({"name": "notes", "database": "PostgreSQL", "mode": "tenant"});
    let write = reqwest::Method::POST;
    for (csrf, extra) in [
        (None, &[][..]),
        (Some("0".repeat(64)), &[][..]),
        (Some(csrf.clone()), &[("sec-fetch-site", "cross-site")][..]),
    ] {
        let (st, refused) = with_cookie(
            &s,
            write.clone(),
            "/workspaces",
            &token,
            csrf.as_deref(),
            extra,
            Some(workspace.clone()),
        )
        .await;
        assert_eq!(
            (st, refused["code"].as_str()),
            (403, Some("forbidden")),
            "{refused}"
        );
    }
    let (st, made) = with_cookie(
        &s,
        write.clone(),
        "/workspaces",
        &token,
        Some(&csrf),
        &[("sec-fetch-site", "same-origin")],
        Some(workspace),
    )
    .await;
    assert_eq!(st, 201, "{made}");
    // The workspace is the first project's: the session acts as that project.
    let (_, listed) = get(&s, "/workspaces", &key).await;
    assert_eq!(listed["count"], 1, "{listed}");

    // The API's own switch answers a key: a console session may not use it.
    let first_id = str_of(&signed_up, "project_id");
    let (st, refused) = with_cookie(
        &s,
        write.clone(),
        &format!("/projects/{first_id}/switch"),
        &token,
        Some(&csrf),
        &[],
        Some(json!({})),
    )
    .await;
    assert_eq!(
        (st, refused["code"].as_str()),
        (403, Some("forbidden")),
        "{refused}"
    );
    holds_no_key(&refused);

    // Switching projects: the answer still holds no key; the key minted before is revoked.
    let keys_before = get(&s, "/apikeys", &key).await.1;
    let minted = keys_before["api_keys"]
        .as_array()
        .expect("keys")
        .iter()
        .find(|k| k["name"] == "console")
        .unwrap_or_else(|| panic!("the session's key is listed: {keys_before}"))
        .clone();
    assert_eq!(minted["role"], "admin");
    let (st, switched) = with_cookie(
        &s,
        write.clone(),
        "/console/session/project",
        &token,
        Some(&csrf),
        &[],
        Some(json!({"project": "Second"})),
    )
    .await;
    assert_eq!(st, 200, "{switched}");
    holds_no_key(&switched);
    assert_eq!(switched["project_id"], second["project_id"]);
    let keys_after = get(&s, "/apikeys", &key).await.1;
    let ids = |v: &Value| -> Vec<String> {
        v["api_keys"]
            .as_array()
            .expect("a list of keys")
            .iter()
            .map(|k| k["id"].as_str().expect("a string").to_string())
            .collect()
    };
    assert!(
        !ids(&keys_after).contains(&minted["id"].as_str().expect("a string").to_string()),
        "{keys_after}"
    );
    let (st, listed) = read(&s, "/workspaces", &token).await;
    assert_eq!((st, &listed["count"]), (200, &json!(0)), "{listed}");

    // Sign-out: the cookie is cleared, the session ends, the key minted for it is revoked.
    let client = reqwest::Client::new();
    let out = client
        .delete(format!("{}/console/session", s.api_url))
        .header("cookie", format!("tdb_console={token}"))
        .header("x-tdb-csrf", &csrf)
        .send()
        .await
        .expect("sign-out");
    assert_eq!(out.status(), 200);
    let cleared = set_cookie(out.headers());
    assert!(
        cleared.starts_with("tdb_console=;") && cleared.contains("Max-Age=0"),
        "{cleared}"
    );
    let (st, ended) = read(&s, "/workspaces", &token).await;
    assert_eq!(
        (st, ended["code"].as_str()),
        (401, Some("unauthorized")),
        "{ended}"
    );
    let second_key = str_of(&second, "api_key");
    let (_, second_keys) = get(&s, "/apikeys", second_key).await;
    assert!(
        second_keys["api_keys"]
            .as_array()
            .expect("a list of keys")
            .iter()
            .all(|k| k["name"] != "console"),
        "{second_keys}"
    );

    // API-key sign-in acts with that key; revoking the key ends the session.
    let (st, created) = post(
        &s,
        "/apikeys",
        Some(&key),
        json!({"name": "reader", "role": "read"}),
    )
    .await;
    assert_eq!(st, 201, "{created}");
    let (st, by_key, cookie) =
        sign_in(&s, json!({"api_key": str_of(&created, "api_key")}), &[]).await;
    assert_eq!(st, 200, "{by_key}");
    holds_no_key(&by_key);
    assert_eq!(
        (by_key["role"].as_str(), by_key["signed_in_with"].as_str()),
        (Some("read"), Some("api_key"))
    );
    let token = token_of(&cookie).to_string();
    let (st, _) = read(&s, "/workspaces", &token).await;
    assert_eq!(st, 200);
    // Signing in again from the same browser ends the session it held.
    let (st, _, newer) = sign_in(
        &s,
        json!({"api_key": str_of(&created, "api_key")}),
        &[("cookie", &format!("tdb_console={token}"))],
    )
    .await;
    assert_eq!(st, 200);
    let (st, _) = read(&s, "/workspaces", &token).await;
    assert_eq!(st, 401, "the older session still works");
    let token = token_of(&newer).to_string();
    let (st, _) = delete(&s, &format!("/apikeys/{}", str_of(&created, "id")), &key).await;
    assert_eq!(st, 200);
    let (st, _) = read(&s, "/workspaces", &token).await;
    assert_eq!(st, 401);
    let out = reqwest::Client::new()
        .delete(format!("{}/console/session", s.api_url))
        .header("cookie", format!("tdb_console={token}"))
        .header("x-tdb-csrf", tdb_core::secrets::console_csrf_token(&token))
        .send()
        .await
        .expect("sign-out");
    assert_eq!(out.status(), 200, "signing out of an ended session");
    assert!(set_cookie(out.headers()).contains("Max-Age=0"));
    drop(s);
}
