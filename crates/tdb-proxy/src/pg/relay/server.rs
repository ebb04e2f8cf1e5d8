//! The server's direction: streams the server's answers to the client, reading the few that
//! end work (completions, errors, `ReadyForQuery`) to finish the pending units, log them,
//! capture DDL and follow the transaction; answers to what the proxy sent on its own are kept
//! from the client, and answers to its stand-ins are replaced by what the client is owed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;

use super::capture::queue_ddl;
use super::errors::{Rewrite, was_ddl};
use super::sharing::{NamedStatement, missing_shared_statement, stale_plan};
use super::state::{PendingKind, Shared, StandIn, lock, log};
use super::{Header, READ_CHUNK, RESET_FAILED, RelayEnd, SessionContext, header};
use crate::ddl::DdlCapture;
use crate::pg::frame;
use crate::pg::message::{self, Backend, TxStatus};
use crate::pg::sqlstate;

/// What becomes of a server message on its way to the client.
enum Edit {
    /// It goes through as it came.
    Keep,
    /// The client gets these bytes in its place.
    Replace(Vec<u8>),
    /// The client does not see it.
    Hide,
    /// These bytes reach the client first (everything before it is written out at once).
    Before(Vec<u8>),
}

/// Where a batch of server messages leaves the relay.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stop {
    No,
    /// Shutdown found the session between transactions.
    Drained,
    /// Transaction pooling: the transaction is over.
    Detach,
}

/// `at_boundary` is false from the first byte written to the client until a whole number of
/// messages has reached it (a row streams through in pieces, a write may be cut short).
pub(super) async fn server_to_client<R, W>(
    server: &mut R,
    client: &mut W,
    shared: &Mutex<Shared>,
    answered: &Notify,
    ctx: &SessionContext,
    at_boundary: &AtomicBool,
) -> RelayEnd
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut down = Downstream {
        shared,
        ctx,
        capture: ctx.capture_ddl_into.as_ref().map(|_| DdlCapture::default()),
        tenant: ctx.origin.tenant.is_some(),
    };
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let mut skip = 0usize;
    loop {
        if buf.capacity() - buf.len() < READ_CHUNK / 2 {
            buf.reserve(READ_CHUNK);
        }
        match server.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return RelayEnd::ServerGone,
            Ok(n) => ctx.metrics.bytes_to_clients.increment(n as u64),
        }
        at_boundary.store(false, Ordering::Relaxed);
        let (pos, stop) = match down.batch(client, &mut buf, &mut skip).await {
            Ok(batch) => batch,
            Err(end) => return end,
        };
        // Units were answered: a client side waiting for room in the queue may go on.
        answered.notify_waiters();
        if client.flush().await.is_err() {
            return RelayEnd::ClientGone;
        }
        at_boundary.store(skip == 0, Ordering::Relaxed);
        buf.advance(pos);
        match stop {
            Stop::No => {}
            Stop::Drained => return RelayEnd::Drained,
            // Anything the server sent past ReadyForQuery (a notice, a notification) belongs
            // to no one now: such a connection is not given to another client.
            Stop::Detach => {
                return RelayEnd::Detached {
                    reusable: buf.is_empty(),
                };
            }
        }
    }
}

/// The server's direction of one relay.
struct Downstream<'a> {
    shared: &'a Mutex<Shared>,
    ctx: &'a SessionContext,
    capture: Option<DdlCapture>,
    tenant: bool,
}

