//! Transaction pooling as real drivers use it: server connections pass from client to client
//! between transactions, and no client may see what another did to its session (settings,
//! prepared statements), nor lose its own.

mod common;

use std::time::Duration;

use sqlx::Connection;

use common::*;

/// Two psycopg clients on one tenant: `a` changes its session in every way a driver or an app
/// does; `b` must keep seeing the server's defaults (and parse its dates), `a` its own values,
/// whichever server connection each transaction lands on.
const PSYCOPG_SESSION_STATE: &str = r#"
import sys, psycopg
url = sys.argv[1]
a = psycopg.connect(url, autocommit=True)
b = psycopg.connect(url, autocommit=True)
show = ("SELECT current_setting('TimeZone'), current_setting('DateStyle'), "
        "current_setting('statement_timeout'), current_setting('application_name'), "
        "current_setting('search_path'), "
        "coalesce(nullif(current_setting('myapp.user', true), ''), '-')")
def settings(c):
    return " | ".join(str(v) for v in c.execute(show).fetchone())
print("defaults", settings(b))
a.execute("SET timezone = 'Asia/Tokyo'")
a.execute("SET datestyle = 'German'")
a.execute("SET statement_timeout = 1234")
a.execute("SET application_name = 'client-a'")
a.execute("SET search_path = pg_catalog, public")
a.execute("SELECT set_config('myapp.user', 'alice', false)")
# Undone by the server: a rolled-back SET and a SET LOCAL.
a.execute("BEGIN")
a.execute("SET timezone = 'Europe/Paris'")
a.execute("ROLLBACK")
a.execute("BEGIN")
a.execute("SET LOCAL statement_timeout = 999")
a.execute("COMMIT")
for _ in range(4):
    day = b.execute("SELECT DATE '2024-03-01'").fetchone()[0]
    print("b:", settings(b), b.pgconn.parameter_status(b"TimeZone").decode(), day)
    print("a:", settings(a))
# SQL-level PREPARE would stay on a shared server connection: refused, and a goes on.
try:
    a.execute("PREPARE mine AS SELECT 1")
    print("prepared")
except psycopg.Error as e:
    print("prepare:", e.sqlstate, e)
# DISCARD ALL puts a back to the defaults, and only a.
a.execute("DISCARD ALL")
print("a discarded", settings(a))
print("b after", settings(b))
"#;

#[tokio::test]
async fn a_clients_session_settings_follow_it_and_no_one_else() {
    let s = start().await;
    let (key, url) = account_with_tenant(&s, "state@example.com").await;
    transaction_pooling(&s, &key, &url, serde_json::json!({})).await;

    let said = run_client(python(PSYCOPG_SESSION_STATE, &url), "psycopg");
    let lines: Vec<&str> = said.lines().collect();
    let defaults = lines[0].strip_prefix("defaults ").expect("defaults first");
    assert!(defaults.ends_with("| -"), "{said}");
    let zone = defaults.split(" | ").next().expect("a time zone");
    let own = "Asia/Tokyo | German, DMY | 1234ms | client-a | pg_catalog, public | alice";
    let b_lines: Vec<&&str> = lines.iter().filter(|l| l.starts_with("b: ")).collect();
    let a_lines: Vec<&&str> = lines.iter().filter(|l| l.starts_with("a: ")).collect();
    assert_eq!((b_lines.len(), a_lines.len()), (4, 4), "{said}");
    for line in b_lines {
        assert_eq!(
            **line,
            format!("b: {defaults} {zone} 2024-03-01"),
            "another client's settings reached b:\n{said}"
        );
    }
    for line in a_lines {
        assert_eq!(**line, format!("a: {own}"), "a lost its settings:\n{said}");
    }
    let prepare = lines
        .iter()
        .find(|l| l.starts_with("prepare"))
        .unwrap_or_else(|| panic!("{said}"));
    assert!(
        prepare.starts_with("prepare: 0A000 PREPARE is not available under transaction pooling"),
        "{said}"
    );
    assert!(
        lines.contains(&format!("a discarded {defaults}").as_str()),
        "{said}"
    );
    assert!(
        lines.contains(&format!("b after {defaults}").as_str()),
        "{said}"
    );
}

