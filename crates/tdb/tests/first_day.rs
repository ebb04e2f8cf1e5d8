//! What a new user meets on the first day, each found by trying tdb as one would: a tenant from a
//! blueprint never deployed, the keys that `tdb login` and `tdb projects switch` mint, dry runs
//! that look like deployments, messages that name HTTP paths or internals, a CLI that panics on
//! a closed pipe, `/mcp` refusing in plain text, colour codes in a redirected log; and the
//! README's quickstart, run as written from top to bottom.

mod common;

use std::io::Read;
use std::process::Stdio;
use std::time::Duration;

use common::*;
use reqwest::Method;
use serde_json::{Value, json};
use sqlx::Connection;
use tdb_testkit::TdbServer;

/// Signs up, makes the tenant-mode workspace `myapp` with a table and returns the key.
async fn workspace(s: &TdbServer, email: &str) -> String {
    let key = str_of(&signup(s, email, "Alpha").await, "api_key").to_string();
    let (st, body) = post(
        s,
        "/workspaces",
        Some(&key),
        json!({"name": "myapp", "database": "PostgreSQL", "mode": "tenant"}),
    )
    .await;
    assert_eq!(st, 201, "{body}");
    ws_query(
        s,
        &key,
        "myapp",
        "CREATE TABLE users (id serial PRIMARY KEY, name text)",
    )
    .await;
    key
}

