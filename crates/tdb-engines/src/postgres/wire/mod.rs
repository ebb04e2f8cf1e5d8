//! tdb's own PostgreSQL client for the statements it runs for users (queries through the API):
//! the simple query protocol, read message by message. Each message's length is read before its
//! body, and a row is taken from the answer's memory budget before it is read, so no answer can
//! grow tdb past its budget whatever the server sends. The backend's cancel key is kept, so a
//! statement can be cancelled without logging in again (a role may have changed its password).

pub mod stream;
mod tls;

use std::net::IpAddr;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use postgres_protocol::authentication::sasl::{ChannelBinding, SCRAM_SHA_256, ScramSha256};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

use crate::budget::Answer;
use crate::engine::{EngineError, QueryOutput, Result};
use stream::ServerStream;

/// How long connecting and logging in may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest message other than a row or COPY data accepted from a server.
const MAX_MESSAGE: usize = 4 << 20;
/// Bytes a row is charged beyond its wire size for each of its values (JSON's quotes, commas,
/// the `Value` itself).
const PER_VALUE: usize = 32;

/// When to encrypt, as libpq's `sslmode` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    /// Plain first (libpq's `allow`); tdb asks for plain and takes what the server gives.
    Allow,
    /// TLS when the server offers it, without checking its certificate.
    Prefer,
    /// TLS, without checking the certificate (as libpq does without a root certificate).
    Require,
    /// TLS with a certificate chain that the system's roots trust.
    VerifyCa,
    /// As `VerifyCa`, and the certificate names the host.
    VerifyFull,
}

impl SslMode {
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "disable" => Self::Disable,
            "allow" => Self::Allow,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            _ => return None,
        })
    }
}

/// Where and as whom to connect.
#[derive(Clone)]
pub struct Target {
    /// A host name, an IP address, or a Unix socket directory (starting with `/`).
    pub host: String,
    pub port: u16,
    /// The address to connect to instead of resolving `host` (already checked by the caller).
    pub pin: Option<IpAddr>,
    pub user: String,
    pub password: String,
    pub database: String,
    pub application_name: String,
    /// The `options` startup parameter (`-c name=value …`).
    pub options: Option<String>,
    pub ssl: SslMode,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("database", &self.database)
            .finish_non_exhaustive()
    }
}

/// Cancels whatever a connection's backend is running, from a connection of its own.
#[derive(Debug, Clone)]
pub struct CancelKey {
    host: String,
    port: u16,
    pin: Option<IpAddr>,
    pub pid: u32,
    key: u32,
}

impl CancelKey {
    /// Sends the CancelRequest and waits (briefly) until the server has read it.
    pub async fn cancel(&self) -> std::io::Result<()> {
        let mut stream = match self.pin {
            Some(ip) => ServerStream::connect_ip(ip, self.port).await?,
            None => ServerStream::connect(&self.host, self.port).await?,
        };
        let mut out = Vec::with_capacity(16);
        out.extend_from_slice(&16u32.to_be_bytes());
        out.extend_from_slice(&80_877_102u32.to_be_bytes());
        out.extend_from_slice(&self.pid.to_be_bytes());
        out.extend_from_slice(&self.key.to_be_bytes());
        stream.write_all(&out).await?;
        let mut sink = [0u8; 1];
        let _ = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut sink)).await;
        Ok(())
    }
}

enum Io {
    Plain(ServerStream),
    Tls(Box<tokio_rustls::client::TlsStream<ServerStream>>),
}

/// A logged-in connection, idle between statements.
pub struct Connection {
    io: Io,
    buf: BytesMut,
    cancel: CancelKey,
}

impl Connection {
    pub async fn connect(target: &Target) -> Result<Self> {
        match tokio::time::timeout(CONNECT_TIMEOUT, Self::connect_inner(target)).await {
            Ok(result) => result,
            Err(_) => Err(EngineError::Connect(format!(
                "{}:{} did not answer within {}s",
                target.host,
                target.port,
                CONNECT_TIMEOUT.as_secs()
            ))),
        }
    }