/// psycopg 3 prepares statements (here at once) and sends `DEALLOCATE ALL` itself after a
/// rollback; a driver on libpq before 17 deallocates one statement with `DEALLOCATE name`. Each
/// concerns its own client only: the other's prepared statements keep working.
const PSYCOPG_DEALLOCATE: &str = r#"
import sys, psycopg
url = sys.argv[1]
a = psycopg.connect(url, prepare_threshold=0)
b = psycopg.connect(url, prepare_threshold=0, autocommit=True)
q = "SELECT %s::int + 1"
print(b.execute(q, (1,)).fetchone()[0], a.execute(q, (2,)).fetchone()[0])
a.rollback()
for i in range(3):
    print(b.execute(q, (10 + i,)).fetchone()[0], a.execute(q, (20 + i,)).fetchone()[0])
    a.commit()
a.autocommit = True
a.execute("DEALLOCATE ALL")
print(b.execute(q, (30,)).fetchone()[0], a.execute(q, (40,)).fetchone()[0])
# Two more of a's statements, dropped by name: with the simple query protocol (what psycopg on
# libpq before 17 sends) and with the extended one (what it sends in a pipeline).
q2 = "SELECT %s::text || 'x'"
print(a.execute(q, (50,)).fetchone()[0], a.execute(q2, ("y",)).fetchone()[0])
names = [a._prepared._names[k].decode() for k in list(a._prepared._names)[-2:]]
done = a.pgconn.exec_(("DEALLOCATE " + names[0]).encode())
print("simple", done.status == psycopg.pq.ExecStatus.COMMAND_OK, done.command_status.decode())
cur = a.execute("DEALLOCATE " + names[1])
print("extended", cur.statusmessage)
for query, arg in ((q, 60), (q2, "z")):
    try:
        a.execute(query, (arg,))
        print("still there")
    except psycopg.Error as e:
        print("gone:", e.sqlstate)
try:
    a.execute("DEALLOCATE no_such_statement")
except psycopg.Error as e:
    print("unknown:", e.sqlstate, e)
# psycopg still believes a's two statements exist (as it would directly): a new one for a.
print(b.execute(q, (70,)).fetchone()[0], a.execute("SELECT %s::int * 2", (40,)).fetchone()[0])
"#;

#[tokio::test]
async fn deallocating_concerns_one_client_only() {
    let s = start().await;
    let (key, url) = account_with_tenant(&s, "deallocate@example.com").await;
    transaction_pooling(&s, &key, &url, serde_json::json!({})).await;

    let said = run_client(python(PSYCOPG_DEALLOCATE, &url), "psycopg");
    let lines: Vec<&str> = said.lines().collect();
    assert_eq!(
        &lines[..5],
        &["2 3", "11 21", "12 22", "13 23", "31 41"],
        "{said}"
    );
    assert_eq!(
        &lines[5..10],
        &[
            "51 yx",
            "simple True DEALLOCATE",
            "extended DEALLOCATE",
            "gone: 26000",
            "gone: 26000"
        ],
        "{said}"
    );
    assert!(
        lines[10]
            .starts_with("unknown: 26000 prepared statement \"no_such_statement\" does not exist"),
        "{said}"
    );
    assert_eq!(lines[11], "71 80", "{said}");
}

