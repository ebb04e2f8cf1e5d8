//! Typed messages after the startup packet: `Byte1 tag, Int32 length (counting itself), body`.
//! The proxy builds the few backend messages it answers itself, reads the client's
//! authentication messages with a small size limit, and picks apart error responses.

use tokio::io::{AsyncRead, AsyncReadExt};

use super::message::back;

/// The field codes of an `ErrorResponse` or `NoticeResponse`.
pub mod field {
    pub const SEVERITY: u8 = b'S';
    /// The severity, never translated.
    pub const SEVERITY_NAME: u8 = b'V';
    pub const CODE: u8 = b'C';
    pub const MESSAGE: u8 = b'M';
    pub const DETAIL: u8 = b'D';
    pub const HINT: u8 = b'H';
    /// Where the error arose (a function's or a `DO` block's line).
    pub const CONTEXT: u8 = b'W';
}

/// The largest authentication message a client may send (SASL messages are tiny).
pub const MAX_AUTH_MESSAGE: usize = 4096;

/// A PostgreSQL error or notice, as the `ErrorResponse` fields the proxy cares about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgError {
    pub severity: &'static str,
    pub code: &'static str,
    pub message: String,
}

/// A refusal of the core, as a PostgreSQL client reads it: a FATAL error with the SQLSTATE of
/// its reason.
#[cfg(feature = "server")]
impl From<crate::refusal::Refusal> for PgError {
    fn from(r: crate::refusal::Refusal) -> Self {
        Self::fatal(super::sqlstate::of_refusal(r.reason), r.message)
    }
}

impl PgError {
    pub fn fatal(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            severity: "FATAL",
            code,
            message: message.into(),
        }
    }

    pub fn error(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            severity: "ERROR",
            code,
            message: message.into(),
        }
    }

    /// As an `ErrorResponse`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        self.encode_as(out, back::ERROR);
    }

    /// As a `NoticeResponse` (the same fields; the client reads it as a warning and goes on).
    pub fn encode_notice(&self, out: &mut Vec<u8>) {
        self.encode_as(out, back::NOTICE);
    }

    fn encode_as(&self, out: &mut Vec<u8>, tag: u8) {
        message(out, tag, |body| {
            for (field, value) in [
                (field::SEVERITY, self.severity),
                (field::SEVERITY_NAME, self.severity),
                (field::CODE, self.code),
                (field::MESSAGE, self.message.as_str()),
            ] {
                body.push(field);
                cstr(body, value);
            }
            body.push(0);
        });
    }
}

/// Appends one message: tag, length, then what `fill` writes.
pub fn message(out: &mut Vec<u8>, tag: u8, fill: impl FnOnce(&mut Vec<u8>)) {
    out.push(tag);
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    fill(out);
    let len = (out.len() - at) as u32;
    out[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

pub fn cstr(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(s.as_bytes());
    out.push(0);
}

/// `AuthenticationOk`, `AuthenticationSASL`, `…SASLContinue`, `…SASLFinal`.
pub fn auth_ok(out: &mut Vec<u8>) {
    message(out, back::AUTHENTICATION, |b| {
        b.extend_from_slice(&0u32.to_be_bytes())
    });
}

pub fn auth_sasl(out: &mut Vec<u8>, mechanisms: &[&str]) {
    message(out, back::AUTHENTICATION, |b| {
        b.extend_from_slice(&10u32.to_be_bytes());
        for mechanism in mechanisms {
            cstr(b, mechanism);
        }
        b.push(0);
    });
}

pub fn auth_sasl_continue(out: &mut Vec<u8>, data: &[u8]) {
    message(out, back::AUTHENTICATION, |b| {
        b.extend_from_slice(&11u32.to_be_bytes());
        b.extend_from_slice(data);
    });
}

pub fn auth_sasl_final(out: &mut Vec<u8>, data: &[u8]) {
    message(out, back::AUTHENTICATION, |b| {
        b.extend_from_slice(&12u32.to_be_bytes());
        b.extend_from_slice(data);
    });
}

pub fn parameter_status(out: &mut Vec<u8>, name: &str, value: &str) {
    message(out, back::PARAMETER_STATUS, |b| {
        cstr(b, name);
        cstr(b, value);
    });
}

pub fn backend_key_data(out: &mut Vec<u8>, pid: u32, key: u32) {
    message(out, back::BACKEND_KEY_DATA, |b| {
        b.extend_from_slice(&pid.to_be_bytes());
        b.extend_from_slice(&key.to_be_bytes());
    });
}

pub fn ready_for_query(out: &mut Vec<u8>, status: u8) {
    message(out, back::READY_FOR_QUERY, |b| b.push(status));
}

/// `CommandComplete` with its command tag.
pub fn command_complete(out: &mut Vec<u8>, tag: &str) {
    message(out, back::COMMAND_COMPLETE, |b| cstr(b, tag));
}

/// `NegotiateProtocolVersion`: the newest minor version spoken and the options not understood.
pub fn negotiate_protocol(out: &mut Vec<u8>, minor: u32, unknown: &[&str]) {
    message(out, back::NEGOTIATE_PROTOCOL, |b| {
        b.extend_from_slice(&minor.to_be_bytes());
        b.extend_from_slice(&(unknown.len() as u32).to_be_bytes());
        for option in unknown {
            cstr(b, option);
        }
    });
}

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("connection closed")]
    Closed,
    #[error("invalid message length {0}")]
    BadLength(i64),
    #[error("unexpected message type {0:#04x}")]
    Unexpected(u8),
}

