//! Sessions through the proxy to the real server, one scenario after another on one server
//! (starting MariaDB takes seconds).

use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use sqlx::Connection as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::mariadb::*;
use super::raw::{self, Raw};
use super::{Fixture, KEY, OLD_KEY, QUERY_TIMEOUT_MS, READ_KEY, TENANT_ID};
use crate::PlaintextPolicy;
use crate::mysql::command::code;
use crate::mysql::response::Expect;

/// How the `mariadb` client connects.
#[derive(Clone, Copy)]
enum Transport {
    Plain,
    /// TLS, the proxy's certificate verified against its CA.
    Tls,
}

/// Runs the `mariadb` client; its stdout, or its stderr as the error.
async fn cli(
    f: &Fixture,
    (user, password): (&str, &str),
    db: &str,
    transport: Transport,
    extra: &[&str],
    sql: &str,
) -> anyhow::Result<Result<String, String>> {
    let mut cmd = tokio::process::Command::new("mariadb");
    cmd.arg("--no-defaults")
        .args(["-h", "127.0.0.1", "--protocol=tcp"])
        .arg(format!("--port={}", f.addr.port()))
        .arg(format!("--user={user}"))
        .arg(format!("--password={password}"))
        .arg(format!("--database={db}"))
        .args(["--batch", "--skip-column-names", "--connect-timeout=10"]);
    match transport {
        Transport::Plain => cmd.arg("--skip-ssl"),
        Transport::Tls => cmd
            .arg(format!("--ssl-ca={}", f.ca.display()))
            .arg("--ssl-verify-server-cert"),
    };
    let out = cmd.args(extra).args(["-e", sql]).output().await?;
    Ok(match out.status.success() {
        true => Ok(String::from_utf8_lossy(&out.stdout).into_owned()),
        false => Err(String::from_utf8_lossy(&out.stderr).into_owned()),
    })
}

