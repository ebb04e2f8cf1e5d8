//! The untyped first packet of a PostgreSQL connection: `Int32 length` (counting itself) then
//! `Int32 code`, where the code is a protocol version (StartupMessage) or one of the special
//! request codes (SSLRequest, GSSENCRequest, CancelRequest). Lengths outside 8..=10,000 bytes,
//! unknown codes and malformed parameter lists are refused before anything else is read.

use tokio::io::{AsyncRead, AsyncReadExt};

/// The one-byte answers to `SSLRequest` and `GSSENCRequest`: go ahead, or carry on in plain
/// text.
pub const ACCEPT_ENCRYPTION: &[u8] = b"S";
pub const DECLINE_ENCRYPTION: &[u8] = b"N";
/// The largest startup packet accepted (PostgreSQL's own limit is the same order).
pub const MAX_LEN: usize = 10_000;
const MIN_LEN: usize = 8;
const SSL_REQUEST: u32 = 80_877_103;
const GSSENC_REQUEST: u32 = 80_877_104;
pub const CANCEL_REQUEST: u32 = 80_877_102;
/// Protocol 3.0; newer minor versions are accepted (the server negotiates them down).
const PROTOCOL_3: u16 = 3;
/// The longest cancel key PostgreSQL sends (protocol 3.2 allows up to 256 bytes).
const MAX_CANCEL_KEY: usize = 256;

/// A decoded first packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartupRequest {
    Ssl,
    GssEnc,
    Cancel {
        pid: u32,
        key: Vec<u8>,
    },
    Startup {
        minor: u16,
        /// Parameters in the order sent (`user`, `database`, `application_name`, …).
        params: Vec<(String, String)>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StartupError {
    #[error("startup packet length {0} is outside {MIN_LEN}..={MAX_LEN}")]
    BadLength(i64),
    #[error("unsupported protocol version {major}.{minor}")]
    BadProtocol { major: u16, minor: u16 },
    #[error("malformed startup packet: {0}")]
    Malformed(&'static str),
    #[error("connection closed during startup")]
    Closed,
}

impl StartupRequest {
    /// Decodes one packet from the front of `buf`: `Ok(None)` when more bytes are needed,
    /// otherwise the request and how many bytes it took.
    pub fn decode(buf: &[u8]) -> Result<Option<(Self, usize)>, StartupError> {
        let Some(len_bytes) = buf.get(..4) else {
            return Ok(None);
        };
        let len = i32::from_be_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]]);
        let len = check_len(len)?;
        let Some(packet) = buf.get(..len) else {
            return Ok(None);
        };
        Ok(Some((Self::decode_body(&packet[4..])?, len)))
    }

    /// Decodes the bytes after the length word.
    fn decode_body(body: &[u8]) -> Result<Self, StartupError> {
        let code = u32::from_be_bytes([body[0], body[1], body[2], body[3]]);
        let rest = &body[4..];
        match code {
            SSL_REQUEST | GSSENC_REQUEST if !rest.is_empty() => {
                Err(StartupError::Malformed("request carries extra bytes"))
            }
            SSL_REQUEST => Ok(Self::Ssl),
            GSSENC_REQUEST => Ok(Self::GssEnc),
            CANCEL_REQUEST => {
                if rest.len() < 8 || rest.len() > 4 + MAX_CANCEL_KEY {
                    return Err(StartupError::Malformed("cancel request of the wrong size"));
                }
                let pid = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]);
                Ok(Self::Cancel {
                    pid,
                    key: rest[4..].to_vec(),
                })
            }
            _ => {
                let (major, minor) = ((code >> 16) as u16, code as u16);
                if major != PROTOCOL_3 {
                    return Err(StartupError::BadProtocol { major, minor });
                }
                Ok(Self::Startup {
                    minor,
                    params: decode_params(rest)?,
                })
            }
        }
    }

    /// Encodes the packet, length word included.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0; 4]);
        match self {
            Self::Ssl => out.extend_from_slice(&SSL_REQUEST.to_be_bytes()),
            Self::GssEnc => out.extend_from_slice(&GSSENC_REQUEST.to_be_bytes()),
            Self::Cancel { pid, key } => {
                out.extend_from_slice(&CANCEL_REQUEST.to_be_bytes());
                out.extend_from_slice(&pid.to_be_bytes());
                out.extend_from_slice(key);
            }
            Self::Startup { minor, params } => {
                let version = (u32::from(PROTOCOL_3) << 16) | u32::from(*minor);
                out.extend_from_slice(&version.to_be_bytes());
                for (k, v) in params {
                    out.extend_from_slice(k.as_bytes());
                    out.push(0);
                    out.extend_from_slice(v.as_bytes());
                    out.push(0);
                }
                out.push(0);
            }
        }
        let len = (out.len() - start) as u32;
        out[start..start + 4].copy_from_slice(&len.to_be_bytes());
    }

    /// A startup parameter by name.
    pub fn param(&self, name: &str) -> Option<&str> {
        match self {
            Self::Startup { params, .. } => params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str()),
            _ => None,
        }
    }
}

