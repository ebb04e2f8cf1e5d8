//! What a tenant can learn of the others on a shared server, tenants the blueprint left behind,
//! and what an interrupted backup leaves in the store. Real `tdb serve`, its proxy and real
//! clients (psql, psycopg, asyncpg, node-postgres, sqlx); the Python and Node clients come from
//! `scripts/test-clients.sh` (run by `scripts/test.sh`).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};
use sqlx::{ConnectOptions, Connection, PgConnection};
use tdb_testkit::TdbServer;

/// The blueprint's first version: an enum type (which drivers must look up in the catalogs) and
/// a table.
const SCHEMA: &str = "CREATE TYPE mood AS ENUM ('ok', 'sad');
CREATE TABLE items (id serial PRIMARY KEY, name text NOT NULL, qty int NOT NULL DEFAULT 0,
                    mood mood NOT NULL DEFAULT 'ok')";

struct Fixture {
    key: String,
    /// The workspace's connection string (its own credential).
    workspace: String,
    /// Tenant name → its connection string through the proxy (a fresh credential).
    tenants: Vec<(String, String)>,
}

impl Fixture {
    fn url(&self, tenant: &str) -> &str {
        self.tenants
            .iter()
            .find(|(name, _)| name == tenant)
            .map(|(_, url)| url.as_str())
            .unwrap_or_else(|| panic!("no tenant {tenant}"))
    }
}

/// A workspace `app` with [`SCHEMA`] deployed as version 1, and tenants made from it.
async fn fixture(s: &TdbServer, email: &str, tenants: &[&str]) -> Fixture {
    tdb_testkit::init();
    let key = str_of(&signup(s, email, "Meta").await, "api_key").to_string();
    let (st, ws) = post(
        s,
        "/workspaces",
        Some(&key),
        json!({"name": "app", "database": "PostgreSQL", "mode": "tenant"}),
    )
    .await;
    assert_eq!(st, 201, "{ws}");
    let (st, q) = post(
        s,
        "/workspaces/app/queries",
        Some(&key),
        json!({"query": SCHEMA}),
    )
    .await;
    assert_eq!(st, 200, "{q}");
    deploy(s, &key, json!({"blueprint_name": "app"})).await;
    let mut made = Vec::new();
    for tenant in tenants {
        let (st, t) = post(
            s,
            "/tenants",
            Some(&key),
            json!({"tenant_id": tenant, "databases": [{"blueprint": "app"}]}),
        )
        .await;
        assert_eq!(st, 201, "{t}");
        let url = str_of(&t["databases"][0]["connection"], "connection_string").to_string();
        made.push((tenant.to_string(), url));
    }
    Fixture {
        key,
        workspace: str_of(&ws, "connection_string").to_string(),
        tenants: made,
    }
}

/// Starts a deployment and waits for it to end; returns it.
async fn deploy(s: &TdbServer, key: &str, body: Value) -> Value {
    let (st, dep) = post(s, "/deployments", Some(key), body).await;
    assert_eq!(st, 201, "{dep}");
    let path = format!("/deployments/{}", str_of(&dep, "id"));
    wait_for(s, key, &path, |d| {
        ["completed", "completed_with_errors", "failed"]
            .contains(&d["status"].as_str().unwrap_or(""))
    })
    .await
}

