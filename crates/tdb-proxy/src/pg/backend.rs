//! Connections from the proxy to a PostgreSQL server, as the role the route names. The password
//! comes from the catalog's sealed secrets, never from the client.

use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use postgres_protocol::authentication::sasl::{ChannelBinding, SCRAM_SHA_256, ScramSha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use super::frame::{self, cstr, message};
use super::message::{TxStatus, back, front};
use tdb_engines::postgres::wire::stream::ServerStream;

/// The protocol version of the startup packet: 3.0.
const PROTOCOL_3_0: u32 = 196_608;
/// The kinds of `Authentication…` request the proxy answers.
const AUTH_OK: u32 = 0;
const AUTH_CLEARTEXT: u32 = 3;
const AUTH_MD5: u32 = 5;
const AUTH_SASL: u32 = 10;
const AUTH_SASL_CONTINUE: u32 = 11;
const AUTH_SASL_FINAL: u32 = 12;
/// How long connecting and authenticating to a server may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest message accepted during the backend handshake.
const MAX_HANDSHAKE_MESSAGE: usize = 64 * 1024;
/// How long reading or applying a session's settings may take.
const SETTINGS_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest answer read with a session's settings (one setting per row, in hex).
const MAX_SETTINGS_MESSAGE: usize = 4 << 20;
/// What a session changed beyond its startup parameters: what `pg_settings` shows as set in the
/// session (but the transaction's own characteristics, which `SET TRANSACTION` leaves marked
/// so, and which cannot be set once a statement has run), then the custom settings named in `$1` (which it does not show) that have a value,
/// then `role` (not shown either), last so the others are applied with the session's own rights.
/// Names and values travel as the hex of their UTF-8, both ways, so the client's own
/// `client_encoding` changes nothing in them.
const READ_SETTINGS: &str = "SELECT pg_catalog.encode(pg_catalog.convert_to(name, 'UTF8'), 'hex'), \
     pg_catalog.encode(pg_catalog.convert_to(setting, 'UTF8'), 'hex') FROM (\
     SELECT name, setting, 0 AS o FROM pg_catalog.pg_settings WHERE source = 'session' \
     AND name NOT IN ('transaction_isolation', 'transaction_read_only', 'transaction_deferrable') \
     UNION ALL SELECT n, pg_catalog.current_setting(n, true), 1 \
     FROM (SELECT pg_catalog.convert_from(pg_catalog.decode(h, 'hex'), 'UTF8') \
     FROM pg_catalog.unnest($1::pg_catalog.text[]) AS h) AS c(n) \
     WHERE pg_catalog.current_setting(n, true) <> '' AND pg_catalog.lower(n) NOT IN \
     (SELECT pg_catalog.lower(name) FROM pg_catalog.pg_settings) \
     UNION ALL SELECT 'role', pg_catalog.current_setting('role'), 2 \
     WHERE pg_catalog.current_setting('role') <> 'none') AS s ORDER BY o, name";
/// Applies settings given as two text arrays, names and values (hex of their UTF-8), in order.
const APPLY_SETTINGS: &str = "SELECT pg_catalog.set_config(\
     pg_catalog.convert_from(pg_catalog.decode(n, 'hex'), 'UTF8'), \
     pg_catalog.convert_from(pg_catalog.decode(v, 'hex'), 'UTF8'), false) \
     FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.text[]), \
     pg_catalog.unnest($2::pg_catalog.text[])) WITH ORDINALITY AS s(n, v, i) ORDER BY i";

/// Where and as whom to connect, and the session settings to start with.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct BackendTarget {
    pub host: String,
    pub port: u16,
    pub database: String,
    pub user: String,
    pub password: String,
    /// Startup parameters (`statement_timeout`, the client's `application_name`, …), sorted.
    pub params: Vec<(String, String)>,
    /// Not sent: keeps transaction-pooled connections (not reset between clients) apart from
    /// session-pooled ones in the pool.
    pub transaction_pooling: bool,
}

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

