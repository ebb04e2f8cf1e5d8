//! The MCP server against a real `tdb serve`, through rmcp's own client: over stdio (a spawned
//! `tdb mcp`) and over streamable HTTP (`/mcp` with a bearer key). Tools are listed, real work
//! is done with them (tables created, rows written and read back), API errors and bad
//! arguments come back as tool errors, and `/mcp` refuses requests without a key.

mod common;

use std::path::Path;
use std::process::Stdio;

use common::*;
use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::{RoleClient, RunningService};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use serde_json::{Value, json};
use tdb_testkit::TdbServer;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

type McpClient = RunningService<RoleClient, ()>;

const TOOLS: [&str; 26] = [
    "provision_database",
    "list_provisioned_databases",
    "delete_provisioned_database",
    "register_connection",
    "list_connections",
    "get_connection",
    "delete_connection",
    "introspect_connection",
    "query_connection",
    "list_workspaces",
    "create_workspace",
    "get_workspace",
    "get_workspace_schema",
    "query_workspace",
    "list_tenants",
    "create_tenant",
    "get_tenant",
    "backup_tenant",
    "recover_tenant",
    "recover_undo",
    "list_tenant_backups",
    "tenant_logs",
    "list_deployments",
    "create_deployment",
    "get_deployment",
    "admin_query",
];

/// `tdb mcp` as an MCP client starts it: a child process configured by environment only.
fn mcp_command(s: &TdbServer, key: Option<&str>, home: &Path) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(bin());
    cmd.arg("mcp")
        .env_clear()
        .env("HOME", home)
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("TDB_API_URL", &s.api_url);
    if let Some(key) = key {
        cmd.env("TDB_API_KEY", key);
    }
    cmd
}

async fn stdio_client(s: &TdbServer, key: &str, home: &Path) -> McpClient {
    let transport = TokioChildProcess::new(mcp_command(s, Some(key), home)).expect("spawn");
    ().serve(transport).await.expect("MCP handshake over stdio")
}

async fn http_client(s: &TdbServer, key: &str) -> McpClient {
    let config = StreamableHttpClientTransportConfig::with_uri(format!("{}/mcp", s.api_url))
        .auth_header(key);
    let transport = StreamableHttpClientTransport::from_config(config);
    ().serve(transport).await.expect("MCP handshake over HTTP")
}

async fn call(client: &McpClient, tool: &'static str, args: Value) -> CallToolResult {
    let args = args.as_object().cloned().expect("arguments are an object");
    client
        .call_tool(CallToolRequestParams::new(tool).with_arguments(args))
        .await
        .unwrap_or_else(|e| panic!("{tool}: a protocol error instead of a result: {e}"))
}

/// The structured result of a call that must succeed.
async fn ok(client: &McpClient, tool: &'static str, args: Value) -> Value {
    let result = call(client, tool, args).await;
    assert_ne!(result.is_error, Some(true), "{tool} failed: {result:?}");
    result
        .structured_content
        .unwrap_or_else(|| panic!("{tool}: no structured content"))
}

/// The structured error of a call that must fail as a tool error.
async fn tool_error(client: &McpClient, tool: &'static str, args: Value) -> Value {
    let result = call(client, tool, args).await;
    assert_eq!(
        result.is_error,
        Some(true),
        "{tool} should fail: {result:?}"
    );
    let text = result.content[0].as_text().expect("text").text.clone();
    let detail = result.structured_content.unwrap_or(Value::Null);
    json!({ "text": text, "detail": detail })
}

async fn assert_lists_every_tool(client: &McpClient) {
    let tools = client.list_all_tools().await.expect("tools/list");
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    for tool in TOOLS {
        assert!(names.contains(&tool), "{tool} missing from {names:?}");
    }
    let query = tools
        .iter()
        .find(|t| t.name == "query_connection")
        .expect("query_connection");
    assert_eq!(
        query.input_schema["required"],
        json!(["connection_id", "query"]),
        "{:?}",
        query.input_schema
    );
}

