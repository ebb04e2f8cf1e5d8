//! The relay between an authenticated client and its server connection. Bytes go through as
//! they came; the relay reads only message headers, plus the few messages it must understand:
//! statements (for the query log and, on workspaces, DDL capture), completions, errors and
//! `ReadyForQuery` (transaction state). Row data and COPY data are streamed without buffering
//! the whole message. Each direction runs as its own future ([`client`], [`server`]), so
//! neither can block the other; what they share is in [`state`]. Transaction pooling's
//! statement renaming is in [`sharing`], the refusals of pinned and pooled sessions in
//! [`refusals`], DDL capture in [`capture`] and the errors the client reads in other words in
//! [`errors`].

mod capture;
mod client;
mod errors;
mod refusals;
mod server;
mod sharing;
mod state;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::BytesMut;
use tdb_catalog::Catalog;
use tdb_catalog::routing::QueryOrigin;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::frame;
use super::message::{self, Frontend};
use super::sqlstate;
use super::watchdog::{Expired, Watchdog};
use crate::cancel::CancelTarget;
use crate::gate::Gate;
use crate::querylog::{MAX_STATEMENT_LEN, QueryLog};
use state::{Shared, lock};

pub use errors::DDL_ON_TENANT;

/// How a session ends when the proxy's memory for long statements is all taken.
const NO_MEMORY: RelayEnd =
    RelayEnd::ProtocolError("statement too large for the memory tdb has free now; try again");
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

/// What a client session keeps across relays: transaction pooling ends a relay after every
/// transaction and starts another on whichever server connection is free.
pub struct ClientState {
    /// Tells this session from every other in the process (see [`Backend::last_client`]).
    ///
    /// [`Backend::last_client`]: super::backend::Backend::last_client
    id: u64,
    input: client::Input,
    book: client::Book,
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
            input: client::Input::default(),
            book: client::Book::default(),
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
        !self.input.buf.is_empty() && self.input.skip == 0
    }

    /// Client bytes read and not yet relayed, however many.
    pub fn pending_bytes(&self) -> usize {
        self.input.buf.len()
    }

    /// Whether the next message is Terminate.
    pub fn terminates(&self) -> bool {
        self.input.buf.first() == Some(&message::front::TERMINATE)
    }

    pub fn buffer(&mut self) -> &mut BytesMut {
        let buf = &mut self.input.buf;
        if buf.capacity() - buf.len() < READ_CHUNK / 2 {
            buf.reserve(READ_CHUNK);
        }
        buf
    }
}

/// For the relay's fuzz target: walks `data` as the relay frames a client's byte stream and
/// puts every message through what the relay reads from it (statement text, the refusals of
/// pinned sessions and of transaction pooling, `DEALLOCATE`, the renaming of statements for
/// sharing), and through what the server's direction reads of a server's message (command tags
/// and row counts, the checks of errors). It may only panic on a bug.
#[doc(hidden)]
pub fn fuzz_client_messages(data: &[u8]) {
    let (mut pos, mut skip) = (0, 0);
    let mut named = sharing::Names::new();
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
        let msg = Frontend::decode(tag, body);
        if let Some((name, text)) = msg.statement() {
            let _ = bounded(text);
            if let Some(d) = tdb_sql::deallocation(text) {
                let _ = sharing::deallocate(name, &d, &named);
            }
        }
        let refusals = [
            refusals::refuse_pinned(tag, body, "acme"),
            refusals::refuse_when_pooled(tag, body),
        ];
        for message in refusals.into_iter().flatten() {
            let len = u32::from_be_bytes([message[1], message[2], message[3], message[4]]);
            assert_eq!(len as usize + 1, message.len(), "a refusal's framing");
            assert_eq!(message[0], tag, "a refusal is the same kind of message");
        }
        let mut out = Vec::new();
        let _ = sharing::rewrite_for_sharing(&msg, &mut named, &shared, 0, &mut out);
        // The same bytes as a server's message: what the server's direction reads of it.
        if let message::Backend::CommandComplete { body } = message::Backend::decode(tag, body) {
            let _ = (frame::command_rows(body), frame::command_tag(body));
        }
        let code = frame::error_code(body).unwrap_or(sqlstate::FEATURE_NOT_SUPPORTED);
        let _ = sharing::stale_plan(code, body);
        let _ = sharing::missing_shared_statement(sqlstate::INVALID_SQL_STATEMENT_NAME, body);
    }
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
        let up = client::client_to_server(client_r, server.w, &shared, &answered, ctx, state);
        let down =
            server::server_to_client(server.r, client_w, &shared, &answered, ctx, &at_boundary);
        run(up, down, &shared, &answered, ctx, server.cancel).await
    };
    let mut s = lock(&shared);
    *server.prepared = std::mem::take(&mut s.prepared);
    sharing::forget(&mut state.book.named, s.forget_names, &mut s.forget);
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

/// [`next_header`] in a relay's loop: a length below 4 ends the relay, `invalid` saying whose.
fn header(
    buf: &[u8],
    pos: &mut usize,
    skip: &mut usize,
    invalid: &'static str,
) -> Result<Header, RelayEnd> {
    match next_header(buf, pos, skip) {
        Header::Invalid => Err(RelayEnd::ProtocolError(invalid)),
        header => Ok(header),
    }
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
