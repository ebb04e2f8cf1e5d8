//! The query log sink. Sessions add their records to a shared [`LogBatch`] without waiting: a
//! hash lookup and a few appends under a lock nobody else holds for more than a swap. A writer
//! task, which may run on another thread, takes the batch every moment and stores it with one
//! `COPY`. When the writer falls behind, records are dropped and counted; queries never wait.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tdb_catalog::Catalog;
use tdb_catalog::routing::{LogBatch, LogWriter, LoggedStatement, QueryOrigin};
use tokio::sync::Notify;

/// The longest statement text kept in the log, in bytes.
pub const MAX_STATEMENT_LEN: usize = 2048;
/// Records waiting for the writer beyond which new ones are dropped.
const CAPACITY: usize = 50_000;
/// How long the writer lets records gather after the first one of a batch: a busy proxy's
/// batches then cost the server a few `COPY`s a second, and a record shows in the log within
/// about this long.
const GATHER: Duration = Duration::from_millis(250);

struct Shared {
    batch: Mutex<LogBatch>,
    /// Told when a record lands in an empty batch.
    arrived: Notify,
    dropped: AtomicU64,
}

#[derive(Clone)]
pub struct QueryLog {
    shared: Arc<Shared>,
    /// Held by every handle that may record; the writer ends once none is left.
    open: Option<Arc<()>>,
}

impl QueryLog {
    /// The sink and the writer task to spawn; the task writes what is left and ends when every
    /// sink is dropped. A disabled log records nothing (`pg_query_log = false`).
    pub fn new(catalog: Catalog, enabled: bool) -> (Self, impl std::future::Future<Output = ()>) {
        let shared = Arc::new(Shared {
            batch: Mutex::new(LogBatch::default()),
            arrived: Notify::new(),
            dropped: AtomicU64::new(0),
        });
        let open = Arc::new(());
        let writer = write_batches(catalog, shared.clone(), Arc::downgrade(&open));
        let log = Self {
            shared,
            open: enabled.then_some(open),
        };
        (log, writer)
    }

    pub fn enabled(&self) -> bool {
        self.open.is_some()
    }

    /// Adds one statement's record.
    pub fn record(&self, origin: &Arc<QueryOrigin>, statement: &LoggedStatement<'_>) {
        if self.open.is_none() {
            return;
        }
        let first = {
            let mut batch = lock(&self.shared.batch);
            if batch.len() >= CAPACITY {
                drop(batch);
                self.shared.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
            batch.push(origin, statement);
            batch.len() == 1
        };
        if first {
            self.shared.arrived.notify_one();
        }
    }

    /// Records waiting for the writer (for tests, whose writer does not run).
    #[cfg(test)]
    pub(crate) fn pending(&self) -> usize {
        lock(&self.shared.batch).len()
    }

    /// Records lost so far (the writer fell behind or the catalog refused a batch).
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }
}

fn lock(batch: &Mutex<LogBatch>) -> std::sync::MutexGuard<'_, LogBatch> {
    batch.lock().unwrap_or_else(|e| e.into_inner())
}

async fn write_batches(catalog: Catalog, shared: Arc<Shared>, open: Weak<()>) {
    let mut writer = LogWriter::new(catalog);
    loop {
        let closing = open.strong_count() == 0;
        if !closing {
            // A short pause after the first record lets a busy proxy fill the batch; an idle
            // one costs no wake-ups. The timeout notices the last handle going away.
            if tokio::time::timeout(Duration::from_secs(1), shared.arrived.notified())
                .await
                .is_ok()
            {
                tokio::time::sleep(GATHER).await;
            }
        }
        let batch = std::mem::take(&mut *lock(&shared.batch));
        if !batch.is_empty()
            && let Err(e) = writer.write(&batch).await
        {
            shared
                .dropped
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            tracing::warn!(error = %e, records = batch.len(), "query log batch lost");
        }
        if closing {
            return;
        }
    }
}