/// Reads one message from the client during authentication: the tag must be `expected` and the
/// whole message at most [`MAX_AUTH_MESSAGE`] bytes; the length is checked before the body is read.
pub async fn read_auth_message<R: AsyncRead + Unpin>(
    reader: &mut R,
    expected: u8,
) -> Result<Vec<u8>, FrameError> {
    let mut head = [0u8; 5];
    reader
        .read_exact(&mut head)
        .await
        .map_err(|_| FrameError::Closed)?;
    if head[0] != expected {
        return Err(FrameError::Unexpected(head[0]));
    }
    let len = i32::from_be_bytes([head[1], head[2], head[3], head[4]]);
    let body_len = match usize::try_from(len) {
        Ok(n) if (4..=MAX_AUTH_MESSAGE).contains(&n) => n - 4,
        _ => return Err(FrameError::BadLength(i64::from(len))),
    };
    let mut body = vec![0u8; body_len];
    reader
        .read_exact(&mut body)
        .await
        .map_err(|_| FrameError::Closed)?;
    Ok(body)
}

/// `SASLInitialResponse`: the mechanism name, then `Int32 n` and `n` bytes (-1: none).
pub fn parse_sasl_initial(body: &[u8]) -> Option<(&str, &[u8])> {
    let end = body.iter().position(|b| *b == 0)?;
    let mechanism = std::str::from_utf8(&body[..end]).ok()?;
    let rest = body.get(end + 1..)?;
    let len = i32::from_be_bytes(rest.get(..4)?.try_into().ok()?);
    let data = &rest[4..];
    match usize::try_from(len) {
        Ok(n) if n == data.len() => Some((mechanism, data)),
        Err(_) if len == -1 && data.is_empty() => Some((mechanism, data)),
        _ => None,
    }
}

/// The fields of an `ErrorResponse` or `NoticeResponse` body, in order.
pub fn error_fields(body: &[u8]) -> Vec<(u8, &[u8])> {
    let mut fields = Vec::new();
    let mut rest = body;
    while let Some((&code, after)) = rest.split_first() {
        if code == 0 {
            break;
        }
        let Some(end) = after.iter().position(|b| *b == 0) else {
            break;
        };
        fields.push((code, &after[..end]));
        rest = &after[end + 1..];
    }
    fields
}

/// The first field `code` of an `ErrorResponse` or `NoticeResponse` body.
pub fn error_field(body: &[u8], code: u8) -> Option<&[u8]> {
    error_fields(body)
        .into_iter()
        .find(|(c, _)| *c == code)
        .map(|(_, value)| value)
}

/// The SQLSTATE of an `ErrorResponse` body.
pub fn error_code(body: &[u8]) -> Option<&str> {
    error_field(body, field::CODE).and_then(|v| std::str::from_utf8(v).ok())
}

