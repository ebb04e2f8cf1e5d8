//! Why a byte stream is not valid RESP. Every message is safe to send to the client: it names
//! the rule broken, never the bytes beyond one type byte.

use std::fmt;

use super::types::Frame;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("unknown type byte {0}")]
    UnknownType(ByteName),
    #[error("expected {expected}, got {got}")]
    UnexpectedType { expected: ByteName, got: ByteName },
    #[error("streamed RESP3 types are not supported")]
    Streamed,
    #[error("invalid {0} length")]
    InvalidLength(&'static str),
    #[error("bulk length {len} exceeds the limit of {max} bytes")]
    BulkTooLong { len: i64, max: usize },
    #[error("aggregate of {count} elements exceeds the limit of {max}")]
    TooManyElements { count: i64, max: usize },
    #[error("aggregates nested deeper than {max} levels")]
    TooDeep { max: usize },
    #[error("too big inline request (over {max} bytes)")]
    InlineTooLong { max: usize },
    #[error("line longer than {max} bytes")]
    LineTooLong { max: usize },
    #[error("unbalanced quotes in request")]
    UnbalancedQuotes,
    #[error("line not terminated by CRLF")]
    MissingCrlf,
    #[error("invalid {0}")]
    Malformed(&'static str),
}

impl ProtocolError {
    /// The error reply to send before closing the connection, as redis-server words its own
    /// (`-ERR Protocol error: ...`).
    pub fn reply(&self) -> Frame {
        Frame::Error(format!("ERR Protocol error: {self}").into())
    }
}

/// One byte named for a message: `'*'` when printable, `'\x00'` otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteName(pub u8);

impl fmt::Display for ByteName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_ascii_graphic() {
            write!(f, "'{}'", char::from(self.0))
        } else {
            write!(f, "'\\x{:02x}'", self.0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_is_an_err_protocol_error_line() {
        let err = ProtocolError::UnexpectedType {
            expected: ByteName(b'$'),
            got: ByteName(0),
        };
        assert_eq!(
            err.reply(),
            Frame::Error("ERR Protocol error: expected '$', got '\\x00'".into())
        );
    }
}