/// Starts a deployment of `myapp` and waits for it; returns the finished deployment.
async fn deploy(s: &TdbServer, key: &str, body: Value) -> Value {
    let (st, created) = post(s, "/deployments", Some(key), body).await;
    assert_eq!(st, 201, "{created}");
    let id = str_of(&created, "id").to_string();
    for _ in 0..600 {
        let (_, d) = get(s, &format!("/deployments/{id}"), key).await;
        if ["completed", "completed_with_errors", "failed"]
            .contains(&d["status"].as_str().unwrap_or(""))
        {
            return d;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("deployment {id} did not finish");
}

/// `myapp` deployed and the tenant `acme` made from it; returns the key.
async fn tenant(s: &TdbServer, email: &str) -> String {
    let key = workspace(s, email).await;
    let d = deploy(s, &key, json!({"blueprint_name": "myapp"})).await;
    assert_eq!(d["status"], "completed", "{d}");
    let body = json!({"tenant_id": "acme", "databases": [{"blueprint": "myapp"}]});
    let (st, created) = post(s, "/tenants", Some(&key), body).await;
    assert_eq!(st, 201, "{created}");
    key
}

async fn catalog(s: &TdbServer) -> sqlx::PgConnection {
    let url = s.managed_admin_url("tdb_catalog").expect("catalog url");
    sqlx::PgConnection::connect(&url).await.expect("catalog")
}

#[tokio::test]
async fn a_tenant_needs_a_deployed_blueprint() {
    let s = start().await;
    let key = workspace(&s, "new@example.com").await;
    let databases = database_count(&s).await;
    let body = json!({"tenant_id": "acme", "databases": [{"blueprint": "myapp"}]});
    let (st, refused) = post(&s, "/tenants", Some(&key), body.clone()).await;
    assert_eq!(st, 409, "{refused}");
    let message = str_of(&refused, "error");
    assert!(
        message.contains("'myapp'") && message.contains("tdb deployments create myapp"),
        "{message}"
    );
    assert_eq!(database_count(&s).await, databases, "no database was made");
    let (_, tenants) = get(&s, "/tenants", &key).await;
    assert_eq!(tenants["count"], 0, "{tenants}");

    // Once deployed, the same request makes the tenant at version 1 with the table.
    deploy(&s, &key, json!({"blueprint_name": "myapp"})).await;
    let (st, created) = post(&s, "/tenants", Some(&key), body).await;
    assert_eq!(st, 201, "{created}");
    assert_eq!(created["databases"][0]["version"], 1, "{created}");
}

#[tokio::test]
async fn login_and_switch_keys_expire_and_a_failed_login_mints_nothing() {
    let s = start().await;
    let home = tempfile::tempdir().expect("home");
    let cli = Cli {
        home: home.path(),
        api_url: &s.api_url,
        key: None,
    };
    let password = ["--password", "correct-horse"];
    let mut signup = vec![
        "signup",
        "--email",
        "ann@example.com",
        "--project-name",
        "Alpha",
    ];
    signup.extend(password);
    cli.ok(&signup);
    cli.ok(&["projects", "create", "Beta"]);
    let counts = |cli: &Cli<'_>| {
        let list = cli.json(&["projects", "list"]);
        list["projects"]
            .as_array()
            .expect("projects")
            .iter()
            .map(|p| p["api_key_count"].as_i64().expect("count"))
            .collect::<Vec<_>>()
    };
    let before = counts(&cli);

    // An unknown project: refused, and no project got a key.
    let mut login = vec!["login", "--email", "ann@example.com"];
    login.extend(password);
    let mut unknown = login.clone();
    unknown.extend(["--project", "Nope"]);
    let err = cli.fails(&unknown);
    assert!(err.contains("Nope"), "{err}");
    assert_eq!(counts(&cli), before, "a failed login minted keys");

    // A login for one project mints that project's key only, with an expiry about 30 days out.
    let mut alpha = login.clone();
    alpha.extend(["--project", "Alpha"]);
    let logged = cli.json(&alpha);
    assert_eq!(
        logged["projects"].as_array().map(Vec::len),
        Some(1),
        "{logged}"
    );
    let after = counts(&cli);
    assert_eq!(
        (after[0], after[1]),
        (before[0] + 1, before[1]),
        "{after:?}"
    );
    let keys = cli.json(&["apikeys", "list"]);
    let minted = keys["api_keys"]
        .as_array()
        .expect("keys")
        .iter()
        .find(|k| k["name"] == "login")
        .cloned()
        .unwrap_or_else(|| panic!("no login key: {keys}"));
    let expires: chrono::DateTime<chrono::Utc> = minted["expires_at"]
        .as_str()
        .unwrap_or_else(|| panic!("no expiry: {minted}"))
        .parse()
        .expect("a timestamp");
    let days = (expires - chrono::Utc::now()).num_hours() as f64 / 24.0;
    assert!((29.9..=30.1).contains(&days), "expires in {days} days");
    assert!(cli.ok(&["apikeys", "list"]).contains("EXPIRES"));
    let switched = cli.json(&["projects", "switch", "Beta"]);
    assert!(switched["expires_at"].is_string(), "{switched}");

    // Past its expiry the key is refused, and the next key minted for its project prunes it.
    let login_key = str_of(&logged["projects"][0], "api_key").to_string();
    let login_id = str_of(&minted, "id").to_string();
    let mut db = catalog(&s).await;
    sqlx::query("UPDATE api_keys SET expires_at = now() - interval '1 second' WHERE id = $1")
        .bind(&login_id)
        .execute(&mut db)
        .await
        .expect("expire the key");
    let (st, body) = get(&s, "/projects", &login_key).await;
    assert_eq!(st, 401, "an expired key: {body}");
    cli.ok(&alpha);
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM api_keys WHERE id = $1")
        .bind(&login_id)
        .fetch_one(&mut db)
        .await
        .expect("count");
    assert_eq!(left, 0, "the expired key was pruned");
}

#[tokio::test]
async fn cli_messages_name_commands_and_say_each_cause_once() {
    let s = start().await;
    let home = tempfile::tempdir().expect("home");
    let cli = Cli {
        home: home.path(),
        api_url: &s.api_url,
        key: None,
    };
    let signup = [
        "signup",
        "--email",
        "bob@example.com",
        "--password",
        "correct-horse",
    ];
    cli.ok(&signup);
    let err = cli.fails(&signup);
    assert!(
        err.contains("`tdb login`") && !err.contains("POST /login"),
        "{err}"
    );

    // An API URL without its scheme.
    let bare = s.api_url.trim_start_matches("http://");
    let schemeless = Cli {
        api_url: bare,
        ..cli
    };
    let err = schemeless.fails(&["projects", "list"]);
    assert!(
        err.contains("http://") && !err.contains("builder error"),
        "{err}"
    );

    // Nothing listening: the cause is said once.
    let port = tdb_testkit::free_port().expect("port");
    let url = format!("http://127.0.0.1:{port}");
    let unreachable = Cli {
        api_url: &url,
        ..cli
    };
    let err = unreachable.fails(&["projects", "list"]);
    assert!(err.contains("cannot reach the tdb API"), "{err}");
    assert!(
        err.matches("error sending request").count() <= 1
            && err.matches("Connection refused").count() == 1,
        "{err}"
    );

    // `serve --help` lists serve's flags only.
    let help = cli.ok(&["serve", "--help"]);
    assert!(help.contains("--pg-listen"), "{help}");
    for client_flag in ["--api-key", "--api-url", "--json"] {
        assert!(
            !help.contains(client_flag),
            "serve lists {client_flag}: {help}"
        );
    }
}

#[tokio::test]
async fn a_closed_pipe_ends_the_cli_quietly() {
    let s = start().await;
    let key = workspace(&s, "pipe@example.com").await;
    let home = tempfile::tempdir().expect("home");
    // `tdb workspaces schema myapp | head -0`: the reader is gone before the first write.
    let mut child = std::process::Command::new(bin())
        .args(["workspaces", "schema", "myapp"])
        .env_clear()
        .env("HOME", home.path())
        .env("TDB_API_URL", &s.api_url)
        .env("TDB_API_KEY", &key)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run tdb");
    drop(child.stdout.take());
    let mut err = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err)
        .expect("read stderr");
    let status = child.wait().expect("wait");
    assert!(err.is_empty(), "{status}: {err}");
}