/// An authenticated server connection, ready for a query.
pub struct Backend {
    pub stream: ServerStream,
    /// `ParameterStatus` values the server reported.
    pub params: Vec<(String, String)>,
    pub pid: u32,
    pub key: u32,
    pub idle_since: Instant,
    /// Statements the proxy prepared on this connection under their shared names
    /// (transaction pooling), so the next client need not prepare them again.
    pub prepared: std::collections::HashSet<String>,
    /// Its place in its server's budget of tenant connections, given back when it closes.
    pub slot: Option<crate::budget::Place>,
    /// Transaction pooling: its place among its database's `max_connections` while a
    /// transaction uses it, given back when it returns to the pool or closes.
    pub tenant_slot: Option<tokio::sync::OwnedSemaphorePermit>,
    /// Transaction pooling: the client whose transaction ran on it last (0: none yet). A
    /// connection that changes hands is reset first, whatever that client was seen to do.
    pub last_client: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("could not reach the server: {0}")]
    Io(#[from] std::io::Error),
    #[error("timed out connecting to the server")]
    Timeout,
    /// The server refused with an `ErrorResponse` (its body is kept to relay or translate).
    #[error("the server refused the connection ({code}): {message}")]
    Refused {
        code: String,
        message: String,
        body: Vec<u8>,
    },
    #[error("protocol error from the server: {0}")]
    Protocol(&'static str),
    /// The server's connections for tenants are all taken (by tenants through this proxy).
    #[error("the server's {budget} connections for tenants are all in use")]
    ServerFull { budget: u32 },
}

impl Backend {
    pub async fn connect(target: &BackendTarget) -> Result<Self, BackendError> {
        tokio::time::timeout(CONNECT_TIMEOUT, Self::connect_inner(target))
            .await
            .map_err(|_| BackendError::Timeout)?
    }

    async fn connect_inner(target: &BackendTarget) -> Result<Self, BackendError> {
        let mut stream = ServerStream::connect(&target.host, target.port).await?;
        stream.write_all(&startup_message(target)).await?;
        let mut buf = BytesMut::with_capacity(1024);
        let mut scram: Option<ScramSha256> = None;
        let mut params = Vec::new();
        let mut keys = (0, 0);
        loop {
            let (tag, body) = read_message(&mut stream, &mut buf).await?;
            match tag {
                back::AUTHENTICATION => {
                    let reply = authentication_reply(target, &body, &mut scram)?;
                    if !reply.is_empty() {
                        stream.write_all(&reply).await?;
                    }
                }
                back::PARAMETER_STATUS => parameter_status(&mut params, &body),
                back::BACKEND_KEY_DATA => {
                    if body.len() >= 8 {
                        keys = (
                            u32::from_be_bytes([body[0], body[1], body[2], body[3]]),
                            u32::from_be_bytes([body[4], body[5], body[6], body[7]]),
                        );
                    }
                }
                back::ERROR => return Err(refused(&body)),
                back::NOTICE | back::NEGOTIATE_PROTOCOL => {}
                back::READY_FOR_QUERY => {
                    return Ok(Self {
                        stream,
                        params,
                        pid: keys.0,
                        key: keys.1,
                        idle_since: Instant::now(),
                        prepared: std::collections::HashSet::new(),
                        slot: None,
                        tenant_slot: None,
                        last_client: 0,
                    });
                }
                _ => return Err(BackendError::Protocol("unexpected message in handshake")),
            }
        }
    }

    /// Returns the session to a clean state for the next client (`DISCARD ALL`); false when the
    /// connection is not usable any more.
    pub async fn reset(&mut self) -> bool {
        let reset = async {
            let mut out = Vec::new();
            message(&mut out, front::QUERY, |b| cstr(b, "DISCARD ALL"));
            self.stream.write_all(&out).await?;
            let mut buf = BytesMut::with_capacity(256);
            let mut ok = false;
            loop {
                let (tag, body) = read_message(&mut self.stream, &mut buf).await?;
                match tag {
                    back::COMMAND_COMPLETE => ok = frame::command_tag(&body) == "DISCARD ALL",
                    back::PARAMETER_STATUS => parameter_status(&mut self.params, &body),
                    back::NOTICE => {}
                    back::READY_FOR_QUERY => {
                        let idle = body == [TxStatus::Idle.byte()];
                        return Ok::<bool, BackendError>(ok && idle && buf.is_empty());
                    }
                    _ => return Ok(false),
                }
            }
        };
        matches!(
            tokio::time::timeout(Duration::from_secs(5), reset).await,
            Ok(Ok(true))
        )
    }

    /// Transaction pooling: reads the settings the session now carries beyond its startup
    /// parameters (what `SET`, `set_config` and `SET ROLE` changed, the custom settings among
    /// `custom` included; the role last), and keeps them as [`Backend::settings`].
    pub async fn read_settings<'a>(
        &mut self,
        custom: impl Iterator<Item = &'a str>,
    ) -> Result<Vec<(String, String)>, String> {
        let mut out = Vec::new();
        let custom: Vec<String> = custom.map(|n| hex(n.as_bytes())).collect();
        extended(
            &mut out,
            READ_SETTINGS,
            &[&text_array(custom.iter().map(String::as_str))],
        );
        message(&mut out, front::SYNC, |_| {});
        let mut rows = Vec::new();
        self.exchange(&out, |tag, body| {
            if tag == back::DATA_ROW {
                rows.push(data_row(body).ok_or("a malformed row of settings")?);
            }
            Ok(())
        })
        .await?;
        let text = |h: &str| String::from_utf8(unhex(h)?).ok();
        rows.into_iter()
            .map(|r| match r.as_slice() {
                [name, value] => Some((text(name)?, text(value)?)),
                _ => None,
            })
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| "a malformed row of settings".to_string())
    }

    /// Sends `out`, then reads the answers up to `ReadyForQuery`, handing each other message to
    /// `each`; an error answer (or anything but an idle session at the end) is an `Err`.
    async fn exchange(
        &mut self,
        out: &[u8],
        mut each: impl FnMut(u8, &[u8]) -> Result<(), &'static str>,
    ) -> Result<(), String> {
        let work = async {
            self.stream
                .write_all(out)
                .await
                .map_err(|e| e.to_string())?;
            let mut buf = BytesMut::with_capacity(1024);
            let mut failed = None;
            loop {
                let (tag, body) =
                    read_message_up_to(&mut self.stream, &mut buf, MAX_SETTINGS_MESSAGE)
                        .await
                        .map_err(|e| e.to_string())?;
                match tag {
                    back::ERROR => {
                        failed = Some(format!(
                            "{} ({})",
                            field(&body, frame::field::MESSAGE),
                            field(&body, frame::field::CODE)
                        ));
                    }
                    back::READY_FOR_QUERY if body == [TxStatus::Idle.byte()] && buf.is_empty() => {
                        return failed.map_or(Ok(()), Err);
                    }
                    back::READY_FOR_QUERY => {
                        return Err("the server was not idle afterwards".to_string());
                    }
                    _ => each(tag, &body).map_err(str::to_string)?,
                }
            }
        };
        tokio::time::timeout(SETTINGS_TIMEOUT, work)
            .await
            .unwrap_or_else(|_| Err("the server did not answer in time".to_string()))
    }

    /// Says goodbye politely; the server then closes its end.
    pub async fn terminate(mut self) {
        let mut out = Vec::new();
        message(&mut out, front::TERMINATE, |_| {});
        let _ = self.stream.write_all(&out).await;
    }
}