/// Creates a workspace, and a table in it, writes rows and reads them back, all through tools.
async fn workspace_round_trip(client: &McpClient, name: &str) {
    let created = ok(
        client,
        "create_workspace",
        json!({ "name": name, "database": "PostgreSQL", "mode": "control" }),
    )
    .await;
    assert_eq!(created["id"], name, "{created}");
    assert!(created["connection_string"].is_string(), "{created}");
    let listed = ok(client, "list_workspaces", json!({})).await;
    assert!(
        listed["workspaces"]
            .as_array()
            .expect("workspaces")
            .iter()
            .any(|w| w["name"] == name),
        "{listed}"
    );
    for sql in [
        "CREATE TABLE notes (id int PRIMARY KEY, body text NOT NULL)",
        "INSERT INTO notes VALUES (1, 'hello'), (2, 'world')",
    ] {
        ok(
            client,
            "query_workspace",
            json!({ "workspace": name, "query": sql }),
        )
        .await;
    }
    let rows = ok(
        client,
        "query_workspace",
        json!({ "workspace": name, "query": "SELECT id, body FROM notes ORDER BY id" }),
    )
    .await;
    assert_eq!(rows["columns"], json!(["id", "body"]), "{rows}");
    assert_eq!(rows["rows"], json!([[1, "hello"], [2, "world"]]), "{rows}");
    let schema = ok(client, "get_workspace_schema", json!({ "workspace": name })).await;
    assert!(schema.to_string().contains("notes"), "{schema}");
}

#[tokio::test]
async fn workspace_tools_over_stdio_and_http() {
    tdb_testkit::init();
    let s = start().await;
    let key = signup(&s, "mcp-ws@example.com", "mcp").await["api_key"]
        .as_str()
        .expect("api_key")
        .to_string();
    let home = tempfile::tempdir().expect("home");

    let stdio = stdio_client(&s, &key, home.path()).await;
    let info = stdio.peer_info().expect("server info");
    let server = info.server_info.as_ref().expect("server_info");
    assert_eq!(server.name, "tdb");
    assert_lists_every_tool(&stdio).await;
    workspace_round_trip(&stdio, "mcp_stdio").await;
    stdio.cancel().await.expect("close stdio");

    let http = http_client(&s, &key).await;
    assert_lists_every_tool(&http).await;
    workspace_round_trip(&http, "mcp_http").await;
    // What one transport did, the other sees: both act for the same project.
    let listed = ok(&http, "list_workspaces", json!({})).await;
    assert_eq!(listed["count"], 2, "{listed}");
    http.cancel().await.expect("close http");
}

#[tokio::test]
async fn errors_are_tool_errors_and_mcp_needs_a_key() {
    tdb_testkit::init();
    let s = start().await;
    let key = signup(&s, "mcp-err@example.com", "mcp").await["api_key"]
        .as_str()
        .expect("api_key")
        .to_string();

    // Without a key, or with a wrong one, /mcp answers like the API, before any MCP handling.
    let init = json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": { "protocolVersion": "2025-06-18", "capabilities": {},
                    "clientInfo": { "name": "t", "version": "1" } }
    });
    let (status, body) = post(&s, "/mcp", None, init.clone()).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("auth_required"))
    );
    let (status, body) = post(&s, "/mcp", Some("tdb_not_a_key"), init).await;
    assert_eq!((status, body["code"].as_str()), (401, Some("unauthorized")));

    let http = http_client(&s, &key).await;
    // An API error: the API's code and message, as a tool error.
    let e = tool_error(
        &http,
        "query_workspace",
        json!({ "workspace": "nope", "query": "SELECT 1" }),
    )
    .await;
    assert_eq!(e["detail"]["code"], "not_found", "{e}");
    assert_eq!(e["detail"]["http_status"], 404, "{e}");
    assert!(
        e["text"]
            .as_str()
            .is_some_and(|t| t.starts_with("not_found (HTTP 404)"))
    );
    // The API's validation too.
    let e = tool_error(
        &http,
        "create_workspace",
        json!({ "name": "Bad Name", "database": "PostgreSQL", "mode": "control" }),
    )
    .await;
    assert_eq!(e["detail"]["code"], "bad_request", "{e}");
    // Arguments that do not fit the tool's schema are tool errors too, naming the problem.
    let e = tool_error(
        &http,
        "query_workspace",
        json!({ "workspace": 5, "query": "SELECT 1" }),
    )
    .await;
    assert!(
        e["text"]
            .as_str()
            .is_some_and(|t| t.contains("invalid type")),
        "{e}"
    );
    let e = tool_error(&http, "get_tenant", json!({})).await;
    assert!(
        e["text"].as_str().is_some_and(|t| t.contains("tenant_id")),
        "{e}"
    );
    // An unknown tool is the one protocol error.
    let unknown = http
        .call_tool(CallToolRequestParams::new("no_such_tool"))
        .await;
    assert!(unknown.is_err(), "{unknown:?}");
    http.cancel().await.expect("close http");
}

