//! The MySQL proxy with real clients: the `mariadb` command-line client, PyMySQL, MariaDB's
//! Connector/Node.js (which takes MariaDB's metadata caching for its prepared statements) and
//! sqlx, each over TLS with tdb's generated CA, to a tenant and to a workspace: text and
//! prepared statements, a transaction rolled back, a large result, and the server's own error
//! numbers.
//! Then the walls: what a tenant's credential may not open, name or run, and handshakes that
//! are not MySQL.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use sqlx::mysql::{MySqlConnectOptions, MySqlSslMode};
use sqlx::{Connection, Row};
use tdb_testkit::TdbServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What a client needs to reach one database through the proxy.
struct Target {
    user: String,
    password: String,
    database: String,
}

impl Target {
    fn of(connection: &Value) -> Self {
        Self {
            user: str_of(connection, "username").to_string(),
            password: str_of(connection, "password").to_string(),
            database: str_of(connection, "database").to_string(),
        }
    }
}

/// A MySQL blueprint `shop` (table `items`) deployed, tenants `acme` and `globex`; returns the
/// key, the workspace's and acme's and globex's targets.
async fn setup(s: &TdbServer) -> (String, Target, Target, Target) {
    let key = str_of(&signup(s, "proxy@example.com", "Shop").await, "api_key").to_string();
    let body = json!({"name": "shop", "database": "MySQL", "mode": "tenant"});
    let (st, ws) = post(s, "/workspaces", Some(&key), body).await;
    assert_eq!(st, 201, "{ws}\n{}", s.log_tail());
    ws_query(
        s,
        &key,
        "shop",
        "CREATE TABLE items (id int AUTO_INCREMENT PRIMARY KEY, name varchar(64) NOT NULL UNIQUE, \
         qty int NOT NULL DEFAULT 0)",
    )
    .await;
    assert_eq!(
        deploy_and_wait(s, &key, "shop").await["status"],
        "completed"
    );
    let mut tenants = Vec::new();
    for name in ["acme", "globex"] {
        let body = json!({"tenant_id": name, "databases": [{"blueprint": "shop"}]});
        let (st, t) = post(s, "/tenants", Some(&key), body).await;
        assert_eq!(st, 201, "{t}");
        tenants.push(Target::of(&t["databases"][0]["connection"]));
    }
    let globex = tenants.pop().expect("globex");
    let acme = tenants.pop().expect("acme");
    (key, Target::of(&ws["connection"]), acme, globex)
}

fn ca(s: &TdbServer) -> String {
    s.data_dir().join("tls/ca.crt").display().to_string()
}

/// `mariadb` over TLS, verifying the proxy's certificate; `(success, stdout + stderr)`.
fn mariadb(s: &TdbServer, t: &Target, sql: &str) -> (bool, String) {
    let tls = [
        "--host=127.0.0.1".to_string(),
        format!("--port={}", s.mysql_port),
        "--ssl".to_string(),
        format!("--ssl-ca={}", ca(s)),
        "--ssl-verify-server-cert".to_string(),
    ];
    mariadb_over(&tls, t, sql)
}

/// `mariadb` in plaintext on the proxy's Unix socket at `socket`.
fn mariadb_on_socket(socket: &std::path::Path, t: &Target, sql: &str) -> (bool, String) {
    let args = [
        format!("--socket={}", socket.display()),
        "--skip-ssl".into(),
    ];
    mariadb_over(&args, t, sql)
}

