//! Sessions through the proxy with a bare client: the login phase, pipelining, the emulated
//! commands, the query timeout, a suspended tenant's kill, a hold, and the Unix socket route.

use std::time::{Duration, Instant};

use tdb_resp::frame::Frame;

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_login_phase() -> anyhow::Result<()> {
    let redis = server().await?;
    let f = Fixture::start(&redis, PlaintextPolicy::Loopback).await?;
    let mut c = f.raw().await?;
    assert_eq!(
        text(&c.call(&["GET", "k"]).await?),
        "NOAUTH Authentication required."
    );
    assert_eq!(text(&c.call(&["PING"]).await?), "PONG");
    assert_eq!(
        text(&c.call(&["AUTH", A.id, "wrong"]).await?),
        "WRONGPASS invalid username-password pair or user is disabled."
    );
    assert_eq!(
        text(&c.call(&["AUTH", B.id, A.key]).await?),
        "WRONGPASS invalid username-password pair or user is disabled."
    );
    // AUTH and what follows it, in one write.
    c.send_raw(b"*3\r\n$4\r\nAUTH\r\n$4\r\nacme\r\n$12\r\nkey-acme-123\r\n*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\nGET k\r\n")
        .await?;
    assert_eq!(text(&c.read().await?), "OK");
    assert_eq!(text(&c.read().await?), "OK");
    assert_eq!(text(&c.read().await?), "v");
    assert_eq!(text(&c.call(&["ACL", "WHOAMI"]).await?), "acme");
    // HELLO 3 with AUTH and SETNAME answers the server's map, and RESP3 from then on.
    let mut h = f.raw().await?;
    let hello = h
        .call(&["HELLO", "3", "AUTH", B.id, B.key, "SETNAME", "app"])
        .await?;
    let Frame::Map(fields) = &hello else {
        anyhow::bail!("HELLO answered {hello:?}");
    };
    assert!(fields.contains(&(Frame::Bulk("proto".into()), Frame::Integer(3))));
    assert_eq!(text(&h.call(&["CLIENT", "GETNAME"]).await?), "app");
    assert_eq!(h.call(&["GET", "nothing"]).await?, Frame::Null);
    // HELLO 3 before the login switches the protocol; AUTH then logs in.
    let mut p = f.raw().await?;
    assert!(matches!(p.call(&["HELLO", "3"]).await?, Frame::Map(_)));
    assert_eq!(text(&p.call(&["AUTH", A.id, A.key]).await?), "OK");
    assert_eq!(p.call(&["GET", "nothing"]).await?, Frame::Null);
    assert_eq!(
        text(&p.call(&["HELLO", "4"]).await?),
        "NOPROTO unsupported protocol version"
    );
    drop(p);
    // Failed logins count as the other proxies count them: past 10 for a user from one
    // address, even the right key is refused for a while.
    let mut t = f.raw().await?;
    for _ in 0..10 {
        t.call(&["AUTH", A.id, "wrong"]).await?;
    }
    let throttled = t.call(&["AUTH", A.id, A.key]).await?;
    assert!(
        text(&throttled).contains("too many failed logins"),
        "{throttled:?}"
    );
    drop((c, h, t));
    f.finish().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_is_refused_where_the_policy_says() -> anyhow::Result<()> {
    let redis = server().await?;
    let f = Fixture::start(&redis, PlaintextPolicy::Refuse).await?;
    let mut c = f.raw().await?;
    let answer = c.call(&["AUTH", A.id, A.key]).await?;
    assert!(text(&answer).contains("TLS is required"), "{answer:?}");
    assert!(c.closed().await);
    f.finish().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelines_keep_their_order() -> anyhow::Result<()> {
    let redis = server().await?;
    let f = Fixture::start(&redis, PlaintextPolicy::Loopback).await?;
    let mut c = f.login(&A).await?;
    let mut batch = Vec::new();
    for i in 0..200i64 {
        batch.extend_from_slice(format!("SET k{i} v{i}\r\nGET k{i}\r\n").as_bytes());
        if i % 50 == 0 {
            // A refusal and an emulation in the middle are answered at their place.
            batch.extend_from_slice(b"FLUSHALL\r\nDBSIZE\r\n");
        }
    }
    c.send_raw(&batch).await?;
    for i in 0..200i64 {
        assert_eq!(text(&c.read().await?), "OK");
        assert_eq!(text(&c.read().await?), format!("v{i}"));
        if i % 50 == 0 {
            assert!(text(&c.read().await?).contains("'FLUSHALL' is not allowed"));
            assert_eq!(c.read().await?, Frame::Integer(i + 1));
        }
    }
    drop(c);
    f.finish().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tenants_keyspace_is_its_own() -> anyhow::Result<()> {
    let redis = server().await?;
    let f = Fixture::start(&redis, PlaintextPolicy::Loopback).await?;
    let mut a = f.login(&A).await?;
    let mut b = f.login(&B).await?;
    for i in 0..2500 {
        a.send(&[b"SET", format!("a{i}").as_bytes(), b"x"]).await?;
    }
    for _ in 0..2500 {
        a.read().await?;
    }
    b.call(&["SET", "mine", "1"]).await?;
    assert_eq!(a.call(&["DBSIZE"]).await?, Frame::Integer(2500));
    assert_eq!(b.call(&["DBSIZE"]).await?, Frame::Integer(1));
    let info = text(&a.call(&["INFO", "keyspace"]).await?);
    assert!(info.contains("db0:keys=2500,"), "{info}");
    assert_eq!(text(&a.call(&["SELECT", "0"]).await?), "OK");
    assert!(text(&a.call(&["SELECT", "1"]).await?).starts_with("ERR SELECT"));
    assert_eq!(text(&a.call(&["FLUSHDB"]).await?), "OK");
    assert_eq!(a.call(&["DBSIZE"]).await?, Frame::Integer(0));
    assert_eq!(text(&b.call(&["GET", "mine"]).await?), "1");
    let mut admin = redis.admin().await?;
    assert_eq!(admin.call(&["DBSIZE"]).await?, Frame::Integer(1));
    drop((a, b));
    f.finish().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_reply_ends_the_session_but_a_blocking_command_has_its_own_time()
-> anyhow::Result<()> {
    let redis = server().await?;
    let f = Fixture::start(&redis, PlaintextPolicy::Loopback).await?;
    let mut c = f.login(&A).await?;
    // BLPOP's second on top of the query timeout: it comes back empty, in time.
    let started = Instant::now();
    assert_eq!(c.call(&["BLPOP", "nothing", "1"]).await?, Frame::NullArray);
    assert!(started.elapsed() >= Duration::from_secs(1));
    // A script that runs past the query timeout.
    let spin = "local t = redis.call('TIME'); local s = tonumber(t[1]); \
                while tonumber(redis.call('TIME')[1]) < s + 3 do end; return 1";
    let started = Instant::now();
    let answer = c.call(&["EVAL", spin, "0"]).await?;
    assert!(text(&answer).contains("query timeout"), "{answer:?}");
    assert!(started.elapsed() < Duration::from_millis(2900));
    assert!(c.closed().await);
    f.finish().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_script_is_stopped_when_its_query_timeout_passes() -> anyhow::Result<()> {
    let redis = server().await?;
    let f = Fixture::start(&redis, PlaintextPolicy::Loopback).await?;
    let mut a = f.login(&A).await?;
    let answer = a.call(&["EVAL", "while true do end", "0"]).await?;
    assert!(text(&answer).contains("query timeout"), "{answer:?}");
    // The shared server is free again for everyone else (not BUSY with A's script for good):
    // the kill is read once the script has run busy-reply-threshold (5 s by default).
    let mut b = f.login(&B).await?;
    let started = Instant::now();
    loop {
        let answer = text(&b.call(&["PING"]).await?);
        if answer == "PONG" {
            break;
        }
        assert!(answer.starts_with("BUSY"), "{answer}");
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the server stayed busy with A's script"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(text(&b.call(&["SET", "after", "1"]).await?), "OK");
    drop((a, b));
    f.finish().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspension_ends_sessions_and_a_hold_parks_commands() -> anyhow::Result<()> {
    let redis = server().await?;
    let f = Fixture::start(&redis, PlaintextPolicy::Loopback).await?;
    let mut a = f.login(&A).await?;
    assert_eq!(text(&a.call(&["SET", "k", "1"]).await?), "OK");
    f.proxy
        .gates
        .hold(A.id, tokio::time::Instant::now() + Duration::from_secs(30));
    a.send(&[b"INCR", b"k"]).await?;
    let parked = tokio::time::timeout(Duration::from_millis(300), a.read()).await;
    assert!(parked.is_err(), "a held tenant's command ran");
    f.proxy.gates.release(A.id);
    assert_eq!(a.read().await?, Frame::Integer(2));
    let mut b = f.login(&B).await?;
    f.proxy.gates.kill(A.id);
    let farewell = a.read().await?;
    assert!(text(&farewell).contains("no longer served"), "{farewell:?}");
    assert!(a.closed().await);
    // Another tenant's session goes on, until tdb shuts down.
    assert_eq!(text(&b.call(&["PING"]).await?), "PONG");
    f.proxy.shutdown.cancel();
    let farewell = b.read().await?;
    assert!(text(&farewell).contains("shutting down"), "{farewell:?}");
    assert!(b.closed().await);
    f.finish().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_credentials_log_in_as_the_read_user() -> anyhow::Result<()> {
    let redis = server().await?;
    let f = Fixture::start(&redis, PlaintextPolicy::Loopback).await?;
    let mut a = f.login(&A).await?;
    a.call(&["SET", "k", "v"]).await?;
    let mut r = f.raw().await?;
    assert_eq!(text(&r.call(&["AUTH", A.id, A_READ_KEY]).await?), "OK");
    assert_eq!(text(&r.call(&["GET", "k"]).await?), "v");
    let write = r.call(&["SET", "k", "w"]).await?;
    assert!(text(&write).starts_with("NOPERM"), "{write:?}");
    drop((a, r));
    f.finish().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_reaches_the_query_log() -> anyhow::Result<()> {
    let redis = server().await?;
    let f = Fixture::start(&redis, PlaintextPolicy::Loopback).await?;
    let mut a = f.login(&A).await?;
    let before = f.proxy.log.pending();
    // Forwarded, refused and emulated: one record each.
    a.call(&["SET", "k", "secret value"]).await?;
    a.call(&["MGET", "k", "l"]).await?;
    a.call(&["FLUSHALL"]).await?;
    a.call(&["DBSIZE"]).await?;
    assert_eq!(f.proxy.log.pending(), before + 4);
    drop(a);
    f.finish().await
}

/// The calls of `command` the server has counted (`INFO commandstats`).
async fn calls(admin: &mut Raw<tokio::net::TcpStream>, command: &str) -> anyhow::Result<u64> {
    let info = text(&admin.call(&["INFO", "commandstats"]).await?);
    let line = format!("cmdstat_{command}:calls=");
    Ok(info
        .lines()
        .find_map(|l| l.strip_prefix(&line))
        .and_then(|rest| rest.split(',').next())
        .map_or(Ok(0), str::parse)?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyspace_walks_go_in_steps_the_server_can_answer_others_between() -> anyhow::Result<()> {
    let redis = server().await?;
    let f = Fixture::start(&redis, PlaintextPolicy::Loopback).await?;
    let mut c = f.login(&A).await?;
    for batch in 0..3 {
        let mut mset = vec!["MSET".to_string()];
        for i in 0..1000 {
            mset.push(format!("walk:{}", batch * 1000 + i));
            mset.push("v".into());
        }
        let args: Vec<&str> = mset.iter().map(String::as_str).collect();
        assert_eq!(text(&c.call(&args).await?), "OK");
    }
    let mut admin = redis.admin().await?;
    let keys_before = calls(&mut admin, "keys").await?;
    let scans_before = calls(&mut admin, "scan").await?;
    // KEYS lists the tenant's names, from SCAN steps: no KEYS reaches the server.
    let listed = c.call(&["KEYS", "walk:*"]).await?;
    let names = listed.as_items().expect("an array");
    assert_eq!(names.len(), 3000);
    assert!(
        names.iter().all(|n| text(n).starts_with("walk:")),
        "{names:?}"
    );
    assert_eq!(calls(&mut admin, "keys").await?, keys_before);
    assert!(calls(&mut admin, "scan").await? >= scans_before + 3);
    // A SCAN's COUNT is held to 1000: one step does not walk all 3000 keys.
    let scan = c.call(&["SCAN", "0", "COUNT", "100000000"]).await?;
    let items = scan.as_items().expect("cursor and names");
    assert_ne!(text(&items[0]), "0", "{scan:?}");
    let found = items[1].as_items().expect("names").len();
    assert!(found > 0 && found < 3000, "{found} names in one step");
    drop(c);
    f.finish().await
}

/// Counts, on the thread it is the default of, how often a span named `connection` is entered
/// and the events logged in it (named as its parent, or logged while it is entered).
#[derive(Default)]
struct ConnectionSpans {
    next: std::sync::atomic::AtomicU64,
    connections: Mutex<std::collections::HashSet<u64>>,
    inside: std::sync::atomic::AtomicUsize,
    enters: std::sync::atomic::AtomicUsize,
    events: std::sync::atomic::AtomicUsize,
}

impl ConnectionSpans {
    fn is_connection(&self, id: &tracing::span::Id) -> bool {
        self.connections
            .lock()
            .expect("lock")
            .contains(&id.into_u64())
    }
    fn enters(&self) -> usize {
        self.enters.load(std::sync::atomic::Ordering::SeqCst)
    }
    fn events(&self) -> usize {
        self.events.load(std::sync::atomic::Ordering::SeqCst)
    }
}

struct Counting(Arc<ConnectionSpans>);

impl tracing::Subscriber for Counting {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        let id = 1 + self
            .0
            .next
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if span.metadata().name() == "connection" {
            self.0.connections.lock().expect("lock").insert(id);
        }
        tracing::span::Id::from_u64(id)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let in_connection = match event.parent() {
            Some(parent) => self.0.is_connection(parent),
            None => {
                event.is_contextual() && self.0.inside.load(std::sync::atomic::Ordering::SeqCst) > 0
            }
        };
        if in_connection {
            self.0
                .events
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }
    fn enter(&self, id: &tracing::span::Id) {
        if self.0.is_connection(id) {
            self.0
                .enters
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            self.0
                .inside
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }
    fn exit(&self, id: &tracing::span::Id) {
        if self.0.is_connection(id) {
            self.0
                .inside
                .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        }
    }
}

/// A session's relay runs outside its connection's span: a span a task is instrumented with is
/// entered and left on every wake-up, a share of the proxy's CPU per request that showed in
/// its profile (about 3%). What the relay logs still belongs to the connection's span. The
/// sessions of this test run on its own thread (a current-thread runtime), where the counting
/// subscriber is the default.
#[tokio::test]
async fn the_relay_does_not_enter_its_connection_span_per_request() -> anyhow::Result<()> {
    const REQUESTS: usize = 200;
    let spans = Arc::new(ConnectionSpans::default());
    let _default = tracing::subscriber::set_default(Counting(spans.clone()));
    let redis = server().await?;
    let f = Fixture::start(&redis, PlaintextPolicy::Loopback).await?;
    let mut c = f.login(&A).await?;
    let entered_by_login = spans.enters();
    assert!(
        entered_by_login > 0,
        "the login runs in the connection's span"
    );
    for i in 0..REQUESTS {
        let value = i.to_string();
        assert_eq!(text(&c.call(&["SET", "span:k", &value]).await?), "OK");
        assert_eq!(text(&c.call(&["GET", "span:k"]).await?), value);
    }
    let entered_by_relay = spans.enters() - entered_by_login;
    assert!(
        entered_by_relay < 5,
        "the connection's span was entered {entered_by_relay} times for {} requests",
        2 * REQUESTS
    );
    // The relay's last word ("Redis session ended") is logged in the connection's span.
    let events_before_the_end = spans.events();
    drop(c);
    f.finish().await?;
    assert!(
        spans.events() > events_before_the_end,
        "the end of the session was not logged in the connection's span"
    );
    Ok(())
}

/// Replies that came while the relay was still writing earlier ones to a slow client are not
/// late: the query timeout is the server's, not the client's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_that_came_while_a_slow_client_read_are_not_a_query_timeout() -> anyhow::Result<()>
{
    let redis = server().await?;
    let f = Fixture::start(&redis, PlaintextPolicy::Loopback).await?;
    let mut admin = redis.admin().await?;
    let value = "s".repeat(1 << 20);
    assert_eq!(text(&admin.call(&["SET", "tb:mib", &value]).await?), "OK");
    // A connection of its own (HELLO), whose replies wait at the server while the relay writes.
    let mut c = f.raw().await?;
    let hello = c.call(&["HELLO", "2", "AUTH", B.id, B.key]).await?;
    assert!(hello.as_items().is_some(), "{hello:?}");
    let mut gets = Vec::new();
    for _ in 0..8 {
        gets.extend_from_slice(b"*2\r\n$3\r\nGET\r\n$3\r\nmib\r\n");
    }
    c.send_raw(&gets).await?;
    // The client reads nothing for longer than the query timeout.
    tokio::time::sleep(Duration::from_millis(QUERY_TIMEOUT_MS + 1000)).await;
    for i in 0..8 {
        let reply = c.read().await?;
        assert!(
            matches!(&reply, Frame::Bulk(b) if b.len() == value.len()),
            "GET {i}: {}",
            text(&reply).chars().take(200).collect::<String>()
        );
    }
    assert_eq!(text(&c.call(&["PING"]).await?), "PONG");
    drop(c);
    f.finish().await
}
