//! The client's direction: reads the client's messages, keeps what the query log and the
//! server's direction need (statements, portals, the work in flight), replaces what the proxy
//! refuses or renames, and forwards everything else as it came.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use bytes::{Buf, BytesMut};
use tdb_sql::Kind;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;

use super::refusals::{refuse_pinned, refuse_when_pooled};
use super::sharing::{Names, deallocate, forget, name_key, rewrite_for_sharing};
use super::state::{PendingKind, Shared, StandIn, lock};
use super::{
    ClientState, Header, NO_MEMORY, READ_CHUNK, RelayEnd, SessionContext, UNANALYSED, analyse,
    bounded, header, wait_until,
};
use crate::ddl::{Stmt, statements};
use crate::pg::frame;
use crate::pg::message::{self, Frontend, Target, front};

/// Messages larger than this are streamed rather than inspected whole (tenant sessions).
const INSPECT_LIMIT: usize = 1 << 20;
/// Workspace sessions inspect every statement whole (for DDL capture), up to this size.
const WORKSPACE_LIMIT: usize = 64 << 20;
/// A message held whole that is longer than this takes its bytes from the proxy's shared
/// budget first, and the session's buffer shrinks back once it is through: many sessions with
/// long statements cannot grow the process without bound.
const LARGE_MESSAGE: usize = 1 << 20;
/// Prepared statements remembered per session for the query log.
const MAX_STATEMENTS: usize = 10_000;
/// Work sent and not yet answered, at most: past it the relay stops reading from the client
/// until the server catches up (a client pipelining without reading cannot grow it forever).
const MAX_PENDING: usize = 10_000;
/// Custom settings a client may keep per session, by name (see
/// [`ClientState::custom_settings`]).
const MAX_CUSTOM_SETTINGS: usize = 64;
/// The longest custom setting name kept (PostgreSQL truncates none, but names this long are
/// not a program's).
const MAX_CUSTOM_NAME: usize = 255;

/// Client bytes read and not yet relayed.
#[derive(Default)]
pub(super) struct Input {
    pub buf: BytesMut,
    /// What remains of a message being streamed through.
    pub skip: usize,
    /// The shared memory a long message being read whole holds.
    held: Option<tdb_engines::budget::Answer>,
}

/// The client's statements and portals, kept across relays.
#[derive(Default)]
pub(super) struct Book {
    /// Statement and portal texts, for the log.
    prepared: HashMap<Vec<u8>, Prepared>,
    portals: HashMap<Vec<u8>, Prepared>,
    /// Transaction pooling: the client's statement names and what they stand for.
    pub named: Names,
}

/// A prepared statement or portal: its text for the log, and its statements on workspaces.
#[derive(Clone)]
struct Prepared {
    text: Arc<str>,
    stmts: Arc<Vec<Stmt>>,
    /// Transaction pooling: running it may change the session's settings.
    settings: bool,
    /// What its Execute is owed in place of the server's answer.
    stand_in: Option<StandIn>,
}

/// How far a batch of client messages goes.
struct Batch {
    /// Bytes of whole messages handled (and to be forwarded).
    len: usize,
    /// The client said goodbye (its Terminate is not forwarded).
    terminate: bool,
}

pub(super) async fn client_to_server<R, W>(
    client: &mut R,
    server: &mut W,
    shared: &Mutex<Shared>,
    answered: &Notify,
    ctx: &SessionContext,
    state: &mut ClientState,
) -> RelayEnd
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let ClientState {
        input,
        book,
        custom_settings,
        ..
    } = state;
    let mut up = Upstream::new(shared, ctx, book, custom_settings);
    // Bytes read before a re-attach are handled before reading more.
    let mut unread = !input.buf.is_empty();
    loop {
        if !unread {
            // Back-pressure: a client far ahead of the server's answers waits for some.
            wait_until(answered, || lock(shared).pending.len() < MAX_PENDING).await;
            if let Err(end) = read(client, input, ctx).await {
                return end;
            }
        }
        unread = false;
        up.wait_for_gate().await;
        if up.detaching() {
            // The server side ends the relay; these bytes wait for the next connection.
            return std::future::pending().await;
        }
        let batch = match up.batch(input).await {
            Ok(batch) => batch,
            Err(end) => return end,
        };
        if batch.len > 0
            && let Err(end) = up.forward(server, input, batch.len).await
        {
            return end;
        }
        if ctx.transaction_mode {
            lock(shared).forwarding = false;
        }
        if batch.terminate {
            return RelayEnd::ClientGone;
        }
    }
}

