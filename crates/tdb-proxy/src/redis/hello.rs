//! What a client may send before it has logged in, read into types: `AUTH user password`,
//! `HELLO [protover [AUTH user password] [SETNAME name]]`, `PING`, `QUIT`. Everything else is
//! answered `-NOAUTH`, as redis-server answers an unauthenticated client.

use bytes::Bytes;
use tdb_resp::frame::{Frame, Request};

/// A request of the login phase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prelogin {
    Auth {
        user: Bytes,
        password: Bytes,
    },
    Hello(Hello),
    Ping(Option<Bytes>),
    Quit,
    /// Answered with this error; the connection stays open.
    Error(Bytes),
}

/// `HELLO` as sent.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Hello {
    /// 2 or 3; `None` when HELLO came without a version.
    pub proto: Option<u8>,
    pub auth: Option<(Bytes, Bytes)>,
    pub setname: Option<Bytes>,
}

pub const NOAUTH: &[u8] = b"NOAUTH Authentication required.";
pub const WRONGPASS: &[u8] = b"WRONGPASS invalid username-password pair or user is disabled.";

impl Prelogin {
    pub fn read(request: &Request) -> Self {
        let args = request.args();
        let name = args[0].to_ascii_lowercase();
        match (&name[..], &args[1..]) {
            (b"auth", [user, password]) => Self::Auth {
                user: user.clone(),
                password: password.clone(),
            },
            (b"auth", [_]) => Self::Error(Bytes::from_static(
                b"ERR AUTH needs a user name through tdb: AUTH <tenant> <api key>",
            )),
            (b"auth", _) => Self::Error(Bytes::from_static(b"ERR syntax error")),
            (b"hello", rest) => match Hello::parse(rest) {
                Ok(hello) => Self::Hello(hello),
                Err(e) => Self::Error(e),
            },
            (b"ping", []) => Self::Ping(None),
            (b"ping", [message]) => Self::Ping(Some(message.clone())),
            (b"quit", _) => Self::Quit,
            _ => Self::Error(Bytes::from_static(NOAUTH)),
        }
    }
}

impl Hello {
    /// Reads HELLO's arguments as redis-server does; the error is the line to answer.
    pub fn parse(args: &[Bytes]) -> Result<Self, Bytes> {
        let Some((version, options)) = args.split_first() else {
            return Ok(Self::default());
        };
        let proto = match &version[..] {
            b"2" => 2,
            b"3" => 3,
            _ => return Err(Bytes::from_static(b"NOPROTO unsupported protocol version")),
        };
        let mut hello = Self {
            proto: Some(proto),
            ..Self::default()
        };
        let mut at = 0;
        while at < options.len() {
            let option = options[at].to_ascii_lowercase();
            let left = options.len() - at - 1;
            match &option[..] {
                b"auth" if left >= 2 => {
                    hello.auth = Some((options[at + 1].clone(), options[at + 2].clone()));
                    at += 3;
                }
                b"setname" if left >= 1 => {
                    hello.setname = Some(options[at + 1].clone());
                    at += 2;
                }
                _ => {
                    let shown = String::from_utf8_lossy(&options[at]).into_owned();
                    return Err(format!("ERR Syntax error in HELLO option '{shown}'").into());
                }
            }
        }
        Ok(hello)
    }
}

/// HELLO's answer before the client has logged in (no server is chosen yet, so it describes
/// the proxy): a map in RESP3, a flat array in RESP2.
pub fn prelogin_hello(resp3: bool) -> Frame {
    let text = |t: &'static str| Frame::Bulk(Bytes::from_static(t.as_bytes()));
    let fields = vec![
        (text("server"), text("redis")),
        (text("version"), text(ASSUMED_VERSION)),
        (text("proto"), Frame::Integer(if resp3 { 3 } else { 2 })),
        (text("id"), Frame::Integer(0)),
        (text("mode"), text("standalone")),
        (text("role"), text("master")),
        (text("modules"), Frame::Array(vec![])),
    ];
    if resp3 {
        Frame::Map(fields)
    } else {
        Frame::Array(fields.into_iter().flat_map(|(k, v)| [k, v]).collect())
    }
}

/// The Redis version tdb's shared servers run (Debian's 7.0), said before a server is chosen.
const ASSUMED_VERSION: &str = "7.0.0";

#[cfg(test)]
mod tests {
    use super::*;

    fn read(line: &str) -> Prelogin {
        let args = line
            .split(' ')
            .map(|a| Bytes::copy_from_slice(a.as_bytes()));
        Prelogin::read(&Request::new(args.collect()).expect("a name"))
    }

    #[test]
    fn the_login_phase_reads_auth_hello_ping_and_quit() {
        assert_eq!(
            read("AUTH acme key"),
            Prelogin::Auth {
                user: "acme".into(),
                password: "key".into()
            }
        );
        assert!(matches!(read("auth key"), Prelogin::Error(e) if e.starts_with(b"ERR AUTH")));
        assert_eq!(read("PING"), Prelogin::Ping(None));
        assert_eq!(read("quit"), Prelogin::Quit);
        assert_eq!(read("GET k"), Prelogin::Error(Bytes::from_static(NOAUTH)));
        assert_eq!(
            read("HELLO 3 SETNAME app AUTH acme key"),
            Prelogin::Hello(Hello {
                proto: Some(3),
                auth: Some(("acme".into(), "key".into())),
                setname: Some("app".into()),
            })
        );
        assert_eq!(read("HELLO"), Prelogin::Hello(Hello::default()));
        assert!(matches!(read("HELLO 4"), Prelogin::Error(e) if e.starts_with(b"NOPROTO")));
        assert!(
            matches!(read("HELLO 3 AUTH acme"), Prelogin::Error(e) if e.starts_with(b"ERR Syntax"))
        );
    }

    #[test]
    fn the_prelogin_hello_is_a_map_or_a_flat_array() {
        assert!(matches!(prelogin_hello(true), Frame::Map(f) if f.len() == 7));
        assert!(matches!(prelogin_hello(false), Frame::Array(f) if f.len() == 14));
    }
}