impl Downstream<'_> {
    /// Relays the whole messages read so far (and the part of a streamed one); returns how far
    /// it went and whether the relay stops there.
    async fn batch<W: AsyncWrite + Unpin>(
        &mut self,
        client: &mut W,
        buf: &mut BytesMut,
        skip: &mut usize,
    ) -> Result<(usize, Stop), RelayEnd> {
        let (mut pos, mut flushed) = (0, 0);
        let mut stop = Stop::No;
        while pos < buf.len() {
            let invalid = "invalid message length from the server";
            let (tag, total) = match header(buf, &mut pos, skip, invalid)? {
                Header::Message(tag, total) => (tag, total),
                Header::Skipped => continue,
                Header::Incomplete | Header::Invalid => break,
            };
            let resetting = lock(self.shared).resetting;
            // Rows and COPY data stream through; every other server message is small or must
            // be read whole (an error, however long, decides what committed). The answers to
            // the reset are read whole and kept from the client.
            if !resetting && message::is_data(tag) {
                *skip = total;
                continue;
            }
            if buf.len() - pos < total {
                buf.reserve(total - (buf.len() - pos));
                break;
            }
            let body = &buf[pos + 5..pos + total];
            let edit = if resetting {
                self.reset_answer(tag)?
            } else {
                let (edit, then) = self.answer(Backend::decode(tag, body)).await;
                stop = then;
                edit
            };
            apply(client, buf, &mut flushed, pos, total, edit).await?;
            pos += total;
            if stop != Stop::No {
                break;
            }
        }
        if flushed < pos && write(client, &buf[flushed..pos]).await.is_err() {
            return Err(RelayEnd::ClientGone);
        }
        Ok((pos, stop))
    }

    /// An answer to the reset that [`super::ServerSide::reset`] sent.
    fn reset_answer(&mut self, tag: u8) -> Result<Edit, RelayEnd> {
        match tag {
            message::back::ERROR => return Err(RESET_FAILED),
            message::back::READY_FOR_QUERY => lock(self.shared).resetting = false,
            _ => {}
        }
        Ok(Edit::Hide)
    }

    /// What a message read whole does to the relay's state, and to the client's copy of it.
    async fn answer(&mut self, msg: Backend<'_>) -> (Edit, Stop) {
        let edit = match msg {
            Backend::CommandComplete { body } => self.completed(Some(body)),
            Backend::EmptyQuery | Backend::PortalSuspended => self.completed(None),
            Backend::ParameterStatus if self.ctx.transaction_mode => {
                lock(self.shared).dirty = true;
                Edit::Keep
            }
            Backend::Error { body } => self.failed(body),
            Backend::ParseComplete => self.parsed(),
            Backend::CopyIn => {
                self.copy_in();
                Edit::Keep
            }
            Backend::ReadyForQuery { status } => return self.ready(status).await,
            _ => Edit::Keep,
        };
        (edit, Stop::No)
    }

    /// `CommandComplete` (`body`: its tag), `EmptyQueryResponse` or `PortalSuspended`.
    fn completed(&mut self, body: Option<&[u8]>) -> Edit {
        let mut stand_in: Option<(&'static str, Arc<Vec<NamedStatement>>)> = None;
        let finished = {
            let mut s = lock(self.shared);
            s.copy_in = false;
            if self.ctx.transaction_mode
                && matches!(
                    body.map(frame::command_tag),
                    Some("DEALLOCATE ALL" | "DISCARD ALL")
                )
            {
                // Every statement on the connection is gone: prepared again when next used,
                // under the names the clients still hold.
                s.prepared.clear();
                s.forget_names = true;
            }
            let Some(p) = s.pending.front_mut() else {
                return Edit::Keep;
            };
            if let Some(body) = body {
                if let Some(StandIn::Deallocate(answer, names)) = &p.stand_in {
                    stand_in = Some((*answer, names.clone()));
                }
                if let Some(n) = frame::command_rows(body) {
                    p.rows = Some(p.rows.unwrap_or(0) + n);
                }
                if let Some(c) = self.capture.as_mut()
                    && let Some(stmt) = p.stmts.get(p.done)
                {
                    c.completed(stmt, frame::command_tag(body));
                }
                p.done += 1;
            }
            s.pop_execute()
        };
        if let Some(p) = finished {
            log(self.ctx, p);
        }
        let Some((answer, names)) = stand_in else {
            return Edit::Keep;
        };
        lock(self.shared).forget.extend(names.iter().cloned());
        let mut complete = Vec::with_capacity(32);
        frame::command_complete(&mut complete, answer);
        Edit::Replace(complete)
    }

    /// `ErrorResponse`: ends the unit at the front, and may reach the client in other words
    /// (see [`super::errors`]).
    fn failed(&mut self, body: &[u8]) -> Edit {
        let code = frame::error_code(body).unwrap_or("").to_string();
        if let Some(c) = self.capture.as_mut() {
            c.failed();
        }
        if self.ctx.transaction_mode {
            self.forget_stale_statements(&code, body);
        }
        let (finished, rewrite) = {
            let mut s = lock(self.shared);
            let front = s.pending.front();
            let rewrite = Rewrite {
                refused: front.is_some_and(|p| matches!(p.stand_in, Some(StandIn::Refusal))),
                ddl_refused: self.tenant
                    && code == sqlstate::INSUFFICIENT_PRIVILEGE
                    && front.is_some_and(was_ddl),
                timed_out: code == sqlstate::QUERY_CANCELED
                    && s.timed_out.is_some()
                    && s.timed_out == front.map(|p| p.seq),
            };
            s.copy_in = false;
            // Everything after the failing message is skipped up to Sync: no Parse still
            // outstanding will be answered.
            s.parses.clear();
            if let Some(p) = s.pending.front_mut() {
                p.error = Some(code);
            }
            (s.pop_execute(), rewrite)
        };
        if let Some(p) = finished {
            log(self.ctx, p);
        }
        rewrite
            .apply(self.ctx, body)
            .map_or(Edit::Keep, Edit::Replace)
    }

    /// Transaction pooling: a stale plan or a shared statement dropped behind the proxy's back
    /// means statements must be prepared again.
    fn forget_stale_statements(&self, code: &str, body: &[u8]) {
        if stale_plan(code, body)
            && lock(self.shared)
                .pending
                .front()
                .is_some_and(|p| p.is_execute())
        {
            // Clients prepare what they retry under new shared names, which no server
            // connection holds with the stale plan.
            self.ctx.plan_epoch.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(name) = missing_shared_statement(code, body) {
            // Prepared again by whoever needs it next.
            lock(self.shared).prepared.remove(&name);
        }
    }

    /// `ParseComplete`: the statement is prepared; the client does not see the answer to a
    /// Parse it did not send.
    fn parsed(&self) -> Edit {
        let mut s = lock(self.shared);
        let Some((name, injected)) = s.parses.pop_front() else {
            return Edit::Keep;
        };
        if let Some(name) = name {
            s.prepared.insert(name);
        }
        if injected { Edit::Hide } else { Edit::Keep }
    }

    /// `CopyInResponse` to an Execute: the Sync sent right behind it is ignored by the server,
    /// so it will never be answered.
    fn copy_in(&self) {
        let mut s = lock(self.shared);
        s.copy_in = true;
        if s.pending.front().is_some_and(|p| p.is_execute())
            && s.pending
                .get(1)
                .is_some_and(|p| matches!(p.kind, PendingKind::Sync))
        {
            s.pending.remove(1);
        }
    }

    /// `ReadyForQuery`: the end of a query or of a Sync's work, and the transaction's status.
    async fn ready(&mut self, status: TxStatus) -> (Edit, Stop) {
        let (finished, stop) = {
            let mut s = lock(self.shared);
            s.status = status;
            let finished = s.pop_ready();
            let stop = if s.draining && s.idle() {
                Stop::Drained
            } else if self.ctx.transaction_mode && s.idle() {
                s.detaching = true;
                Stop::Detach
            } else {
                Stop::No
            };
            (finished, stop)
        };
        if let Some(p) = finished
            && matches!(p.kind, PendingKind::Query)
        {
            log(self.ctx, p);
        }
        let committed = match self.capture.as_mut() {
            Some(c) => c.ready(status.byte()),
            None => Vec::new(),
        };
        if committed.is_empty() {
            return (Edit::Keep, stop);
        }
        // Boxed: the catalog's future is some 15 KB, and the relay's future, moved on every
        // transaction, would carry it for every session (DDL capture is on workspaces only).
        let notice = Box::pin(queue_ddl(self.ctx, &committed)).await;
        (Edit::Before(notice.unwrap_or_default()), stop)
    }
}

/// Writes what `edit` asks of the message at `pos` (`total` bytes long), with the client's
/// bytes before it that are still unwritten (from `flushed`).
async fn apply<W: AsyncWrite + Unpin>(
    client: &mut W,
    buf: &[u8],
    flushed: &mut usize,
    pos: usize,
    total: usize,
    edit: Edit,
) -> Result<(), RelayEnd> {
    let (insert, next) = match edit {
        Edit::Keep => return Ok(()),
        Edit::Replace(bytes) => (bytes, pos + total),
        Edit::Hide => (Vec::new(), pos + total),
        Edit::Before(bytes) => (bytes, pos),
    };
    if write(client, &buf[*flushed..pos]).await.is_err() || write(client, &insert).await.is_err() {
        return Err(RelayEnd::ClientGone);
    }
    *flushed = next;
    Ok(())
}

async fn write<W: AsyncWrite + Unpin>(w: &mut W, bytes: &[u8]) -> std::io::Result<()> {
    if bytes.is_empty() {
        return Ok(());
    }
    w.write_all(bytes).await
}
