//! What stops a session from outside, as its relay waits on it: the tenant suspended or
//! deleted (its kill token), tdb shutting down (the proxy's token).
//!
//! A token's own future takes the token's lock and its `Notify`'s each time it is made, polled
//! and dropped, and every session of the proxy shares the shutdown token: waiting on the two
//! tokens in every command's `select!` made each command take and bounce those locks between
//! the proxy's threads several times. Instead a helper task per session waits on the tokens
//! and tells the relay over a channel, whose receiver is polled with atomic operations alone.
//! The price is one task's hop: a relay learns of a stop once the helper has run, so a command
//! it reads in between still runs (it would, too, had it come a moment earlier).

use std::future::pending;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// A stop, as the helper tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stop {
    /// The tenant was suspended or deleted.
    Kill,
    /// tdb is shutting down: told once, and a kill may still follow.
    Shutdown,
}

/// The relay's side: what it was told so far, and the channel it waits on.
pub(super) struct Stops {
    told: mpsc::Receiver<Stop>,
    killed: bool,
    shutdown: bool,
    /// The helper is gone (only with its runtime): nothing more comes.
    closed: bool,
}

impl Stops {
    /// Starts the session's helper. It ends when it has told a kill, or with the session (the
    /// receiver dropped).
    pub fn watch(kill: &CancellationToken, shutdown: &CancellationToken) -> Self {
        let (tell, told) = mpsc::channel(2);
        let (kill, shutdown) = (kill.clone(), shutdown.clone());
        tokio::spawn(async move {
            let first = tokio::select! {
                biased;
                _ = kill.cancelled() => Stop::Kill,
                _ = shutdown.cancelled() => Stop::Shutdown,
                _ = tell.closed() => return,
            };
            if tell.send(first).await.is_err() || first == Stop::Kill {
                return;
            }
            tokio::select! {
                biased;
                _ = kill.cancelled() => {
                    let _ = tell.send(Stop::Kill).await;
                }
                _ = tell.closed() => {}
            }
        });
        Self {
            told,
            killed: false,
            shutdown: false,
            closed: false,
        }
    }

    /// Whether shutdown was told, taking what the helper said without waiting.
    pub fn shutting_down(&mut self) -> bool {
        while let Ok(stop) = self.told.try_recv() {
            self.note(stop);
        }
        self.shutdown
    }

    /// Whether the tenant's kill was told (as far as the last [`Self::shutting_down`] or
    /// [`Self::next`] took).
    pub fn killed(&self) -> bool {
        self.killed
    }

    /// The next stop: a kill (at once when one was told, and before a shutdown told ahead of
    /// it), or shutdown once. Pending for good when nothing more can come.
    pub async fn next(&mut self) -> Stop {
        if self.killed {
            return Stop::Kill;
        }
        if self.closed {
            return pending().await;
        }
        match self.told.recv().await {
            Some(stop) => {
                self.note(stop);
                // A kill queued behind a shutdown is the one that counts, as when the relay
                // polled the kill token first.
                while let Ok(more) = self.told.try_recv() {
                    self.note(more);
                }
                if self.killed { Stop::Kill } else { stop }
            }
            // The runtime is going away: as a shutdown, once.
            None => {
                self.closed = true;
                if std::mem::replace(&mut self.shutdown, true) {
                    pending().await
                } else {
                    Stop::Shutdown
                }
            }
        }
    }

    fn note(&mut self, stop: Stop) {
        match stop {
            Stop::Kill => self.killed = true,
            Stop::Shutdown => self.shutdown = true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::time::timeout(Duration::from_secs(10), f)
            .await
            .expect("told in time")
    }

    #[tokio::test]
    async fn shutdown_is_told_once_and_a_kill_after_it() {
        let (kill, shutdown) = (CancellationToken::new(), CancellationToken::new());
        let mut stops = Stops::watch(&kill, &shutdown);
        assert!(!stops.shutting_down());
        shutdown.cancel();
        assert_eq!(within(stops.next()).await, Stop::Shutdown);
        assert!(stops.shutting_down());
        // Nothing more until the kill.
        let quiet = tokio::time::timeout(Duration::from_millis(50), stops.next()).await;
        assert!(quiet.is_err(), "shutdown told twice");
        kill.cancel();
        assert_eq!(within(stops.next()).await, Stop::Kill);
        assert_eq!(within(stops.next()).await, Stop::Kill, "a kill stays told");
        assert!(stops.killed());
    }

    #[tokio::test]
    async fn a_kill_comes_before_a_shutdown_told_at_once() {
        let (kill, shutdown) = (CancellationToken::new(), CancellationToken::new());
        shutdown.cancel();
        kill.cancel();
        let mut stops = Stops::watch(&kill, &shutdown);
        assert_eq!(within(stops.next()).await, Stop::Kill);
        assert!(!stops.shutting_down(), "nothing follows a kill");
    }

    #[tokio::test]
    async fn a_kill_told_behind_a_shutdown_comes_first() {
        let (kill, shutdown) = (CancellationToken::new(), CancellationToken::new());
        let mut stops = Stops::watch(&kill, &shutdown);
        shutdown.cancel();
        within(async {
            while stops.told.is_empty() {
                tokio::task::yield_now().await;
            }
        })
        .await;
        kill.cancel();
        within(async {
            while stops.told.len() < 2 {
                tokio::task::yield_now().await;
            }
        })
        .await;
        assert_eq!(within(stops.next()).await, Stop::Kill);
        assert!(stops.shutting_down(), "the shutdown is noted all the same");
    }

    #[tokio::test]
    async fn the_helper_ends_with_the_session() {
        let (kill, shutdown) = (CancellationToken::new(), CancellationToken::new());
        let helpers = tokio::runtime::Handle::current().metrics();
        let stops = Stops::watch(&kill, &shutdown);
        tokio::task::yield_now().await;
        assert_eq!(helpers.num_alive_tasks(), 1);
        drop(stops);
        within(async {
            while helpers.num_alive_tasks() > 0 {
                tokio::task::yield_now().await;
            }
        })
        .await;
    }
}
