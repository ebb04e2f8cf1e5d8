//! Ending a server connection that may still be running a statement: its client left, its tenant
//! was suspended, tdb is shutting down, or the statement outlived `query_timeout_ms`. Closing the
//! socket is not enough (a server notices a vanished client only when it next reads or writes),
//! and a Terminate message waits for the statement to end. So the statement gets a
//! CancelRequest, which needs no password (a tenant that changed its role's password cannot
//! defeat it), and the connection is closed from the proxy's side; a server that has not closed
//! its side [`ESCALATION`] later has its backend ended with `pg_terminate_backend` by the
//! server's administrator, which neither a session setting nor an exception handler can refuse.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::backend::{self, Backend, BackendTarget};
use super::frame::{cstr, message};
use super::watchdog::ESCALATION;
use crate::route::Router;

/// The longest [`end_running`] takes: a cancel, the wait for the server, and the
/// administrator's connection and query.
pub const LONGEST: Duration = Duration::from_secs(20);
/// The largest message read from the administrator's connection.
const MAX_MESSAGE: usize = 64 * 1024;

/// Where a server connection leads: its target and the catalog's id of its server.
pub struct ServerOf<'a> {
    pub target: &'a std::sync::Arc<BackendTarget>,
    pub server_id: &'a str,
}

/// Stops whatever `backend` runs and closes it. `cancelled`: a CancelRequest was sent and
/// ignored already (the statement outlived its escalation), so the administrator acts at once.
pub async fn end_running(backend: Backend, server: ServerOf<'_>, router: &Router, cancelled: bool) {
    let Backend {
        mut stream,
        pid,
        key,
        ..
    } = backend;
    let ended = tokio::time::timeout(LONGEST, async {
        if !cancelled {
            let t = server.target;
            if let Err(e) = backend::cancel(&t.host, t.port, pid, key).await {
                tracing::warn!(error = %e, "sending a cancel request to a server failed");
            }
            if closes_within(&mut stream, ESCALATION).await {
                return;
            }
        }
        match terminate_as_admin(&server, router, pid).await {
            Ok(()) => tracing::info!(
                pid,
                database = %server.target.database,
                "ended a server session that did not stop its statement when cancelled"
            ),
            Err(why) => tracing::warn!(
                pid,
                database = %server.target.database,
                why,
                "a server session that ignored its cancel could not be ended"
            ),
        }
    })
    .await;
    if ended.is_err() {
        tracing::warn!(
            pid,
            "ending a server session took too long; left to the server"
        );
    }
}

/// Closes the proxy's side of `stream` and waits up to `limit` for the server to close its
/// side (reading and dropping whatever it still sends). A server that reads end-of-file ends
/// the session as soon as its statement is over, even in the middle of a COPY.
async fn closes_within<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S, limit: Duration) -> bool {
    let closed = async {
        // The proxy's half is closed even when the server's receive buffer is full.
        let _ = tokio::time::timeout(limit, stream.shutdown()).await;
        let mut sink = vec![0u8; 16 * 1024];
        loop {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(limit, closed).await.is_ok()
}

/// `pg_terminate_backend(pid)` as the server's administrator, from the `postgres` database as
/// the engines connect (a session in the tenant's database could hold up its drop or move).
async fn terminate_as_admin(
    server: &ServerOf<'_>,
    router: &Router,
    pid: u32,
) -> Result<(), &'static str> {
    let admin = router
        .admin(server.server_id)
        .await
        .ok_or("the server's administrator is not known")?;
    let target = BackendTarget {
        host: server.target.host.clone(),
        port: server.target.port,
        database: "postgres".into(),
        user: admin.user,
        password: admin.password,
        params: vec![("application_name".into(), "tdb-proxy".into())],
        transaction_pooling: false,
    };
    let conn = Backend::connect(&target)
        .await
        .map_err(|_| "the administrator could not connect")?;
    let mut stream = conn.stream;
    let mut query = Vec::with_capacity(64);
    message(&mut query, b'Q', |b| {
        cstr(b, &format!("SELECT pg_terminate_backend({pid})"));
    });
    stream
        .write_all(&query)
        .await
        .map_err(|_| "the administrator's connection failed")?;
    let answered = ready_without_error(&mut stream).await;
    let mut goodbye = Vec::with_capacity(5);
    message(&mut goodbye, b'X', |_| {});
    let _ = stream.write_all(&goodbye).await;
    answered
}

/// Reads a simple query's answer up to `ReadyForQuery`; an error if the server refused it.
async fn ready_without_error<S: AsyncRead + Unpin>(stream: &mut S) -> Result<(), &'static str> {
    let mut failed = false;
    loop {
        let mut head = [0u8; 5];
        stream
            .read_exact(&mut head)
            .await
            .map_err(|_| "the administrator's connection closed")?;
        let len = i32::from_be_bytes([head[1], head[2], head[3], head[4]]);
        let body = usize::try_from(len)
            .ok()
            .filter(|n| (4..=MAX_MESSAGE).contains(n))
            .ok_or("a malformed answer to the administrator")?
            - 4;
        let mut skip = vec![0u8; body];
        stream
            .read_exact(&mut skip)
            .await
            .map_err(|_| "the administrator's connection closed")?;
        match head[0] {
            b'E' => failed = true,
            b'Z' if failed => return Err("the server refused pg_terminate_backend"),
            b'Z' => return Ok(()),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_peer_that_closes_is_seen_closing_and_one_that_does_not_is_not() {
        let (mut near, mut far) = tokio::io::duplex(64);
        let peer = tokio::spawn(async move {
            // Reads to the end, as a server does once it sees end-of-file, then goes.
            let mut all = Vec::new();
            let _ = far.read_to_end(&mut all).await;
        });
        assert!(closes_within(&mut near, Duration::from_secs(5)).await);
        peer.await.expect("peer");

        let (mut near, _far) = tokio::io::duplex(64);
        assert!(!closes_within(&mut near, Duration::from_millis(50)).await);
    }

    #[tokio::test]
    async fn the_administrators_answer_is_read_to_ready_for_query() {
        let ok = [
            &b"T\0\0\0\x06\0\0"[..],
            b"D\0\0\0\x0b\0\x01\0\0\0\x01t",
            b"C\0\0\0\x0dSELECT 1\0",
            b"Z\0\0\0\x05I",
        ]
        .concat();
        assert_eq!(ready_without_error(&mut &ok[..]).await, Ok(()));
        let refused = [&b"E\0\0\0\x0aC42501\0\0"[..], b"Z\0\0\0\x05I"].concat();
        assert!(ready_without_error(&mut &refused[..]).await.is_err());
        let cut = &ok[..8];
        assert!(ready_without_error(&mut &cut[..]).await.is_err());
    }
}