/// `tdb mcp` writes nothing but JSON-RPC to stdout, even when it has something to warn about
/// (here: no API key, which makes every tool call a tool error).
#[tokio::test]
async fn stdio_without_a_key_keeps_stdout_for_mcp() {
    tdb_testkit::init();
    let s = start().await;
    let home = tempfile::tempdir().expect("home");
    let mut child = mcp_command(&s, None, home.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tdb mcp");
    let mut stdin = child.stdin.take().expect("stdin");
    let messages = [
        json!({ "jsonrpc": "2.0", "id": 1, "method": "initialize",
                "params": { "protocolVersion": "2025-06-18", "capabilities": {},
                            "clientInfo": { "name": "t", "version": "1" } } }),
        json!({ "jsonrpc": "2.0", "method": "notifications/initialized" }),
        json!({ "jsonrpc": "2.0", "id": 2, "method": "tools/call",
                "params": { "name": "list_workspaces", "arguments": {} } }),
    ];
    for m in &messages {
        stdin
            .write_all(format!("{m}\n").as_bytes())
            .await
            .expect("write");
    }
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut answers = Vec::new();
    while answers.len() < 2 {
        let line = lines.next_line().await.expect("read").expect("a line");
        let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert_eq!(v["jsonrpc"], "2.0", "{line}");
        answers.push(v);
    }
    drop(stdin);
    let out = child.wait_with_output().await.expect("tdb mcp exits");
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout.is_empty() || serde_json::from_slice::<Value>(&out.stdout).is_ok());
    assert_eq!(answers[0]["result"]["serverInfo"]["name"], "tdb");
    assert_eq!(answers[1]["result"]["isError"], true, "{}", answers[1]);
    assert_eq!(
        answers[1]["result"]["structuredContent"]["code"], "auth_required",
        "{}",
        answers[1]
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no API key"), "{stderr}");
}

/// A provisioned database, worked on through MCP: provisioned, queried with its own role
/// (a table created, rows written and read back), registered again as an external connection
/// and read through that, introspected, deleted; the account's limit comes back as a tool error
/// with its numbers.
#[tokio::test]
async fn provisioned_database_over_stdio_and_http() {
    tdb_testkit::init();
    // The proxy the connection strings point at is on loopback.
    let s = start_with_env(&[("TDB_CONNECTIONS_ALLOW_PRIVATE", "true")]).await;
    let key = signup(&s, "mcp-prov@example.com", "mcp").await["api_key"]
        .as_str()
        .expect("api_key")
        .to_string();
    let home = tempfile::tempdir().expect("home");

    let stdio = stdio_client(&s, &key, home.path()).await;
    provisioned_round_trip(&stdio, "mcp over stdio").await;
    stdio.cancel().await.expect("close stdio");

    let http = http_client(&s, &key).await;
    provisioned_round_trip(&http, "mcp over http").await;
    let e = tool_error(&http, "provision_database", json!({ "name": "" })).await;
    assert_eq!(e["detail"]["http_status"], 422, "{e}");

    // Up to the limit, then the API's 403 with its numbers.
    let mut ids = Vec::new();
    let limit = ok(&http, "list_provisioned_databases", json!({})).await["limit"]
        .as_u64()
        .expect("limit");
    for i in 0..limit {
        let d = ok(
            &http,
            "provision_database",
            json!({ "name": format!("db{i}") }),
        )
        .await;
        ids.push(d["id"].as_str().expect("id").to_string());
    }
    let e = tool_error(&http, "provision_database", json!({ "name": "one more" })).await;
    assert_eq!(e["detail"]["code"], "forbidden", "{e}");
    assert_eq!(e["detail"]["data"]["limit"], limit, "{e}");
    assert_eq!(e["detail"]["data"]["count"], limit, "{e}");
    for id in ids {
        ok(
            &http,
            "delete_provisioned_database",
            json!({ "provision_id": id }),
        )
        .await;
    }
    http.cancel().await.expect("close http");
}

async fn provisioned_round_trip(client: &McpClient, name: &str) {
    let d = ok(client, "provision_database", json!({ "name": name })).await;
    assert_eq!(d["name"], name, "{d}");
    assert_eq!(d["status"], "active", "{d}");
    assert!(
        d["connection_string"]
            .as_str()
            .is_some_and(|c| c.starts_with("postgresql://")),
        "{d}"
    );
    let id = d["id"].as_str().expect("id").to_string();
    let conn = d["connection_id"]
        .as_str()
        .expect("connection_id")
        .to_string();

    let listed = ok(client, "list_provisioned_databases", json!({})).await;
    let ours = listed["databases"]
        .as_array()
        .expect("databases")
        .iter()
        .find(|x| x["id"] == id.as_str())
        .cloned()
        .unwrap_or_else(|| panic!("{id} not in {listed}"));
    assert!(ours.get("connection_string").is_none(), "{ours}");

    for sql in [
        "CREATE TABLE items (id int PRIMARY KEY, label text NOT NULL)",
        "INSERT INTO items VALUES (1, 'one'), (2, 'two')",
    ] {
        ok(
            client,
            "query_connection",
            json!({ "connection_id": conn, "query": sql }),
        )
        .await;
    }
    let rows = ok(
        client,
        "query_connection",
        json!({ "connection_id": conn, "query": "SELECT id, label FROM items ORDER BY id" }),
    )
    .await;
    assert_eq!(rows["columns"], json!(["id", "label"]), "{rows}");
    assert_eq!(rows["rows"], json!([[1, "one"], [2, "two"]]), "{rows}");
    assert_eq!(rows["row_count"], 2, "{rows}");

    let url = d["connection_string"].as_str().expect("connection_string");
    registered_round_trip(client, url).await;

    let tree = ok(
        client,
        "introspect_connection",
        json!({ "connection_id": conn }),
    )
    .await;
    let tables: Vec<&Value> = tree["schemas"]
        .as_array()
        .expect("schemas")
        .iter()
        .flat_map(|s| s["tables"].as_array().into_iter().flatten())
        .collect();
    let items = tables
        .iter()
        .find(|t| t["name"] == "items")
        .unwrap_or_else(|| panic!("no items table in {tree}"));
    assert_eq!(items["primary_key"], json!(["id"]), "{items}");

    let gone = ok(
        client,
        "delete_provisioned_database",
        json!({ "provision_id": id }),
    )
    .await;
    assert_eq!(gone["status"], "deleted", "{gone}");
    tool_error(
        client,
        "query_connection",
        json!({ "connection_id": conn, "query": "SELECT 1" }),
    )
    .await;
}

/// The provisioned database's URL registered as a connection of its own: never echoed back,
/// readable through it, and refused once the connection is deleted.
async fn registered_round_trip(client: &McpClient, url: &str) {
    let e = tool_error(
        client,
        "register_connection",
        json!({ "name": "again", "db_type": "oracle", "connection_string": url }),
    )
    .await;
    assert_eq!(e["detail"]["http_status"], 422, "{e}");
    assert_eq!(
        e["detail"]["detail"][0]["loc"],
        json!(["body", "db_type"]),
        "{e}"
    );

    let c = ok(
        client,
        "register_connection",
        json!({ "name": "again", "db_type": "postgresql", "connection_string": url,
                "excluded_schemas": ["audit"] }),
    )
    .await;
    let password = url
        .split_once("://")
        .and_then(|(_, rest)| rest.split_once('@'))
        .and_then(|(userinfo, _)| userinfo.split_once(':'))
        .map(|(_, p)| p)
        .expect("a password in the URL");
    assert!(!c.to_string().contains(password), "{c}");
    assert_eq!(c["excluded_schemas"], json!(["audit"]), "{c}");
    let id = c["id"].as_str().expect("id");

    let rows = ok(
        client,
        "query_connection",
        json!({ "connection_id": id, "query": "SELECT label FROM items WHERE id = 2" }),
    )
    .await;
    assert_eq!(rows["rows"], json!([["two"]]), "{rows}");
    let listed = ok(client, "list_connections", json!({})).await;
    assert!(!listed.to_string().contains(password), "{listed}");
    assert!(
        listed["connections"]
            .as_array()
            .expect("connections")
            .iter()
            .any(|x| x["id"] == id),
        "{listed}"
    );
    let gone = ok(client, "delete_connection", json!({ "connection_id": id })).await;
    assert_eq!(gone["is_active"], false, "{gone}");
    let shown = ok(client, "get_connection", json!({ "connection_id": id })).await;
    assert_eq!(shown["is_active"], false, "{shown}");
    tool_error(
        client,
        "query_connection",
        json!({ "connection_id": id, "query": "SELECT 1" }),
    )
    .await;
}