/// `mariadb` reaching the proxy as `how` says; `(success, stdout + stderr)`.
fn mariadb_over(how: &[String], t: &Target, sql: &str) -> (bool, String) {
    let out = Command::new("mariadb")
        .args(how)
        .args(["--batch", "--skip-column-names"])
        .arg(format!("--user={}", t.user))
        .arg(&t.database)
        .arg("-e")
        .arg(sql)
        .env("MYSQL_PWD", &t.password)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("mariadb runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text.trim().to_string())
}

fn sqlx_options(s: &TdbServer, t: &Target) -> MySqlConnectOptions {
    MySqlConnectOptions::new()
        .host("localhost")
        .port(s.mysql_port)
        .username(&t.user)
        .password(&t.password)
        .database(&t.database)
        .ssl_mode(MySqlSslMode::VerifyIdentity)
        .ssl_ca(ca(s))
}

const PYMYSQL: &str = r#"
import sys, pymysql
port, user, password, db, ca = sys.argv[1:6]
conn = pymysql.connect(host="localhost", port=int(port), user=user, password=password,
                       database=db, ssl={"ca": ca, "check_hostname": True})
cur = conn.cursor()
assert cur.execute("SELECT 1") == 1
cur.execute("DELETE FROM items WHERE name LIKE 'py-%'")
# PyMySQL interpolates parameters itself; the server's own prepared statements through SQL.
cur.execute("PREPARE pq FROM 'SELECT ? + ?'")
cur.execute("SET @a = 40, @b = 2")
cur.execute("EXECUTE pq USING @a, @b")
assert cur.fetchone()[0] == 42
cur.execute("DEALLOCATE PREPARE pq")
cur.executemany("INSERT INTO items (name, qty) VALUES (%s, %s)", [("py-a", 1), ("py-b", 2)])
conn.commit()
conn.begin()
cur.execute("INSERT INTO items (name, qty) VALUES ('py-gone', 9)")
conn.rollback()
cur.execute("SELECT COUNT(*) FROM items WHERE name LIKE 'py-%'")
assert cur.fetchone()[0] == 2, "rolled back"
cur.execute("SELECT seq, REPEAT('x', 200) FROM seq_1_to_50000")
rows = cur.fetchall()
assert len(rows) == 50000 and rows[-1][0] == 50000, len(rows)
codes = []
for sql in ["INSERT INTO items (name) VALUES ('py-a')", "SELEC 1"]:
    try:
        cur.execute(sql)
    except pymysql.err.MySQLError as e:
        codes.append(e.args[0])
conn.commit()
print(",".join(str(c) for c in codes), conn.get_server_info(), sep=";")
"#;

/// Connector/Node.js: the binary protocol throughout (`execute`), each statement prepared once
/// and executed again without its column definitions (the connector takes metadata caching
/// when the greeting offers it), a large result, a transaction rolled back, error numbers.
const NODE_MARIADB: &str = r#"
const fs = require('fs');
const mariadb = require('mariadb');
const [port, user, password, database, ca] = process.argv.slice(1);
async function main() {
  const conn = await mariadb.createConnection({
    host: 'localhost', port: Number(port), user, password, database,
    ssl: { ca: fs.readFileSync(ca), rejectUnauthorized: true },
  });
  await conn.execute("DELETE FROM items WHERE name LIKE 'js-%'");
  await conn.execute('INSERT INTO items (name, qty) VALUES (?, ?)', ['js-a', 5]);
  await conn.execute('INSERT INTO items (name, qty) VALUES (?, ?)', ['js-b', 6]);
  const seen = [];
  for (const name of ['js-a', 'js-b', 'js-a', 'js-b']) {
    const rows = await conn.execute('SELECT name, qty FROM items WHERE name = ?', [name]);
    seen.push(`${rows[0].name}=${rows[0].qty}`);
  }
  const big = await conn.execute("SELECT seq, REPEAT('j', 100) AS pad FROM seq_1_to_20000 WHERE seq > ?", [0]);
  await conn.beginTransaction();
  await conn.execute('DELETE FROM items WHERE name LIKE ?', ['js-%']);
  await conn.rollback();
  const kept = await conn.execute('SELECT COUNT(*) AS n FROM items WHERE name LIKE ?', ['js-%']);
  const codes = [];
  for (const [sql, values] of [['INSERT INTO items (name) VALUES (?)', ['js-a']], ['SELEC ?', [1]]]) {
    try {
      await conn.execute(sql, values);
    } catch (e) {
      codes.push(e.errno);
    }
  }
  console.log([seen.join(','), big.length, String(big[big.length - 1].seq), String(kept[0].n), codes.join(',')].join(';'));
  await conn.end();
}
main().catch((e) => { console.error(e); process.exit(1); });
"#;

#[tokio::test]
async fn real_clients_use_a_tenant_and_a_workspace_over_tls() {
    let s = start().await;
    let (_key, ws, acme, _globex) = setup(&s).await;

    for target in [&acme, &ws] {
        // The mariadb client, over TLS with the certificate checked: text and (SQL) prepared
        // statements, a transaction rolled back, a large result, error numbers.
        let (ok, out) = mariadb(
            &s,
            target,
            "INSERT INTO items (name, qty) VALUES ('cli', 3); \
             PREPARE q FROM 'SELECT name, qty FROM items WHERE name = ?'; \
             SET @n = 'cli'; EXECUTE q USING @n; DEALLOCATE PREPARE q; \
             START TRANSACTION; DELETE FROM items; ROLLBACK; \
             SELECT COUNT(*) FROM items WHERE name = 'cli'; \
             SELECT COUNT(*) FROM (SELECT seq, REPEAT('z', 100) FROM seq_1_to_40000) AS big",
        );
        assert!(ok, "{out}\n{}", s.log_tail());
        assert_eq!(out, "cli\t3\n1\n40000", "{}", target.database);
        let (ok, out) = mariadb(&s, target, "SELECT seq FROM seq_1_to_40000");
        assert!(ok && out.lines().count() == 40000, "{}", out.len());
        // The client's own account of its connection (the server's Ssl_cipher describes the
        // proxy's leg to MariaDB, a private socket).
        let (ok, out) = mariadb(&s, target, "status");
        assert!(
            ok && out.contains("Cipher in use is TLS"),
            "{out}\n{}",
            s.log_tail()
        );
        let (ok, out) = mariadb(&s, target, "INSERT INTO items (name) VALUES ('cli')");
        assert!(
            !ok && out.contains("1062") && out.contains("23000"),
            "{out}"
        );
        let (ok, out) = mariadb(&s, target, "SELEC 1");
        assert!(
            !ok && out.contains("1064") && out.contains("42000"),
            "{out}"
        );

        // PyMySQL: text statements, a transaction rolled back, a large result, error numbers.
        let mut py = python(PYMYSQL, &s.mysql_port.to_string());
        py.args([&target.user, &target.password, &target.database, &ca(&s)]);
        let out = run_client(py, "PyMySQL");
        assert!(out.starts_with("1062,1064;"), "{out}");

        // Connector/Node.js, on the binary protocol with metadata caching.
        let mut node = Command::new("node");
        node.env("NODE_PATH", clients_dir().join("node/node_modules"))
            .args(["-e", NODE_MARIADB, &s.mysql_port.to_string()])
            .args([&target.user, &target.password, &target.database, &ca(&s)]);
        let out = run_client(node, "Connector/Node.js");
        assert_eq!(
            out, "js-a=5,js-b=6,js-a=5,js-b=6;20000;20000;2;1062,1064",
            "{}",
            target.database
        );
    }

    // sqlx: prepared statements, a transaction rolled back, a large result, error numbers.
    for target in [&acme, &ws] {
        let mut conn = sqlx::MySqlConnection::connect_with(&sqlx_options(&s, target))
            .await
            .unwrap_or_else(|e| panic!("{}: {e}\n{}", target.database, s.log_tail()));
        let name = format!("sqlx-{}", target.database);
        sqlx::query("INSERT INTO items (name, qty) VALUES (?, ?)")
            .bind(&name)
            .bind(7)
            .execute(&mut conn)
            .await
            .expect("prepared insert");
        let qty: i32 = sqlx::query_scalar("SELECT qty FROM items WHERE name = ?")
            .bind(&name)
            .fetch_one(&mut conn)
            .await
            .expect("prepared select");
        assert_eq!(qty, 7);
        let mut tx = conn.begin().await.expect("begin");
        sqlx::query("DELETE FROM items")
            .execute(&mut *tx)
            .await
            .expect("delete");
        tx.rollback().await.expect("rollback");
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM items")
            .fetch_one(&mut conn)
            .await
            .expect("count");
        assert!(n >= 1, "the delete was rolled back");
        let big = sqlx::query("SELECT seq, REPEAT('y', 300) AS pad FROM seq_1_to_30000")
            .fetch_all(&mut conn)
            .await
            .expect("large result");
        assert_eq!(big.len(), 30000);
        assert_eq!(big[29999].get::<u64, _>(0), 30000);
        let dup = sqlx::query("INSERT INTO items (name) VALUES (?)")
            .bind(&name)
            .execute(&mut conn)
            .await
            .expect_err("duplicate");
        let code = dup
            .as_database_error()
            .and_then(|e| e.code())
            .map(|c| c.to_string());
        assert_eq!(code.as_deref(), Some("23000"), "{dup}");
        assert!(dup.to_string().contains("1062"), "{dup}");
        let syntax = sqlx::raw_sql("SELEC 1")
            .execute(&mut conn)
            .await
            .expect_err("syntax");
        assert!(syntax.to_string().contains("1064"), "{syntax}");
        conn.close().await.expect("close");
    }

    // DDL through the workspace's connection is captured on its blueprint.
    let (ok, out) = mariadb(&s, &ws, "CREATE INDEX items_qty ON items (qty)");
    assert!(ok, "{out}");
    let (_, diff) = get(&s, "/workspaces/shop/diff", &_key).await;
    assert!(diff.to_string().contains("items_qty"), "{diff}");

    // Every statement reaches the query log with source proxy.
    let logged = wait_log(&s, &_key, "acme", "cli").await;
    assert!(logged.to_string().contains("proxy"), "{logged}");
}

async fn wait_log(s: &TdbServer, key: &str, tenant: &str, needle: &str) -> Value {
    for _ in 0..300 {
        let (st, logs) = get(s, &format!("/tenants/{tenant}/logs?search={needle}"), key).await;
        assert_eq!(st, 200, "{logs}");
        if logs.to_string().contains(needle) {
            return logs;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no log of {needle}\n{}", s.log_tail());
}

#[tokio::test]
async fn a_tenant_credential_reaches_its_own_database_only() {
    // The proxy also listens on a Unix socket (`--mysql-socket`): the same walls hold there.
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("mysql.sock");
    let s = start_with_env(&[("TDB_MYSQL_SOCKET", &socket.display().to_string())]).await;
    let (key, _ws, acme, globex) = setup(&s).await;
    let ok = |sql: &str| {
        let (ok, out) = mariadb(&s, &acme, sql);
        assert!(ok, "{sql}: {out}");
        out
    };
    let refused = |sql: &str, what: &str| {
        let (ok, out) = mariadb(&s, &acme, sql);
        assert!(!ok, "{sql} ran: {out}");
        assert!(out.contains(what), "{sql}: {out}");
    };
    assert_eq!(ok("SELECT DATABASE()"), "shop__acme");
    let dbs = ok("SHOW DATABASES");
    assert!(!dbs.contains("globex") && !dbs.contains("mysql"), "{dbs}");
    refused("USE shop__globex", "1044");
    refused("USE mysql", "1044");
    refused("USE shopxyacme", "1044");
    refused("SELECT * FROM shop__globex.items", "denied");
    refused("SELECT * FROM mysql.user", "denied");
    let schemas = ok("SELECT DISTINCT table_schema FROM information_schema.tables");
    assert!(
        !schemas.contains("globex") && !schemas.contains("mysql"),
        "{schemas}"
    );
    refused(
        "CREATE TABLE t (a int)",
        "DDL not allowed on tenant databases",
    );
    refused("DROP TABLE items", "DDL not allowed on tenant databases");
    refused("GRANT ALL ON *.* TO 'x'@'%'", "ERROR");
    refused("CREATE USER 'x'@'%' IDENTIFIED BY 'y'", "ERROR");
    refused("SET PASSWORD = PASSWORD('y')", "ERROR");
    refused("LOAD DATA INFILE '/etc/passwd' INTO TABLE items", "ERROR");
    refused("SELECT * FROM items INTO OUTFILE '/tmp/tdb-leak'", "ERROR");
    refused("DROP DATABASE shop__acme", "ERROR");
    // The other tenant is untouched, and its own credential still works.
    let (ok_g, out) = mariadb(&s, &globex, "SELECT COUNT(*) FROM items");
    assert!(ok_g, "{out}");
    // A wrong password is refused with MySQL's own error.
    let wrong = Target {
        password: "wrong".into(),
        ..Target::of(&json!({"username": acme.user, "password": "", "database": acme.database}))
    };
    let (ok_w, out) = mariadb(&s, &wrong, "SELECT 1");
    assert!(!ok_w && out.contains("1045"), "{out}");

    // On the Unix socket, which any local user may open, the login is what admits: a client
    // in plaintext (a socket never leaves the machine) reaches its own database, and the
    // walls and the password check are those of TCP.
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let meta = std::fs::metadata(&socket).expect("the socket exists");
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o666);
    let sql = "SELECT 'on_socket', DATABASE(), COUNT(*) FROM items";
    let (ok_s, out) = mariadb_on_socket(&socket, &acme, sql);
    assert!(ok_s, "{out}\n{}", s.log_tail());
    assert_eq!(out, "on_socket\tshop__acme\t0");
    for (sql, what) in [
        ("USE shop__globex", "1044"),
        ("SELECT * FROM shop__globex.items", "denied"),
        (
            "CREATE TABLE t (a int)",
            "DDL not allowed on tenant databases",
        ),
    ] {
        let (ran, out) = mariadb_on_socket(&socket, &acme, sql);
        assert!(!ran && out.contains(what), "{sql} on the socket: {out}");
    }
    let (ok_w, out) = mariadb_on_socket(&socket, &wrong, "SELECT 1");
    assert!(!ok_w && out.contains("1045"), "{out}");
    // Its statements reach the query log as any proxy client's do.
    let logs = wait_log(&s, &key, "acme", "on_socket").await;
    let entries = logs["logs"].as_array().expect("logs");
    let entry = entries
        .iter()
        .find(|e| e["query"] == sql)
        .unwrap_or_else(|| panic!("the socket's statement is logged: {logs}"));
    assert_eq!(entry["source"], "proxy", "{entry}");
    // tdb removes its socket when it stops.
    let mut s = s;
    s.stop().expect("tdb stops");
    assert!(!socket.exists(), "the socket outlived tdb");
}

#[tokio::test]
async fn handshakes_that_are_not_mysql_are_closed() {
    let s = start().await;
    let port = s.mysql_port;
    let garbage: Vec<(&str, Vec<u8>)> = vec![
        ("short", vec![0x01, 0x00]),
        (
            "oversized",
            vec![0xff, 0xff, 0xff, 0x01, 0x85, 0xa6, 0xff, 0x01],
        ),
        ("wrong sequence", {
            let mut p = vec![0x20, 0x00, 0x00, 0x07];
            p.extend([0u8; 32]);
            p
        }),
        ("SSL request then garbage", {
            // SSLRequest: capabilities with CLIENT_SSL, max packet, charset, filler.
            let mut p = vec![0x20, 0x00, 0x00, 0x01, 0x00, 0x0a, 0xa6, 0x01];
            p.extend([0, 0, 0, 1, 0x21]);
            p.extend([0u8; 23]);
            p.extend(b"this is not a TLS client hello at all");
            p
        }),
    ];
    for (what, bytes) in garbage {
        let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        let mut greeting = [0u8; 4];
        conn.read_exact(&mut greeting)
            .await
            .expect("greeting header");
        let len = usize::from(greeting[0]) | usize::from(greeting[1]) << 8;
        let mut body = vec![0u8; len];
        conn.read_exact(&mut body).await.expect("greeting");
        assert_eq!(body[0], 10, "protocol 10");
        let _ = conn.write_all(&bytes).await;
        let mut rest = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(20), conn.read_to_end(&mut rest)).await;
        assert!(read.is_ok(), "{what}: the proxy kept the connection open");
    }
    // The proxy still serves handshakes: a real client is told its login is wrong.
    let nobody = Target {
        user: "nobody".into(),
        password: "wrong".into(),
        database: "shop__acme".into(),
    };
    let (ok, out) = mariadb(&s, &nobody, "SELECT 1");
    assert!(!ok && out.contains("1045"), "{out}");
    let log = std::fs::read_to_string(s.log_path()).unwrap_or_default();
    assert!(!log.contains("panicked"), "{log}");
}
