//! The proxy's worker threads. Each runs an event loop of its own (a single-threaded runtime
//! with its own I/O driver and timers), as an event-loop pooler does: a session, its client
//! socket and the server connections it takes live on one thread, so the relay's wake-ups never
//! cross cores, and N workers can use N cores. The listener hands each accepted connection to
//! the worker with the fewest sessions; a session may hand the rest of itself, with its client
//! socket, to another worker ([`Handoff`]: a Redis session joining its user's lane there).
//!
//! Nothing a limit depends on is per worker: slots, throttles, bans and budgets live in shared
//! state (locks, atomics and tokio's semaphores, which wake a waiter on whichever runtime it
//! runs), so they hold across workers exactly as with one. What is per worker is what belongs
//! to an event loop: sockets, and the idle server connections kept in [`crate::pool::Pool`].

use std::cell::Cell;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{mpsc, oneshot};
use tokio_util::task::TaskTracker;

/// Work handed to a worker: called on its thread, inside its runtime.
type Job = Box<dyn FnOnce() + Send>;

thread_local! {
    static CURRENT: Cell<Option<usize>> = const { Cell::new(None) };
}

/// The worker the calling thread is, if it is one.
pub fn current() -> Option<usize> {
    CURRENT.with(Cell::get)
}

struct Worker {
    jobs: mpsc::UnboundedSender<Job>,
    /// Sessions running on it.
    sessions: Arc<AtomicUsize>,
    thread: std::thread::JoinHandle<()>,
}

pub struct Workers {
    workers: Vec<Worker>,
    /// Where the search for the least busy worker starts, turn by turn, so ties spread.
    next: AtomicUsize,
}

impl Workers {
    /// Starts `count` workers (at least one), on threads named `name`.
    pub fn start(count: usize, name: &str) -> std::io::Result<Self> {
        let mut workers = Vec::with_capacity(count.max(1));
        for index in 0..count.max(1) {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let (jobs, mut queue) = mpsc::unbounded_channel::<Job>();
            let thread = std::thread::Builder::new()
                .name(name.to_string())
                .spawn(move || {
                    CURRENT.with(|c| c.set(Some(index)));
                    // Tasks run only while this runs: it lasts until every sender is gone,
                    // which the owner does after its tasks have finished.
                    runtime.block_on(async move {
                        while let Some(job) = queue.recv().await {
                            job();
                        }
                    });
                })?;
            workers.push(Worker {
                jobs,
                sessions: Arc::default(),
                thread,
            });
        }
        Ok(Self {
            workers,
            next: AtomicUsize::new(0),
        })
    }

    /// Runs a session on the worker with the fewest: `make` is called there and the future it
    /// returns is tracked by `tracker`. The worker counts it until it ends.
    pub fn spawn<F, Fut>(&self, tracker: &TaskTracker, make: F)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.spawn_on(self.least_busy(), tracker, make);
    }

    /// Runs a session on worker `index` (see [`spawn`](Self::spawn)); `false`, with nothing
    /// run, when there is no such worker.
    pub fn spawn_on<F, Fut>(&self, index: usize, tracker: &TaskTracker, make: F) -> bool
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let Some(worker) = self.workers.get(index) else {
            return false;
        };
        let count = Counted::new(worker.sessions.clone());
        // Counted by the tracker from now on, not from when the worker runs the job: a session
        // handed from one worker to another is never out of the count in between.
        let token = tracker.token();
        let tracker = tracker.clone();
        let job: Job = Box::new(move || {
            let session = make();
            tracker.spawn(async move {
                let _count = count;
                session.await;
            });
            drop(token);
        });
        // A worker's queue closes only when `self` is dropped.
        worker.jobs.send(job).is_ok()
    }

    /// Runs `task` on every worker and waits until each has finished it.
    pub async fn on_each<F, Fut>(&self, task: F)
    where
        F: Fn() -> Fut + Send + Sync + Clone + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let mut done = Vec::with_capacity(self.workers.len());
        for worker in &self.workers {
            let (tx, rx) = oneshot::channel();
            let task = task.clone();
            let job: Job = Box::new(move || {
                tokio::spawn(async move {
                    task().await;
                    let _ = tx.send(());
                });
            });
            if worker.jobs.send(job).is_ok() {
                done.push(rx);
            }
        }
        for rx in done {
            let _ = rx.await;
        }
    }

    /// Ends every worker's loop and waits for its thread. Tasks still running on a worker are
    /// dropped: call this once the sessions' tracker is empty.
    pub fn stop(self) {
        for worker in self.workers {
            drop(worker.jobs);
            if worker.thread.join().is_err() {
                tracing::error!("a proxy worker thread panicked");
            }
        }
    }

    fn least_busy(&self) -> usize {
        let n = self.workers.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        (0..n)
            .map(|i| (start + i) % n)
            .min_by_key(|&i| self.workers[i].sessions.load(Ordering::Relaxed))
            .unwrap_or(0)
    }

    /// Sessions running on each worker, in order.
    #[cfg(test)]
    pub(crate) fn sessions(&self) -> Vec<usize> {
        self.workers
            .iter()
            .map(|w| w.sessions.load(Ordering::Relaxed))
            .collect()
    }
}

