//! The query log sink: sessions hand records over without waiting, a writer task stores them in
//! batches. When the writer falls behind, records are dropped and counted; queries never wait.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tdb_catalog::Catalog;
use tdb_catalog::routing::QueryRecord;
use tokio::sync::mpsc;

/// The longest statement text kept in the log, in bytes.
pub const MAX_STATEMENT_LEN: usize = 2048;
const BATCH: usize = 2000;
const CAPACITY: usize = 50_000;

#[derive(Clone)]
pub struct QueryLog {
    tx: Option<mpsc::Sender<QueryRecord>>,
    dropped: Arc<AtomicU64>,
}

impl QueryLog {
    /// The sink and the writer task to spawn; the task ends when every sink is dropped. A
    /// disabled log records nothing (`pg_query_log = false`).
    pub fn new(catalog: Catalog, enabled: bool) -> (Self, impl std::future::Future<Output = ()>) {
        let (tx, rx) = mpsc::channel(CAPACITY);
        let dropped = Arc::new(AtomicU64::new(0));
        let writer = write_batches(catalog, rx, dropped.clone());
        let tx = enabled.then_some(tx);
        (Self { tx, dropped }, writer)
    }

    pub fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    pub fn record(&self, record: QueryRecord) {
        let Some(tx) = &self.tx else {
            return;
        };
        if tx.try_send(record).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Records lost so far (the writer fell behind or the catalog refused a batch).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

async fn write_batches(
    catalog: Catalog,
    mut rx: mpsc::Receiver<QueryRecord>,
    dropped: Arc<AtomicU64>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        if rx.recv_many(&mut batch, BATCH).await == 0 {
            return;
        }
        // A short pause lets a busy proxy fill the batch; an idle one writes at once next time.
        if batch.len() < BATCH {
            tokio::time::sleep(Duration::from_millis(50)).await;
            while batch.len() < BATCH {
                match rx.try_recv() {
                    Ok(r) => batch.push(r),
                    Err(_) => break,
                }
            }
        }
        if let Err(e) = catalog.append_query_log(&batch).await {
            dropped.fetch_add(batch.len() as u64, Ordering::Relaxed);
            tracing::warn!(error = %e, records = batch.len(), "query log batch lost");
        }
        batch.clear();
    }
}
