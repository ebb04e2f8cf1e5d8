//! Connections from the proxy to MariaDB, as the role the route names (its password comes from
//! the catalog's sealed secrets, never from the client), with `mysql_native_password`: MariaDB
//! 10.11 has no server side of `caching_sha2_password`. Written on the proxy's own codec rather
//! than a client library, which would decode and re-encode every result set.
//!
//! A second, short connection as the same role stops what a session runs when the session
//! cannot (a statement past `query_timeout_ms`, a client gone mid-statement): MariaDB lets a
//! user kill its own threads.

use std::time::Duration;

use tdb_engines::postgres::wire::stream::ServerStream;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};

use super::auth::{self, AuthSwitch};
use super::capability::{Caps, ExtCaps};
use super::command::Command;
use super::handshake::{self, Handshake, HandshakeResponse};
use super::packet::{self, Packet, PacketError, PacketReader};
use super::reply;
use super::response::{Expect, Outcome, Response, Seen, Step};
use super::wire::{Malformed, Reader};

/// How long connecting and authenticating to a server may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest packet the proxy reads from a server outside the relay.
const MAX_PACKET: usize = 1 << 20;
/// What the proxy says its largest packet is (MariaDB's own upper bound).
const MAX_PACKET_SIZE: u32 = 1 << 30;

/// Where and as whom to connect, and what the client asked of the session.
#[derive(Clone)]
pub struct BackendTarget {
    /// A host name or address, or the path of a Unix socket (starting with `/`).
    pub host: String,
    pub port: u16,
    pub database: String,
    pub user: String,
    pub password: String,
    /// The client's capability flags (those it may choose are passed on).
    pub client_caps: Caps,
    /// The MariaDB extended capabilities the client took (asked of the server when it offers
    /// them).
    pub client_ext: ExtCaps,
    pub collation: u8,
    /// `query_timeout_ms`, set as the session's `max_statement_time`.
    pub statement_timeout: Option<Duration>,
}

// The password stays out of logs.
impl std::fmt::Debug for BackendTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendTarget")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("database", &self.database)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("timed out connecting to the server")]
    Timeout,
    #[error("cannot reach the server: {0}")]
    Io(#[from] std::io::Error),
    #[error("the server refused the connection ({}): {}", .0.code, .0.message)]
    Refused(reply::Err),
    #[error("the server broke the protocol: {0}")]
    Protocol(String),
    #[error("the server asks for the authentication plugin {0}, which the proxy does not speak")]
    Plugin(String),
}

impl From<PacketError> for BackendError {
    fn from(e: PacketError) -> Self {
        match e {
            PacketError::Io(e) => Self::Io(e),
            other => Self::Protocol(other.to_string()),
        }
    }
}

impl From<Malformed> for BackendError {
    fn from(e: Malformed) -> Self {
        Self::Protocol(e.to_string())
    }
}

/// An authenticated server connection, between commands.
pub struct Backend {
    pub stream: ServerStream,
    /// Bytes read past the last packet of the connection phase (normally none).
    pub reader: PacketReader,
    /// The server's id of the connection (what `CONNECTION_ID()` returns).
    pub thread_id: u32,
    /// The status flags of the server's last OK.
    pub status: u16,
    pub server_version: String,
    /// The server agreed to MariaDB's metadata caching: its column counts carry a "metadata
    /// follows" byte.
    pub cached_metadata: bool,
}

impl Backend {
    /// Connects and authenticates, then gives the session its statement timeout.
    pub async fn connect(target: &BackendTarget) -> Result<Self, BackendError> {
        tokio::time::timeout(CONNECT_TIMEOUT, Self::connect_inner(target))
            .await
            .map_err(|_| BackendError::Timeout)?
    }

    async fn connect_inner(target: &BackendTarget) -> Result<Self, BackendError> {
        let mut stream = open(&target.host, target.port).await?;
        let mut reader = PacketReader::default();
        let greeting = reader.next(&mut stream, MAX_PACKET).await?;
        if greeting.payload.first() == Some(&reply::ERR_HEADER) {
            return Err(BackendError::Refused(reply::Err::decode(
                &greeting.payload,
            )?));
        }
        let hello = Handshake::decode(&greeting.payload)?;
        let ext = ExtCaps::for_server(target.client_ext, hello.ext);
        let ok = login(&mut stream, &mut reader, &hello, target, ext).await?;
        let mut backend = Self {
            stream,
            reader,
            thread_id: hello.connection_id,
            status: ok.status,
            server_version: hello.server_version,
            cached_metadata: ext.has(ExtCaps::CACHE_METADATA),
        };
        if let Some(timeout) = target.statement_timeout {
            backend.status = backend.run(&statement_timeout(timeout)).await?.status;
        }
        Ok(backend)
    }

    /// Runs a statement that answers with OK (a `SET`).
    pub async fn run(&mut self, sql: &str) -> Result<reply::Ok, BackendError> {
        self.send(&Command::Query(sql.as_bytes())).await?;
        let answer = self.reader.next(&mut self.stream, MAX_PACKET).await?;
        ok_or_refused(&answer)
    }

    /// Runs a query and returns the first column of its first row, if any (the rest of the
    /// answer is read and dropped).
    pub async fn first_value(&mut self, sql: &str) -> Result<Option<Vec<u8>>, BackendError> {
        self.send(&Command::Query(sql.as_bytes())).await?;
        let mut response = Response::new(Expect::Results).caching_metadata(self.cached_metadata);
        let mut value = None;
        loop {
            let packet = self.reader.next(&mut self.stream, MAX_PACKET).await?;
            let row = response.in_rows();
            match response.step(Seen::Whole(&packet.payload))? {
                Step::More if row && value.is_none() => {
                    value = Some(Reader::new(&packet.payload).lenenc_bytes("value")?.to_vec());
                }
                Step::More => {}
                Step::Done(Outcome::Err(e)) => return Err(BackendError::Refused(e)),
                Step::Done(_) => return Ok(value),
                Step::Result(_) | Step::LocalInfile => {
                    return Err(BackendError::Protocol("an unexpected answer".into()));
                }
            }
        }
    }