/// How a running session hands the rest of itself to another worker (a Redis session moves to
/// the worker of its user's shared server connection, see [`crate::redis::lane`]). It holds the
/// workers weakly: the proxy stops them once its sessions are done.
pub struct Handoff {
    workers: std::sync::Weak<Workers>,
    tracker: TaskTracker,
}

impl Handoff {
    pub fn new(workers: &Arc<Workers>, tracker: &TaskTracker) -> Self {
        Self {
            workers: Arc::downgrade(workers),
            tracker: tracker.clone(),
        }
    }

    /// Whether worker `index` takes sessions now (it may stop before one is handed to it).
    pub fn can_reach(&self, index: usize) -> bool {
        self.workers.upgrade().is_some_and(|workers| {
            workers
                .workers
                .get(index)
                .is_some_and(|w| !w.jobs.is_closed())
        })
    }

    /// Runs `make`'s future on worker `index`, tracked and counted as the session it continues;
    /// `false` when it cannot (the proxy is stopping, or no such worker).
    pub fn spawn_on<F, Fut>(&self, index: usize, make: F) -> bool
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.workers
            .upgrade()
            .is_some_and(|workers| workers.spawn_on(index, &self.tracker, make))
    }
}

/// One session on a worker's count, for as long as this lives.
struct Counted(Arc<AtomicUsize>);

impl Counted {
    fn new(count: Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Self(count)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn sessions_spread_over_workers_each_on_its_own_thread() {
        let workers = Workers::start(2, "test-worker").expect("start");
        let tracker = TaskTracker::new();
        let (seen_tx, mut seen) = mpsc::unbounded_channel();
        let release = tokio_util::sync::CancellationToken::new();
        for _ in 0..4 {
            let seen_tx = seen_tx.clone();
            let release = release.clone();
            workers.spawn(&tracker, move || async move {
                let _ = seen_tx.send((current(), std::thread::current().id()));
                release.cancelled().await;
            });
        }
        let mut on = Vec::new();
        for _ in 0..4 {
            on.push(seen.recv().await.expect("a session ran"));
        }
        // Four sessions, two workers: two each (the least busy worker takes the next one).
        assert_eq!(workers.sessions(), vec![2, 2]);
        let on_worker = |w| on.iter().filter(|(i, _)| *i == Some(w)).count();
        assert_eq!((on_worker(0), on_worker(1)), (2, 2), "{on:?}");
        let threads: std::collections::HashSet<_> = on.iter().map(|(_, t)| *t).collect();
        assert_eq!(threads.len(), 2, "one thread per worker: {on:?}");
        assert!(!threads.contains(&std::thread::current().id()));

        // `on_each` reaches every worker.
        let (ran_tx, mut ran) = mpsc::unbounded_channel();
        workers
            .on_each(move || {
                let ran_tx = ran_tx.clone();
                async move {
                    let _ = ran_tx.send(current());
                }
            })
            .await;
        let mut reached = vec![ran.recv().await.flatten(), ran.recv().await.flatten()];
        reached.sort();
        assert_eq!(reached, vec![Some(0), Some(1)]);

        release.cancel();
        tracker.close();
        tokio::time::timeout(Duration::from_secs(10), tracker.wait())
            .await
            .expect("sessions end");
        assert_eq!(workers.sessions(), vec![0, 0]);
        workers.stop();
    }

    /// A session handed to a worker counts for the tracker before the worker gets to it: a
    /// shutdown waiting for the sessions cannot miss one moving between workers (it did, from
    /// the hand-off until the worker ran the job).
    #[tokio::test]
    async fn a_session_handed_to_a_worker_is_tracked_before_it_runs() {
        let workers = Workers::start(1, "test-worker").expect("start");
        let tracker = TaskTracker::new();
        // The worker is busy until told: what is handed to it next waits in its queue.
        let (go, wait) = std::sync::mpsc::channel::<()>();
        assert!(workers.spawn_on(0, &tracker, move || {
            let _ = wait.recv();
            async {}
        }));
        let (ran_tx, ran) = oneshot::channel();
        assert!(workers.spawn_on(0, &tracker, move || async move {
            let _ = ran_tx.send(());
        }));
        assert!(!workers.spawn_on(1, &tracker, || async {}), "no worker 1");
        tracker.close();
        assert!(
            !tracker.is_empty(),
            "sessions waiting for their worker are tracked"
        );
        let _ = go.send(());
        tokio::time::timeout(Duration::from_secs(10), ran)
            .await
            .expect("the session ran")
            .expect("it said so");
        tokio::time::timeout(Duration::from_secs(10), tracker.wait())
            .await
            .expect("sessions end");
        workers.stop();
    }
}
