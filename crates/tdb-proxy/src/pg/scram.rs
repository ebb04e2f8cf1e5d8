//! The server side of SCRAM-SHA-256 (RFC 5802, RFC 7677) as PostgreSQL speaks it in SASL
//! authentication: proves that a client knows the password behind a stored verifier without the
//! password ever crossing the wire or being stored. Over TLS, `SCRAM-SHA-256-PLUS` is offered
//! too, with `tls-server-end-point` channel binding (RFC 5929: the hash of the proxy's
//! certificate), so a client that requires binding knows no one relays its exchange through
//! another TLS session. Unknown users run the same exchange against a fake verifier so that a
//! probe cannot tell them from a wrong password.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use rand::RngCore as _;
use sha2::{Digest as _, Sha256};
use subtle::{Choice, ConstantTimeEq as _};

/// The SASL mechanism without channel binding.
pub const MECHANISM: &str = "SCRAM-SHA-256";
/// The SASL mechanism with channel binding, offered over TLS.
pub const MECHANISM_PLUS: &str = "SCRAM-SHA-256-PLUS";
/// The one channel-binding type supported (as PostgreSQL).
const BINDING_TYPE: &str = "tls-server-end-point";
/// The longest client message accepted; real ones are under 200 bytes.
pub const MAX_MESSAGE_LEN: usize = 4096;
/// Random bytes in the server's share of the nonce (PostgreSQL's `SCRAM_RAW_NONCE_LEN`).
const SERVER_NONCE_LEN: usize = 18;
/// What a fake verifier claims, PostgreSQL's defaults, so it looks like a freshly set password.
const FAKE_ITERATIONS: u32 = 4096;
const FAKE_SALT_LEN: usize = 16;
const VERIFIER_PREFIX: &str = "SCRAM-SHA-256$";

type HmacSha256 = Hmac<Sha256>;

/// A stored SCRAM-SHA-256 verifier: what the server keeps instead of the password.
#[derive(Clone)]
pub struct Verifier {
    iterations: u32,
    salt: Vec<u8>,
    stored_key: [u8; 32],
    server_key: [u8; 32],
    /// False for [`Verifier::fake`]: such a verifier never accepts a proof, whatever the caller
    /// passes as `real`.
    matchable: bool,
}

// The keys stay out of logs: the ServerKey lets its holder pose as the server.
impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("iterations", &self.iterations)
            .field("salt", &STANDARD.encode(&self.salt))
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// Parses PostgreSQL's stored format,
    /// `SCRAM-SHA-256$<iterations>:<base64 salt>$<base64 StoredKey>:<base64 ServerKey>`;
    /// None when malformed.
    pub fn parse(text: &str) -> Option<Verifier> {
        let rest = text.strip_prefix(VERIFIER_PREFIX)?;
        let (params, keys) = rest.split_once('$')?;
        let (iterations, salt) = params.split_once(':')?;
        let (stored_key, server_key) = keys.split_once(':')?;
        if iterations.is_empty() || !iterations.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let iterations = iterations.parse::<u32>().ok().filter(|&i| i > 0)?;
        let salt = STANDARD.decode(salt).ok().filter(|s| !s.is_empty())?;
        Some(Verifier {
            iterations,
            salt,
            stored_key: decode_key(stored_key)?,
            server_key: decode_key(server_key)?,
            matchable: true,
        })
    }

    /// Whether `password` is the one this verifier was made from, for protocols whose clients
    /// send the password itself (over TLS): SCRAM's SaltedPassword, ClientKey and StoredKey
    /// (RFC 5802), compared in constant time. Costs the verifier's iterations, as an exchange
    /// does; a fake verifier accepts nothing.
    pub fn accepts_password(&self, password: &str) -> bool {
        let prf = |data: &[u8]| -> [u8; 32] {
            let mut mac = <HmacSha256 as Mac>::new_from_slice(password.as_bytes())
                .expect("HMAC takes a key of any length");
            mac.update(data);
            mac.finalize().into_bytes().into()
        };
        let mut first = self.salt.clone();
        first.extend_from_slice(&1u32.to_be_bytes());
        let mut u = prf(&first);
        let mut salted = u;
        for _ in 1..self.iterations {
            u = prf(&u);
            for (s, b) in salted.iter_mut().zip(u) {
                *s ^= b;
            }
        }
        let client_key = hmac(&salted, b"Client Key");
        let stored: [u8; 32] = Sha256::digest(client_key).into();
        let genuine = Choice::from(u8::from(self.matchable));
        bool::from(stored.ct_eq(&self.stored_key) & genuine)
    }

    /// A verifier for a user that does not exist: deterministic per (secret, username) so that
    /// repeated probes of the same name see the same salt and iteration count, indistinguishable
    /// in shape from a real one, and no password can ever match it.
    pub fn fake(secret: &[u8; 32], username: &str) -> Verifier {
        let derive = |label: &[u8]| {
            let mut input = Vec::with_capacity(label.len() + username.len());
            input.extend_from_slice(label);
            input.extend_from_slice(username.as_bytes());
            hmac(secret, &input)
        };
        let salt = derive(b"tdb scram fake salt\0");
        Verifier {
            iterations: FAKE_ITERATIONS,
            salt: salt.iter().take(FAKE_SALT_LEN).copied().collect(),
            stored_key: derive(b"tdb scram fake stored key\0"),
            server_key: derive(b"tdb scram fake server key\0"),
            matchable: false,
        }
    }
}

