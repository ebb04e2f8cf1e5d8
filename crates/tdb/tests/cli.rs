//! The CLI against a real server: the whole account flow through `tdb` commands, the config
//! file they keep, `--json` for scripts, and non-zero exits carrying the API's error.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::*;

impl Cli<'_> {
    fn saved_key(&self) -> String {
        let text =
            std::fs::read_to_string(self.home.join(".config/tdb/config.toml")).expect("config");
        let value: toml::Value = toml::from_str(&text).expect("toml");
        value["api_key"].as_str().expect("api_key").to_string()
    }
}

#[tokio::test]
async fn account_flow_through_the_cli() {
    let s = start().await;
    let home = tempfile::tempdir().expect("home");
    let cli = Cli {
        home: home.path(),
        api_url: &s.api_url,
        key: None,
    };

    assert!(cli.ok(&["--version"]).contains(env!("CARGO_PKG_VERSION")));
    let help = cli.ok(&["--help"]);
    for verb in ["serve", "signup", "login", "config", "projects", "apikeys"] {
        assert!(help.contains(verb), "help lacks {verb}");
    }
    assert!(cli.ok(&["serve", "--help"]).contains("--pg-listen"));

    // Sign-up saves the key in a private config file.
    let out = cli.ok(&[
        "signup",
        "--email",
        "alice@example.com",
        "--password",
        "correct-horse",
        "--project-name",
        "Alpha",
    ]);
    assert!(
        out.contains("api_key") && out.contains("proxy_password"),
        "{out}"
    );
    let config = home.path().join(".config/tdb/config.toml");
    let mode = std::fs::metadata(&config)
        .expect("config")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let first_key = cli.saved_key();
    let shown = cli.ok(&["config", "show"]);
    assert!(
        shown.contains(&first_key[..13]) && !shown.contains(&first_key),
        "key masked: {shown}"
    );

    // Projects.
    assert!(cli.ok(&["projects", "list"]).contains("Alpha"));
    let beta = cli.json(&["projects", "create", "Beta"]);
    assert_eq!(beta["code"], "created");
    let beta_id = beta["project_id"].as_str().expect("id").to_string();
    let list = cli.json(&["projects", "list"]);
    assert_eq!(list["count"], 2);
    cli.ok(&["projects", "switch", "Beta"]);
    let beta_key = cli.saved_key();
    assert_ne!(beta_key, first_key);
    let keys = cli.json(&["apikeys", "list"]);
    assert!(
        keys["api_keys"].as_array().is_some_and(|k| k.len() == 2),
        "Beta's keys: {keys}"
    );

    // Keys: create a read key, use it, revoke it, see it refused.
    let created = cli.json(&["apikeys", "create", "--name", "ci", "--role", "read"]);
    let read_key = created["api_key"].as_str().expect("key").to_string();
    let read_id = created["id"].as_str().expect("id").to_string();
    assert!(cli.ok(&["apikeys", "list"]).contains(&read_id));
    let err = cli.fails(&["--api-key", &read_key, "projects", "create", "Gamma"]);
    assert!(err.contains("role_required"), "{err}");
    cli.ok(&["apikeys", "delete", &read_id]);
    let err = cli.fails(&["--api-key", &read_key, "projects", "list"]);
    assert!(
        err.contains("Invalid API key") && err.contains("unauthorized"),
        "{err}"
    );

    // Errors name the field and exit non-zero.
    let err = cli.fails(&["projects", "create", "bad__name"]);
    assert!(err.contains("field 'name'"), "{err}");
    let err = cli.fails(&["apikeys", "create", "--role", "owner"]);
    assert!(err.contains("field 'role'"), "{err}");
    let err = cli.fails(&["--api-url", "http://127.0.0.1:1", "projects", "list"]);
    assert!(err.contains("cannot reach"), "{err}");

    // Login saves a fresh key of the chosen project; config set replaces it.
    let login = cli.ok(&[
        "login",
        "--email",
        "alice@example.com",
        "--password",
        "correct-horse",
        "--project",
        "Alpha",
    ]);
    assert!(login.contains("Alpha") && login.contains("Beta"), "{login}");
    let login_key = cli.saved_key();
    assert!(![first_key.as_str(), beta_key.as_str()].contains(&login_key.as_str()));
    let err = cli.fails(&[
        "login",
        "--email",
        "alice@example.com",
        "--password",
        "wrong-horse",
    ]);
    assert!(err.contains("invalid e-mail or password"), "{err}");
    cli.ok(&["config", "set", "api-key", &beta_key]);
    assert_eq!(cli.saved_key(), beta_key);

    // Delete Beta (with Alpha's key, since Beta's own key goes with it).
    cli.ok(&["--api-key", &login_key, "projects", "delete", &beta_id]);
    let list = cli.json(&["--api-key", &login_key, "projects", "list"]);
    assert_eq!(list["count"], 1);
}

