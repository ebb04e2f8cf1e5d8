//! Secret primitives. Nothing a client can log in with is ever stored in a recoverable form:
//! account passwords become argon2id hashes, API keys SHA-256 digests, proxy passwords
//! SCRAM-SHA-256 verifiers. Secrets the platform must use itself (server admin passwords) are
//! sealed with AES-256-GCM under the master key, bound to their record id as associated data.

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use argon2::password_hash::{PasswordHash, SaltString};
use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use base64::Engine as _;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::aad::Aad;

/// Prefix of every API key; lets secret scanners and humans recognise one.
pub const API_KEY_PREFIX: &str = "tdb_sk_";
/// How many characters of a key are kept for display (`tdb_sk_3f9a0c`).
const API_KEY_DISPLAY_LEN: usize = API_KEY_PREFIX.len() + 6;
const SEALED_VERSION: u8 = 1;
const NONCE_LEN: usize = 12;

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("password hashing failed: {0}")]
    Hash(String),
    #[error("master key must be 32 bytes given as 64 hex characters or base64")]
    BadMasterKey,
    #[error("sealed secret is malformed or was sealed under another key or record")]
    Unseal,
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    bytes
}

/// An argon2id PHC string for an account password.
pub fn hash_password(password: &str) -> Result<String, SecretError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| SecretError::Hash(e.to_string()))
}

/// An argon2id PHC string (default parameters) for a password nobody has: verifying against it
/// costs what a real verification costs, so a login for an unknown e-mail takes as long as one
/// with a wrong password and timing does not reveal which accounts exist.
pub const DECOY_PHC: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$\
                             0W8GMX9DLrwC2TQzxRMOpe8C0S9YSzt4P1ZJZU9nh8w";

