//! No secret a client can log in with is stored in a recoverable form. Runs tdb in attached
//! mode against a PostgreSQL of the harness's own, so the test can dump the whole catalog and
//! search it, and checks what is recorded of attached servers.

mod common;

use common::*;
use serde_json::json;
use sqlx::Connection;
use tdb_testkit::{ServeOptions, TdbServer, TestPostgres};

/// The data rows of `table` in a plain-format dump (tab-separated, as COPY writes them).
fn copy_rows<'a>(dump: &'a str, table: &str) -> Vec<&'a str> {
    let start = format!("COPY public.{table} ");
    dump.lines()
        .skip_while(|l| !l.starts_with(&start))
        .skip(1)
        .take_while(|l| *l != "\\.")
        .collect()
}

#[tokio::test]
async fn no_plaintext_secret_reaches_the_catalog() {
    let pg = TestPostgres::start().await.expect("test postgres");
    let catalog_url = pg.url("postgres");
    let s = TdbServer::start_with(
        bin(),
        ServeOptions {
            catalog_url: Some(catalog_url),
            ..Default::default()
        },
    )
    .await
    .expect("tdb attached");

    let account_password = "correct-horse";
    let alice = signup(&s, "alice@example.com", "Alpha").await;
    let key = str_of(&alice, "api_key").to_string();
    let mut secrets = vec![
        account_password.to_string(),
        key.clone(),
        str_of(&alice, "proxy_password").to_string(),
        pg.endpoint.password.clone(),
    ];
    let (_, project) = post(&s, "/projects", Some(&key), json!({"name": "Beta"})).await;
    secrets.push(str_of(&project, "api_key").into());
    secrets.push(str_of(&project, "proxy_password").into());
    let (_, created) = post(&s, "/apikeys", Some(&key), json!({"role": "read"})).await;
    secrets.push(str_of(&created, "api_key").into());
    let first = str_of(&alice, "project_id");
    let (_, rotated) = post(
        &s,
        &format!("/projects/{first}/proxy-password"),
        Some(&key),
        json!({}),
    )
    .await;
    secrets.push(str_of(&rotated, "proxy_password").into());
    let (_, login) = post(
        &s,
        "/login",
        None,
        json!({"email": "alice@example.com", "password": account_password}),
    )
    .await;
    for p in login["projects"].as_array().expect("projects") {
        secrets.push(str_of(p, "api_key").into());
    }
    let (_, switched) = post(&s, "/projects/Beta/switch", Some(&key), json!({})).await;
    secrets.push(str_of(&switched, "api_key").into());

    let dump = pg.dump("postgres").expect("pg_dump");
    assert!(
        dump.contains("COPY public.api_keys"),
        "dump holds the catalog"
    );
    assert!(dump.contains("$argon2id$"), "passwords are argon2id hashes");
    assert!(
        dump.contains("SCRAM-SHA-256$4096:"),
        "proxy passwords are SCRAM verifiers"
    );
    for secret in &secrets {
        assert!(
            !dump.contains(secret.as_str()),
            "plaintext secret {}… found in the catalog",
            &secret[..8]
        );
        // The random part alone must not appear either (e.g. in another encoding of the key).
        if secret.len() >= 32 {
            let tail = &secret[secret.len() - 16..];
            assert!(
                !dump.contains(tail),
                "secret tail of {}… found in the catalog",
                &secret[..8]
            );
        }
    }

    // The catalog's own server was recorded as the shared server, its password sealed.
    let servers = copy_rows(&dump, "servers");
    assert_eq!(servers.len(), 1, "{servers:?}");
    assert!(servers[0].contains("postgresql-catalog") && servers[0].contains("shared"));
    drop(s);
    pg.stop().await;
}

#[tokio::test]
async fn managed_catalog_records_its_server_with_a_sealed_password() {
    let s = start().await;
    let alice = signup(&s, "alice@example.com", "Alpha").await;
    let admin_url = s.managed_admin_url("tdb_catalog").expect("admin url");
    let admin_password = admin_url
        .split(':')
        .nth(2)
        .and_then(|p| p.split('@').next())
        .expect("password")
        .to_string();
    let dump = tdb_testkit::pg_dump(&admin_url).expect("dump managed catalog");
    for secret in [
        str_of(&alice, "api_key"),
        str_of(&alice, "proxy_password"),
        "correct-horse",
        admin_password.as_str(),
    ] {
        assert!(
            !dump.contains(secret),
            "plaintext secret {}… in the managed catalog",
            &secret[..8]
        );
    }
    let servers = copy_rows(&dump, "servers");
    assert_eq!(servers.len(), 1, "{servers:?}");
    let row: Vec<&str> = servers[0].split('\t').collect();
    // id, name, engine, role, region, host, port, admin_user, admin_secret, managed, ...
    assert_eq!(
        &row[1..5],
        ["postgresql-shared", "postgresql", "shared", "local"]
    );
    assert_eq!(row[7], "tdb_admin");
    assert!(
        row[8].starts_with("\\\\x01"),
        "sealed secret, version 1: {}",
        row[8]
    );
    assert_eq!(row[9], "t", "managed");

    // The catalog and the server's own databases are closed to PUBLIC, so workspace and tenant
    // roles cannot even connect to them.
    let mut admin = sqlx::PgConnection::connect(&admin_url)
        .await
        .expect("admin");
    for db in ["tdb_catalog", "postgres", "template1"] {
        let open: bool =
            sqlx::query_scalar("SELECT has_database_privilege('public', $1, 'CONNECT')")
                .bind(db)
                .fetch_one(&mut admin)
                .await
                .expect("privilege");
        assert!(!open, "PUBLIC may connect to {db}");
    }
}