#[tokio::test]
async fn workspace_flow_through_the_cli() {
    let s = start().await;
    let home = tempfile::tempdir().expect("home");
    let cli = Cli {
        home: home.path(),
        api_url: &s.api_url,
        key: None,
    };
    cli.ok(&[
        "signup",
        "--email",
        "alice@example.com",
        "--password",
        "correct-horse",
    ]);

    let created = cli.json(&[
        "workspaces",
        "create",
        "myapp",
        "--database",
        "PostgreSQL",
        "--mode",
        "tenant",
    ]);
    assert_eq!(created["blueprint"], "myapp");
    assert!(cli.ok(&["workspaces", "list"]).contains("myapp"));
    let out = cli.ok(&["workspaces", "query", "myapp",
        "CREATE TABLE users (id serial PRIMARY KEY, name text); INSERT INTO users (name) VALUES ('ann'); \
         CREATE INDEX users_name_idx ON users (name); ALTER TABLE users ADD COLUMN email text; SELECT name FROM users"]);
    assert!(
        out.contains("ann") && out.contains("captured as pending changes"),
        "{out}"
    );
    let diff = cli.json(&["workspaces", "diff", "myapp"]);
    let ids: Vec<String> = diff["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .map(|c| c["id"].to_string())
        .collect();
    assert_eq!(ids.len(), 3);
    assert!(
        cli.ok(&["workspaces", "diff-revert", "myapp", &ids[2]])
            .contains("DROP COLUMN")
    );
    assert!(
        cli.ok(&["workspaces", "diff-skip", "myapp", &ids[1]])
            .contains("removed")
    );
    assert!(
        cli.ok(&["workspaces", "diff", "myapp"])
            .contains("CREATE TABLE users")
    );
    let imported = cli.ok(&["workspaces", "import", "myapp", "--template", "blog"]);
    assert!(
        imported.contains("posts") && imported.contains("Schema imported"),
        "{imported}"
    );
    let schema = cli.ok(&["workspaces", "schema", "myapp"]);
    for table in ["users", "authors", "posts", "comments"] {
        assert!(schema.contains(table), "{table}: {schema}");
    }
    assert!(!schema.contains("email"), "the reverted column is gone");
    let settings = cli.ok(&[
        "workspaces",
        "settings",
        "myapp",
        "--max-rows-per-query",
        "2",
    ]);
    assert!(
        settings.contains("New proxy sessions of the blueprint"),
        "{settings}"
    );
    let settings = cli.ok(&[
        "workspaces",
        "settings",
        "myapp",
        "--pool-mode",
        "transaction",
    ]);
    assert!(settings.contains("transaction"), "{settings}");
    let shown = cli.ok(&["workspaces", "settings", "myapp"]);
    assert!(
        shown.contains("max_rows_per_query") && shown.contains("transaction"),
        "{shown}"
    );
    let err = cli.fails(&[
        "workspaces",
        "settings",
        "myapp",
        "--pool-mode",
        "statement",
    ]);
    assert!(
        err.contains("session") && err.contains("transaction"),
        "{err}"
    );

    // A schema from a file: the CLI reads it into typed tables before sending it.
    let file = home.path().join("labels.json");
    std::fs::write(
        &file,
        r#"{"tables": [{"name": "labels", "columns": [
            {"name": "id", "type": "serial", "primary_key": true},
            {"name": "label", "type": "text", "nullable": false}],
            "indexes": [{"columns": ["label"], "unique": true}]}]}"#,
    )
    .expect("write");
    let path = file.to_str().expect("path");
    let imported = cli.ok(&["workspaces", "import", "myapp", "--json-file", path]);
    assert!(imported.contains("labels"), "{imported}");
    let schema = cli.ok(&["workspaces", "schema", "myapp"]);
    assert!(
        schema.contains("ON public.labels USING btree (label)"),
        "{schema}"
    );
    std::fs::write(&file, r#"{"tables": [{"name": "nocolumns"}]}"#).expect("write");
    let err = cli.fails(&["workspaces", "import", "myapp", "--json-file", path]);
    assert!(err.contains("is not a list of tables"), "{err}");
    assert!(
        !cli.ok(&["workspaces", "schema", "myapp"])
            .contains("nocolumns")
    );
    let rows = cli.json(&[
        "workspaces",
        "query",
        "myapp",
        "SELECT generate_series(1, 10)",
    ]);
    assert_eq!(rows["rows"].as_array().map(Vec::len), Some(2));
    assert!(
        cli.ok(&["workspaces", "get", "myapp"])
            .contains("CREATE TABLE users")
    );
    assert!(cli.ok(&["blueprints", "list"]).contains("myapp"));
    assert_eq!(
        cli.json(&["blueprints", "get", "myapp"])["current_version"],
        0
    );
    assert_eq!(cli.json(&["blueprints", "versions", "myapp"])["count"], 0);

    let err = cli.fails(&["workspaces", "query", "myapp", "SELEC 1"]);
    assert!(err.contains("syntax error"), "{err}");
    let err = cli.fails(&["workspaces", "get", "nope"]);
    assert!(err.contains("not found"), "{err}");
    let err = cli.fails(&["workspaces", "import", "myapp", "--template", "blogg"]);
    assert!(err.contains("unknown template"), "{err}");
    let err = cli.fails(&["workspaces", "create", "x", "--database", "mongodb"]);
    assert!(err.contains("MongoDB"), "{err}");
    cli.ok(&["workspaces", "delete", "myapp"]);
    assert_eq!(cli.json(&["workspaces", "list"])["count"], 0);
}