fn psql(url: &str, args: &[&str]) -> Output {
    Command::new("psql")
        .args(["-X", "-v", "ON_ERROR_STOP=1", "-At", url])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("psql runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).trim().to_string()
}

/// Runs SQL through psql and expects success; returns stdout.
fn sql_ok(url: &str, sql: &str) -> String {
    let out = psql(url, &["-c", sql]);
    assert!(
        out.status.success(),
        "{sql}: {}{}",
        text(&out.stderr),
        text(&out.stdout)
    );
    text(&out.stdout)
}

/// The physical database behind a connection string.
fn physical_db(url: &str) -> String {
    sql_ok(url, "SELECT current_database()")
}

async fn admin(s: &TdbServer, database: &str) -> PgConnection {
    let url = s.managed_admin_url(database).expect("admin url");
    PgConnection::connect(&url).await.expect("admin connects")
}

async fn admin_exec(s: &TdbServer, database: &str, sql: &str) {
    let mut conn = admin(s, database).await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let _ = conn.close().await;
}

// --- 10: what tenants see of each other ------------------------------------------------------

/// Statements that read other databases' sessions, statistics, roles, role settings and shared
/// dependencies. Each must be refused to tenant, read and workspace roles.
const PROBES: &[&str] = &[
    "SELECT usename, application_name FROM pg_stat_activity",
    "SELECT * FROM pg_stat_get_activity(NULL)",
    "SELECT pg_stat_get_backend_idset()",
    "SELECT pg_stat_get_backend_activity(1)",
    "SELECT * FROM pg_stat_ssl",
    "SELECT * FROM pg_stat_progress_vacuum",
    "SELECT datname, xact_commit FROM pg_stat_database",
    "SELECT pg_stat_get_db_xact_commit(oid) FROM pg_database",
    "SELECT * FROM pg_stat_database_conflicts",
    "SELECT rolname, rolconnlimit, rolconfig FROM pg_roles",
    "SELECT * FROM pg_user",
    "SELECT * FROM pg_group",
    "SELECT * FROM pg_auth_members",
    "SELECT setrole, setconfig FROM pg_db_role_setting",
    "SELECT * FROM pg_shdepend",
    "SELECT * FROM pg_locks",
    "SELECT * FROM pg_lock_status()",
    "SELECT * FROM pg_prepared_xacts",
    "SELECT * FROM pg_replication_slots",
    "SELECT * FROM pg_stat_replication",
    "SELECT * FROM pg_stat_subscription",
];

/// Every probe fails with "permission denied" for the role behind `url`.
fn assert_hidden(who: &str, url: &str) {
    for probe in PROBES {
        let out = psql(url, &["-c", probe]);
        let err = text(&out.stderr);
        assert!(
            !out.status.success() && err.contains("permission denied"),
            "{who} ran `{probe}`: {}{err}",
            text(&out.stdout)
        );
    }
}

#[tokio::test]
async fn tenants_cannot_read_other_tenants_sessions_roles_or_statistics() {
    let mut s = start().await;
    let f = fixture(&s, "hide@example.com", &["acme", "globex"]).await;
    let (st, read) = post(
        &s,
        "/tenants/acme/credentials",
        Some(&f.key),
        json!({"role": "read"}),
    )
    .await;
    assert_eq!(st, 201, "{read}");
    let read = str_of(&read["connection"], "connection_string").to_string();

    // Another customer's session, named by its application.
    let globex: sqlx::postgres::PgConnectOptions = f
        .url("globex")
        .replace("sslmode=require", "sslmode=disable")
        .parse()
        .expect("globex url");
    let mut held = globex
        .application_name("globex-billing-worker")
        .connect()
        .await
        .expect("globex connects");
    sqlx::query("SELECT 1")
        .execute(&mut held)
        .await
        .expect("globex query");
    let seen = psql(
        f.url("acme"),
        &["-c", "SELECT application_name FROM pg_stat_activity"],
    );
    assert!(
        !text(&seen.stdout).contains("globex-billing-worker"),
        "acme sees globex's session: {}",
        text(&seen.stdout)
    );

    assert_hidden("the tenant's application role", f.url("acme"));
    assert_hidden("the tenant's read role", &read);
    assert_hidden("the workspace role", &f.workspace);

    // What stays readable, as docs/SECURITY.md says: its own database's catalogs, and role
    // names (psql's `\d` and pg_dump read them).
    sql_ok(f.url("acme"), "SELECT count(*) FROM pg_class");
    sql_ok(f.url("acme"), "SELECT oid, rolname FROM pg_roles");

    // Databases made before this change: their catalogs opened again behind tdb's back, as
    // they were, are closed at the next start; so is template1, which new databases copy.
    let acme_db = physical_db(f.url("acme"));
    admin_exec(
        &s,
        &acme_db,
        "GRANT SELECT ON pg_catalog.pg_stat_activity, pg_catalog.pg_roles TO PUBLIC;
         GRANT EXECUTE ON FUNCTION pg_catalog.pg_stat_get_activity(integer) TO PUBLIC",
    )
    .await;
    sql_ok(f.url("acme"), "SELECT usename FROM pg_stat_activity");
    drop(held);
    s.restart().await.expect("restart");
    let started = Instant::now();
    loop {
        let out = psql(f.url("acme"), &["-c", PROBES[0]]);
        if !out.status.success() && text(&out.stderr).contains("permission denied") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the restart did not close acme's catalogs again: {}\n{}",
            text(&out.stdout),
            s.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_hidden(
        "the tenant's application role after a restart",
        f.url("acme"),
    );
    let mut template = admin(&s, "template1").await;
    let open: bool = sqlx::query_scalar(
        "SELECT has_table_privilege('public', 'pg_catalog.pg_stat_activity', 'SELECT')
             OR has_function_privilege('public', 'pg_catalog.pg_stat_get_activity(integer)', 'EXECUTE')",
    )
    .fetch_one(&mut template)
    .await
    .expect("template1 privileges");
    assert!(!open, "template1 still lets PUBLIC read other sessions");
}

const PSYCOPG: &str = r#"
import sys, psycopg
with psycopg.connect(sys.argv[1]) as conn:
    conn.execute("INSERT INTO items (name, qty) VALUES (%s, %s)", ("from-psycopg", 2))
    row = conn.execute("SELECT name, qty, mood::text FROM items WHERE name = %s", ("from-psycopg",)).fetchone()
    print("psycopg", *row)
"#;

const ASYNCPG: &str = r#"
import asyncio, sys, asyncpg
async def main():
    conn = await asyncpg.connect(sys.argv[1])
    await conn.execute("INSERT INTO items (name, qty) VALUES ($1, $2)", "from-asyncpg", 3)
    row = await conn.fetchrow("SELECT name, qty, mood FROM items WHERE name = $1", "from-asyncpg")
    await conn.close()
    pool = await asyncpg.create_pool(sys.argv[1], min_size=1, max_size=1)
    async with pool.acquire() as c:
        n = await c.fetchval("SELECT count(*) FROM items WHERE mood = $1", "ok")
    await pool.close()
    print("asyncpg", row["name"], row["qty"], row["mood"], n >= 1)
asyncio.run(main())
"#;

const NODE_PG: &str = r#"
const { Client } = require('pg');
const fs = require('fs');
(async () => {
  const client = new Client({
    connectionString: process.argv[1].split('?')[0],
    ssl: { ca: fs.readFileSync(process.argv[2]) },
  });
  await client.connect();
  await client.query('INSERT INTO items (name, qty) VALUES ($1, $2)', ['from-node', 4]);
  const r = await client.query('SELECT name, qty, mood FROM items WHERE name = $1', ['from-node']);
  await client.end();
  console.log('node-postgres', r.rows[0].name, r.rows[0].qty, r.rows[0].mood);
})().catch((e) => { console.error(e.message); process.exit(1); });
"#;

#[tokio::test]
async fn psql_psycopg_asyncpg_and_node_postgres_work_with_the_catalogs_hidden() {
    let s = start().await;
    let f = fixture(&s, "clients@example.com", &["acme"]).await;
    let url = f.url("acme");
    // The clients must be there: a missing one is a failure, not a skip.
    let dir = clients_dir();
    let check = python("import psycopg, asyncpg", "")
        .output()
        .expect("python3 runs");
    assert!(
        check.status.success(),
        "psycopg and asyncpg are not in {}: run scripts/test-clients.sh ({})",
        dir.join("python").display(),
        text(&check.stderr)
    );
    let node_modules = dir.join("node/node_modules");
    assert!(
        node_modules.join("pg").is_dir(),
        "node-postgres is not in {}: run scripts/test-clients.sh",
        node_modules.display()
    );
    // The catalogs are hidden from this tenant, or this test proves nothing.
    assert!(
        !psql(url, &["-c", "SELECT * FROM pg_stat_activity"])
            .status
            .success()
    );

    let out = psql(
        url,
        &["-c", "\\l", "-c", "\\dt", "-c", "\\d items", "-c", "\\dn"],
    );
    assert!(out.status.success(), "psql: {}", text(&out.stderr));
    let listed = text(&out.stdout);
    for expected in [
        physical_db(url).as_str(),
        "items|table",
        "qty|integer",
        "public|",
    ] {
        assert!(
            listed.contains(expected),
            "psql output lacks {expected}: {listed}"
        );
    }

    let said = run_client(python(PSYCOPG, url), "psycopg");
    assert_eq!(said, "psycopg from-psycopg 2 ok");
    let said = run_client(python(ASYNCPG, url), "asyncpg");
    assert_eq!(said, "asyncpg from-asyncpg 3 ok True");
    let mut node = Command::new("node");
    node.env("NODE_PATH", &node_modules).args([
        "-e",
        NODE_PG,
        url,
        &s.data_dir().join("tls/ca.crt").to_string_lossy(),
    ]);
    let said = run_client(node, "node-postgres");
    assert_eq!(said, "node-postgres from-node 4 ok");
}

// --- 18: tenants left behind a blueprint -----------------------------------------------------

/// The blueprint's version 2: a column, and a check that some data may not pass.
async fn second_version(s: &TdbServer, key: &str, deploy_to: Value) -> Value {
    let (st, q) = post(
        s,
        "/workspaces/app/queries",
        Some(key),
        json!({"query": "ALTER TABLE items ADD COLUMN note text;
                         ALTER TABLE items ADD CONSTRAINT items_qty_check CHECK (qty >= 0)"}),
    )
    .await;
    assert_eq!(st, 200, "{q}");
    let mut body = json!({"blueprint_name": "app"});
    if let Some(tenants) = deploy_to.as_array() {
        body["tenant_ids"] = tenants.clone().into();
    }
    let d = deploy(s, key, body).await;
    assert_eq!(d["version"], 2, "{d}");
    d
}

async fn tenant(s: &TdbServer, key: &str, name: &str) -> Value {
    let (st, t) = get(s, &format!("/tenants/{name}"), key).await;
    assert_eq!(st, 200, "{t}");
    t
}

#[tokio::test]
async fn a_tenant_restored_from_the_trash_comes_back_on_the_current_version() {
    let s = start().await;
    let f = fixture(&s, "trash@example.com", &["acme", "globex", "initech"]).await;
    sql_ok(
        f.url("acme"),
        "INSERT INTO items (name, qty) VALUES ('kept', 1)",
    );
    // initech's data cannot take version 2's check.
    sql_ok(
        f.url("initech"),
        "INSERT INTO items (name, qty) VALUES ('owed', -5)",
    );
    for name in ["acme", "initech"] {
        let (st, body) = delete(&s, &format!("/tenants/{name}"), &f.key).await;
        assert_eq!(st, 200, "{body}");
    }
    let d = second_version(&s, &f.key, Value::Null).await;
    assert_eq!(d["status"], "completed", "{d}");
    assert_eq!(d["tenants_total"], 1, "the trash is skipped: {d}");

    let (st, body) = post(&s, "/tenants/acme/restore", Some(&f.key), json!({})).await;
    assert_eq!(st, 200, "{body}");
    let t = tenant(&s, &f.key, "acme").await;
    assert_eq!(t["status"], "ready", "{t}");
    assert_eq!(
        t["databases"][0]["version"], 2,
        "restored on an old version: {t}"
    );
    assert!(t["databases"][0]["behind"].is_null(), "{t}");
    assert_eq!(
        sql_ok(
            f.url("acme"),
            "SELECT name || ':' || coalesce(note, '-') FROM items"
        ),
        "kept:-"
    );
    let (_, history) = get(&s, "/tenants/acme/deployments", &f.key).await;
    assert_eq!(history["deployments"][0]["version"], 2, "{history}");
    assert_eq!(
        history["deployments"][0]["status"], "completed",
        "{history}"
    );

    // A tenant whose data the new version refuses comes back on its data, shown behind, with
    // why and the call that brings it forward.
    let (st, body) = post(&s, "/tenants/initech/restore", Some(&f.key), json!({})).await;
    assert_eq!(st, 200, "{body}");
    let t = tenant(&s, &f.key, "initech").await;
    assert_eq!(t["status"], "ready", "{t}");
    let db = &t["databases"][0];
    assert_eq!(db["version"], 1, "{t}");
    assert_eq!(db["blueprint_version"], 2, "{t}");
    assert_eq!(db["behind"]["versions"], 1, "{t}");
    assert!(
        db["behind"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("items_qty_check")),
        "{t}"
    );
    assert_eq!(
        sql_ok(f.url("initech"), "SELECT name FROM items"),
        "owed",
        "its data"
    );
}

#[tokio::test]
async fn a_rollback_to_an_older_backup_keeps_the_tenant_on_the_current_version() {
    let s = start().await;
    let f = fixture(&s, "rollback@example.com", &["acme"]).await;
    sql_ok(
        f.url("acme"),
        "INSERT INTO items (name, qty) VALUES ('at-backup', 1)",
    );
    let (st, b) = post(&s, "/tenants/acme/backup", Some(&f.key), json!({})).await;
    assert_eq!(st, 200, "{b}");
    let path = b["paths"][0].as_str().expect("a path").to_string();
    wait_for(&s, &f.key, "/tenants/acme/backups", |l| {
        l["backups"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|b| b["storage_path"] == path.as_str() && b["status"] == "completed")
    })
    .await;
    let d = second_version(&s, &f.key, Value::Null).await;
    assert_eq!(d["status"], "completed", "{d}");
    sql_ok(
        f.url("acme"),
        "INSERT INTO items (name, qty, note) VALUES ('after', 2, 'new')",
    );

    let (st, r) = post(
        &s,
        "/tenants/acme/rollback",
        Some(&f.key),
        json!({"storage_path": path}),
    )
    .await;
    assert_eq!(st, 200, "{r}");
    let id = str_of(&r, "rollback_id").to_string();
    let t = wait_for(&s, &f.key, "/tenants/acme", |t| {
        t["last_rollback"]["rollback_id"] == id.as_str()
            && matches!(
                t["last_rollback"]["step"].as_str(),
                Some("completed" | "failed")
            )
            && t["status"] == "ready"
    })
    .await;
    assert_eq!(t["last_rollback"]["step"], "completed", "{t}");
    let t = tenant(&s, &f.key, "acme").await;
    assert_eq!(
        t["databases"][0]["version"], 2,
        "rolled back to an old version: {t}"
    );
    assert!(t["databases"][0]["behind"].is_null(), "{t}");
    // The backup's rows, under the current schema; the deployment's "completed" holds.
    assert_eq!(
        sql_ok(
            f.url("acme"),
            "SELECT name || ':' || coalesce(note, '-') FROM items"
        ),
        "at-backup:-"
    );
    let mut inside = admin(&s, &physical_db(f.url("acme"))).await;
    let version: i32 = sqlx::query_scalar("SELECT version FROM tdb_meta.schema_version")
        .fetch_one(&mut inside)
        .await
        .expect("version");
    assert_eq!(version, 2);
    let d = get(&s, &format!("/deployments/{}", str_of(&d, "id")), &f.key)
        .await
        .1;
    assert_eq!(d["results"][0]["status"], "completed", "{d}");
}

#[tokio::test]
async fn a_tenant_behind_its_blueprint_is_shown_with_the_call_that_brings_it_forward() {
    let s = start().await;
    let f = fixture(&s, "behind@example.com", &["acme", "globex"]).await;
    second_version(&s, &f.key, json!(["globex"])).await;

    let t = tenant(&s, &f.key, "acme").await;
    let db = &t["databases"][0];
    assert_eq!(db["version"], 1, "{t}");
    assert_eq!(db["blueprint_version"], 2, "{t}");
    let behind = &db["behind"];
    assert_eq!(behind["versions"], 1, "{t}");
    assert_eq!(
        behind["cli"], "tdb deployments create app --version 2 --tenants acme",
        "{t}"
    );
    assert_eq!(behind["request"]["method"], "POST", "{t}");
    assert_eq!(behind["request"]["path"], "/deployments", "{t}");
    let (_, list) = get(&s, "/tenants", &f.key).await;
    let listed: Vec<&Value> = list["tenants"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| !t["databases"][0]["behind"].is_null())
        .collect();
    assert_eq!(listed.len(), 1, "{list}");
    assert_eq!(listed[0]["tenant_id"], "acme", "{list}");

    // The call as shown brings it forward.
    let d = deploy(&s, &f.key, behind["request"]["body"].clone()).await;
    assert_eq!(d["status"], "completed", "{d}");
    let t = tenant(&s, &f.key, "acme").await;
    assert_eq!(t["databases"][0]["version"], 2, "{t}");
    assert!(t["databases"][0]["behind"].is_null(), "{t}");
    sql_ok(f.url("acme"), "SELECT note FROM items");
}

// --- 15: leftovers of an interrupted upload --------------------------------------------------

/// Files under `dir` named like object_store's staged parts (`<key>#<n>`).
fn staged_parts(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.rsplit_once('#'))
                .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            {
                found.push(path);
            }
        }
    }
    found
}

#[tokio::test]
async fn kill_9_during_a_backup_upload_leaves_no_staged_part() {
    let mut s = start().await;
    let f = fixture(&s, "leftover@example.com", &["acme"]).await;
    // Hex text compresses about two to one: well over the store's 8 MiB first part.
    sql_ok(
        f.url("acme"),
        "INSERT INTO items (name) SELECT md5(g::text) || md5((g * 7)::text) || md5((g * 13)::text)
           FROM generate_series(1, 1500000) g",
    );
    let store = s.data_dir().join("backups");
    let (st, b) = post(&s, "/tenants/acme/backup", Some(&f.key), json!({})).await;
    assert_eq!(st, 200, "{b}");
    let path = b["paths"][0].as_str().expect("a path").to_string();
    let started = Instant::now();
    let part = loop {
        if let Some(part) = staged_parts(&store).pop() {
            break part;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the upload never staged a part\n{}",
            s.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    s.kill9().expect("kill -9");
    assert!(part.exists(), "the cut-off upload left {}", part.display());

    s.restart().await.expect("restart");
    // The backup job resumes after its lease and stores the whole dump.
    wait_for(&s, &f.key, "/tenants/acme/backups", |l| {
        l["backups"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|b| b["storage_path"] == path.as_str() && b["status"] != "pending")
    })
    .await;
    assert!(store.join(&path).is_file(), "the backup is stored");
    assert_eq!(
        staged_parts(&store),
        Vec::<PathBuf>::new(),
        "leftover parts"
    );
}
