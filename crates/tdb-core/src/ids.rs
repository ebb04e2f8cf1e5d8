//! Opaque identifiers: a short kind prefix and random hex. They carry no customer data, so they
//! are safe in logs, URLs and physical object names.

use rand::RngCore;

/// A fresh id such as `tdb_3f9a0c1b2d4e5f60` (project), `key_…`, `acc_…`, `srv_…`.
pub fn new_id(prefix: &str) -> String {
    let mut bytes = [0u8; 8];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!("{prefix}_{}", hex::encode(bytes))
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
    fn ids_are_prefixed_random_and_recognised() {
        let a = project_id();
        let b = project_id();
        assert_ne!(a, b);
        assert!(looks_like_project_id(&a), "{a}");
        assert!(!looks_like_project_id("tdb_xyz"));
        assert!(api_key_id().starts_with("key_"));
    }
}
