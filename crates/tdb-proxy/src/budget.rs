//! A server's budget of tenant connections, shared max-min fairly. Every server connection of a
//! tenant (in use or pooled) holds a [`Place`]. When the budget is full, tenants wait for a place
//! by tenant, not in one line: a place given back goes to the waiting tenant that holds the
//! fewest (the longest waiting among equals), so a tenant with hundreds of waiting clients
//! cannot starve one with a single client. And a tenant that holds more than a waiting tenant
//! gives a connection back at the end of its transaction instead of keeping it
//! ([`Place::should_yield`]), so places move to whoever has fewest while the server is full.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::oneshot;

pub struct ServerBudget {
    capacity: usize,
    state: Mutex<State>,
    /// Waiters queued, as of the last change under the lock: read without it on every
    /// transaction's end ([`Place::should_yield`]), which needs the lock only when some wait.
    waiters: AtomicUsize,
}

#[derive(Default)]
struct State {
    /// Places out, in all.
    held: usize,
    /// Places out, by tenant.
    by_tenant: HashMap<Arc<str>, usize>,
    /// Waiters, by tenant, each with its turn (for ties between tenants).
    waiting: HashMap<Arc<str>, VecDeque<(u64, oneshot::Sender<Place>)>>,
    turn: u64,
}

/// One connection's place in its server's budget, given back when dropped.
pub struct Place {
    budget: Arc<ServerBudget>,
    tenant: Arc<str>,
}