fn check_len(len: i32) -> Result<usize, StartupError> {
    match usize::try_from(len) {
        Ok(n) if (MIN_LEN..=MAX_LEN).contains(&n) => Ok(n),
        _ => Err(StartupError::BadLength(i64::from(len))),
    }
}

/// `name\0value\0` pairs ending with one more `\0`; names unique and non-empty, UTF-8 only.
fn decode_params(mut rest: &[u8]) -> Result<Vec<(String, String)>, StartupError> {
    let mut params: Vec<(String, String)> = Vec::new();
    loop {
        match rest {
            [0] => return Ok(params),
            [] => return Err(StartupError::Malformed("parameter list is not terminated")),
            _ => {}
        }
        let (name, after) = take_cstr(rest)?;
        let (value, after) = take_cstr(after)?;
        if name.is_empty() {
            return Err(StartupError::Malformed("empty parameter name"));
        }
        if params.iter().any(|(k, _)| *k == name) {
            return Err(StartupError::Malformed("parameter given twice"));
        }
        params.push((name, value));
        rest = after;
    }
}

fn take_cstr(bytes: &[u8]) -> Result<(String, &[u8]), StartupError> {
    let end = bytes
        .iter()
        .position(|b| *b == 0)
        .ok_or(StartupError::Malformed("unterminated string"))?;
    let text = std::str::from_utf8(&bytes[..end])
        .map_err(|_| StartupError::Malformed("parameter is not UTF-8"))?;
    Ok((text.to_string(), &bytes[end + 1..]))
}