/// asyncpg caches `SELECT *` as a prepared statement; a deployment then adds a column, the
/// server answers 0A000 "cached plan must not change result type", and asyncpg prepares it again
/// by itself, as it does directly. Every new connection works too.
const ASYNCPG_CACHED_PLAN: &str = r#"
import asyncio, sys, asyncpg
async def main():
    conn = await asyncpg.connect(sys.argv[1])
    print(len((await conn.fetch("SELECT * FROM items"))))
    print("ready", flush=True)
    sys.stdin.readline()
    for _ in range(3):
        rows = await conn.fetch("SELECT * FROM items")
        print("columns", len(rows[0]) if rows else len((await conn.prepare("SELECT * FROM items")).get_attributes()))
    other = await asyncpg.connect(sys.argv[1])
    print("fresh", len((await other.prepare("SELECT * FROM items")).get_attributes()))
    await other.close()
    await conn.close()
asyncio.run(main())
"#;

#[tokio::test]
async fn a_deployment_does_not_break_cached_statements_for_good() {
    use std::io::{BufRead, BufReader, Write};
    let s = start().await;
    let (key, url) = account_with_tenant(&s, "cached@example.com").await;
    transaction_pooling(&s, &key, &url, serde_json::json!({})).await;

    let mut child = python(ASYNCPG_CACHED_PLAN, &url)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python runs");
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    for _ in 0..2 {
        out.read_line(&mut line).expect("read");
    }
    assert_eq!(line, "0\nready\n", "asyncpg did not start");

    ws_query(&s, &key, "app", "ALTER TABLE items ADD COLUMN label text").await;
    let d = deploy_and_wait(&s, &key, "app").await;
    assert_eq!(d["status"], "completed", "{d}");

    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(b"go\n").expect("write");
    drop(stdin);
    let done = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .expect("join")
        .expect("asyncpg ends");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).expect("read");
    assert!(
        done.status.success(),
        "asyncpg failed: {}\n{rest}",
        String::from_utf8_lossy(&done.stderr)
    );
    assert_eq!(
        rest.lines().collect::<Vec<_>>(),
        ["columns 2", "columns 2", "columns 2", "fresh 2"],
        "{rest}"
    );
}

/// Sets the workspace `app`'s settings (and so its tenants').
async fn patch_settings(s: &tdb_testkit::TdbServer, key: &str, body: serde_json::Value) {
    let (st, reply) = call(
        s,
        reqwest::Method::PATCH,
        "/workspaces/app/settings",
        Some(key),
        Some(&body.to_string()),
    )
    .await;
    assert_eq!(st, 200, "{reply}");
}

/// Twenty psycopg clients, five short transactions each, once told to go; prints the database
/// first, and at the end how many clients finished and each error.
const PSYCOPG_CROWD: &str = r#"
import sys, threading, psycopg
url = sys.argv[1]
with psycopg.connect(url, autocommit=True) as first:
    print("db", first.execute("SELECT current_database()").fetchone()[0], flush=True)
sys.stdin.readline()
done, errors = [], []
def work(i):
    try:
        with psycopg.connect(url, autocommit=True) as c:
            for _ in range(5):
                with c.transaction():
                    c.execute("SELECT pg_sleep(0.05)")
        done.append(i)
    except Exception as e:
        errors.append(f"{i}: {e}")
