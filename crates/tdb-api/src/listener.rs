//! The API's listener: one accept loop that owns every connection's life, so that no client
//! holds one for free. Request headers must arrive within a timeout (an idle keep-alive
//! connection waiting for its next request too), a body within a deadline, and one client
//! address (an IPv6 client's /64) may hold only so many connections, all of them together only
//! so many (below the process's file limit). A connection over a cap is answered 429 or 503 in
//! the envelope as soon as its request arrives (a second at most) and closed; it never waits in
//! a queue.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ConnectInfo;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tdb_core::slots::AddressSlots;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

/// How long a client may take and how much it may hold.
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    /// From the first byte a connection may send (or the end of its previous response) to the
    /// end of a request's headers.
    pub header_timeout: Duration,
    /// From a request's headers to the end of its body.
    pub body_timeout: Duration,
    /// Open connections in all.
    pub max_connections: usize,
    /// Open connections per client address.
    pub max_per_address: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            max_connections: 512,
            max_per_address: 64,
        }
    }
}

/// Serves `app` (the API as [`crate::router_with`] builds it) on `listener` until `shutdown`,
/// with each request's peer address as `ConnectInfo`; then lets in-flight requests finish.
pub async fn serve_app(
    listener: TcpListener,
    app: axum::Router,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let total = Arc::new(Semaphore::new(limits.max_connections));
    let per_address = AddressSlots::new(limits.max_per_address);
    let refusing = Arc::new(Semaphore::new(REFUSALS_AT_ONCE));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let tracker = TaskTracker::new();
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accepting an API connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Some(slot) = per_address.enter(peer.ip()) else {
            refuse(stream, Refusal::Address(limits.max_per_address), &refusing);
            continue;
        };
        let Ok(permit) = total.clone().try_acquire_owned() else {
            refuse(stream, Refusal::Total, &refusing);
            continue;
        };
        let service = request_service(app.clone(), peer, limits.body_timeout);
        let connection = http.serve_connection(TokioIo::new(stream), service);
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            let _held = (slot, permit);
            let mut connection = std::pin::pin!(connection);
            let result = tokio::select! {
                result = connection.as_mut() => result,
                _ = shutdown.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "API connection ended with an error");
            }
        });
    }
    drop(listener);
    tracker.close();
    tracker.wait().await;
    Ok(())
}

/// Each request of a connection: its body under the deadline, its peer known, then the app.
fn request_service(
    app: axum::Router,
    peer: SocketAddr,
    body_timeout: Duration,
) -> impl hyper::service::Service<
    hyper::Request<Incoming>,
    Response = axum::response::Response,
    Error = Infallible,
    Future = impl Future<Output = Result<axum::response::Response, Infallible>> + Send,
> + Clone {
    hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let mut req = req.map(|body| {
            if body.is_end_stream() {
                axum::body::Body::new(body)
            } else {
                axum::body::Body::new(DeadlineBody::new(body, body_timeout))
            }
        });
        req.extensions_mut().insert(ConnectInfo(peer));
        app.clone().oneshot(req)
    })
}

/// Why a connection was turned away.
enum Refusal {
    /// Its address holds this many connections already.
    Address(usize),
    /// The server holds all it may.
    Total,
}

/// Refused connections that may wait for their request at once; past that, a refused connection
/// is closed without an answer.
const REFUSALS_AT_ONCE: usize = 64;
/// How long a refused connection waits for its request.
const REFUSAL_WAIT: Duration = Duration::from_secs(1);