async fn read<R: AsyncRead + Unpin>(
    client: &mut R,
    input: &mut Input,
    ctx: &SessionContext,
) -> Result<(), RelayEnd> {
    if input.buf.capacity() - input.buf.len() < READ_CHUNK / 2 {
        input.buf.reserve(READ_CHUNK);
    }
    match client.read_buf(&mut input.buf).await {
        Ok(0) | Err(_) => Err(RelayEnd::ClientGone),
        Ok(n) => {
            ctx.metrics.bytes_from_clients.increment(n as u64);
            Ok(())
        }
    }
}

/// The client's direction of one relay.
struct Upstream<'a> {
    shared: &'a Mutex<Shared>,
    ctx: &'a SessionContext,
    book: &'a mut Book,
    custom_settings: &'a mut BTreeSet<String>,
    /// Workspaces and provisioned databases see every statement whole (DDL capture, the
    /// identity guard); a statement too large for that is refused.
    inspect_all: bool,
    /// Messages longer than this stream through.
    limit: usize,
    no_stmts: Arc<Vec<Stmt>>,
    /// The batch as it goes to the server, when a message in it was replaced: the client's
    /// bytes up to `flushed`, with the replacements in place.
    out: Vec<u8>,
    flushed: usize,
}

impl<'a> Upstream<'a> {
    fn new(
        shared: &'a Mutex<Shared>,
        ctx: &'a SessionContext,
        book: &'a mut Book,
        custom_settings: &'a mut BTreeSet<String>,
    ) -> Self {
        let inspect_all = ctx.is_workspace() || ctx.pinned_identity;
        Self {
            shared,
            ctx,
            book,
            custom_settings,
            inspect_all,
            limit: if inspect_all {
                WORKSPACE_LIMIT
            } else {
                INSPECT_LIMIT
            },
            no_stmts: Arc::new(Vec::new()),
            out: Vec::new(),
            flushed: 0,
        }
    }

    /// A held gate parks new work: the bytes wait here until it opens.
    async fn wait_for_gate(&self) {
        if let Some(gate) = &self.ctx.gate
            && gate.is_held()
            && lock(self.shared).idle()
        {
            gate.pass().await;
        }
    }

    /// Transaction pooling: whether the server side is giving the connection back (the bytes
    /// read then belong to the next one). Otherwise marks the batch as on its way.
    fn detaching(&mut self) -> bool {
        if !self.ctx.transaction_mode {
            return false;
        }
        let mut s = lock(self.shared);
        s.forwarding = !s.detaching;
        let all = std::mem::take(&mut s.forget_names);
        forget(&mut self.book.named, all, &mut s.forget);
        s.detaching
    }

    /// Handles the whole messages read so far.
    async fn batch(&mut self, input: &mut Input) -> Result<Batch, RelayEnd> {
        let Input { buf, skip, held } = input;
        let mut pos = 0;
        self.flushed = 0;
        self.out.clear();
        while pos < buf.len() {
            let invalid = "invalid message length from the client";
            let (tag, total) = match header(buf, &mut pos, skip, invalid)? {
                Header::Message(tag, total) => (tag, total),
                Header::Skipped => continue,
                Header::Incomplete | Header::Invalid => break,
            };
            if tag == front::COPY_DATA || total > self.limit {
                self.stream(tag, &buf[pos + 5..buf.len().min(pos + total)])?;
                *skip = total;
                continue;
            }
            if buf.len() - pos < total {
                self.hold(total, held)?;
                buf.reserve(total - (buf.len() - pos));
                break;
            }
            let body = &buf[pos + 5..pos + total];
            let msg = Frontend::decode(tag, body);
            if msg == Frontend::Terminate {
                return Ok(Batch {
                    len: pos,
                    terminate: true,
                });
            }
            if message::is_extended(tag) {
                lock(self.shared).unsynced = true;
            }
            let (replacement, stand_in) = self.inspect(tag, body, msg).await?;
            if let Some(message) = replacement {
                self.out.extend_from_slice(&buf[self.flushed..pos]);
                self.out.extend_from_slice(&message);
                self.flushed = pos + total;
            }
            self.track(msg, stand_in).await?;
            pos += total;
        }
        Ok(Batch {
            len: pos,
            terminate: false,
        })
    }

    /// A message too long to look at (or COPY data) streams through; `prefix` is what of it
    /// has been read.
    fn stream(&mut self, tag: u8, prefix: &[u8]) -> Result<(), RelayEnd> {
        if !message::carries_statement(tag) {
            return Ok(());
        }
        if self.ctx.transaction_mode {
            // It may change anything.
            lock(self.shared).dirty = true;
        }
        if self.inspect_all {
            return Err(RelayEnd::ProtocolError(
                "statement too large for this session",
            ));
        }
        if tag == front::QUERY {
            let text = bounded(prefix);
            lock(self.shared).push(PendingKind::Query, text, self.no_stmts.clone(), None);
        }
        Ok(())
    }