#[tokio::test]
async fn dry_runs_are_marked_as_such() {
    let s = start().await;
    let key = tenant(&s, "dry@example.com").await;
    ws_query(&s, &key, "myapp", "ALTER TABLE users ADD COLUMN email text").await;
    let tried = deploy(
        &s,
        &key,
        json!({"blueprint_name": "myapp", "dry_run": true}),
    )
    .await;
    let id = str_of(&tried, "id");
    let done = deploy(&s, &key, json!({"blueprint_name": "myapp"})).await;
    assert_eq!(done["status"], "completed", "{done}");
    let home = tempfile::tempdir().expect("home");
    let cli = Cli {
        home: home.path(),
        api_url: &s.api_url,
        key: Some(&key),
    };
    let list = cli.ok(&["deployments", "list"]);
    let row = list.lines().find(|l| l.contains(id)).unwrap_or_default();
    assert!(row.contains("dry run"), "{list}");
    assert!(cli.ok(&["deployments", "status", id]).contains("dry run"));
    let history = cli.json(&["tenants", "deployments", "acme"]);
    let runs = history["deployments"].as_array().expect("deployments");
    let dry = runs
        .iter()
        .find(|d| d["deployment_id"] == id)
        .expect("the dry run");
    assert_eq!(dry["dry_run"], true, "{history}");
    let real = runs
        .iter()
        .find(|d| d["deployment_id"] != id)
        .expect("the deployment");
    assert_eq!(real["dry_run"], false, "{history}");
    let table = cli.ok(&["tenants", "deployments", "acme"]);
    let row = table.lines().find(|l| l.contains(id)).unwrap_or_default();
    assert!(row.contains("dry run"), "{table}");
    let real = str_of(&done, "id");
    let row = table.lines().find(|l| l.contains(real)).unwrap_or_default();
    assert!(!row.is_empty() && !row.contains("dry run"), "{table}");
}