/// Constant-time verification of a password against its stored PHC string.
pub fn verify_password(phc: &str, password: &str) -> bool {
    PasswordHash::new(phc)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

/// A freshly minted API key: the plaintext is shown once, only `digest` and `prefix` are stored.
pub struct NewApiKey {
    pub plaintext: String,
    pub prefix: String,
    pub digest: Vec<u8>,
}

/// 256 random bits, hex encoded behind [`API_KEY_PREFIX`].
pub fn new_api_key() -> NewApiKey {
    let plaintext = format!("{API_KEY_PREFIX}{}", hex::encode(random_bytes::<32>()));
    NewApiKey {
        prefix: plaintext[..API_KEY_DISPLAY_LEN].to_string(),
        digest: api_key_digest(&plaintext),
        plaintext,
    }
}

/// The stored form of an API key. Keys carry 256 random bits, so a fast hash is enough: there is
/// nothing to brute-force.
pub fn api_key_digest(plaintext: &str) -> Vec<u8> {
    Sha256::digest(plaintext.as_bytes()).to_vec()
}

/// The token of a web console session, kept by the browser in a cookie: 256 random bits, hex.
/// The catalog stores only its [`api_key_digest`].
pub fn new_session_token() -> String {
    hex::encode(random_bytes::<32>())
}

/// The CSRF token of the console session whose cookie holds `session_token`. The page reads it
/// from the API and sends it back in a header; it cannot be turned back into the session token.
pub fn console_csrf_token(session_token: &str) -> String {
    let mut hash = Sha256::new();
    hash.update(b"tdb console csrf\0");
    hash.update(session_token.as_bytes());
    hex::encode(hash.finalize())
}

/// A random password for a proxy login or a database role: 128 bits, hex.
pub fn new_password(prefix: &str) -> String {
    format!("{prefix}{}", hex::encode(random_bytes::<16>()))
}

/// The SCRAM-SHA-256 verifier PostgreSQL itself would store for `password`.
pub fn scram_verifier(password: &str) -> String {
    postgres_protocol::password::scram_sha_256(password.as_bytes())
}

/// What the MySQL proxy checks `password` against: `<hex SHA1(SHA1(p))>:<hex SHA256(SHA256(p))>`
/// (`mysql_native_password`, and `caching_sha2_password`'s fast path). Both are unsalted, as
/// those protocols require; tdb's passwords carry 128 random bits, so neither can be reversed.
pub fn mysql_verifier(password: &str) -> String {
    use sha1::Digest as _;
    let native = sha1::Sha1::digest(sha1::Sha1::digest(password.as_bytes()));
    let sha2 = Sha256::digest(Sha256::digest(password.as_bytes()));
    format!("{}:{}", hex::encode(native), hex::encode(sha2))
}

/// The two digests of a [`mysql_verifier`], or `None` when `verifier` is not one.
pub fn parse_mysql_verifier(verifier: &str) -> Option<([u8; 20], [u8; 32])> {
    let (native, sha2) = verifier.split_once(':')?;
    let native: [u8; 20] = hex::decode(native).ok()?.try_into().ok()?;
    let sha2: [u8; 32] = hex::decode(sha2).ok()?.try_into().ok()?;
    Some((native, sha2))
}

/// The key that seals the platform's own secrets.
#[derive(Clone)]
pub struct MasterKey([u8; 32]);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl MasterKey {
    pub fn generate() -> Self {
        Self(random_bytes::<32>())
    }

    /// A key for another purpose, derived from this one (so the master key itself is never
    /// used twice for different things).
    pub fn derive(&self, purpose: &str) -> [u8; 32] {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update(b"tdb-derive\0");
        h.update(purpose.as_bytes());
        h.update([0]);
        h.update(self.0);
        h.finalize().into()
    }

    /// Parses 64 hex characters or standard base64 of 32 bytes (surrounding space ignored).
    pub fn parse(text: &str) -> Result<Self, SecretError> {
        let text = text.trim();
        let bytes = hex::decode(text)
            .ok()
            .or_else(|| base64::engine::general_purpose::STANDARD.decode(text).ok())
            .ok_or(SecretError::BadMasterKey)?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| SecretError::BadMasterKey)?;
        Ok(Self(key))
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&self.0))
    }

    /// Seals `plaintext` for the record `aad`: version, nonce, ciphertext.
    pub fn seal(&self, plaintext: &[u8], aad: Aad<'_>) -> Vec<u8> {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let aad = aad.bytes();
        let payload = Payload {
            msg: plaintext,
            aad: aad.as_bytes(),
        };
        let ciphertext = self
            .cipher()
            .encrypt(&nonce, payload)
            .unwrap_or_else(|_| unreachable!("AES-GCM encryption cannot fail for in-memory data"));
        let mut out = Vec::with_capacity(1 + NONCE_LEN + ciphertext.len());
        out.push(SEALED_VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ciphertext);
        out
    }

    /// Opens what [`MasterKey::seal`] produced for the same `aad`.
    pub fn open(&self, sealed: &[u8], aad: Aad<'_>) -> Result<Vec<u8>, SecretError> {
        if sealed.len() < 1 + NONCE_LEN || sealed[0] != SEALED_VERSION {
            return Err(SecretError::Unseal);
        }
        let nonce = Nonce::from_slice(&sealed[1..1 + NONCE_LEN]);
        let aad = aad.bytes();
        let payload = Payload {
            msg: &sealed[1 + NONCE_LEN..],
            aad: aad.as_bytes(),
        };
        self.cipher()
            .decrypt(nonce, payload)
            .map_err(|_| SecretError::Unseal)
    }

    pub fn open_string(&self, sealed: &[u8], aad: Aad<'_>) -> Result<String, SecretError> {
        String::from_utf8(self.open(sealed, aad)?).map_err(|_| SecretError::Unseal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify_only_themselves() {
        let phc = hash_password("correct horse").expect("hash");
        assert!(phc.starts_with("$argon2id$"));
        assert!(!phc.contains("correct horse"));
        assert!(verify_password(&phc, "correct horse"));
        assert!(!verify_password(&phc, "correct horsE"));
        assert!(!verify_password("not a phc string", "correct horse"));
    }

    #[test]
    fn decoy_is_a_real_argon2id_hash() {
        let parsed = PasswordHash::new(DECOY_PHC).expect("decoy parses");
        assert_eq!(parsed.algorithm.as_str(), "argon2id");
        let real = hash_password("whatever-password").expect("hash");
        let real = PasswordHash::new(&real).expect("parse");
        assert_eq!(
            parsed.params, real.params,
            "decoy must cost what a real hash costs"
        );
        assert!(!verify_password(DECOY_PHC, "whatever-password"));
    }

    #[test]
    fn api_keys_are_random_and_stored_as_digests() {
        let a = new_api_key();
        let b = new_api_key();
        assert_ne!(a.plaintext, b.plaintext);
        assert_eq!(a.plaintext.len(), API_KEY_PREFIX.len() + 64);
        assert!(a.plaintext.starts_with(&a.prefix));
        assert_eq!(a.digest, api_key_digest(&a.plaintext));
        assert_eq!(a.digest.len(), 32);
    }

    #[test]
    fn mysql_verifiers_hold_the_digests_mysql_itself_stores() {
        // MySQL's PASSWORD('s3cret-pass') is '*' + upper hex of SHA1(SHA1(p)).
        let v = mysql_verifier("s3cret-pass");
        let (native, sha2) = parse_mysql_verifier(&v).expect("parses");
        use sha1::Digest as _;
        let once = sha1::Sha1::digest(b"s3cret-pass");
        assert_eq!(native.as_slice(), sha1::Sha1::digest(once).as_slice());
        assert_eq!(
            sha2.as_slice(),
            Sha256::digest(Sha256::digest(b"s3cret-pass")).as_slice()
        );
        assert_ne!(mysql_verifier("other"), v);
        assert!(parse_mysql_verifier("SCRAM-SHA-256$4096:abc").is_none());
        assert!(parse_mysql_verifier("00:11").is_none());
    }

    #[test]
    fn scram_verifier_has_postgres_shape() {
        let v = scram_verifier("s3cret-pass");
        assert!(v.starts_with("SCRAM-SHA-256$4096:"), "{v}");
        assert!(!v.contains("s3cret-pass"));
    }

    #[test]
    fn sealing_binds_key_and_record() {
        let key = MasterKey::generate();
        let srv_1 = Aad::ServerAdmin("srv_1");
        let sealed = key.seal(b"admin-password", srv_1);
        assert_eq!(key.open(&sealed, srv_1).expect("open"), b"admin-password");
        assert!(
            key.open(&sealed, Aad::ServerAdmin("srv_2")).is_err(),
            "wrong record"
        );
        assert!(
            key.open(&sealed, Aad::Connection("srv_1")).is_err(),
            "another kind of record"
        );
        assert!(
            MasterKey::generate().open(&sealed, srv_1).is_err(),
            "wrong key"
        );
        let mut tampered = sealed.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(key.open(&tampered, srv_1).is_err(), "tampered");
        assert!(key.open(&[], srv_1).is_err());
    }

    #[test]
    fn master_key_parses_hex_and_base64() {
        let key = MasterKey::generate();
        let hex_form = key.to_hex();
        let again = MasterKey::parse(&format!("  {hex_form}\n")).expect("hex");
        assert_eq!(again.to_hex(), hex_form);
        let b64 = base64::engine::general_purpose::STANDARD.encode(key.0);
        assert_eq!(MasterKey::parse(&b64).expect("b64").to_hex(), hex_form);
        assert!(MasterKey::parse("abcd").is_err());
    }
}