/// The startup packet: protocol 3.0, the role and database, then the target's parameters.
fn startup_message(target: &BackendTarget) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&PROTOCOL_3_0.to_be_bytes());
    for (k, v) in [("user", &target.user), ("database", &target.database)] {
        cstr(&mut out, k);
        cstr(&mut out, v);
    }
    for (k, v) in &target.params {
        cstr(&mut out, k);
        cstr(&mut out, v);
    }
    out.push(0);
    let len = out.len() as u32;
    out[..4].copy_from_slice(&len.to_be_bytes());
    out
}

/// The answer to an `Authentication…` request (`body`), empty when none is due: a password in
/// clear or MD5, or the SCRAM-SHA-256 exchange (`scram` carries it between messages).
fn authentication_reply(
    target: &BackendTarget,
    body: &[u8],
    scram: &mut Option<ScramSha256>,
) -> Result<Vec<u8>, BackendError> {
    let kind = body.get(..4).ok_or(BackendError::Protocol("short auth"))?;
    let kind = u32::from_be_bytes([kind[0], kind[1], kind[2], kind[3]]);
    let data = &body[4..];
    let mut reply = Vec::new();
    match kind {
        AUTH_OK => {}
        AUTH_CLEARTEXT => message(&mut reply, front::PASSWORD, |b| cstr(b, &target.password)),
        AUTH_MD5 => {
            let salt: [u8; 4] = data
                .get(..4)
                .and_then(|s| s.try_into().ok())
                .ok_or(BackendError::Protocol("short md5 salt"))?;
            let hash = postgres_protocol::authentication::md5_hash(
                target.user.as_bytes(),
                target.password.as_bytes(),
                salt,
            );
            message(&mut reply, front::PASSWORD, |b| cstr(b, &hash));
        }
        AUTH_SASL => {
            let offers_scram = data
                .split(|b| *b == 0)
                .any(|m| m == SCRAM_SHA_256.as_bytes());
            if !offers_scram {
                return Err(BackendError::Protocol("server offers no SCRAM-SHA-256"));
            }
            let client =
                ScramSha256::new(target.password.as_bytes(), ChannelBinding::unsupported());
            message(&mut reply, front::PASSWORD, |b| {
                cstr(b, SCRAM_SHA_256);
                b.extend_from_slice(&(client.message().len() as i32).to_be_bytes());
                b.extend_from_slice(client.message());
            });
            *scram = Some(client);
        }
        AUTH_SASL_CONTINUE => {
            let client = scram
                .as_mut()
                .ok_or(BackendError::Protocol("SASL continue out of order"))?;
            client
                .update(data)
                .map_err(|_| BackendError::Protocol("bad SASL continue"))?;
            message(&mut reply, front::PASSWORD, |b| {
                b.extend_from_slice(client.message())
            });
        }
        AUTH_SASL_FINAL => {
            let mut client = scram
                .take()
                .ok_or(BackendError::Protocol("SASL final out of order"))?;
            client
                .finish(data)
                .map_err(|_| BackendError::Protocol("server signature invalid"))?;
        }
        _ => return Err(BackendError::Protocol("unsupported authentication")),
    }
    Ok(reply)
}

