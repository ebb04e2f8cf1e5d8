//! Hardening: a hostile tenant and an unlucky operator against the platform's shared resources.
//! Each test reproduces one attack or fault from the hardening review and checks that it no
//! longer harms other tenants or the platform.

mod common;

use std::process::Command;

use common::*;
use serde_json::json;
use sqlx::{Connection, PgConnection};
use tdb_testkit::TdbServer;

/// A project with a workspace `shop` (table `items`), its blueprint deployed at version 1.
struct App {
    key: String,
}

impl App {
    async fn new(s: &TdbServer, email: &str) -> Self {
        tdb_testkit::init();
        let key = str_of(&signup(s, email, "Shop").await, "api_key").to_string();
        let (st, ws) = post(
            s,
            "/workspaces",
            Some(&key),
            json!({"name": "shop", "database": "PostgreSQL", "mode": "tenant"}),
        )
        .await;
        assert_eq!(st, 201, "{ws}");
        let app = Self { key };
        app.ws_query(s, "CREATE TABLE items (id serial PRIMARY KEY, name text)")
            .await;
        app.deploy(s).await;
        app
    }

    async fn ws_query(&self, s: &TdbServer, sql: &str) -> serde_json::Value {
        let (st, body) = post(
            s,
            "/workspaces/shop/queries",
            Some(&self.key),
            json!({ "query": sql }),
        )
        .await;
        assert_eq!(st, 200, "{sql}: {body}");
        body
    }

    /// Deploys the pending changes and waits for the deployment to complete.
    async fn deploy(&self, s: &TdbServer) -> serde_json::Value {
        let (st, d) = post(
            s,
            "/deployments",
            Some(&self.key),
            json!({"blueprint_name": "shop"}),
        )
        .await;
        assert_eq!(st, 201, "{d}");
        let id = str_of(&d, "id").to_string();
        for _ in 0..600 {
            let (_, d) = get(s, &format!("/deployments/{id}"), &self.key).await;
            if d["status"] != "pending" && d["status"] != "in_progress" {
                return d;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("deployment {id} did not finish");
    }

    /// Creates a tenant and returns its connection string through the proxy.
    async fn tenant(&self, s: &TdbServer, name: &str) -> String {
        let (st, t) = post(
            s,
            "/tenants",
            Some(&self.key),
            json!({"tenant_id": name, "databases": [{"blueprint": "shop"}]}),
        )
        .await;
        assert_eq!(st, 201, "{t}");
        str_of(&t["databases"][0]["connection"], "connection_string").to_string()
    }
}

/// The managed server's port and socket directory, from its state file.
fn managed_server(s: &TdbServer) -> (u16, std::path::PathBuf) {
    let dir = s.data_dir().join("servers/postgresql-shared");
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("state.json")).expect("state file"))
            .expect("state json");
    let port = state["port"].as_u64().expect("port") as u16;
    (port, dir.join("socket"))
}

/// Finding 5: PostgreSQL lets every role change its own password, so a tenant can always learn
/// a password for its role. That must not let it log in to the server around the proxy (and
/// so around suspension, the query log, TLS policy and the limits).
#[tokio::test]
async fn a_tenant_that_sets_its_own_password_still_cannot_reach_the_server_directly() {
    let s = start().await;
    let app = App::new(&s, "password@example.com").await;
    let url = app.tenant(&s, "acme").await;
    let mut tenant = PgConnection::connect(&url)
        .await
        .expect("through the proxy");
    let (role, database): (String, String) =
        sqlx::query_as("SELECT current_user::text, current_database()::text")
            .fetch_one(&mut tenant)
            .await
            .expect("who am i");
    sqlx::raw_sql(
        "DO $$ BEGIN EXECUTE format('ALTER ROLE %I PASSWORD %L', current_user, \
         'chosen-by-the-tenant'); END $$",
    )
    .execute(&mut tenant)
    .await
    .expect("PostgreSQL lets a role change its own password");
    tenant.close().await.expect("close");

    // No TCP listener: the server's recorded port on loopback refuses the tenant's login.
    let (port, socket) = managed_server(&s);
    let direct = format!("postgresql://{role}:chosen-by-the-tenant@127.0.0.1:{port}/{database}");
    let refused = PgConnection::connect(&direct).await;
    assert!(
        refused.is_err(),
        "the tenant logged in to the managed server directly over TCP"
    );
    let listen: String = {
        let mut admin = PgConnection::connect(&s.managed_admin_url("postgres").expect("url"))
            .await
            .expect("admin over the private socket");
        sqlx::query_scalar("SHOW listen_addresses")
            .fetch_one(&mut admin)
            .await
            .expect("listen_addresses")
    };
    assert_eq!(listen, "", "the managed server listens on TCP");

    // The socket is in a directory no other local user may enter.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&socket)
        .expect("socket dir")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700, "socket dir mode {mode:o}");
    let out = Command::new("runuser")
        .args(["-u", "nobody", "--", "psql"])
        .arg(format!(
            "host={} port={port} user={role} dbname={database} password=chosen-by-the-tenant",
            socket.display()
        ))
        .args(["-c", "SELECT 1"])
        .output()
        .expect("runuser psql");
    assert!(
        !out.status.success(),
        "another local user reached the server's socket"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Permission denied"), "{err}");
}
