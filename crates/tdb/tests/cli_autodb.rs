//! `tdb provision` and `tdb connections` against a real server: a database provisioned, listed,
//! queried, introspected and dropped through the CLI; a connection registered, shown, listed
//! and deactivated without its connection string ever being printed back.

mod common;

use common::*;

#[test]
fn help_names_the_verbs_and_their_flags() {
    let home = tempfile::tempdir().expect("home");
    let cli = Cli {
        home: home.path(),
        api_url: "http://127.0.0.1:9",
        key: Some("unused"),
    };
    let help = cli.ok(&["--help"]);
    for verb in ["provision", "connections", "mcp"] {
        assert!(help.contains(verb), "help lacks {verb}: {help}");
    }
    let provision = cli.ok(&["provision", "--help"]);
    for verb in ["create", "list", "delete"] {
        assert!(provision.contains(verb), "{provision}");
    }
    let connections = cli.ok(&["connections", "--help"]);
    for verb in ["add", "list", "get", "delete", "introspect", "query"] {
        assert!(connections.contains(verb), "{connections}");
    }
    let add = cli.ok(&["connections", "add", "--help"]);
    for flag in [
        "--name",
        "--db-type",
        "--connection-string",
        "--exclude-schema",
    ] {
        assert!(add.contains(flag), "{add}");
    }
    // Without a server the verbs fail with the transport's error, not a panic.
    let err = cli.fails(&["provision", "list"]);
    assert!(err.contains("cannot reach the tdb API"), "{err}");
}

#[tokio::test]
async fn provision_and_connections_through_the_cli() {
    tdb_testkit::init();
    let s = start().await;
    let key = signup(&s, "cli-autodb@example.com", "autodb").await["api_key"]
        .as_str()
        .expect("api_key")
        .to_string();
    let home = tempfile::tempdir().expect("home");
    let cli = Cli {
        home: home.path(),
        api_url: &s.api_url,
        key: Some(&key),
    };

    // Created: the connection string is printed once, with the note that says so.
    let created = cli.ok(&["provision", "create", "staging"]);
    assert!(created.contains("postgresql://"), "{created}");
    assert!(created.contains("shown once"), "{created}");
    let url = created
        .split_whitespace()
        .find(|w| w.starts_with("postgresql://"))
        .expect("connection string")
        .to_string();

    let listed = cli.json(&["provision", "list"]);
    assert_eq!(listed["data"]["count"], 1, "{listed}");
    let db = &listed["data"]["databases"][0];
    let id = db["id"].as_str().expect("id").to_string();
    let conn = db["connection_id"]
        .as_str()
        .expect("connection_id")
        .to_string();
    let table = cli.ok(&["provision", "list"]);
    assert!(table.contains("staging"), "{table}");
    assert!(
        table.contains(&format!("1 of {}", listed["data"]["limit"])),
        "{table}"
    );
    assert!(!table.contains("postgresql://"), "{table}");

    // A table made in it shows in the introspection tree.
    let client = s.client(Some(&key));
    for sql in [
        "CREATE TABLE items (id int PRIMARY KEY, label text NOT NULL)",
        "CREATE INDEX items_label ON items (label)",
    ] {
        client.query_connection(&conn, sql).await.expect("query");
    }
    cli.ok(&[
        "connections",
        "query",
        &conn,
        "INSERT INTO items VALUES (1, 'first'), (2, 'second')",
    ]);
    let rows = cli.ok(&[
        "connections",
        "query",
        &conn,
        "SELECT label FROM items ORDER BY id",
    ]);
    assert!(rows.contains("first") && rows.contains("second"), "{rows}");
    assert!(rows.contains("2 row(s)"), "{rows}");
    let tree = cli.ok(&["connections", "introspect", &conn]);
    assert!(tree.contains("items"), "{tree}");
    assert!(tree.contains("[pk]"), "{tree}");
    assert!(tree.contains("index items_label (label)"), "{tree}");

    // A registered connection is never echoed back, in tables or JSON.
    let password = url
        .split_once("://")
        .and_then(|(_, rest)| rest.split_once('@'))
        .and_then(|(userinfo, _)| userinfo.split_once(':'))
        .map(|(_, p)| p.to_string())
        .expect("password in the URL");
    let added = cli.json(&[
        "connections",
        "add",
        "--name",
        "external",
        "--db-type",
        "postgresql",
        "--connection-string",
        &url,
        "--exclude-schema",
        "audit",
    ]);
    assert!(!added.to_string().contains(&password), "{added}");
    let ext = added["data"]["id"].as_str().expect("id").to_string();
    assert_eq!(added["data"]["excluded_schemas"][0], "audit", "{added}");
    for args in [
        vec!["connections", "list"],
        vec!["connections", "get", &ext],
        vec!["connections", "list", "--json"],
    ] {
        let out = cli.ok(&args);
        assert!(out.contains("external"), "{args:?}: {out}");
        assert!(!out.contains(&password), "{args:?}: {out}");
    }
    let gone = cli.ok(&["connections", "delete", &ext]);
    assert!(gone.contains("no longer active"), "{gone}");
    let shown = cli.json(&["connections", "get", &ext]);
    assert_eq!(shown["data"]["is_active"], false, "{shown}");

    // Dropped; an unknown id is the API's error on stderr with a non-zero exit.
    let dropped = cli.ok(&["provision", "delete", &id]);
    assert!(dropped.contains("deleted"), "{dropped}");
    let err = cli.fails(&["provision", "delete", &id]);
    assert!(err.contains("not_found"), "{err}");
    assert_eq!(cli.json(&["provision", "list"])["data"]["count"], 0);
}