/// Keeps a `ParameterStatus` (name and value) in `params`.
fn parameter_status(params: &mut Vec<(String, String)>, body: &[u8]) {
    let mut parts = body.split(|b| *b == 0);
    let name = String::from_utf8_lossy(parts.next().unwrap_or_default());
    let value = String::from_utf8_lossy(parts.next().unwrap_or_default());
    set_param(params, &name, &value);
}

/// Sends a `CancelRequest` for a server's backend on a connection of its own (it needs the
/// backend's secret key, never a password).
pub async fn cancel(host: &str, port: u16, pid: u32, key: u32) -> std::io::Result<()> {
    let mut stream = ServerStream::connect(host, port).await?;
    let mut out = Vec::with_capacity(16);
    out.extend_from_slice(&16u32.to_be_bytes());
    out.extend_from_slice(&super::startup::CANCEL_REQUEST.to_be_bytes());
    out.extend_from_slice(&pid.to_be_bytes());
    out.extend_from_slice(&key.to_be_bytes());
    stream.write_all(&out).await?;
    // The server closes the connection when done; wait for that so the cancel has been read.
    let mut sink = [0u8; 1];
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut sink)).await;
    Ok(())
}

/// Transaction pooling: what puts a session back to its startup parameters and then gives it
/// exactly `settings` (what [`Backend::read_settings`] read for a client), ending with one
/// `ReadyForQuery` (a simple query without settings, else extended messages and `Sync`): sent ahead of the client's first message on a connection that changes hands, its answers
/// (up to and including one `ReadyForQuery`) are the proxy's, not the client's.
pub fn settings_messages(settings: &[(String, String)]) -> Vec<u8> {
    let mut out = Vec::new();
    if settings.is_empty() {
        // The usual case, in one message the server parses at once.
        message(&mut out, front::QUERY, |b| cstr(b, "RESET ALL; RESET ROLE"));
        return out;
    }
    for sql in ["RESET ALL", "RESET ROLE"] {
        extended(&mut out, sql, &[]);
    }
    let names: Vec<String> = settings.iter().map(|(n, _)| hex(n.as_bytes())).collect();
    let values: Vec<String> = settings.iter().map(|(_, v)| hex(v.as_bytes())).collect();
    let names = text_array(names.iter().map(String::as_str));
    let values = text_array(values.iter().map(String::as_str));
    extended(&mut out, APPLY_SETTINGS, &[&names, &values]);
    message(&mut out, front::SYNC, |_| {});
    out
}

