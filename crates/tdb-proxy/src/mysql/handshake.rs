//! The connection phase's first messages: the server's greeting (`Initial Handshake` v10), the
//! client's `SSLRequest` and its `HandshakeResponse41`. The proxy is the server to its clients
//! and a client of MariaDB, so each has both a decoder and an encoder.

use super::capability::{Caps, ExtCaps};
use super::wire::{self, Malformed, Reader};

/// The protocol version every server since 3.21 speaks.
pub const PROTOCOL_VERSION: u8 = 10;
/// Bytes of a scramble (the nonce): 8 in the first part of the greeting, 12 in the second.
pub const SCRAMBLE_LEN: usize = 20;
/// The length of an `SSLRequest`, and of a handshake response's fixed part.
pub const FIXED_LEN: usize = 32;
/// `utf8mb4_general_ci`, the collation the proxy says it speaks.
pub const UTF8MB4_GENERAL_CI: u8 = 45;
/// MySQL 8's default collation, `utf8mb4_0900_ai_ci`, which MariaDB 10.11 does not know.
pub const UTF8MB4_0900_AI_CI: u8 = 255;

/// Character sets in which a backslash or a quote byte can be the second byte of a character
/// (big5, cp932, gbk, sjis, gb18030): the server would end a string where a reader of the
/// bytes as ASCII does not, so statements could not be checked. Refused.
pub const UNSAFE_CHARSETS: [&str; 5] = ["big5", "cp932", "gbk", "sjis", "gb18030"];

/// Whether a handshake's collation id belongs to one of [`UNSAFE_CHARSETS`] (MariaDB's ids, and
/// MySQL 8's gb18030).
pub fn unsafe_collation(id: u8) -> bool {
    matches!(id, 1 | 84 | 95 | 96 | 28 | 87 | 13 | 88 | 248..=250)
}

/// The server's greeting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handshake {
    pub server_version: String,
    pub connection_id: u32,
    pub scramble: [u8; SCRAMBLE_LEN],
    pub caps: Caps,
    /// MariaDB's extended capabilities; sent and read only when `caps` is
    /// [`Caps::extensible`].
    pub ext: ExtCaps,
    pub collation: u8,
    pub status: u16,
    pub auth_plugin: String,
}

impl Handshake {
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(PROTOCOL_VERSION);
        wire::put_nul(out, self.server_version.as_bytes());
        wire::put_u32(out, self.connection_id);
        out.extend_from_slice(&self.scramble[..8]);
        out.push(0);
        wire::put_u16(out, self.caps.0 as u16);
        out.push(self.collation);
        wire::put_u16(out, self.status);
        wire::put_u16(out, (self.caps.0 >> 16) as u16);
        out.push(SCRAMBLE_LEN as u8 + 1);
        out.extend_from_slice(&[0; 6]);
        let ext = if self.caps.extensible() {
            self.ext
        } else {
            ExtCaps::default()
        };
        wire::put_u32(out, ext.0);
        wire::put_nul(out, &self.scramble[8..]);
        wire::put_nul(out, self.auth_plugin.as_bytes());
    }

    /// Reads a server's greeting; the proxy needs protocol 4.1, secure connections and a
    /// 20-byte scramble (every MariaDB and MySQL in use).
    pub fn decode(payload: &[u8]) -> Result<Self, Malformed> {
        let mut r = Reader::new(payload);
        if r.u8("protocol version")? != PROTOCOL_VERSION {
            return Err(Malformed("not protocol version 10"));
        }
        let server_version = wire::text(r.nul_bytes("server version")?);
        let connection_id = r.u32("connection id")?;
        let first = r.bytes(8, "scramble")?;
        r.u8("filler")?;
        let low = r.u16("capabilities")?;
        let collation = r.u8("collation")?;
        let status = r.u16("status")?;
        let high = r.u16("capabilities")?;
        let caps = Caps(u32::from(low) | u32::from(high) << 16);
        let data_len = usize::from(r.u8("scramble length")?);
        r.bytes(6, "reserved")?;
        let ext = r.u32("extended capabilities")?;
        let ext = ExtCaps(if caps.extensible() { ext } else { 0 });
        if !caps.has(Caps::PROTOCOL_41.with(Caps::SECURE_CONNECTION)) {
            return Err(Malformed("server without protocol 4.1"));
        }
        let second = r.bytes(data_len.saturating_sub(8).max(13), "scramble")?;
        let mut scramble = [0u8; SCRAMBLE_LEN];
        scramble[..8].copy_from_slice(first);
        let second = second.get(..12).ok_or(Malformed("scramble"))?;
        scramble[8..].copy_from_slice(second);
        let auth_plugin = if caps.has(Caps::PLUGIN_AUTH) {
            wire::text(r.nul_or_end())
        } else {
            String::new()
        };
        Ok(Self {
            server_version,
            connection_id,
            scramble,
            caps,
            ext,
            collation,
            status,
            auth_plugin,
        })
    }
}