    /// A long message to be read whole takes its memory from the shared budget first.
    fn hold(
        &self,
        total: usize,
        held: &mut Option<tdb_engines::budget::Answer>,
    ) -> Result<(), RelayEnd> {
        if total > LARGE_MESSAGE && held.is_none() {
            let memory = self.ctx.statements_memory.answer(total);
            if memory.take(total).is_err() {
                return Err(NO_MEMORY);
            }
            *held = Some(memory);
        }
        Ok(())
    }

    /// What the server gets in place of the message, if not the message itself, and what the
    /// client is then owed in place of the server's answer.
    async fn inspect(
        &mut self,
        tag: u8,
        body: &[u8],
        msg: Frontend<'_>,
    ) -> Result<(Option<Vec<u8>>, Option<StandIn>), RelayEnd> {
        let mut replacement = self.refusal(tag, body).await?;
        let mut stand_in = replacement.is_some().then_some(StandIn::Refusal);
        if !self.ctx.transaction_mode {
            return Ok((replacement, stand_in));
        }
        if tag == front::QUERY && replacement.is_none() && tdb_sql::may_change_settings(body) {
            lock(self.shared).dirty = true;
            self.remember_custom_settings(body).await?;
        }
        if replacement.is_none()
            && let Some((name, query)) = msg.statement()
            && let Some(d) = tdb_sql::deallocation(query)
        {
            let (message, answer) = deallocate(name, &d, &self.book.named);
            (replacement, stand_in) = (Some(message), Some(answer));
        }
        let renamed = {
            let sent = replacement
                .as_ref()
                .map_or(msg, |m| Frontend::decode(tag, &m[5..]));
            let epoch = self.ctx.plan_epoch.load(Ordering::Relaxed);
            let mut renamed = Vec::new();
            rewrite_for_sharing(
                &sent,
                &mut self.book.named,
                self.shared,
                epoch,
                &mut renamed,
            )
            .then_some(renamed)
        };
        Ok((renamed.or(replacement), stand_in))
    }

    /// The statement that makes the server refuse the client's, when the session's rules
    /// refuse it (see [`super::refusals`]).
    async fn refusal(&self, tag: u8, body: &[u8]) -> Result<Option<Vec<u8>>, RelayEnd> {
        if !message::carries_statement(tag) {
            return Ok(None);
        }
        let refusal = if self.ctx.pinned_identity {
            let schema = self.ctx.origin.database.clone();
            analyse(body, move |body| refuse_pinned(tag, body, &schema)).await
        } else if self.ctx.transaction_mode && tdb_sql::may_be_refused_when_pooled(body) {
            analyse(body, move |body| refuse_when_pooled(tag, body)).await
        } else {
            return Ok(None);
        };
        refusal.ok_or(UNANALYSED)
    }

    /// Keeps what the log and the server's direction need to know of a message.
    async fn track(
        &mut self,
        msg: Frontend<'_>,
        stand_in: Option<StandIn>,
    ) -> Result<(), RelayEnd> {
        match msg {
            Frontend::Query { sql } => self.track_query(sql, stand_in).await?,
            Frontend::Parse { name, query, .. } => {
                self.track_parse(name, query, stand_in).await?;
            }
            Frontend::Bind {
                portal, statement, ..
            } => self.track_bind(portal, statement),
            Frontend::Execute { portal } => self.track_execute(portal),
            Frontend::Sync => {
                let mut s = lock(self.shared);
                // A Sync during copy-in is ignored by the server: it gets no ReadyForQuery.
                if !s.copy_in {
                    s.unsynced = false;
                    s.push(
                        PendingKind::Sync,
                        Arc::from(""),
                        self.no_stmts.clone(),
                        None,
                    );
                }
            }
            Frontend::CopyDone | Frontend::CopyFail => lock(self.shared).copy_in = false,
            Frontend::FunctionCall => {
                let mut s = lock(self.shared);
                if self.ctx.transaction_mode {
                    s.dirty = true;
                }
                let text = Arc::from("<function call>");
                s.push(PendingKind::Sync, text, self.no_stmts.clone(), None);
            }
            Frontend::Close { target, name } => {
                match target {
                    Target::Statement => self.book.prepared.remove(&name_key(name)),
                    Target::Portal => self.book.portals.remove(&name_key(name)),
                };
            }
            _ => {}
        }
        Ok(())
    }