    async fn connect_inner(target: &Target) -> Result<Self> {
        let connect_error = |e: std::io::Error| EngineError::Connect(e.to_string());
        let raw = match target.pin {
            Some(ip) => ServerStream::connect_ip(ip, target.port).await,
            None => ServerStream::connect(&target.host, target.port).await,
        }
        .map_err(connect_error)?;
        let io = tls::negotiate(raw, target).await?;
        let mut conn = Self {
            io,
            buf: BytesMut::with_capacity(8192),
            cancel: CancelKey {
                host: target.host.clone(),
                port: target.port,
                pin: target.pin,
                pid: 0,
                key: 0,
            },
        };
        conn.start_up(target).await?;
        Ok(conn)
    }

    /// The startup packet, authentication (SCRAM-SHA-256, MD5 or password), then the server's
    /// parameters up to its first `ReadyForQuery`.
    async fn start_up(&mut self, target: &Target) -> Result<()> {
        let mut params = vec![
            ("user", target.user.as_str()),
            ("database", target.database.as_str()),
            ("application_name", target.application_name.as_str()),
            ("client_encoding", "UTF8"),
            ("DateStyle", "ISO, MDY"),
            ("TimeZone", "UTC"),
            ("extra_float_digits", "2"),
        ];
        if let Some(options) = &target.options {
            params.push(("options", options));
        }
        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&196_608u32.to_be_bytes());
        for (k, v) in params {
            cstr(&mut out, k);
            cstr(&mut out, v);
        }
        out.push(0);
        let len = out.len() as u32;
        out[..4].copy_from_slice(&len.to_be_bytes());
        self.send(&out).await?;
        let mut scram: Option<ScramSha256> = None;
        loop {
            let (tag, body) = self.message().await?;
            match tag {
                b'R' => self.authenticate(&body, target, &mut scram).await?,
                b'K' if body.len() >= 8 => {
                    self.cancel.pid = u32::from_be_bytes([body[0], body[1], body[2], body[3]]);
                    self.cancel.key = u32::from_be_bytes([body[4], body[5], body[6], body[7]]);
                }
                // Refused at login: the server's own error (SQLSTATE included), as for a query.
                b'E' => return Err(server_error(&body)),
                b'Z' => return Ok(()),
                _ => {}
            }
        }
    }

    async fn authenticate(
        &mut self,
        body: &[u8],
        target: &Target,
        scram: &mut Option<ScramSha256>,
    ) -> Result<()> {
        let protocol = |m: &str| EngineError::Connect(format!("authentication: {m}"));
        let kind = body.get(..4).ok_or_else(|| protocol("short message"))?;
        let kind = u32::from_be_bytes([kind[0], kind[1], kind[2], kind[3]]);
        let data = &body[4..];
        let mut reply = Vec::new();
        match kind {
            0 => return Ok(()),
            3 => message(&mut reply, b'p', |b| cstr(b, &target.password)),
            5 => {
                let salt: [u8; 4] = data
                    .get(..4)
                    .and_then(|s| s.try_into().ok())
                    .ok_or_else(|| protocol("short salt"))?;
                let hash = postgres_protocol::authentication::md5_hash(
                    target.user.as_bytes(),
                    target.password.as_bytes(),
                    salt,
                );
                message(&mut reply, b'p', |b| cstr(b, &hash));
            }
            10 => {
                if !data
                    .split(|b| *b == 0)
                    .any(|m| m == SCRAM_SHA_256.as_bytes())
                {
                    return Err(protocol("the server offers no SCRAM-SHA-256"));
                }
                let client =
                    ScramSha256::new(target.password.as_bytes(), ChannelBinding::unsupported());
                message(&mut reply, b'p', |b| {
                    cstr(b, SCRAM_SHA_256);
                    b.extend_from_slice(&(client.message().len() as i32).to_be_bytes());
                    b.extend_from_slice(client.message());
                });
                *scram = Some(client);
            }
            11 => {
                let client = scram.as_mut().ok_or_else(|| protocol("out of order"))?;
                client
                    .update(data)
                    .map_err(|_| protocol("bad SCRAM challenge"))?;
                message(&mut reply, b'p', |b| b.extend_from_slice(client.message()));
            }
            12 => {
                let mut client = scram.take().ok_or_else(|| protocol("out of order"))?;
                client
                    .finish(data)
                    .map_err(|_| protocol("the server's SCRAM signature is wrong"))?;
            }
            _ => return Err(protocol("unsupported method")),
        }
        if !reply.is_empty() {
            self.send(&reply).await?;
        }
        Ok(())
    }

    /// What cancels this connection's statements.
    pub fn cancel_key(&self) -> CancelKey {
        self.cancel.clone()
    }

    /// Runs `sql` (one statement or several) and collects its rows: at most `max_rows` are kept
    /// (the rest are read past, `truncated` set), each taken from `answer` before it is read.
    /// An answer over its budget ends the connection (`Err(TooLarge)`): the rest of what the
    /// server sends is never read.
    pub async fn query(
        &mut self,
        sql: &str,
        max_rows: usize,
        answer: &Answer,
    ) -> Result<QueryOutput> {
        let mut out = Vec::with_capacity(sql.len() + 6);
        message(&mut out, b'Q', |b| cstr(b, sql));
        self.send(&out).await?;
        let mut result = QueryOutput::default();
        let mut fields: Vec<Field> = Vec::new();
        let mut first_error: Option<EngineError> = None;
        let (mut returned, mut affected) = (0u64, 0u64);
        loop {
            let (tag, len) = self.header().await?;
            match tag {
                b'D' => {
                    returned += 1;
                    if result.rows.len() >= max_rows {
                        result.truncated = true;
                        self.skip(len).await?;
                        continue;
                    }
                    let cost = len.saturating_add(PER_VALUE * fields.len().max(1));
                    answer.take(cost).map_err(EngineError::TooLarge)?;
                    let body = self.body(len).await?;
                    if result.columns.is_empty() {
                        result.columns = fields.iter().map(|f| f.name.clone()).collect();
                    }
                    result.rows.push(row_values(&body, &fields)?);
                }
                b'T' => fields = parse_fields(&self.small_body(len).await?)?,
                b'C' => {
                    let body = self.small_body(len).await?;
                    if !command_tag(&body).starts_with("SELECT") {
                        affected += command_rows(&body);
                    }
                }
                b'E' => {
                    let body = self.small_body(len).await?;
                    first_error.get_or_insert_with(|| server_error(&body));
                }
                b'G' => {
                    self.skip(len).await?;
                    let mut fail = Vec::new();
                    message(&mut fail, b'f', |b| {
                        cstr(b, "COPY FROM STDIN is not supported here; use the proxy");
                    });
                    self.send(&fail).await?;
                }
                b'H' => {
                    self.skip(len).await?;
                    first_error.get_or_insert_with(|| {
                        EngineError::Unsupported(
                            "COPY TO STDOUT is not supported here; use the proxy".into(),
                        )
                    });
                }
                b'W' => {
                    return Err(EngineError::Unsupported(
                        "COPY BOTH is not supported".into(),
                    ));
                }
                b'Z' => {
                    self.skip(len).await?;
                    break;
                }
                _ => self.skip(len).await?,
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        if result.columns.is_empty() {
            result.columns = fields.into_iter().map(|f| f.name).collect();
        }
        result.row_count = if returned > 0 {
            result.rows.len() as u64
        } else {
            affected
        };
        Ok(result)
    }

    /// Runs statements that return no rows worth keeping (session settings).
    pub async fn execute(&mut self, sql: &str) -> Result<()> {
        let answer = crate::budget::MemoryBudget::new(1 << 20).answer(1 << 20);
        self.query(sql, 0, &answer).await.map(|_| ())
    }

    /// Says goodbye (the server then closes its end).
    pub async fn close(mut self) {
        let mut out = Vec::with_capacity(5);
        message(&mut out, b'X', |_| {});
        let _ = self.send(&out).await;
    }

    async fn send(&mut self, bytes: &[u8]) -> Result<()> {
        let io_error = |e: std::io::Error| EngineError::Connect(e.to_string());
        self.io.write_all(bytes).await.map_err(io_error)?;
        self.io.flush().await.map_err(io_error)
    }

    /// The next message's tag and body length.
    async fn header(&mut self) -> Result<(u8, usize)> {
        self.fill(5).await?;
        let tag = self.buf[0];
        let len = i32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]);
        self.buf.advance(5);
        let len = usize::try_from(len)
            .ok()
            .and_then(|n| n.checked_sub(4))
            .ok_or_else(|| {
                EngineError::Internal("invalid message length from the server".into())
            })?;
        Ok((tag, len))
    }

    /// A whole message that is not a row (bounded).
    async fn message(&mut self) -> Result<(u8, BytesMut)> {
        let (tag, len) = self.header().await?;
        Ok((tag, self.small_body(len).await?))
    }

    async fn small_body(&mut self, len: usize) -> Result<BytesMut> {
        if len > MAX_MESSAGE {
            return Err(EngineError::Internal(format!(
                "a {len}-byte message from the server is over tdb's limit"
            )));
        }
        self.body(len).await
    }

    async fn body(&mut self, len: usize) -> Result<BytesMut> {
        self.fill(len).await?;
        Ok(self.buf.split_to(len))
    }

    /// Reads past `len` bytes without keeping them.
    async fn skip(&mut self, mut len: usize) -> Result<()> {
        loop {
            let here = len.min(self.buf.len());
            self.buf.advance(here);
            len -= here;
            if len == 0 {
                return Ok(());
            }
            self.read_more(len.min(64 * 1024)).await?;
        }
    }

    /// Reads until `len` bytes are buffered; a long message gets its room in one allocation.
    async fn fill(&mut self, len: usize) -> Result<()> {
        if self.buf.len() < len {
            self.buf.reserve(len - self.buf.len());
        }
        while self.buf.len() < len {
            self.read_more(len - self.buf.len()).await?;
        }
        Ok(())
    }

    async fn read_more(&mut self, wanted: usize) -> Result<()> {
        self.buf.reserve(wanted.clamp(8192, 64 * 1024));
        match self.io.read_buf(&mut self.buf).await {
            Ok(0) => Err(EngineError::Connect(
                "the server closed the connection".into(),
            )),
            Ok(_) => Ok(()),
            Err(e) => Err(EngineError::Connect(e.to_string())),
        }
    }
}