threads = [threading.Thread(target=work, args=(i,)) for i in range(20)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print("done", len(done))
for e in errors:
    print("error", e)
"#;

/// psycopg: a connection that stays open, then a transaction that never ends.
const PSYCOPG_HOLDER: &str = r#"
import sys, psycopg
c = psycopg.connect(sys.argv[1])
c.execute("SELECT 1")
print("holding", flush=True)
sys.stdin.readline()
"#;

#[tokio::test]
async fn transactions_queue_for_max_connections_and_sessions_have_their_own_cap() {
    use std::io::{BufRead, BufReader, Write};
    let s = start_with_env(&[("TDB_PG_TRANSACTION_WAIT_SECS", "3")]).await;
    let (key, url) = account_with_tenant(&s, "crowd@example.com").await;
    transaction_pooling(&s, &key, &url, serde_json::json!({})).await;
    patch_settings(&s, &key, serde_json::json!({"max_connections": 2})).await;

    // Twenty clients, two server connections: every transaction waits its turn and runs.
    let mut crowd = python(PSYCOPG_CROWD, &url)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python runs");
    let mut out = BufReader::new(crowd.stdout.take().expect("stdout"));
    let mut line = String::new();
    out.read_line(&mut line).expect("read");
    let db = line
        .trim()
        .strip_prefix("db ")
        .expect("the database")
        .to_string();
    let admin_url = s.managed_admin_url("postgres").expect("admin url");
    let mut admin = sqlx::PgConnection::connect(&admin_url)
        .await
        .expect("admin");
    let mut stdin = crowd.stdin.take().expect("stdin");
    stdin.write_all(b"go\n").expect("write");
    drop(stdin);
    let mut most = 0i64;
    let mut samples = 0;
    let ended = loop {
        if let Some(status) = crowd.try_wait().expect("wait") {
            break status;
        }
        // In use: running a statement or inside a transaction (pooled idle ones wait apart).
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND state <> 'idle'",
        )
        .bind(&db)
        .fetch_one(&mut admin)
        .await
        .expect("count");
        most = most.max(n);
        samples += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).expect("read");
    assert!(ended.success(), "{rest}");
    assert_eq!(rest.lines().next(), Some("done 20"), "{rest}");
    assert!(
        (1..=2).contains(&most),
        "{most} server connections in use at once (max_connections is 2), over {samples} samples"
    );

    // A transaction that waits longer than the limit: 53300 naming it.
    patch_settings(&s, &key, serde_json::json!({"max_connections": 1})).await;
    let mut holder = python(PSYCOPG_HOLDER, &url)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python runs");
    let mut held = BufReader::new(holder.stdout.take().expect("stdout"));
    let mut line = String::new();
    held.read_line(&mut line).expect("read");
    assert_eq!(line, "holding\n");
    let waited = std::process::Command::new("psql")
        .args(["-X", "-At", &url, "-c", "SELECT 1"])
        .output()
        .expect("psql");
    let said = String::from_utf8_lossy(&waited.stderr);
    assert!(
        said.contains(
            "too many connections for tenant \"acme\": its 1 server connections \
             (max_connections) stayed busy for 3 s"
        ),
        "{said}"
    );
    drop(holder.stdin.take());
    holder.wait().expect("holder ends");

    // Client sessions have a cap of their own.
    patch_settings(
        &s,
        &key,
        serde_json::json!({"max_connections": 2, "max_client_connections": 3}),
    )
    .await;
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(
            sqlx::PgConnection::connect(&url)
                .await
                .expect("within the cap"),
        );
    }
    let refused = sqlx::PgConnection::connect(&url)
        .await
        .expect_err("a fourth session");
    assert!(
        refused
            .to_string()
            .contains("too many connections for tenant \"acme\" (max_client_connections is 3)"),
        "{refused}"
    );
}

/// Two psycopg clients; `a` logs in through a function of the blueprint that sets a custom
/// setting (as apps that use row-level security do): `b` must not see it.
const PSYCOPG_FUNCTION_SETTING: &str = r#"
import sys, psycopg
url = sys.argv[1]
a = psycopg.connect(url, autocommit=True)
b = psycopg.connect(url, autocommit=True)
show = "SELECT coalesce(nullif(current_setting('app.uid', true), ''), '-')"
a.execute("SELECT app_login('alice')")
for _ in range(3):
    print("b:", b.execute(show).fetchone()[0])
"#;