fn decode_key(text: &str) -> Option<[u8; 32]> {
    STANDARD.decode(text).ok()?.try_into().ok()
}

/// Why an exchange stopped. Neither text says whether the user exists.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    /// The client broke the protocol: bad syntax, oversized or out-of-order message.
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    /// The proof was wrong (or the user unknown), or the nonce or channel binding differed.
    #[error("password authentication failed")]
    Failed,
}

/// One server-side SCRAM-SHA-256 exchange: `client_first`, then `client_final`, once each.
pub struct ScramServer {
    verifier: Verifier,
    real: bool,
    state: State,
    /// The channel-binding data of the TLS session, when `-PLUS` was offered.
    binding: Option<std::sync::Arc<[u8]>>,
}

enum State {
    Initial,
    AwaitingFinal(Pending),
    Done,
}

/// What the server-first message committed to, for checking the client-final one.
struct Pending {
    /// `c=` the client must echo: base64 of the gs2 header it sent.
    channel_binding: String,
    /// Client nonce followed by server nonce.
    nonce: String,
    client_first_bare: String,
    server_first: String,
}

impl ScramServer {
    /// `real = false` for a fake verifier: the exchange runs the same steps but always fails at
    /// the end.
    pub fn new(verifier: Verifier, real: bool) -> Self {
        ScramServer {
            verifier,
            real,
            state: State::Initial,
            binding: None,
        }
    }

    /// Offers `-PLUS` with the TLS session's channel-binding data (`tls-server-end-point`).
    pub fn with_binding(mut self, binding: std::sync::Arc<[u8]>) -> Self {
        self.binding = Some(binding);
        self
    }

