//! The relay between an authenticated client and its own server connection (one per session:
//! no pooling across clients in this version). MySQL is strictly request and answer, so the
//! relay goes command by command: read a command, pass the tenant's gate, decide what becomes of
//! it ([`command`], with the statement checks in [`statements`]), forward it and stream the
//! answer back ([`answer`]), log it. Workspaces' DDL is captured as it completes ([`capture`]).

mod answer;
mod capture;
mod command;
pub mod statements;
mod stops;

use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use tdb_catalog::Catalog;
use tdb_catalog::routing::{LoggedStatement, QueryOrigin};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use super::backend::{Backend, BackendTarget};
use super::errno;
use super::packet::{self, Packet, PacketError, PacketReader};
use super::reply;
use crate::gate::Gate;
use crate::querylog::QueryLog;
pub use answer::ESCALATION;
use answer::{Answered, Progress, Watched};
use command::{Action, Book, Prepared, Unit};
pub use statements::{DDL_ON_TENANT, Guard};
use stops::{Stop, Stops};

/// The largest command a client may send (MariaDB's `max_allowed_packet` is 16 MiB by default).
pub const MAX_COMMAND: usize = 64 << 20;
/// How long the error that ends a session may take to reach the client's socket.
pub const FAREWELL_WRITE: std::time::Duration = std::time::Duration::from_secs(2);
/// A command longer than this takes its bytes from the proxy's shared budget while it is held.
const LARGE_COMMAND: usize = 1 << 20;

/// Who the session is, and what its relay must do.
pub struct SessionContext {
    /// Project, tenant or workspace, database and user: the origin of the session's records in
    /// the query log.
    pub origin: Arc<QueryOrigin>,
    /// Workspace in tenant mode: DDL that completes is queued on this blueprint.
    pub capture_ddl_into: Option<String>,
    pub gate: Option<Arc<Gate>>,
    pub log: QueryLog,
    pub catalog: Catalog,
    /// Cancelled when the tenant is suspended or deleted.
    pub kill: CancellationToken,
    /// Cancelled when tdb shuts down; an open transaction then gets `shutdown_grace`.
    pub shutdown: CancellationToken,
    pub shutdown_grace: std::time::Duration,
    pub metrics: crate::metrics::ProxyMetrics,
    /// `query_timeout_ms`, kept by the proxy too (a session can lift MariaDB's
    /// `max_statement_time`); `None`: no limit.
    pub query_timeout: Option<std::time::Duration>,
    /// Memory for commands held whole past [`LARGE_COMMAND`], shared by every session.
    pub statements_memory: tdb_engines::budget::MemoryBudget,
    pub guard: Guard,
    /// The server connection's target, for the short connection that stops a statement.
    pub target: BackendTarget,
    /// The connection id the client was given in the greeting.
    pub proxy_id: u32,
}

/// Why a relay ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayEnd {
    /// The client said goodbye or closed its connection.
    ClientGone,
    /// The server closed the connection.
    ServerGone,
    /// The tenant was suspended or deleted.
    Killed,
    /// Shutdown found the session outside a transaction.
    Drained,
    /// The shutdown deadline passed with a transaction open.
    DeadlinePassed,
    /// A malformed packet from either side.
    ProtocolError(&'static str),
    /// A statement outlived `query_timeout_ms`, was stopped, and still did not end.
    Unresponsive,
    /// The proxy refused something that ends the session, and said so.
    Refused,
}

pub struct RelayOutcome {
    pub end: RelayEnd,
    /// Between commands: the server connection runs nothing.
    pub idle: bool,
    /// The sequence id an error to the client now would carry; `None` when a packet to it was
    /// cut short (nothing more can be sent).
    pub client_seq: Option<u8>,
}

