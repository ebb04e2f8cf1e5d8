//! The server's answer to one command, streamed to the client packet by packet: small packets
//! are read whole (the relay must know OKs, errors and EOFs), long ones (rows, pieces of a
//! 16 MiB packet) pass through without being held. What the relay changes on the way:
//!
//! - a `LOCAL INFILE` request (0xfb) never reaches the client: the server gets an empty file,
//!   the client an error, and the rest of the answer is read and dropped;
//! - on workspaces, each DDL statement that completed is queued on the blueprint before its OK
//!   goes out ([`super::capture`]);
//! - the error of a statement the proxy stopped for outliving `query_timeout_ms` says so;
//! - a client that took MariaDB's metadata caching from a server that does not offer it (an
//!   attached MySQL) gets the "metadata follows" byte the server left out of each column
//!   count.
//!
//! [`watch`] runs an answer against the tenant's kill token, the statement timer, the shutdown
//! deadline and the client leaving.
//!
//! The statement timer is one per session, not one per command: arming a timer that is the
//! earliest on its worker wakes the worker's event loop (an eventfd write and an extra
//! `epoll_wait` per command). A command leaves the timer where it is when it fires no later
//! than the command is due, and when it fires early (it was set for an earlier command) the
//! timer moves to the command's due time; so a stream of short commands moves it once per
//! timeout period.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::{Instant, Sleep};

use super::command::Unit;
use super::stops::{self, Stops};
use super::{RelayEnd, SessionContext, capture};
use crate::mysql::backend::{self, Backend, Stop};
use crate::mysql::capability::ExtCaps;
use crate::mysql::errno;
use crate::mysql::packet::{self, HEADER_LEN, MAX_PIECE, PacketReader};
use crate::mysql::reply;
use crate::mysql::response::{Expect, Outcome, Response, Seen, Step};

/// Packets longer than this stream through instead of being read whole.
const INSPECT_LIMIT: usize = 64 * 1024;
/// Bytes gathered for the client before they are written out.
const OUT_LIMIT: usize = 64 * 1024;
/// The capacity a session's buffer for its client keeps between answers: what short answers
/// take, so that an idle session holds little (a long answer grows it again).
const OUT_KEPT: usize = 2 * 1024;
/// How much longer than `query_timeout_ms` the proxy waits, so MariaDB's own
/// `max_statement_time` fires first and the client sees the server's usual error.
const MARGIN: Duration = Duration::from_millis(500);
/// How long a stopped statement may take to end before the session gives up on the server.
pub const ESCALATION: Duration = Duration::from_secs(5);
/// Bytes a client may send ahead while its command runs before the relay stops reading (and
/// noticing that it left) until the answer is over.
const WATCH_LIMIT: usize = 64 * 1024;
/// [`Progress::client_seq`] while a packet to the client is cut short.
const MID_PACKET: u16 = u16::MAX;

/// Where an answer stands, for the error that may have to follow it.
pub(super) struct Progress {
    /// The sequence id of the client's next packet, or [`MID_PACKET`].
    client_seq: AtomicU16,
    /// The proxy stopped the statement for outliving `query_timeout_ms`.
    timed_out: AtomicBool,
    /// The proxy is queueing captured DDL: the server is not running anything for it.
    capturing: AtomicBool,
    /// Milliseconds spent capturing so far, which the statement timer does not count.
    captured_ms: AtomicU64,
}

impl Progress {
    pub fn new(seq: u8) -> Self {
        Self {
            client_seq: AtomicU16::new(u16::from(seq)),
            timed_out: AtomicBool::new(false),
            capturing: AtomicBool::new(false),
            captured_ms: AtomicU64::new(0),
        }
    }

    /// The sequence id an error sent now would carry; `None` in the middle of a packet.
    pub fn client_seq(&self) -> Option<u8> {
        u8::try_from(self.client_seq.load(Ordering::Relaxed)).ok()
    }

    fn set(&self, seq: u16) {
        self.client_seq.store(seq, Ordering::Relaxed);
    }
}