    /// The mechanisms to advertise, the one with channel binding first.
    pub fn mechanisms(&self) -> &'static [&'static str] {
        match self.binding {
            Some(_) => &[MECHANISM_PLUS, MECHANISM],
            None => &[MECHANISM],
        }
    }

    /// The client-first message of `SCRAM-SHA-256` (the data of SASLInitialResponse after the
    /// mechanism); returns the server-first message.
    pub fn client_first(&mut self, data: &[u8]) -> Result<Vec<u8>, ScramError> {
        self.client_first_for(MECHANISM, data)
    }

    /// The client-first message for the mechanism the client chose.
    pub fn client_first_for(
        &mut self,
        mechanism: &str,
        data: &[u8],
    ) -> Result<Vec<u8>, ScramError> {
        // Any error ends the exchange: the state stays Done unless this step succeeds.
        if !matches!(
            std::mem::replace(&mut self.state, State::Done),
            State::Initial
        ) {
            return Err(ScramError::Malformed("client-first message out of order"));
        }
        let first = ClientFirst::parse(message_text(data)?)?;
        let expected_binding = self.expected_binding(mechanism, &first)?;
        let mut server_nonce = [0u8; SERVER_NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut server_nonce);
        let nonce = format!("{}{}", first.nonce, STANDARD.encode(server_nonce));
        let server_first = format!(
            "r={nonce},s={},i={}",
            STANDARD.encode(&self.verifier.salt),
            self.verifier.iterations
        );
        self.state = State::AwaitingFinal(Pending {
            channel_binding: expected_binding,
            nonce,
            client_first_bare: first.bare.to_owned(),
            server_first: server_first.clone(),
        });
        Ok(server_first.into_bytes())
    }

    /// What the client-final message's `c=` must be: the gs2 header, followed by the channel
    /// binding data when the client binds, in base64. The client's choice must fit what was
    /// offered: binding only with `-PLUS` and its one type; and a client that says it could bind
    /// (`y`) while `-PLUS` was offered has had the offer taken away on the way (RFC 5802).
    fn expected_binding(
        &self,
        mechanism: &str,
        first: &ClientFirst<'_>,
    ) -> Result<String, ScramError> {
        let mut expected = first.gs2_header.as_bytes().to_vec();
        match (mechanism, first.binding, &self.binding) {
            (MECHANISM_PLUS, Some(BINDING_TYPE), Some(data)) => expected.extend_from_slice(data),
            (MECHANISM_PLUS, Some(_), Some(_)) => {
                return Err(ScramError::Malformed("unsupported channel binding type"));
            }
            (MECHANISM_PLUS, ..) => {
                return Err(ScramError::Malformed(
                    "SCRAM-SHA-256-PLUS needs channel binding over TLS",
                ));
            }
            (MECHANISM, Some(_), _) => {
                return Err(ScramError::Malformed("channel binding is not offered"));
            }
            (MECHANISM, None, Some(_)) if first.gs2_header.starts_with('y') => {
                return Err(ScramError::Malformed("channel binding was offered"));
            }
            (MECHANISM, None, _) => {}
            _ => return Err(ScramError::Malformed("unsupported mechanism")),
        }
        Ok(STANDARD.encode(expected))
    }

    /// The client-final message (SASLResponse data); returns the server-final message (`v=...`)
    /// when the proof is right, `Err(ScramError::Failed)` otherwise (wrong password, fake user,
    /// nonce mismatch, channel-binding mismatch).
    pub fn client_final(&mut self, data: &[u8]) -> Result<Vec<u8>, ScramError> {
        let pending = match std::mem::replace(&mut self.state, State::Done) {
            State::AwaitingFinal(pending) => pending,
            State::Initial => {
                return Err(ScramError::Malformed("client-final before client-first"));
            }
            State::Done => return Err(ScramError::Malformed("exchange already finished")),
        };
        let last = ClientFinal::parse(message_text(data)?)?;
        if last.channel_binding != pending.channel_binding || last.nonce != pending.nonce {
            return Err(ScramError::Failed);
        }
        let auth_message = format!(
            "{},{},{}",
            pending.client_first_bare, pending.server_first, last.without_proof
        );
        let auth_message = auth_message.as_bytes();
        let client_signature = hmac(&self.verifier.stored_key, auth_message);
        let mut client_key = last.proof;
        for (k, s) in client_key.iter_mut().zip(client_signature) {
            *k ^= s;
        }
        let recomputed: [u8; 32] = Sha256::digest(client_key).into();
        // Every path computes the same things, so a fake user costs what a real one does.
        let server_signature = hmac(&self.verifier.server_key, auth_message);
        let genuine = Choice::from(u8::from(self.real && self.verifier.matchable));
        if bool::from(recomputed.ct_eq(&self.verifier.stored_key) & genuine) {
            Ok(format!("v={}", STANDARD.encode(server_signature)).into_bytes())
        } else {
            Err(ScramError::Failed)
        }
    }
}