/// Relays until either side ends, the tenant is killed, or shutdown finds the session outside
/// a transaction (or its deadline passes). `input` holds what the client sent past the
/// connection phase.
pub async fn relay<C>(
    client: &mut C,
    input: PacketReader,
    backend: &mut Backend,
    ctx: &SessionContext,
) -> RelayOutcome
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    let (mut client_r, mut client_w) = tokio::io::split(client);
    let mut session = Session {
        ctx,
        input,
        book: Book::default(),
        in_transaction: backend.status & reply::status::IN_TRANS != 0,
        deadline: None,
        timer: Box::pin(answer::idle_timer()),
        stops: Stops::watch(&ctx.kill, &ctx.shutdown),
        out: Vec::new(),
    };
    loop {
        let command = match session.next_command(&mut client_r).await {
            Ok(c) => c,
            Err(end) => return outcome(end, true, Some(1)),
        };
        let progress = Progress::new(command.packet.next_seq());
        let ran = session
            .run(&mut client_r, &mut client_w, backend, command, &progress)
            .await;
        match ran {
            Ok(()) if !session.in_transaction && session.stops.shutting_down() => {
                let end = match session.stops.killed() {
                    true => RelayEnd::Killed,
                    false => RelayEnd::Drained,
                };
                return outcome(end, true, Some(1));
            }
            Ok(()) => {}
            Err((end, idle)) => return outcome(end, idle, progress.client_seq()),
        }
    }
}

fn outcome(end: RelayEnd, idle: bool, client_seq: Option<u8>) -> RelayOutcome {
    RelayOutcome {
        end,
        idle,
        client_seq,
    }
}

/// A command read whole, and the shared memory it holds while it is.
struct Command {
    packet: Packet,
    _held: Option<tdb_engines::budget::Answer>,
}

/// What one session keeps between commands.
struct Session<'a> {
    ctx: &'a SessionContext,
    input: PacketReader,
    book: Book,
    /// Whether the server's last status said a transaction is open.
    in_transaction: bool,
    /// The shutdown's deadline, once shutdown was asked for in a transaction.
    deadline: Option<tokio::time::Instant>,
    /// The statement timer, one for the session's life ([`answer::watch`] moves it).
    timer: std::pin::Pin<Box<tokio::time::Sleep>>,
    /// The tenant's kill and tdb's shutdown.
    stops: Stops,
    /// What goes to the client ([`answer::watch`] fills it, and empties it).
    out: Vec<u8>,
}

