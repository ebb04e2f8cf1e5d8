//! The relay between an authenticated client and its server connection. Bytes go through as
//! they came; the relay reads only message headers, plus the few messages it must understand:
//! statements (for the query log and, on workspaces, DDL capture), completions, errors and
//! `ReadyForQuery` (transaction state). Row data and COPY data are streamed without buffering
//! the whole message. Each direction runs as its own future, so neither can block the other.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::{Buf, BytesMut};
use chrono::{DateTime, Utc};
use tdb_catalog::Catalog;
use tdb_catalog::routing::{LoggedStatement, QueryOrigin};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::frame::{self, PgError};
use super::sqlstate;
use super::watchdog::{Expired, Watchdog};
use crate::cancel::CancelTarget;
use crate::ddl::{DdlCapture, Stmt, statements};
use crate::gate::Gate;
use crate::querylog::{MAX_STATEMENT_LEN, QueryLog};
use tdb_sql::Kind;

/// The message the spec gives for DDL attempted on a tenant database.
pub const DDL_ON_TENANT: &str =
    "DDL not allowed on tenant databases. Deploy schema through blueprints.";
/// Messages larger than this are streamed rather than inspected whole (tenant sessions).
const INSPECT_LIMIT: usize = 1 << 20;
/// Workspace sessions inspect every statement whole (for DDL capture), up to this size.
const WORKSPACE_LIMIT: usize = 64 << 20;
/// A message held whole that is longer than this takes its bytes from the proxy's shared
/// budget first, and the session's buffer shrinks back once it is through: many sessions with
/// long statements cannot grow the process without bound.
const LARGE_MESSAGE: usize = 1 << 20;
/// How a session ends when the proxy's memory for long statements is all taken.
const NO_MEMORY: RelayEnd =
    RelayEnd::ProtocolError("statement too large for the memory tdb has free now; try again");
/// Prepared statements remembered per session for the query log.
const MAX_STATEMENTS: usize = 10_000;
/// PostgreSQL keeps the first 63 bytes of a statement or portal name; so does the relay.
const MAX_NAME: usize = 63;
/// Work sent and not yet answered, at most: past it the relay stops reading from the client
/// until the server catches up (a client pipelining without reading cannot grow it forever).
const MAX_PENDING: usize = 10_000;
const READ_CHUNK: usize = 16 * 1024;
/// Statements longer than this are parsed on the blocking pool rather than on the proxy's
/// thread: libpg_query takes about 0.3 ms a kilobyte, so a multi-megabyte statement parsed
/// inline would hold up every other session for seconds.
const PARSE_INLINE_LIMIT: usize = 8 * 1024;
/// How a session ends when the analysis of one of its statements failed (a parser panic).
const UNANALYSED: RelayEnd = RelayEnd::ProtocolError("the statement could not be analysed");
/// How a session ends when its server connection could not be given its settings.
const RESET_FAILED: RelayEnd =
    RelayEnd::ProtocolError("a server connection could not be given this session's settings");

/// Who the session is, for the query log and for what the relay must do.
pub struct SessionContext {
    /// Project, tenant or workspace, database and user: the origin of the session's records in
    /// the query log.
    pub origin: Arc<QueryOrigin>,
    /// Workspace in tenant mode: DDL that commits is queued on this blueprint.
    pub capture_ddl_into: Option<String>,
    pub gate: Option<Arc<Gate>>,
    pub log: QueryLog,
    pub catalog: Catalog,
    /// Cancelled when the tenant is suspended or deleted.
    pub kill: CancellationToken,
    /// Cancelled when tdb shuts down; open transactions then get `shutdown_grace` to finish.
    pub shutdown: CancellationToken,
    pub shutdown_grace: std::time::Duration,
    /// Transaction pooling: the relay ends (`Detached`) when a transaction is over.
    pub transaction_mode: bool,
    /// A provisioned (schema-per-tenant) database: statements that would change the session's
    /// role or schema search path are refused before the server runs them.
    pub pinned_identity: bool,
    pub metrics: crate::metrics::ProxyMetrics,
    /// The workspace's `query_timeout_ms`, which the proxy enforces on every unit of work
    /// whatever the session set (see [`super::watchdog`]); `None`: no limit.
    pub query_timeout: Option<std::time::Duration>,
    /// Memory for statements held whole past [`LARGE_MESSAGE`], shared by every session.
    pub statements_memory: tdb_engines::budget::MemoryBudget,
    /// Transaction pooling: part of every shared statement name on the database, moved on
    /// when the server says a cached plan went stale (a deployment changed a table under it),
    /// so the statements clients prepare next are new on every server connection.
    pub plan_epoch: Arc<AtomicU64>,
}

impl SessionContext {
    fn is_workspace(&self) -> bool {
        self.origin.workspace.is_some()
    }
}

/// Why a relay ended.
#[derive(Debug, PartialEq, Eq)]
pub enum RelayEnd {
    /// The client said goodbye or closed its connection.
    ClientGone,
    /// The server closed the connection (it has told the client why, if it could).
    ServerGone,
    /// `kill` was cancelled: the tenant was suspended or deleted.
    Killed,
    /// Shutdown was requested and the session reached a point between transactions.
    Drained,
    /// The shutdown deadline passed with a transaction still open.
    DeadlinePassed,
    /// A malformed message from either side.
    ProtocolError(&'static str),
    /// Transaction pooling: the transaction is over and the server connection is free again;
    /// `reusable` unless the server sent more than was asked for.
    Detached { reusable: bool },
    /// A unit of work outlived `query_timeout_ms`, was cancelled, and still did not finish.
    Unresponsive,
}

#[derive(Debug)]
enum PendingKind {
    /// A simple query: its statements complete one by one, then `ReadyForQuery`.
    Query,
    /// An `Execute`: ends at its `CommandComplete`, error, or `PortalSuspended`.
    Execute,
    /// A `Sync` (or a function call): ends at `ReadyForQuery`.
    Sync,
}

/// A unit of work the client sent that the server has not finished answering.
struct Pending {
    /// Numbers the units of one relay in order (the statement timer tells them apart by it).
    seq: u64,
    kind: PendingKind,
    text: Arc<str>,
    /// Classified statements (workspace sessions only).
    stmts: Arc<Vec<Stmt>>,
    done: usize,
    started: Instant,
    started_at: DateTime<Utc>,
    rows: Option<i64>,
    error: Option<String>,
    /// What the client is owed in place of the server's answer, when the proxy sent a stand-in.
    stand_in: Option<StandIn>,
}

/// A statement the proxy sent in place of the client's, and what its answer becomes.
#[derive(Clone)]
enum StandIn {
    /// A statement that changes nothing in place of a `DEALLOCATE`: its command tag becomes
    /// this one, and once it completes (not before: in a failed transaction it does not) the
    /// client's names go.
    Deallocate(&'static str, Arc<Vec<NamedStatement>>),
    /// A `DO` block raising the proxy's refusal: the error reaches the client without the
    /// block's context line.
    Refusal,
}

/// A client's statement name and what it stood for when the client dropped it: forgotten only
/// if the client has not prepared the name again since.
type NamedStatement = (Vec<u8>, Arc<SharedStatement>);

/// Shared between the two directions.
struct Shared {
    pending: VecDeque<Pending>,
    next_seq: u64,
    /// The unit the proxy cancelled for outliving `query_timeout_ms`: its 57014 error says so.
    timed_out: Option<u64>,
    /// The last `ReadyForQuery` status: `I` idle, `T` in a transaction, `E` failed transaction.
    status: u8,
    /// Extended-protocol messages went out after the last `Sync`: the server may be inside an
    /// implicit transaction even when no Execute is pending.
    unsynced: bool,
    /// The server is in copy-in mode (after `CopyInResponse`): it ignores `Sync` until the
    /// client's `CopyDone` or `CopyFail`.
    copy_in: bool,
    draining: bool,
    /// The client side is between reading a batch and having written it to the server.
    forwarding: bool,
    /// Transaction pooling: the server side decided to give the connection back; the client
    /// side must not send it anything more.
    detaching: bool,
    /// Shared statement names prepared on this server connection (transaction pooling).
    prepared: HashSet<String>,
    /// Every Parse sent and not yet answered, in order: its shared name (if it prepares one)
    /// and whether the proxy sent it on its own (its ParseComplete is then not relayed).
    parses: VecDeque<(Option<String>, bool)>,
    /// Transaction pooling: the client may have changed its session's settings (the session
    /// reads them back before the connection goes to another client).
    dirty: bool,
    /// Transaction pooling: the server dropped every prepared statement on the connection
    /// (`DISCARD ALL`, or a `DEALLOCATE ALL` the proxy did not stand in for), so the client's
    /// names stand for nothing any more.
    forget_names: bool,
    /// Transaction pooling: names the client dropped with a `DEALLOCATE` that has completed.
    forget: Vec<NamedStatement>,
    /// The answers to [`ServerSide::reset`] are still to come (and to be kept from the client).
    resetting: bool,
}

impl Shared {
    fn idle(&self) -> bool {
        self.pending.is_empty()
            && self.status == b'I'
            && !self.unsynced
            && !self.copy_in
            && !self.forwarding
            // The reset's answers still to come would be read by whoever uses it next.
            && !self.resetting
    }
}

/// What a client session keeps across relays: transaction pooling ends a relay after every
/// transaction and starts another on whichever server connection is free.
pub struct ClientState {
    /// Tells this session from every other in the process (see [`Backend::last_client`]).
    ///
    /// [`Backend::last_client`]: super::backend::Backend::last_client
    id: u64,
    buf: BytesMut,
    skip: usize,
    /// Statement and portal texts, for the log.
    prepared: HashMap<Vec<u8>, Prepared>,
    portals: HashMap<Vec<u8>, Prepared>,
    /// Transaction pooling: the client's statement names and what they stand for.
    named: HashMap<Vec<u8>, Arc<SharedStatement>>,
    /// The shared memory a long message being read whole holds.
    held: Option<tdb_engines::budget::Answer>,
    /// Transaction pooling: the settings the client gave its session beyond its startup
    /// parameters, as the server reported them, in the order to apply them.
    pub settings: Vec<(String, String)>,
    /// Transaction pooling: names of custom settings (`app.user`) the client set, which the
    /// server lists nowhere, so reading the settings back asks for each by name.
    pub custom_settings: std::collections::BTreeSet<String>,
}

impl Default for ClientState {
    fn default() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        Self {
            id: NEXT.fetch_add(1, Ordering::Relaxed),
            buf: BytesMut::new(),
            skip: 0,
            prepared: HashMap::new(),
            portals: HashMap::new(),
            named: HashMap::new(),
            held: None,
            settings: Vec::new(),
            custom_settings: std::collections::BTreeSet::new(),
        }
    }
}

impl ClientState {
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Client bytes already read and not yet relayed.
    pub fn has_input(&self) -> bool {
        !self.buf.is_empty() && self.skip == 0
    }