/// A client's `SSLRequest`: the fixed part of a handshake response, with `CLIENT_SSL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SslRequest {
    pub caps: Caps,
    pub max_packet: u32,
    pub collation: u8,
}

impl SslRequest {
    pub fn encode(&self, out: &mut Vec<u8>) {
        wire::put_u32(out, self.caps.with(Caps::SSL).0);
        wire::put_u32(out, self.max_packet);
        out.push(self.collation);
        out.extend_from_slice(&[0; 23]);
    }
}

/// The client's first packet: an `SSLRequest` (32 bytes with `CLIENT_SSL`) or its handshake
/// response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientHello {
    Ssl(SslRequest),
    Response(HandshakeResponse),
}

impl ClientHello {
    pub fn decode(payload: &[u8]) -> Result<Self, Malformed> {
        let mut r = Reader::new(payload);
        let caps = Caps(r.u32("capabilities")?);
        if !caps.has(Caps::PROTOCOL_41) {
            return Err(Malformed(
                "clients older than protocol 4.1 are not supported",
            ));
        }
        if payload.len() == FIXED_LEN && caps.has(Caps::SSL) {
            let max_packet = r.u32("max packet")?;
            let collation = r.u8("collation")?;
            return Ok(Self::Ssl(SslRequest {
                caps,
                max_packet,
                collation,
            }));
        }
        HandshakeResponse::decode(payload).map(Self::Response)
    }
}

/// `HandshakeResponse41`.
#[derive(Clone, PartialEq, Eq)]
pub struct HandshakeResponse {
    pub caps: Caps,
    /// MariaDB's extended capabilities; sent and read only when `caps` is
    /// [`Caps::extensible`].
    pub ext: ExtCaps,
    pub max_packet: u32,
    pub collation: u8,
    pub user: String,
    pub auth_response: Vec<u8>,
    /// `CLIENT_CONNECT_WITH_DB`'s database; `None` without it or when empty.
    pub database: Option<String>,
    /// `None` when the client sent none (then it answered as `mysql_native_password`).
    pub auth_plugin: Option<String>,
    pub attrs: Vec<(String, String)>,
}

// The auth response stays out of logs.
impl std::fmt::Debug for HandshakeResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandshakeResponse")
            .field("caps", &self.caps)
            .field("ext", &self.ext)
            .field("user", &self.user)
            .field("database", &self.database)
            .field("auth_plugin", &self.auth_plugin)
            .finish_non_exhaustive()
    }
}