/// What an answer came to, for the log and the session.
#[derive(Debug, Default)]
pub(super) struct Answered {
    /// Rows returned or affected, summed over its results, when the server said.
    pub rows: Option<u64>,
    pub error: Option<reply::Err>,
    /// The status flags of its last OK or EOF.
    pub status: Option<u16>,
    /// `COM_STMT_PREPARE`: the statement's id.
    pub prepared: Option<u32>,
}

/// Everything a watched answer needs besides the client's and server's streams.
pub(super) struct Watched<'a> {
    pub ctx: &'a SessionContext,
    pub unit: &'a Unit,
    pub expect: Expect,
    pub progress: &'a Progress,
    /// The shutdown's deadline, once shutdown was asked for.
    pub deadline: &'a mut Option<Instant>,
    /// The session's statement timer (see the module's note).
    pub timer: Pin<&'a mut Sleep>,
    pub stops: &'a mut Stops,
    /// The session's buffer for what goes to the client, kept between answers (empty).
    pub out: &'a mut Vec<u8>,
}

/// A statement timer that is not armed: due in a year.
pub(super) fn idle_timer() -> Sleep {
    tokio::time::sleep_until(Instant::now() + Duration::from_secs(86_400 * 365))
}

/// Relays the answer, ending early when the tenant is killed, the shutdown deadline passes,
/// the client leaves, or a statement that outlived `query_timeout_ms` ignores being stopped.
pub(super) async fn watch<CR, CW>(
    client_r: &mut CR,
    input: &mut PacketReader,
    client_w: &mut CW,
    backend: &mut Backend,
    w: Watched<'_>,
) -> Result<Answered, RelayEnd>
where
    CR: AsyncRead + Unpin,
    CW: AsyncWrite + Unpin,
{
    let Watched {
        ctx,
        unit,
        expect,
        progress,
        deadline,
        mut timer,
        stops,
        out,
    } = w;
    let started = Instant::now();
    // A shutdown told but not acted on yet (a command already read when it came) gives this
    // answer the grace too.
    if deadline.is_none() && stops.shutting_down() {
        *deadline = Some(started + ctx.shutdown_grace);
    }
    let thread_id = backend.thread_id;
    let down = Down::new(client_w, backend, (ctx, unit), expect, progress, out);
    let answer = down.run();
    tokio::pin!(answer);
    let mut due = ctx.query_timeout.map(|t| started + t + MARGIN);
    if let Some(due) = due
        && timer.deadline() > due
    {
        timer.as_mut().reset(due);
    }
    let mut credited = 0;
    loop {
        tokio::select! {
            biased;
            done = &mut answer => return done,
            stop = stops.next() => match stop {
                stops::Stop::Kill => return Err(RelayEnd::Killed),
                stops::Stop::Shutdown => {
                    deadline.get_or_insert_with(|| Instant::now() + ctx.shutdown_grace);
                }
            },
            _ = sleep_until(*deadline) => return Err(RelayEnd::DeadlinePassed),
            _ = timer.as_mut(), if due.is_some() => {
                let now = Instant::now();
                if let Some(at) = due.filter(|at| *at > now) {
                    // Set for an earlier command: this one is due later.
                    timer.as_mut().reset(at);
                    continue;
                }
                // Time the proxy spent queueing DDL is not the statement's.
                let captured = progress.captured_ms.load(Ordering::Relaxed);
                if progress.capturing.load(Ordering::Relaxed) || captured > credited {
                    let owed = Duration::from_millis(captured - credited);
                    credited = captured;
                    let at = now + owed.max(Duration::from_millis(100));
                    due = Some(at);
                    timer.as_mut().reset(at);
                    continue;
                }
                if progress.timed_out.swap(true, Ordering::Relaxed) {
                    return Err(RelayEnd::Unresponsive);
                }
                stop_overrun(ctx, thread_id);
                due = Some(now + ESCALATION);
                timer.as_mut().reset(now + ESCALATION);
            }
            gone = input.fill(client_r), if input.buffered().len() < WATCH_LIMIT => {
                if gone.is_err() {
                    return Err(RelayEnd::ClientGone);
                }
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Stops the statement that outlived `query_timeout_ms`, off the relay's path (it opens a
/// connection of its own).
fn stop_overrun(ctx: &SessionContext, thread_id: u32) {
    let Some(limit) = ctx.query_timeout else {
        return;
    };
    tracing::info!(
        database = %ctx.origin.database,
        query_timeout_ms = limit.as_millis(),
        "stopping a statement that outlived query_timeout_ms"
    );
    let target = ctx.target.clone();
    tokio::spawn(async move {
        let stop = Stop::Query { running_for: limit };
        if let Err(e) = backend::stop(&target, thread_id, stop).await {
            tracing::warn!(error = %e, "stopping a statement on the server failed");
        }
    });
}

/// One answer on its way down.
struct Down<'a, W> {
    client: &'a mut W,
    backend: &'a mut Backend,
    ctx: &'a SessionContext,
    unit: &'a Unit,
    progress: &'a Progress,
    response: Response,
    out: &'a mut Vec<u8>,
    /// The sequence id after the last packet put out.
    next_seq: u8,
    /// Results ended so far: the index of the statement whose result comes next.
    results: usize,
    /// The previous piece was 16 MiB - 1: this one continues its packet.
    continuing: bool,
    /// After a `LOCAL INFILE` request: the client has had its error, and sees nothing more.
    swallow: bool,
    /// The client expects a "metadata follows" byte after each column count, and the server
    /// sends none.
    add_metadata_flag: bool,
    answered: Answered,
}

impl<'a, W: AsyncWrite + Unpin> Down<'a, W> {
    fn new(
        client: &'a mut W,
        backend: &'a mut Backend,
        (ctx, unit): (&'a SessionContext, &'a Unit),
        expect: Expect,
        progress: &'a Progress,
        out: &'a mut Vec<u8>,
    ) -> Self {
        let next_seq = progress.client_seq().unwrap_or(1);
        out.clear();
        let client_caches = ctx.target.client_ext.has(ExtCaps::CACHE_METADATA);
        let cached = backend.cached_metadata;
        Self {
            client,
            backend,
            ctx,
            unit,
            progress,
            response: Response::new(expect).caching_metadata(cached),
            out,
            next_seq,
            results: 0,
            continuing: false,
            swallow: false,
            add_metadata_flag: client_caches && !cached,
            answered: Answered::default(),
        }
    }

    async fn run(mut self) -> Result<Answered, RelayEnd> {
        loop {
            while let Some(done) = self.next_packet().await? {
                if done {
                    self.flush().await?;
                    self.out.shrink_to(OUT_KEPT);
                    return Ok(self.answered);
                }
                if self.out.len() >= OUT_LIMIT {
                    self.flush().await?;
                }
            }
            self.flush().await?;
            let backend = &mut *self.backend;
            if backend.reader.fill(&mut backend.stream).await.is_err() {
                return Err(RelayEnd::ServerGone);
            }
        }
    }

    /// Handles the packet at the front of the buffer: `None` when it is not all here yet, else
    /// whether it ended the answer.
    async fn next_packet(&mut self) -> Result<Option<bool>, RelayEnd> {
        let Some((len, seq)) = packet::header(self.backend.reader.buffered()) else {
            return Ok(None);
        };
        if self.continuing || len > INSPECT_LIMIT {
            if !self.continuing && self.response.step(Seen::Large) != Ok(Step::More) {
                return Err(RelayEnd::ProtocolError(
                    "the server sent an unexpected long packet",
                ));
            }
            self.continuing = len == MAX_PIECE;
            self.stream_piece(len, seq).await?;
            return Ok(Some(false));
        }
        let total = HEADER_LEN + len;
        let buf = self.backend.reader.buffered();
        let Some(whole) = buf.get(..total) else {
            return Ok(None);
        };
        // Only asked when the flag may have to be added: rows skip it.
        let count_to_flag = self.add_metadata_flag && self.response.at_result_start();
        let step = self
            .response
            .step(Seen::Whole(&whole[HEADER_LEN..]))
            .map_err(|_| RelayEnd::ProtocolError("the server's answer does not parse"))?;
        if step == Step::More {
            if !self.swallow {
                if count_to_flag {
                    // A column count: the definitions follow, as they always do from this
                    // server.
                    let mut count = whole[HEADER_LEN..].to_vec();
                    count.push(1);
                    self.put(seq, &count);
                } else {
                    self.out.extend_from_slice(whole);
                    self.next_seq = seq.wrapping_add(1);
                }
            }
            self.backend.reader.consume(total);
            return Ok(Some(false));
        }
        let whole = whole.to_vec();
        self.backend.reader.consume(total);
        self.special(step, seq, whole).await
    }

    /// A packet that ends a result, or asks for a file.
    async fn special(
        &mut self,
        step: Step,
        seq: u8,
        whole: Vec<u8>,
    ) -> Result<Option<bool>, RelayEnd> {
        let (outcome, done) = match step {
            Step::LocalInfile => return self.refuse_local_infile(seq).await.map(|()| Some(false)),
            Step::Result(outcome) => (outcome, false),
            Step::Done(outcome) => (outcome, true),
            Step::More => (Outcome::Other, false),
        };
        let replacement = self.outcome(outcome).await;
        if !self.swallow {
            match replacement {
                Some(payload) => self.put(seq, &payload),
                None => {
                    self.out.extend_from_slice(&whole);
                    self.next_seq = seq.wrapping_add(1);
                }
            }
        }
        Ok(Some(done))
    }

    /// The server asks for a file: it gets an empty one, the client an error in place of the
    /// request.
    async fn refuse_local_infile(&mut self, seq: u8) -> Result<(), RelayEnd> {
        let mut empty = Vec::with_capacity(HEADER_LEN);
        packet::encode(&mut empty, seq.wrapping_add(1), &[]);
        if self.backend.stream.write_all(&empty).await.is_err() {
            return Err(RelayEnd::ServerGone);
        }
        let refusal = reply::Err::new(
            errno::SPECIFIC_ACCESS_DENIED,
            "LOAD DATA LOCAL INFILE is not allowed through tdb",
        );
        if !self.swallow {
            let mut payload = Vec::new();
            refusal.encode(&mut payload);
            self.put(seq, &payload);
            self.swallow = true;
        }
        self.answered.error.get_or_insert(refusal);
        Ok(())
    }

    /// Records how a result came out; returns the payload the client gets in its place, if
    /// not the server's.
    async fn outcome(&mut self, outcome: Outcome) -> Option<Vec<u8>> {
        let index = self.results;
        self.results += 1;
        if let Some(rows) = outcome.rows() {
            *self.answered.rows.get_or_insert(0) += rows;
        }
        if let Some(status) = outcome.status() {
            self.answered.status = Some(status);
        }
        match outcome {
            Outcome::Ok(ok) => self.captured(index, ok).await,
            Outcome::Err(e) => {
                let replaced = self.timed_out(&e);
                self.answered.error.get_or_insert(e);
                replaced
            }
            Outcome::Prepared { id } => {
                self.answered.prepared = Some(id);
                None
            }
            Outcome::Rows { .. } | Outcome::Other => None,
        }
    }

    /// On a workspace, a DDL statement that completed is queued before its OK goes out.
    async fn captured(&mut self, index: usize, ok: reply::Ok) -> Option<Vec<u8>> {
        let stmt = self.unit.stmts.get(index)?;
        if stmt.kind != tdb_sql::Kind::Ddl {
            return None;
        }
        let progress = self.progress;
        progress.capturing.store(true, Ordering::Relaxed);
        let started = Instant::now();
        let warning = capture::on_workspace_ddl(self.ctx, &stmt.text, &stmt.tag).await;
        let took = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        progress.captured_ms.fetch_add(took, Ordering::Relaxed);
        progress.capturing.store(false, Ordering::Relaxed);
        let warning = warning?;
        let mut ok = ok;
        ok.info = warning.into_bytes();
        let mut payload = Vec::new();
        ok.encode(&mut payload);
        Some(payload)
    }

    /// The error of a statement the proxy stopped, in the proxy's words.
    fn timed_out(&self, e: &reply::Err) -> Option<Vec<u8>> {
        let stopped = e.code == errno::QUERY_INTERRUPTED || e.code == errno::STATEMENT_TIMEOUT.code;
        if !stopped || !self.progress.timed_out.load(Ordering::Relaxed) {
            return None;
        }
        let limit = self.ctx.query_timeout.map_or(0, |t| t.as_millis());
        let mut payload = Vec::new();
        reply::Err::new(
            errno::STATEMENT_TIMEOUT,
            format!("canceling statement: it ran longer than query_timeout_ms ({limit} ms)"),
        )
        .encode(&mut payload);
        Some(payload)
    }

    /// Puts a payload of the proxy's own out as the packet numbered `seq`.
    fn put(&mut self, seq: u8, payload: &[u8]) {
        self.next_seq = packet::encode(self.out, seq, payload);
    }

    /// Writes out what was gathered, and flushes what was written (TLS holds records back
    /// until then).
    async fn flush(&mut self) -> Result<(), RelayEnd> {
        if !self.out.is_empty() {
            self.progress.set(MID_PACKET);
            if self.client.write_all(self.out).await.is_err() {
                return Err(RelayEnd::ClientGone);
            }
            self.ctx
                .metrics
                .bytes_to_clients
                .increment(self.out.len() as u64);
            self.out.clear();
            self.progress.set(u16::from(self.next_seq));
        }
        self.client.flush().await.map_err(|_| RelayEnd::ClientGone)
    }

    /// Passes one long piece (`len` bytes after its header) through without holding it.
    async fn stream_piece(&mut self, len: usize, seq: u8) -> Result<(), RelayEnd> {
        self.flush().await?;
        self.progress.set(MID_PACKET);
        let mut left = HEADER_LEN + len;
        let here = self.backend.reader.buffered().len().min(left);
        let head = self.backend.reader.buffered()[..here].to_vec();
        self.backend.reader.consume(here);
        self.pass(&head).await?;
        left -= here;
        let mut chunk = vec![0u8; 16 * 1024];
        while left > 0 {
            let want = left.min(chunk.len());
            let n = match self.backend.stream.read(&mut chunk[..want]).await {
                Ok(0) | Err(_) => return Err(RelayEnd::ServerGone),
                Ok(n) => n,
            };
            self.pass(&chunk[..n]).await?;
            left -= n;
        }
        if !self.continuing && !self.swallow {
            self.next_seq = seq.wrapping_add(1);
            self.progress.set(u16::from(self.next_seq));
        }
        Ok(())
    }

    async fn pass(&mut self, bytes: &[u8]) -> Result<(), RelayEnd> {
        if self.swallow {
            return Ok(());
        }
        if self.client.write_all(bytes).await.is_err() {
            return Err(RelayEnd::ClientGone);
        }
        self.ctx
            .metrics
            .bytes_to_clients
            .increment(bytes.len() as u64);
        Ok(())
    }
}

/// The answer's relay against a scripted server over a socket pair: MariaDB cannot be made to
/// ask for a local file (the proxy never lets it know the client could send one), so this
/// path is driven by hand.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::mysql::backend::BackendTarget;
    use crate::mysql::relay::statements::Guard;
    use crate::mysql::reply::status;
    use std::sync::Arc;
    use tdb_engines::postgres::wire::stream::ServerStream;
    use tokio::io::AsyncReadExt;

    fn context() -> SessionContext {
        context_with(ExtCaps::default())
    }

    /// A session whose client took the extended capabilities `client_ext`.
    fn context_with(client_ext: ExtCaps) -> SessionContext {
        let catalog = tdb_catalog::Catalog::lazy(
            "postgres://nobody@127.0.0.1:1/none"
                .parse()
                .expect("options"),
        );
        let (log, _writer) = crate::querylog::QueryLog::new(catalog.clone(), false);
        let target = BackendTarget {
            host: "127.0.0.1".into(),
            port: 1,
            database: "shop__acme".into(),
            user: "u".into(),
            password: "p".into(),
            client_caps: crate::mysql::capability::Caps::OFFERED,
            client_ext,
            collation: 45,
            statement_timeout: None,
        };
        SessionContext {
            origin: Arc::new(tdb_catalog::routing::QueryOrigin {
                project_id: Arc::from("p"),
                tenant: Some(Arc::from("acme")),
                workspace: None,
                database: Arc::from("shop__acme"),
                source: "proxy",
                username: Arc::from("u"),
            }),
            capture_ddl_into: None,
            gate: None,
            log,
            catalog,
            kill: tokio_util::sync::CancellationToken::new(),
            shutdown: tokio_util::sync::CancellationToken::new(),
            shutdown_grace: Duration::from_secs(1),
            metrics: crate::metrics::ProxyMetrics::new("mysql"),
            query_timeout: None,
            statements_memory: tdb_engines::budget::MemoryBudget::new(1 << 20),
            guard: Guard {
                tenant: true,
                workspace: false,
                own_database: "shop__acme".into(),
                connected_as: "shop__acme".into(),
                user: "u".into(),
                host: "127.0.0.1".into(),
                thread_id: 5,
            },
            target,
            proxy_id: 9,
        }
    }

    /// A session's server connection whose other end the test writes as the server.
    fn scripted_server(cached_metadata: bool) -> (Backend, tokio::net::UnixStream) {
        let (near, server) = tokio::net::UnixStream::pair().expect("a socket pair");
        let backend = Backend {
            stream: ServerStream::Unix(near),
            reader: PacketReader::default(),
            thread_id: 5,
            status: status::AUTOCOMMIT,
            server_version: "test".into(),
            cached_metadata,
        };
        (backend, server)
    }

    /// Relays one answer to a command that expects results while `script` plays the server:
    /// what came of it, and the bytes the client got.
    async fn relay(
        backend: &mut Backend,
        ctx: &SessionContext,
        progress: &Progress,
        script: impl std::future::Future<Output = ()>,
    ) -> (Result<Answered, RelayEnd>, Vec<u8>) {
        let (mut client, mut near_client) = tokio::io::duplex(1 << 16);
        let unit = Unit::default();
        let mut out = Vec::new();
        let down = Down::new(
            &mut near_client,
            backend,
            (ctx, &unit),
            Expect::Results,
            progress,
            &mut out,
        );
        let (answered, ()) = tokio::join!(down.run(), script);
        drop(near_client);
        let mut seen = Vec::new();
        client.read_to_end(&mut seen).await.expect("read");
        (answered, seen)
    }

    fn ok(seq: u8, status: u16) -> Vec<u8> {
        let mut payload = Vec::new();
        reply::Ok {
            status,
            ..reply::Ok::default()
        }
        .encode(&mut payload);
        let mut out = Vec::new();
        packet::encode(&mut out, seq, &payload);
        out
    }

    #[tokio::test]
    async fn a_local_infile_request_never_reaches_the_client() {
        let (mut backend, mut server) = scripted_server(false);
        let ctx = context();
        let progress = Progress::new(1);
        let script = async {
            let mut ask = Vec::new();
            packet::encode(&mut ask, 1, b"\xfb/etc/passwd");
            server.write_all(&ask).await.expect("ask");
            // The server gets an empty file, numbered after its request.
            let mut empty = [0u8; 4];
            server.read_exact(&mut empty).await.expect("an empty file");
            assert_eq!(empty, [0, 0, 0, 2]);
            // Then its answers: one more result follows, and none of it is the client's.
            server
                .write_all(&ok(3, status::AUTOCOMMIT | status::MORE_RESULTS))
                .await
                .expect("ok");
            server
                .write_all(&ok(4, status::AUTOCOMMIT))
                .await
                .expect("ok");
        };
        let (answered, seen) = relay(&mut backend, &ctx, &progress, script).await;
        let answered = answered.expect("the answer ends");
        assert_eq!(answered.error.as_ref().map(|e| e.code), Some(1227));
        let (only, used) = packet::decode(&seen, 1 << 20)
            .expect("a packet")
            .expect("whole");
        assert_eq!(used, seen.len(), "the client gets one packet");
        assert_eq!(only.seq, 1, "in place of the request");
        let e = reply::Err::decode(&only.payload).expect("an error");
        assert!(e.message.contains("LOCAL INFILE"), "{e:?}");
        assert_eq!(progress.client_seq(), Some(2));
    }

    /// The answer to a one-column query (`results` result sets of one row each) from a server
    /// as `cached` says, relayed to a client that took metadata caching; the packets the
    /// client got.
    async fn relay_to_a_caching_client(
        cached: bool,
        count: &[u8],
        results: u8,
    ) -> Vec<packet::Packet> {
        let (mut backend, mut server) = scripted_server(cached);
        let ctx = context_with(ExtCaps::CACHE_METADATA);
        let progress = Progress::new(1);
        let def = b"\x03def\x00\x00\x00\x011\x00\x0c?\x00\x01\x00\x00\x00\x08\x81\x00\x00\x00\x00";
        let eof = |status| {
            let mut eof = Vec::new();
            reply::Eof {
                warnings: 0,
                status,
            }
            .encode(&mut eof);
            eof
        };
        let mut answer = Vec::new();
        let mut seq = 1u8;
        for result in 1..=results {
            let last = match result == results {
                true => status::AUTOCOMMIT,
                false => status::AUTOCOMMIT | status::MORE_RESULTS,
            };
            for payload in [
                count,
                &def[..],
                &eof(status::AUTOCOMMIT),
                b"\x011",
                &eof(last),
            ] {
                packet::encode(&mut answer, seq, payload);
                seq += 1;
            }
        }
        let script = async { server.write_all(&answer).await.expect("the answer") };
        let (answered, seen) = relay(&mut backend, &ctx, &progress, script).await;
        let answered = answered.expect("the answer ends");
        assert_eq!(answered.rows, Some(u64::from(results)));
        let mut packets = Vec::new();
        let mut rest = &seen[..];
        while let Some((p, used)) = packet::decode(rest, 1 << 20).expect("packets") {
            packets.push(p);
            rest = &rest[used..];
        }
        assert!(rest.is_empty());
        assert_eq!(progress.client_seq(), Some(seq));
        packets
    }

    #[tokio::test]
    async fn a_caching_client_gets_the_metadata_flag_a_server_leaves_out() {
        // A server without metadata caching (MySQL): its count gains the flag, 1.
        let packets = relay_to_a_caching_client(false, &[1], 1).await;
        assert_eq!(packets.len(), 5);
        assert_eq!(
            (packets[0].seq, &packets[0].payload[..]),
            (1, &[1u8, 1][..])
        );
        let seqs: Vec<u8> = packets.iter().map(|p| p.seq).collect();
        assert_eq!(seqs, [1, 2, 3, 4, 5]);
        // Each count of several results (a CALL, a batch), and nothing else.
        let packets = relay_to_a_caching_client(false, &[1], 3).await;
        assert_eq!(packets.len(), 15);
        for (i, p) in packets.iter().enumerate() {
            assert_eq!(usize::from(p.seq), i + 1);
            let count = i % 5 == 0;
            assert_eq!(
                p.payload[..] == [1, 1],
                count,
                "packet {i}: {:?}",
                p.payload
            );
        }
        // A server that agreed sends it itself: passed on as it is.
        let packets = relay_to_a_caching_client(true, &[1, 1], 1).await;
        assert_eq!(packets.len(), 5);
        assert_eq!(&packets[0].payload[..], &[1u8, 1][..]);
    }
}
