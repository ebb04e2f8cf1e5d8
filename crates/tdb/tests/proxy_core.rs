//! The proxy's protocol-neutral core, shown with a second protocol: a trivial line protocol,
//! written here as a test's few lines (its codec and its session only), served by the same
//! `Proxy` as PostgreSQL, on its workers, and refused by the same admission, routing and gates.
//!
//! The line protocol: the client sends `<user> <password> <database>`; the proxy answers
//! `+OK <what it reaches>` or `-ERR <reason> <message>`; then `PING` gets `+PONG` until the
//! session ends (`-ERR …`).

mod common;

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use reqwest::Method;
use sqlx::{Connection, PgConnection};
use tdb_proxy::admission::{self, Admission};
use tdb_proxy::pg::scram::Verifier;
use tdb_proxy::refusal::Refusal;
use tdb_proxy::{Proxy, ProxyState, tenancy};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

fn render(refusal: &Refusal) -> String {
    format!("-ERR {:?} {}\n", refusal.reason, refusal.message)
}

/// The line protocol's session: everything but its codec comes from the core.
async fn line_session(stream: TcpStream, peer: SocketAddr, proxy: Arc<ProxyState>) {
    let (r, mut w) = stream.into_split();
    let places = match admission::admit(&proxy, peer, "line") {
        Admission::Admitted(places) => places,
        Admission::Refused(_places, refusal) => {
            let _ = w.write_all(render(&refusal).as_bytes()).await;
            return;
        }
        Admission::Closed => return,
    };
    let mut lines = BufReader::new(r).lines();
    let Ok(Some(hello)) = lines.next_line().await else {
        return;
    };
    let mut words = hello.splitn(3, ' ');
    let (Some(user), Some(password), Some(database)) = (words.next(), words.next(), words.next())
    else {
        let _ = w
            .write_all(b"-ERR expected: user password database\n")
            .await;
        return;
    };
    if let Err(refusal) = admission::login_throttle(&proxy, user, peer) {
        let _ = w.write_all(render(&refusal).as_bytes()).await;
        return;
    }
    let login = match proxy.catalog.proxy_login(user).await {
        Ok(Some(login))
            if Verifier::parse(&login.verifier).is_some_and(|v| v.accepts_password(password)) =>
        {
            login
        }
        _ => {
            admission::login_failed(&proxy, "line", user, peer);
            let _ = w.write_all(b"-ERR password authentication failed\n").await;
            return;
        }
    };
    drop(places);
    let tenancy = match tenancy::enter(&proxy, &login, database).await {
        Ok(t) => t,
        Err(refusal) => {
            let _ = w.write_all(render(&refusal).as_bytes()).await;
            return;
        }
    };
    let ok = format!("+OK {}\n", tenancy.route.describe());
    if w.write_all(ok.as_bytes()).await.is_err() {
        return;
    }
    loop {
        tokio::select! {
            line = lines.next_line() => match line {
                Ok(Some(l)) if l == "PING" => {
                    if w.write_all(b"+PONG\n").await.is_err() {
                        return;
                    }
                }
                _ => return,
            },
            _ = tenancy.kill.cancelled() => {
                let why = match proxy.router.current_status(&tenancy.route).await {
                    Some(status) => format!("-ERR ended: {} is {status}\n", tenancy.route.describe()),
                    None => "-ERR ended\n".to_string(),
                };
                let _ = w.write_all(why.as_bytes()).await;
                return;
            }
        }
    }
}

/// A line-protocol client from the loopback address `local`: sends `hello`, then `then` one
/// line after another, and returns each answer line.
async fn line_client(port: u16, local: [u8; 4], hello: &str, then: &[&str]) -> Vec<String> {
    let (r, mut w) = connect_from(local, port).await.into_split();
    let mut lines = BufReader::new(r).lines();
    let mut answers = Vec::new();
    for line in std::iter::once(&hello).chain(then) {
        if w.write_all(format!("{line}\n").as_bytes()).await.is_err() {
            break;
        }
        match tokio::time::timeout(Duration::from_secs(20), lines.next_line()).await {
            Ok(Ok(Some(answer))) => answers.push(answer),
            _ => break,
        }
    }
    answers
}

/// The user, password and database of a `postgres://user:password@host:port/database` URL.
fn parts(url: &str) -> (String, String, String) {
    let rest = url.split("//").nth(1).expect("//");
    let (auth, place) = rest.split_once('@').expect("@");
    let (user, password) = auth.split_once(':').expect(":");
    let database = place.split_once('/').expect("/").1;
    let database = database.split('?').next().expect("database");
    (user.into(), password.into(), database.into())
}

