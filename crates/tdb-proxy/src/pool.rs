//! Server connections kept between client sessions (session pooling). A connection returns to
//! the pool only after `DISCARD ALL` succeeded, and only to clients that would have started it
//! with the same role, database and startup parameters. It leaves the pool only if the server
//! has said nothing on it meanwhile: a server that restarted, or ended the session, has closed
//! the connection or sent its reason, and such a connection is dropped, not handed to a client.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, ReadBuf};

use crate::budget::{Place, ServerBudget};
use crate::pg::backend::{Backend, BackendError, BackendTarget};
use crate::pg::sqlstate;

/// Idle connections kept per key.
const MAX_IDLE_PER_KEY: usize = 32;
/// An idle connection older than this is closed rather than reused.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a new server connection waits for a place in its server's budget.
const BUDGET_WAIT: Duration = Duration::from_secs(2);

type Idle = HashMap<Arc<BackendTarget>, Vec<Backend>>;

pub struct Pool {
    /// Idle connections by worker (index: [`crate::workers::current`], 0 off the workers).
    idle: Box<[Mutex<Idle>]>,
    /// Each server's budget of tenant connections: every connection to it (in use or pooled)
    /// holds a place, so tenants together never take what tdb keeps for its own work; shared
    /// fairly between tenants when full (see [`crate::budget`]).
    budgets: Mutex<HashMap<(String, u16), Arc<ServerBudget>>>,
    /// Each server database's epoch of shared statement names (see
    /// [`crate::pg::relay::SessionContext::plan_epoch`]).
    plan_epochs: Mutex<HashMap<(String, u16, String), Arc<AtomicU64>>>,
}

impl Default for Pool {
    fn default() -> Self {
        Self::new(1)
    }
}

impl Pool {
    /// A pool for `workers` workers.
    pub fn new(workers: usize) -> Self {
        Self {
            idle: (0..workers.max(1)).map(|_| Mutex::default()).collect(),
            budgets: Mutex::default(),
            plan_epochs: Mutex::default(),
        }
    }

    /// The calling worker's index into `idle`.
    fn worker(&self) -> usize {
        crate::workers::current().unwrap_or(0) % self.idle.len()
    }