/// Answers a connection over a cap and closes it. The answer waits for the request (at most
/// [`REFUSAL_WAIT`], and only [`REFUSALS_AT_ONCE`] connections at a time) and goes only to a
/// connection that sent one: a client's pool may open a spare connection it sends nothing on
/// until later, and an answer there would be an unsolicited message to it; that one is just
/// closed. What the client sent is drained first, so that closing does not reset the answer
/// away.
fn refuse(stream: TcpStream, why: Refusal, refusing: &Arc<Semaphore>) {
    let (code, status, retry, message, reason) = match why {
        Refusal::Address(max) => (
            tdb_core::ErrorCode::RateLimited,
            "429 Too Many Requests",
            "retry-after: 1\r\n",
            format!("too many open connections from this address (at most {max})"),
            "address",
        ),
        Refusal::Total => (
            tdb_core::ErrorCode::ServiceUnavailable,
            "503 Service Unavailable",
            "retry-after: 1\r\n",
            "the server has as many open connections as it may hold; try again".to_string(),
            "total",
        ),
    };
    metrics::counter!("tdb_api_connections_refused_total", "cap" => reason).increment(1);
    tracing::debug!(peer = ?stream.peer_addr().ok(), cap = reason, "API connection refused");
    let body = tdb_types::ErrorBody {
        success: false,
        http_status: code.status(),
        code: code.as_str().to_string(),
        error: message,
        field: None,
        detail: None,
        extra: Default::default(),
    };
    // Encoding a struct of strings and numbers cannot fail.
    let body = serde_json::to_string(&body).unwrap_or_default();
    let answer = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         {retry}connection: close\r\n\r\n{body}",
        body.len()
    );
    let Ok(permit) = refusing.clone().try_acquire_owned() else {
        return;
    };
    tokio::spawn(async move {
        let _permit = permit;
        if tokio::time::timeout(REFUSAL_WAIT, request_arrived(&stream))
            .await
            .is_ok_and(|arrived| arrived)
        {
            let _ = stream.try_write(answer.as_bytes());
        }
    });
}

/// Waits until the client has sent something, and drains it; false when it closed first.
async fn request_arrived(stream: &TcpStream) -> bool {
    let mut sink = [0u8; 4096];
    loop {
        if stream.readable().await.is_err() {
            return false;
        }
        // Readiness may be spurious: only bytes read count.
        match stream.try_read(&mut sink) {
            Ok(0) => return false,
            Ok(_) => return true,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(_) => return false,
        }
    }
}

/// The error a body past its deadline ends with; [`crate::extract::body_bytes`] answers it 408.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {} s", .0.as_secs())]
pub struct BodyTimeout(pub Duration);

/// A request body that fails once its deadline has passed, however its bytes trickle in.
pub struct DeadlineBody<B> {
    inner: B,
    limit: Duration,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl<B> DeadlineBody<B> {
    pub fn new(inner: B, limit: Duration) -> Self {
        Self {
            inner,
            limit,
            deadline: Box::pin(tokio::time::sleep(limit)),
        }
    }
}

impl<B> Body for DeadlineBody<B>
where
    B: Body + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = B::Data;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        if this.deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(Box::new(BodyTimeout(this.limit)))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A body that never sends anything (a client that stopped after its headers).
    struct Silent;

    impl Body for Silent {
        type Data = axum::body::Bytes;
        type Error = Infallible;

        fn poll_frame(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
            Poll::Pending
        }
    }

    #[tokio::test]
    async fn a_body_past_its_deadline_is_answered_408() {
        let body = axum::body::Body::new(DeadlineBody::new(Silent, Duration::from_secs(1)));
        let req = axum::extract::Request::new(body);
        let err = crate::extract::body_bytes(req, &())
            .await
            .expect_err("the deadline passes");
        assert_eq!(err.code, tdb_core::ErrorCode::RequestTimeout);
        assert!(err.message.contains("within 1 s"), "{}", err.message);

        let body = axum::body::Body::new(DeadlineBody::new(
            axum::body::Body::from("{}"),
            Duration::from_secs(30),
        ));
        let bytes = crate::extract::body_bytes(axum::extract::Request::new(body), &())
            .await
            .expect("a prompt body is read");
        assert_eq!(&bytes[..], b"{}");
    }
}
