//! A small async Redis client for tdb's own use (administration, dumps and restores, sessions):
//! one connection over a Unix socket (a host starting with `/`) or TCP, RESP2, requests written
//! as arrays of bulk strings and replies read with tdb-resp's decoder. It logs in with
//! `AUTH user password` and nothing else (no `HELLO`, no client name).
//!
//! Error replies from [`RedisConn::call`] are `EngineError::Query` whose `detail` is the
//! error's code (`NOPERM`, `WRONGPASS`, `ERR`); a server still loading its data or busy with a
//! script (`LOADING`, `BUSY`) is `Busy`, which a caller may retry. [`RedisConn::send`] and
//! [`RedisConn::read`] pipeline: requests are queued, written at the first read, and their
//! replies read in order, error replies as frames.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tdb_resp::frame::{Frame, Limits, ReplyDecoder, Request};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::AdminEndpoint;
use crate::engine::{DatabaseAccess, EngineError, Result};

/// How long tdb waits for a server to accept a connection and its login.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A byte stream to a server: a Unix or TCP socket, or a duplex pipe in tests.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Where to connect and as whom.
#[derive(Clone, Copy)]
pub struct Login<'a> {
    pub host: &'a str,
    pub port: u16,
    pub user: &'a str,
    pub password: &'a str,
}

impl<'a> From<&'a AdminEndpoint> for Login<'a> {
    fn from(e: &'a AdminEndpoint) -> Self {
        Self {
            host: &e.host,
            port: e.port,
            user: &e.user,
            password: &e.password,
        }
    }
}

impl<'a> From<&'a DatabaseAccess> for Login<'a> {
    fn from(a: &'a DatabaseAccess) -> Self {
        Self {
            host: &a.host,
            port: a.port,
            user: &a.user,
            password: &a.password,
        }
    }
}

/// One connection to a redis-server.
pub struct RedisConn {
    io: Box<dyn Io>,
    read: BytesMut,
    write: BytesMut,
    decoder: ReplyDecoder,
}

/// Connects to `to` and logs in.
pub async fn connect<'a>(to: impl Into<Login<'a>>) -> Result<RedisConn> {
    let to = to.into();
    let login = async {
        let mut conn = RedisConn::new(open(to.host, to.port).await?);
        conn.call(&[&b"AUTH"[..], to.user.as_bytes(), to.password.as_bytes()])
            .await?;
        Ok(conn)
    };
    tokio::time::timeout(CONNECT_TIMEOUT, login)
        .await
        .unwrap_or_else(|_| {
            Err(EngineError::Connect(format!(
                "{}:{} did not answer within {}s",
                to.host,
                to.port,
                CONNECT_TIMEOUT.as_secs()
            )))
        })
}

async fn open(host: &str, port: u16) -> Result<Box<dyn Io>> {
    let failed = |e: std::io::Error| EngineError::Connect(format!("{host}:{port}: {e}"));
    if host.starts_with('/') {
        let stream = tokio::net::UnixStream::connect(host)
            .await
            .map_err(failed)?;
        return Ok(Box::new(stream));
    }
    let stream = tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(failed)?;
    stream.set_nodelay(true).map_err(failed)?;
    Ok(Box::new(stream))
}

impl RedisConn {
    /// A connection over `io`, not logged in.
    pub fn new(io: impl Io + 'static) -> Self {
        Self {
            io: Box::new(io),
            read: BytesMut::with_capacity(16 * 1024),
            write: BytesMut::new(),
            decoder: ReplyDecoder::new(Limits::default()),
        }
    }

    /// Runs one command; an error reply is an error.
    pub async fn call<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Result<Frame> {
        self.send(args);
        check(self.read().await?)
    }

    /// Queues one command; it is written at the next [`read`](Self::read).
    pub fn send<A: AsRef<[u8]>>(&mut self, args: &[A]) {
        let args = args
            .iter()
            .map(|a| Bytes::copy_from_slice(a.as_ref()))
            .collect();
        if let Some(request) = Request::new(args) {
            request.encode(&mut self.write);
        }
    }