/// Re-encodes an `ErrorResponse` with a new message, dropping detail and hint (which describe
/// the original message) and keeping every other field.
pub fn rewrite_error(body: &[u8], new_message: &str, out: &mut Vec<u8>) {
    message(out, back::ERROR, |b| {
        for (code, value) in error_fields(body) {
            match code {
                field::DETAIL | field::HINT => continue,
                field::MESSAGE => {
                    b.push(field::MESSAGE);
                    cstr(b, new_message);
                }
                _ => {
                    b.push(code);
                    b.extend_from_slice(value);
                    b.push(0);
                }
            }
        }
        b.push(0);
    });
}

/// The error in `body` without its context (`W`): a refusal the proxy raised in a `DO` block
/// would otherwise name the block.
pub fn without_context(body: &[u8], out: &mut Vec<u8>) {
    message(out, back::ERROR, |b| {
        for (code, value) in error_fields(body) {
            if code != field::CONTEXT {
                b.push(code);
                b.extend_from_slice(value);
                b.push(0);
            }
        }
        b.push(0);
    });
}

/// The row count at the end of a `CommandComplete` tag (`SELECT 5`, `INSERT 0 3`, `COPY 10`).
pub fn command_rows(body: &[u8]) -> Option<i64> {
    let tag = body.strip_suffix(&[0]).unwrap_or(body);
    let last = tag.rsplit(|b| *b == b' ').next()?;
    if last.len() == tag.len() {
        return None;
    }
    std::str::from_utf8(last).ok()?.parse().ok()
}

/// The text of a `CommandComplete` tag.
pub fn command_tag(body: &[u8]) -> &str {
    let tag = body.strip_suffix(&[0]).unwrap_or(body);
    std::str::from_utf8(tag).unwrap_or("")
}

/// The first `limit` bytes of a C string (up to its NUL), as text cut at a char boundary.
pub fn cstr_prefix(bytes: &[u8], limit: usize) -> String {
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    let take = end.min(limit);
    let text = String::from_utf8_lossy(&bytes[..take]);
    text.into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_round_trip_and_rewrite() {
        let mut out = Vec::new();
        PgError::error("42501", "permission denied for schema public").encode(&mut out);
        assert_eq!(out[0], b'E');
        let body = &out[5..];
        assert_eq!(error_code(body), Some("42501"));
        let mut rewritten = Vec::new();
        rewrite_error(body, "DDL not allowed", &mut rewritten);
        let fields = error_fields(&rewritten[5..]);
        assert!(fields.contains(&(b'M', b"DDL not allowed".as_slice())));
        assert!(fields.contains(&(b'C', b"42501".as_slice())));
        let len = u32::from_be_bytes([rewritten[1], rewritten[2], rewritten[3], rewritten[4]]);
        assert_eq!(len as usize, rewritten.len() - 1);
    }

    #[test]
    fn command_tags_give_row_counts() {
        assert_eq!(command_rows(b"SELECT 5\0"), Some(5));
        assert_eq!(command_rows(b"INSERT 0 3\0"), Some(3));
        assert_eq!(command_rows(b"CREATE TABLE\0"), None);
        assert_eq!(command_rows(b"BEGIN\0"), None);
        assert_eq!(command_tag(b"COMMIT\0"), "COMMIT");
    }

    #[test]
    fn sasl_initial_response_is_checked() {
        let mut body = b"SCRAM-SHA-256\0".to_vec();
        body.extend_from_slice(&3i32.to_be_bytes());
        body.extend_from_slice(b"abc");
        assert_eq!(
            parse_sasl_initial(&body),
            Some(("SCRAM-SHA-256", b"abc".as_slice()))
        );
        body.push(b'x');
        assert_eq!(parse_sasl_initial(&body), None);
        assert_eq!(parse_sasl_initial(b"SCRAM"), None);
        assert_eq!(parse_sasl_initial(b"S\0\xff\xff"), None);
    }

    #[tokio::test]
    async fn auth_messages_are_bounded() {
        let mut big = vec![b'p'];
        big.extend_from_slice(&(MAX_AUTH_MESSAGE as i32 + 1).to_be_bytes());
        assert!(matches!(
            read_auth_message(&mut big.as_slice(), b'p').await,
            Err(FrameError::BadLength(_))
        ));
        let startup_again = [0u8, 0, 0, 8, 4, 210, 22, 47];
        assert!(matches!(
            read_auth_message(&mut startup_again.as_slice(), b'p').await,
            Err(FrameError::Unexpected(0))
        ));
    }
}