#[tokio::test]
async fn a_second_protocol_is_served_and_refused_by_the_same_core() {
    // This process's metrics (tdb serve runs in another): each protocol's instruments carry its
    // own name.
    let prometheus = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .expect("a recorder for the test's process");
    let s = start().await;
    let (key, acme) = account_with_tenant(&s, "core@example.com").await;
    let (user, password, database) = parts(&acme);

    // The core of an in-test proxy on this server's catalog: two workers, and an address guard
    // that trusts no network, so loopback addresses can be limited and banned.
    let catalog_url = s.managed_admin_url("tdb_catalog").expect("catalog url");
    let options = sqlx::postgres::PgConnectOptions::from_str(&catalog_url).expect("options");
    let catalog = tdb_catalog::Catalog::open(options, 4)
        .await
        .expect("catalog");
    let master = std::fs::read_to_string(s.data_dir().join("master.key")).expect("master key");
    let master = tdb_core::secrets::MasterKey::parse(&master).expect("parse master key");
    let guard = tdb_core::ratelimit::IpGuard::new(tdb_core::ratelimit::IpLimits {
        per_second: 20,
        ban_after: 3,
        ban_for: Duration::from_secs(60),
        trusted: Vec::new(),
    });
    let config = tdb_proxy::ProxyConfig {
        ip_guard: Arc::new(guard),
        workers: 2,
        ..tdb_proxy::ProxyConfig::default()
    };
    let (log, writer) = tdb_proxy::querylog::QueryLog::new(catalog.clone(), false);
    let writer = tokio::spawn(writer);
    let shutdown = tokio_util::sync::CancellationToken::new();
    let state = ProxyState::new(config, catalog, &master, None, log, shutdown.clone());
    let proxy = Arc::new(Proxy::start(state.clone()).expect("proxy"));
    let line = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let pg = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let (line_port, pg_port) = (
        line.local_addr().expect("addr").port(),
        pg.local_addr().expect("addr").port(),
    );
    let serving = {
        let proxy = proxy.clone();
        tokio::spawn(async move {
            tokio::join!(
                proxy.listen(line, "line", line_session),
                proxy.listen(pg, "postgresql", tdb_proxy::pg::session::handle),
            );
        })
    };

    // Both protocols reach the tenant through the same routing.
    let hello = format!("{user} {password} {database}");
    let answers = line_client(line_port, [127, 0, 0, 1], &hello, &["PING"]).await;
    assert_eq!(answers.len(), 2, "{answers:?}");
    assert!(answers[0].starts_with("+OK tenant \"acme\""), "{answers:?}");
    assert_eq!(answers[1], "+PONG");
    let wrong = format!("{user} not-{password} {database}");
    let answers = line_client(line_port, [127, 0, 0, 1], &wrong, &[]).await;
    assert_eq!(answers, ["-ERR password authentication failed"]);
    let other = format!("{user} {password} app__nobody");
    let answers = line_client(line_port, [127, 0, 0, 1], &other, &[]).await;
    assert_eq!(
        answers,
        [
            "-ERR NotAllowed permission denied for database \"app__nobody\": this credential \
          opens only tenant \"acme\""
        ]
    );
    let pg_url = format!("postgres://{user}:{password}@127.0.0.1:{pg_port}/{database}");
    let mut conn = PgConnection::connect(&pg_url)
        .await
        .expect("PostgreSQL too");
    let one: i32 = sqlx::query_scalar("SELECT 1")
        .fetch_one(&mut conn)
        .await
        .expect("query");
    assert_eq!(one, 1);
    let role: String = sqlx::query_scalar("SELECT current_user::text")
        .fetch_one(&mut conn)
        .await
        .expect("query");

    // The PostgreSQL session is generic over its client's byte stream: the same session over
    // an in-memory stream, with a real driver at the other end.
    let (near, far) = tokio::io::duplex(64 * 1024);
    let peer = SocketAddr::from(([127, 0, 0, 9], 40_000));
    tokio::spawn(tdb_proxy::pg::session::handle_stream(
        far,
        peer,
        state.clone(),
    ));
    let config: tokio_postgres::Config = pg_url.parse().expect("a driver's config");
    let (in_memory, connection) = config
        .connect_raw(near, tokio_postgres::NoTls)
        .await
        .expect("a session over an in-memory stream");
    let connection = tokio::spawn(connection);
    let row = in_memory
        .query_one("SELECT current_user::text, 40 + 2", &[])
        .await
        .expect("a query over an in-memory stream");
    assert_eq!(row.get::<_, String>(0), role, "the tenant's own role");
    assert_eq!(row.get::<_, i32>(1), 42);

    // The same gates: a suspension ends the open line session (through the catalog's change
    // feed, started once for both listeners) and refuses new ones.
    let socket = tokio::net::TcpStream::connect(("127.0.0.1", line_port))
        .await
        .expect("connect");
    let (r, mut w) = socket.into_split();
    let mut open = BufReader::new(r).lines();
    w.write_all(format!("{hello}\n").as_bytes())
        .await
        .expect("hello");
    let first = open.next_line().await.expect("read").expect("a line");
    assert!(first.starts_with("+OK"), "{first}");
    let (st, body) = call(&s, Method::POST, "/tenants/acme/suspend", Some(&key), None).await;
    assert_eq!(st, 200, "{body}");
    let ended = tokio::time::timeout(Duration::from_secs(30), open.next_line())
        .await
        .expect("the open session ends")
        .expect("read")
        .expect("a line");
    assert_eq!(ended, "-ERR ended: tenant \"acme\" is suspended");
    let ended = tokio::time::timeout(Duration::from_secs(30), connection)
        .await
        .expect("the in-memory session ends too")
        .expect("the driver's connection task");
    let ended = ended.expect_err("ended by the proxy's FATAL");
    let fatal = ended.as_db_error().expect("an error from the proxy");
    assert!(fatal.message().contains("suspended"), "{fatal:?}");
    let answers = line_client(line_port, [127, 0, 0, 1], &hello, &[]).await;
    assert_eq!(answers, ["-ERR Unavailable tenant \"acme\" is suspended"]);
    let (st, body) = call(&s, Method::POST, "/tenants/acme/resume", Some(&key), None).await;
    assert_eq!(st, 200, "{body}");

    // The same admission: an address over its rate on the line protocol is refused there, then
    // banned, and the ban holds on the PostgreSQL listener too.
    let mut refusals = Vec::new();
    for _ in 0..60 {
        let answers = line_client(line_port, [127, 0, 0, 2], "x", &[]).await;
        refusals.extend(
            answers
                .into_iter()
                .filter(|a| a.starts_with("-ERR TooMany")),
        );
    }
    assert!(
        refusals
            .iter()
            .any(|r| r.contains("too many connection attempts from 127.0.0.2")),
        "{refusals:?}"
    );
    assert!(
        refusals
            .iter()
            .any(|r| r.contains("127.0.0.2: the address is banned for")),
        "{refusals:?}"
    );
    let greeting = proxy_greeting(pg_port, [127, 0, 0, 2]).await;
    assert!(
        greeting.contains("the address is banned for"),
        "{greeting:?}"
    );
    // Another address is not affected.
    let answers = line_client(line_port, [127, 0, 0, 3], &hello, &["PING"]).await;
    assert_eq!(
        answers.get(1).map(String::as_str),
        Some("+PONG"),
        "{answers:?}"
    );

    // The same throttle of failed logins: wrong passwords on the line protocol, and the right
    // one is refused on both.
    let mut throttled = None;
    for _ in 0..12 {
        let answers = line_client(line_port, [127, 0, 0, 1], &wrong, &[]).await;
        assert_eq!(answers.len(), 1, "{answers:?}");
        if answers[0] != "-ERR password authentication failed" {
            throttled = Some(answers[0].clone());
            break;
        }
    }
    let throttled = throttled.expect("throttled after the tenth failure");
    assert!(
        throttled.starts_with("-ERR LoginsThrottled too many failed logins"),
        "{throttled}"
    );
    // Not on this thread: its runtime drives the catalog's connections the proxy uses.
    let out = tokio::process::Command::new("psql")
        .args(["-X", "-At", "-c", "SELECT 1"])
        .arg(format!("host=127.0.0.1 port={pg_port} user={user} password={password} dbname={database} sslmode=disable"))
        .output()
        .await
        .expect("psql");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("too many failed logins"), "{stderr}");

    let rendered = prometheus.render();
    let count = |series: &str| -> u64 {
        rendered
            .lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or(0)
    };
    let line_connections = count(r#"tdb_proxy_connections_total{engine="line"}"#);
    let line_failures = count(r#"tdb_proxy_auth_failures_total{engine="line"}"#);
    let pg_connections = count(r#"tdb_proxy_connections_total{engine="postgresql"}"#);
    assert!(line_connections >= 60, "{rendered}");
    assert!(line_failures >= 10, "{rendered}");
    assert!(pg_connections >= 3, "{rendered}");
    assert_eq!(
        count(r#"tdb_proxy_auth_failures_total{engine="postgresql"}"#),
        0,
        "the line protocol's failed logins are its own: {rendered}"
    );

    drop(conn);
    shutdown.cancel();
    serving.await.expect("listeners end");
    let proxy = Arc::into_inner(proxy).expect("the only handle");
    tokio::time::timeout(Duration::from_secs(60), proxy.finish())
        .await
        .expect("the proxy finishes");
    drop(writer);
}
