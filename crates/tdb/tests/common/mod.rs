//! Shared helpers of the integration tests: a real `tdb serve` and raw HTTP calls that return
//! the status and the JSON body, so tests check the envelope exactly as a client sees it.

#![allow(dead_code)]

use std::path::Path;

use reqwest::Method;
use serde_json::Value;
use tdb_testkit::TdbServer;

pub fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_tdb"))
}

pub async fn start() -> TdbServer {
    TdbServer::start(bin()).await.expect("tdb serve starts")
}

/// One HTTP call: `(status, body)`. `body` is sent raw (so tests can send broken JSON). The
/// body must be tdb's envelope, or AutoDB's error shape for an `/api/v1` error.
pub async fn call(
    server: &TdbServer,
    method: Method,
    path: &str,
    key: Option<&str>,
    body: Option<&str>,
) -> (u16, Value) {
    let (status, json) = raw_call(server, method, path, key, body).await;
    if path.starts_with("/api/v1/") && status >= 400 {
        assert_autodb_error(status, &json);
    } else {
        assert_envelope(status, &json);
    }
    (status, json)
}

/// [`call`] without any assumption about the body's shape (beyond being JSON).
pub async fn raw_call(
    server: &TdbServer,
    method: Method,
    path: &str,
    key: Option<&str>,
    body: Option<&str>,
) -> (u16, Value) {
    let client = reqwest::Client::new();
    let mut req = client.request(method, format!("{}{}", server.api_url, path));
    if let Some(key) = key {
        req = req.bearer_auth(key);
    }
    if let Some(body) = body {
        req = req
            .header("content-type", "application/json")
            .body(body.to_string());
    }
    let resp = req.send().await.expect("request sent");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body read");
    let json: Value =
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("{path}: body is not JSON: {text}"));
    (status, json)
}

/// An `/api/v1` error in AutoDB's shape: `error: {code, message, details}`, the code in upper
/// case, with the envelope's `success` and `http_status`.
pub fn assert_autodb_error(status: u16, body: &Value) {
    assert_eq!(body["http_status"], status, "envelope status: {body}");
    assert_eq!(body["success"], false, "envelope success: {body}");
    let code = body["error"]["code"].as_str().unwrap_or_default();
    assert!(
        !code.is_empty() && code == code.to_ascii_uppercase(),
        "error code: {body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "error message: {body}"
    );
}

/// Every answer carries the envelope, consistent with the HTTP status.
pub fn assert_envelope(status: u16, body: &Value) {
    assert_eq!(body["http_status"], status, "envelope status: {body}");
    assert_eq!(body["success"], status < 400, "envelope success: {body}");
    assert!(body["code"].is_string(), "envelope code: {body}");
    if status >= 400 {
        assert!(
            body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "error message: {body}"
        );
    }
}

pub async fn get(s: &TdbServer, path: &str, key: &str) -> (u16, Value) {
    call(s, Method::GET, path, Some(key), None).await
}

pub async fn post(s: &TdbServer, path: &str, key: Option<&str>, body: Value) -> (u16, Value) {
    call(s, Method::POST, path, key, Some(&body.to_string())).await
}

pub async fn delete(s: &TdbServer, path: &str, key: &str) -> (u16, Value) {
    call(s, Method::DELETE, path, Some(key), None).await
}

/// Signs up `email` and returns the body (api_key, project_id, proxy_password).
pub async fn signup(s: &TdbServer, email: &str, project: &str) -> Value {
    let (status, body) = post(
        s,
        "/signup",
        None,
        serde_json::json!({ "email": email, "password": "correct-horse", "project_name": project }),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    body
}

pub fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("no string '{key}' in {v}"))
}

/// Starts `tdb serve` with extra environment variables.
pub async fn start_with_env(env: &[(&str, &str)]) -> TdbServer {
    let options = tdb_testkit::ServeOptions {
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    };
    TdbServer::start_with(bin(), options)
        .await
        .expect("tdb serve starts")
}

/// How many databases the managed server holds, as its administrator sees them.
pub async fn database_count(s: &TdbServer) -> i64 {
    use sqlx::Connection;
    let url = s.managed_admin_url("postgres").expect("admin url");
    let mut conn = sqlx::PgConnection::connect(&url)
        .await
        .expect("admin connect");
    sqlx::query_scalar("SELECT count(*) FROM pg_database")
        .fetch_one(&mut conn)
        .await
        .expect("count databases")
}