#[tokio::test]
async fn a_setting_changed_where_the_proxy_cannot_see_it_reaches_no_other_client() {
    let s = start().await;
    let (key, url) = account_with_tenant(&s, "hidden@example.com").await;
    ws_query(
        &s,
        &key,
        "app",
        "CREATE FUNCTION app_login(who text) RETURNS text LANGUAGE sql \
         AS $$ SELECT pg_catalog.set_config('app.uid', who, false) $$",
    )
    .await;
    let d = deploy_and_wait(&s, &key, "app").await;
    assert_eq!(d["status"], "completed", "{d}");
    transaction_pooling(&s, &key, &url, serde_json::json!({})).await;
    let said = run_client(python(PSYCOPG_FUNCTION_SETTING, &url), "psycopg");
    assert_eq!(
        said.lines().collect::<Vec<_>>(),
        ["b: -", "b: -", "b: -"],
        "a's setting reached b:\n{said}"
    );
}

/// What a review of the transaction-pooling rules found, each as a client meets it.
const PSYCOPG_EDGES: &str = r#"
import sys, psycopg
from psycopg import pq
url = sys.argv[1]
a = psycopg.connect(url, autocommit=True, prepare_threshold=0)
b = psycopg.connect(url, autocommit=True, prepare_threshold=0)
q = "SELECT %s::int * 10"
def run(conn, sql):
    r = conn.pgconn.exec_(sql.encode())
    if r.status == pq.ExecStatus.FATAL_ERROR:
        return r.error_field(pq.DiagnosticField.SQLSTATE).decode()
    return r.command_status.decode()
def section(label, body):
    try:
        print(label, body())
    except Exception as e:
        print(label, "failed:", type(e).__name__, getattr(e, "sqlstate", ""))

print("first", a.execute(q, (1,)).fetchone()[0])
name = list(a._prepared._names.values())[-1].decode()

# A DEALLOCATE that fails (in an aborted transaction) drops nothing.
section("aborted", lambda: " ".join([run(a, "BEGIN"), run(a, "SELECT 1/0"),
                                     run(a, "DEALLOCATE " + name), run(a, "ROLLBACK")]))
section("kept", lambda: a.execute(q, (2,)).fetchone()[0])

# DEALLOCATE ALL, then at once (in one pipeline) a statement prepared again.
def pipelined():
    with a.pipeline():
        a.execute("DEALLOCATE ALL")
        cur = a.execute(q, (3,))
    return cur.fetchone()[0]
section("pipelined", pipelined)

# A client that drops the shared statements behind the proxy's back costs another client one
# error at most.
section("b", lambda: b.execute(q, (4,)).fetchone()[0])
def recovered():
    shared = [r[0] for r in a.execute("SELECT name FROM pg_prepared_statements WHERE name LIKE 'tdb_%'")]
    for n in shared:
        run(a, "DEALLOCATE " + n + "; SELECT 1")
    answers = []
    for i in range(3):
        try:
            answers.append(str(b.execute(q, (5,)).fetchone()[0]))
        except psycopg.Error as e:
            answers.append(e.sqlstate)
    return answers[-1]
section("recovered", recovered)

# A name that would close the refusal's literal, with backslashes read as escapes.
section("quoted", lambda: " ".join([run(a, "SET standard_conforming_strings = off"),
                                    run(a, "DEALLOCATE \"x\\'y\""),
                                    run(a, "RESET standard_conforming_strings")]))

# SET TRANSACTION leaves the transaction's characteristics marked as set in the session; the
# client's next transaction on another connection must still start.
section("isolation", lambda: " ".join([run(a, "BEGIN"),
                                       run(a, "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"),
                                       run(a, "SELECT 1"), run(a, "COMMIT")]))
for i in range(3):
    b.execute("SELECT 1")
    section("after", lambda: a.execute("SELECT current_setting('transaction_isolation')").fetchone()[0])
"#;