/// Reads exactly one startup packet: the length word first, so a bad length is refused before
/// any more of the packet is read or buffered.
pub async fn read<R: AsyncRead + Unpin>(reader: &mut R) -> Result<StartupRequest, StartupError> {
    let mut len_bytes = [0u8; 4];
    reader
        .read_exact(&mut len_bytes)
        .await
        .map_err(|_| StartupError::Closed)?;
    let len = check_len(i32::from_be_bytes(len_bytes))?;
    let mut body = vec![0u8; len - 4];
    reader
        .read_exact(&mut body)
        .await
        .map_err(|_| StartupError::Closed)?;
    StartupRequest::decode_body(&body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn packet(len: i32, rest: &[u8]) -> Vec<u8> {
        let mut out = len.to_be_bytes().to_vec();
        out.extend_from_slice(rest);
        out
    }

    #[test]
    fn decodes_what_psql_sends() {
        let startup = StartupRequest::Startup {
            minor: 0,
            params: vec![
                ("user".into(), "t_abc".into()),
                ("database".into(), "app__acme".into()),
                ("application_name".into(), "psql".into()),
            ],
        };
        let mut bytes = Vec::new();
        StartupRequest::Ssl.encode(&mut bytes);
        assert_eq!(bytes, [0, 0, 0, 8, 4, 210, 22, 47]);
        startup.encode(&mut bytes);
        let (first, used) = StartupRequest::decode(&bytes)
            .expect("ok")
            .expect("complete");
        assert_eq!((first, used), (StartupRequest::Ssl, 8));
        let (second, _) = StartupRequest::decode(&bytes[8..])
            .expect("ok")
            .expect("complete");
        assert_eq!(second.param("database"), Some("app__acme"));
        assert_eq!(second, startup);
        assert_eq!(
            StartupRequest::decode(&bytes[8..20]).expect("ok"),
            None,
            "partial"
        );
    }

    #[test]
    fn refuses_bad_lengths_versions_and_shapes() {
        let version3 = 196_608i32.to_be_bytes();
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (packet(7, &version3), "length < 8"),
            (packet(0, &[]), "zero length"),
            (packet(-1, &version3), "negative length"),
            (packet(i32::MIN, &version3), "2^31"),
            (packet(10_001, &version3), "> 10,000"),
            (packet(12, &0x0002_0000u32.to_be_bytes()), "protocol 2.0"),
            (
                packet(12, &[0x00, 0x04, 0x00, 0x00, 0, 0, 0, 0]),
                "protocol 4.0",
            ),
            (packet(9, &[4, 210, 22, 47, 0]), "SSLRequest with a payload"),
            (packet(8, &version3), "no parameter terminator"),
            (
                packet(11, &[0, 3, 0, 0, b'a', 0, b'1']),
                "unterminated value",
            ),
            (packet(10, &[0, 3, 0, 0, b'a', 0]), "name without value"),
            (packet(11, &[0, 3, 0, 0, 0, 0, 0]), "empty name"),
            (
                packet(16, &[0, 3, 0, 0, b'a', 0, b'1', 0, b'a', 0, b'2', 0]),
                "parameter twice",
            ),
            (
                packet(14, &[0, 3, 0, 0, 0xff, 0, b'1', 0, 0, 0]),
                "not UTF-8",
            ),
            (
                packet(12, &[4, 210, 22, 46, 0, 0, 0, 1]),
                "cancel without a key",
            ),
        ];
        for (bytes, what) in cases {
            let padded = [bytes.clone(), vec![0; 16]].concat();
            assert!(StartupRequest::decode(&padded).is_err(), "{what}: accepted");
        }
    }

    #[tokio::test]
    async fn read_stops_at_the_length_word() {
        // A 2^31 length must be refused without waiting for (or allocating) 2 GiB.
        let (mut client, mut server) = tokio::io::duplex(64);
        tokio::io::AsyncWriteExt::write_all(&mut client, &i32::MIN.to_be_bytes())
            .await
            .expect("write");
        assert!(matches!(
            read(&mut server).await,
            Err(StartupError::BadLength(_))
        ));
        drop(client);
        assert_eq!(read(&mut server).await, Err(StartupError::Closed));
    }

    fn request() -> impl Strategy<Value = StartupRequest> {
        let param = ("[a-z_]{1,12}", "[^\\x00]{0,24}");
        prop_oneof![
            Just(StartupRequest::Ssl),
            Just(StartupRequest::GssEnc),
            (any::<u32>(), prop::collection::vec(any::<u8>(), 4..=32))
                .prop_map(|(pid, key)| StartupRequest::Cancel { pid, key }),
            (0u16..3, prop::collection::btree_map(param.0, param.1, 0..6)).prop_map(
                |(minor, m)| {
                    StartupRequest::Startup {
                        minor,
                        params: m.into_iter().collect(),
                    }
                }
            ),
        ]
    }

    proptest! {
        #[test]
        fn encode_then_decode_round_trips(req in request()) {
            let mut bytes = Vec::new();
            req.encode(&mut bytes);
            let decoded = StartupRequest::decode(&bytes).expect("valid").expect("complete");
            prop_assert_eq!(decoded, (req, bytes.len()));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            let _ = StartupRequest::decode(&bytes);
        }

        #[test]
        fn arbitrary_bodies_behind_a_valid_length_never_panic(
            body in prop::collection::vec(any::<u8>(), 4..128)
        ) {
            let bytes = packet(body.len() as i32 + 4, &body);
            let _ = StartupRequest::decode(&bytes);
        }
    }
}