struct Field {
    name: String,
    type_oid: u32,
}

fn parse_fields(body: &[u8]) -> Result<Vec<Field>> {
    let bad = || EngineError::Internal("malformed RowDescription".into());
    let count = u16::from_be_bytes([
        *body.first().ok_or_else(bad)?,
        *body.get(1).ok_or_else(bad)?,
    ]);
    let mut rest = &body[2..];
    let mut fields = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        let end = rest.iter().position(|b| *b == 0).ok_or_else(bad)?;
        let name = String::from_utf8_lossy(&rest[..end]).into_owned();
        let meta = rest.get(end + 1..end + 19).ok_or_else(bad)?;
        let type_oid = u32::from_be_bytes([meta[6], meta[7], meta[8], meta[9]]);
        fields.push(Field { name, type_oid });
        rest = &rest[end + 19..];
    }
    Ok(fields)
}

fn row_values(body: &[u8], fields: &[Field]) -> Result<Vec<Value>> {
    let bad = || EngineError::Internal("malformed DataRow".into());
    let count = u16::from_be_bytes([
        *body.first().ok_or_else(bad)?,
        *body.get(1).ok_or_else(bad)?,
    ]);
    let mut rest = &body[2..];
    let mut values = Vec::with_capacity(usize::from(count));
    for i in 0..usize::from(count) {
        let len = rest.get(..4).ok_or_else(bad)?;
        let len = i32::from_be_bytes([len[0], len[1], len[2], len[3]]);
        rest = &rest[4..];
        let Ok(len) = usize::try_from(len) else {
            values.push(Value::Null);
            continue;
        };
        let bytes = rest.get(..len).ok_or_else(bad)?;
        let text = String::from_utf8_lossy(bytes);
        let type_name = fields.get(i).map_or("", |f| type_name(f.type_oid));
        values.push(super::values::text_to_json(type_name, &text));
        rest = &rest[len..];
    }
    Ok(values)
}