#[tokio::test]
async fn attached_servers_from_tdb_toml_are_recorded_sealed() {
    let catalog = TestPostgres::start().await.expect("catalog postgres");
    let shared = TestPostgres::start().await.expect("shared postgres");
    let toml = format!(
        "[[regions]]\nzone = \"eu-central\"\nlabel = \"Europe\"\nis_default = true\n\n\
         [[regions]]\nzone = \"us-east\"\nlabel = \"US East\"\n\n\
         [[servers]]\nname = \"pg-eu-1\"\nurl = \"{}\"\n",
        shared.url("postgres")
    );
    let s = TdbServer::start_with(
        bin(),
        ServeOptions {
            catalog_url: Some(catalog.url("postgres")),
            config_toml: Some(toml),
            ..Default::default()
        },
    )
    .await
    .expect("tdb attached with servers");
    let (_, regions) = call(&s, reqwest::Method::GET, "/regions", None, None).await;
    assert_eq!(regions["regions"][0]["zone"], "eu-central");
    assert_eq!(regions["regions"][1]["is_default"], false);

    let dump = catalog.dump("postgres").expect("dump");
    assert!(
        !dump.contains(&shared.endpoint.password),
        "attached server password in clear"
    );
    let servers = copy_rows(&dump, "servers");
    assert_eq!(servers.len(), 1, "only the configured server: {servers:?}");
    let row: Vec<&str> = servers[0].split('\t').collect();
    assert_eq!(
        &row[1..6],
        ["pg-eu-1", "postgresql", "shared", "eu-central", "127.0.0.1"]
    );
    assert_eq!(row[6], shared.endpoint.port.to_string());
    assert_eq!(row[9], "f", "attached, not managed");
    drop(s);
    catalog.stop().await;
    shared.stop().await;
}

#[tokio::test]
async fn master_key_file_is_private_and_env_key_is_honoured() {
    use std::os::unix::fs::PermissionsExt;

    // Default: a master.key with mode 0600 in the data dir, reused across restarts.
    let mut s = start().await;
    let key_file = s.data_dir().join("master.key");
    let mode = std::fs::metadata(&key_file)
        .expect("master.key")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let before = std::fs::read_to_string(&key_file).expect("read");
    s.restart().await.expect("restart");
    assert_eq!(std::fs::read_to_string(&key_file).expect("read"), before);
    drop(s);

    // TDB_MASTER_KEY: no key file is written, and the same key opens the same data again.
    let env_key = "ab".repeat(32);
    let options = ServeOptions {
        env: vec![("TDB_MASTER_KEY".into(), env_key.clone())],
        ..Default::default()
    };
    let mut s = TdbServer::start_with(bin(), options)
        .await
        .expect("start with env key");
    assert!(
        !s.data_dir().join("master.key").exists(),
        "no key file with TDB_MASTER_KEY"
    );
    let alice = signup(&s, "alice@example.com", "Alpha").await;
    s.restart().await.expect("restart with the same env key");
    let (st, _) = get(&s, "/projects", str_of(&alice, "api_key")).await;
    assert_eq!(st, 200);
    s.stop().expect("stop");

    // Under a different key the sealed admin password cannot be opened: a clear refusal, and
    // the data is untouched for the right key.
    let state = s.data_dir().join("servers/postgresql-shared/state.json");
    let state_before = std::fs::read(&state).expect("state");
    let out = std::process::Command::new(bin())
        .args(["serve", "--data-dir"])
        .arg(s.data_dir())
        .args(["--api-listen", "127.0.0.1:0"])
        .env("TDB_MASTER_KEY", "cd".repeat(32))
        .output()
        .expect("run tdb serve");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("master key"), "{stderr}");
    assert_eq!(std::fs::read(&state).expect("state"), state_before);
    let bad = std::process::Command::new(bin())
        .args(["serve", "--data-dir"])
        .arg(s.data_dir())
        .env("TDB_MASTER_KEY", "too-short")
        .output()
        .expect("run tdb serve");
    assert!(String::from_utf8_lossy(&bad.stderr).contains("TDB_MASTER_KEY"));
    s.restart().await.expect("the right key still opens it");
    let (st, _) = get(&s, "/projects", str_of(&alice, "api_key")).await;
    assert_eq!(st, 200);
}