/// Bounds a client message and reads it as text.
fn message_text(data: &[u8]) -> Result<&str, ScramError> {
    if data.len() > MAX_MESSAGE_LEN {
        return Err(ScramError::Malformed("message too long"));
    }
    std::str::from_utf8(data).map_err(|_| ScramError::Malformed("message is not UTF-8"))
}

/// `gs2-header client-first-bare`, where the gs2 header is `n,,`, `y,,` or `p=<type>,,` and the
/// bare part is `n=<user>,r=<nonce>[,<extensions>]`.
struct ClientFirst<'a> {
    gs2_header: &'a str,
    /// The channel-binding type of a `p=` header.
    binding: Option<&'a str>,
    bare: &'a str,
    nonce: &'a str,
}

impl<'a> ClientFirst<'a> {
    fn parse(text: &'a str) -> Result<Self, ScramError> {
        let (flag, after_flag) = text
            .split_once(',')
            .ok_or(ScramError::Malformed("bad GS2 header"))?;
        let binding = match flag {
            "n" | "y" => None,
            _ => match flag.strip_prefix("p=") {
                Some(kind) if !kind.is_empty() => Some(kind),
                _ => return Err(ScramError::Malformed("bad GS2 header")),
            },
        };
        let (authzid, bare) = after_flag
            .split_once(',')
            .ok_or(ScramError::Malformed("bad GS2 header"))?;
        if authzid.starts_with("a=") {
            return Err(ScramError::Malformed(
                "authorization identities are not supported",
            ));
        }
        if !authzid.is_empty() {
            return Err(ScramError::Malformed("bad GS2 header"));
        }
        let gs2_header = &text[..flag.len() + 2];
        let mut attrs = bare.split(',');
        match attrs.next() {
            Some(user) if user.starts_with("n=") => {}
            Some(m) if m.starts_with("m=") => {
                return Err(ScramError::Malformed(
                    "mandatory extensions are not supported",
                ));
            }
            _ => return Err(ScramError::Malformed("missing user name")),
        }
        // PostgreSQL clients send an empty name: the user comes from the startup packet.
        let nonce = attrs
            .next()
            .and_then(|a| a.strip_prefix("r="))
            .ok_or(ScramError::Malformed("missing nonce"))?;
        if nonce.is_empty() || !nonce.bytes().all(|b| b.is_ascii_graphic() && b != b',') {
            return Err(ScramError::Malformed("bad nonce"));
        }
        check_extensions(attrs)?;
        Ok(ClientFirst {
            gs2_header,
            binding,
            bare,
            nonce,
        })
    }
}

/// `c=<base64 gs2 header>,r=<nonce>[,<extensions>],p=<base64 proof>`.
struct ClientFinal<'a> {
    channel_binding: &'a str,
    nonce: &'a str,
    /// Everything before `,p=`, which goes into the AuthMessage.
    without_proof: &'a str,
    proof: [u8; 32],
}

impl<'a> ClientFinal<'a> {
    fn parse(text: &'a str) -> Result<Self, ScramError> {
        let (without_proof, proof) = text
            .rsplit_once(",p=")
            .ok_or(ScramError::Malformed("missing proof"))?;
        let proof = STANDARD
            .decode(proof)
            .ok()
            .and_then(|p| <[u8; 32]>::try_from(p).ok())
            .ok_or(ScramError::Malformed("bad proof"))?;
        let mut attrs = without_proof.split(',');
        let channel_binding = attrs
            .next()
            .and_then(|a| a.strip_prefix("c="))
            .ok_or(ScramError::Malformed("missing channel binding"))?;
        let nonce = attrs
            .next()
            .and_then(|a| a.strip_prefix("r="))
            .ok_or(ScramError::Malformed("missing nonce"))?;
        check_extensions(attrs)?;
        Ok(ClientFinal {
            channel_binding,
            nonce,
            without_proof,
            proof,
        })
    }
}

