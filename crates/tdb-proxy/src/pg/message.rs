//! The messages of the extended and simple query protocols that the relay reads or writes, as
//! types. A message decodes in place from its frame (its tag and body, nothing copied) and
//! encodes from its fields; every tag is named here, once.

use super::frame::{self, cstr};

/// Tags of the messages a client sends.
pub mod front {
    pub const QUERY: u8 = b'Q';
    pub const PARSE: u8 = b'P';
    pub const BIND: u8 = b'B';
    pub const DESCRIBE: u8 = b'D';
    pub const EXECUTE: u8 = b'E';
    pub const CLOSE: u8 = b'C';
    pub const SYNC: u8 = b'S';
    pub const FLUSH: u8 = b'H';
    pub const FUNCTION_CALL: u8 = b'F';
    pub const COPY_DATA: u8 = b'd';
    pub const COPY_DONE: u8 = b'c';
    pub const COPY_FAIL: u8 = b'f';
    pub const TERMINATE: u8 = b'X';
    /// Authentication answers: password, SASL initial and SASL response.
    pub const PASSWORD: u8 = b'p';
}

/// Tags of the messages a server sends.
pub mod back {
    pub const AUTHENTICATION: u8 = b'R';
    pub const BACKEND_KEY_DATA: u8 = b'K';
    pub const NEGOTIATE_PROTOCOL: u8 = b'v';
    pub const COMMAND_COMPLETE: u8 = b'C';
    pub const EMPTY_QUERY: u8 = b'I';
    pub const PORTAL_SUSPENDED: u8 = b's';
    pub const ERROR: u8 = b'E';
    pub const NOTICE: u8 = b'N';
    pub const PARSE_COMPLETE: u8 = b'1';
    pub const COPY_IN: u8 = b'G';
    pub const PARAMETER_STATUS: u8 = b'S';
    pub const READY_FOR_QUERY: u8 = b'Z';
    pub const DATA_ROW: u8 = b'D';
    pub const COPY_DATA: u8 = b'd';
}

/// The transaction status a `ReadyForQuery` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxStatus {
    Idle,
    InTransaction,
    Failed,
}

impl TxStatus {
    /// The status byte; an unknown one reads as idle, as the relay always has.
    pub fn from_byte(byte: Option<u8>) -> Self {
        match byte {
            Some(b'T') => Self::InTransaction,
            Some(b'E') => Self::Failed,
            _ => Self::Idle,
        }
    }

    pub fn byte(self) -> u8 {
        match self {
            Self::Idle => b'I',
            Self::InTransaction => b'T',
            Self::Failed => b'E',
        }
    }
}

/// What a `Describe` or `Close` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Statement,
    Portal,
}

impl Target {
    /// The byte that names it on the wire (anything but `S` reads as a portal).
    const STATEMENT: u8 = b'S';
}

/// A client's message, borrowed from its frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frontend<'a> {
    /// The body as sent: the statement and its NUL.
    Query {
        sql: &'a [u8],
    },
    /// `tail` is what follows the name: the query, its NUL and the parameter types.
    Parse {
        name: &'a [u8],
        query: &'a [u8],
        tail: &'a [u8],
    },
    /// `params` is what follows the statement name: formats, values, result formats.
    Bind {
        portal: &'a [u8],
        statement: &'a [u8],
        params: &'a [u8],
    },
    Describe {
        target: Target,
        name: &'a [u8],
    },
    Close {
        target: Target,
        name: &'a [u8],
    },
    /// `None`: a body without a portal name (the server refuses it).
    Execute {
        portal: Option<&'a [u8]>,
    },
    Sync,
    Flush,
    FunctionCall,
    CopyData,
    CopyDone,
    CopyFail,
    Terminate,
    /// Any other tag, or a body too short for the message's fields.
    Other,
}

impl<'a> Frontend<'a> {
    pub fn decode(tag: u8, body: &'a [u8]) -> Self {
        Self::fields(tag, body).unwrap_or(Self::Other)
    }