impl HandshakeResponse {
    pub fn decode(payload: &[u8]) -> Result<Self, Malformed> {
        let mut r = Reader::new(payload);
        let caps = Caps(r.u32("capabilities")?);
        if !caps.has(Caps::PROTOCOL_41) {
            return Err(Malformed(
                "clients older than protocol 4.1 are not supported",
            ));
        }
        let max_packet = r.u32("max packet")?;
        let collation = r.u8("collation")?;
        r.bytes(19, "filler")?;
        let ext = r.u32("extended capabilities")?;
        let ext = ExtCaps(if caps.extensible() { ext } else { 0 });
        let user = wire::text(r.nul_bytes("user name")?);
        let auth_response = if caps.has(Caps::PLUGIN_AUTH_LENENC_DATA) {
            r.lenenc_bytes("auth response")?
        } else if caps.has(Caps::SECURE_CONNECTION) {
            let len = r.u8("auth response")?;
            r.bytes(usize::from(len), "auth response")?
        } else {
            r.nul_bytes("auth response")?
        }
        .to_vec();
        let database = match caps.has(Caps::CONNECT_WITH_DB) && !r.is_empty() {
            true => Some(wire::text(r.nul_or_end())).filter(|d| !d.is_empty()),
            false => None,
        };
        let auth_plugin = match caps.has(Caps::PLUGIN_AUTH) && !r.is_empty() {
            true => Some(wire::text(r.nul_or_end())).filter(|p| !p.is_empty()),
            false => None,
        };
        let attrs = match caps.has(Caps::CONNECT_ATTRS) && !r.is_empty() {
            true => decode_attrs(r.lenenc_bytes("connection attributes")?)?,
            false => Vec::new(),
        };
        Ok(Self {
            caps,
            ext,
            max_packet,
            collation,
            user,
            auth_response,
            database,
            auth_plugin,
            attrs,
        })
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        let caps = self.caps;
        wire::put_u32(out, caps.0);
        wire::put_u32(out, self.max_packet);
        out.push(self.collation);
        out.extend_from_slice(&[0; 19]);
        let ext = if caps.extensible() {
            self.ext
        } else {
            ExtCaps::default()
        };
        wire::put_u32(out, ext.0);
        wire::put_nul(out, self.user.as_bytes());
        if caps.has(Caps::PLUGIN_AUTH_LENENC_DATA) {
            wire::put_lenenc_bytes(out, &self.auth_response);
        } else {
            let len = self.auth_response.len().min(255);
            out.push(len as u8);
            out.extend_from_slice(&self.auth_response[..len]);
        }
        if caps.has(Caps::CONNECT_WITH_DB) {
            wire::put_nul(out, self.database.as_deref().unwrap_or("").as_bytes());
        }
        if caps.has(Caps::PLUGIN_AUTH) {
            wire::put_nul(out, self.auth_plugin.as_deref().unwrap_or("").as_bytes());
        }
        if caps.has(Caps::CONNECT_ATTRS) {
            let mut attrs = Vec::new();
            for (k, v) in &self.attrs {
                wire::put_lenenc_bytes(&mut attrs, k.as_bytes());
                wire::put_lenenc_bytes(&mut attrs, v.as_bytes());
            }
            wire::put_lenenc_bytes(out, &attrs);
        }
    }
}