    async fn track_query(&mut self, sql: &[u8], stand_in: Option<StandIn>) -> Result<(), RelayEnd> {
        let stmts = if self.ctx.is_workspace() {
            let parsed = analyse(sql, |sql| statements(&frame::cstr_prefix(sql, usize::MAX))).await;
            Arc::new(parsed.ok_or(UNANALYSED)?)
        } else {
            self.no_stmts.clone()
        };
        lock(self.shared).push(PendingKind::Query, bounded(sql), stmts, stand_in);
        Ok(())
    }

    async fn track_parse(
        &mut self,
        name: &[u8],
        query: &[u8],
        stand_in: Option<StandIn>,
    ) -> Result<(), RelayEnd> {
        // Workspaces keep the classified statements only when they matter to DDL capture, so
        // memory stays bounded by the log text.
        let stmts = if self.ctx.is_workspace() {
            let parsed = analyse(query, |q| statements(&String::from_utf8_lossy(q))).await;
            let all = parsed.ok_or(UNANALYSED)?;
            if all
                .iter()
                .any(|s| matches!(s.kind, Kind::Ddl | Kind::Transaction(_)))
            {
                Arc::new(all)
            } else {
                self.no_stmts.clone()
            }
        } else {
            self.no_stmts.clone()
        };
        let settings = self.ctx.transaction_mode && tdb_sql::may_change_settings(query);
        if settings {
            self.remember_custom_settings(query).await?;
        }
        if name.is_empty() || self.book.prepared.len() < MAX_STATEMENTS {
            let prepared = Prepared {
                text: bounded(query),
                stmts,
                settings,
                stand_in,
            };
            self.book.prepared.insert(name_key(name), prepared);
        }
        Ok(())
    }

    fn track_bind(&mut self, portal: &[u8], statement: &[u8]) {
        let portals = &mut self.book.portals;
        match self.book.prepared.get(&name_key(statement)) {
            Some(p) if portal.is_empty() || portals.len() < MAX_STATEMENTS => {
                portals.insert(name_key(portal), p.clone());
            }
            // A statement the relay did not keep: the portal's old entry would stand for the
            // wrong statement.
            _ => {
                portals.remove(&name_key(portal));
            }
        }
    }

    fn track_execute(&mut self, portal: Option<&[u8]>) {
        let p = portal.and_then(|portal| self.book.portals.get(&name_key(portal)));
        let mut s = lock(self.shared);
        // A portal the relay did not keep may run anything.
        if self.ctx.transaction_mode && p.is_none_or(|p| p.settings) {
            s.dirty = true;
        }
        let (text, stmts, stand_in) = match p {
            Some(p) => (p.text.clone(), p.stmts.clone(), p.stand_in.clone()),
            None => (Arc::from("<unknown portal>"), self.no_stmts.clone(), None),
        };
        s.push(PendingKind::Execute, text, stmts, stand_in);
    }

    /// Adds the custom settings `sql` names (as `SET` or `set_config`) to what the client is
    /// known to have set, up to [`MAX_CUSTOM_SETTINGS`].
    async fn remember_custom_settings(&mut self, sql: &[u8]) -> Result<(), RelayEnd> {
        let names = analyse(sql, |sql| {
            tdb_sql::custom_settings(&frame::cstr_prefix(sql, usize::MAX))
        })
        .await
        .ok_or(UNANALYSED)?;
        for name in names {
            if self.custom_settings.len() < MAX_CUSTOM_SETTINGS && name.len() <= MAX_CUSTOM_NAME {
                self.custom_settings.insert(name);
            }
        }
        Ok(())
    }

    /// Sends the batch's first `len` bytes (with their replacements) to the server.
    async fn forward<W: AsyncWrite + Unpin>(
        &mut self,
        server: &mut W,
        input: &mut Input,
        len: usize,
    ) -> Result<(), RelayEnd> {
        let Input { buf, held, .. } = input;
        let bytes: &[u8] = if self.flushed == 0 && self.out.is_empty() {
            &buf[..len]
        } else {
            self.out.extend_from_slice(&buf[self.flushed..len]);
            &self.out
        };
        if server.write_all(bytes).await.is_err() || server.flush().await.is_err() {
            return Err(RelayEnd::ServerGone);
        }
        buf.advance(len);
        if held.is_some() && buf.len() < READ_CHUNK {
            // The long message is through: its memory goes back (advancing past it keeps the
            // whole allocation; a fresh buffer does not).
            *buf = BytesMut::from(&buf[..]);
            *held = None;
            self.out = Vec::new();
        }
        Ok(())
    }
}