#[tokio::test]
async fn deallocations_refusals_and_transaction_settings_hold_in_their_edge_cases() {
    let s = start().await;
    let (key, url) = account_with_tenant(&s, "edges@example.com").await;
    transaction_pooling(&s, &key, &url, serde_json::json!({})).await;
    // One server connection: the two clients take turns on it.
    patch_settings(&s, &key, serde_json::json!({"max_connections": 1})).await;
    let said = run_client(python(PSYCOPG_EDGES, &url), "psycopg");
    let lines: Vec<&str> = said.lines().collect();
    assert_eq!(
        lines,
        [
            "first 10",
            "aborted BEGIN 22012 25P02 ROLLBACK",
            "kept 20",
            "pipelined 30",
            "b 40",
            "recovered 50",
            "quoted SET 26000 RESET",
            "isolation BEGIN SET SELECT 1 COMMIT",
            "after read committed",
            "after read committed",
            "after read committed",
        ],
        "{said}"
    );
}

/// psycopg: connects, then on a line from its input sends an INSERT (which waits).
const PSYCOPG_LATE_INSERT: &str = r#"
import sys, psycopg
c = psycopg.connect(sys.argv[1], autocommit=True)
print("connected", flush=True)
sys.stdin.readline()
c.execute("INSERT INTO items VALUES (42)")
print("inserted", flush=True)
"#;

#[tokio::test]
async fn a_transaction_whose_client_left_while_it_waited_never_runs() {
    use std::io::{BufRead, BufReader, Write};
    let s = start().await;
    let (key, url) = account_with_tenant(&s, "left@example.com").await;
    transaction_pooling(&s, &key, &url, serde_json::json!({"max_connections": 1})).await;
    let spawn = |script: &str| {
        let mut child = python(script, &url)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python runs");
        let mut out = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        out.read_line(&mut line).expect("read");
        (child, line)
    };
    // A client that has logged in; then the one server connection is taken by an open
    // transaction.
    let (mut late, said) = spawn(PSYCOPG_LATE_INSERT);
    assert_eq!(said, "connected\n");
    let (mut holder, said) = spawn(PSYCOPG_HOLDER);
    assert_eq!(said, "holding\n");
    // The client sends its INSERT, which waits for the connection; then the client dies.
    late.stdin
        .as_mut()
        .expect("stdin")
        .write_all(b"go\n")
        .expect("write");
    tokio::time::sleep(Duration::from_secs(2)).await;
    late.kill().expect("kill the client");
    let _ = late.wait();
    // The connection is given back; the INSERT must not run for no one.
    drop(holder.stdin.take());
    holder.wait().expect("holder ends");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        psql_with_options(&url, "", "SELECT count(*) FROM items WHERE id = 42").as_deref(),
        Ok("0"),
        "the abandoned INSERT ran"
    );
}

/// psycopg: a client in LATIN1 with a non-ASCII setting and a long one; another client takes
/// the one server connection in between.
const PSYCOPG_ENCODED_SETTINGS: &str = r#"
import sys, psycopg
url = sys.argv[1]
a = psycopg.connect(url, autocommit=True)
b = psycopg.connect(url, autocommit=True)
a.execute("SET client_encoding = 'LATIN1'")
a.execute("SELECT set_config('app.name', %s, false)", ("José",))
a.execute("SELECT set_config('app.big', repeat('x', 100000), false)")
for _ in range(2):
    b.execute("SELECT 1")
    row = a.execute("SELECT current_setting('client_encoding'), current_setting('app.name'), "
                    "length(current_setting('app.big'))").fetchone()
    print(*row)
"#;

#[tokio::test]
async fn settings_travel_whatever_their_encoding_and_length() {
    let s = start().await;
    let (key, url) = account_with_tenant(&s, "latin@example.com").await;
    transaction_pooling(&s, &key, &url, serde_json::json!({"max_connections": 1})).await;
    let said = run_client(python(PSYCOPG_ENCODED_SETTINGS, &url), "psycopg");
    assert_eq!(
        said.lines().collect::<Vec<_>>(),
        ["LATIN1 José 100000", "LATIN1 José 100000"],
        "{said}"
    );
}

