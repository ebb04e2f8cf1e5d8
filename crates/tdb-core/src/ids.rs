//! Opaque identifiers: a short kind prefix and random hex. They carry no customer data, so they
//! are safe in logs, URLs and physical object names.

use rand::RngCore;

/// A fresh id such as `tdb_3f9a0c1b2d4e5f60` (project), `key_…`, `acc_…`, `srv_…`.
pub fn new_id(prefix: &str) -> String {
    let mut bytes = [0u8; 8];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!("{prefix}_{}", hex::encode(bytes))
}

/// `n` random bytes in hex.
pub fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// A random (version 4) UUID in its hyphenated form, for the AutoDB-compatible resources.
pub fn uuid_v4() -> String {
    let mut b = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

pub fn project_id() -> String {
    new_id("tdb")
}

pub fn account_id() -> String {
    new_id("acc")
}

pub fn api_key_id() -> String {
    new_id("key")
}

pub fn server_id() -> String {
    new_id("srv")
}

/// True when `s` has the shape of a project id (used to tell ids from names in `switch`).
pub fn looks_like_project_id(s: &str) -> bool {
    s.strip_prefix("tdb_")
        .is_some_and(|rest| rest.len() == 16 && rest.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_have_the_version_4_shape() {
        let u = uuid_v4();
        let parts: Vec<&str> = u.split('-').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(parts[2].starts_with('4'));
        assert!(matches!(&parts[3][..1], "8" | "9" | "a" | "b"));
        assert_ne!(u, uuid_v4());
        assert_eq!(random_hex(6).len(), 12);
    }

    #[test]
    fn ids_are_prefixed_random_and_recognised() {
        let a = project_id();
        let b = project_id();
        assert_ne!(a, b);
        assert!(looks_like_project_id(&a), "{a}");
        assert!(!looks_like_project_id("tdb_xyz"));
        assert!(api_key_id().starts_with("key_"));
    }
}