/// The `tdb` binary run as a user would: a home of its own (for the config file), the API URL
/// and, when given, the API key in the environment, nothing else inherited but PATH.
pub struct Cli<'a> {
    pub home: &'a Path,
    pub api_url: &'a str,
    pub key: Option<&'a str>,
}

impl Cli<'_> {
    pub fn run(&self, args: &[&str]) -> std::process::Output {
        let mut command = std::process::Command::new(bin());
        command
            .args(args)
            .env_clear()
            .env("HOME", self.home)
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("TDB_API_URL", self.api_url);
        if let Some(key) = self.key {
            command.env("TDB_API_KEY", key);
        }
        command.output().expect("run tdb")
    }

    /// Runs and expects success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "tdb {args:?} failed: {}{stdout}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    /// Runs with `--json` and parses stdout.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        let text = self.ok(&all);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{args:?}: {e}: {text}"))
    }

    /// Runs and expects failure; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(!out.status.success(), "tdb {args:?} should fail");
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

/// Signs `email` up (project `project`) and creates the tenant-mode PostgreSQL workspace
/// `workspace`; returns the account's API key.
pub async fn account_with_blueprint(
    s: &TdbServer,
    email: &str,
    project: &str,
    workspace: &str,
) -> String {
    let key = str_of(&signup(s, email, project).await, "api_key").to_string();
    let body = serde_json::json!({"name": workspace, "database": "PostgreSQL", "mode": "tenant"});
    let (st, answer) = post(s, "/workspaces", Some(&key), body).await;
    assert_eq!(st, 201, "{answer}");
    key
}

/// Runs `sql` in `workspace`, which must succeed.
pub async fn ws_query(s: &TdbServer, key: &str, workspace: &str, sql: &str) {
    let body = serde_json::json!({ "query": sql });
    let path = format!("/workspaces/{workspace}/queries");
    let (st, answer) = post(s, &path, Some(key), body).await;
    assert_eq!(st, 200, "{sql}: {answer}");
}

/// Deploys `blueprint`'s pending changes and waits until the deployment has finished; returns
/// the finished deployment.
pub async fn deploy_and_wait(s: &TdbServer, key: &str, blueprint: &str) -> Value {
    let body = serde_json::json!({ "blueprint_name": blueprint });
    let (st, created) = post(s, "/deployments", Some(key), body).await;
    assert_eq!(st, 201, "{created}");
    let path = format!("/deployments/{}", str_of(&created, "id"));
    for _ in 0..1200 {
        let (st, d) = get(s, &path, key).await;
        assert_eq!(st, 200, "{d}");
        if d["status"] != "pending" && d["status"] != "in_progress" {
            return d;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("deployment {path} did not finish\n{}", s.log_tail());
}

/// Creates tenant `tenant` on `blueprint`; returns its connection string through the proxy
/// (plaintext, which loopback may use).
pub async fn create_tenant_url(s: &TdbServer, key: &str, blueprint: &str, tenant: &str) -> String {
    let body = serde_json::json!({"tenant_id": tenant, "databases": [{"blueprint": blueprint}]});
    let (st, t) = post(s, "/tenants", Some(key), body).await;
    assert_eq!(st, 201, "{t}");
    str_of(&t["databases"][0]["connection"], "connection_string")
        .replace("sslmode=require", "sslmode=disable")
}

/// Where `scripts/test-clients.sh` put the Python and Node clients.
pub fn clients_dir() -> std::path::PathBuf {
    std::env::var_os("TDB_TEST_CLIENTS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-clients"))
}

/// `python3 -c script url` with the test clients (psycopg, asyncpg) on its path.
pub fn python(script: &str, url: &str) -> std::process::Command {
    let dir = clients_dir().join("python");
    let mut command = std::process::Command::new("python3");
    command.env("PYTHONPATH", &dir).args(["-c", script, url]);
    command
}

/// Runs a client program, which must succeed; returns its standard output, trimmed.
pub fn run_client(mut command: std::process::Command, what: &str) -> String {
    let out = command
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    let text = |b: &[u8]| String::from_utf8_lossy(b).trim().to_string();
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        text(&out.stderr),
        text(&out.stdout)
    );
    text(&out.stdout)
}