    /// Writes what is queued, then reads the next reply (an error reply is a frame here).
    pub async fn read(&mut self) -> Result<Frame> {
        if !self.write.is_empty() {
            self.io.write_all(&self.write).await.map_err(lost)?;
            self.io.flush().await.map_err(lost)?;
            self.write.clear();
        }
        loop {
            match self.decoder.decode(&mut self.read) {
                Ok(Some(frame)) => return Ok(frame),
                Ok(None) => {}
                Err(e) => {
                    return Err(EngineError::Internal(format!(
                        "the server's reply is not RESP: {e}"
                    )));
                }
            }
            if self.io.read_buf(&mut self.read).await.map_err(lost)? == 0 {
                return Err(EngineError::Connect(
                    "the server closed the connection".into(),
                ));
            }
        }
    }
}

fn lost(e: std::io::Error) -> EngineError {
    EngineError::Connect(format!("connection to the server lost: {e}"))
}

/// `frame`, or the error it carries.
pub fn check(frame: Frame) -> Result<Frame> {
    match frame {
        Frame::Error(message) | Frame::BlobError(message) => Err(server_error(&message)),
        frame => Ok(frame),
    }
}

/// An error reply as an engine error: its first word is its code.
pub fn server_error(message: &[u8]) -> EngineError {
    let message = String::from_utf8_lossy(message).into_owned();
    let code = message.split(' ').next().unwrap_or_default().to_string();
    if matches!(
        code.as_str(),
        "LOADING" | "BUSY" | "MASTERDOWN" | "TRYAGAIN"
    ) {
        return EngineError::Busy(message);
    }
    EngineError::Query {
        message,
        sqlstate: String::new(),
        detail: Some(code),
        position: None,
    }
}

/// The error code of an engine error from [`server_error`] (`NOPERM`, `ERR`).
pub fn error_code(e: &EngineError) -> Option<&str> {
    match e {
        EngineError::Query {
            detail: Some(code), ..
        } => Some(code),
        _ => None,
    }
}

/// The text of a string reply.
pub fn text(frame: &Frame) -> Option<String> {
    frame
        .as_bytes()
        .map(|b| String::from_utf8_lossy(b).into_owned())
}

/// The elements of an array reply, or an error naming what was expected.
pub fn items(frame: Frame, what: &str) -> Result<Vec<Frame>> {
    match frame {
        Frame::Array(items) | Frame::Set(items) => Ok(items),
        other => Err(EngineError::Internal(format!(
            "{what}: expected a list, the server answered {other:?}"
        ))),
    }
}

/// The integer of an integer reply.
pub fn integer(frame: &Frame, what: &str) -> Result<i64> {
    frame
        .as_integer()
        .ok_or_else(|| EngineError::Internal(format!("{what}: expected an integer")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn calls_write_arrays_and_read_replies_and_errors() {
        let (client, mut server) = tokio::io::duplex(1024);
        let mut conn = RedisConn::new(client);
        let serve = tokio::spawn(async move {
            let mut got = vec![0u8; 64];
            let n = server.read(&mut got).await.expect("read");
            got.truncate(n);
            server
                .write_all(b"+OK\r\n-NOPERM no\r\n")
                .await
                .expect("write");
            got
        });
        conn.send(&["SET", "k"]);
        conn.send(&["GET", "k"]);
        assert_eq!(conn.read().await.expect("ok"), Frame::Simple("OK".into()));
        let err = check(conn.read().await.expect("frame")).expect_err("an error reply");
        assert_eq!(error_code(&err), Some("NOPERM"));
        let sent = serve.await.expect("server");
        assert_eq!(
            sent,
            b"*2\r\n$3\r\nSET\r\n$1\r\nk\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"
        );
    }

    #[test]
    fn loading_and_busy_servers_are_transient() {
        assert!(server_error(b"LOADING Redis is loading").is_transient());
        assert!(!server_error(b"NOPERM this user has no permissions").is_transient());
    }
}
