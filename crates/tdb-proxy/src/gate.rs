//! Per-tenant gates. A tenant's gate is open, held (new queries wait until it is released or a
//! deadline passes: cutovers, restores) or its sessions are killed (suspension, deletion).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

#[derive(Default)]
pub struct Gates {
    tenants: Mutex<HashMap<String, Arc<Gate>>>,
}

pub struct Gate {
    /// `Some(deadline)` while held.
    hold: watch::Sender<Option<Instant>>,
    /// Cancelled to end every session opened before the kill.
    kill: Mutex<CancellationToken>,
}

impl Gates {
    /// The gate of a tenant, created open on first use.
    pub fn get(&self, tenant_id: &str) -> Arc<Gate> {
        let mut tenants = self.tenants.lock().unwrap_or_else(|e| e.into_inner());
        tenants
            .entry(tenant_id.to_string())
            .or_insert_with(|| {
                Arc::new(Gate {
                    hold: watch::channel(None).0,
                    kill: Mutex::new(CancellationToken::new()),
                })
            })
            .clone()
    }

    /// Parks the tenant's new queries until [`Gates::release`] or `until`.
    pub fn hold(&self, tenant_id: &str, until: Instant) {
        self.get(tenant_id).hold.send_replace(Some(until));
    }

    pub fn release(&self, tenant_id: &str) {
        self.get(tenant_id).hold.send_replace(None);
    }

    /// Ends every open session of the tenant; sessions opened afterwards are not affected.
    pub fn kill(&self, tenant_id: &str) {
        let gate = self.get(tenant_id);
        let mut kill = gate.kill.lock().unwrap_or_else(|e| e.into_inner());
        kill.cancel();
        *kill = CancellationToken::new();
    }

    /// Tenants with a gate (those that had sessions), for a full re-check after missed news.
    pub fn tenant_ids(&self) -> Vec<String> {
        let tenants = self.tenants.lock().unwrap_or_else(|e| e.into_inner());
        tenants.keys().cloned().collect()
    }
}

impl Gate {
    /// The token a new session watches; take it before checking the tenant's state, so a kill
    /// that lands in between still reaches the session.
    pub fn kill_token(&self) -> CancellationToken {
        self.kill.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn is_held(&self) -> bool {
        self.hold
            .borrow()
            .is_some_and(|until| until > Instant::now())
    }

    /// Returns at once when open; otherwise when released or at the hold's deadline.
    pub async fn pass(&self) {
        let mut rx = self.hold.subscribe();
        loop {
            let until = match *rx.borrow_and_update() {
                Some(until) if until > Instant::now() => until,
                _ => return,
            };
            tokio::select! {
                changed = rx.changed() => if changed.is_err() { return },
                _ = tokio::time::sleep_until(until) => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_hold_parks_until_released() {
        let gates = Gates::default();
        let gate = gates.get("t1");
        assert!(!gate.is_held());
        gate.pass().await;
        gates.hold("t1", Instant::now() + Duration::from_secs(30));
        assert!(gate.is_held());
        let waiter = tokio::spawn({
            let gate = gate.clone();
            async move {
                let start = Instant::now();
                gate.pass().await;
                start.elapsed()
            }
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!waiter.is_finished(), "a held gate let a query through");
        gates.release("t1");
        let waited = waiter.await.expect("join");
        assert!(waited >= Duration::from_millis(200), "{waited:?}");
        assert!(!gate.is_held());
    }

    #[tokio::test]
    async fn a_hold_ends_at_its_deadline() {
        let gates = Gates::default();
        gates.hold("t1", Instant::now() + Duration::from_millis(150));
        let start = Instant::now();
        gates.get("t1").pass().await;
        assert!(start.elapsed() >= Duration::from_millis(100));
        assert!(!gates.get("t1").is_held());
    }

    #[tokio::test]
    async fn a_kill_reaches_only_earlier_sessions() {
        let gates = Gates::default();
        let before = gates.get("t1").kill_token();
        let other = gates.get("t2").kill_token();
        gates.kill("t1");
        let after = gates.get("t1").kill_token();
        assert!(before.is_cancelled());
        assert!(!after.is_cancelled());
        assert!(!other.is_cancelled());
    }
}
