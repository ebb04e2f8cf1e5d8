//! A session's connection to its redis-server, over TCP or a Unix socket (a route whose host
//! starts with `/`): logged in as the tenant's ACL user, switched to RESP3 when the client
//! speaks it, and the server's command table, loaded once per server and cached for every
//! session after it.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tdb_engines::budget::MemoryBudget;
use tdb_resp::command::CommandTable;
use tdb_resp::frame::{Frame, Limits, ProtocolError, ReplyDecoder, Request};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

use super::memory::Held;

/// How long connecting and logging in may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("connecting to the server failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("the server did not answer in time")]
    Timeout,
    #[error("the server refused: {0}")]
    Refused(String),
    #[error("the server's reply is not valid RESP: {0}")]
    Protocol(#[from] ProtocolError),
    #[error("the server closed the connection")]
    Closed,
    #[error("the server's command table cannot be read: {0}")]
    Table(#[from] tdb_resp::command::LoadError),
    #[error("{0}")]
    TooLarge(#[from] super::memory::TooLarge),
    /// A seat on a lane whose replies its client did not read fast enough.
    #[error(
        "replies of more than {} MiB wait for this client to read them, and the proxy cannot keep them: it keeps at most {} MiB for one session, from its memory for large frames ({} MiB, shared by every session)",
        super::memory::mib(.0.buffered),
        super::memory::mib(.0.limit),
        super::memory::mib(.0.total)
    )]
    Unread(super::memory::TooLarge),
}

/// Command tables by server id: each server's is loaded by its first session.
#[derive(Default)]
pub struct Tables(Mutex<HashMap<String, Arc<CommandTable>>>);

impl Tables {
    fn get(&self, server_id: &str) -> Option<Arc<CommandTable>> {
        let tables = self.0.lock().unwrap_or_else(|e| e.into_inner());
        tables.get(server_id).cloned()
    }

    fn put(&self, server_id: &str, table: Arc<CommandTable>) {
        let mut tables = self.0.lock().unwrap_or_else(|e| e.into_inner());
        tables.insert(server_id.to_string(), table);
    }
}

/// Where and as whom a session reaches its server.
pub struct Target {
    pub server_id: String,
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    /// Sent as `HELLO <proto> [SETNAME name]` after login when set.
    pub hello: Option<(u8, Option<Bytes>)>,
    /// The budget a large reply takes from (see [`super::memory`]); `None` for the proxy's
    /// own connections, whose replies it asks for and bounds.
    pub memory: Option<MemoryBudget>,
}

/// TCP or a Unix socket.
pub enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

pub struct Backend {
    pub io: Stream,
    pub buf: BytesMut,
    pub decoder: ReplyDecoder,
    pub table: Arc<CommandTable>,
    /// The server's answer to HELLO, when one was sent.
    pub hello: Option<Frame>,
    /// What `buf` holds of the large-frame budget.
    pub memory: Option<Held>,
}

impl Backend {
    pub async fn connect(target: &Target, tables: &Tables) -> Result<Self, BackendError> {
        tokio::time::timeout(CONNECT_TIMEOUT, Self::open(target, tables))
            .await
            .map_err(|_| BackendError::Timeout)?
    }

    async fn open(target: &Target, tables: &Tables) -> Result<Self, BackendError> {
        let io = if target.host.starts_with('/') {
            Stream::Unix(UnixStream::connect(&target.host).await?)
        } else {
            let tcp = TcpStream::connect((target.host.as_str(), target.port)).await?;
            let _ = tcp.set_nodelay(true);
            Stream::Tcp(tcp)
        };
        let mut backend = Self {
            io,
            buf: BytesMut::with_capacity(16 * 1024),
            decoder: ReplyDecoder::new(Limits::default()),
            table: Arc::new(CommandTable::from_reply(&Frame::Array(vec![]))?),
            hello: None,
            memory: target.memory.clone().map(Held::new),
        };
        let auth = [
            &b"AUTH"[..],
            target.user.as_bytes(),
            target.password.as_bytes(),
        ];
        let answer = backend.call(&auth, &mut Vec::new()).await?;
        refused(&answer)?;
        backend.table = match tables.get(&target.server_id) {
            Some(table) => table,
            None => {
                let reply = backend.call(&[b"COMMAND"], &mut Vec::new()).await?;
                refused(&reply)?;
                let table = Arc::new(CommandTable::from_reply(&reply)?);
                tables.put(&target.server_id, table.clone());
                table
            }
        };
        if let Some((proto, setname)) = &target.hello {
            let proto = proto.to_string();
            let mut hello: Vec<&[u8]> = vec![b"HELLO", proto.as_bytes()];
            if let Some(name) = setname {
                hello.extend([&b"SETNAME"[..], name]);
            }
            let answer = backend.call(&hello, &mut Vec::new()).await?;
            refused(&answer)?;
            backend.hello = Some(answer);
        }
        Ok(backend)
    }

    /// Sends one request and reads its reply; pub/sub pushes met on the way are collected.
    pub async fn call(
        &mut self,
        args: &[&[u8]],
        pushes: &mut Vec<Frame>,
    ) -> Result<Frame, BackendError> {
        let request = Request::new(args.iter().map(|a| Bytes::copy_from_slice(a)).collect())
            .ok_or(BackendError::Closed)?;
        let mut out = BytesMut::new();
        request.encode(&mut out);
        self.io.write_all(&out).await?;
        loop {
            match self.read_frame().await? {
                Frame::Push(items) => pushes.push(Frame::Push(items)),
                frame => return Ok(frame),
            }
        }
    }

    /// The next frame from the server.
    pub async fn read_frame(&mut self) -> Result<Frame, BackendError> {
        loop {
            if let Some(frame) = self.decoder.decode(&mut self.buf)? {
                self.track()?;
                return Ok(frame);
            }
            if self.io.read_buf(&mut self.buf).await? == 0 {
                return Err(BackendError::Closed);
            }
            self.track()?;
        }
    }

    /// A frame already read, without waiting.
    pub fn buffered_frame(&mut self) -> Result<Option<Frame>, BackendError> {
        let frame = self.decoder.decode(&mut self.buf)?;
        self.track()?;
        Ok(frame)
    }

    /// Counts what the read buffer holds against the large-frame budget.
    pub fn track(&mut self) -> Result<(), BackendError> {
        if let Some(memory) = &mut self.memory {
            memory.track(self.buf.len() + self.decoder.pending_bytes())?;
        }
        Ok(())
    }
}

fn refused(answer: &Frame) -> Result<(), BackendError> {
    match answer {
        Frame::Error(e) | Frame::BlobError(e) => Err(BackendError::Refused(
            String::from_utf8_lossy(e).into_owned(),
        )),
        _ => Ok(()),
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Self::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Self::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_flush(cx),
            Self::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Self::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
