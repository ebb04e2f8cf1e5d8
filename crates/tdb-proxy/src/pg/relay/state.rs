//! What the relay's two directions share: the work sent and not yet answered, and the state of
//! the server connection's transaction.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use chrono::{DateTime, Utc};
use tdb_catalog::routing::LoggedStatement;

use super::SessionContext;
use super::sharing::NamedStatement;
use crate::ddl::Stmt;
use crate::pg::message::TxStatus;

#[derive(Debug)]
pub(super) enum PendingKind {
    /// A simple query: its statements complete one by one, then `ReadyForQuery`.
    Query,
    /// An `Execute`: ends at its `CommandComplete`, error, or `PortalSuspended`.
    Execute,
    /// A `Sync` (or a function call): ends at `ReadyForQuery`.
    Sync,
}

/// A unit of work the client sent that the server has not finished answering.
pub(super) struct Pending {
    /// Numbers the units of one relay in order (the statement timer tells them apart by it).
    pub seq: u64,
    pub kind: PendingKind,
    pub text: Arc<str>,
    /// Classified statements (workspace sessions only).
    pub stmts: Arc<Vec<Stmt>>,
    pub done: usize,
    started: Instant,
    started_at: DateTime<Utc>,
    pub rows: Option<i64>,
    pub error: Option<String>,
    /// What the client is owed in place of the server's answer, when the proxy sent a stand-in.
    pub stand_in: Option<StandIn>,
}

impl Pending {
    pub fn is_execute(&self) -> bool {
        matches!(self.kind, PendingKind::Execute)
    }
}

/// A statement the proxy sent in place of the client's, and what its answer becomes.
#[derive(Clone)]
pub(super) enum StandIn {
    /// A statement that changes nothing in place of a `DEALLOCATE`: its command tag becomes
    /// this one, and once it completes (not before: in a failed transaction it does not) the
    /// client's names go.
    Deallocate(&'static str, Arc<Vec<NamedStatement>>),
    /// A `DO` block raising the proxy's refusal: the error reaches the client without the
    /// block's context line.
    Refusal,
}

/// Shared between the two directions.
pub(super) struct Shared {
    pub pending: VecDeque<Pending>,
    next_seq: u64,
    /// The unit the proxy cancelled for outliving `query_timeout_ms`: its 57014 error says so.
    pub timed_out: Option<u64>,
    /// What the last `ReadyForQuery` said.
    pub status: TxStatus,
    /// Extended-protocol messages went out after the last `Sync`: the server may be inside an
    /// implicit transaction even when no Execute is pending.
    pub unsynced: bool,
    /// The server is in copy-in mode (after `CopyInResponse`): it ignores `Sync` until the
    /// client's `CopyDone` or `CopyFail`.
    pub copy_in: bool,
    pub draining: bool,
    /// The client side is between reading a batch and having written it to the server.
    pub forwarding: bool,
    /// Transaction pooling: the server side decided to give the connection back; the client
    /// side must not send it anything more.
    pub detaching: bool,
    /// Shared statement names prepared on this server connection (transaction pooling).
    pub prepared: HashSet<String>,
    /// Every Parse sent and not yet answered, in order: its shared name (if it prepares one)
    /// and whether the proxy sent it on its own (its ParseComplete is then not relayed).
    pub parses: VecDeque<(Option<String>, bool)>,
    /// Transaction pooling: the client may have changed its session's settings (the session
    /// reads them back before the connection goes to another client).
    pub dirty: bool,
    /// Transaction pooling: the server dropped every prepared statement on the connection
    /// (`DISCARD ALL`, or a `DEALLOCATE ALL` the proxy did not stand in for), so the client's
    /// names stand for nothing any more.
    pub forget_names: bool,
    /// Transaction pooling: names the client dropped with a `DEALLOCATE` that has completed.
    pub forget: Vec<NamedStatement>,
    /// The answers to [`super::ServerSide::reset`] are still to come (and to be kept from the
    /// client).
    pub resetting: bool,
}

impl Shared {
    pub fn new(prepared: HashSet<String>, resetting: bool) -> Self {
        Self {
            pending: VecDeque::new(),
            next_seq: 0,
            timed_out: None,
            status: TxStatus::Idle,
            unsynced: false,
            copy_in: false,
            draining: false,
            forwarding: false,
            detaching: false,
            prepared,
            parses: VecDeque::new(),
            dirty: false,
            forget_names: false,
            forget: Vec::new(),
            resetting,
        }
    }

    pub fn idle(&self) -> bool {
        self.pending.is_empty()
            && self.status == TxStatus::Idle
            && !self.unsynced
            && !self.copy_in
            && !self.forwarding
            // The reset's answers still to come would be read by whoever uses it next.
            && !self.resetting
    }

    /// Queues a unit of work; `stand_in` is what its answer is replaced by.
    pub fn push(
        &mut self,
        kind: PendingKind,
        text: Arc<str>,
        stmts: Arc<Vec<Stmt>>,
        stand_in: Option<StandIn>,
    ) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.pending.push_back(Pending {
            seq,
            kind,
            text,
            stmts,
            done: 0,
            started: Instant::now(),
            started_at: Utc::now(),
            rows: None,
            error: None,
            stand_in,
        });
    }

    /// Takes the unit at the front if it is an Execute (a completion or an error ends it; a
    /// query or a Sync ends only at `ReadyForQuery`).
    pub fn pop_execute(&mut self) -> Option<Pending> {
        if self.pending.front().is_some_and(Pending::is_execute) {
            self.pending.pop_front()
        } else {
            None
        }
    }

    /// At `ReadyForQuery`: drops the Executes an error made the server skip and takes the unit
    /// the message ends.
    pub fn pop_ready(&mut self) -> Option<Pending> {
        while self.pop_execute().is_some() {}
        self.pending.pop_front()
    }

    /// Whether `name` is prepared on the connection or on its way there.
    pub fn has_statement(&self, name: &str) -> bool {
        self.prepared.contains(name) || self.parses.iter().any(|(n, _)| n.as_deref() == Some(name))
    }
}

pub(super) fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

/// Counts a finished unit of work and records it in the query log.
pub(super) fn log(ctx: &SessionContext, p: Pending) {
    ctx.metrics.queries.increment(1);
    if p.error.is_some() {
        ctx.metrics.failed.increment(1);
    }
    if !ctx.log.enabled() {
        return;
    }
    ctx.log.record(
        &ctx.origin,
        &LoggedStatement {
            text: &p.text,
            duration_us: i64::try_from(p.started.elapsed().as_micros()).unwrap_or(i64::MAX),
            success: p.error.is_none(),
            sqlstate: p.error.as_deref(),
            rows: p.rows,
            started_at: p.started_at,
        },
    );
}