/// Optional extensions (`x=...`, one ASCII letter) are allowed after the nonce and ignored, as
/// PostgreSQL does; anything else is a syntax error.
fn check_extensions<'a>(attrs: impl Iterator<Item = &'a str>) -> Result<(), ScramError> {
    for attr in attrs {
        match attr.as_bytes() {
            [name, b'=', ..] if name.is_ascii_alphabetic() => {}
            _ => return Err(ScramError::Malformed("bad attribute")),
        }
    }
    Ok(())
}

/// HMAC-SHA-256 with a 32-byte key. RFC 2104 pads a key shorter than the hash's 64-byte block
/// with zeros, so copying it into a zeroed block gives the same MAC through the infallible
/// constructor (`new_from_slice` returns a Result that could only be unwrapped).
fn hmac(key: &[u8; 32], data: &[u8]) -> [u8; 32] {
    let mut block = hmac::digest::Key::<HmacSha256>::default();
    for (dst, src) in block.iter_mut().zip(key) {
        *dst = *src;
    }
    let mut mac = <HmacSha256 as Mac>::new(&block);
    mac.update(data);
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
    use postgres_protocol::password::scram_sha_256;
    use proptest::prelude::*;

    const SECRET: [u8; 32] = [7; 32];

    /// Runs a whole exchange with postgres-protocol's client, which also checks the server's
    /// final message; returns the server's verdict.
    fn exchange(
        server: &mut ScramServer,
        password: &str,
        binding: ChannelBinding,
    ) -> Result<(), ScramError> {
        let mut client = ScramSha256::new(password.as_bytes(), binding);
        let server_first = server.client_first(client.message())?;
        client
            .update(&server_first)
            .expect("client accepts server-first");
        let server_final = server.client_final(client.message())?;
        client
            .finish(&server_final)
            .expect("client verifies the server signature");
        Ok(())
    }

    fn server_for(password: &str) -> ScramServer {
        let verifier = Verifier::parse(&scram_sha_256(password.as_bytes())).expect("parses");
        ScramServer::new(verifier, true)
    }

    /// A server that has answered `n,,n=,r=abc`, and the nonce it expects back.
    fn after_first() -> (ScramServer, String) {
        let mut server = server_for("pw");
        let first = server.client_first(b"n,,n=,r=abc").expect("client-first");
        let first = String::from_utf8(first).expect("utf-8");
        let nonce = first
            .strip_prefix("r=")
            .and_then(|r| r.split(',').next())
            .expect("nonce")
            .to_owned();
        (server, nonce)
    }

    #[test]
    fn right_password_round_trips() {
        for binding in [ChannelBinding::unsupported(), ChannelBinding::unrequested()] {
            let mut server = server_for("correct horse");
            assert_eq!(exchange(&mut server, "correct horse", binding), Ok(()));
        }
    }

    #[test]
    fn wrong_password_fails() {
        let mut server = server_for("correct horse");
        let result = exchange(&mut server, "battery staple", ChannelBinding::unsupported());
        assert_eq!(result, Err(ScramError::Failed));
    }

    #[test]
    fn fake_user_fails_like_a_wrong_password() {
        let mut fake = ScramServer::new(Verifier::fake(&SECRET, "nobody"), false);
        let fake_result = exchange(&mut fake, "anything", ChannelBinding::unsupported());
        let mut real = server_for("correct horse");
        let wrong_result = exchange(&mut real, "anything", ChannelBinding::unsupported());
        assert_eq!(fake_result, Err(ScramError::Failed));
        assert_eq!(fake_result, wrong_result);
        assert_eq!(
            ScramError::Failed.to_string(),
            "password authentication failed"
        );
    }

    #[test]
    fn a_password_is_checked_against_a_verifier_made_by_another_implementation() {
        let verifier = Verifier::parse(&scram_sha_256(b"s3cret")).expect("parses");
        assert!(verifier.accepts_password("s3cret"));
        assert!(!verifier.accepts_password("s3cret "));
        assert!(!verifier.accepts_password(""));
        assert!(!Verifier::fake(&SECRET, "nobody").accepts_password(""));
    }

    #[test]
    fn fake_verifier_never_matches_even_when_called_real() {
        // Give a fake verifier a real password's keys: it still refuses the right password.
        let real = Verifier::parse(&scram_sha_256(b"pw")).expect("parses");
        let fake = Verifier {
            matchable: false,
            ..real.clone()
        };
        let mut server = ScramServer::new(fake, true);
        let result = exchange(&mut server, "pw", ChannelBinding::unsupported());
        assert_eq!(result, Err(ScramError::Failed));
        let mut server = ScramServer::new(real, false);
        let result = exchange(&mut server, "pw", ChannelBinding::unsupported());
        assert_eq!(result, Err(ScramError::Failed));
    }

    #[test]
    fn fake_verifier_is_deterministic_per_name_and_shaped_like_a_real_one() {
        let a = Verifier::fake(&SECRET, "alice");
        let again = Verifier::fake(&SECRET, "alice");
        let b = Verifier::fake(&SECRET, "bob");
        let other_secret = Verifier::fake(&[8; 32], "alice");
        assert_eq!(a.salt, again.salt);
        assert_eq!(a.stored_key, again.stored_key);
        assert_eq!(a.server_key, again.server_key);
        assert_ne!(a.salt, b.salt);
        assert_ne!(a.stored_key, b.stored_key);
        assert_ne!(a.salt, other_secret.salt);
        let real = Verifier::parse(&scram_sha_256(b"pw")).expect("parses");
        assert_eq!(a.iterations, real.iterations);
        assert_eq!(a.salt.len(), real.salt.len());
    }

    #[test]
    fn server_first_has_the_client_nonce_then_a_fresh_server_nonce() {
        let (_, nonce) = after_first();
        let server_part = nonce.strip_prefix("abc").expect("client nonce first");
        assert_eq!(STANDARD.decode(server_part).map(|n| n.len()), Ok(18));
        let (_, other) = after_first();
        assert_ne!(nonce, other);
    }

    #[test]
    fn verifier_parse_accepts_postgres_format_and_refuses_the_rest() {
        let text = scram_sha_256(b"pw");
        let v = Verifier::parse(&text).expect("parses");
        assert_eq!(v.iterations, 4096);
        assert!(!format!("{v:?}").contains(&STANDARD.encode(v.stored_key)));
        let (head, keys) = text.rsplit_once('$').expect("keys");
        let (stored, _) = keys.split_once(':').expect("pair");
        let bad = [
            String::new(),
            "md5abcdef".to_owned(),
            text.replace("SCRAM-SHA-256$", "SCRAM-SHA-1$"),
            text.replace("$4096:", "$0:"),
            text.replace("$4096:", "$+4096:"),
            text.replace("$4096:", "$:"),
            text.replace("$4096:", "$99999999999:"),
            format!("{head}${stored}"),
            format!("{head}${stored}:AAAA"),
            format!("{head}${stored}:{stored}:{stored}"),
            format!("{head}$!!!:{stored}"),
            text.replace("$4096:", "$4096:$"),
        ];
        for text in bad {
            assert!(Verifier::parse(&text).is_none(), "{text}");
        }
    }

    /// A server offering `-PLUS` with `binding` and a client choosing `mechanism` with its own
    /// idea of the binding; the server's verdict.
    fn exchange_plus(
        mechanism: &str,
        server_binding: &[u8],
        client: ChannelBinding,
    ) -> Result<(), ScramError> {
        let verifier = Verifier::parse(&scram_sha_256(b"pw")).expect("parses");
        let mut server = ScramServer::new(verifier, true).with_binding(server_binding.into());
        assert_eq!(server.mechanisms(), [MECHANISM_PLUS, MECHANISM]);
        let mut client_side = ScramSha256::new(b"pw", client);
        let server_first = server.client_first_for(mechanism, client_side.message())?;
        client_side.update(&server_first).expect("server-first");
        let server_final = server.client_final(client_side.message())?;
        client_side.finish(&server_final).expect("server signature");
        Ok(())
    }

    #[test]
    fn channel_binding_holds_only_with_the_servers_own_certificate_hash() {
        let hash = [9u8; 32];
        let bound = || ChannelBinding::tls_server_end_point(hash.to_vec());
        assert_eq!(exchange_plus(MECHANISM_PLUS, &hash, bound()), Ok(()));
        // A client bound to another TLS session (a relay in between) fails.
        let other = ChannelBinding::tls_server_end_point(vec![8u8; 32]);
        assert_eq!(
            exchange_plus(MECHANISM_PLUS, &hash, other),
            Err(ScramError::Failed)
        );
        // Without binding, SCRAM-SHA-256 still works; but a client that could bind and was not
        // offered to (the offer removed on the way) is refused.
        assert_eq!(
            exchange_plus(MECHANISM, &hash, ChannelBinding::unsupported()),
            Ok(())
        );
        assert_eq!(
            exchange_plus(MECHANISM, &hash, ChannelBinding::unrequested()),
            Err(ScramError::Malformed("channel binding was offered"))
        );
        // -PLUS needs binding data from TLS.
        let verifier = Verifier::parse(&scram_sha_256(b"pw")).expect("parses");
        let mut plain = ScramServer::new(verifier, true);
        assert_eq!(plain.mechanisms(), [MECHANISM]);
        let client = ScramSha256::new(b"pw", bound());
        assert!(
            plain
                .client_first_for(MECHANISM_PLUS, client.message())
                .is_err()
        );
    }

    #[test]
    fn malformed_client_first_is_refused() {
        let mut long = b"n,,n=,r=".to_vec();
        long.resize(MAX_MESSAGE_LEN + 1, b'a');
        let cases: [(&[u8], &str); 15] = [
            (b"", "bad GS2 header"),
            (b"x,,n=,r=abc", "bad GS2 header"),
            (b"n,n=,r=abc", "bad GS2 header"),
            (
                b"p=tls-server-end-point,,n=,r=abc",
                "channel binding is not offered",
            ),
            (
                b"n,a=bob,n=,r=abc",
                "authorization identities are not supported",
            ),
            (
                b"n,,m=ext,n=,r=abc",
                "mandatory extensions are not supported",
            ),
            (b"n,,r=abc", "missing user name"),
            (b"n,,n=", "missing nonce"),
            (b"n,,n=,s=abc", "missing nonce"),
            (b"n,,n=,r=", "bad nonce"),
            (b"n,,n=,r=a b", "bad nonce"),
            (b"n,,n=,r=ab\x7f", "bad nonce"),
            (b"n,,n=,r=abc,oops", "bad attribute"),
            (&long, "message too long"),
            (b"n,,n=\xff,r=abc", "message is not UTF-8"),
        ];
        for (message, why) in cases {
            let mut server = server_for("pw");
            let result = server.client_first(message);
            assert_eq!(result, Err(ScramError::Malformed(why)), "{message:?}");
        }
        // Extensions after the nonce and any user name are accepted and ignored.
        let mut server = server_for("pw");
        assert!(server.client_first(b"y,,n=someone,r=abc,x=1").is_ok());
    }

    #[test]
    fn malformed_client_final_is_refused() {
        let proof = STANDARD.encode([0u8; 32]);
        let long = format!("c=biws,r={{n}},p={proof}{}", "A".repeat(MAX_MESSAGE_LEN));
        // `{n}` stands for the nonce of the server the message is sent to.
        let cases: Vec<(String, ScramError)> = vec![
            (
                "c=biws,r={n}".to_owned(),
                ScramError::Malformed("missing proof"),
            ),
            (
                "c=biws,r={n},p=!!".to_owned(),
                ScramError::Malformed("bad proof"),
            ),
            (
                "c=biws,r={n},p=AAAA".to_owned(),
                ScramError::Malformed("bad proof"),
            ),
            (
                format!("c=biws,r={{n}},p={proof},x=1"),
                ScramError::Malformed("bad proof"),
            ),
            (
                format!("r={{n}},p={proof}"),
                ScramError::Malformed("missing channel binding"),
            ),
            (
                format!("c=biws,p={proof}"),
                ScramError::Malformed("missing nonce"),
            ),
            (
                format!("c=biws,r={{n}},,p={proof}"),
                ScramError::Malformed("bad attribute"),
            ),
            (long, ScramError::Malformed("message too long")),
            (format!("c=biws,r=abc,p={proof}"), ScramError::Failed),
            (format!("c=biws,r={{n}}x,p={proof}"), ScramError::Failed),
            (format!("c=eSws,r={{n}},p={proof}"), ScramError::Failed),
            (
                format!("c=cD10bHMsLA==,r={{n}},p={proof}"),
                ScramError::Failed,
            ),
            // Well formed, right nonce and binding, wrong proof.
            (format!("c=biws,r={{n}},p={proof}"), ScramError::Failed),
        ];
        for (template, expected) in cases {
            let (mut server, nonce) = after_first();
            let message = template.replace("{n}", &nonce);
            let result = server.client_final(message.as_bytes());
            assert_eq!(result, Err(expected), "{message}");
        }
        let (mut server, _) = after_first();
        let result = server.client_final(b"c=biws,r=\xff,p=AAAA");
        assert_eq!(result, Err(ScramError::Malformed("message is not UTF-8")));
    }

    #[test]
    fn steps_out_of_order_are_errors() {
        let mut server = server_for("pw");
        let result = server.client_final(b"c=biws,r=abc,p=AAAA");
        assert_eq!(
            result,
            Err(ScramError::Malformed("client-final before client-first"))
        );
        let (mut server, _) = after_first();
        let result = server.client_first(b"n,,n=,r=abc");
        assert_eq!(
            result,
            Err(ScramError::Malformed("client-first message out of order"))
        );
        // After a finished exchange, successful or not, nothing more is accepted.
        let mut server = server_for("pw");
        assert_eq!(
            exchange(&mut server, "pw", ChannelBinding::unsupported()),
            Ok(())
        );
        let result = server.client_final(b"c=biws,r=abc,p=AAAA");
        assert_eq!(
            result,
            Err(ScramError::Malformed("exchange already finished"))
        );
        let mut server = server_for("pw");
        assert!(server.client_first(b"bogus").is_err());
        let result = server.client_first(b"n,,n=,r=abc");
        assert_eq!(
            result,
            Err(ScramError::Malformed("client-first message out of order"))
        );
    }

    proptest! {
        #[test]
        fn arbitrary_client_first_never_panics(
            data in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            let mut server = server_for_fast();
            let _ = server.client_first(&data);
            let _ = server.client_final(&data);
        }

        #[test]
        fn arbitrary_client_final_never_panics(
            data in proptest::collection::vec(any::<u8>(), 0..200),
            text in "[cprnyx=,A-Za-z0-9+/]{0,120}",
        ) {
            for message in [data.as_slice(), text.as_bytes()] {
                let mut server = server_for_fast();
                server.client_first(b"n,,n=,r=abc").expect("client-first");
                let _ = server.client_final(message);
                let _ = server.client_final(message);
            }
        }
    }

    /// A verifier without running PBKDF2, for the many proptest cases.
    fn server_for_fast() -> ScramServer {
        ScramServer::new(Verifier::fake(&SECRET, "prop"), true)
    }
}
