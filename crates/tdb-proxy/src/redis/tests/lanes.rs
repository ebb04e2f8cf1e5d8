//! Shared server connections: sessions of one ACL user that log in with AUTH share one
//! connection (a lane) while their commands keep no state on it; each gets its own replies, in
//! order, however their pipelines interleave; a command that needs a connection of its own
//! (MULTI, a blocking pop, a subscription) moves its session off the lane after what it sent
//! there was answered; users never share a lane; the lane closes with its last session, and a
//! lane whose connection the server closed is replaced.

use std::time::Duration;

use tdb_resp::frame::Frame;

use super::*;

/// The server's connections logged in as `user`, as `CLIENT LIST` shows them.
async fn connections_of(redis: &TestRedis, user: &str) -> anyhow::Result<usize> {
    let mut admin = redis.admin().await?;
    let list = text(&admin.call(&["CLIENT", "LIST"]).await?);
    let needle = format!(" user={user} ");
    Ok(list.lines().filter(|line| line.contains(&needle)).count())
}

/// Waits until `user` has `want` connections on the server.
async fn wait_for_connections(redis: &TestRedis, user: &str, want: usize) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let now = connections_of(redis, user).await?;
        if now == want {
            return Ok(());
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "{user} has {now} server connections, not {want}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One client's pipeline of `n` SETs and GETs of its own keys, and a check of every reply.
async fn pipeline(
    f: &Fixture,
    client: usize,
    n: usize,
) -> anyhow::Result<Raw<tokio::net::TcpStream>> {
    let mut c = f.login(&A).await?;
    let mut bytes = Vec::new();
    for i in 0..n {
        let (key, value) = (format!("lane:{client}:{i}"), format!("v{client}-{i}"));
        for args in [vec!["SET", &key, &value], vec!["GET", &key]] {
            bytes.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
            for a in args {
                bytes.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
            }
        }
    }
    c.send_raw(&bytes).await?;
    for i in 0..n {
        assert_eq!(text(&c.read().await?), "OK", "client {client}, SET {i}");
        assert_eq!(
            text(&c.read().await?),
            format!("v{client}-{i}"),
            "client {client} got another's reply"
        );
    }
    Ok(c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_of_one_user_share_a_server_connection() -> anyhow::Result<()> {
    let redis = server().await?;
    let f = Fixture::start(&redis, PlaintextPolicy::Loopback).await?;
    // 8 clients (the route has 10 slots) pipeline at once; every reply reaches the client
    // that asked, in order.
    let mut runs = tokio::task::JoinSet::new();
    let f = Arc::new(f);
    for client in 0..8 {
        let f = f.clone();
        runs.spawn(async move { pipeline(&f, client, 500).await });
    }
    let mut clients = Vec::new();
    while let Some(run) = runs.join_next().await {
        clients.push(run??);
    }
    // All 8 sessions are open, over one server connection.
    assert_eq!(connections_of(&redis, A.acl_user).await?, 1);
    assert_eq!(f.proxy.redis_lanes.open(), 1);
    // Another tenant's key named by its full name is still the tenant's own key.
    let c = &mut clients[0];
    let other = c.call(&["GET", "tb:secret"]).await?;
    assert_eq!(other, Frame::NullBulk, "the proxy prefixes every key");
    // A blocking pop leaves the lane: the server sees a second connection of the user, and
    // what the session sent before it came back first.
    c.send_raw(b"SET before 1\r\nBLPOP lane:list 0.2\r\nGET before\r\n")
        .await?;
    assert_eq!(text(&c.read().await?), "OK");
    assert_eq!(c.read().await?, Frame::NullArray);
    assert_eq!(text(&c.read().await?), "1");
    assert_eq!(connections_of(&redis, A.acl_user).await?, 2);
    // MULTI on another session: its own connection too, and the transaction holds.
    let t = &mut clients[1];
    assert_eq!(text(&t.call(&["MULTI"]).await?), "OK");
    assert_eq!(text(&t.call(&["INCR", "counter"]).await?), "QUEUED");
    let exec = t.call(&["EXEC"]).await?;
    assert_eq!(exec.as_items().map(<[Frame]>::len), Some(1), "{exec:?}");
    assert_eq!(connections_of(&redis, A.acl_user).await?, 3);
    // Another tenant's sessions have a lane of their own, as their own ACL user.
    let mut b = f.login(&B).await?;
    assert_eq!(b.call(&["GET", "lane:0:0"]).await?, Frame::NullBulk);
    assert_eq!(connections_of(&redis, B.acl_user).await?, 1);
    assert_eq!(f.proxy.redis_lanes.open(), 2);
    // A's read credential has a lane of its read user, which may not write.
    let mut r = f.raw().await?;
    assert_eq!(text(&r.call(&["AUTH", A.id, A_READ_KEY]).await?), "OK");
    assert_eq!(text(&r.call(&["GET", "lane:3:7"]).await?), "v3-7");
    let write = r.call(&["SET", "lane:3:7", "x"]).await?;
    assert!(text(&write).starts_with("NOPERM"), "{write:?}");
    assert_eq!(connections_of(&redis, "ta_read").await?, 1);
    // The lane closes with its last session.
    drop((clients, b, r));
    wait_for_connections(&redis, A.acl_user, 0).await?;
    wait_for_connections(&redis, B.acl_user, 0).await?;
    let f = Arc::into_inner(f).expect("no other holder");
    f.finish().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lane_the_server_closed_ends_its_sessions_and_is_replaced() -> anyhow::Result<()> {
    let redis = server().await?;
    let f = Fixture::start(&redis, PlaintextPolicy::Loopback).await?;
    let mut first = f.login(&B).await?;
    let mut second = f.login(&B).await?;
    assert_eq!(text(&first.call(&["SET", "k", "v"]).await?), "OK");
    assert_eq!(text(&second.call(&["GET", "k"]).await?), "v");
    wait_for_connections(&redis, B.acl_user, 1).await?;
    let mut admin = redis.admin().await?;
    let killed = admin.call(&["CLIENT", "KILL", "USER", B.acl_user]).await?;
    assert_eq!(killed, Frame::Integer(1));
    // Both sessions end: the proxy does not answer for a connection it has lost.
    for c in [&mut first, &mut second] {
        if let Ok(frame) = c.call(&["GET", "k"]).await {
            anyhow::ensure!(frame.is_error(), "answered {frame:?} after the kill");
        }
        assert!(c.closed().await);
    }
    // A new session opens a new lane.
    let mut third = f.login(&B).await?;
    assert_eq!(text(&third.call(&["GET", "k"]).await?), "v");
    wait_for_connections(&redis, B.acl_user, 1).await?;
    drop((first, second, third));
    f.finish().await
}

/// One `redis-cli` session over TLS that runs `commands` (one per line); its output.
async fn redis_cli_tls(f: &Fixture, tenant: &Tenant, commands: &str) -> anyhow::Result<String> {
    use tokio::io::AsyncWriteExt;
    let mut cli = f
        .redis_cli(true, tenant)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let mut stdin = cli.stdin.take().expect("piped");
    stdin.write_all(commands.as_bytes()).await?;
    drop(stdin);
    let out = cli.wait_with_output().await?;
    anyhow::ensure!(out.status.success(), "redis-cli failed: {out:?}");
    Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_string())
}

/// Waits until every session runs on one worker: `want` there, none on the others.
async fn wait_on_one_worker(f: &Fixture, want: usize) -> anyhow::Result<()> {
    let (workers, _) = f.workers.as_ref().expect("sessions on workers");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let mut now = workers.sessions();
        now.sort_unstable();
        if now.last() == Some(&want) && now.iter().rev().skip(1).all(|&n| n == 0) {
            return Ok(());
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "sessions by worker: {:?}, not {want} on one",
            workers.sessions()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// With two workers, each accepted connection goes to the less busy one, so sessions of one
/// user were spread over both and each worker opened a lane of its own (two server connections,
/// each carrying half the requests). A session now moves to the worker its user's lane lives
/// on, with its client connection, TLS state and all: one lane per user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_accepted_by_two_workers_share_one_lane() -> anyhow::Result<()> {
    let redis = server().await?;
    let f = Fixture::on_workers(&redis, 2).await?;
    let mut clients = Vec::new();
    for i in 0..6 {
        let mut c = f.login(&A).await?;
        let (key, value) = (format!("w:{i}"), format!("v{i}"));
        assert_eq!(text(&c.call(&["SET", &key, &value]).await?), "OK");
        clients.push(c);
    }
    wait_on_one_worker(&f, 6).await?;
    assert_eq!(connections_of(&redis, A.acl_user).await?, 1);
    assert_eq!(f.proxy.redis_lanes.open(), 1);
    // A TLS session, accepted by the idle worker, moves too and is served there.
    let out = redis_cli_tls(&f, &A, "GET w:3\nSET w:tls yes\nGET w:tls\n").await?;
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["v3", "OK", "yes"],
        "{out}"
    );
    assert_eq!(connections_of(&redis, A.acl_user).await?, 1);
    // Every moved session still gets its own replies, pipelined.
    for (i, c) in clients.iter_mut().enumerate() {
        c.send_raw(format!("GET w:{i}\r\nGET w:tls\r\n").as_bytes())
            .await?;
        assert_eq!(text(&c.read().await?), format!("v{i}"));
        assert_eq!(text(&c.read().await?), "yes");
    }
    // Another user's lane is placed by its own first session.
    let mut b = f.login(&B).await?;
    assert_eq!(b.call(&["GET", "w:0"]).await?, Frame::NullBulk);
    assert_eq!(connections_of(&redis, B.acl_user).await?, 1);
    assert_eq!(f.proxy.redis_lanes.open(), 2);
    drop((clients, b));
    wait_for_connections(&redis, A.acl_user, 0).await?;
    f.finish().await
}