async fn server() -> anyhow::Result<TestMariadb> {
    tokio::task::spawn_blocking(TestMariadb::start).await?
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_log_in_and_are_refused() -> anyhow::Result<()> {
    let db = server().await?;
    let f = Fixture::start(db.port, PlaintextPolicy::Loopback).await?;
    logins_with_the_mariadb_client(&f).await.context("logins")?;
    tenant_refusals(&f).await.context("tenant refusals")?;
    sqlx_driver(&f).await.context("sqlx")?;
    f.finish().await?;
    // A proxy of its own: the logins above failed too, from the same address.
    let fresh = Fixture::start(db.port, PlaintextPolicy::Loopback).await?;
    failed_logins_are_throttled(&fresh)
        .await
        .context("throttle")?;
    fresh.finish().await?;
    let strict = Fixture::start(db.port, PlaintextPolicy::Refuse).await?;
    plaintext_refused(&strict)
        .await
        .context("plaintext refused")?;
    strict.finish().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_and_limits() -> anyhow::Result<()> {
    let db = server().await?;
    let f = Fixture::start(db.port, PlaintextPolicy::Loopback).await?;
    commands(&f, &db).await.context("commands")?;
    cached_metadata(&f).await.context("cached metadata")?;
    statement_timeout(&f).await.context("statement timeout")?;
    workspace(&f).await.context("workspace")?;
    large_packets(&f).await.context("large packets")?;
    f.finish().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_end_cleanly() -> anyhow::Result<()> {
    let db = server().await?;
    let f = Fixture::start(db.port, PlaintextPolicy::Loopback).await?;
    kill_and_hold(&f, &db).await.context("kill and hold")?;
    client_gone(&f, &db).await.context("client gone")?;
    malformed_handshakes(&f)
        .await
        .context("malformed handshakes")?;
    f.finish().await?;
    // Shutdown ends the proxy's sessions: proxies of their own.
    let f = Fixture::with_config(db.port, grace(SHUTDOWN_GRACE)).await?;
    shutdown(&f).await.context("shutdown")?;
    f.finish().await?;
    let f = Fixture::with_config(db.port, grace(SHORT_GRACE)).await?;
    shutdown_while_held(&f, &db)
        .await
        .context("shutdown while held")?;
    f.finish().await
}

const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Shorter than the routes' query timeout.
const SHORT_GRACE: Duration = Duration::from_millis(500);

fn grace(shutdown_grace: Duration) -> crate::ProxyConfig {
    crate::ProxyConfig {
        plaintext: PlaintextPolicy::Loopback,
        shutdown_grace,
        ..crate::ProxyConfig::default()
    }
}

fn shutting_down(p: &crate::mysql::packet::Packet) -> bool {
    raw::error(p).is_some_and(|e| e.code == 1053)
}

/// Shutdown ends a session between commands at once, lets an open transaction go on until it
/// ends or the grace runs out, and tells each client why.
async fn shutdown(f: &Fixture) -> anyhow::Result<()> {
    let within = Duration::from_secs(20);
    let mut idle = login(f, TENANT_DB).await?;
    let mut finishing = login(f, TENANT_DB).await?;
    let mut lingering = login(f, TENANT_DB).await?;
    finishing.query("BEGIN").await?;
    lingering.query("BEGIN").await?;
    let started = Instant::now();
    f.proxy.shutdown.cancel();
    // The transaction runs to its end, and the session ends after it.
    let inside = finishing.query("SELECT 1").await?;
    ensure!(raw::first_column(&inside) == ["1"], "{inside:?}");
    let committed = finishing.query("COMMIT").await?;
    ensure!(raw::error(&committed[0]).is_none(), "{committed:?}");
    let told = tokio::time::timeout(within, finishing.next()).await??;
    ensure!(shutting_down(&told), "{told:?}");
    // The idle session was ended at once.
    let told = tokio::time::timeout(within, idle.next()).await??;
    ensure!(shutting_down(&told), "{told:?}");
    ensure!(
        tokio::time::timeout(within, idle.next()).await?.is_err(),
        "the idle session goes on"
    );
    // One that does not end is ended when the grace runs out.
    let told = tokio::time::timeout(within, lingering.next()).await??;
    ensure!(shutting_down(&told), "{told:?}");
    ensure!(
        started.elapsed() >= SHUTDOWN_GRACE,
        "ended {:?} after the shutdown, before its grace",
        started.elapsed()
    );
    Ok(())
}

/// A command parked by a hold when shutdown comes never runs: the session ends at once, as
/// the PostgreSQL proxy's parked clients do, before the grace (shorter than the query timeout)
/// could run out.
async fn shutdown_while_held(f: &Fixture, db: &TestMariadb) -> anyhow::Result<()> {
    let mut parked = login(f, TENANT_DB).await?;
    f.proxy.gates.hold(
        TENANT_ID,
        tokio::time::Instant::now() + Duration::from_secs(30),
    );
    // MariaDB's own limit lifted: had it run, only the proxy's timer would stop it.
    let sleep = "SET STATEMENT max_statement_time = 0 FOR SELECT SLEEP(30) /* parked */";
    let mut command = vec![code::QUERY];
    command.extend_from_slice(sleep.as_bytes());
    parked.send(0, &command).await?;
    // Time to reach the gate: had it not, shutdown would end the session at once, with the
    // same error.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    f.proxy.shutdown.cancel();
    let told = tokio::time::timeout(Duration::from_secs(20), parked.next()).await??;
    ensure!(
        shutting_down(&told),
        "{told:?} after {:?} (the query timeout is {QUERY_TIMEOUT_MS} ms)",
        started.elapsed()
    );
    f.proxy.gates.release(TENANT_ID);
    gone_from_server(db, "parked").await
}

async fn logins_with_the_mariadb_client(f: &Fixture) -> anyhow::Result<()> {
    let sql = "SELECT name FROM items ORDER BY id; SELECT DATABASE(); SELECT @@max_statement_time";
    for (transport, extra) in [
        (Transport::Tls, &[][..]),
        (Transport::Plain, &[][..]),
        (
            Transport::Tls,
            &["--default-auth=caching_sha2_password"][..],
        ),
        (
            Transport::Plain,
            &["--default-auth=caching_sha2_password"][..],
        ),
    ] {
        let out = cli(f, KEY, TENANT_DB, transport, extra, sql).await?;
        ensure!(
            out == Ok("one\ntwo\nthree\nshop__acme\n1.500000\n".into()),
            "{extra:?}: {out:?}"
        );
    }
    // A wrong key, an unknown user: the same answer, in plain text and over TLS, with either
    // plugin (over TLS caching_sha2 goes on to full authentication first).
    for (user, transport, extra) in [
        (KEY.0, Transport::Plain, &[][..]),
        ("nobody", Transport::Plain, &[][..]),
        (
            KEY.0,
            Transport::Tls,
            &["--default-auth=caching_sha2_password"][..],
        ),
        (
            "nobody",
            Transport::Tls,
            &["--default-auth=caching_sha2_password"][..],
        ),
    ] {
        let out = cli(f, (user, "wrong"), TENANT_DB, transport, extra, "SELECT 1").await?;
        let Err(e) = out else {
            bail!("{user} logged in with a wrong key");
        };
        ensure!(
            e.contains("1045")
                && e.contains(&format!(
                    "Access denied for user '{user}'@'127.0.0.1' (using password: YES)"
                )),
            "{e}"
        );
    }
    // A credential without MySQL digests: only with its key over TLS (switched to
    // caching_sha2_password and asked for full authentication).
    let old = cli(f, OLD_KEY, TENANT_DB, Transport::Tls, &[], "SELECT 1").await?;
    ensure!(old == Ok("1\n".into()), "{old:?}");
    let old = cli(f, OLD_KEY, TENANT_DB, Transport::Plain, &[], "SELECT 1").await?;
    ensure!(old.as_ref().is_err_and(|e| e.contains("1045")), "{old:?}");
    // A character set where a quote byte may end a character: statements could not be
    // checked in it.
    let gbk = ["--default-character-set=gbk"];
    let out = cli(f, KEY, TENANT_DB, Transport::Tls, &gbk, "SELECT 1").await?;
    ensure!(out.as_ref().is_err_and(|e| e.contains("1115")), "{out:?}");
    let out = cli(f, KEY, TENANT_DB, Transport::Tls, &[], "SET NAMES sjis").await?;
    ensure!(out.as_ref().is_err_and(|e| e.contains("1115")), "{out:?}");
    // A read key on a database without a read role.
    let read = cli(f, READ_KEY, TENANT_DB, Transport::Tls, &[], "SELECT 1").await?;
    ensure!(read.as_ref().is_err_and(|e| e.contains("1044")), "{read:?}");
    Ok(())
}

async fn tenant_refusals(f: &Fixture) -> anyhow::Result<()> {
    for (sql, code, message) in [
        (
            "CREATE TABLE t2 (id INT)",
            "1142",
            "DDL not allowed on tenant databases. Deploy schema through blueprints.",
        ),
        (
            "DROP TABLE items",
            "1142",
            "DDL not allowed on tenant databases",
        ),
        ("USE mysql", "1044", "to database 'mysql'"),
        ("GRANT ALL ON *.* TO acme_app", "1227", "GRANT and REVOKE"),
        ("KILL 12345", "1095", "You are not owner of thread 12345"),
        (
            "SELECT * FROM items INTO OUTFILE '/tmp/x'",
            "1227",
            "OUTFILE",
        ),
        (
            "LOAD DATA LOCAL INFILE '/etc/hostname' INTO TABLE items",
            "1227",
            "LOAD DATA",
        ),
        (
            "SET GLOBAL max_connections = 5",
            "1227",
            "server-wide settings",
        ),
    ] {
        let out = cli(f, KEY, TENANT_DB, Transport::Tls, &[], sql).await?;
        let Err(e) = out else {
            bail!("{sql} was not refused");
        };
        ensure!(e.contains(code) && e.contains(message), "{sql}: {e}");
    }
    Ok(())
}

async fn sqlx_driver(f: &Fixture) -> anyhow::Result<()> {
    use sqlx::mysql::{MySqlConnectOptions, MySqlSslMode};
    let options = MySqlConnectOptions::new()
        .host("127.0.0.1")
        .port(f.addr.port())
        .username(KEY.0)
        .password(KEY.1)
        .database(TENANT_DB);
    for ssl in [
        options.clone().ssl_mode(MySqlSslMode::Disabled),
        options
            .clone()
            .ssl_mode(MySqlSslMode::VerifyCa)
            .ssl_ca(&f.ca),
    ] {
        let mut conn = sqlx::MySqlConnection::connect_with(&ssl).await?;
        // Prepared statements (COM_STMT_PREPARE / EXECUTE, binary rows).
        let name: String = sqlx::query_scalar("SELECT name FROM items WHERE id = ?")
            .bind(2)
            .fetch_one(&mut conn)
            .await?;
        ensure!(name == "two", "{name}");
        let ids: Vec<i32> = sqlx::query_scalar("SELECT id FROM items WHERE id >= ? ORDER BY id")
            .bind(1)
            .fetch_all(&mut conn)
            .await?;
        ensure!(ids == [1, 2, 3], "{ids:?}");
        // A transaction rolled back leaves nothing.
        let mut tx = conn.begin().await?;
        sqlx::query("INSERT INTO items VALUES (?, ?)")
            .bind(10)
            .bind("ten")
            .execute(&mut *tx)
            .await?;
        tx.rollback().await?;
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM items")
            .fetch_one(&mut conn)
            .await?;
        ensure!(n == 3, "{n} rows after a rollback");
        // Refused at prepare time, as a database error.
        let e = sqlx::query("CREATE TABLE t3 (id INT)")
            .execute(&mut conn)
            .await
            .expect_err("DDL on a tenant");
        ensure!(e.to_string().contains("DDL not allowed"), "{e}");
        conn.close().await?;
    }
    Ok(())
}

/// The commands, one by one, with the bare client.
async fn commands(f: &Fixture, db: &TestMariadb) -> anyhow::Result<()> {
    let mut c = login(f, TENANT_DB).await?;
    let ping = c.command(&[code::PING], Expect::One).await?;
    ensure!(raw::error(&ping[0]).is_none());
    for (payload, errno) in [
        (&[0x05, b'x'][..], 1047), // COM_CREATE_DB
        (&[code::STATISTICS][..], 1227),
        (&b"\x02mysql"[..], 1044), // COM_INIT_DB elsewhere
        (&[code::PROCESS_KILL, 1, 0, 0, 0][..], 1095),
    ] {
        let answer = c.command(payload, Expect::One).await?;
        let e = raw::error(&answer[0]).context("an error")?;
        ensure!(e.code == errno, "{payload:?}: {e:?}");
    }
    let home = c.command(b"\x02shop__acme", Expect::One).await?;
    ensure!(raw::error(&home[0]).is_none(), "COM_INIT_DB home");
    // COM_FIELD_LIST: the table's columns, up to an EOF.
    let fields = c.command(b"\x04items\0", Expect::FieldList).await?;
    ensure!(
        fields.len() == 3 && raw::error(&fields[0]).is_none(),
        "{fields:?}"
    );
    cursor(&mut c).await.context("cursor")?;
    // Several statements in one COM_QUERY: two result sets.
    let two = c.query("SELECT 1; SELECT 2").await?;
    ensure!(two.iter().filter(|p| raw::error(p).is_some()).count() == 0);
    // A refused part refuses the whole batch: the table is not made.
    let mixed = c.query("SELECT 1; CREATE TABLE made (i INT)").await?;
    ensure!(raw::error(&mixed[0]).is_some_and(|e| e.code == 1142));
    ensure!(
        db.sql("SHOW TABLES FROM shop__acme LIKE 'made'")?
            .is_empty()
    );
    // Reset: the session's settings go, and the proxy gives the timeout back.
    c.query("SET SESSION max_statement_time = 0").await?;
    let reset = c.command(&[code::RESET_CONNECTION], Expect::One).await?;
    ensure!(raw::error(&reset[0]).is_none(), "reset");
    let after = c.query("SELECT @@max_statement_time").await?;
    ensure!(raw::first_column(&after) == ["1.500000"], "{after:?}");
    let schema = c.query("SELECT DATABASE()").await?;
    ensure!(raw::first_column(&schema) == [TENANT_DB], "{schema:?}");
    // COM_CHANGE_USER: an error, never an OK, and the session ends.
    let change = c
        .command(&[code::CHANGE_USER, b'x', 0], Expect::One)
        .await?;
    ensure!(raw::error(&change[0]).is_some_and(|e| e.code == 1047));
    ensure!(
        c.next().await.is_err(),
        "the session goes on after COM_CHANGE_USER"
    );
    Ok(())
}

/// A prepared statement executed with a cursor, its rows fetched two at a time.
async fn cursor(c: &mut Raw) -> anyhow::Result<()> {
    let prepared = c
        .command(b"\x16SELECT id FROM items ORDER BY id", Expect::Prepare)
        .await?;
    let ok = &prepared[0].payload;
    ensure!(ok.first() == Some(&0), "{prepared:?}");
    let id: [u8; 4] = ok[1..5].try_into()?;
    // COM_STMT_EXECUTE with CURSOR_TYPE_READ_ONLY: definitions only, then rows on request.
    let mut execute = vec![code::STMT_EXECUTE];
    execute.extend_from_slice(&id);
    execute.extend_from_slice(&[1, 1, 0, 0, 0]);
    let opened = c.command(&execute, Expect::Results).await?;
    let eof = crate::mysql::reply::Eof::decode(&opened.last().context("an EOF")?.payload);
    ensure!(
        eof.is_some_and(|e| e.status & crate::mysql::reply::status::CURSOR_EXISTS != 0),
        "{opened:?}"
    );
    let mut fetch = vec![code::STMT_FETCH];
    fetch.extend_from_slice(&id);
    fetch.extend_from_slice(&2u32.to_le_bytes());
    let first = c.command(&fetch, Expect::Rows).await?;
    ensure!(first.len() == 3, "two rows and an EOF: {first:?}");
    let rest = c.command(&fetch, Expect::Rows).await?;
    ensure!(rest.len() == 2, "one row and an EOF: {rest:?}");
    let mut close = vec![code::STMT_CLOSE];
    close.extend_from_slice(&id);
    c.send(0, &close).await?;
    Ok(())
}

/// A client that takes MariaDB's metadata caching gets executes without their column
/// definitions once it has them, through to the server; one that does not gets them every time.
async fn cached_metadata(f: &Fixture) -> anyhow::Result<()> {
    use crate::mysql::capability::ExtCaps;
    let mut c = Raw::connect(f.addr).await?;
    ensure!(
        c.greeting.caps.extensible() && c.greeting.ext == ExtCaps::CACHE_METADATA,
        "the greeting offers {:?} {:?}",
        c.greeting.caps,
        c.greeting.ext
    );
    let ok = c
        .login_with(KEY.0, KEY.1, TENANT_DB, ExtCaps(u32::MAX))
        .await?;
    ensure!(raw::error(&ok).is_none(), "{ok:?}");
    // The text protocol: the flag says the definitions follow.
    let text = c.query("SELECT name FROM items WHERE id = 2").await?;
    ensure!(text[0].payload == [1, 1], "{text:?}");
    ensure!(raw::first_column(&text) == ["two"], "{text:?}");
    let counts = executes(&mut c, 3).await?;
    // The server has sent the definitions with the prepare: every execute comes without them.
    ensure!(
        counts
            .iter()
            .all(|(count, packets, name)| count[..] == [1, 0] && *packets == 4 && name == "two"),
        "{counts:?}"
    );
    // A client that did not take it gets the definitions every time.
    let mut plain = login(f, TENANT_DB).await?;
    let counts = executes(&mut plain, 2).await?;
    ensure!(
        counts
            .iter()
            .all(|(count, packets, name)| count[..] == [1] && *packets == 5 && name == "two"),
        "{counts:?}"
    );
    Ok(())
}

/// Prepares a select of one row's name and executes it `times`: each answer's column count,
/// its number of packets and the name it returned.
async fn executes(c: &mut Raw, times: usize) -> anyhow::Result<Vec<(Vec<u8>, usize, String)>> {
    let mut prepare = vec![code::STMT_PREPARE];
    prepare.extend_from_slice(b"SELECT name FROM items WHERE id = 2");
    let prepared = c.command(&prepare, Expect::Prepare).await?;
    ensure!(raw::error(&prepared[0]).is_none(), "{prepared:?}");
    let id = prepared[0].payload.get(1..5).context("a statement id")?;
    let mut execute = vec![code::STMT_EXECUTE];
    execute.extend_from_slice(id);
    execute.extend_from_slice(&[0, 1, 0, 0, 0]);
    let mut answers = Vec::new();
    for _ in 0..times {
        let answer = c.command(&execute, Expect::Results).await?;
        ensure!(
            raw::error(answer.last().context("an answer")?).is_none(),
            "{answer:?}"
        );
        // A binary row: header, NULL bitmap, then the string.
        let row = &answer[answer.len() - 2].payload;
        let mut r = crate::mysql::wire::Reader::new(row.get(2..).context("a row")?);
        let name = String::from_utf8_lossy(r.lenenc_bytes("name")?).into_owned();
        answers.push((answer[0].payload.clone(), answer.len(), name));
    }
    Ok(answers)
}

async fn login(f: &Fixture, db: &str) -> anyhow::Result<Raw> {
    let mut c = Raw::connect(f.addr).await?;
    let ok = c.login(KEY.0, KEY.1, db).await?;
    if let Some(e) = raw::error(&ok) {
        bail!("login refused: {e:?}");
    }
    Ok(c)
}

async fn statement_timeout(f: &Fixture) -> anyhow::Result<()> {
    let mut c = login(f, TENANT_DB).await?;
    // MariaDB's own max_statement_time, set by the proxy.
    let start = Instant::now();
    let slept = c.query("SELECT SLEEP(5)").await?;
    // The error comes after the result's definitions, in place of its rows.
    let e = raw::error(slept.last().context("an answer")?).context("SLEEP(5) was not stopped")?;
    ensure!(e.code == 1969, "{e:?}");
    ensure!(start.elapsed() < Duration::from_secs(4));
    // Lifted by the session: the proxy stops the statement itself.
    c.query("SET SESSION max_statement_time = 0").await?;
    let start = Instant::now();
    let slept = c.query("SELECT SLEEP(8)").await?;
    let took = start.elapsed();
    let e = raw::error(slept.last().context("an answer")?).context("not stopped")?;
    ensure!(
        e.code == 1969
            && e.message
                .contains(&format!("query_timeout_ms ({QUERY_TIMEOUT_MS} ms)")),
        "{e:?}"
    );
    ensure!(took < Duration::from_secs(5), "stopped after {took:?}");
    // The session goes on.
    let one = c.query("SELECT 1").await?;
    ensure!(raw::first_column(&one) == ["1"]);
    Ok(())
}

async fn workspace(f: &Fixture) -> anyhow::Result<()> {
    let mut c = login(f, WORKSPACE_DB).await?;
    let made = c.query("CREATE TABLE w (i INT)").await?;
    let ok = crate::mysql::reply::Ok::decode(&made[0].payload)
        .with_context(|| format!("an OK, not {:?}", raw::error(&made[0])))?;
    // The test's catalog cannot be reached: the DDL ran, and the client is told it was not
    // recorded.
    let info = String::from_utf8_lossy(&ok.info);
    ensure!(info.contains("could not be recorded"), "{info}");
    let call = c.query("CALL p(); CREATE TABLE w2 (i INT)").await?;
    ensure!(raw::error(&call[0]).is_some_and(|e| e.code == 1235));
    let rows = c.query("INSERT INTO w VALUES (1), (2)").await?;
    let ok = crate::mysql::reply::Ok::decode(&rows[0].payload).context("an OK")?;
    ensure!(ok.affected_rows == 2, "{ok:?}");
    Ok(())
}

async fn kill_and_hold(f: &Fixture, db: &TestMariadb) -> anyhow::Result<()> {
    // A hold lets an open transaction finish, then parks the next command until it is
    // released.
    let mut c = login(f, TENANT_DB).await?;
    let gates = &f.proxy.gates;
    c.query("BEGIN").await?;
    let until = tokio::time::Instant::now() + Duration::from_secs(30);
    gates.hold(TENANT_ID, until);
    let start = Instant::now();
    let inside = c.query("SELECT 1").await?;
    ensure!(raw::first_column(&inside) == ["1"]);
    c.query("COMMIT").await?;
    ensure!(
        start.elapsed() < Duration::from_millis(500),
        "a transaction was parked"
    );
    let release = async {
        tokio::time::sleep(Duration::from_millis(800)).await;
        gates.release(TENANT_ID);
    };
    let start = Instant::now();
    let (one, ()) = tokio::join!(c.query("SELECT 1"), release);
    ensure!(raw::first_column(&one?) == ["1"]);
    ensure!(
        start.elapsed() >= Duration::from_millis(700),
        "the hold did not park"
    );
    // A kill between commands: the client reads why, and the session is over.
    gates.kill(TENANT_ID);
    let told = c.next().await?;
    ensure!(
        raw::error(&told).is_some_and(|e| e.code == 1927),
        "{told:?}"
    );
    ensure!(c.next().await.is_err());
    // A kill mid-statement: the statement stops on the server too.
    let mut c = login(f, TENANT_DB).await?;
    c.send(0, b"\x03SELECT SLEEP(30) /* killed */").await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    gates.kill(TENANT_ID);
    let _ = tokio::time::timeout(Duration::from_secs(5), c.next()).await;
    gone_from_server(db, "killed").await
}

async fn client_gone(f: &Fixture, db: &TestMariadb) -> anyhow::Result<()> {
    let mut c = login(f, TENANT_DB).await?;
    c.send(0, b"\x03SELECT SLEEP(30) /* abandoned */").await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop(c);
    gone_from_server(db, "abandoned").await
}

/// Waits until no statement marked `mark` runs on the server.
async fn gone_from_server(db: &TestMariadb, mark: &str) -> anyhow::Result<()> {
    let sql = format!(
        "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE '%/* {mark} */%' \
         AND ID <> CONNECTION_ID()"
    );
    for _ in 0..50 {
        if db.sql(&sql)?.trim() == "0" {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("the {mark} statement still runs on the server")
}

/// Broken handshakes end the connection, and no session panics (checked at the end).
async fn malformed_handshakes(f: &Fixture) -> anyhow::Result<()> {
    let ssl_request = {
        let mut p = Vec::new();
        crate::mysql::handshake::SslRequest {
            caps: crate::mysql::capability::Caps::OFFERED,
            max_packet: 1 << 24,
            collation: 45,
        }
        .encode(&mut p);
        let mut out = Vec::new();
        crate::mysql::packet::encode(&mut out, 1, &p);
        out
    };
    let mut garbage_after_ssl = ssl_request.clone();
    garbage_after_ssl.extend_from_slice(b"\x16\x03\x01 not a client hello");
    let cases: [(&str, Vec<u8>); 6] = [
        ("a short packet", vec![5, 0, 0, 1, 0xff]),
        ("an oversized length", vec![0xff, 0xff, 0xff, 1, 0]),
        (
            "a wrong sequence id",
            [&[4u8, 0, 0, 9][..], &[0x8d, 0xa2, 0x0b, 0]].concat(),
        ),
        ("garbage", vec![0x20, 0, 0, 1, 1, 2, 3, 4, 5, 6, 7, 8]),
        ("SSLRequest then garbage", ssl_request.clone()),
        ("not TLS after SSLRequest", garbage_after_ssl),
    ];
    for (what, bytes) in cases {
        let mut s = tokio::net::TcpStream::connect(f.addr).await?;
        let mut greeting = [0u8; 4];
        s.read_exact(&mut greeting).await?;
        let len = usize::from(greeting[0]) | usize::from(greeting[1]) << 8;
        let mut rest = vec![0u8; len];
        s.read_exact(&mut rest).await?;
        s.write_all(&bytes).await?;
        if what == "SSLRequest then garbage" {
            s.write_all(b"\x16\x03\x01\x00\x05hello").await?;
        }
        if what == "a short packet" {
            s.shutdown().await?;
        }
        let mut sink = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(8), s.read_to_end(&mut sink)).await;
        ensure!(closed.is_ok(), "{what}: the connection stayed open");
    }
    Ok(())
}

/// Packets of more than 16 MiB, both ways: a statement the client sends in two pieces, a row
/// the server sends in two pieces (streamed through, never held whole).
async fn large_packets(f: &Fixture) -> anyhow::Result<()> {
    let mut c = login(f, TENANT_DB).await?;
    let n = 17_000_000;
    let sql = format!("SELECT LENGTH('{}')", "y".repeat(n));
    let answer = c.query(&sql).await?;
    ensure!(
        raw::first_column(&answer) == [n.to_string()],
        "a long statement"
    );
    let answer = c
        .query(&format!("SELECT REPEAT('x', {n}), 'after'"))
        .await?;
    let rows: Vec<_> = answer.iter().filter(|p| p.payload.len() > 1000).collect();
    ensure!(rows.len() == 1, "one long row, not {}", rows.len());
    let row = &rows[0].payload;
    // The value's length-encoded header (0xfe and eight bytes: it is over 16 MiB), then the
    // value, then 'after'.
    ensure!(row.len() == 9 + n + 6 && row[9..9 + n].iter().all(|b| *b == b'x'));
    ensure!(row.ends_with(b"\x05after"));
    let one = c.query("SELECT 1").await?;
    ensure!(raw::first_column(&one) == ["1"], "the session goes on");
    Ok(())
}

/// Failed logins from one address for one user are refused for a while, right key or not.
async fn failed_logins_are_throttled(f: &Fixture) -> anyhow::Result<()> {
    for _ in 0..10 {
        let mut c = Raw::connect(f.addr).await?;
        let answer = c.login(KEY.0, "wrong", TENANT_DB).await?;
        ensure!(raw::error(&answer).is_some_and(|e| e.code == 1045));
    }
    let mut c = Raw::connect(f.addr).await?;
    let answer = c.login(KEY.0, KEY.1, TENANT_DB).await?;
    let e = raw::error(&answer).context("the right key got in")?;
    ensure!(
        e.code == 1129 && e.message.contains("too many failed logins"),
        "{e:?}"
    );
    // Another user from the same address is not locked out by this one.
    let mut c = Raw::connect(f.addr).await?;
    let answer = c.login(READ_KEY.0, "wrong", TENANT_DB).await?;
    ensure!(raw::error(&answer).is_some_and(|e| e.code == 1045));
    Ok(())
}

async fn plaintext_refused(f: &Fixture) -> anyhow::Result<()> {
    let mut c = Raw::connect(f.addr).await?;
    let answer = c.login(KEY.0, KEY.1, TENANT_DB).await?;
    ensure!(
        raw::error(&answer).is_some_and(|e| e.code == 3159),
        "{answer:?}"
    );
    let out = cli(f, KEY, TENANT_DB, Transport::Plain, &[], "SELECT 1").await?;
    ensure!(out.as_ref().is_err_and(|e| e.contains("3159")), "{out:?}");
    let out = cli(f, KEY, TENANT_DB, Transport::Tls, &[], "SELECT 1").await?;
    ensure!(out == Ok("1\n".into()), "{out:?}");
    Ok(())
}
