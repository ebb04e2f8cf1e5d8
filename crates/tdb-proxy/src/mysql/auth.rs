//! Password authentication as MySQL and MariaDB speak it, sans IO: the messages of the
//! exchange (`AuthSwitchRequest`, `caching_sha2_password`'s "more data") and the checks.
//!
//! - `mysql_native_password`: the client sends `SHA1(p) XOR SHA1(nonce ‖ SHA1(SHA1(p)))`;
//!   knowing `SHA1(SHA1(p))` the server unmasks `SHA1(p)` and hashes it once more.
//! - `caching_sha2_password`, fast path: the client sends
//!   `SHA256(p) XOR SHA256(SHA256(SHA256(p)) ‖ nonce)`; knowing `SHA256(SHA256(p))` the server
//!   unmasks `SHA256(p)` the same way. Full authentication sends the password itself, which the
//!   proxy accepts only over TLS (no RSA exchange).
//!
//! tdb stores both digests of each credential's key ([`Verifiers`]), never the key. A user that
//! does not exist gets [`Verifiers::fake`], which runs every check at the same cost and matches
//! nothing.

use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest as _, Sha256};
use subtle::{Choice, ConstantTimeEq as _};

use super::wire::{self, Malformed, Reader};

pub const NATIVE: &str = "mysql_native_password";
pub const CACHING_SHA2: &str = "caching_sha2_password";
pub const CLEAR: &str = "mysql_clear_password";

/// `caching_sha2_password`'s answers after the client's scramble, as "more data" (0x01).
pub const FAST_AUTH_SUCCESS: u8 = 0x03;
pub const PERFORM_FULL_AUTH: u8 = 0x04;
/// The longest password the proxy reads in a full authentication.
pub const MAX_PASSWORD_LEN: usize = 1024;

/// `AuthSwitchRequest` (0xfe): answer with `plugin`, over `data` (the nonce and a NUL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthSwitch {
    pub plugin: String,
    pub data: Vec<u8>,
}

impl AuthSwitch {
    pub fn new(plugin: &str, nonce: &[u8]) -> Self {
        let mut data = nonce.to_vec();
        data.push(0);
        Self {
            plugin: plugin.to_string(),
            data,
        }
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(0xfe);
        wire::put_nul(out, self.plugin.as_bytes());
        out.extend_from_slice(&self.data);
    }

    pub fn decode(payload: &[u8]) -> Result<Self, Malformed> {
        let mut r = Reader::new(payload);
        if r.u8("auth switch")? != 0xfe {
            return Err(Malformed("not an auth switch request"));
        }
        let plugin = wire::text(r.nul_bytes("plugin name")?);
        Ok(Self {
            plugin,
            data: r.take_rest().to_vec(),
        })
    }

    /// The nonce in the data, without its NUL.
    pub fn nonce(&self) -> &[u8] {
        self.data.strip_suffix(&[0]).unwrap_or(&self.data)
    }
}

/// "More data" (0x01) of an exchange: for `caching_sha2_password`, one status byte.
pub fn more_data(out: &mut Vec<u8>, data: &[u8]) {
    out.push(0x01);
    out.extend_from_slice(data);
}

/// The password a client sent in the clear (full authentication, `mysql_clear_password`):
/// NUL-terminated on the wire.
pub fn cleartext(payload: &[u8]) -> Option<&[u8]> {
    let password = payload.strip_suffix(&[0]).unwrap_or(payload);
    (!password.is_empty() && password.len() <= MAX_PASSWORD_LEN).then_some(password)
}

/// What the client sends for `mysql_native_password` (the proxy's answer to MariaDB).
pub fn native_scramble(password: &[u8], nonce: &[u8]) -> [u8; 20] {
    let once: [u8; 20] = Sha1::digest(password).into();
    let twice: [u8; 20] = Sha1::digest(once).into();
    let mask: [u8; 20] = Sha1::new()
        .chain_update(nonce)
        .chain_update(twice)
        .finalize()
        .into();
    xor(once, mask)
}

/// What the client sends for `caching_sha2_password`'s fast path.
pub fn sha2_scramble(password: &[u8], nonce: &[u8]) -> [u8; 32] {
    let once: [u8; 32] = Sha256::digest(password).into();
    let twice: [u8; 32] = Sha256::digest(once).into();
    let mask: [u8; 32] = Sha256::new()
        .chain_update(twice)
        .chain_update(nonce)
        .finalize()
        .into();
    xor(once, mask)
}

fn xor<const N: usize>(mut a: [u8; N], b: [u8; N]) -> [u8; N] {
    for (x, y) in a.iter_mut().zip(b) {
        *x ^= y;
    }
    a
}

/// The stored digests of a credential's key: `SHA1(SHA1(key))` and `SHA256(SHA256(key))`.
#[derive(Clone)]
pub struct Verifiers {
    native: [u8; 20],
    sha2: [u8; 32],
    /// False for [`Verifiers::fake`]: nothing matches it.
    genuine: bool,
}

impl std::fmt::Debug for Verifiers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Verifiers(..)")
    }
}

impl Verifiers {
    pub fn new(native: [u8; 20], sha2: [u8; 32]) -> Self {
        Self {
            native,
            sha2,
            genuine: true,
        }
    }

    /// Digests for a user that does not exist, the same for every probe of one name.
    pub fn fake(secret: &[u8; 32], user: &str) -> Self {
        let derive = |label: &[u8]| -> [u8; 32] {
            let mut mac =
                <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes any key");
            mac.update(label);
            mac.update(user.as_bytes());
            mac.finalize().into_bytes().into()
        };
        let mut native = [0u8; 20];
        native.copy_from_slice(&derive(b"tdb mysql fake native\0")[..20]);
        Self {
            native,
            sha2: derive(b"tdb mysql fake sha2\0"),
            genuine: false,
        }
    }