impl ServerBudget {
    pub fn new(capacity: usize) -> Arc<Self> {
        Arc::new(Self {
            capacity,
            state: Mutex::default(),
            waiters: AtomicUsize::new(0),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A place for `tenant` if one is free and no tenant waits for one.
    pub fn try_take(self: &Arc<Self>, tenant: &str) -> Option<Place> {
        let mut state = self.lock();
        state.prune();
        state.count_waiters(&self.waiters);
        if state.held >= self.capacity || !state.waiting.is_empty() {
            return None;
        }
        state.held += 1;
        let tenant: Arc<str> = Arc::from(tenant);
        *state.by_tenant.entry(tenant.clone()).or_default() += 1;
        Some(Place {
            budget: self.clone(),
            tenant,
        })
    }

    /// A place for `tenant`, waiting up to `wait` for one (in turn with the other tenants).
    pub async fn take(self: &Arc<Self>, tenant: &str, wait: Duration) -> Option<Place> {
        if let Some(place) = self.try_take(tenant) {
            return Some(place);
        }
        let rx = {
            let mut state = self.lock();
            // Given back meanwhile, with nobody waiting: take it.
            if state.held < self.capacity && state.waiting.is_empty() {
                state.held += 1;
                let tenant: Arc<str> = Arc::from(tenant);
                *state.by_tenant.entry(tenant.clone()).or_default() += 1;
                return Some(Place {
                    budget: self.clone(),
                    tenant,
                });
            }
            let (tx, rx) = oneshot::channel();
            state.turn += 1;
            let turn = state.turn;
            state
                .waiting
                .entry(Arc::from(tenant))
                .or_default()
                .push_back((turn, tx));
            state.count_waiters(&self.waiters);
            rx
        };
        // On timeout the receiver is dropped: its entry is skipped when its turn comes.
        tokio::time::timeout(wait, rx).await.ok()?.ok()
    }

    #[cfg(test)]
    fn held_by(&self, tenant: &str) -> usize {
        self.lock().by_tenant.get(tenant).copied().unwrap_or(0)
    }

    /// Gives a place of `tenant` back: to the waiting tenant holding fewest, or to the pool.
    fn give_back(self: &Arc<Self>, tenant: &str) {
        let next = {
            let mut state = self.lock();
            if let Some(n) = state.by_tenant.get_mut(tenant) {
                *n -= 1;
                if *n == 0 {
                    state.by_tenant.remove(tenant);
                }
            }
            state.prune();
            let next = match state.fewest_waiting() {
                Some(next) => {
                    let queue = state.waiting.get_mut(&next).expect("a waiting tenant");
                    let (_, tx) = queue.pop_front().expect("a waiter");
                    if queue.is_empty() {
                        state.waiting.remove(&next);
                    }
                    *state.by_tenant.entry(next.clone()).or_default() += 1;
                    Some((next, tx))
                }
                None => {
                    state.held -= 1;
                    None
                }
            };
            state.count_waiters(&self.waiters);
            next
        };
        if let Some((tenant, tx)) = next {
            // A waiter that gave up just now drops the place, which comes back here.
            let _ = tx.send(Place {
                budget: self.clone(),
                tenant,
            });
        }
    }
}

impl State {
    /// Forgets waiters that gave up.
    fn prune(&mut self) {
        self.waiting.retain(|_, queue| {
            queue.retain(|(_, tx)| !tx.is_closed());
            !queue.is_empty()
        });
    }

    fn count_waiters(&self, waiters: &AtomicUsize) {
        let n = self.waiting.values().map(VecDeque::len).sum();
        waiters.store(n, Ordering::Relaxed);
    }

    /// The waiting tenant that holds fewest places; among equals, the one waiting longest.
    fn fewest_waiting(&self) -> Option<Arc<str>> {
        self.waiting
            .iter()
            .filter_map(|(t, q)| Some((t, q.front()?.0)))
            .min_by_key(|(t, turn)| (self.by_tenant.get(*t).copied().unwrap_or(0), *turn))
            .map(|(t, _)| t.clone())
    }
}

impl Place {
    /// Whether this place should go to another tenant rather than stay with a pooled
    /// connection: a tenant waits that holds at least two fewer than this one's.
    pub fn should_yield(&self) -> bool {
        if self.budget.waiters.load(Ordering::Relaxed) == 0 {
            return false;
        }
        let mut state = self.budget.lock();
        state.prune();
        state.count_waiters(&self.budget.waiters);
        let mine = state.by_tenant.get(&self.tenant).copied().unwrap_or(0);
        state
            .waiting
            .keys()
            .any(|t| *t != self.tenant && state.by_tenant.get(t).copied().unwrap_or(0) + 1 < mine)
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        self.budget.give_back(&self.tenant);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_place_given_back_goes_to_the_tenant_holding_fewest_whoever_waited_first() {
        let budget = ServerBudget::new(3);
        let noisy: Vec<Place> = (0..3)
            .map(|_| budget.try_take("noisy").expect("free"))
            .collect();
        assert!(budget.try_take("quiet").is_none(), "full");
        // Many noisy waiters first, then one quiet one.
        let wait = Duration::from_secs(10);
        let mut noisy_waiters = Vec::new();
        for _ in 0..5 {
            let b = budget.clone();
            noisy_waiters.push(tokio::spawn(async move { b.take("noisy", wait).await }));
        }
        tokio::task::yield_now().await;
        let b = budget.clone();
        let quiet = tokio::spawn(async move { b.take("quiet", wait).await });
        // Let every waiter queue.
        while budget
            .lock()
            .waiting
            .values()
            .map(VecDeque::len)
            .sum::<usize>()
            < 6
        {
            tokio::task::yield_now().await;
        }
        // The noisy tenant holds 3, the quiet one none and waits: noisy should give one back.
        let mut noisy = noisy;
        assert!(noisy[0].should_yield());
        drop(noisy.remove(0));
        let place = quiet
            .await
            .expect("task")
            .expect("the quiet tenant gets the place");
        assert_eq!(place.tenant.as_ref(), "quiet");
        assert_eq!((budget.held_by("noisy"), budget.held_by("quiet")), (2, 1));
        drop(place);
        // With nobody else waiting, the noisy waiters are served in their order.
        assert_eq!(budget.held_by("noisy"), 3);
        for w in noisy_waiters {
            w.abort();
        }
    }

    #[tokio::test]
    async fn a_waiter_that_gave_up_is_skipped_and_nothing_leaks() {
        let budget = ServerBudget::new(1);
        let first = budget.try_take("a").expect("free");
        assert!(
            budget.take("b", Duration::from_millis(20)).await.is_none(),
            "times out"
        );
        drop(first);
        assert_eq!(
            budget.lock().held,
            0,
            "the place went back, not to the gone waiter"
        );
        let again = budget.try_take("c").expect("free again");
        assert!(!again.should_yield(), "nobody waits");
        drop(again);
        assert_eq!(budget.lock().held, 0);
    }
}
