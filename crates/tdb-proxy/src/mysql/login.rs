//! A client's password exchange with the proxy, sans IO: which plugin to answer with, when to
//! switch, when `caching_sha2_password` needs full authentication, and the verdict.
//!
//! - A credential with a MySQL verifier: `mysql_native_password` is checked against
//!   `SHA1(SHA1(key))`; `caching_sha2_password`'s fast path against `SHA256(SHA256(key))`, and
//!   when that fails, over TLS only, full authentication (the key itself) against the same
//!   digest. A client proposing any other plugin is switched to `mysql_native_password`.
//! - A credential from before MySQL verifiers: only its SCRAM verifier can check the key, so
//!   the key itself is needed: over TLS the client is switched to `caching_sha2_password` and
//!   asked for full authentication; in plain text it cannot log in.
//! - A user that does not exist runs the first case against fake digests (see
//!   [`Verifiers::fake`]), so its exchange has the shape and cost of a wrong password.
//!
//! Full authentication is never asked for in plain text: some clients (MariaDB Connector/C)
//! would send the key unencrypted.

use super::auth::{self, AuthSwitch, Verifiers};
use crate::pg::scram;

/// What the proxy holds to check a user's key.
#[derive(Debug)]
pub enum Stored {
    /// MySQL's digests (or fake ones for an unknown user).
    Mysql(Verifiers),
    /// Only a SCRAM-SHA-256 verifier.
    Scram(scram::Verifier),
}

/// What the proxy does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Sends this payload (the next sequence id) and waits for the client's answer.
    Ask(Vec<u8>),
    /// The key is right: sends `preface` (if any), then OK.
    Accept { preface: Option<Vec<u8>> },
    /// Access denied.
    Reject(Why),
}

