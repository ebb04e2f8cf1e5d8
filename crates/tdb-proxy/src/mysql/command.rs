//! The command phase's client messages: the first byte of a packet names the command, the rest
//! is its body. [`Command::decode`] reads the bodies the relay needs to understand; a command
//! it does not name is [`Command::Other`], which the relay refuses (never an OK).

use super::wire::{self, Malformed, Reader};

pub mod code {
    pub const QUIT: u8 = 0x01;
    pub const INIT_DB: u8 = 0x02;
    pub const QUERY: u8 = 0x03;
    pub const FIELD_LIST: u8 = 0x04;
    pub const STATISTICS: u8 = 0x09;
    pub const PROCESS_KILL: u8 = 0x0c;
    pub const PING: u8 = 0x0e;
    pub const CHANGE_USER: u8 = 0x11;
    pub const STMT_PREPARE: u8 = 0x16;
    pub const STMT_EXECUTE: u8 = 0x17;
    pub const STMT_SEND_LONG_DATA: u8 = 0x18;
    pub const STMT_CLOSE: u8 = 0x19;
    pub const STMT_RESET: u8 = 0x1a;
    pub const SET_OPTION: u8 = 0x1b;
    pub const STMT_FETCH: u8 = 0x1c;
    pub const RESET_CONNECTION: u8 = 0x1f;
}

/// `COM_STMT_EXECUTE`'s statement id for "the statement prepared last" (MariaDB).
pub const LAST_PREPARED: u32 = u32::MAX;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command<'a> {
    Quit,
    /// `COM_INIT_DB`: the schema to switch to.
    InitDb(&'a [u8]),
    /// `COM_QUERY`: statement text in the connection's character set.
    Query(&'a [u8]),
    /// `COM_FIELD_LIST`: a table's columns (deprecated, still sent by old clients).
    FieldList {
        table: &'a [u8],
        wildcard: &'a [u8],
    },
    Statistics,
    /// `COM_PROCESS_KILL`: a connection id.
    ProcessKill(u32),
    Ping,
    /// `COM_CHANGE_USER`: its body is not read (the proxy refuses it).
    ChangeUser,
    StmtPrepare(&'a [u8]),
    /// `COM_STMT_EXECUTE`: the statement and its cursor flags; parameters stay in the bytes.
    StmtExecute {
        id: u32,
        flags: u8,
    },
    StmtSendLongData {
        id: u32,
    },
    StmtClose {
        id: u32,
    },
    StmtReset {
        id: u32,
    },
    /// `COM_SET_OPTION`: multi-statements on (0) or off (1).
    SetOption(u16),
    StmtFetch {
        id: u32,
        rows: u32,
    },
    ResetConnection,
    /// Any other command byte (or an empty packet: `None`).
    Other(Option<u8>),
}

impl<'a> Command<'a> {
    pub fn decode(payload: &'a [u8]) -> Result<Self, Malformed> {
        let Some((&byte, body)) = payload.split_first() else {
            return Ok(Self::Other(None));
        };
        let mut r = Reader::new(body);
        Ok(match byte {
            code::QUIT => Self::Quit,
            code::INIT_DB => Self::InitDb(body),
            code::QUERY => Self::Query(body),
            code::FIELD_LIST => {
                let table = r.nul_bytes("table name")?;
                Self::FieldList {
                    table,
                    wildcard: r.take_rest(),
                }
            }
            code::STATISTICS => Self::Statistics,
            code::PROCESS_KILL => Self::ProcessKill(r.u32("connection id")?),
            code::PING => Self::Ping,
            code::CHANGE_USER => Self::ChangeUser,
            code::STMT_PREPARE => Self::StmtPrepare(body),
            code::STMT_EXECUTE => {
                let id = r.u32("statement id")?;
                Self::StmtExecute {
                    id,
                    flags: r.u8("flags")?,
                }
            }
            code::STMT_SEND_LONG_DATA => Self::StmtSendLongData {
                id: r.u32("statement id")?,
            },
            code::STMT_CLOSE => Self::StmtClose {
                id: r.u32("statement id")?,
            },
            code::STMT_RESET => Self::StmtReset {
                id: r.u32("statement id")?,
            },
            code::SET_OPTION => Self::SetOption(r.u16("option")?),
            code::STMT_FETCH => {
                let id = r.u32("statement id")?;
                Self::StmtFetch {
                    id,
                    rows: r.u32("rows")?,
                }
            }
            code::RESET_CONNECTION => Self::ResetConnection,
            other => Self::Other(Some(other)),
        })
    }

    /// The command's bytes (a `COM_STMT_EXECUTE` without parameters).
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Self::Quit => out.push(code::QUIT),
            Self::InitDb(db) => body(out, code::INIT_DB, db),
            Self::Query(sql) => body(out, code::QUERY, sql),
            Self::FieldList { table, wildcard } => {
                out.push(code::FIELD_LIST);
                wire::put_nul(out, table);
                out.extend_from_slice(wildcard);
            }
            Self::Statistics => out.push(code::STATISTICS),
            Self::ProcessKill(id) => id_body(out, code::PROCESS_KILL, *id),
            Self::Ping => out.push(code::PING),
            Self::ChangeUser => out.push(code::CHANGE_USER),
            Self::StmtPrepare(sql) => body(out, code::STMT_PREPARE, sql),
            Self::StmtExecute { id, flags } => {
                id_body(out, code::STMT_EXECUTE, *id);
                out.push(*flags);
                wire::put_u32(out, 1);
            }
            Self::StmtSendLongData { id } => id_body(out, code::STMT_SEND_LONG_DATA, *id),
            Self::StmtClose { id } => id_body(out, code::STMT_CLOSE, *id),
            Self::StmtReset { id } => id_body(out, code::STMT_RESET, *id),
            Self::SetOption(option) => {
                out.push(code::SET_OPTION);
                wire::put_u16(out, *option);
            }
            Self::StmtFetch { id, rows } => {
                id_body(out, code::STMT_FETCH, *id);
                wire::put_u32(out, *rows);
            }
            Self::ResetConnection => out.push(code::RESET_CONNECTION),
            Self::Other(byte) => out.extend(byte),
        }
    }

    /// The name clients and logs know it by.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Quit => "COM_QUIT",
            Self::InitDb(_) => "COM_INIT_DB",
            Self::Query(_) => "COM_QUERY",
            Self::FieldList { .. } => "COM_FIELD_LIST",
            Self::Statistics => "COM_STATISTICS",
            Self::ProcessKill(_) => "COM_PROCESS_KILL",
            Self::Ping => "COM_PING",
            Self::ChangeUser => "COM_CHANGE_USER",
            Self::StmtPrepare(_) => "COM_STMT_PREPARE",
            Self::StmtExecute { .. } => "COM_STMT_EXECUTE",
            Self::StmtSendLongData { .. } => "COM_STMT_SEND_LONG_DATA",
            Self::StmtClose { .. } => "COM_STMT_CLOSE",
            Self::StmtReset { .. } => "COM_STMT_RESET",
            Self::SetOption(_) => "COM_SET_OPTION",
            Self::StmtFetch { .. } => "COM_STMT_FETCH",
            Self::ResetConnection => "COM_RESET_CONNECTION",
            Self::Other(_) => "an unknown command",
        }
    }
}