impl Session<'_> {
    /// The client's next command, once the gate lets it through.
    async fn next_command<R: AsyncRead + Unpin>(
        &mut self,
        client_r: &mut R,
    ) -> Result<Command, RelayEnd> {
        let ctx = self.ctx;
        let mut held = None;
        let packet = loop {
            match self.input.take(MAX_COMMAND) {
                Ok(Some(packet)) => break packet,
                Ok(None) => {}
                Err(PacketError::TooLarge { .. }) => {
                    return Err(RelayEnd::ProtocolError("a packet larger than 64 MiB"));
                }
                Err(_) => return Err(RelayEnd::ProtocolError("packets out of order")),
            }
            self.hold(&mut held)?;
            if self.deadline.is_none() && self.stops.shutting_down() {
                if self.stops.killed() {
                    return Err(RelayEnd::Killed);
                }
                self.shut_down()?;
            }
            tokio::select! {
                biased;
                stop = self.stops.next() => match stop {
                    Stop::Kill => return Err(RelayEnd::Killed),
                    Stop::Shutdown => self.shut_down()?,
                },
                _ = sleep_until(self.deadline) => return Err(RelayEnd::DeadlinePassed),
                read = self.input.fill(client_r) => match read {
                    Ok(n) => ctx.metrics.bytes_from_clients.increment(n as u64),
                    Err(_) => return Err(RelayEnd::ClientGone),
                },
            }
        };
        if packet.seq != 0 {
            return Err(RelayEnd::ProtocolError("a command out of sequence"));
        }
        // A hold parks new work, not a transaction already open (a cutover waits for those
        // to end).
        if let Some(gate) = &ctx.gate
            && gate.is_held()
            && !self.in_transaction
        {
            // Parked outside a transaction: a shutdown ends the session (as the PostgreSQL
            // proxy's parked clients stop waiting), and the command never runs.
            tokio::select! {
                _ = gate.pass() => {}
                stop = self.stops.next() => return Err(match stop {
                    Stop::Kill => RelayEnd::Killed,
                    Stop::Shutdown => RelayEnd::Drained,
                }),
            }
        }
        Ok(Command {
            packet,
            _held: held,
        })
    }

    /// tdb is shutting down: the session ends now outside a transaction, else at the deadline
    /// (set once).
    fn shut_down(&mut self) -> Result<(), RelayEnd> {
        if !self.in_transaction {
            return Err(RelayEnd::Drained);
        }
        if self.deadline.is_none() {
            self.deadline = Some(tokio::time::Instant::now() + self.ctx.shutdown_grace);
        }
        Ok(())
    }

    /// A long command being read takes its memory from the shared budget first.
    fn hold(&self, held: &mut Option<tdb_engines::budget::Answer>) -> Result<(), RelayEnd> {
        let Some((len, _)) = packet::header(self.input.buffered()) else {
            return Ok(());
        };
        if held.is_some() || len <= LARGE_COMMAND {
            return Ok(());
        }
        let memory = self.ctx.statements_memory.answer(MAX_COMMAND);
        // The first piece says at least this much; a longer packet takes its pieces' worth.
        let want = if len == packet::MAX_PIECE {
            MAX_COMMAND
        } else {
            len
        };
        if memory.take(want).is_err() {
            return Err(RelayEnd::ProtocolError(
                "command too large for the memory tdb has free now; try again",
            ));
        }
        *held = Some(memory);
        Ok(())
    }

    /// One command: refused here, or forwarded and its answer relayed. `Err` ends the session,
    /// with whether the server connection is idle.
    async fn run<R, W>(
        &mut self,
        client_r: &mut R,
        client_w: &mut W,
        backend: &mut Backend,
        command: Command,
        progress: &Progress,
    ) -> Result<(), (RelayEnd, bool)>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let ctx = self.ctx;
        let packet = &command.packet;
        let started = (Instant::now(), Utc::now());
        let decided = command::decide(&packet.payload, &ctx.guard, &mut self.book, ctx.proxy_id);
        let unit = match decided.await {
            Action::Quit => return Err((RelayEnd::ClientGone, true)),
            Action::Refuse(e, text) => {
                if let Some(text) = text {
                    let answered = Answered {
                        error: Some(e.clone()),
                        ..Answered::default()
                    };
                    log(ctx, &text, started, &answered);
                }
                return reply_error(client_w, packet.next_seq(), &e)
                    .await
                    .map_err(|end| (end, true));
            }
            Action::End(e, end) => {
                let _ = reply_error(client_w, packet.next_seq(), &e).await;
                return Err((end, true));
            }
            Action::Forward(unit) => unit,
        };
        let bytes = unit.rewritten.as_deref().unwrap_or(&packet.payload);
        let mut out = Vec::with_capacity(bytes.len() + packet::HEADER_LEN);
        packet::encode(&mut out, packet.seq, bytes);
        if backend.stream.write_all(&out).await.is_err() {
            return Err((RelayEnd::ServerGone, false));
        }
        drop(command);
        let Some(expect) = unit.expect else {
            return Ok(());
        };
        let watched = Watched {
            ctx,
            unit: &unit,
            expect,
            progress,
            deadline: &mut self.deadline,
            timer: self.timer.as_mut(),
            stops: &mut self.stops,
            out: &mut self.out,
        };
        let answered = answer::watch(client_r, &mut self.input, client_w, backend, watched)
            .await
            .map_err(|end| (end, false))?;
        self.after(&unit, &answered, backend)
            .await
            .map_err(|end| (end, false))?;
        if let Some(text) = &unit.text {
            log(ctx, text, started, &answered);
        }
        Ok(())
    }

    /// What an answer changes in the session.
    async fn after(
        &mut self,
        unit: &Unit,
        answered: &Answered,
        backend: &mut Backend,
    ) -> Result<(), RelayEnd> {
        if let Some(status) = answered.status {
            self.in_transaction = status & reply::status::IN_TRANS != 0;
        }
        if let (true, Some(id), Some(text)) = (unit.prepares, answered.prepared, &unit.text) {
            let stmts = unit.stmts.clone();
            self.book.prepared(
                id,
                Prepared {
                    text: text.clone(),
                    stmts,
                },
            );
        }
        if unit.resets && answered.error.is_none() {
            // The server dropped the session's statements and settings: the statement timeout
            // is given back.
            self.book.clear();
            if let Some(timeout) = self.ctx.query_timeout {
                let set = super::backend::statement_timeout(timeout);
                if backend.run(&set).await.is_err() {
                    return Err(RelayEnd::ServerGone);
                }
            }
        }
        Ok(())
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Writes an error as the packet numbered `seq`.
async fn reply_error<W: AsyncWrite + Unpin>(
    w: &mut W,
    seq: u8,
    e: &reply::Err,
) -> Result<(), RelayEnd> {
    let mut payload = Vec::new();
    e.encode(&mut payload);
    let mut out = Vec::with_capacity(payload.len() + packet::HEADER_LEN);
    packet::encode(&mut out, seq, &payload);
    let written = w.write_all(&out).await;
    if written.is_err() || w.flush().await.is_err() {
        return Err(RelayEnd::ClientGone);
    }
    Ok(())
}

/// Counts a statement and records it in the query log.
fn log(
    ctx: &SessionContext,
    text: &str,
    (started, started_at): (Instant, chrono::DateTime<Utc>),
    answered: &Answered,
) {
    ctx.metrics.queries.increment(1);
    if answered.error.is_some() {
        ctx.metrics.failed.increment(1);
    }
    if !ctx.log.enabled() {
        return;
    }
    ctx.log.record(
        &ctx.origin,
        &LoggedStatement {
            text,
            duration_us: i64::try_from(started.elapsed().as_micros()).unwrap_or(i64::MAX),
            success: answered.error.is_none(),
            sqlstate: answered.error.as_ref().map(reply::Err::sqlstate),
            rows: answered.rows.and_then(|r| i64::try_from(r).ok()),
            started_at,
        },
    );
}

/// The error a session's client gets as it ends, if any.
pub fn farewell(end: RelayEnd, ctx: &SessionContext, why_killed: String) -> Option<reply::Err> {
    match end {
        RelayEnd::Killed => Some(reply::Err::new(errno::CONNECTION_KILLED, why_killed)),
        RelayEnd::Drained | RelayEnd::DeadlinePassed => Some(reply::Err::new(
            errno::SERVER_SHUTDOWN,
            "terminating connection because tdb is shutting down",
        )),
        RelayEnd::Unresponsive => Some(reply::Err::new(
            errno::STATEMENT_TIMEOUT,
            format!(
                "terminating connection: a statement ran longer than query_timeout_ms ({} ms) \
                 and did not stop",
                ctx.query_timeout.map_or(0, |t| t.as_millis())
            ),
        )),
        RelayEnd::ProtocolError(what) => Some(reply::Err::new(errno::MALFORMED_PACKET, what)),
        RelayEnd::ClientGone | RelayEnd::ServerGone | RelayEnd::Refused => None,
    }
}

/// Writes a session's last error as packet `seq`, giving up after a moment: a client that
/// stopped reading must not hold its session (and a shutdown) open.
pub async fn tell<W: AsyncWrite + Unpin>(w: &mut W, seq: u8, e: &reply::Err) {
    let told = tokio::time::timeout(FAREWELL_WRITE, reply_error(w, seq, e)).await;
    if !matches!(told, Ok(Ok(()))) {
        tracing::debug!("a client did not read its session's last error");
    }
}