#[tokio::test]
async fn tenant_and_deployment_flow_through_the_cli() {
    let s = start().await;
    let home = tempfile::tempdir().expect("home");
    let cli = Cli {
        home: home.path(),
        api_url: &s.api_url,
        key: None,
    };
    cli.ok(&[
        "signup",
        "--email",
        "alice@example.com",
        "--password",
        "correct-horse",
    ]);
    cli.ok(&["workspaces", "create", "fintech"]);
    cli.ok(&[
        "workspaces",
        "query",
        "fintech",
        "CREATE TABLE accounts (id serial PRIMARY KEY)",
    ]);
    let out = cli.ok(&["deployments", "create", "fintech"]);
    assert!(out.contains("completed"), "{out}");
    let created = cli.ok(&["tenants", "create", "acme", "--blueprint", "fintech"]);
    assert!(
        created.contains("fintech__acme") && created.contains("postgresql://"),
        "{created}"
    );
    cli.ok(&["tenants", "create", "globex", "--blueprint", "fintech"]);
    cli.ok(&[
        "workspaces",
        "query",
        "fintech",
        "ALTER TABLE accounts ADD COLUMN balance bigint",
    ]);
    let d = cli.json(&["deployments", "create", "fintech"]);
    assert_eq!(
        (d["status"].as_str(), d["tenants_completed"].as_i64()),
        (Some("completed"), Some(2)),
        "{d}"
    );
    let id = d["id"].as_str().expect("id").to_string();
    assert!(
        cli.ok(&["deployments", "status", &id])
            .contains("2 done, 0 failed of 2")
    );
    assert!(cli.ok(&["deployments", "list"]).contains(&id));
    let list = cli.ok(&["tenants", "list"]);
    assert!(
        list.contains("acme") && list.contains("fintech v2"),
        "{list}"
    );
    assert!(cli.ok(&["tenants", "get", "acme"]).contains("fintech v2"));
    let read = cli.ok(&["tenants", "credential", "acme", "--role", "read"]);
    assert!(read.contains("read credential t_"), "{read}");
    assert!(read.contains("/fintech__acme?sslmode=require"), "{read}");
    assert!(
        cli.fails(&["tenants", "credential", "acme", "--role", "owner"])
            .contains("role must be 'read' or 'write'")
    );
    assert!(cli.ok(&["tenants", "deployments", "acme"]).contains(&id));

    let rows = cli.ok(&[
        "query",
        "--blueprint",
        "fintech",
        "--all",
        "SELECT count(*) AS n FROM accounts",
    ]);
    assert!(rows.contains("acme") && rows.contains("globex"), "{rows}");
    cli.ok(&[
        "query",
        "--blueprint",
        "fintech",
        "--tenant",
        "acme",
        "INSERT INTO accounts (balance) VALUES (5)",
    ]);
    let one = cli.json(&[
        "query",
        "--blueprint",
        "fintech",
        "--tenant",
        "acme",
        "SELECT balance FROM accounts",
    ]);
    assert_eq!(one["rows"], serde_json::json!([[5]]));
    let err = cli.fails(&[
        "query",
        "--blueprint",
        "fintech",
        "--tenant",
        "acme",
        "DROP TABLE accounts",
    ]);
    assert!(err.contains("DDL not allowed on tenant databases"), "{err}");

    // Backup, change, list, roll back: the CLI waits for each and reports the outcome.
    let taken = cli.ok(&["tenants", "backup", "acme"]);
    assert!(
        taken.contains("postgresql/manual/") && taken.contains("_tenant_acme.sql.gz"),
        "{taken}"
    );
    let path = taken
        .split_whitespace()
        .find(|w| w.starts_with("postgresql/manual/"))
        .expect("the path")
        .to_string();
    cli.ok(&[
        "query",
        "--blueprint",
        "fintech",
        "--tenant",
        "acme",
        "UPDATE accounts SET balance = 99",
    ]);
    let listed = cli.ok(&["tenants", "backups", "acme"]);
    assert!(
        listed.contains(&path) && listed.contains("completed"),
        "{listed}"
    );
    let rolled = cli.ok(&["tenants", "rollback", "acme", &path]);
    assert!(rolled.contains("rolled back"), "{rolled}");
    let one = cli.json(&[
        "query",
        "--blueprint",
        "fintech",
        "--tenant",
        "acme",
        "SELECT balance FROM accounts",
    ]);
    assert_eq!(one["rows"], serde_json::json!([[5]]), "the backed-up value");
    assert!(
        cli.fails(&[
            "tenants",
            "rollback",
            "acme",
            "postgresql/manual/nope.sql.gz"
        ])
        .contains("has no backup")
    );

    // The query log and metrics of what ran above (admin queries are logged as source api).
    let mut logs = String::new();
    for _ in 0..50 {
        logs = cli.ok(&["tenants", "logs", "acme", "--source", "api"]);
        if logs.contains("UPDATE accounts SET balance = 99") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(
        logs.contains("UPDATE accounts SET balance = 99") && logs.contains("api"),
        "{logs}"
    );
    let errors = cli.json(&["tenants", "logs", "acme", "--type", "error"]);
    assert!(
        errors["logs"]
            .as_array()
            .is_some_and(|l| l.iter().all(|e| e["success"] == false)),
        "{errors}"
    );
    let metrics = cli.ok(&["tenants", "metrics", "acme", "--window", "1h"]);
    assert!(
        metrics.contains("success rate")
            && metrics.contains("P95")
            && metrics.contains("queries  "),
        "{metrics}"
    );
    assert!(
        cli.fails(&["tenants", "logs", "acme", "--since", "2h"])
            .contains("since")
    );
    let stats = cli.ok(&["tenants", "stats", "acme"]);
    assert!(
        stats.contains("by source") && stats.contains("api"),
        "{stats}"
    );
    let ws = cli.ok(&["workspaces", "metrics", "fintech", "--window", "1h"]);
    assert!(ws.contains("workspace") && ws.contains("fintech"), "{ws}");
    let projects = cli.json(&["projects", "list"]);
    let pid = projects["projects"][0]["project_id"]
        .as_str()
        .expect("project")
        .to_string();
    let policy = cli.json(&[
        "projects",
        "backup-policy",
        &pid,
        "--keep-count",
        "3",
        "--daily-at",
        "04:30",
    ]);
    assert_eq!(
        (policy["keep_count"].as_i64(), policy["daily_at"].as_str()),
        (Some(3), Some("04:30")),
        "{policy}"
    );
    assert!(
        cli.ok(&["projects", "backup-policy", &pid])
            .contains("04:30")
    );
    assert!(
        cli.fails(&["projects", "backup-policy", &pid, "--daily-at", "25:00"])
            .contains("daily_at")
    );

    assert!(
        cli.ok(&["tenants", "suspend", "acme"])
            .contains("suspended")
    );
    assert!(
        cli.fails(&["tenants", "suspend", "acme"])
            .contains("conflict")
    );
    cli.ok(&["tenants", "resume", "acme"]);
    cli.ok(&["tenants", "delete", "globex"]);
    assert!(
        cli.fails(&["tenants", "create", "globex", "--blueprint", "fintech"])
            .contains("is in trash")
    );
    cli.ok(&["tenants", "restore", "globex"]);
    cli.ok(&["tenants", "delete", "globex", "--hard"]);
    assert!(
        cli.fails(&["tenants", "get", "globex"])
            .contains("not found")
    );
    assert!(
        cli.fails(&[
            "tenants",
            "create",
            "big",
            "--blueprint",
            "fintech",
            "--isolation-level",
            "2"
        ])
        .contains("forbidden")
    );
    // A level that is neither 1 nor 2 is refused before anything is sent.
    let odd = cli.fails(&[
        "tenants",
        "create",
        "odd",
        "--blueprint",
        "fintech",
        "--isolation-level",
        "3",
    ]);
    assert!(odd.contains("--isolation-level must be 1 or 2"), "{odd}");
}