#[tokio::test]
async fn settings_say_they_need_no_deployment() {
    let s = start().await;
    let key = tenant(&s, "set@example.com").await;
    let patch = r#"{"max_rows_per_query": 2}"#;
    let (st, saved) = call(
        &s,
        Method::PATCH,
        "/workspaces/myapp/settings",
        Some(&key),
        Some(patch),
    )
    .await;
    assert_eq!(st, 200, "{saved}");
    assert_eq!(saved["pending_deploy"], false, "{saved}");
    assert!(
        str_of(&saved, "message").contains("no deployment"),
        "{saved}"
    );
    // And indeed the tenant follows them at once, with no deployment.
    let query = json!({"blueprint": "myapp", "tenant_id": "acme",
                       "query": "SELECT g FROM generate_series(1, 10) g"});
    let (st, rows) = post(&s, "/admin/query", Some(&key), query).await;
    assert_eq!(
        (st, rows["rows"].as_array().map(Vec::len)),
        (200, Some(2)),
        "{rows}"
    );
}

#[tokio::test]
async fn a_suspended_tenant_says_so_and_how_to_resume_it() {
    let s = start().await;
    let key = tenant(&s, "sus@example.com").await;
    let (st, _) = post(&s, "/tenants/acme/suspend", Some(&key), json!({})).await;
    assert_eq!(st, 200);
    let all = json!({"blueprint": "myapp", "all_tenants": true, "query": "SELECT 1"});
    let (st, answer) = post(&s, "/admin/query", Some(&key), all).await;
    assert_eq!(st, 200, "{answer}");
    let error = str_of(&answer["results"][0], "error");
    assert!(
        error.contains("suspended") && error.contains("resume"),
        "{error}"
    );
    let home = tempfile::tempdir().expect("home");
    let cli = Cli {
        home: home.path(),
        api_url: &s.api_url,
        key: Some(&key),
    };
    let all = cli.ok(&["query", "--blueprint", "myapp", "--all", "SELECT 1"]);
    assert!(all.contains("`tdb tenants resume acme`"), "{all}");
    let err = cli.fails(&[
        "query",
        "--blueprint",
        "myapp",
        "--tenant",
        "acme",
        "SELECT 1",
    ]);
    assert!(
        err.contains("suspended") && err.contains("`tdb tenants resume acme`"),
        "{err}"
    );
}

#[tokio::test]
async fn a_failed_backup_hides_the_server_address_and_roles() {
    let s = start().await;
    let key = tenant(&s, "bak@example.com").await;
    // The tenant's owner role may no longer log in: the dump cannot connect.
    let mut db = catalog(&s).await;
    let owner: String = sqlx::query_scalar("SELECT owner_role FROM tenant_databases")
        .fetch_one(&mut db)
        .await
        .expect("owner role");
    let admin = s.managed_admin_url("postgres").expect("admin url");
    let mut server = sqlx::PgConnection::connect(&admin).await.expect("admin");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "ALTER ROLE \"{owner}\" NOLOGIN"
    )))
    .execute(&mut server)
    .await
    .expect("nologin");
    let (st, started) = post(&s, "/tenants/acme/backup", Some(&key), json!({})).await;
    assert_eq!(st, 200, "{started}");
    let mut failed = Value::Null;
    for _ in 0..600 {
        let (_, list) = get(&s, "/tenants/acme/backups", &key).await;
        if let Some(b) = list["backups"].as_array().and_then(|b| b.first())
            && b["status"] != "pending"
        {
            failed = b.clone();
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(failed["status"], "failed", "{failed}");
    let error = str_of(&failed, "error");
    for internal in [owner.as_str(), ".s.PGSQL", "socket", "tdb-data", "servers/"] {
        assert!(!error.contains(internal), "{internal} in: {error}");
    }
    assert!(error.contains("not permitted to log in"), "{error}");
    assert!(
        s.log_tail().contains(&owner),
        "the log keeps the whole message"
    );
}

#[tokio::test]
async fn mcp_without_accept_answers_json_rpc() {
    let s = start().await;
    let key = str_of(&signup(&s, "mcp@example.com", "Alpha").await, "api_key").to_string();
    let request = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"});
    let resp = reqwest::Client::new()
        .post(format!("{}/mcp", s.api_url))
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .body(request.to_string())
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status().as_u16(), 406);
    let kind = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let text = resp.text().await.expect("body");
    assert!(kind.starts_with("application/json"), "{kind}: {text}");
    let body: Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(body["jsonrpc"], "2.0", "{body}");
    assert!(body["error"]["code"].is_i64(), "{body}");
    assert!(
        str_of(&body["error"], "message").contains("Accept"),
        "{body}"
    );
}

