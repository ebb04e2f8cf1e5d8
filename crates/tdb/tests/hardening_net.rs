//! What a hostile client on the network, a local user or a careless start can no longer do to
//! `tdb serve`: hold API connections open with dripped or no requests, or so many of them that
//! the file limit runs out; fill the proxy's pre-authentication slots with silent connections;
//! reach internal addresses through server-side fetches; get the operator's own (trusted)
//! addresses banned, or earn a ban nobody hears of; sign up where the operator does not want it,
//! or probe sign-up without limit; plant a configuration in a data dir others may write to; run
//! a second instance on a data dir that one already serves.

#[path = "hardening_net/clients.rs"]
mod clients;
mod common;

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use clients::*;
use common::*;
use serde_json::json;
use tdb_testkit::{ServeOptions, TdbServer};
use tokio::io::AsyncReadExt;

/// One `tdb serve` with the defaults, shared by the tests that do not disturb each other; it
/// stops when the last test holding it drops it.
async fn shared() -> Arc<TdbServer> {
    static SHARED: tokio::sync::Mutex<Weak<TdbServer>> = tokio::sync::Mutex::const_new(Weak::new());
    let mut slot = SHARED.lock().await;
    if let Some(s) = slot.upgrade() {
        return s;
    }
    let s = Arc::new(start().await);
    *slot = Arc::downgrade(&s);
    s
}

/// The configuration of [`hardened`]: only 127.0.0.1 and ::1 are trusted, so the tests can
/// play hostile clients from the rest of 127.0.0.0/8.
const HARDENED_TOML: &str = r#"
trusted_networks = ["127.0.0.1/32", "::1/128"]
api_header_timeout_secs = 2
api_body_timeout_secs = 3
signup_attempts_per_hour = 5
"#;

/// One `tdb serve` with [`HARDENED_TOML`], shared like [`shared`]. Each test plays its hostile
/// client from an address of its own, so that their limits and bans do not meet.
async fn hardened() -> Arc<TdbServer> {
    static HARDENED: tokio::sync::Mutex<Weak<TdbServer>> =
        tokio::sync::Mutex::const_new(Weak::new());
    let mut slot = HARDENED.lock().await;
    if let Some(s) = slot.upgrade() {
        return s;
    }
    let options = ServeOptions {
        config_toml: Some(HARDENED_TOML.into()),
        ..Default::default()
    };
    let s = Arc::new(
        TdbServer::start_with(bin(), options)
            .await
            .expect("tdb serve starts"),
    );
    *slot = Arc::downgrade(&s);
    s
}

