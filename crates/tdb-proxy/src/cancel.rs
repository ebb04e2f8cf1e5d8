//! Cancel keys. Clients get the proxy's own `BackendKeyData`; a `CancelRequest` carrying it is
//! forwarded to the server backend the session is using at that moment.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use rand::Rng;

/// Where a cancel for one client session goes.
#[derive(Clone, Debug)]
pub struct CancelTarget {
    pub host: String,
    pub port: u16,
    pub pid: u32,
    pub key: u32,
}

pub struct CancelKeys {
    next_pid: AtomicU32,
    /// `None` while a session holds no server connection (transaction pooling, between
    /// transactions): a cancel then reaches nobody, never another client's query.
    sessions: Mutex<HashMap<u32, (u32, Option<CancelTarget>)>>,
}

impl Default for CancelKeys {
    fn default() -> Self {
        Self {
            next_pid: AtomicU32::new(rand::thread_rng().gen_range(1_000_000..2_000_000_000)),
            sessions: Mutex::new(HashMap::new()),
        }
    }
}

impl CancelKeys {
    /// Hands out a (pid, key) pair for a session using `target`.
    pub fn register(&self, target: CancelTarget) -> (u32, u32) {
        let pid = self.next_pid.fetch_add(1, Ordering::Relaxed).max(1);
        let key: u32 = rand::thread_rng().r#gen();
        self.lock().insert(pid, (key, Some(target)));
        (pid, key)
    }

    /// Points a session's cancel key at the server connection it now uses, or at none.
    pub fn retarget(&self, pid: u32, target: Option<CancelTarget>) {
        if let Some(entry) = self.lock().get_mut(&pid) {
            entry.1 = target;
        }
    }

    pub fn unregister(&self, pid: u32) {
        self.lock().remove(&pid);
    }

    /// The backend to cancel, when the key matches the one handed out.
    pub fn lookup(&self, pid: u32, key: &[u8]) -> Option<CancelTarget> {
        let sessions = self.lock();
        let (expected, target) = sessions.get(&pid)?;
        let given = <[u8; 4]>::try_from(key).ok()?;
        // Constant-time comparison: the key is the only secret in a cancel request.
        let diff = expected
            .to_be_bytes()
            .iter()
            .zip(given)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if diff != 0 {
            return None;
        }
        target.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u32, (u32, Option<CancelTarget>)>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_right_key_finds_the_backend() {
        let keys = CancelKeys::default();
        let target = CancelTarget {
            host: "127.0.0.1".into(),
            port: 5432,
            pid: 42,
            key: 7,
        };
        let (pid, key) = keys.register(target);
        assert_eq!(
            keys.lookup(pid, &key.to_be_bytes()).map(|t| t.pid),
            Some(42)
        );
        assert!(
            keys.lookup(pid, &key.wrapping_add(1).to_be_bytes())
                .is_none()
        );
        assert!(keys.lookup(pid, &[1, 2, 3]).is_none());
        assert!(
            keys.lookup(pid.wrapping_add(1), &key.to_be_bytes())
                .is_none()
        );
        keys.retarget(pid, None);
        assert!(keys.lookup(pid, &key.to_be_bytes()).is_none(), "detached");
        keys.unregister(pid);
        assert!(keys.lookup(pid, &key.to_be_bytes()).is_none());
    }
}
