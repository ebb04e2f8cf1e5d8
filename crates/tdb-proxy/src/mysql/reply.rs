//! The generic replies: OK, ERR and EOF packets (protocol 4.1, without session tracking, which
//! the proxy never offers), and the status flags they carry.

use super::wire::{self, Malformed, Reader};

/// Status flags of OK and EOF packets.
pub mod status {
    pub const IN_TRANS: u16 = 0x0001;
    pub const AUTOCOMMIT: u16 = 0x0002;
    pub const MORE_RESULTS: u16 = 0x0008;
    pub const CURSOR_EXISTS: u16 = 0x0040;
}

pub const OK_HEADER: u8 = 0x00;
pub const EOF_HEADER: u8 = 0xfe;
pub const ERR_HEADER: u8 = 0xff;
/// An EOF packet is shorter than this; a row starting with 0xfe is longer.
pub const EOF_MAX_LEN: usize = 9;

/// An OK packet.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ok {
    pub affected_rows: u64,
    pub last_insert_id: u64,
    pub status: u16,
    pub warnings: u16,
    /// Human-readable information (`Records: 3  Duplicates: 0  Warnings: 0`).
    pub info: Vec<u8>,
}

impl Ok {
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(OK_HEADER);
        wire::put_lenenc(out, self.affected_rows);
        wire::put_lenenc(out, self.last_insert_id);
        wire::put_u16(out, self.status);
        wire::put_u16(out, self.warnings);
        out.extend_from_slice(&self.info);
    }

    pub fn decode(payload: &[u8]) -> Result<Self, Malformed> {
        let mut r = Reader::new(payload);
        if r.u8("OK header")? != OK_HEADER {
            return Err(Malformed("not an OK packet"));
        }
        Ok(Self {
            affected_rows: r.lenenc("affected rows")?,
            last_insert_id: r.lenenc("last insert id")?,
            status: r.u16("status")?,
            warnings: r.u16("warnings")?,
            info: r.take_rest().to_vec(),
        })
    }
}

/// An ERR packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Err {
    pub code: u16,
    /// Five characters.
    pub sqlstate: [u8; 5],
    pub message: String,
}

impl Err {
    pub fn new(code: super::errno::Code, message: impl Into<String>) -> Self {
        let sqlstate = <[u8; 5]>::try_from(code.sqlstate.as_bytes()).unwrap_or(general());
        Self {
            code: code.code,
            sqlstate,
            message: message.into(),
        }
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(ERR_HEADER);
        wire::put_u16(out, self.code);
        out.push(b'#');
        out.extend_from_slice(&self.sqlstate);
        out.extend_from_slice(self.message.as_bytes());
    }

    /// Reads an ERR packet, with or without the SQLSTATE marker (servers leave it off before
    /// they know the client speaks protocol 4.1).
    pub fn decode(payload: &[u8]) -> Result<Self, Malformed> {
        let mut r = Reader::new(payload);
        if r.u8("ERR header")? != ERR_HEADER {
            return Err(Malformed("not an ERR packet"));
        }
        let code = r.u16("error code")?;
        let mut sqlstate = general();
        if r.rest().first() == Some(&b'#') {
            r.u8("marker")?;
            sqlstate.copy_from_slice(r.bytes(5, "sqlstate")?);
        }
        Ok(Self {
            code,
            sqlstate,
            message: wire::text(r.take_rest()),
        })
    }

    pub fn sqlstate(&self) -> &str {
        std::str::from_utf8(&self.sqlstate).unwrap_or(super::errno::GENERAL_SQLSTATE)
    }
}

fn general() -> [u8; 5] {
    <[u8; 5]>::try_from(super::errno::GENERAL_SQLSTATE.as_bytes()).unwrap_or_default()
}

/// An EOF packet (the classic one: `CLIENT_DEPRECATE_EOF` is never negotiated).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Eof {
    pub warnings: u16,
    pub status: u16,
}

impl Eof {
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(EOF_HEADER);
        wire::put_u16(out, self.warnings);
        wire::put_u16(out, self.status);
    }

    /// Reads an EOF packet; `None` for anything else (a row that starts with 0xfe is longer).
    pub fn decode(payload: &[u8]) -> Option<Self> {
        if payload.first() != Some(&EOF_HEADER) || payload.len() >= EOF_MAX_LEN {
            return None;
        }
        let mut r = Reader::new(&payload[1..]);
        // A 4.0-style EOF is the header alone.
        let warnings = r.u16("warnings").unwrap_or(0);
        let status = r.u16("status").unwrap_or(0);
        Some(Self { warnings, status })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_real_servers_error_decodes() {
        // MariaDB 10.11.19's answer to `select * from nope` in the database `mysql`, read off
        // the wire.
        let payload = b"\xffz\x04#42S02Table 'mysql.nope' doesn't exist";
        let e = Err::decode(payload).expect("decodes");
        assert_eq!((e.code, e.sqlstate()), (1146, "42S02"));
        assert_eq!(e.message, "Table 'mysql.nope' doesn't exist");
        // Before protocol 4.1 is agreed, without the marker.
        let early = Err::decode(b"\xff\x15\x04Bad handshake").expect("decodes");
        assert_eq!((early.code, early.sqlstate()), (1045, "HY000"));
    }

    #[test]
    fn eof_is_told_from_a_row() {
        assert_eq!(
            Eof::decode(b"\xfe\x00\x00\x02\x00"),
            Some(Eof {
                warnings: 0,
                status: 2
            })
        );
        assert_eq!(Eof::decode(b"\xfe\x00\x00\x02\x00\x00\x00\x00\x00"), None);
        assert_eq!(Eof::decode(b"\x00"), None);
    }

    proptest! {
        #[test]
        fn replies_round_trip(rows in any::<u64>(), id in any::<u64>(), status in any::<u16>(), warnings in any::<u16>(), info in proptest::collection::vec(any::<u8>(), 0..50), code in any::<u16>(), message in ".{0,40}") {
            let ok = Ok { affected_rows: rows, last_insert_id: id, status, warnings, info };
            let mut out = Vec::new();
            ok.encode(&mut out);
            prop_assert_eq!(Ok::decode(&out).expect("ok"), ok);
            let err = Err { code, sqlstate: *b"42000", message };
            let mut out = Vec::new();
            err.encode(&mut out);
            prop_assert_eq!(Err::decode(&out).expect("err"), err);
            let eof = Eof { warnings, status };
            let mut out = Vec::new();
            eof.encode(&mut out);
            prop_assert_eq!(Eof::decode(&out), Some(eof));
        }

        #[test]
        fn decoders_never_panic(data in proptest::collection::vec(any::<u8>(), 0..40)) {
            let _ = Ok::decode(&data);
            let _ = Err::decode(&data);
            let _ = Eof::decode(&data);
        }
    }
}