    /// Client bytes read and not yet relayed, however many.
    pub fn pending_bytes(&self) -> usize {
        self.buf.len()
    }

    /// Whether the next message is Terminate.
    pub fn terminates(&self) -> bool {
        self.buf.first() == Some(&b'X')
    }

    pub fn buffer(&mut self) -> &mut BytesMut {
        if self.buf.capacity() - self.buf.len() < READ_CHUNK / 2 {
            self.buf.reserve(READ_CHUNK);
        }
        &mut self.buf
    }
}

/// A named statement under the name every client shares for it on a server connection.
struct SharedStatement {
    server_name: String,
    /// The Parse message after its name: query, parameter count and types.
    tail: Vec<u8>,
}

impl SharedStatement {
    fn new(tail: &[u8], epoch: u64) -> Self {
        use sha2::Digest;
        let mut hasher = sha2::Sha256::new();
        hasher.update(epoch.to_be_bytes());
        hasher.update(tail);
        let digest = hasher.finalize();
        let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
        Self {
            server_name: format!("tdb_{hex}"),
            tail: tail.to_vec(),
        }
    }
}

impl Shared {
    fn new(prepared: HashSet<String>, resetting: bool) -> Self {
        Self {
            pending: VecDeque::new(),
            next_seq: 0,
            timed_out: None,
            status: b'I',
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
}

/// For the relay's fuzz target: walks `data` as the relay frames a client's byte stream and
/// puts every message through what the relay reads from it (statement text, the refusals of
/// pinned sessions and of transaction pooling, `DEALLOCATE`, the renaming of statements for
/// sharing), and through the checks of server errors. It may only panic on a bug.
#[doc(hidden)]
pub fn fuzz_client_messages(data: &[u8]) {
    let (mut pos, mut skip) = (0, 0);
    let mut named = HashMap::new();
    let shared = Mutex::new(Shared::new(HashSet::new(), false));
    while pos < data.len() {
        let (tag, len) = match next_header(data, &mut pos, &mut skip) {
            Header::Message(tag, len) => (tag, len),
            Header::Skipped => continue,
            Header::Incomplete | Header::Invalid => return,
        };
        let end = pos.saturating_add(len).min(data.len());
        let body = &data[pos + 5..end];
        pos = end;
        if let Some((name, text)) = statement_bytes(tag, body) {
            let _ = bounded(text);
            if let Some(d) = tdb_sql::deallocation(text) {
                let _ = deallocate(tag, name, &d, &mut named);
            }
        }
        let refusals = [
            refuse_pinned(tag, body, "acme"),
            refuse_when_pooled(tag, body),
        ];
        for message in refusals.into_iter().flatten() {
            let len = u32::from_be_bytes([message[1], message[2], message[3], message[4]]);
            assert_eq!(len as usize + 1, message.len(), "a refusal's framing");
        }
        let mut out = Vec::new();
        let _ = rewrite_for_sharing(tag, body, &mut named, &shared, 0, &mut out);
        let code = frame::error_code(body).unwrap_or(sqlstate::FEATURE_NOT_SUPPORTED);
        let _ = stale_plan(code, body);
        let _ = missing_shared_statement(sqlstate::INVALID_SQL_STATEMENT_NAME, body);
    }
}

fn parse_message(out: &mut Vec<u8>, name: &str, tail: &[u8]) {
    frame::message(out, b'P', |b| {
        frame::cstr(b, name);
        b.extend_from_slice(tail);
    });
}

/// Transaction pooling: rewrites the client's named statements to their shared names, so any
/// server connection serves them (preparing them first where needed). Returns false when the
/// message goes through as it is. Every Parse sent is recorded, so ParseComplete messages can
/// be matched to it.
fn rewrite_for_sharing(
    tag: u8,
    body: &[u8],
    named: &mut HashMap<Vec<u8>, Arc<SharedStatement>>,
    shared: &Mutex<Shared>,
    epoch: u64,
    out: &mut Vec<u8>,
) -> bool {
    match tag {
        b'P' => {
            let Some((name, tail)) = take_cstr(body) else {
                return false;
            };
            if name.is_empty() {
                lock(shared).parses.push_back((None, false));
                return false;
            }
            let st = Arc::new(SharedStatement::new(tail, epoch));
            named.insert(name_key(name), st.clone());
            let mut s = lock(shared);
            let known = s.prepared.contains(&st.server_name)
                || s.parses
                    .iter()
                    .any(|(n, _)| n.as_deref() == Some(st.server_name.as_str()));
            if known {
                // Already there: an unnamed Parse of the same text still answers the client's
                // ParseComplete in its place.
                parse_message(out, "", &st.tail);
                s.parses.push_back((None, false));
            } else {
                parse_message(out, &st.server_name, &st.tail);
                s.parses.push_back((Some(st.server_name.clone()), false));
            }
            true
        }
        b'B' => {
            let Some((portal, rest)) = take_cstr(body) else {
                return false;
            };
            let Some((statement, params)) = take_cstr(rest) else {
                return false;
            };
            let Some(st) = (!statement.is_empty())
                .then(|| named.get(&name_key(statement)))
                .flatten()
            else {
                return false;
            };
            ensure_prepared(shared, st, out);
            frame::message(out, b'B', |b| {
                b.extend_from_slice(portal);
                b.push(0);
                frame::cstr(b, &st.server_name);
                b.extend_from_slice(params);
            });
            true
        }
        b'D' | b'C' => {
            let Some((&kind, rest)) = body.split_first() else {
                return false;
            };
            let Some((name, _)) = take_cstr(rest) else {
                return false;
            };
            if kind != b'S' || name.is_empty() {
                return false;
            }
            if tag == b'C' {
                // Other clients may share the statement: forget the client's name only. Closing
                // a statement that does not exist still answers CloseComplete.
                named.remove(&name_key(name));
                frame::message(out, b'C', |b| {
                    b.push(b'S');
                    frame::cstr(b, "tdb_closed_by_client");
                });
                return true;
            }
            let Some(st) = named.get(&name_key(name)) else {
                return false;
            };
            ensure_prepared(shared, st, out);
            frame::message(out, b'D', |b| {
                b.push(b'S');
                frame::cstr(b, &st.server_name);
            });
            true
        }
        _ => false,
    }
}

/// Prepares `st` on the connection unless it is there or on its way.
fn ensure_prepared(shared: &Mutex<Shared>, st: &SharedStatement, out: &mut Vec<u8>) {
    let mut s = lock(shared);
    let known = s.prepared.contains(&st.server_name)
        || s.parses
            .iter()
            .any(|(n, _)| n.as_deref() == Some(st.server_name.as_str()));
    if !known {
        parse_message(out, &st.server_name, &st.tail);
        s.parses.push_back((Some(st.server_name.clone()), true));
    }
}

fn name_key(name: &[u8]) -> Vec<u8> {
    name[..name.len().min(MAX_NAME)].to_vec()
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

/// The server side of a relay.
pub struct ServerSide<'a, R, W> {
    pub r: &'a mut R,
    pub w: &'a mut W,
    /// Shared statement names prepared on the connection (transaction pooling).
    pub prepared: &'a mut HashSet<String>,
    /// Where a CancelRequest for the connection's running statement goes.
    pub cancel: &'a CancelTarget,
    /// Transaction pooling: messages that reset the session, sent before the client's and
    /// answered up to one `ReadyForQuery` that the client never sees
    /// ([`super::backend::settings_messages`]).
    pub reset: Option<Vec<u8>>,
}

/// Relays until one side ends, the tenant is killed, shutdown finds the session between
/// transactions (or its deadline passes), or a statement that outlived `query_timeout_ms`
/// ignores its cancel. The server is left where it expects a new message when the end is
/// [`RelayEnd::ClientGone`] and [`idle`](RelayOutcome::idle) is true.
pub async fn relay<CR, CW, SR, SW>(
    client_r: &mut CR,
    client_w: &mut CW,
    server: ServerSide<'_, SR, SW>,
    ctx: &SessionContext,
    state: &mut ClientState,
) -> RelayOutcome
where
    CR: AsyncRead + Unpin,
    CW: AsyncWrite + Unpin,
    SR: AsyncRead + Unpin,
    SW: AsyncWrite + Unpin,
{
    let shared = Mutex::new(Shared::new(
        std::mem::take(server.prepared),
        server.reset.is_some(),
    ));
    if let Some(reset) = &server.reset
        && (server.w.write_all(reset).await.is_err() || server.w.flush().await.is_err())
    {
        return RelayOutcome {
            end: RelayEnd::ServerGone,
            idle: false,
            client_at_boundary: true,
            settings_may_have_changed: false,
        };
    }
    let answered = Notify::new();
    let at_boundary = AtomicBool::new(true);
    let end = {
        let up = client_to_server(client_r, server.w, &shared, &answered, ctx, state);
        let down = server_to_client(server.r, client_w, &shared, &answered, ctx, &at_boundary);
        run(up, down, &shared, &answered, ctx, server.cancel).await
    };
    let mut s = lock(&shared);
    *server.prepared = std::mem::take(&mut s.prepared);
    forget(&mut state.named, s.forget_names, &mut s.forget);
    RelayOutcome {
        end,
        idle: s.idle(),
        client_at_boundary: at_boundary.load(Ordering::Relaxed),
        settings_may_have_changed: s.dirty,
    }
}

/// Drives both directions of a relay, the shutdown and kill signals and the statement timer
/// until the relay ends.
async fn run(
    up: impl Future<Output = RelayEnd>,
    down: impl Future<Output = RelayEnd>,
    shared: &Mutex<Shared>,
    answered: &Notify,
    ctx: &SessionContext,
    cancel: &CancelTarget,
) -> RelayEnd {
    tokio::pin!(up, down);
    let mut deadline: Option<tokio::time::Instant> = None;
    let mut watchdog = ctx.query_timeout.map(Watchdog::new);
    let timer = Watchdog::timer();
    tokio::pin!(timer);
    let end = loop {
        tokio::select! {
            // In order: the statement timer comes after both directions, so it sees the unit a
            // direction has just put at the front of the queue in the same wake-up.
            biased;
            end = &mut up => break end,
            end = &mut down => break end,
            _ = ctx.kill.cancelled() => break RelayEnd::Killed,
            _ = ctx.shutdown.cancelled(), if deadline.is_none() => {
                let mut s = lock(shared);
                s.draining = true;
                if s.idle() {
                    break RelayEnd::Drained;
                }
                deadline = Some(tokio::time::Instant::now() + ctx.shutdown_grace);
            }
            _ = sleep_until(deadline), if deadline.is_some() => break RelayEnd::DeadlinePassed,
            expired = watch(&mut watchdog, timer.as_mut(), shared) => match expired {
                Expired::Overran(seq) => {
                    lock(shared).timed_out = Some(seq);
                    cancel_overrun(cancel, ctx);
                    if let Some(dog) = &mut watchdog {
                        dog.cancelled();
                    }
                }
                Expired::Ignored(_) => break RelayEnd::Unresponsive,
            },
        }
    };
    // A client that leaves right after a statement (an error, then Terminate) may go before the
    // server's answer was read: read it for a moment, so the statement is still logged.
    if matches!(end, RelayEnd::ClientGone) && !lock(shared).pending.is_empty() {
        let logged = async {
            tokio::select! {
                _ = &mut down => {}
                _ = wait_until(answered, || lock(shared).pending.is_empty()) => {}
            }
        };
        let _ = tokio::time::timeout(std::time::Duration::from_millis(200), logged).await;
    }
    end
}

pub struct RelayOutcome {
    pub end: RelayEnd,
    /// No work in flight and no transaction open: the server connection can be reused.
    pub idle: bool,
    /// What the client was sent ends with a whole message, so an error may follow.
    pub client_at_boundary: bool,
    /// Transaction pooling: the client ran something that may have changed its settings.
    pub settings_may_have_changed: bool,
}

/// Resolves when the unit at the front of the queue came due (see [`Watchdog::poll`]); never
/// without a watchdog.
async fn watch(
    watchdog: &mut Option<Watchdog>,
    mut timer: std::pin::Pin<&mut tokio::time::Sleep>,
    shared: &Mutex<Shared>,
) -> Expired {
    let Some(dog) = watchdog else {
        return std::future::pending().await;
    };
    std::future::poll_fn(|cx| {
        let front = lock(shared).pending.front().map(|p| p.seq);
        dog.poll(cx, timer.as_mut(), front)
    })
    .await
}

/// Sends a CancelRequest for the statement that outlived `query_timeout_ms`, off the relay's
/// path (it opens a connection of its own and waits for the server to read it).
fn cancel_overrun(target: &CancelTarget, ctx: &SessionContext) {
    tracing::info!(
        database = %ctx.origin.database,
        query_timeout_ms = ctx.query_timeout.map_or(0, |t| t.as_millis()),
        "cancelling a statement that outlived query_timeout_ms"
    );
    let t = target.clone();
    tokio::spawn(async move {
        if let Err(e) = super::backend::cancel(&t.host, t.port, t.pid, t.key).await {
            tracing::warn!(error = %e, "sending a cancel request to a server failed");
        }
    });
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Returns once `ready` holds, checking it again each time the server side has handled a batch
/// of answers (no polling).
async fn wait_until(answered: &Notify, ready: impl Fn() -> bool) {
    loop {
        let next = answered.notified();
        tokio::pin!(next);
        // Registered before the check, so an answer between the check and the wait is not lost.
        next.as_mut().enable();
        if ready() {
            return;
        }
        next.await;
    }
}

fn lock(shared: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

enum Header {
    /// A message starts at the position: its tag and total length (tag byte included).
    Message(u8, usize),
    /// The rest of a streamed message was passed over.
    Skipped,
    /// Not enough bytes for a header yet.
    Incomplete,
    /// A length below 4 (or negative).
    Invalid,
}

/// Steps over what remains of a streamed message (`skip` bytes), or reads the header at `pos`.
fn next_header(buf: &[u8], pos: &mut usize, skip: &mut usize) -> Header {
    if *skip > 0 {
        let take = (*skip).min(buf.len() - *pos);
        *pos += take;
        *skip -= take;
        return Header::Skipped;
    }
    let Some(head) = buf.get(*pos..*pos + 5) else {
        return Header::Incomplete;
    };
    let len = i32::from_be_bytes([head[1], head[2], head[3], head[4]]);
    match usize::try_from(len) {
        Ok(n) if n >= 4 => Header::Message(head[0], n + 1),
        _ => Header::Invalid,
    }
}

/// Reads a NUL-terminated string at the front of `bytes`; returns it and what follows.
fn take_cstr(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let end = bytes.iter().position(|b| *b == 0)?;
    Some((&bytes[..end], &bytes[end + 1..]))
}

/// The statement text kept for the log: up to its NUL, at most [`MAX_STATEMENT_LEN`] bytes, in
/// one allocation when it is valid UTF-8 (the usual case).
fn bounded(text: &[u8]) -> Arc<str> {
    let end = text
        .iter()
        .position(|b| *b == 0)
        .unwrap_or(text.len())
        .min(MAX_STATEMENT_LEN);
    match std::str::from_utf8(&text[..end]) {
        Ok(s) => Arc::from(s),
        Err(_) => Arc::from(String::from_utf8_lossy(&text[..end]).as_ref()),
    }
}

async fn client_to_server<R, W>(
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
    // Workspaces and provisioned databases see every statement whole (DDL capture, the
    // identity guard); a statement too large for that is refused.
    let inspect_all = ctx.is_workspace() || ctx.pinned_identity;
    let limit = if inspect_all {
        WORKSPACE_LIMIT
    } else {
        INSPECT_LIMIT
    };
    let workspace = ctx.is_workspace();
    let no_stmts: Arc<Vec<Stmt>> = Arc::new(Vec::new());
    let tx_mode = ctx.transaction_mode;
    let ClientState {
        id: _,
        buf,
        skip,
        prepared,
        portals,
        named,
        held,
        settings: _,
        custom_settings,
    } = state;
    // Bytes read before a re-attach are handled before reading more.
    let mut unread = !buf.is_empty();
    let mut out: Vec<u8> = Vec::new();
    loop {
        if !unread {
            if buf.capacity() - buf.len() < READ_CHUNK / 2 {
                buf.reserve(READ_CHUNK);
            }
            // Back-pressure: a client far ahead of the server's answers waits for some.
            wait_until(answered, || lock(shared).pending.len() < MAX_PENDING).await;
            match client.read_buf(buf).await {
                Ok(0) | Err(_) => return RelayEnd::ClientGone,
                Ok(n) => ctx.metrics.bytes_from_clients.increment(n as u64),
            }
        }
        unread = false;
        // A held gate parks new work: the bytes wait here until it opens.
        if let Some(gate) = &ctx.gate
            && gate.is_held()
            && lock(shared).idle()
        {
            gate.pass().await;
        }
        if tx_mode {
            let detaching = {
                let mut s = lock(shared);
                s.forwarding = !s.detaching;
                let all = std::mem::take(&mut s.forget_names);
                forget(named, all, &mut s.forget);
                s.detaching
            };
            if detaching {
                // The server side ends the relay; these bytes wait for the next connection.
                return std::future::pending().await;
            }
        }
        let mut pos = 0;
        let mut flushed = 0;
        out.clear();
        let mut terminate = false;
        while pos < buf.len() {
            let (tag, total) = match next_header(buf, &mut pos, skip) {
                Header::Message(tag, total) => (tag, total),
                Header::Skipped => continue,
                Header::Incomplete => break,
                Header::Invalid => {
                    return RelayEnd::ProtocolError("invalid message length from the client");
                }
            };
            let streamed = tag == b'd' || total > limit;
            if streamed && tx_mode && matches!(tag, b'Q' | b'P') {
                // Too long to look at: it may change anything.
                lock(shared).dirty = true;
            }
            if streamed {
                if inspect_all && matches!(tag, b'Q' | b'P') {
                    return RelayEnd::ProtocolError("statement too large for this session");
                }
                if matches!(tag, b'Q') {
                    let prefix = &buf[pos + 5..buf.len().min(pos + total)];
                    push(
                        shared,
                        PendingKind::Query,
                        bounded(prefix),
                        no_stmts.clone(),
                    );
                }
                *skip = total;
                continue;
            }
            if buf.len() - pos < total {
                if total > LARGE_MESSAGE && held.is_none() {
                    let memory = ctx.statements_memory.answer(total);
                    if memory.take(total).is_err() {
                        return NO_MEMORY;
                    }
                    *held = Some(memory);
                }
                let need = total - (buf.len() - pos);
                buf.reserve(need);
                break;
            }
            let body = &buf[pos + 5..pos + total];
            // A Flush alone starts nothing on the server (psycopg ends its pipelines with Sync
            // then Flush): it leaves the connection free to go back between transactions.
            if matches!(tag, b'P' | b'B' | b'D' | b'E' | b'C') {
                lock(shared).unsynced = true;
            }
            let mut stand_in = None;
            let mut replacement = if ctx.pinned_identity && matches!(tag, b'Q' | b'P') {
                let schema = ctx.origin.database.clone();
                let Some(refusal) =
                    analyse(body, move |body| refuse_pinned(tag, body, &schema)).await
                else {
                    return UNANALYSED;
                };
                refusal
            } else if tx_mode
                && matches!(tag, b'Q' | b'P')
                && tdb_sql::may_be_refused_when_pooled(body)
            {
                let Some(refusal) = analyse(body, move |body| refuse_when_pooled(tag, body)).await
                else {
                    return UNANALYSED;
                };
                refusal
            } else {
                None
            };
            if replacement.is_some() {
                stand_in = Some(StandIn::Refusal);
            }
            if tx_mode {
                if tag == b'Q' && replacement.is_none() && tdb_sql::may_change_settings(body) {
                    lock(shared).dirty = true;
                    if !remember_custom_settings(body, custom_settings).await {
                        return UNANALYSED;
                    }
                }
                if replacement.is_none()
                    && let Some((name, query)) = statement_bytes(tag, body)
                    && let Some(d) = tdb_sql::deallocation(query)
                {
                    (replacement, stand_in) = deallocate(tag, name, &d, named);
                }
                let sent = replacement.as_ref().map_or(body, |m| &m[5..]);
                let mut rewritten = Vec::new();
                let epoch = ctx.plan_epoch.load(Ordering::Relaxed);
                if rewrite_for_sharing(tag, sent, named, shared, epoch, &mut rewritten) {
                    replacement = Some(rewritten);
                }
            }
            if let Some(message) = replacement {
                out.extend_from_slice(&buf[flushed..pos]);
                out.extend_from_slice(&message);
                flushed = pos + total;
            }
            match tag {
                b'Q' => {
                    let stmts = if workspace {
                        let parsed = analyse(body, |body| {
                            statements(&frame::cstr_prefix(body, usize::MAX))
                        })
                        .await;
                        let Some(all) = parsed else {
                            return UNANALYSED;
                        };
                        Arc::new(all)
                    } else {
                        no_stmts.clone()
                    };
                    push(shared, PendingKind::Query, bounded(body), stmts);
                    if stand_in.is_some()
                        && let Some(p) = lock(shared).pending.back_mut()
                    {
                        p.stand_in = stand_in;
                    }
                }
                b'P' => {
                    if let Some((name, rest)) = take_cstr(body)
                        && let Some((query, _)) = take_cstr(rest)
                    {
                        // Workspaces keep the classified statements only when they matter to
                        // DDL capture, so memory stays bounded by the log text.
                        let stmts = if workspace {
                            let parsed =
                                analyse(query, |q| statements(&String::from_utf8_lossy(q))).await;
                            let Some(all) = parsed else {
                                return UNANALYSED;
                            };
                            if all
                                .iter()
                                .any(|s| matches!(s.kind, Kind::Ddl | Kind::Transaction(_)))
                            {
                                Arc::new(all)
                            } else {
                                no_stmts.clone()
                            }
                        } else {
                            no_stmts.clone()
                        };
                        let settings = tx_mode && tdb_sql::may_change_settings(query);
                        if settings && !remember_custom_settings(query, custom_settings).await {
                            return UNANALYSED;
                        }
                        if name.is_empty() || prepared.len() < MAX_STATEMENTS {
                            prepared.insert(
                                name_key(name),
                                Prepared {
                                    text: bounded(query),
                                    stmts,
                                    settings,
                                    stand_in: stand_in.clone(),
                                },
                            );
                        }
                    }
                }
                b'B' => {
                    if let Some((portal, rest)) = take_cstr(body)
                        && let Some((statement, _)) = take_cstr(rest)
                    {
                        match prepared.get(&name_key(statement)) {
                            Some(p) if portal.is_empty() || portals.len() < MAX_STATEMENTS => {
                                portals.insert(name_key(portal), p.clone());
                            }
                            // A statement the relay did not keep: the portal's old entry would
                            // stand for the wrong statement.
                            _ => {
                                portals.remove(&name_key(portal));
                            }
                        }
                    }
                }
                b'E' => {
                    let p = take_cstr(body).and_then(|(portal, _)| portals.get(&name_key(portal)));
                    // A portal the relay did not keep may run anything.
                    if tx_mode && p.is_none_or(|p| p.settings) {
                        lock(shared).dirty = true;
                    }
                    let (text, stmts, stand_in) = match p {
                        Some(p) => (p.text.clone(), p.stmts.clone(), p.stand_in.clone()),
                        None => (Arc::from("<unknown portal>"), no_stmts.clone(), None),
                    };
                    push(shared, PendingKind::Execute, text, stmts);
                    if stand_in.is_some()
                        && let Some(p) = lock(shared).pending.back_mut()
                    {
                        p.stand_in = stand_in;
                    }
                }
                // A Sync during copy-in is ignored by the server: it gets no ReadyForQuery.
                b'S' if lock(shared).copy_in => {}
                b'S' => {
                    lock(shared).unsynced = false;
                    push(shared, PendingKind::Sync, Arc::from(""), no_stmts.clone());
                }
                b'c' | b'f' => lock(shared).copy_in = false,
                b'F' => {
                    if tx_mode {
                        lock(shared).dirty = true;
                    }
                    push(
                        shared,
                        PendingKind::Sync,
                        Arc::from("<function call>"),
                        no_stmts.clone(),
                    );
                }
                b'C' => {
                    if let Some((&kind, rest)) = body.split_first()
                        && let Some((name, _)) = take_cstr(rest)
                    {
                        match kind {
                            b'S' => prepared.remove(&name_key(name)),
                            _ => portals.remove(&name_key(name)),
                        };
                    }
                }
                b'X' => {
                    terminate = true;
                    break;
                }
                _ => {}
            }
            pos += total;
        }
        if pos > 0 {
            let bytes: &[u8] = if flushed == 0 && out.is_empty() {
                &buf[..pos]
            } else {
                out.extend_from_slice(&buf[flushed..pos]);
                &out
            };
            if server.write_all(bytes).await.is_err() || server.flush().await.is_err() {
                return RelayEnd::ServerGone;
            }
            buf.advance(pos);
            if held.is_some() && buf.len() < READ_CHUNK {
                // The long message is through: its memory goes back (advancing past it keeps
                // the whole allocation; a fresh buffer does not).
                *buf = BytesMut::from(&buf[..]);
                *held = None;
                out = Vec::new();
            }
        }
        if tx_mode {
            lock(shared).forwarding = false;
        }
        if terminate {
            return RelayEnd::ClientGone;
        }
    }
}

/// Runs `f` on `input`: here for a short input, on the blocking pool for a long one (a copy
/// goes there), so parsing a long statement never stalls the other sessions on the proxy's
/// thread. `None` if the analysis panicked.
async fn analyse<T, F>(input: &[u8], f: F) -> Option<T>
where
    T: Send + 'static,
    F: FnOnce(&[u8]) -> T + Send + 'static,
{
    if input.len() <= PARSE_INLINE_LIMIT {
        return Some(f(input));
    }
    // As many long parses at once as there are cores: each holds a copy of its statement (up to
    // the session's limit), so a flood of them queues here instead of filling memory.
    static PARSERS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    let parsers = PARSERS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        tokio::sync::Semaphore::new(cores)
    });
    let _permit = parsers.acquire().await.ok()?;
    let owned = input.to_vec();
    tokio::task::spawn_blocking(move || f(&owned)).await.ok()
}

/// A `Query` or `Parse` that a provisioned database refuses (see
/// [`tdb_sql::pinned_session_refusal`]; its routing name is its schema), replaced by one that
/// makes the server refuse it with a clear error (so the protocol's answers stay the server's
/// own); `None` for anything else. The log keeps what the client sent.
fn refuse_pinned(tag: u8, body: &[u8], own_schema: &str) -> Option<Vec<u8>> {
    let (name, query) = statement_of(tag, body)?;
    let why = tdb_sql::pinned_session_refusal(&query, own_schema)?;
    Some(refusal(tag, name, sqlstate::INSUFFICIENT_PRIVILEGE, &why))
}

/// A `Query` or `Parse` with a `LISTEN` or a `PREPARE`, under transaction pooling (see
/// [`tdb_sql::transaction_pooling_refusal`]), replaced as [`refuse_pinned`] does.
fn refuse_when_pooled(tag: u8, body: &[u8]) -> Option<Vec<u8>> {
    let (name, query) = statement_of(tag, body)?;
    let why = tdb_sql::transaction_pooling_refusal(&query)?;
    Some(refusal(tag, name, sqlstate::FEATURE_NOT_SUPPORTED, &why))
}

/// Transaction pooling: a `DEALLOCATE` concerns the client's own statements, which other
/// clients may share on the server under one name. The server gets a stand-in that changes
/// nothing, answered with the command tag the client is owed; once it completes, the client's
/// names (the one, or all) are forgotten. A name the client never prepared gets the server's
/// error.
fn deallocate(
    tag: u8,
    statement: Option<&[u8]>,
    d: &tdb_sql::Deallocation,
    named: &mut HashMap<Vec<u8>, Arc<SharedStatement>>,
) -> (Option<Vec<u8>>, Option<StandIn>) {
    let stand_in = |answer: &'static str, names: Vec<NamedStatement>| {
        (
            Some(statement_message(tag, statement, "DO $tdb$BEGIN END$tdb$")),
            Some(StandIn::Deallocate(answer, Arc::new(names))),
        )
    };
    let name = match d {
        tdb_sql::Deallocation::All => {
            let all = named
                .iter()
                .map(|(n, st)| (n.clone(), st.clone()))
                .collect();
            return stand_in("DEALLOCATE ALL", all);
        }
        tdb_sql::Deallocation::Named(name) => name,
    };
    let key = name_key(name.as_bytes());
    if let Some(st) = named.get(&key) {
        return stand_in("DEALLOCATE", vec![(key, st.clone())]);
    }
    let why = format!("prepared statement \"{name}\" does not exist");
    let refused = refusal(tag, statement, sqlstate::INVALID_SQL_STATEMENT_NAME, &why);
    (Some(refused), Some(StandIn::Refusal))
}

/// Drops the client's names that `DEALLOCATE`s have dropped (`all`: every one), each only if
/// the client has not prepared the name again since.
fn forget(
    named: &mut HashMap<Vec<u8>, Arc<SharedStatement>>,
    all: bool,
    dropped: &mut Vec<NamedStatement>,
) {
    if all {
        named.clear();
    }
    for (name, st) in dropped.drain(..) {
        if named.get(&name).is_some_and(|now| Arc::ptr_eq(now, &st)) {
            named.remove(&name);
        }
    }
}

/// Custom settings a client may keep per session, by name (see
/// [`ClientState::custom_settings`]).
const MAX_CUSTOM_SETTINGS: usize = 64;
/// The longest custom setting name kept (PostgreSQL truncates none, but names this long are
/// not a program's).
const MAX_CUSTOM_NAME: usize = 255;

/// Adds the custom settings `sql` names (as `SET` or `set_config`) to what the client is known
/// to have set, up to [`MAX_CUSTOM_SETTINGS`]; false if the analysis failed.
async fn remember_custom_settings(
    sql: &[u8],
    known: &mut std::collections::BTreeSet<String>,
) -> bool {
    let Some(names) = analyse(sql, |sql| {
        tdb_sql::custom_settings(&frame::cstr_prefix(sql, usize::MAX))
    })
    .await
    else {
        return false;
    };
    for name in names {
        if known.len() < MAX_CUSTOM_SETTINGS && name.len() <= MAX_CUSTOM_NAME {
            known.insert(name);
        }
    }
    true
}

/// The statement name (`Parse` only) and text (up to its NUL) of a `Query` or `Parse` body;
/// `None` for other messages.
fn statement_bytes(tag: u8, body: &[u8]) -> Option<(Option<&[u8]>, &[u8])> {
    match tag {
        b'Q' => Some((None, body)),
        b'P' => {
            let (name, rest) = take_cstr(body)?;
            Some((Some(name), take_cstr(rest)?.0))
        }
        _ => None,
    }
}

/// The statement name (`Parse` only) and text of a `Query` or `Parse` body.
fn statement_of(tag: u8, body: &[u8]) -> Option<(Option<&[u8]>, String)> {
    match tag {
        b'Q' => Some((None, frame::cstr_prefix(body, usize::MAX))),
        _ => {
            let (name, rest) = take_cstr(body)?;
            let (query, _) = take_cstr(rest)?;
            Some((Some(name), String::from_utf8_lossy(query).into_owned()))
        }
    }
}

/// The `Query` or `Parse` (named `name`) that makes the server raise `why` with SQLSTATE
/// `code`.
fn refusal(tag: u8, name: Option<&[u8]>, code: &str, why: &str) -> Vec<u8> {
    let message = quote_literal(why);
    // A dollar quote whose tag the message (which may name what the client sent) cannot close.
    let quote = (0u32..)
        .map(|n| format!("$tdb{n}$"))
        .find(|q| !message.contains(q.as_str()))
        .unwrap_or_default();
    let refusal = format!(
        "DO {quote}BEGIN RAISE EXCEPTION USING ERRCODE = '{code}', MESSAGE = {message}; END{quote}"
    );
    statement_message(tag, name, &refusal)
}

/// A `Query` of `sql`, or a `Parse` of it named `name` with no parameter types.
fn statement_message(tag: u8, name: Option<&[u8]>, sql: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(sql.len() + 16);
    frame::message(&mut out, tag, |m| {
        if let Some(name) = name {
            m.extend_from_slice(name);
            m.push(0);
        }
        m.extend_from_slice(sql.as_bytes());
        m.push(0);
        if name.is_some() {
            m.extend_from_slice(&0u16.to_be_bytes());
        }
    });
    out
}

/// A SQL string literal (the message of a refusal, which names a schema).
fn quote_literal(text: &str) -> String {
    // E'…' reads backslashes as escapes whatever standard_conforming_strings says.
    format!("E'{}'", text.replace('\\', "\\\\").replace('\'', "''"))
}

fn push(shared: &Mutex<Shared>, kind: PendingKind, text: Arc<str>, stmts: Arc<Vec<Stmt>>) {
    let mut s = lock(shared);
    let seq = s.next_seq;
    s.next_seq += 1;
    s.pending.push_back(Pending {
        seq,
        kind,
        text,
        stmts,
        done: 0,
        started: Instant::now(),
        started_at: Utc::now(),
        rows: None,
        error: None,
        stand_in: None,
    });
}

/// `at_boundary` is false from the first byte written to the client until a whole number of
/// messages has reached it (a row streams through in pieces, a write may be cut short).
async fn server_to_client<R, W>(
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
    let mut capture = ctx.capture_ddl_into.as_ref().map(|_| DdlCapture::default());
    let tenant = ctx.origin.tenant.is_some();
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
        let mut pos = 0;
        let mut flushed = 0;
        let mut drained = false;
        let mut detach = false;
        at_boundary.store(false, Ordering::Relaxed);
        while pos < buf.len() {
            let (tag, total) = match next_header(&buf, &mut pos, &mut skip) {
                Header::Message(tag, total) => (tag, total),
                Header::Skipped => continue,
                Header::Incomplete => break,
                Header::Invalid => {
                    return RelayEnd::ProtocolError("invalid message length from the server");
                }
            };
            if lock(shared).resetting {
                // The answers to the reset: whole messages, kept from the client.
                if buf.len() - pos < total {
                    buf.reserve(total - (buf.len() - pos));
                    break;
                }
                match tag {
                    b'E' => return RESET_FAILED,
                    b'Z' => lock(shared).resetting = false,
                    _ => {}
                }
                if write(client, &buf[flushed..pos]).await.is_err() {
                    return RelayEnd::ClientGone;
                }
                pos += total;
                flushed = pos;
                continue;
            }
            // Rows and COPY data stream through; every other server message is small or must be
            // read whole (an error, however long, decides what committed).
            if matches!(tag, b'D' | b'd') {
                skip = total;
                continue;
            }
            if buf.len() - pos < total {
                buf.reserve(total - (buf.len() - pos));
                break;
            }
            let body = &buf[pos + 5..pos + total];
            match tag {
                b'C' | b'I' | b's' => {
                    let rows = if tag == b'C' {
                        frame::command_rows(body)
                    } else {
                        None
                    };
                    let mut stand_in = None;
                    let finished = {
                        let mut s = lock(shared);
                        s.copy_in = false;
                        if tag == b'C'
                            && ctx.transaction_mode
                            && matches!(frame::command_tag(body), "DEALLOCATE ALL" | "DISCARD ALL")
                        {
                            // Every statement on the connection is gone: prepared again when
                            // next used, under the names the clients still hold.
                            s.prepared.clear();
                            s.forget_names = true;
                        }
                        match s.pending.front_mut() {
                            Some(p) => {
                                if tag == b'C'
                                    && let Some(StandIn::Deallocate(answer, names)) = &p.stand_in
                                {
                                    stand_in = Some((*answer, names.clone()));
                                }
                                if let Some(n) = rows {
                                    p.rows = Some(p.rows.unwrap_or(0) + n);
                                }
                                if tag == b'C'
                                    && let Some(c) = capture.as_mut()
                                    && let Some(stmt) = p.stmts.get(p.done)
                                {
                                    c.completed(stmt, frame::command_tag(body));
                                }
                                if tag == b'C' {
                                    p.done += 1;
                                }
                                if matches!(p.kind, PendingKind::Execute) {
                                    s.pending.pop_front()
                                } else {
                                    None
                                }
                            }
                            None => None,
                        }
                    };
                    if let Some(p) = finished {
                        log(ctx, p);
                    }
                    if let Some((answer, names)) = stand_in {
                        lock(shared).forget.extend(names.iter().cloned());
                        let mut complete = Vec::with_capacity(32);
                        frame::command_complete(&mut complete, answer);
                        if write(client, &buf[flushed..pos]).await.is_err()
                            || write(client, &complete).await.is_err()
                        {
                            return RelayEnd::ClientGone;
                        }
                        flushed = pos + total;
                    }
                }
                b'S' if ctx.transaction_mode => lock(shared).dirty = true,
                b'E' => {
                    let code = frame::error_code(body).unwrap_or("").to_string();
                    if let Some(c) = capture.as_mut() {
                        c.failed();
                    }
                    if ctx.transaction_mode
                        && stale_plan(&code, body)
                        && lock(shared)
                            .pending
                            .front()
                            .is_some_and(|p| matches!(p.kind, PendingKind::Execute))
                    {
                        // Clients prepare what they retry under new shared names, which no
                        // server connection holds with the stale plan.
                        ctx.plan_epoch.fetch_add(1, Ordering::Relaxed);
                    }
                    if ctx.transaction_mode
                        && let Some(name) = missing_shared_statement(&code, body)
                    {
                        // Prepared again by whoever needs it next.
                        lock(shared).prepared.remove(&name);
                    }
                    let (finished, ddl_refused, timed_out, refused) = {
                        let mut s = lock(shared);
                        let refused = s
                            .pending
                            .front()
                            .is_some_and(|p| matches!(p.stand_in, Some(StandIn::Refusal)));
                        s.copy_in = false;
                        // Everything after the failing message is skipped up to Sync: no Parse
                        // still outstanding will be answered.
                        s.parses.clear();
                        let ddl_refused = tenant
                            && code == sqlstate::INSUFFICIENT_PRIVILEGE
                            && s.pending.front().is_some_and(was_ddl);
                        let timed_out = code == sqlstate::QUERY_CANCELED
                            && s.timed_out.is_some()
                            && s.timed_out == s.pending.front().map(|p| p.seq);
                        let finished = match s.pending.front_mut() {
                            Some(p) => {
                                p.error = Some(code);
                                if matches!(p.kind, PendingKind::Execute) {
                                    s.pending.pop_front()
                                } else {
                                    None
                                }
                            }
                            None => None,
                        };
                        (finished, ddl_refused, timed_out, refused)
                    };
                    if let Some(p) = finished {
                        log(ctx, p);
                    }
                    let rewritten = if ddl_refused {
                        Some(std::borrow::Cow::Borrowed(DDL_ON_TENANT))
                    } else if timed_out {
                        Some(std::borrow::Cow::Owned(overran_message(ctx)))
                    } else {
                        None
                    };
                    if rewritten.is_some() || refused {
                        let mut replaced = Vec::with_capacity(128);
                        match rewritten {
                            Some(message) => frame::rewrite_error(body, &message, &mut replaced),
                            None => frame::without_context(body, &mut replaced),
                        }
                        if write(client, &buf[flushed..pos]).await.is_err()
                            || write(client, &replaced).await.is_err()
                        {
                            return RelayEnd::ClientGone;
                        }
                        flushed = pos + total;
                    }
                }
                b'1' => {
                    let injected = {
                        let mut s = lock(shared);
                        match s.parses.pop_front() {
                            Some((name, injected)) => {
                                if let Some(name) = name {
                                    s.prepared.insert(name);
                                }
                                injected
                            }
                            None => false,
                        }
                    };
                    if injected {
                        // The client did not send this Parse; it must not see its answer.
                        if write(client, &buf[flushed..pos]).await.is_err() {
                            return RelayEnd::ClientGone;
                        }
                        flushed = pos + total;
                    }
                }
                b'G' => {
                    // Copy-in from an Execute: the Sync sent right behind it is ignored by the
                    // server, so it will never be answered.
                    let mut s = lock(shared);
                    s.copy_in = true;
                    if s.pending
                        .front()
                        .is_some_and(|p| matches!(p.kind, PendingKind::Execute))
                        && s.pending
                            .get(1)
                            .is_some_and(|p| matches!(p.kind, PendingKind::Sync))
                    {
                        s.pending.remove(1);
                    }
                }
                b'Z' => {
                    let status = body.first().copied().unwrap_or(b'I');
                    let finished = {
                        let mut s = lock(shared);
                        s.status = status;
                        // Executes skipped after an error end here without a record.
                        while s
                            .pending
                            .front()
                            .is_some_and(|p| matches!(p.kind, PendingKind::Execute))
                        {
                            s.pending.pop_front();
                        }
                        let finished = s.pending.pop_front();
                        drained = s.draining && s.idle();
                        if ctx.transaction_mode && !drained && s.idle() {
                            s.detaching = true;
                            detach = true;
                        }
                        finished
                    };
                    if let Some(p) = finished
                        && matches!(p.kind, PendingKind::Query)
                    {
                        log(ctx, p);
                    }
                    if let Some(c) = capture.as_mut() {
                        let committed = c.ready(status);
                        if !committed.is_empty() {
                            // Recorded before the client hears the query is done, as the REST
                            // endpoint does before it answers.
                            let notice = queue_ddl(ctx, &committed).await;
                            if write(client, &buf[flushed..pos]).await.is_err() {
                                return RelayEnd::ClientGone;
                            }
                            flushed = pos;
                            if let Some(notice) = notice
                                && write(client, &notice).await.is_err()
                            {
                                return RelayEnd::ClientGone;
                            }
                        }
                    }
                    if drained || detach {
                        pos += total;
                        break;
                    }
                }
                _ => {}
            }
            pos += total;
        }
        // Units were answered: a client side waiting for room in the queue may go on.
        answered.notify_waiters();
        if flushed < pos && write(client, &buf[flushed..pos]).await.is_err() {
            return RelayEnd::ClientGone;
        }
        if client.flush().await.is_err() {
            return RelayEnd::ClientGone;
        }
        at_boundary.store(skip == 0, Ordering::Relaxed);
        buf.advance(pos);
        if drained {
            return RelayEnd::Drained;
        }
        if detach {
            // Anything the server sent past ReadyForQuery (a notice, a notification) belongs
            // to no one now: such a connection is not given to another client.
            return RelayEnd::Detached {
                reusable: buf.is_empty(),
            };
        }
    }
}

async fn write<W: AsyncWrite + Unpin>(w: &mut W, bytes: &[u8]) -> std::io::Result<()> {
    if bytes.is_empty() {
        return Ok(());
    }
    w.write_all(bytes).await
}

/// What a statement the proxy cancelled for outliving `query_timeout_ms` fails with.
fn overran_message(ctx: &SessionContext) -> String {
    format!(
        "canceling statement: it ran longer than query_timeout_ms ({} ms)",
        ctx.query_timeout.map_or(0, |t| t.as_millis())
    )
}

/// Whether an error is the server's "cached plan must not change result type": a table under a
/// prepared statement changed, and the statement must be prepared again.
fn stale_plan(code: &str, body: &[u8]) -> bool {
    let fields = frame::error_fields(body);
    code == sqlstate::FEATURE_NOT_SUPPORTED
        && fields
            .iter()
            .any(|(field, value)| *field == b'M' && value.starts_with(b"cached plan must not"))
        // The server's own, not one a function raised with the same words.
        && !fields.iter().any(|(field, _)| *field == b'W')
}

/// The shared statement an error says does not exist (`prepared statement "tdb_…" does not
/// exist`): something dropped it behind the proxy's back.
fn missing_shared_statement(code: &str, body: &[u8]) -> Option<String> {
    if code != sqlstate::INVALID_SQL_STATEMENT_NAME {
        return None;
    }
    let fields = frame::error_fields(body);
    let (_, message) = fields.iter().find(|(field, _)| *field == b'M')?;
    let message = std::str::from_utf8(message).ok()?;
    let name = message.split('"').nth(1)?;
    name.starts_with("tdb_").then(|| name.to_string())
}

/// Whether the work that failed was DDL (decided only on a permission error, off the hot path).
fn was_ddl(p: &Pending) -> bool {
    tdb_sql::classify_all(&p.text)
        .map(|all| all.iter().any(|s| s.kind == tdb_sql::Kind::Ddl))
        .unwrap_or(false)
}

fn log(ctx: &SessionContext, p: Pending) {
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

/// Queues committed DDL on the blueprint; on failure returns a warning to show the client.
async fn queue_ddl(ctx: &SessionContext, ddl: &[(String, String)]) -> Option<Vec<u8>> {
    let blueprint = ctx.capture_ddl_into.as_deref()?;
    let rows: Vec<tdb_catalog::blueprints::NewDdl<'_>> = ddl
        .iter()
        .map(|(statement, tag)| tdb_catalog::blueprints::NewDdl { statement, tag })
        .collect();
    match ctx.catalog.queue_ddl(blueprint, &rows).await {
        Ok(_) => None,
        Err(e) => {
            tracing::error!(error = %e, blueprint, "DDL ran on a workspace but was not queued");
            let mut notice = Vec::new();
            let warning = PgError {
                severity: "WARNING",
                code: sqlstate::WARNING,
                message: format!(
                    "the DDL ran but could not be recorded in the blueprint's pending changes ({e}); \
                     record it again with POST /workspaces/{{id}}/queries"
                ),
            };
            warning.encode(&mut notice);
            // A notice, not an error: the statement did commit.
            notice[0] = b'N';
            Some(notice)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn back_pressure_waits_for_answers_and_not_for_a_clock() {
        let answered = Notify::new();
        let room = std::sync::atomic::AtomicBool::new(false);
        // Ready at once: no wait.
        wait_until(&answered, || true).await;
        // Without an answer, the wait does not end.
        let blocked = tokio::time::timeout(
            std::time::Duration::from_secs(3600),
            wait_until(&answered, || room.load(Ordering::SeqCst)),
        )
        .await;
        assert!(blocked.is_err());
        // An answer that makes room ends it.
        let waiting = wait_until(&answered, || room.load(Ordering::SeqCst));
        let answer = async {
            tokio::task::yield_now().await;
            room.store(true, Ordering::SeqCst);
            answered.notify_waiters();
        };
        tokio::join!(waiting, answer);
    }

    #[test]
    fn headers_are_read_across_partial_buffers() {
        let mut buf = vec![b'Q', 0, 0, 0, 8, b's', b'e', b'l', 0];
        buf.extend_from_slice(&[b'D', 0, 0, 0, 100]);
        let (mut pos, mut skip) = (0, 0);
        assert!(matches!(
            next_header(&buf[..3], &mut pos, &mut skip),
            Header::Incomplete
        ));
        assert!(matches!(
            next_header(&buf, &mut pos, &mut skip),
            Header::Message(b'Q', 9)
        ));
        pos += 9;
        assert!(matches!(
            next_header(&buf, &mut pos, &mut skip),
            Header::Message(b'D', 101)
        ));
        // Streaming the DataRow: what is here is passed over, the rest is owed.
        skip = 101;
        assert!(matches!(
            next_header(&buf, &mut pos, &mut skip),
            Header::Skipped
        ));
        assert_eq!((pos, skip), (buf.len(), 101 - 5));
        let bad = [b'Q', 0xff, 0xff, 0xff, 0xff];
        let (mut pos, mut skip) = (0, 0);
        assert!(matches!(
            next_header(&bad, &mut pos, &mut skip),
            Header::Invalid
        ));
        let short = [b'Q', 0, 0, 0, 3];
        assert!(matches!(
            next_header(&short, &mut 0, &mut 0),
            Header::Invalid
        ));
    }

    #[test]
    fn logged_text_is_bounded_and_valid() {
        assert_eq!(&*bounded(b"SELECT 1\0rest"), "SELECT 1");
        let long = vec![b'x'; MAX_STATEMENT_LEN * 2];
        assert_eq!(bounded(&long).len(), MAX_STATEMENT_LEN);
        let mut cut = vec![b'a'; MAX_STATEMENT_LEN - 1];
        cut.extend_from_slice("é".as_bytes());
        assert!(bounded(&cut).starts_with('a'));
    }
}

/// The relay over in-memory streams: it is generic over `AsyncRead + AsyncWrite`, so both
/// peers here are the test itself, one playing the client and one the server, message by
/// message.
#[cfg(test)]
mod duplex_tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

    fn context(transaction_mode: bool) -> SessionContext {
        let options = "postgres://nobody@127.0.0.1:1/none"
            .parse()
            .expect("options");
        let catalog = Catalog::lazy(options);
        let (log, _writer) = QueryLog::new(catalog.clone(), false);
        SessionContext {
            origin: Arc::new(QueryOrigin {
                project_id: Arc::from("p"),
                tenant: Some(Arc::from("acme")),
                workspace: None,
                database: Arc::from("app__acme"),
                source: "proxy",
                username: Arc::from("u"),
            }),
            capture_ddl_into: None,
            gate: None,
            log,
            catalog,
            kill: CancellationToken::new(),
            shutdown: CancellationToken::new(),
            shutdown_grace: std::time::Duration::from_secs(1),
            transaction_mode,
            pinned_identity: false,
            metrics: crate::metrics::ProxyMetrics::new("postgresql"),
            query_timeout: None,
            statements_memory: tdb_engines::budget::MemoryBudget::new(1 << 20),
            plan_epoch: Arc::default(),
        }
    }

    fn message(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        frame::message(&mut out, tag, |b| b.extend_from_slice(body));
        out
    }

    /// One whole message from `from`.
    async fn read_message(from: &mut DuplexStream) -> Vec<u8> {
        let mut head = [0u8; 5];
        from.read_exact(&mut head).await.expect("a header");
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        let mut whole = head.to_vec();
        whole.resize(1 + len, 0);
        from.read_exact(&mut whole[5..]).await.expect("a body");
        whole
    }

    /// What a server answers to `SELECT 1` in simple protocol, ending in ReadyForQuery.
    fn answer() -> Vec<u8> {
        let mut out = Vec::new();
        let mut row = Vec::new();
        row.extend_from_slice(&1u16.to_be_bytes());
        row.extend_from_slice(b"?column?\0");
        row.extend_from_slice(&[0; 6]);
        row.extend_from_slice(&23u32.to_be_bytes());
        row.extend_from_slice(&4i16.to_be_bytes());
        row.extend_from_slice(&(-1i32).to_be_bytes());
        row.extend_from_slice(&0i16.to_be_bytes());
        out.extend(message(b'T', &row));
        let mut data = 1u16.to_be_bytes().to_vec();
        data.extend_from_slice(&1u32.to_be_bytes());
        data.push(b'1');
        out.extend(message(b'D', &data));
        out.extend(message(b'C', b"SELECT 1\0"));
        out.extend(message(b'Z', b"I"));
        out
    }

    async fn relay_once(transaction_mode: bool, client_says_goodbye: bool) -> RelayOutcome {
        let (mut client, near_client) = tokio::io::duplex(1 << 16);
        let (near_server, mut server) = tokio::io::duplex(1 << 16);
        let (mut cr, mut cw) = tokio::io::split(near_client);
        let (mut sr, mut sw) = tokio::io::split(near_server);
        let ctx = context(transaction_mode);
        let mut state = ClientState::default();
        let mut prepared = HashSet::new();
        let cancel = CancelTarget {
            host: "127.0.0.1".into(),
            port: 1,
            pid: 1,
            key: 1,
        };
        let side = ServerSide {
            r: &mut sr,
            w: &mut sw,
            prepared: &mut prepared,
            cancel: &cancel,
            reset: None,
        };
        let query = message(b'Q', b"SELECT 1\0");
        let peers = async {
            client.write_all(&query).await.expect("client sends");
            assert_eq!(
                read_message(&mut server).await,
                query,
                "the server gets the query"
            );
            let answer = answer();
            server.write_all(&answer).await.expect("server answers");
            let mut got = vec![0u8; answer.len()];
            client.read_exact(&mut got).await.expect("client reads");
            assert_eq!(got, answer, "the client gets the answer as sent");
            if client_says_goodbye {
                client
                    .write_all(&message(b'X', b""))
                    .await
                    .expect("goodbye");
            }
            (client, server)
        };
        let (outcome, _peers) = tokio::time::timeout(std::time::Duration::from_secs(10), async {
            tokio::join!(relay(&mut cr, &mut cw, side, &ctx, &mut state), peers)
        })
        .await
        .expect("the relay ends");
        outcome
    }

    #[tokio::test]
    async fn session_pooling_relays_both_ways_until_the_client_says_goodbye() {
        let outcome = relay_once(false, true).await;
        assert_eq!(outcome.end, RelayEnd::ClientGone);
        assert!(outcome.idle && outcome.client_at_boundary);
    }

    #[tokio::test]
    async fn transaction_pooling_detaches_when_the_transaction_is_over() {
        let outcome = relay_once(true, false).await;
        assert_eq!(outcome.end, RelayEnd::Detached { reusable: true });
        assert!(outcome.idle && outcome.client_at_boundary);
    }
}