/// psycopg: two clients, two server connections; then the clients take turns.
const PSYCOPG_AFFINITY: &str = r#"
import sys, psycopg
url = sys.argv[1]
a = psycopg.connect(url, autocommit=True)
b = psycopg.connect(url, autocommit=True)
a.execute("BEGIN")
a.execute("SELECT 1")
b.execute("SELECT 1")
a.execute("COMMIT")
pa, pb = set(), set()
for _ in range(10):
    pa.add(a.execute("SELECT pg_backend_pid()").fetchone()[0])
    pb.add(b.execute("SELECT pg_backend_pid()").fetchone()[0])
print(len(pa), len(pb), pa == pb)
"#;

#[tokio::test]
async fn a_client_takes_back_the_connection_it_used_last_when_it_is_free() {
    let s = start().await;
    let (key, url) = account_with_tenant(&s, "affinity@example.com").await;
    transaction_pooling(&s, &key, &url, serde_json::json!({"max_connections": 2})).await;
    // Each keeps its own connection, which then needs no reset between its transactions.
    let said = run_client(python(PSYCOPG_AFFINITY, &url), "psycopg");
    assert_eq!(said, "1 1 False");
}

/// Clients on different workers share the tenant's server connections: with one allowed,
/// every transaction of two clients (each on a worker of its own, the least busy taking each
/// new session) runs on the same server backend, which moves between the workers' event loops,
/// instead of each worker opening its own.
#[tokio::test]
async fn workers_share_a_tenants_server_connections() {
    let s = start().await;
    let (key, url) = account_with_tenant(&s, "share@example.com").await;
    transaction_pooling(&s, &key, &url, serde_json::json!({})).await;
    patch_settings(&s, &key, serde_json::json!({"max_connections": 1})).await;
    let mut a = sqlx::PgConnection::connect(&url).await.expect("a");
    let mut b = sqlx::PgConnection::connect(&url).await.expect("b");
    let mut pids = std::collections::BTreeSet::new();
    for _ in 0..5 {
        for c in [&mut a, &mut b] {
            let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
                .fetch_one(&mut *c)
                .await
                .expect("query");
            pids.insert(pid);
        }
    }
    assert_eq!(
        pids.len(),
        1,
        "server backends used: {pids:?}\n{}",
        s.log_tail()
    );
}

/// A server connection that one worker keeps idle and the server ends meanwhile is not handed
/// to a client on another worker: that client's next transaction runs on a new connection.
#[tokio::test]
async fn a_connection_the_server_ended_is_not_taken_over_by_another_worker() {
    let s = start().await;
    let (key, url) = account_with_tenant(&s, "ended@example.com").await;
    transaction_pooling(&s, &key, &url, serde_json::json!({})).await;
    patch_settings(&s, &key, serde_json::json!({"max_connections": 1})).await;
    let pid_query = "SELECT pg_backend_pid()";
    // Two clients, on the two workers, one server connection between them; `a` used it last.
    let mut a = sqlx::PgConnection::connect(&url).await.expect("a");
    let mut b = sqlx::PgConnection::connect(&url).await.expect("b");
    let first: i32 = sqlx::query_scalar(pid_query)
        .fetch_one(&mut a)
        .await
        .expect("a's query");

    let admin_url = s.managed_admin_url("postgres").expect("admin url");
    let mut admin = sqlx::PgConnection::connect(&admin_url)
        .await
        .expect("admin");
    sqlx::query("SELECT pg_terminate_backend($1)")
        .bind(first)
        .execute(&mut admin)
        .await
        .expect("terminate");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let alive: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1)")
                .bind(first)
                .fetch_one(&mut admin)
                .await
                .expect("pg_stat_activity");
        if !alive {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the backend lived on");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let next: i32 = sqlx::query_scalar(pid_query)
        .fetch_one(&mut b)
        .await
        .expect("b's query runs on a live connection");
    assert_ne!(next, first);
}
