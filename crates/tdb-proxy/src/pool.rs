//! Server connections kept between client sessions (session pooling). A connection returns to
//! the pool only after `DISCARD ALL` succeeded, and only to clients that would have started it
//! with the same role, database and startup parameters.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::pg::backend::{Backend, BackendError, BackendTarget};

/// Idle connections kept per key.
const MAX_IDLE_PER_KEY: usize = 32;
/// An idle connection older than this is closed rather than reused.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Default)]
pub struct Pool {
    idle: Mutex<HashMap<BackendTarget, Vec<Backend>>>,
}

impl Pool {
    /// A pooled connection for `target`, or a new one.
    pub async fn acquire(
        &self,
        target: &BackendTarget,
    ) -> Result<(Backend, bool), crate::pg::backend::BackendError> {
        if let Some(conn) = self.take(target) {
            return Ok((conn, true));
        }
        match Backend::connect(target).await {
            // Idle pooled connections of the same role count against its connection limit;
            // close them (whatever their startup parameters) and try once more.
            Err(BackendError::Refused { code, .. }) if code == "53300" => {
                self.evict_role(target).await;
                Ok((Backend::connect(target).await?, false))
            }
            other => Ok((other?, false)),
        }
    }

    async fn evict_role(&self, target: &BackendTarget) {
        let stale: Vec<Backend> = {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            let mut stale = Vec::new();
            for (key, conns) in idle.iter_mut() {
                if key.host == target.host
                    && key.port == target.port
                    && key.database == target.database
                    && key.user == target.user
                {
                    stale.append(conns);
                }
            }
            idle.retain(|_, conns| !conns.is_empty());
            stale
        };
        for conn in stale {
            conn.terminate().await;
        }
    }

    fn take(&self, target: &BackendTarget) -> Option<Backend> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let conns = idle.get_mut(target)?;
        while let Some(conn) = conns.pop() {
            if conn.idle_since.elapsed() < IDLE_TIMEOUT {
                return Some(conn);
            }
        }
        None
    }

    /// Resets `conn` and keeps it for the next client; closes it when the reset fails or the
    /// pool for its key is full.
    pub async fn release(&self, target: BackendTarget, mut conn: Backend) {
        if !conn.reset().await {
            return;
        }
        // DISCARD ALL dropped every prepared statement.
        conn.prepared.clear();
        self.keep(target, conn).await;
    }

    /// Keeps `conn` as it is, between two transactions (transaction pooling).
    pub async fn keep(&self, target: BackendTarget, mut conn: Backend) {
        conn.idle_since = Instant::now();
        let surplus = {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            let conns = idle.entry(target).or_default();
            if conns.len() < MAX_IDLE_PER_KEY {
                conns.push(conn);
                None
            } else {
                Some(conn)
            }
        };
        if let Some(conn) = surplus {
            conn.terminate().await;
        }
    }

    /// Closes connections idle for longer than [`IDLE_TIMEOUT`] (and every one for a server
    /// database matching `only`, when given: a dropped or moved database).
    pub async fn evict(&self, only: Option<(&str, u16, &str)>) {
        let stale: Vec<Backend> = {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            let mut stale = Vec::new();
            for (target, conns) in idle.iter_mut() {
                let matches = only.is_some_and(|(host, port, db)| {
                    target.host == host && target.port == port && target.database == db
                });
                let (keep, drop): (Vec<_>, Vec<_>) = conns
                    .drain(..)
                    .partition(|c| !matches && c.idle_since.elapsed() < IDLE_TIMEOUT);
                *conns = keep;
                stale.extend(drop);
            }
            idle.retain(|_, conns| !conns.is_empty());
            stale
        };
        for conn in stale {
            conn.terminate().await;
        }
    }

    /// Closes every idle connection (shutdown).
    pub async fn close_all(&self) {
        let all: Vec<Backend> = {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            idle.drain().flat_map(|(_, conns)| conns).collect()
        };
        for conn in all {
            conn.terminate().await;
        }
    }
}