#[tokio::test]
async fn a_redirected_log_has_no_colour_codes() {
    // An empty NO_COLOR asks for nothing (no-color.org); the log is a file, not a terminal.
    let s = start_with_env(&[("NO_COLOR", "")]).await;
    signup(&s, "log@example.com", "Alpha").await;
    let log = std::fs::read_to_string(s.log_path()).expect("log");
    assert!(log.contains("INFO"), "{log}");
    assert!(!log.contains('\u{1b}'), "escape codes in the log:\n{log}");
}

/// The shell blocks of the README's quickstart (from its heading to the next `## `), in order.
fn quickstart_blocks(readme: &str) -> Vec<String> {
    let start = readme
        .find("## Five-minute quickstart")
        .expect("the quickstart heading");
    let section = &readme[start..];
    let end = section[3..]
        .find("\n## ")
        .map_or(section.len(), |at| at + 3);
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in section[..end].lines() {
        match (&mut current, line.trim_end()) {
            (None, "```sh") => current = Some(String::new()),
            (Some(_), "```") => blocks.extend(current.take()),
            (Some(block), text) => {
                block.push_str(text);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

#[tokio::test]
async fn the_readme_quickstart_runs_as_written() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"))
        .expect("README.md");
    let blocks = quickstart_blocks(&readme);
    assert!(blocks.len() > 10, "{blocks:?}");
    // The first block starts the server; the harness starts it here, on free ports.
    assert_eq!(blocks[0].trim(), "./target/release/tdb serve");
    // Archives that switch segments every 2 s: the recovery blocks wait for a window, which
    // then follows within seconds instead of a minute.
    let s = start_with_env(&[
        ("TDB_PITR_ARCHIVE_TIMEOUT_SECS", "2"),
        ("TDB_PITR_CHECK_SECS", "1"),
    ])
    .await;
    let work = tempfile::tempdir().expect("work dir");
    let home = tempfile::tempdir().expect("home");
    let path = format!(
        "{}:{}",
        bin().parent().expect("bin dir").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    // Every block in one shell, as a reader pastes them; any failing command (curl included:
    // an HTTP error fails it) stops the run, and the trace shows which.
    let script = format!(
        "set -euxo pipefail\ncurl() {{ command curl --fail-with-body \"$@\"; }}\n{}",
        blocks[1..].join("\n")
    );
    let run = tokio::process::Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(work.path())
        .env_clear()
        .env("HOME", home.path())
        .env("PATH", path)
        .env("TDB_API_URL", &s.api_url)
        .env("TDB_DATA_DIR", s.data_dir())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(600), run)
        .await
        .expect("the quickstart finishes within 10 minutes")
        .expect("bash runs");
    let tail = |text: &[u8]| {
        let text = String::from_utf8_lossy(text);
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    };
    assert!(
        out.status.success(),
        "the quickstart failed ({}):\n--- stderr (end) ---\n{}\n--- stdout (end) ---\n{}",
        out.status,
        tail(&out.stderr),
        tail(&out.stdout)
    );
}