/// The names [`super::values::text_to_json`] knows, by type OID.
fn type_name(oid: u32) -> &'static str {
    match oid {
        16 => "BOOL",
        20 => "INT8",
        21 => "INT2",
        23 => "INT4",
        26 => "OID",
        114 => "JSON",
        700 => "FLOAT4",
        701 => "FLOAT8",
        3802 => "JSONB",
        _ => "",
    }
}

fn command_tag(body: &[u8]) -> String {
    let end = body.iter().position(|b| *b == 0).unwrap_or(body.len());
    String::from_utf8_lossy(&body[..end]).into_owned()
}

/// The row count at the end of a command tag (`INSERT 0 5`, `UPDATE 3`); 0 for none.
fn command_rows(body: &[u8]) -> u64 {
    command_tag(body)
        .rsplit(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// An `ErrorResponse` as the engine's error, keeping the server's message and SQLSTATE.
fn server_error(body: &[u8]) -> EngineError {
    let mut message = String::new();
    let mut sqlstate = String::new();
    let mut detail = None;
    let mut position = None;
    for field in body.split(|b| *b == 0) {
        let Some((&code, value)) = field.split_first() else {
            continue;
        };
        let value = String::from_utf8_lossy(value).into_owned();
        match code {
            b'M' => message = value,
            b'C' => sqlstate = value,
            b'D' => detail = Some(value),
            b'P' => position = value.parse().ok(),
            _ => {}
        }
    }
    if sqlstate == "57014" {
        detail = Some("the statement ran longer than query_timeout_ms".into());
    }
    EngineError::Query {
        message,
        sqlstate,
        detail,
        position,
    }
}

fn cstr(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(s.as_bytes());
    out.push(0);
}

/// A message: tag, length, then what `body` writes.
fn message(out: &mut Vec<u8>, tag: u8, body: impl FnOnce(&mut Vec<u8>)) {
    out.push(tag);
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    body(out);
    let len = (out.len() - start) as u32;
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
}

impl AsyncRead for Io {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => std::pin::Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => std::pin::Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => std::pin::Pin::new(s).poll_flush(cx),
            Self::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => std::pin::Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_decode_by_their_types() {
        let mut row = Vec::new();
        row.extend_from_slice(&3u16.to_be_bytes());
        for v in [Some("42"), None, Some("{\"a\":1}")] {
            match v {
                Some(t) => {
                    row.extend_from_slice(&(t.len() as i32).to_be_bytes());
                    row.extend_from_slice(t.as_bytes());
                }
                None => row.extend_from_slice(&(-1i32).to_be_bytes()),
            }
        }
        let fields = [23, 25, 3802].map(|type_oid| Field {
            name: "c".into(),
            type_oid,
        });
        let values = row_values(&row, &fields).expect("row");
        assert_eq!(
            values,
            [
                serde_json::json!(42),
                Value::Null,
                serde_json::json!({"a": 1})
            ]
        );
        assert!(
            row_values(&row[..9], &fields).is_err(),
            "a cut row is refused"
        );
    }

    #[test]
    fn command_tags_give_their_counts() {
        assert_eq!(command_rows(b"INSERT 0 5\0"), 5);
        assert_eq!(command_rows(b"UPDATE 3\0"), 3);
        assert_eq!(command_rows(b"CREATE TABLE\0"), 0);
    }
}