fn body(out: &mut Vec<u8>, code: u8, bytes: &[u8]) {
    out.push(code);
    out.extend_from_slice(bytes);
}

fn id_body(out: &mut Vec<u8>, code: u8, id: u32) {
    out.push(code);
    wire::put_u32(out, id);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn command() -> impl Strategy<Value = Command<'static>> {
        let text: &'static [u8] = b"SELECT 1";
        prop_oneof![
            Just(Command::Quit),
            Just(Command::InitDb(b"shop__acme")),
            Just(Command::Query(text)),
            Just(Command::FieldList {
                table: b"t",
                wildcard: b"%"
            }),
            Just(Command::Statistics),
            any::<u32>().prop_map(Command::ProcessKill),
            Just(Command::Ping),
            Just(Command::ChangeUser),
            Just(Command::StmtPrepare(text)),
            (any::<u32>(), any::<u8>()).prop_map(|(id, flags)| Command::StmtExecute { id, flags }),
            any::<u32>().prop_map(|id| Command::StmtSendLongData { id }),
            any::<u32>().prop_map(|id| Command::StmtClose { id }),
            any::<u32>().prop_map(|id| Command::StmtReset { id }),
            any::<u16>().prop_map(Command::SetOption),
            (any::<u32>(), any::<u32>()).prop_map(|(id, rows)| Command::StmtFetch { id, rows }),
            Just(Command::ResetConnection),
            Just(Command::Other(Some(0x06))),
        ]
    }

    proptest! {
        #[test]
        fn commands_round_trip(cmd in command()) {
            let mut out = Vec::new();
            cmd.encode(&mut out);
            prop_assert_eq!(Command::decode(&out).expect("decodes"), cmd);
        }

        #[test]
        fn decoding_never_panics(data in proptest::collection::vec(any::<u8>(), 0..16)) {
            let _ = Command::decode(&data);
        }
    }

    #[test]
    fn short_bodies_are_malformed_and_unknown_bytes_are_other() {
        assert!(Command::decode(&[code::STMT_EXECUTE, 1, 0, 0, 0]).is_err());
        assert!(Command::decode(&[code::PROCESS_KILL, 1]).is_err());
        assert_eq!(
            Command::decode(&[0x06, b'd', b'b']),
            Ok(Command::Other(Some(0x06))),
            "COM_DROP_DB"
        );
        assert_eq!(Command::decode(&[]), Ok(Command::Other(None)));
    }
}