    fn fields(tag: u8, body: &'a [u8]) -> Option<Self> {
        Some(match tag {
            front::QUERY => Self::Query { sql: body },
            front::PARSE => {
                let (name, tail) = take_cstr(body)?;
                let (query, _) = take_cstr(tail)?;
                Self::Parse { name, query, tail }
            }
            front::BIND => {
                let (portal, rest) = take_cstr(body)?;
                let (statement, params) = take_cstr(rest)?;
                Self::Bind {
                    portal,
                    statement,
                    params,
                }
            }
            front::DESCRIBE | front::CLOSE => {
                let (&kind, rest) = body.split_first()?;
                let (name, _) = take_cstr(rest)?;
                let target = match kind {
                    Target::STATEMENT => Target::Statement,
                    _ => Target::Portal,
                };
                match tag {
                    front::DESCRIBE => Self::Describe { target, name },
                    _ => Self::Close { target, name },
                }
            }
            front::EXECUTE => Self::Execute {
                portal: take_cstr(body).map(|(portal, _)| portal),
            },
            front::SYNC => Self::Sync,
            front::FLUSH => Self::Flush,
            front::FUNCTION_CALL => Self::FunctionCall,
            front::COPY_DATA => Self::CopyData,
            front::COPY_DONE => Self::CopyDone,
            front::COPY_FAIL => Self::CopyFail,
            front::TERMINATE => Self::Terminate,
            _ => return None,
        })
    }

    /// The statement's text of a `Query` or `Parse` (a `Query`'s with its NUL), and the name a
    /// `Parse` gives it.
    pub fn statement(&self) -> Option<(Option<&'a [u8]>, &'a [u8])> {
        match *self {
            Self::Query { sql } => Some((None, sql)),
            Self::Parse { name, query, .. } => Some((Some(name), query)),
            _ => None,
        }
    }
}

/// Whether a client message with this tag is work of the extended protocol, which the server
/// answers only after the next `Sync` (a `Flush` alone starts nothing).
pub fn is_extended(tag: u8) -> bool {
    matches!(
        tag,
        front::PARSE | front::BIND | front::DESCRIBE | front::EXECUTE | front::CLOSE
    )
}

/// Whether a client message with this tag carries a statement (`Query` or `Parse`).
pub fn carries_statement(tag: u8) -> bool {
    matches!(tag, front::QUERY | front::PARSE)
}

/// A server's message that the relay reads, borrowed from its frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Backend<'a> {
    /// `body` is the command tag and its NUL.
    CommandComplete {
        body: &'a [u8],
    },
    EmptyQuery,
    PortalSuspended,
    Error {
        body: &'a [u8],
    },
    ParseComplete,
    CopyIn,
    ParameterStatus,
    ReadyForQuery {
        status: TxStatus,
    },
    Other,
}

impl<'a> Backend<'a> {
    pub fn decode(tag: u8, body: &'a [u8]) -> Self {
        match tag {
            back::COMMAND_COMPLETE => Self::CommandComplete { body },
            back::EMPTY_QUERY => Self::EmptyQuery,
            back::PORTAL_SUSPENDED => Self::PortalSuspended,
            back::ERROR => Self::Error { body },
            back::PARSE_COMPLETE => Self::ParseComplete,
            back::COPY_IN => Self::CopyIn,
            back::PARAMETER_STATUS => Self::ParameterStatus,
            back::READY_FOR_QUERY => Self::ReadyForQuery {
                status: TxStatus::from_byte(body.first().copied()),
            },
            _ => Self::Other,
        }
    }
}

/// Whether a server message with this tag is row or COPY data (streamed, never read whole).
pub fn is_data(tag: u8) -> bool {
    matches!(tag, back::DATA_ROW | back::COPY_DATA)
}

/// Reads a NUL-terminated string at the front of `bytes`; returns it and what follows.
pub fn take_cstr(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let end = bytes.iter().position(|b| *b == 0)?;
    Some((&bytes[..end], &bytes[end + 1..]))
}

/// `Parse` of a statement whose text, NUL and parameter types are `tail`.
pub fn encode_parse(out: &mut Vec<u8>, name: &str, tail: &[u8]) {
    frame::message(out, front::PARSE, |b| {
        cstr(b, name);
        b.extend_from_slice(tail);
    });
}

/// `Bind` of `portal` to `statement`, with the parameters as the client sent them.
pub fn encode_bind(out: &mut Vec<u8>, portal: &[u8], statement: &str, params: &[u8]) {
    frame::message(out, front::BIND, |b| {
        b.extend_from_slice(portal);
        b.push(0);
        cstr(b, statement);
        b.extend_from_slice(params);
    });
}