    pub fn is_genuine(&self) -> bool {
        self.genuine
    }

    /// Checks a `mysql_native_password` answer to `nonce`.
    pub fn check_native(&self, nonce: &[u8], answer: &[u8]) -> bool {
        let answer: [u8; 20] = answer.try_into().unwrap_or([0; 20]);
        let mask: [u8; 20] = Sha1::new()
            .chain_update(nonce)
            .chain_update(self.native)
            .finalize()
            .into();
        let candidate: [u8; 20] = Sha1::digest(xor(answer, mask)).into();
        self.matches(candidate.ct_eq(&self.native))
    }

    /// Checks a `caching_sha2_password` fast-path answer to `nonce`.
    pub fn check_sha2(&self, nonce: &[u8], answer: &[u8]) -> bool {
        let answer: [u8; 32] = answer.try_into().unwrap_or([0; 32]);
        let mask: [u8; 32] = Sha256::new()
            .chain_update(self.sha2)
            .chain_update(nonce)
            .finalize()
            .into();
        let candidate: [u8; 32] = Sha256::digest(xor(answer, mask)).into();
        self.matches(candidate.ct_eq(&self.sha2))
    }

    /// Checks a password sent in the clear.
    pub fn check_password(&self, password: &[u8]) -> bool {
        let candidate: [u8; 32] = Sha256::digest(Sha256::digest(password)).into();
        self.matches(candidate.ct_eq(&self.sha2))
    }

    fn matches(&self, equal: Choice) -> bool {
        bool::from(equal & Choice::from(u8::from(self.genuine)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NONCE: &[u8; 20] = b"abcdefghijklmnopqrst";

    fn pencil() -> Verifiers {
        let native: [u8; 20] = Sha1::digest(Sha1::digest(b"pencil")).into();
        let sha2: [u8; 32] = Sha256::digest(Sha256::digest(b"pencil")).into();
        Verifiers::new(native, sha2)
    }

    #[test]
    fn a_real_clients_answers_are_accepted() {
        // What the `mariadb` client (Connector/C 3.3.20) sent for the password `pencil` to a
        // greeting with the nonce `abcdefghijklmnopqrst`, read off the wire. Python agrees:
        // sha1(p) XOR sha1(nonce + sha1(sha1(p))), and for caching_sha2,
        // sha256(p) XOR sha256(sha256(sha256(p)) + nonce).
        let native = b"Ry\xae\xba\xa4V+3c\xb3\xe2\xc42\x9e,\x19\xe8\xfb'\x97";
        let sha2 = b"\xa4v\x827\xb0@\xee\xf7)]\x9c4\x84Z\xfbMJ\xdb\xf9W\x1cp^w\xf6\x16\xca\xa2\x9f\xa4\xed\xc8";
        assert_eq!(&native_scramble(b"pencil", NONCE), native);
        assert_eq!(&sha2_scramble(b"pencil", NONCE), sha2);
        let v = pencil();
        assert!(v.check_native(NONCE, native));
        assert!(v.check_sha2(NONCE, sha2));
        assert!(v.check_password(b"pencil"));
        // Another nonce, another password, a short answer: refused.
        assert!(!v.check_native(b"abcdefghijklmnopqrsX", native));
        assert!(!v.check_sha2(NONCE, &sha2[..31]));
        assert!(!v.check_password(b"pencil2"));
        assert!(!v.check_native(NONCE, b""));
    }

    #[test]
    fn a_fake_matches_nothing_and_is_stable_per_name() {
        let secret = [9u8; 32];
        let fake = Verifiers::fake(&secret, "nobody");
        assert!(!fake.is_genuine());
        // Even an answer made from its own digests (as if the password were known).
        let native = xor(
            [0u8; 20],
            Sha1::new()
                .chain_update(NONCE)
                .chain_update(fake.native)
                .finalize()
                .into(),
        );
        assert!(!fake.check_native(NONCE, &native));
        let again = Verifiers::fake(&secret, "nobody");
        assert_eq!(again.sha2, fake.sha2);
        assert_ne!(Verifiers::fake(&secret, "other").sha2, fake.sha2);
    }

    #[test]
    fn cleartext_passwords_lose_their_terminator() {
        assert_eq!(cleartext(b"pencil\0"), Some(&b"pencil"[..]));
        assert_eq!(cleartext(b"pencil"), Some(&b"pencil"[..]));
        assert_eq!(cleartext(b"\0"), None);
        assert_eq!(cleartext(&[b'x'; MAX_PASSWORD_LEN + 1]), None);
    }

    #[test]
    fn auth_switch_round_trips() {
        let switch = AuthSwitch::new(CACHING_SHA2, NONCE);
        let mut out = Vec::new();
        switch.encode(&mut out);
        let back = AuthSwitch::decode(&out).expect("decodes");
        assert_eq!(back, switch);
        assert_eq!(back.nonce(), NONCE);
        assert!(AuthSwitch::decode(b"\x00ok").is_err());
    }

    proptest! {
        #[test]
        fn every_password_checks_against_its_own_digests(p in proptest::collection::vec(any::<u8>(), 1..64), nonce in any::<[u8; 20]>()) {
            let native: [u8; 20] = Sha1::digest(Sha1::digest(&p)).into();
            let sha2: [u8; 32] = Sha256::digest(Sha256::digest(&p)).into();
            let v = Verifiers::new(native, sha2);
            prop_assert!(v.check_native(&nonce, &native_scramble(&p, &nonce)));
            prop_assert!(v.check_sha2(&nonce, &sha2_scramble(&p, &nonce)));
            prop_assert!(v.check_password(&p));
        }
    }
}
