//! Hostile and ordinary clients for the hardening tests: HTTP clients and raw sockets bound to
//! a chosen loopback source address (so that each test plays its own client address), silent
//! and dripping connections, and proxy logins from such an address.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use tdb_testkit::TdbServer;
use tokio::io::AsyncReadExt;

/// An HTTP client whose connections come from `local`.
pub fn client_from(local: [u8; 4]) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(IpAddr::from(local))
        .build()
        .expect("client")
}

/// `GET /health` through `client` in batches of 50 at once until `done` says stop or `batches`
/// have gone; returns every status with its Retry-After. Each body is read, so the client keeps
/// reusing its 50 connections (within the cap per address; a second client from the same
/// address at once could go past it while the first one's connections are closing).
pub async fn health_burst(
    s: &TdbServer,
    client: &reqwest::Client,
    batches: usize,
    done: impl Fn(&[(u16, Option<String>)]) -> bool,
) -> Vec<(u16, Option<String>)> {
    let health = format!("{}/health", s.api_url);
    let mut answers = Vec::new();
    for _ in 0..batches {
        let batch: Vec<_> = (0..50).map(|_| client.get(&health).send()).collect();
        for resp in futures_util::future::join_all(batch).await {
            let resp = resp.unwrap_or_else(|e| panic!("response: {e:?}\n{}", s.log_tail()));
            let retry = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let status = resp.status().as_u16();
            let _ = resp.bytes().await;
            answers.push((status, retry));
        }
        if done(&answers) {
            break;
        }
    }
    answers
}

/// A proxy login from `local` with `url`'s credentials, and one query.
pub async fn proxy_login_from(url: &str, local: [u8; 4]) -> Result<i32, String> {
    use sqlx::ConnectOptions;
    let options: sqlx::postgres::PgConnectOptions = url.parse().map_err(|e| format!("{e}"))?;
    // sqlx cannot bind a source address: connect through a socket bound to `local`, relayed.
    let relay = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let relay_port = relay.local_addr().map_err(|e| e.to_string())?.port();
    let proxy_port = options.get_port();
    tokio::spawn(async move {
        if let Ok((mut client, _)) = relay.accept().await {
            let socket = tokio::net::TcpSocket::new_v4().expect("socket");
            socket
                .bind(SocketAddr::from((local, 0)))
                .expect("bind source address");
            if let Ok(mut upstream) = socket
                .connect(SocketAddr::from(([127, 0, 0, 1], proxy_port)))
                .await
            {
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            }
        }
    });
    let mut conn =
        tokio::time::timeout(Duration::from_secs(10), options.port(relay_port).connect())
            .await
            .map_err(|_| "the login did not finish in 10 s".to_string())?
            .map_err(|e| e.to_string())?;
    let one: i32 = sqlx::query_scalar("SELECT 1")
        .fetch_one(&mut conn)
        .await
        .map_err(|e| e.to_string())?;
    Ok(one)
}

/// Where one of [`silent_connections`] is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Silent {
    Connecting,
    Open,
    /// Closed by the server after being open this long (zero: never connected).
    Closed(Duration),
}

/// Opens `n` TCP connections from `local` to `port` that never send a byte; each one's task
/// reports where it is, and closes its connection when its receiver is dropped.
pub fn silent_connections(
    port: u16,
    local: [u8; 4],
    n: usize,
) -> Vec<tokio::sync::watch::Receiver<Silent>> {
    (0..n)
        .map(|_| {
            let (tx, rx) = tokio::sync::watch::channel(Silent::Connecting);
            tokio::spawn(async move {
                let socket = tokio::net::TcpSocket::new_v4().expect("socket");
                socket
                    .bind(SocketAddr::from((local, 0)))
                    .expect("bind source address");
                let Ok(mut stream) = socket
                    .connect(SocketAddr::from(([127, 0, 0, 1], port)))
                    .await
                else {
                    let _ = tx.send(Silent::Closed(Duration::ZERO));
                    return;
                };
                let opened = Instant::now();
                let _ = tx.send(Silent::Open);
                let mut buf = [0u8; 1024];
                // Until the server closes, or the test drops the receiver.
                tokio::select! {
                    _ = async { while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {} } => {
                        let _ = tx.send(Silent::Closed(opened.elapsed()));
                    }
                    _ = tx.closed() => {}
                }
            });
            rx
        })
        .collect()
}

/// Connects from `local`, sends `head`, then one byte of `drip` every 300 ms; returns what the
/// server answered and when it closed the connection, or `None` if it still had not after
/// `limit`.
pub async fn drip(
    port: u16,
    local: [u8; 4],
    head: &[u8],
    drip: &[u8],
    limit: Duration,
) -> Option<(String, Duration)> {
    let stream = super::common::connect_from(local, port).await;
    let started = Instant::now();
    let (mut r, mut w) = stream.into_split();
    let head = head.to_vec();
    let drip = drip.to_vec();
    let writer = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        w.write_all(&head).await?;
        for b in drip {
            tokio::time::sleep(Duration::from_millis(300)).await;
            w.write_all(&[b]).await?;
        }
        // Keep the connection open, silent, until the server ends it.
        tokio::time::sleep(Duration::from_secs(3600)).await;
        std::io::Result::Ok(w)
    });
    let mut got = Vec::new();
    let read = tokio::time::timeout(limit, async {
        let mut buf = [0u8; 4096];
        loop {
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    writer.abort();
    read.ok().map(|()| {
        (
            String::from_utf8_lossy(&got).into_owned(),
            started.elapsed(),
        )
    })
}

/// Counts the connections of `conns` that are open now, once that number has come down to
/// `at_most` (up to 30 s), or as it is then.
pub async fn open_settles(conns: &[tokio::sync::watch::Receiver<Silent>], at_most: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let open = conns
            .iter()
            .filter(|rx| *rx.borrow() == Silent::Open)
            .count();
        let connecting = conns
            .iter()
            .filter(|rx| *rx.borrow() == Silent::Connecting)
            .count();
        if (open <= at_most && connecting == 0) || Instant::now() > deadline {
            return open;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