/// Connection attributes: pairs of length-encoded strings.
fn decode_attrs(bytes: &[u8]) -> Result<Vec<(String, String)>, Malformed> {
    let mut r = Reader::new(bytes);
    let mut attrs = Vec::new();
    while !r.is_empty() {
        let key = wire::text(r.lenenc_bytes("attribute name")?);
        let value = wire::text(r.lenenc_bytes("attribute value")?);
        attrs.push((key, value));
    }
    Ok(attrs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn greeting() -> Handshake {
        Handshake {
            server_version: "5.5.5-10.11.0-MariaDB-tdb".into(),
            connection_id: 42,
            scramble: *b"abcdefghijklmnopqrst",
            caps: Caps::OFFERED.with(Caps::SSL),
            ext: ExtCaps::OFFERED,
            collation: UTF8MB4_GENERAL_CI,
            status: 2,
            auth_plugin: "mysql_native_password".into(),
        }
    }

    #[test]
    fn the_greeting_round_trips() {
        let mut out = Vec::new();
        greeting().encode(&mut out);
        assert_eq!(Handshake::decode(&out).expect("decodes"), greeting());
        // Cut anywhere before the plugin name (which may lack its NUL): refused.
        let plugin_at = out.len() - greeting().auth_plugin.len() - 1;
        for cut in 0..plugin_at {
            assert!(Handshake::decode(&out[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn a_real_mariadb_greeting_decodes() {
        // The greeting of a MariaDB 10.11.19 server (Debian 12, started with --no-defaults),
        // read from its socket.
        let captured: &[u8] = b"\x0a5.5.5-10.11.19-MariaDB-0+deb12u1\0\x03\0\0\0m{G-IhQ;\0\
            \xfe\xf7\x08\x02\0\xff\x81\x15\0\0\0\0\0\0\x1d\0\0\0sS%^*VT!EwHC\0\
            mysql_native_password\0";
        let h = Handshake::decode(captured).expect("decodes");
        assert_eq!(h.connection_id, 3);
        assert_eq!(&h.scramble, b"m{G-IhQ;sS%^*VT!EwHC");
        assert_eq!(h.auth_plugin, "mysql_native_password");
        assert_eq!((h.collation, h.status), (8, 2));
        assert!(h.caps.has(Caps::PLUGIN_AUTH));
        // CLIENT_MYSQL clear; progress, bulk operations, extended and cached metadata.
        assert!(h.caps.extensible());
        assert_eq!(h.ext, ExtCaps(0x1d));
        assert!(h.ext.has(ExtCaps::CACHE_METADATA));
    }

    #[test]
    fn a_real_mariadb_clients_extended_capabilities_are_read() {
        // The fixed part of sysbench 1.0.20's handshake response (libmariadb 3.3, MariaDB
        // 10.11.19's client library) to MariaDB 10.11.19, read off the wire, with its user.
        let mut captured = b"\x8c\xa2\xbf\x00\x00\x00\x10\x00\x2d".to_vec();
        captured.extend_from_slice(&[0; 19]);
        captured.extend_from_slice(b"\x1d\x00\x00\x00root\0\0");
        let r = HandshakeResponse::decode(&captured).expect("decodes");
        assert_eq!((r.user.as_str(), r.collation), ("root", 45));
        assert!(r.caps.extensible());
        assert_eq!(r.ext, ExtCaps(0x1d));
        // A MySQL client sets CLIENT_MYSQL: whatever its filler holds, it asked for nothing.
        captured[0] |= 1;
        let r = HandshakeResponse::decode(&captured).expect("decodes");
        assert_eq!(r.ext, ExtCaps::default());
        // And a greeting or response with CLIENT_MYSQL set sends none.
        let mut out = Vec::new();
        HandshakeResponse {
            caps: r.caps,
            ext: ExtCaps(0x1d),
            ..r.clone()
        }
        .encode(&mut out);
        assert_eq!(&out[9..32], &[0; 23]);
    }

    #[test]
    fn an_ssl_request_is_told_from_a_response() {
        let mut out = Vec::new();
        SslRequest {
            caps: Caps::OFFERED,
            max_packet: 1 << 24,
            collation: 33,
        }
        .encode(&mut out);
        assert_eq!(out.len(), FIXED_LEN);
        assert!(matches!(ClientHello::decode(&out), Ok(ClientHello::Ssl(_))));
        // Without CLIENT_PROTOCOL_41: refused.
        assert!(ClientHello::decode(&[0; 32]).is_err());
    }

    fn response() -> impl Strategy<Value = HandshakeResponse> {
        let name = "[a-z_0-9]{0,20}";
        (
            any::<u32>(),
            any::<u32>(),
            any::<u8>(),
            name,
            proptest::collection::vec(any::<u8>(), 0..300),
            proptest::option::of("[a-z_0-9]{1,20}"),
            proptest::option::of("[a-z_0-9]{1,20}"),
            proptest::collection::vec((name, name), 0..4),
        )
            .prop_map(|(flags, ext, collation, user, auth, db, plugin, attrs)| {
                let caps = Caps(flags)
                    .with(Caps::PROTOCOL_41)
                    .with(Caps::PLUGIN_AUTH_LENENC_DATA)
                    .with(Caps::CONNECT_WITH_DB)
                    .with(Caps::PLUGIN_AUTH)
                    .with(Caps::CONNECT_ATTRS);
                let ext = ExtCaps(if caps.extensible() { ext } else { 0 });
                HandshakeResponse {
                    caps,
                    ext,
                    max_packet: 1 << 24,
                    collation,
                    user,
                    auth_response: auth,
                    database: db,
                    auth_plugin: plugin,
                    attrs,
                }
            })
    }

    proptest! {
        #[test]
        fn responses_round_trip(resp in response()) {
            let mut out = Vec::new();
            resp.encode(&mut out);
            prop_assert_eq!(HandshakeResponse::decode(&out).expect("decodes"), resp);
        }

        #[test]
        fn decoders_never_panic(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = ClientHello::decode(&data);
            let _ = Handshake::decode(&data);
        }
    }
}