/// `Parse`, `Bind` (text parameters) and `Execute` of the unnamed statement `sql`.
fn extended(out: &mut Vec<u8>, sql: &str, params: &[&str]) {
    message(out, front::PARSE, |b| {
        cstr(b, "");
        cstr(b, sql);
        b.extend_from_slice(&0u16.to_be_bytes());
    });
    message(out, front::BIND, |b| {
        cstr(b, "");
        cstr(b, "");
        b.extend_from_slice(&0u16.to_be_bytes());
        b.extend_from_slice(&(params.len() as u16).to_be_bytes());
        for p in params {
            b.extend_from_slice(&(p.len() as i32).to_be_bytes());
            b.extend_from_slice(p.as_bytes());
        }
        b.extend_from_slice(&0u16.to_be_bytes());
    });
    message(out, front::EXECUTE, |b| {
        cstr(b, "");
        b.extend_from_slice(&0u32.to_be_bytes());
    });
}

/// A text-format array literal of `items` (each quoted, so any text survives).
fn text_array<'a>(items: impl Iterator<Item = &'a str>) -> String {
    let quoted: Vec<String> = items
        .map(|v| format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect();
    format!("{{{}}}", quoted.join(","))
}

/// The text columns of a `DataRow` (a NULL reads as empty).
fn data_row(body: &[u8]) -> Option<Vec<String>> {
    let count = u16::from_be_bytes(body.get(..2)?.try_into().ok()?);
    let mut rest = &body[2..];
    let mut columns = Vec::with_capacity(count.into());
    for _ in 0..count {
        let len = i32::from_be_bytes(rest.get(..4)?.try_into().ok()?);
        rest = &rest[4..];
        let Ok(len) = usize::try_from(len) else {
            columns.push(String::new());
            continue;
        };
        columns.push(String::from_utf8_lossy(rest.get(..len)?).into_owned());
        rest = &rest[len..];
    }
    Some(columns)
}

fn set_param(params: &mut Vec<(String, String)>, name: &str, value: &str) {
    match params.iter_mut().find(|(k, _)| k == name) {
        Some(entry) => entry.1 = value.to_string(),
        None => params.push((name.to_string(), value.to_string())),
    }
}

fn refused(body: &[u8]) -> BackendError {
    BackendError::Refused {
        code: field(body, frame::field::CODE),
        message: field(body, frame::field::MESSAGE),
        body: body.to_vec(),
    }
}

/// One field of an error response, empty when absent.
fn field(body: &[u8], code: u8) -> String {
    frame::error_field(body, code)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_default()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Reads one whole message during a handshake (the relay streams instead).
async fn read_message<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
) -> Result<(u8, Vec<u8>), BackendError> {
    read_message_up_to(stream, buf, MAX_HANDSHAKE_MESSAGE).await
}

/// Reads one whole message of at most `limit` bytes.
async fn read_message_up_to<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
    limit: usize,
) -> Result<(u8, Vec<u8>), BackendError> {
    loop {
        if buf.len() >= 5 {
            let len = i32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]);
            let total = usize::try_from(len)
                .ok()
                .filter(|n| (4..=limit).contains(n))
                .ok_or(BackendError::Protocol("bad message length"))?
                + 1;
            if buf.len() >= total {
                let tag = buf[0];
                let body = buf[5..total].to_vec();
                buf.advance(total);
                return Ok((tag, body));
            }
        }
        if stream.read_buf(buf).await? == 0 {
            return Err(BackendError::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
    }
}