    async fn send(&mut self, command: &Command<'_>) -> Result<(), BackendError> {
        let mut payload = Vec::new();
        command.encode(&mut payload);
        let mut out = Vec::with_capacity(payload.len() + 4);
        packet::encode(&mut out, 0, &payload);
        self.stream.write_all(&out).await?;
        Ok(())
    }

    /// Says goodbye (`COM_QUIT`) and closes.
    pub async fn quit(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(1), self.send(&Command::Quit)).await;
        let _ = self.stream.shutdown().await;
    }
}

/// The statement that gives a session MariaDB's own statement timeout (in seconds).
pub fn statement_timeout(timeout: Duration) -> String {
    let ms = timeout.as_millis();
    format!(
        "SET SESSION max_statement_time = {}.{:03}",
        ms / 1000,
        ms % 1000
    )
}

/// TCP to `host:port`, or the Unix socket at `host` when it is a path.
async fn open(host: &str, port: u16) -> std::io::Result<ServerStream> {
    if host.starts_with('/') {
        return Ok(ServerStream::Unix(UnixStream::connect(host).await?));
    }
    let tcp = TcpStream::connect((host, port)).await?;
    tcp.set_nodelay(true)?;
    Ok(ServerStream::Tcp(tcp))
}

/// The handshake response (asking for the extended capabilities `ext`) and the exchange after
/// it, up to the server's OK.
async fn login<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    reader: &mut PacketReader,
    hello: &Handshake,
    target: &BackendTarget,
    ext: ExtCaps,
) -> Result<reply::Ok, BackendError> {
    let collation = match target.collation {
        // MariaDB 10.11 does not know MySQL 8's default collation.
        handshake::UTF8MB4_0900_AI_CI | 0 => handshake::UTF8MB4_GENERAL_CI,
        c => c,
    };
    let response = HandshakeResponse {
        caps: Caps::for_server(target.client_caps, hello.caps, !ext.is_empty()),
        ext,
        max_packet: MAX_PACKET_SIZE,
        collation,
        user: target.user.clone(),
        auth_response: auth::native_scramble(target.password.as_bytes(), &hello.scramble).to_vec(),
        database: Some(target.database.clone()),
        auth_plugin: Some(auth::NATIVE.to_string()),
        attrs: Vec::new(),
    };
    let mut payload = Vec::new();
    response.encode(&mut payload);
    let mut out = Vec::new();
    packet::encode(&mut out, 1, &payload);
    stream.write_all(&out).await?;
    let answer = reader.next(stream, MAX_PACKET).await?;
    if answer.payload.first() != Some(&0xfe) {
        return ok_or_refused(&answer);
    }
    let switch = AuthSwitch::decode(&answer.payload)?;
    if switch.plugin != auth::NATIVE {
        return Err(BackendError::Plugin(switch.plugin));
    }
    let scramble = auth::native_scramble(target.password.as_bytes(), switch.nonce());
    out.clear();
    packet::encode(&mut out, answer.next_seq(), &scramble);
    stream.write_all(&out).await?;
    ok_or_refused(&reader.next(stream, MAX_PACKET).await?)
}

fn ok_or_refused(packet: &Packet) -> Result<reply::Ok, BackendError> {
    match packet.payload.first() {
        Some(&reply::OK_HEADER) => Ok(reply::Ok::decode(&packet.payload)?),
        Some(&reply::ERR_HEADER) => {
            Err(BackendError::Refused(reply::Err::decode(&packet.payload)?))
        }
        _ => Err(BackendError::Protocol(
            "expected OK or an error from the server".into(),
        )),
    }
}

/// What to stop on a session's server connection.
#[derive(Debug, Clone, Copy)]
pub enum Stop {
    /// The statement running there, if it has run at least this long (so a statement that
    /// finished meanwhile is not mistaken for the next one: MariaDB kills by query id).
    Query { running_for: Duration },
    /// The connection and whatever it runs.
    Connection,
}

/// Stops what runs on the server connection `thread_id`, over a connection of its own.
pub async fn stop(target: &BackendTarget, thread_id: u32, what: Stop) -> Result<(), BackendError> {
    let side = BackendTarget {
        statement_timeout: None,
        client_caps: Caps::default(),
        client_ext: ExtCaps::default(),
        ..target.clone()
    };
    let mut conn = Backend::connect(&side).await?;
    let done = match what {
        Stop::Connection => conn.run(&format!("KILL CONNECTION {thread_id}")).await,
        Stop::Query { running_for } => {
            let find = format!(
                "SELECT QUERY_ID FROM information_schema.PROCESSLIST \
                 WHERE ID = {thread_id} AND TIME_MS >= {}",
                running_for.as_millis()
            );
            match conn.first_value(&find).await? {
                Some(id) => match std::str::from_utf8(&id)
                    .ok()
                    .and_then(|s| s.parse::<u64>().ok())
                {
                    Some(id) => conn.run(&format!("KILL QUERY ID {id}")).await,
                    None => Err(BackendError::Protocol(
                        "a query id that is not a number".into(),
                    )),
                },
                None => {
                    conn.quit().await;
                    return Ok(());
                }
            }
        }
    };
    conn.quit().await;
    match done {
        // The thread ended meanwhile (ER_NO_SUCH_THREAD): nothing left to stop.
        Err(BackendError::Refused(e)) if e.code == 1094 => Ok(()),
        other => other.map(|_| ()),
    }
}