    /// The calling worker's idle connections.
    fn here(&self) -> MutexGuard<'_, Idle> {
        lock(&self.idle[self.worker()])
    }

    /// Takes the idle connections `pick` chooses, on every worker (when `everywhere`) or on the
    /// calling one, and closes them.
    async fn close_where(&self, everywhere: bool, pick: impl Fn(&BackendTarget, &Backend) -> bool) {
        let mut stale = Vec::new();
        let mut sweep = |idle: &mut Idle| {
            for (target, conns) in idle.iter_mut() {
                let (drop, keep): (Vec<_>, Vec<_>) = conns.drain(..).partition(|c| pick(target, c));
                *conns = keep;
                stale.extend(drop);
            }
            idle.retain(|_, conns| !conns.is_empty());
        };
        if everywhere {
            for idle in &self.idle {
                sweep(&mut lock(idle));
            }
        } else {
            sweep(&mut self.here());
        }
        for conn in stale {
            conn.terminate().await;
        }
    }
    /// The epoch of shared statement names on `target`'s database.
    pub fn plan_epoch(&self, target: &BackendTarget) -> Arc<AtomicU64> {
        let key = (target.host.clone(), target.port, target.database.clone());
        let mut epochs = lock(&self.plan_epochs);
        epochs.entry(key).or_default().clone()
    }

    /// A pooled connection for `target`, or a new one within the server's `budget` of tenant
    /// connections (when known). A full budget first closes idle pooled connections to the
    /// server, then waits a moment for a place.
    pub async fn acquire(
        &self,
        target: &BackendTarget,
        budget: Option<u32>,
        client: u64,
    ) -> Result<(Backend, bool), crate::pg::backend::BackendError> {
        if let Some(conn) = self.take(target, client) {
            return Ok((conn, true));
        }
        // Boxed: connecting (TCP, SCRAM, the budget's wait) is a large future, and it would
        // otherwise be part of every session's, moved on every transaction.
        Box::pin(self.open(target, budget))
            .await
            .map(|conn| (conn, false))
    }

    /// A new connection for `target`, within the server's `budget` of tenant connections.
    async fn open(
        &self,
        target: &BackendTarget,
        budget: Option<u32>,
    ) -> Result<Backend, crate::pg::backend::BackendError> {
        let slot = match budget {
            Some(budget) => Some(self.place(target, budget).await?),
            None => None,
        };
        let mut conn = match Backend::connect(target).await {
            // Idle pooled connections of the same role count against its connection limit;
            // close them (whatever their startup parameters) and try once more.
            Err(BackendError::Refused { code, .. }) if code == sqlstate::TOO_MANY_CONNECTIONS => {
                self.evict_role(target).await;
                Backend::connect(target).await?
            }
            other => other?,
        };
        conn.slot = slot;
        Ok(conn)
    }

    /// A place for one more connection to `target`'s server, in turn with the other tenants
    /// when the server is full.
    async fn place(&self, target: &BackendTarget, budget: u32) -> Result<Place, BackendError> {
        let server = (target.host.clone(), target.port);
        let places = {
            let mut budgets = lock(&self.budgets);
            budgets
                .entry(server.clone())
                .or_insert_with(|| ServerBudget::new(budget as usize))
                .clone()
        };
        if let Some(place) = places.try_take(&target.database) {
            return Ok(place);
        }
        self.evict_server(&server).await;
        match places.take(&target.database, BUDGET_WAIT).await {
            Some(place) => Ok(place),
            None => Err(BackendError::ServerFull { budget }),
        }
    }

    /// Closes every idle pooled connection to a server (its budget is full), on every worker.
    async fn evict_server(&self, server: &(String, u16)) {
        self.close_where(true, |t, _| t.host == server.0 && t.port == server.1)
            .await;
    }

    /// Closes every idle pooled connection of `target`'s role, on every worker (they count
    /// against its connection limit).
    async fn evict_role(&self, target: &BackendTarget) {
        self.close_where(true, |t, _| {
            t.host == target.host
                && t.port == target.port
                && t.database == target.database
                && t.user == target.user
        })
        .await;
    }

    /// The most recently pooled live connection for `target`; stale and dead ones on the way
    /// are closed.
    ///
    /// Transaction pooling: the connection `client` used last, if it is idle, comes first: it
    /// needs no reset (0: no preference).
    fn take(&self, target: &BackendTarget, client: u64) -> Option<Backend> {
        if let Some(conn) = self.take_here(target, client) {
            return Some(conn);
        }
        // None here: one kept by another worker, moved to this worker's event loop, rather than
        // a new connection (a tenant's cap counts the connections of every worker).
        let here = self.worker();
        for (worker, idle) in self.idle.iter().enumerate() {
            if worker == here {
                continue;
            }
            loop {
                let taken = lock(idle).get_mut(target).and_then(Vec::pop);
                let Some(mut conn) = taken else { break };
                if conn.idle_since.elapsed() >= IDLE_TIMEOUT {
                    continue;
                }
                // Its new event loop knows nothing of it yet: `rehome` checks it is still quiet.
                match conn.stream.rehome() {
                    Ok(stream) => conn.stream = stream,
                    Err(e) => {
                        tracing::debug!(error = %e, "not taking a pooled server connection");
                        continue;
                    }
                }
                return Some(conn);
            }
        }
        None
    }

    fn take_here(&self, target: &BackendTarget, client: u64) -> Option<Backend> {
        let mut idle = self.here();
        let conns = idle.get_mut(target)?;
        if client != 0
            && let Some(at) = conns.iter().rposition(|c| c.last_client == client)
        {
            let mut conn = conns.remove(at);
            if conn.idle_since.elapsed() < IDLE_TIMEOUT && quiet(&mut conn.stream) {
                return Some(conn);
            }
        }
        while let Some(mut conn) = conns.pop() {
            if conn.idle_since.elapsed() < IDLE_TIMEOUT && quiet(&mut conn.stream) {
                return Some(conn);
            }
            tracing::debug!(
                ?target,
                "closing a pooled server connection: stale or closed"
            );
        }
        None
    }

    /// Resets `conn` and keeps it for the next client; closes it when the reset fails or the
    /// pool for its key is full.
    pub async fn release(&self, target: Arc<BackendTarget>, mut conn: Backend) {
        if conn.slot.as_ref().is_some_and(Place::should_yield) {
            conn.terminate().await;
            return;
        }
        if !conn.reset().await {
            return;
        }
        // DISCARD ALL dropped every prepared statement and setting.
        conn.prepared.clear();
        conn.last_client = 0;
        self.keep(target, conn).await;
    }

    /// Keeps `conn` as it is, between two transactions (transaction pooling); closes it when
    /// its place in the server's budget is owed to a tenant that holds fewer.
    pub async fn keep(&self, target: Arc<BackendTarget>, mut conn: Backend) {
        if conn.slot.as_ref().is_some_and(Place::should_yield) {
            conn.terminate().await;
            return;
        }
        conn.idle_since = Instant::now();
        // The tenant's slot goes back once the connection is in the pool: a transaction waiting
        // for the slot on another worker then finds the connection, instead of opening one.
        let tenant_slot = conn.tenant_slot.take();
        let surplus = {
            let mut idle = self.here();
            let conns = idle.entry(target).or_default();
            if conns.len() < MAX_IDLE_PER_KEY {
                conns.push(conn);
                None
            } else {
                Some(conn)
            }
        };
        drop(tenant_slot);
        if let Some(conn) = surplus {
            conn.terminate().await;
        }
    }

    /// Closes the calling worker's connections idle for longer than [`IDLE_TIMEOUT`] (and
    /// every one for a server database matching `only`, when given: a dropped or moved
    /// database).
    pub async fn evict(&self, only: Option<(&str, u16, &str)>) {
        self.close_where(false, |target, conn| {
            let matches = only.is_some_and(|(host, port, db)| {
                target.host == host && target.port == port && target.database == db
            });
            matches || conn.idle_since.elapsed() >= IDLE_TIMEOUT
        })
        .await;
    }

    /// Closes the calling worker's idle connections (shutdown).
    pub async fn close_all(&self) {
        self.close_where(false, |_, _| true).await;
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether an idle server connection has stayed silent: one non-blocking read that finds
/// nothing to read. End of file (the server went away) or any byte (a server says why it ends a
/// session before closing it; an idle session is owed nothing else) means the connection is
/// dead. The look costs a system call at most, and never waits.
fn quiet<S: AsyncRead + Unpin>(stream: &mut S) -> bool {
    let mut cx = Context::from_waker(Waker::noop());
    let mut byte = [0u8; 1];
    let mut buf = ReadBuf::new(&mut byte);
    matches!(Pin::new(stream).poll_read(&mut cx, &mut buf), Poll::Pending)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn a_silent_connection_is_quiet_and_a_closed_or_chatty_one_is_not() {
        let (mut near, far) = tokio::io::duplex(64);
        assert!(quiet(&mut near), "nothing sent, nothing closed");
        drop(far);
        assert!(!quiet(&mut near), "the other end closed");

        let (mut near, mut far) = tokio::io::duplex(64);
        far.write_all(b"E").await.expect("write");
        assert!(!quiet(&mut near), "unexpected bytes");
    }
}