/// A new account (`email`) with the blueprint `app` (one table, `items`) deployed and its
/// tenant `acme`; returns the API key and acme's connection string through the proxy
/// (plaintext, which loopback may use).
pub async fn account_with_tenant(s: &TdbServer, email: &str) -> (String, String) {
    let key = account_with_blueprint(s, email, "Tenants", "app").await;
    ws_query(s, &key, "app", "CREATE TABLE items (id int)").await;
    let d = deploy_and_wait(s, &key, "app").await;
    assert_eq!(d["status"], "completed", "{d}");
    let url = create_tenant_url(s, &key, "app", "acme").await;
    (key, url)
}

/// A TCP connection to 127.0.0.1:`port` from the loopback address `local` (each test its own
/// address, so per-address limits and bans stay apart).
pub async fn connect_from(local: [u8; 4], port: u16) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind(std::net::SocketAddr::from((local, 0)))
        .expect("bind source address");
    socket
        .connect(std::net::SocketAddr::from(([127, 0, 0, 1], port)))
        .await
        .expect("connect")
}

/// Logs in to the proxy on `port` from the loopback address `local` as a client would (a
/// startup packet for an unknown user) and returns what the proxy answers first, as text: an
/// authentication request (`R…`) when the address may connect, its refusal otherwise, or
/// nothing when it closes the connection unanswered.
pub async fn proxy_greeting(port: u16, local: [u8; 4]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = connect_from(local, port).await;
    let mut startup = Vec::new();
    startup.extend_from_slice(&196_608u32.to_be_bytes());
    for part in ["user", "nobody", "database", "nothing", ""] {
        startup.extend_from_slice(part.as_bytes());
        startup.push(0);
    }
    let mut packet = ((startup.len() + 4) as u32).to_be_bytes().to_vec();
    packet.extend_from_slice(&startup);
    if stream.write_all(&packet).await.is_err() {
        return String::new();
    }
    let mut buf = vec![0u8; 512];
    let wait = std::time::Duration::from_secs(2);
    match tokio::time::timeout(wait, stream.read(&mut buf)).await {
        Ok(Ok(n)) => String::from_utf8_lossy(&buf[..n]).into_owned(),
        _ => String::new(),
    }
}

/// psql -c `sql` with `PGOPTIONS` set to `options`: `Ok(stdout)` or `Err(stderr)`, trimmed.
pub fn psql_with_options(url: &str, options: &str, sql: &str) -> Result<String, String> {
    let out = std::process::Command::new("psql")
        .args(["-X", "-v", "ON_ERROR_STOP=1", "-At", url, "-c", sql])
        .env("PGOPTIONS", options)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("psql runs");
    let text = |b: &[u8]| String::from_utf8_lossy(b).trim().to_string();
    if out.status.success() {
        Ok(text(&out.stdout))
    } else {
        Err(text(&out.stderr))
    }
}

/// Switches the workspace `app` of `key` (and its tenants) to transaction pooling, with the
/// other settings in `more`, and waits until new sessions on `url` follow it (LISTEN is refused
/// only there).
pub async fn transaction_pooling(s: &TdbServer, key: &str, url: &str, more: Value) {
    let mut body = serde_json::json!({"pool_mode": "transaction"});
    if let (Some(all), Value::Object(extra)) = (body.as_object_mut(), more) {
        all.extend(extra);
    }
    let (st, reply) = call(
        s,
        Method::PATCH,
        "/workspaces/app/settings",
        Some(key),
        Some(&body.to_string()),
    )
    .await;
    assert_eq!(st, 200, "{reply}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !psql_with_options(url, "", "LISTEN probe")
        .is_err_and(|e| e.contains("transaction pooling"))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "sessions never switched to transaction pooling"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// The Prometheus metrics `tdb serve` exposes on `listen` (`TDB_METRICS_LISTEN`).
pub async fn metrics_text(listen: &str) -> String {
    reqwest::get(format!("http://{listen}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text")
}

/// Polls `path` until `done` holds of its body (two minutes at most), failing with the body and
/// the server's log otherwise.
pub async fn wait_for(
    s: &TdbServer,
    key: &str,
    path: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let started = std::time::Instant::now();
    loop {
        let (st, body) = get(s, path, key).await;
        assert_eq!(st, 200, "{body}");
        if done(&body) {
            return body;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(120),
            "{path} never got there: {body}\n{}",
            s.log_tail()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