/// The lines of the server's log that contain every one of `parts`, once they appear (up to
/// 10 s); an empty list when they never do.
async fn log_lines(s: &TdbServer, parts: &[&str]) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(s.log_path()).unwrap_or_default();
        let lines: Vec<String> = text
            .lines()
            .filter(|l| parts.iter().all(|p| l.contains(p)))
            .map(str::to_string)
            .collect();
        if !lines.is_empty() || Instant::now() > deadline {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Signs up and creates a tenant-mode workspace `app`; returns the API key and the workspace's
/// connection string through the proxy (plaintext, which loopback may use).
async fn account_with_workspace(s: &TdbServer, email: &str) -> (String, String) {
    let key = str_of(&signup(s, email, "Hardening").await, "api_key").to_string();
    let (st, body) = post(
        s,
        "/workspaces",
        Some(&key),
        json!({"name": "app", "database": "postgresql", "mode": "tenant"}),
    )
    .await;
    assert_eq!(st, 201, "{body}");
    let url = str_of(&body, "connection_string").replace("sslmode=require", "sslmode=disable");
    (key, url)
}

#[tokio::test]
async fn ipv4_compatible_ipv6_addresses_count_as_internal() {
    let s = shared().await;
    let (key, _) = account_with_workspace(&s, "ssrf6@example.com").await;

    // A JSON document on loopback, asked for through its IPv4-compatible IPv6 form.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let url = format!("http://[::127.0.0.1]:{port}/schema.json");
    let (st, body) = post(
        &s,
        "/workspaces/app/schema",
        Some(&key),
        json!({"source": "url", "url": url}),
    )
    .await;
    assert_eq!(st, 400, "{body}");
    assert!(
        str_of(&body, "error").contains("internal address"),
        "{body}"
    );

    // The database source, and a registered connection's introspection.
    let (st, body) = post(
        &s,
        "/workspaces/app/schema",
        Some(&key),
        json!({"source": "database", "connection":
            {"host": "::10.0.0.1", "database": "postgres", "user": "postgres"}}),
    )
    .await;
    assert_eq!(st, 400, "{body}");
    assert!(
        str_of(&body, "error").contains("internal address"),
        "{body}"
    );
    let (st, c) = post(
        &s,
        "/api/v1/connections",
        Some(&key),
        json!({"name": "metadata", "db_type": "postgresql",
               "connection_string": "postgresql://u:pw@[::169.254.169.254]:5432/postgres"}),
    )
    .await;
    assert_eq!(st, 201, "{c}");
    let id = str_of(&c["data"], "id");
    let (st, body) = get(&s, &format!("/api/v1/connections/{id}/introspect"), &key).await;
    assert_eq!(st, 400, "{body}");
    assert!(
        str_of(&body["error"], "message").contains("internal address"),
        "{body}"
    );
}

/// Runs `tdb serve` on `data_dir` with fresh ports and waits up to `limit` for it to exit; a
/// process still running then is killed and reported as `None`.
fn serve_once(data_dir: &std::path::Path, limit: Duration) -> Option<std::process::Output> {
    let port = |name| tdb_testkit::free_port().unwrap_or_else(|e| panic!("{name} port: {e}"));
    let mut child = std::process::Command::new(bin())
        .args(["serve", "--data-dir"])
        .arg(data_dir)
        .arg("--api-listen")
        .arg(format!("127.0.0.1:{}", port("api")))
        .arg("--pg-listen")
        .arg(format!("127.0.0.1:{}", port("pg")))
        .arg("--mysql-listen")
        .arg(format!("127.0.0.1:{}", port("mysql")))
        .arg("--redis-listen")
        .arg(format!("127.0.0.1:{}", port("redis")))
        .env("NO_COLOR", "1")
        .env_remove("TDB_MASTER_KEY")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn tdb serve");
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if child.try_wait().expect("wait").is_some() {
            return Some(child.wait_with_output().expect("output"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

#[tokio::test]
async fn a_second_serve_on_the_same_data_dir_exits_at_once() {
    let s = shared().await;
    let first = s.pid().expect("first pid");
    let postgres = s.managed_postgres_pid().expect("managed postgres pid");

    let data_dir = s.data_dir();
    let second =
        tokio::task::spawn_blocking(move || serve_once(&data_dir, Duration::from_secs(30)))
            .await
            .expect("join")
            .expect("the second tdb serve exits by itself");
    assert!(!second.status.success(), "the second serve must fail");
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        stderr.contains(&format!("pid {first}")) && stderr.contains("already"),
        "the message names the running one: {stderr}"
    );

    // The first is untouched: healthy, and its PostgreSQL is the same process.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (st, _) = call(&s, reqwest::Method::GET, "/health", None, None).await;
    assert_eq!(st, 200);
    assert_eq!(s.managed_postgres_pid(), Some(postgres));
    let log = std::fs::read_to_string(s.log_path()).unwrap_or_default();
    assert!(
        !log.contains("managed server restart"),
        "the first serve restarted its server: {}",
        s.log_tail()
    );
}

fn mode_of(path: &std::path::Path) -> u32 {
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o7777
}

/// Runs `tdb serve` on `dir`, which must refuse to start; returns its stderr.
async fn refused(dir: &std::path::Path) -> String {
    let dir = dir.to_path_buf();
    let out = tokio::task::spawn_blocking(move || serve_once(&dir, Duration::from_secs(30)))
        .await
        .expect("join")
        .expect("tdb serve refuses to start and exits");
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn the_data_dir_is_created_private_and_unsafe_modes_are_refused() {
    let root_user = nix::unistd::Uid::effective().is_root();
    // Created by tdb: private; enter-only for others when the managed servers run as another
    // user (tdb as root).
    let s = shared().await;
    let expected = if root_user { 0o711 } else { 0o700 };
    assert_eq!(mode_of(&s.data_dir()), expected);

    let root = tdb_testkit::reachable_tempdir().expect("tempdir");
    let dir = root.path().join("data");
    std::fs::create_dir(&dir).expect("mkdir");
    for mode in [0o777, 0o770, 0o1777] {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)).expect("chmod");
        let stderr = refused(&dir).await;
        assert!(
            stderr.contains(&dir.display().to_string())
                && stderr.contains(&format!("mode {mode:o}"))
                && stderr.contains("chmod go-w"),
            "{stderr}"
        );
        assert!(
            !dir.join("master.key").exists() && !dir.join("servers").exists(),
            "nothing was started in an unsafe data dir"
        );
    }

    // A safe dir, but a tdb.toml others may write to, or that another user owns.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let toml = dir.join("tdb.toml");
    std::fs::write(&toml, "log_format = \"text\"\n").expect("write tdb.toml");
    std::fs::set_permissions(&toml, std::fs::Permissions::from_mode(0o666)).expect("chmod");
    let stderr = refused(&dir).await;
    assert!(
        stderr.contains(&toml.display().to_string())
            && stderr.contains("mode 666")
            && stderr.contains("chmod go-w"),
        "{stderr}"
    );
    std::fs::set_permissions(&toml, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    if root_user {
        let nobody = nix::unistd::Uid::from_raw(65534);
        nix::unistd::chown(&toml, Some(nobody), None).expect("chown");
        let stderr = refused(&dir).await;
        assert!(
            stderr.contains(&toml.display().to_string()) && stderr.contains("uid 65534"),
            "{stderr}"
        );
    }
    assert!(!dir.join("master.key").exists());
}

#[tokio::test]
async fn a_burst_from_a_trusted_address_is_never_banned() {
    // The defaults trust loopback: a local test suite's 600 requests at once pass, on the API
    // and afterwards on the proxy.
    let s = shared().await;
    let answers = health_burst(&s, &client_from([127, 0, 0, 1]), 12, |_| false).await;
    assert_eq!(answers.len(), 600);
    let refused: Vec<_> = answers.iter().filter(|(st, _)| *st != 200).collect();
    assert!(
        refused.is_empty(),
        "{} refused: {:?}",
        refused.len(),
        refused.first()
    );
    let greeting = proxy_greeting(s.pg_port, [127, 0, 0, 1]).await;
    assert!(
        greeting.starts_with('R'),
        "asked for a password: {greeting:?}"
    );
    let (st, _) = call(&s, reqwest::Method::GET, "/health", None, None).await;
    assert_eq!(st, 200);
}

#[tokio::test]
async fn an_untrusted_address_is_banned_and_the_ban_is_logged_once() {
    let s = hardened().await;
    // The API: a flood from 127.0.0.9 earns a ban, and the requests after it are refused.
    let banned = |a: &[(u16, Option<String>)]| {
        a.iter()
            .any(|(st, r)| *st == 429 && r.as_deref() == Some("300"))
    };
    let client = client_from([127, 0, 0, 9]);
    let answers = health_burst(&s, &client, 20, banned).await;
    assert!(banned(&answers), "no ban after {} requests", answers.len());
    let after = health_burst(&s, &client, 1, |_| true).await;
    assert!(after.iter().all(|(st, _)| *st == 429));
    assert!(
        proxy_greeting(s.pg_port, [127, 0, 0, 9])
            .await
            .contains("banned")
    );
    let lines = log_lines(&s, &["WARN", "banned", "127.0.0.9"]).await;
    assert_eq!(
        lines.len(),
        1,
        "one warning per ban: {lines:#?}\n{}",
        s.log_tail()
    );
    assert!(lines[0].contains("300"), "the ban's length: {}", lines[0]);

    // The proxy: a flood of connection attempts from 127.0.0.10 earns a ban, logged once too.
    let mut batches = 0;
    loop {
        let flood: Vec<_> = (0..100)
            .map(|_| proxy_greeting(s.pg_port, [127, 0, 0, 10]))
            .collect();
        let greetings = futures_util::future::join_all(flood).await;
        batches += 1;
        if greetings.iter().any(|g| g.contains("banned")) {
            break;
        }
        assert!(batches < 20, "no proxy ban after {batches} batches");
    }
    let lines = log_lines(&s, &["WARN", "banned", "127.0.0.10"]).await;
    assert_eq!(lines.len(), 1, "one warning per ban: {lines:#?}");
    assert!(lines[0].contains("300"), "the ban's length: {}", lines[0]);
}

#[tokio::test]
async fn silent_connections_from_one_address_cannot_block_proxy_logins() {
    // Loopback is trusted (never rate-limited), and still capped before authentication.
    let s = shared().await;
    let (_, url) = account_with_workspace(&s, "silent@example.com").await;
    let silent = silent_connections(s.pg_port, [127, 0, 0, 12], 300);
    // Every one has been accepted (and the ones over a cap closed) once a connection opened
    // after them has its answer: 'S' to its SSLRequest when it got a slot, else the end.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::from(([127, 0, 0, 12], 0)))
        .expect("bind");
    let mut last = socket
        .connect(SocketAddr::from(([127, 0, 0, 1], s.pg_port)))
        .await
        .expect("connect");
    tokio::io::AsyncWriteExt::write_all(&mut last, &[0, 0, 0, 8, 4, 210, 22, 47])
        .await
        .expect("SSLRequest");
    let mut answer = [0u8; 1];
    let answered = tokio::time::timeout(Duration::from_secs(10), last.read(&mut answer)).await;
    assert!(
        matches!(answered, Ok(Ok(0)) | Ok(Err(_))),
        "one address past its cap is closed at once: {answered:?}"
    );

    // Another address logs in at once, while the silent ones hold what they may.
    assert_eq!(proxy_login_from(&url, [127, 0, 0, 1]).await, Ok(1));
    let open = silent
        .iter()
        .filter(|rx| *rx.borrow() == Silent::Open)
        .count();
    assert!(open <= 32, "{open} silent connections held a slot");

    // And none of them outlives the startup deadline (5 s), far below the 15 s that the whole
    // authentication may take.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    for mut rx in silent {
        let closed =
            tokio::time::timeout_at(deadline, rx.wait_for(|s| matches!(s, Silent::Closed(_))))
                .await
                .expect("every silent connection is closed")
                .map(|s| *s);
        let Ok(Silent::Closed(held)) = closed else {
            panic!("not reported: {closed:?}");
        };
        assert!(held < Duration::from_secs(12), "held {held:?}");
    }
}

/// Sends SIGCONT to a stopped process when dropped, however the test ends.
struct Resume(nix::unistd::Pid);

impl Drop for Resume {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(self.0, nix::sys::signal::Signal::SIGCONT);
    }
}

#[tokio::test]
async fn a_burst_of_connections_while_tdb_is_busy_waits_in_the_kernel_queue() {
    // A server of its own: this one is frozen for a while.
    let s = TdbServer::start(bin()).await.expect("tdb serve starts");
    let pid = nix::unistd::Pid::from_raw(s.pid().expect("pid") as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).expect("SIGSTOP");
    let resume = Resume(pid);

    // While tdb accepts nothing, the kernel completes the handshakes of a burst of 300 (a
    // client pool opening at once) on each listener and queues them. With a backlog of 128 the
    // rest had their SYNs dropped (the clients retry after 1, 3, 7, 15 s) or, worse, their last
    // ACK, which leaves a client that believes itself connected to a server that never heard
    // of it.
    let proxy = silent_connections(s.pg_port, [127, 0, 0, 14], 300);
    let api = silent_connections(api_port(&s), [127, 0, 0, 15], 300);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    for (which, list) in [("proxy", &proxy), ("API", &api)] {
        for rx in list {
            let mut rx = rx.clone();
            let opened =
                tokio::time::timeout_at(deadline, rx.wait_for(|s| *s != Silent::Connecting))
                    .await
                    .map(|s| s.map(|s| *s));
            assert!(
                matches!(opened, Ok(Ok(Silent::Open))),
                "every {which} connection of the burst is queued while tdb is stopped: {opened:?}"
            );
        }
    }
    drop(resume);

    // Once tdb runs again it takes every one of them and closes each (over the address's cap at
    // once, the rest at the startup deadline): none is left half-open.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    for mut rx in proxy {
        let closed =
            tokio::time::timeout_at(deadline, rx.wait_for(|s| matches!(s, Silent::Closed(_))))
                .await
                .map(|s| s.map(|s| *s));
        assert!(
            matches!(closed, Ok(Ok(Silent::Closed(_)))),
            "every proxy connection of the burst is closed after tdb resumes: {closed:?}"
        );
    }
    drop(api);
}

fn api_port(s: &TdbServer) -> u16 {
    s.api_url
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("API port")
}

#[tokio::test]
async fn dripped_headers_and_bodies_are_cut_at_their_timeouts() {
    // The hardened serve gives headers 2 s and bodies 3 s.
    let s = hardened().await;
    let port = api_port(&s);
    let local = [127, 0, 0, 13];
    let limit = Duration::from_secs(30);
    let slow_header =
        b"X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

    // Headers a byte at a time: cut at the header timeout, never answered 200.
    let (answer, held) = drip(port, local, b"GET /health HTTP/1.1\r\n", slow_header, limit)
        .await
        .expect("dripped headers are cut");
    assert!(!answer.contains("200 OK"), "{answer}");
    assert!(held < Duration::from_secs(15), "held {held:?}");

    // A connection that never sends a byte, and one idle after a complete request.
    let (_, held) = drip(port, local, b"", b"", limit)
        .await
        .expect("a silent connection is closed");
    assert!(held < Duration::from_secs(15), "held {held:?}");
    let (answer, held) = drip(
        port,
        local,
        b"GET /health HTTP/1.1\r\nHost: tdb\r\n\r\n",
        b"",
        limit,
    )
    .await
    .expect("an idle keep-alive connection is closed");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(held < Duration::from_secs(15), "held {held:?}");

    // A body a byte at a time: 408 in the envelope at the body deadline.
    let head = b"POST /signup HTTP/1.1\r\nHost: tdb\r\nContent-Type: application/json\r\n\
                 Content-Length: 1000\r\n\r\n";
    let body = format!(
        "{{\"email\": \"slow@example.com\", \"password\": \"{}",
        "a".repeat(900)
    );
    let (answer, held) = drip(port, local, head, body.as_bytes(), limit)
        .await
        .expect("a dripped body is cut");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"code\":\"request_timeout\""), "{answer}");
    assert!(held < Duration::from_secs(15), "held {held:?}");
}