/// `Describe` or `Close` of a prepared statement.
pub fn encode_statement_target(out: &mut Vec<u8>, tag: u8, statement: &str) {
    frame::message(out, tag, |b| {
        b.push(Target::STATEMENT);
        cstr(b, statement);
    });
}

/// A `Query` of `sql` (`name` is `None`), or a `Parse` of it named `name` with no parameter
/// types.
pub fn encode_statement(name: Option<&[u8]>, sql: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(sql.len() + 16);
    let tag = if name.is_some() {
        front::PARSE
    } else {
        front::QUERY
    };
    frame::message(&mut out, tag, |m| {
        if let Some(name) = name {
            m.extend_from_slice(name);
            m.push(0);
        }
        m.extend_from_slice(sql.as_bytes());
        m.push(0);
        if name.is_some() {
            m.extend_from_slice(&0u16.to_be_bytes());
        }
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        frame::message(&mut out, tag, |b| b.extend_from_slice(body));
        out
    }

    #[test]
    fn frontend_messages_decode_and_encode_back() {
        let mut parse = Vec::new();
        encode_parse(&mut parse, "s1", b"SELECT $1\0\0\x01\0\0\0\x17");
        assert_eq!(
            Frontend::decode(parse[0], &parse[5..]),
            Frontend::Parse {
                name: b"s1",
                query: b"SELECT $1",
                tail: b"SELECT $1\0\0\x01\0\0\0\x17",
            }
        );
        let mut bind = Vec::new();
        encode_bind(&mut bind, b"p", "s1", b"\0\0\0\0\0\0");
        assert_eq!(
            Frontend::decode(bind[0], &bind[5..]),
            Frontend::Bind {
                portal: b"p",
                statement: b"s1",
                params: b"\0\0\0\0\0\0",
            }
        );
        let mut close = Vec::new();
        encode_statement_target(&mut close, front::CLOSE, "s1");
        assert_eq!(
            Frontend::decode(close[0], &close[5..]),
            Frontend::Close {
                target: Target::Statement,
                name: b"s1",
            }
        );
        let query = encode_statement(None, "SELECT 1");
        assert_eq!(query, framed(front::QUERY, b"SELECT 1\0"));
        assert_eq!(
            Frontend::decode(query[0], &query[5..]).statement(),
            Some((None, b"SELECT 1\0".as_slice()))
        );
        let named = encode_statement(Some(b"n"), "SELECT 2");
        assert_eq!(
            Frontend::decode(named[0], &named[5..]).statement(),
            Some((Some(b"n".as_slice()), b"SELECT 2".as_slice()))
        );
    }

    #[test]
    fn short_bodies_decode_as_other_and_never_panic() {
        for tag in [front::PARSE, front::BIND, front::DESCRIBE, front::CLOSE] {
            assert_eq!(Frontend::decode(tag, b""), Frontend::Other);
            assert_eq!(Frontend::decode(tag, b"no nul"), Frontend::Other);
        }
        assert_eq!(
            Frontend::decode(front::EXECUTE, b"x"),
            Frontend::Execute { portal: None }
        );
        assert_eq!(
            Frontend::decode(front::CLOSE, b"Pportal\0"),
            Frontend::Close {
                target: Target::Portal,
                name: b"portal",
            }
        );
    }

    #[test]
    fn backend_messages_decode() {
        assert_eq!(
            Backend::decode(back::READY_FOR_QUERY, b"T"),
            Backend::ReadyForQuery {
                status: TxStatus::InTransaction
            }
        );
        assert_eq!(
            Backend::decode(back::READY_FOR_QUERY, b""),
            Backend::ReadyForQuery {
                status: TxStatus::Idle
            }
        );
        assert_eq!(
            Backend::decode(back::COMMAND_COMPLETE, b"SELECT 1\0"),
            Backend::CommandComplete {
                body: b"SELECT 1\0"
            }
        );
        assert!(is_data(back::DATA_ROW) && !is_data(back::ERROR));
        for status in [TxStatus::Idle, TxStatus::InTransaction, TxStatus::Failed] {
            assert_eq!(TxStatus::from_byte(Some(status.byte())), status);
        }
    }
}