/// Why a login failed, for the log only: the client is told the same for all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    WrongKey,
    /// An old credential in plain text.
    NeedsTls,
    /// An answer out of place, or too many rounds.
    Protocol,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Awaiting {
    /// The answer to a switch to this plugin.
    Switched(&'static str),
    /// The key itself.
    Password,
    Done,
}

/// One client's exchange.
pub struct Exchange {
    stored: Stored,
    nonce: [u8; 20],
    tls: bool,
    awaiting: Awaiting,
    /// Whether any answer was not empty ("using password: YES").
    used_password: bool,
    /// The client can be switched to another plugin (`CLIENT_PLUGIN_AUTH`).
    switchable: bool,
}

impl Exchange {
    pub fn new(stored: Stored, nonce: [u8; 20], tls: bool) -> Self {
        Self {
            stored,
            nonce,
            tls,
            awaiting: Awaiting::Done,
            used_password: false,
            switchable: true,
        }
    }

    /// For a client without `CLIENT_PLUGIN_AUTH`, which cannot read an `AuthSwitchRequest`:
    /// its first answer is all there is.
    pub fn without_switch(mut self) -> Self {
        self.switchable = false;
        self
    }

    pub fn used_password(&self) -> bool {
        self.used_password
    }

    /// The handshake response's plugin (`None`: `mysql_native_password`) and answer.
    pub fn first(&mut self, plugin: Option<&str>, answer: &[u8]) -> Next {
        self.used_password |= !answer.is_empty();
        match plugin.unwrap_or(auth::NATIVE) {
            // A client whose plugin is not the one the greeting named gets no nonce, and asks
            // for one with an empty answer (MariaDB Connector/C does): it is switched to its
            // own plugin, which carries the nonce.
            plugin @ (auth::NATIVE | auth::CACHING_SHA2) if answer.is_empty() => {
                match self.stored {
                    Stored::Mysql(_) if plugin == auth::NATIVE => self.switch(auth::NATIVE),
                    _ => self.switch(auth::CACHING_SHA2),
                }
            }
            auth::NATIVE => self.answered(auth::NATIVE, answer),
            auth::CACHING_SHA2 => self.answered(auth::CACHING_SHA2, answer),
            // A client that starts with its key in the clear: read it as full authentication.
            auth::CLEAR => self.password(answer),
            _ => match self.stored {
                Stored::Mysql(_) => self.switch(auth::NATIVE),
                Stored::Scram(_) => self.switch(auth::CACHING_SHA2),
            },
        }
    }

    /// The client's next packet.
    pub fn more(&mut self, payload: &[u8]) -> Next {
        self.used_password |= !payload.is_empty();
        match std::mem::replace(&mut self.awaiting, Awaiting::Done) {
            Awaiting::Switched(plugin) => self.answered(plugin, payload),
            Awaiting::Password => self.password(payload),
            Awaiting::Done => Next::Reject(Why::Protocol),
        }
    }

    /// An answer made with `plugin` to the nonce.
    fn answered(&mut self, plugin: &'static str, answer: &[u8]) -> Next {
        let verifiers = match &self.stored {
            Stored::Mysql(v) => v,
            Stored::Scram(_) if plugin == auth::CACHING_SHA2 => return self.full_auth(),
            Stored::Scram(_) => return self.switch(auth::CACHING_SHA2),
        };
        match plugin {
            auth::NATIVE if verifiers.check_native(&self.nonce, answer) => {
                Next::Accept { preface: None }
            }
            auth::NATIVE => Next::Reject(Why::WrongKey),
            _ if verifiers.check_sha2(&self.nonce, answer) => {
                let mut preface = Vec::new();
                auth::more_data(&mut preface, &[auth::FAST_AUTH_SUCCESS]);
                Next::Accept {
                    preface: Some(preface),
                }
            }
            _ if self.tls => self.full_auth(),
            _ => Next::Reject(Why::WrongKey),
        }
    }

    fn switch(&mut self, plugin: &'static str) -> Next {
        if !self.switchable {
            return Next::Reject(Why::WrongKey);
        }
        // Without MySQL digests only the key itself can be checked: not in plain text.
        if matches!(self.stored, Stored::Scram(_)) && !self.tls {
            return Next::Reject(Why::NeedsTls);
        }
        self.awaiting = Awaiting::Switched(plugin);
        let mut out = Vec::new();
        AuthSwitch::new(plugin, &self.nonce).encode(&mut out);
        Next::Ask(out)
    }

    /// `caching_sha2_password`'s "perform full authentication", over TLS only.
    fn full_auth(&mut self) -> Next {
        if !self.tls {
            return Next::Reject(Why::NeedsTls);
        }
        self.awaiting = Awaiting::Password;
        let mut out = Vec::new();
        auth::more_data(&mut out, &[auth::PERFORM_FULL_AUTH]);
        Next::Ask(out)
    }

    /// The key itself, sent over TLS.
    fn password(&mut self, payload: &[u8]) -> Next {
        if !self.tls {
            return Next::Reject(Why::NeedsTls);
        }
        let Some(password) = auth::cleartext(payload) else {
            return Next::Reject(Why::WrongKey);
        };
        let right = match &self.stored {
            Stored::Mysql(v) => v.check_password(password),
            Stored::Scram(v) => std::str::from_utf8(password).is_ok_and(|p| v.accepts_password(p)),
        };
        match right {
            true => Next::Accept { preface: None },
            false => Next::Reject(Why::WrongKey),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha1::{Digest as _, Sha1};
    use sha2::Sha256;

    const NONCE: [u8; 20] = *b"abcdefghijklmnopqrst";

    fn pencil() -> Stored {
        let native: [u8; 20] = Sha1::digest(Sha1::digest(b"pencil")).into();
        let sha2: [u8; 32] = Sha256::digest(Sha256::digest(b"pencil")).into();
        Stored::Mysql(Verifiers::new(native, sha2))
    }

    /// A SCRAM verifier of `pencil` (the one the pg proxy's fuzz target uses).
    fn old_pencil() -> Stored {
        Stored::Scram(
            scram::Verifier::parse(
                "SCRAM-SHA-256$4096:c2FsdHNhbHRzYWx0c2FsdA==$Y7KMtnzzL+zDqi0RtBNdAPJekq+PCg4eCcAMKDtLILQ=:c1MMj1kLUJb96FIM7IjzQUXiW2pIi8LDbQl55vL1oRo=",
            )
            .expect("a verifier"),
        )
    }

    fn more_data(status: u8) -> Vec<u8> {
        vec![0x01, status]
    }

    #[test]
    fn native_and_fast_sha2_answers_log_in_at_once() {
        let mut x = Exchange::new(pencil(), NONCE, false);
        let answer = auth::native_scramble(b"pencil", &NONCE);
        assert_eq!(x.first(None, &answer), Next::Accept { preface: None });
        let mut x = Exchange::new(pencil(), NONCE, false);
        let answer = auth::sha2_scramble(b"pencil", &NONCE);
        assert_eq!(
            x.first(Some(auth::CACHING_SHA2), &answer),
            Next::Accept {
                preface: Some(more_data(auth::FAST_AUTH_SUCCESS))
            }
        );
    }

    #[test]
    fn a_failed_fast_path_asks_for_the_key_over_tls_only() {
        let wrong = auth::sha2_scramble(b"pen", &NONCE);
        let mut plain = Exchange::new(pencil(), NONCE, false);
        assert_eq!(
            plain.first(Some(auth::CACHING_SHA2), &wrong),
            Next::Reject(Why::WrongKey)
        );
        let mut tls = Exchange::new(pencil(), NONCE, true);
        assert_eq!(
            tls.first(Some(auth::CACHING_SHA2), &wrong),
            Next::Ask(more_data(auth::PERFORM_FULL_AUTH))
        );
        assert_eq!(tls.more(b"pencil\0"), Next::Accept { preface: None });
        assert_eq!(tls.more(b"pencil\0"), Next::Reject(Why::Protocol), "once");
    }

    #[test]
    fn an_empty_first_answer_asks_for_the_nonce() {
        // MariaDB Connector/C with another default plugin than the greeting's.
        let mut x = Exchange::new(pencil(), NONCE, true);
        let Next::Ask(switch) = x.first(Some(auth::CACHING_SHA2), b"") else {
            panic!("no switch");
        };
        let switch = AuthSwitch::decode(&switch).expect("a switch");
        assert_eq!(switch.plugin, auth::CACHING_SHA2);
        assert!(!x.used_password());
        let answer = auth::sha2_scramble(b"pencil", &NONCE);
        assert!(matches!(x.more(&answer), Next::Accept { .. }));
        assert!(x.used_password());
        // An empty password stays empty: refused.
        let mut x = Exchange::new(pencil(), NONCE, false);
        assert!(matches!(x.first(None, b""), Next::Ask(_)));
        assert_eq!(x.more(b""), Next::Reject(Why::WrongKey));
    }

    #[test]
    fn a_client_without_plugins_is_never_switched() {
        let mut x = Exchange::new(pencil(), NONCE, true).without_switch();
        assert_eq!(x.first(None, b""), Next::Reject(Why::WrongKey));
        let mut x = Exchange::new(pencil(), NONCE, true).without_switch();
        let answer = auth::native_scramble(b"pencil", &NONCE);
        assert_eq!(x.first(None, &answer), Next::Accept { preface: None });
    }

    #[test]
    fn other_plugins_are_switched_to_native() {
        let mut x = Exchange::new(pencil(), NONCE, false);
        let Next::Ask(switch) = x.first(Some("client_ed25519"), b"whatever") else {
            panic!("no switch");
        };
        let switch = AuthSwitch::decode(&switch).expect("a switch");
        assert_eq!(
            (switch.plugin.as_str(), switch.nonce()),
            (auth::NATIVE, &NONCE[..])
        );
        let answer = auth::native_scramble(b"pencil", &NONCE);
        assert_eq!(x.more(&answer), Next::Accept { preface: None });
    }

    #[test]
    fn old_credentials_need_tls_and_the_key_itself() {
        let answer = auth::native_scramble(b"pencil", &NONCE);
        let mut plain = Exchange::new(old_pencil(), NONCE, false);
        assert_eq!(plain.first(None, &answer), Next::Reject(Why::NeedsTls));
        let mut tls = Exchange::new(old_pencil(), NONCE, true);
        let Next::Ask(switch) = tls.first(None, &answer) else {
            panic!("no switch");
        };
        assert_eq!(
            AuthSwitch::decode(&switch).expect("switch").plugin,
            auth::CACHING_SHA2
        );
        let sha2 = auth::sha2_scramble(b"pencil", &NONCE);
        assert_eq!(
            tls.more(&sha2),
            Next::Ask(more_data(auth::PERFORM_FULL_AUTH))
        );
        assert_eq!(tls.more(b"pencil\0"), Next::Accept { preface: None });
        let mut wrong = Exchange::new(old_pencil(), NONCE, true);
        let sha2 = auth::sha2_scramble(b"pen", &NONCE);
        assert!(matches!(
            wrong.first(Some(auth::CACHING_SHA2), &sha2),
            Next::Ask(_)
        ));
        assert_eq!(wrong.more(b"pen\0"), Next::Reject(Why::WrongKey));
    }

    #[test]
    fn an_unknown_user_goes_as_far_as_a_wrong_key() {
        let fake = || Stored::Mysql(Verifiers::fake(&[3; 32], "nobody"));
        let native = auth::native_scramble(b"pencil", &NONCE);
        let mut x = Exchange::new(fake(), NONCE, false);
        assert_eq!(x.first(None, &native), Next::Reject(Why::WrongKey));
        let sha2 = auth::sha2_scramble(b"pencil", &NONCE);
        let mut x = Exchange::new(fake(), NONCE, true);
        assert_eq!(
            x.first(Some(auth::CACHING_SHA2), &sha2),
            Next::Ask(more_data(auth::PERFORM_FULL_AUTH))
        );
        assert_eq!(x.more(b"pencil\0"), Next::Reject(Why::WrongKey));
        let mut x = Exchange::new(fake(), NONCE, true);
        assert_eq!(
            x.first(Some(auth::CLEAR), b"pencil\0"),
            Next::Reject(Why::WrongKey)
        );
    }
}