#[tokio::test]
async fn idle_connections_cannot_exhaust_the_file_limit() {
    // The test holds some 2,000 sockets itself.
    let (_, hard) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .expect("getrlimit");
    assert!(
        hard >= 4096,
        "this test needs a hard file limit of 4096 or more, not {hard}"
    );
    nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, hard, hard)
        .expect("raise the test's own file limit");
    // tdb starts with a soft limit of 256 and a hard one of 1,024, which it raises to; the
    // idle connections are not cut by the header timeout while the test counts them.
    let options = ServeOptions {
        nofile: Some((256, 1024)),
        config_toml: Some("api_header_timeout_secs = 120\n".into()),
        ..Default::default()
    };
    let s = TdbServer::start_with(bin(), options)
        .await
        .expect("tdb serve starts");
    let (_, url) = account_with_workspace(&s, "fds@example.com").await;
    let port = api_port(&s);
    let health_from = |local: [u8; 4]| {
        let client = client_from(local);
        let url = format!("{}/health", s.api_url);
        async move {
            tokio::time::timeout(Duration::from_secs(10), client.get(url).send())
                .await
                .map(|r| r.map(|r| r.status().as_u16()).map_err(|e| e.to_string()))
        }
    };

    // 1,100 idle connections from one address: it keeps 64, the rest are closed at once, and
    // another address is served, on the API and the proxy. They are opened a hundred at a time:
    // more at once than the listen backlog holds would leave connections the client counts as
    // open and the server has not accepted yet.
    let mut conns = Vec::new();
    for _ in 0..11 {
        conns.extend(silent_connections(port, [127, 0, 0, 1], 100));
        open_settles(&conns, 64).await;
    }
    let open = open_settles(&conns, 64).await;
    assert!(
        open <= 64,
        "{open} connections from one address are open\n{}",
        s.log_tail()
    );
    assert_eq!(health_from([127, 0, 0, 2]).await, Ok(Ok(200)));
    assert_eq!(proxy_login_from(&url, [127, 0, 0, 2]).await, Ok(1));
    // A request on one more connection from the full address is answered 429 at once.
    assert_eq!(health_from([127, 0, 0, 1]).await, Ok(Ok(429)));

    // Ten more addresses, 64 each: past 512 in all, the rest are closed at once, and the
    // descriptors left over still serve proxy logins.
    for last in 20..30 {
        conns.extend(silent_connections(port, [127, 0, 0, last], 64));
        open_settles(&conns, 512).await;
    }
    let open = open_settles(&conns, 512).await;
    assert!(open <= 512, "{open} API connections are open");
    assert_eq!(proxy_login_from(&url, [127, 0, 0, 2]).await, Ok(1));
    let full = health_from([127, 0, 0, 2]).await;
    assert!(
        matches!(full, Ok(Ok(503)) | Ok(Err(_))),
        "a connection past the cap is refused at once: {full:?}"
    );

    // What it did and why, in the log.
    let raised = log_lines(&s, &["file limit raised", "from=256", "to=1024"]).await;
    assert_eq!(raised.len(), 1, "{}", s.log_tail());
    let caps = log_lines(&s, &["API connection limits", "max_connections=512"]).await;
    assert_eq!(caps.len(), 1, "{}", s.log_tail());

    // Once they are gone, everyone is served again.
    drop(conns);
    let deadline = Instant::now() + Duration::from_secs(30);
    while health_from([127, 0, 0, 2]).await != Ok(Ok(200)) {
        assert!(Instant::now() < deadline, "the API did not recover");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `POST /signup` from `local`: the status, the body and the Retry-After header.
async fn signup_from(
    s: &TdbServer,
    local: [u8; 4],
    body: serde_json::Value,
) -> (u16, serde_json::Value, Option<String>) {
    let resp = client_from(local)
        .post(format!("{}/signup", s.api_url))
        .json(&body)
        .send()
        .await
        .expect("response");
    let status = resp.status().as_u16();
    let retry = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body: serde_json::Value = resp.json().await.expect("json");
    assert_envelope(status, &body);
    (status, body, retry)
}

#[tokio::test]
async fn signup_attempts_from_one_address_are_rate_limited() {
    // The hardened serve allows 5 attempts per hour from an untrusted address.
    let s = hardened().await;
    let untrusted = [127, 0, 0, 14];
    let attempt = |email: &str| json!({"email": email, "password": "correct-horse"});
    let (st, body, _) = signup_from(&s, untrusted, attempt("probe-0@example.com")).await;
    assert_eq!(st, 201, "{body}");
    // Whether an e-mail has an account is still answered, but only so many times.
    let (st, body, _) = signup_from(&s, untrusted, attempt("probe-0@example.com")).await;
    assert_eq!(st, 409, "{body}");
    for i in 1..4 {
        let (st, body, _) =
            signup_from(&s, untrusted, attempt(&format!("probe-{i}@example.com"))).await;
        assert_eq!(st, 201, "{body}");
    }
    let (st, body, retry) = signup_from(&s, untrusted, attempt("probe-0@example.com")).await;
    assert_eq!(st, 429, "{body}");
    assert_eq!(body["code"], "rate_limited");
    assert!(str_of(&body, "error").contains("sign-up"), "{body}");
    let retry: u64 = retry.and_then(|r| r.parse().ok()).expect("Retry-After");
    assert!((1..=3600).contains(&retry), "{retry}");

    // Another address is not affected, and a trusted one is never limited.
    let (st, body, _) = signup_from(&s, [127, 0, 0, 15], attempt("other@example.com")).await;
    assert_eq!(st, 201, "{body}");
    for i in 0..7 {
        let (st, body, _) = signup_from(
            &s,
            [127, 0, 0, 1],
            attempt(&format!("local-{i}@example.com")),
        )
        .await;
        assert_eq!(st, 201, "{body}");
    }
}

/// Rewrites the serve's tdb.toml and restarts it.
async fn reconfigure(s: &mut TdbServer, toml: &str) {
    let path = s.data_dir().join("tdb.toml");
    std::fs::write(&path, toml).expect("write tdb.toml");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    s.restart().await.expect("restart");
}

#[tokio::test]
async fn signup_can_be_closed_or_by_invitation() {
    // The first account signs up while sign-up is open.
    let mut s = TdbServer::start_with(
        bin(),
        ServeOptions {
            config_toml: Some("signup = \"open\"\n".into()),
            ..Default::default()
        },
    )
    .await
    .expect("tdb serve starts");
    let inviter = signup(&s, "inviter@example.com", "Inviter").await;
    let key = str_of(&inviter, "api_key").to_string();
    let (st, read) = post(
        &s,
        "/apikeys",
        Some(&key),
        json!({"name": "ro", "role": "read"}),
    )
    .await;
    assert_eq!(st, 201, "{read}");
    let read_key = str_of(&read, "api_key").to_string();

    // By invitation: no code, a wrong code, a used or expired code are all refused.
    reconfigure(&mut s, "signup = \"invite\"\n").await;
    let newcomer = |email: &str, code: Option<&str>| {
        let mut body = json!({"email": email, "password": "correct-horse"});
        if let Some(code) = code {
            body["invite_code"] = json!(code);
        }
        body
    };
    let (st, body) = post(&s, "/signup", None, newcomer("new@example.com", None)).await;
    assert_eq!(st, 403, "{body}");
    assert!(
        str_of(&body, "error").contains("signup = \"invite\"")
            && str_of(&body, "error").contains("invite_code"),
        "{body}"
    );
    let (st, body) = post(
        &s,
        "/signup",
        None,
        newcomer("new@example.com", Some("tdb_inv_nope")),
    )
    .await;
    assert_eq!(st, 403, "{body}");

    // Invitations are made by an admin key; the code is shown once.
    let (st, body) = post(&s, "/invitations", Some(&read_key), json!({})).await;
    assert_eq!(
        (st, body["code"].as_str()),
        (403, Some("role_required")),
        "{body}"
    );
    let (st, body) = post(
        &s,
        "/invitations",
        Some(&key),
        json!({"expires_in_hours": 0}),
    )
    .await;
    assert_eq!(
        (st, body["field"].as_str()),
        (400, Some("expires_in_hours")),
        "{body}"
    );
    let (st, invitation) = post(&s, "/invitations", Some(&key), json!({})).await;
    assert_eq!(st, 201, "{invitation}");
    let code = str_of(&invitation, "invite_code").to_string();
    assert!(invitation["expires_at"].is_string(), "{invitation}");

    // A taken e-mail is answered only to a valid code, which it does not use up.
    let (st, body) = post(&s, "/signup", None, newcomer("inviter@example.com", None)).await;
    assert_eq!(st, 403, "{body}");
    let (st, body) = post(
        &s,
        "/signup",
        None,
        newcomer("inviter@example.com", Some(&code)),
    )
    .await;
    assert_eq!(st, 409, "{body}");
    let (st, body) = post(
        &s,
        "/signup",
        None,
        newcomer("new@example.com", Some(&code)),
    )
    .await;
    assert_eq!(st, 201, "{body}");
    let (st, body) = post(
        &s,
        "/signup",
        None,
        newcomer("again@example.com", Some(&code)),
    )
    .await;
    assert_eq!(st, 403, "a code is used once: {body}");

    // The catalog keeps a digest, never the code.
    let dump = tdb_testkit::pg_dump(&s.managed_admin_url("tdb_catalog").expect("url"))
        .expect("dump catalog");
    assert!(
        dump.contains("CREATE TABLE public.invitations"),
        "no invitations table"
    );
    assert!(
        !dump.contains(&code),
        "the invitation code is stored in clear"
    );

    // An expired code is refused.
    let (_, late) = post(
        &s,
        "/invitations",
        Some(&key),
        json!({"expires_in_hours": 1}),
    )
    .await;
    let late_code = str_of(&late, "invite_code").to_string();
    let mut catalog = {
        use sqlx::Connection;
        sqlx::PgConnection::connect(&s.managed_admin_url("tdb_catalog").expect("url"))
            .await
            .expect("catalog")
    };
    sqlx::query("UPDATE invitations SET expires_at = now() - interval '1 second' WHERE id = $1")
        .bind(str_of(&late, "id"))
        .execute(&mut catalog)
        .await
        .expect("expire");
    let (st, body) = post(
        &s,
        "/signup",
        None,
        newcomer("late@example.com", Some(&late_code)),
    )
    .await;
    assert_eq!(st, 403, "{body}");

    // The CLI makes an invitation, and signs up with one.
    let home = tempfile::tempdir().expect("home");
    let cli = Cli {
        home: home.path(),
        api_url: &s.api_url,
        key: Some(&key),
    };
    let made = cli.json(&["invitations", "create", "--expires-in-hours", "2"]);
    let cli_code = str_of(&made, "invite_code").to_string();
    let guest = Cli {
        home: home.path(),
        api_url: &s.api_url,
        key: None,
    };
    guest.ok(&[
        "signup",
        "--email",
        "cli@example.com",
        "--password",
        "correct-horse",
        "--invite-code",
        &cli_code,
    ]);

    // The OpenAPI document has the endpoint.
    let doc: serde_json::Value = reqwest::get(format!("{}/openapi.json", s.api_url))
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert!(doc["paths"]["/invitations"]["post"].is_object());

    // Closed: nobody signs up, not even with a code; accounts still log in.
    let (_, spare) = post(&s, "/invitations", Some(&key), json!({})).await;
    let spare = str_of(&spare, "invite_code").to_string();
    reconfigure(&mut s, "signup = \"closed\"\n").await;
    let (st, body) = post(
        &s,
        "/signup",
        None,
        newcomer("closed@example.com", Some(&spare)),
    )
    .await;
    assert_eq!(st, 403, "{body}");
    assert!(
        str_of(&body, "error").contains("signup = \"closed\""),
        "{body}"
    );
    let (st, body) = post(
        &s,
        "/login",
        None,
        json!({"email": "new@example.com", "password": "correct-horse"}),
    )
    .await;
    assert_eq!(st, 200, "{body}");
}
