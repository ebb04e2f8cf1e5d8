//! The relay between a logged-in client and its own server connection. Requests are read as
//! they come (many per read when pipelined) and each is decided by the policy: forwarded
//! requests are written to the server in order and their replies read back in the same order
//! and rewritten as the decision says; refusals and emulations are answered by the proxy at
//! their place in that order. Pub/sub frames (RESP3 pushes, RESP2 arrays in subscribed mode)
//! are not replies to anything: they lose the prefix and go straight out.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use chrono::{DateTime, Utc};
use tdb_catalog::routing::{LoggedStatement, QueryOrigin};
use tdb_resp::frame::{Frame, Request};
use tdb_resp::policy::{self, Blocking, Decision, ReplyRewrite, Session};
use tdb_resp::prefix::Prefix;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::backend::BackendError;
use super::link::Link;
use super::memory::Held;
use super::patterns::Patterns;
use super::session::Client;
use super::walker::Walker;
use super::{emulate, keyrules};
use crate::gate::Gate;
use crate::querylog::QueryLog;

/// How long the error that ends a session may take to reach the client.
const FAREWELL_WRITE: Duration = Duration::from_secs(2);

/// Who the session is and what its relay must do.
pub struct SessionContext {
    pub origin: Arc<QueryOrigin>,
    pub prefix: Prefix,
    /// The name the client logged in with.
    pub user: Bytes,
    pub resp3: bool,
    pub gate: Option<Arc<Gate>>,
    /// Cancelled when the tenant is suspended or deleted.
    pub kill: CancellationToken,
    pub shutdown: CancellationToken,
    pub log: QueryLog,
    pub metrics: crate::metrics::ProxyMetrics,
    /// `query_timeout_ms`: a reply that has not come within it ends the session.
    pub query_timeout: Option<Duration>,
    /// "tenant \"acme\"", for messages.
    pub describe: String,
    /// TTLs and `max_keys` (see [`super::keyrules`]).
    pub key_rules: Arc<tdb_core::keyrules::KeyRules>,
    pub key_counts: Arc<super::keyrules::KeyCounts>,
    /// The budget for large requests (see [`super::memory`]).
    pub memory: tdb_engines::budget::MemoryBudget,
    /// The connection's span, named as the parent of what the relay logs. The relay does not
    /// run inside it: entering it on every wake-up costs more than all the relay's logging.
    pub span: tracing::Span,
}

/// What the client is owed, in order.
enum Expect {
    /// The server's reply to a forwarded request.
    Reply(Pending),
    /// An answer the proxy made (a refusal), sent when its turn comes.
    Local(Frame),
}

struct Pending {
    rewrite: ReplyRewrite,
    /// When the session ends if the reply has not come; `None` for a command that may block
    /// forever. It moves by the time the relay spends waiting for its client from here on
    /// (see [`Relay::client_wait`]).
    deadline: Option<Instant>,
    /// [`Relay::client_wait`] when the request was sent.
    client_wait: Duration,
    log: Record,
}

/// What the query log gets of a command: its name and how many keys it named.
#[derive(Clone)]
struct Record {
    text: String,
    started: std::time::Instant,
    started_at: DateTime<Utc>,
}

/// Why a relay ended.
#[derive(Debug)]
enum End {
    ClientGone,
    Quit,
    ServerGone,
    /// Told to the client before closing.
    Said(String),
}

struct Relay<'a> {
    ctx: &'a SessionContext,
    session: Session,
    pending: VecDeque<Expect>,
    /// Bytes for the client and for the server, written before the relay waits again.
    to_client: BytesMut,
    to_server: BytesMut,
    /// Replies the requests in `to_server` owe.
    unsent_replies: usize,
    /// The client's pattern subscriptions, kept by the proxy.
    patterns: Patterns,
    /// KEYS, SCAN and the emulations' counts go over this connection (see
    /// [`super::walker`]).
    walker: Walker<'a>,
    /// What the client's unread input holds of the large-frame budget.
    request_memory: Held,
    /// How long the relay has waited, in all, for its client to take what it wrote. The query
    /// timeout is the server's time: while the relay waits for a slow client it reads nothing
    /// from the server, so the replies owed get that long more.
    client_wait: Duration,
}

/// Relays until the client leaves, the server goes, the tenant is stopped or a reply is late.
/// When the session ends with an error, returns its last words (what the client was still owed,
/// then the error) for [`farewell`], which the caller sends once it has let go of the server
/// connection and the session's place.
#[must_use]
pub async fn relay<S>(
    client: &mut Client<S>,
    link: &mut Link<'_>,
    ctx: &SessionContext,
    walker: Walker<'_>,
) -> Option<BytesMut>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    ctx.metrics.sessions.increment(1.0);
    let mut relay = Relay {
        ctx,
        session: Session::new(ctx.user.clone(), ctx.resp3),
        pending: VecDeque::new(),
        to_client: BytesMut::with_capacity(16 * 1024),
        to_server: BytesMut::with_capacity(16 * 1024),
        unsent_replies: 0,
        patterns: Patterns::default(),
        walker,
        request_memory: Held::new(ctx.memory.clone()),
        client_wait: Duration::ZERO,
    };
    let end = relay.run(client, link).await;
    ctx.metrics.sessions.decrement(1.0);
    tracing::debug!(parent: &ctx.span, ?end, "Redis session ended");
    let End::Said(message) = end else {
        return None;
    };
    let mut out = std::mem::take(&mut relay.to_client);
    Frame::Error(message.into()).encode(&mut out);
    Some(out)
}

/// Writes the last words and closes the sending side while reading and discarding whatever the
/// client is still sending, for [`FAREWELL_WRITE`] at most. A client in the middle of a large
/// request would otherwise find its write refused, and, with its unread input left at the
/// close, the connection is reset and the error may never be read. Nothing read is kept: the
/// session's input is given back first.
pub async fn farewell<S>(client: &mut Client<S>, last: &[u8])
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    client.input = BytesMut::new();
    let _ = tokio::time::timeout(FAREWELL_WRITE, say_and_drain(&mut client.io, last)).await;
}

async fn say_and_drain<S>(io: &mut S, last: &[u8])
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut reader, mut writer) = tokio::io::split(io);
    let say = async {
        let _ = writer.write_all(last).await;
        let _ = writer.shutdown().await;
    };
    let drain = async {
        let mut scrap = vec![0u8; 64 * 1024];
        while let Ok(1..) = reader.read(&mut scrap).await {}
    };
    tokio::join!(say, drain);
}

impl Relay<'_> {
    async fn run<S>(&mut self, client: &mut Client<S>, link: &mut Link<'_>) -> End
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        // Requests pipelined behind the login.
        if let Err(end) = self.requests(client, link).await {
            return end;
        }
        let ctx = self.ctx;
        // Made once for the session: a future made anew on every turn of the loop would
        // register with its token or timer wheel, and leave it, once per request.
        let mut stop = std::pin::pin!(watch_stop(ctx));
        // The timer stays armed at the deadline it was set to while that is not later than
        // the oldest reply's; when it fires early (that reply came), it is moved.
        let mut timer = std::pin::pin!(tokio::time::sleep(Duration::ZERO));
        let mut armed: Option<Instant> = None;
        loop {
            if let Err(end) = self.flush(client, link).await {
                return end;
            }
            // What was decided and sent is no longer held.
            if let Err(e) = self.request_memory.track(client.held()) {
                return End::Said(format!("ERR {e}; closing the connection"));
            }
            let deadline = self.deadline();
            if let Some(deadline) = deadline
                && armed.is_none_or(|at| at > deadline)
            {
                timer.as_mut().reset(deadline);
                armed = Some(deadline);
            }
            tokio::select! {
                biased;
                stopped = &mut stop => {
                    // The helper is gone without a word only when its runtime is.
                    if stopped != Ok(Stop::Kill) {
                        return End::Said("ERR terminating connection because tdb is shutting down".into());
                    }
                    return End::Said(format!(
                        "ERR terminating connection: {} is no longer served",
                        ctx.describe
                    ));
                }
                _ = &mut timer, if deadline.is_some() => {
                    armed = None;
                    if deadline.is_some_and(|d| Instant::now() < d) {
                        continue;
                    }
                    // A reply that came while the relay was writing to its client is not late.
                    let owed = self.pending.len();
                    if let Err(end) = self.replies_now(link) {
                        return end;
                    }
                    if self.pending.len() < owed {
                        continue;
                    }
                    self.stop_overdue_script();
                    let ms = ctx.query_timeout.map_or(0, |t| t.as_millis());
                    return End::Said(format!(
                        "ERR query timeout: the server did not answer within {ms} ms (query_timeout_ms); closing the connection"
                    ));
                }
                read = link.readable() => {
                    if let Err(e) = read {
                        return server_error(&ctx.span)(e);
                    }
                    if let Err(end) = self.replies(link) {
                        return end;
                    }
                }
                // Over a lane, the client waits while too much it sent is unanswered.
                read = client.io.read_buf(&mut client.input), if !link.is_full() => {
                    match read {
                        Ok(0) | Err(_) => return End::ClientGone,
                        Ok(_) => {}
                    }
                    if let Err(e) = self.request_memory.track(client.held()) {
                        return End::Said(format!("ERR {e}; closing the connection"));
                    }
                    if let Err(end) = self.requests(client, link).await {
                        return end;
                    }
                }
            }
        }
    }

    /// When the reply owed first is a script's, asks the server to stop the script that runs
    /// (`SCRIPT KILL`, as the administrator, over the walker logged in before the script was
    /// sent): a script blocks the whole shared server while it runs. The kill goes on after the
    /// session ends, since the server reads it only once the script has run
    /// `busy-reply-threshold` (5 s by default). Redis refuses to stop a script that has written
    /// (it would break atomicity): that one runs on, and tdb says so in its log.
    fn stop_overdue_script(&mut self) {
        let overdue = self.pending.iter().find_map(|e| match e {
            Expect::Reply(p) => Some(p.log.text.clone()),
            Expect::Local(_) => None,
        });
        let is_script = overdue.as_deref().is_some_and(|text| {
            let name = text.split_whitespace().next().unwrap_or("");
            matches!(name, "EVAL" | "EVALSHA" | "EVAL_RO" | "EVALSHA_RO")
        });
        let Some(mut conn) = self.walker.take().filter(|_| is_script) else {
            return;
        };
        let tenant = self.ctx.describe.clone();
        tokio::spawn(async move {
            let mut pushes = Vec::new();
            let kill = conn.call(&[b"SCRIPT", b"KILL"], &mut pushes);
            match tokio::time::timeout(Duration::from_secs(30), kill).await {
                Ok(Ok(Frame::Error(e))) => tracing::warn!(
                    %tenant,
                    error = %String::from_utf8_lossy(&e),
                    "a script outlived query_timeout_ms and could not be stopped"
                ),
                Ok(Ok(_)) => {
                    tracing::info!(%tenant, "stopped a script that outlived query_timeout_ms")
                }
                Ok(Err(e)) => {
                    tracing::warn!(%tenant, error = %e, "stopping an overdue script failed")
                }
                Err(_) => tracing::warn!(%tenant, "stopping an overdue script timed out"),
            }
        });
    }

    /// The deadline of the oldest reply owed.
    fn deadline(&self) -> Option<Instant> {
        let oldest = self.pending.iter().find_map(|e| match e {
            Expect::Reply(p) => Some(p),
            Expect::Local(_) => None,
        })?;
        Some(oldest.deadline? + (self.client_wait - oldest.client_wait))
    }

    async fn flush<S>(&mut self, client: &mut Client<S>, link: &mut Link<'_>) -> Result<(), End>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        if !self.to_server.is_empty() {
            link.send(&mut self.to_server, self.unsent_replies)
                .await
                .map_err(server_error(&self.ctx.span))?;
            self.unsent_replies = 0;
        }
        if !self.to_client.is_empty() {
            self.ctx
                .metrics
                .bytes_to_clients
                .increment(self.to_client.len() as u64);
            // Only a reply still owed can be held up by the client: with none, no clock.
            let started = (!self.pending.is_empty()).then(Instant::now);
            client
                .io
                .write_all(&self.to_client)
                .await
                .map_err(|_| End::ClientGone)?;
            client.io.flush().await.map_err(|_| End::ClientGone)?;
            if let Some(started) = started {
                self.client_wait += started.elapsed();
            }
            self.to_client.clear();
            super::memory::settle(&mut self.to_client);
        }
        Ok(())
    }

    /// Decides every whole request the client has sent.
    async fn requests<S>(&mut self, client: &mut Client<S>, link: &mut Link<'_>) -> Result<(), End>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        let mut passed_gate = false;
        loop {
            let request = match client.decoder.decode(&mut client.input) {
                Ok(Some(request)) => request,
                Ok(None) => return Ok(()),
                Err(e) => {
                    let message = format!("ERR Protocol error: {e}");
                    // What came before the bad bytes is answered first.
                    self.flush(client, link).await?;
                    self.drain(client, link).await?;
                    return Err(End::Said(message));
                }
            };
            if !passed_gate {
                self.pass_gate(client, link).await?;
                passed_gate = true;
            }
            self.request(request, client, link).await?;
        }
    }

    /// A held tenant's commands wait here (what was already sent is answered first).
    async fn pass_gate<S>(&mut self, client: &mut Client<S>, link: &mut Link<'_>) -> Result<(), End>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        let ctx = self.ctx;
        let Some(gate) = &ctx.gate else {
            return Ok(());
        };
        if !gate.is_held() {
            return Ok(());
        }
        self.flush(client, link).await?;
        let pass = async {
            // Over a lane, what was sent is answered first: its replies would otherwise wait
            // in the seat, counted against the budget, for as long as the hold lasts.
            if link.is_shared() {
                self.drain(client, link).await?;
            }
            gate.pass().await;
            Ok(())
        };
        tokio::select! {
            passed = pass => passed,
            _ = ctx.kill.cancelled() => Err(End::Said(format!(
                "ERR terminating connection: {} is no longer served",
                ctx.describe
            ))),
            _ = ctx.shutdown.cancelled() => Err(End::Said(
                "ERR terminating connection because tdb is shutting down".into()
            )),
        }
    }

    async fn request<S>(
        &mut self,
        request: Request,
        client: &mut Client<S>,
        link: &mut Link<'_>,
    ) -> Result<(), End>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        let table = link.table().clone();
        let name = policy::command_name(&table, &request);
        let decision = policy::decide(&table, &self.ctx.prefix, &request, &mut self.session);
        match decision {
            Decision::Forward { .. } if matches!(&*name, "psubscribe" | "punsubscribe") => {
                self.leave_lane(client, link).await?;
                self.pattern_subscription(&name, &request.args()[1..]);
                Ok(())
            }
            Decision::Forward { args, reply, .. } if policy::runs_as_administrator(&name) => {
                self.walk(&name, args, &reply, client, link).await
            }
            Decision::Forward {
                mut args,
                reply,
                keys,
                blocking,
            } => {
                if link.is_shared() && !policy::keeps_no_state(&table, &request) {
                    self.leave_lane(client, link).await?;
                }
                if matches!(&*name, "eval" | "evalsha" | "eval_ro" | "evalsha_ro") {
                    // Logged in before the script runs: once it does, the server reads other
                    // clients only after `busy-reply-threshold`, and the kill must not wait
                    // for a login too.
                    self.walker.prepare(&self.ctx.span).await;
                }
                let plan = keyrules::plan(&self.ctx.key_rules, &table, &request, &args);
                if let Some(refusal) = self.over_limit(&plan.written, client, link).await? {
                    self.session.spoil_transaction();
                    self.log(&record(&name, keys), false);
                    self.answer(Frame::Error(refusal.into()));
                    return Ok(());
                }
                if let Some(ttl) = plan.set_ttl {
                    args.push(Bytes::from_static(b"EX"));
                    args.push(Bytes::from(ttl.to_string()));
                }
                self.forward(args, reply, blocking, record(&name, keys));
                for (key, ttl) in plan.expires {
                    let expire = vec![
                        Bytes::from_static(b"EXPIRE"),
                        key,
                        Bytes::from(ttl.to_string()),
                        Bytes::from_static(b"NX"),
                    ];
                    self.session.queue_hidden();
                    self.forward(expire, ReplyRewrite::Hidden, None, record("expire", 1));
                }
                Ok(())
            }
            Decision::Refuse(message) => {
                self.log(&record(&name, 0), false);
                self.answer(Frame::Error(message.into()));
                Ok(())
            }
            Decision::Emulate(emulation) => {
                self.flush(client, link).await?;
                self.drain(client, link).await?;
                let record = record(&name, 0);
                let mut pushes = Vec::new();
                let answer = emulate::run(
                    &emulation,
                    link,
                    &mut self.walker,
                    &self.ctx.prefix,
                    self.session.resp3,
                    &mut pushes,
                );
                let answer = match self.ctx.query_timeout {
                    Some(limit) => tokio::time::timeout(limit, answer).await.map_err(|_| {
                        End::Said("ERR query timeout; closing the connection".into())
                    })?,
                    None => answer.await,
                };
                for push in pushes {
                    self.pubsub(push);
                }
                let answer = answer.map_err(server_error(&self.ctx.span))?;
                self.log(&record, !answer.is_error());
                self.answer(answer);
                if emulation == policy::Emulation::Quit {
                    self.flush(client, link).await?;
                    return Err(End::Quit);
                }
                Ok(())
            }
        }
    }

    /// Before the session's first command that needs a server connection of its own: what
    /// was sent over the shared lane is answered, then the session's own connection opens.
    async fn leave_lane<S>(
        &mut self,
        client: &mut Client<S>,
        link: &mut Link<'_>,
    ) -> Result<(), End>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        if !link.is_shared() {
            return Ok(());
        }
        self.flush(client, link).await?;
        self.drain(client, link).await?;
        if let Err(e) = link.own_connection().await {
            tracing::warn!(
                parent: &self.ctx.span,
                error = %e,
                "opening a session's own Redis connection failed"
            );
            return Err(End::Said(format!(
                "ERR could not connect to the server of {}",
                self.ctx.describe
            )));
        }
        Ok(())
    }

    /// KEYS, SCAN or PUBSUB NUMSUB (`args` anchored in the prefix by the policy), run on the
    /// walker at its place in the order (KEYS as SCAN steps); refused inside MULTI, where it could not run at EXEC's moment.
    async fn walk<S>(
        &mut self,
        name: &str,
        args: Vec<Bytes>,
        rewrite: &ReplyRewrite,
        client: &mut Client<S>,
        link: &mut Link<'_>,
    ) -> Result<(), End>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        let record = record(name, 0);
        if self.session.in_multi() {
            self.session.spoil_transaction();
            self.log(&record, false);
            self.answer(Frame::Error(
                format!(
                    "ERR {} cannot be queued in a transaction through tdb; run it outside MULTI",
                    name.replace('|', " ").to_ascii_uppercase()
                )
                .into(),
            ));
            return Ok(());
        }
        self.flush(client, link).await?;
        self.drain(client, link).await?;
        let refs: Vec<&[u8]> = args.iter().map(|a| &a[..]).collect();
        let reply = async {
            match refs.as_slice() {
                [_, pattern] if name == "keys" => {
                    emulate::keys(&mut self.walker, &self.ctx.prefix, pattern).await
                }
                _ => self.walker.call(&refs).await,
            }
        };
        let reply = match self.ctx.query_timeout {
            Some(limit) => tokio::time::timeout(limit, reply)
                .await
                .map_err(|_| End::Said("ERR query timeout; closing the connection".into()))?,
            None => reply.await,
        };
        let reply = policy::rewrite(
            reply.map_err(server_error(&self.ctx.span))?,
            rewrite,
            &self.ctx.prefix,
        );
        self.ctx.metrics.queries.increment(1);
        self.log(&record, !reply.is_error());
        self.answer(reply);
        Ok(())
    }

    fn forward(
        &mut self,
        args: Vec<Bytes>,
        rewrite: ReplyRewrite,
        blocking: Option<Blocking>,
        log: Record,
    ) {
        self.ctx.metrics.queries.increment(1);
        if let Some(request) = Request::new(args) {
            request.encode(&mut self.to_server);
        }
        // Subscriptions are confirmed by pub/sub frames, not replies, except for an
        // unsubscription outside RESP2's subscribed mode.
        let owed = match &rewrite {
            ReplyRewrite::Subscription { confirmations } => {
                if self.session.resp3 || self.session.subscribed {
                    0
                } else {
                    *confirmations
                }
            }
            _ => 1,
        };
        let deadline = match (self.ctx.query_timeout, blocking) {
            (None, _) | (_, Some(Blocking::Forever)) => None,
            (Some(limit), Some(Blocking::For(wait))) => {
                Some(Instant::from_std(log.started) + limit + wait)
            }
            (Some(limit), None) => Some(Instant::from_std(log.started) + limit),
        };
        self.unsent_replies += owed;
        if owed == 0 {
            return;
        }
        for _ in 1..owed {
            self.pending.push_back(Expect::Reply(Pending {
                rewrite: rewrite.clone(),
                deadline,
                client_wait: self.client_wait,
                log: log.clone(),
            }));
        }
        // The last (most often the only) one takes them: no copy of the record per request.
        self.pending.push_back(Expect::Reply(Pending {
            rewrite,
            deadline,
            client_wait: self.client_wait,
            log,
        }));
    }

    /// Under `max_keys`: the refusal of a write that would create keys past the limit. Outside
    /// MULTI the written keys are checked with EXISTS first (overwriting is always allowed);
    /// inside, where nothing can be asked of the server, each counts as new.
    async fn over_limit<S>(
        &mut self,
        written: &[Bytes],
        client: &mut Client<S>,
        link: &mut Link<'_>,
    ) -> Result<Option<String>, End>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        let Some(max) = self.ctx.key_rules.max_keys else {
            return Ok(None);
        };
        if written.is_empty() {
            return Ok(None);
        }
        let in_multi = self.session.in_multi();
        let mut pushes = Vec::new();
        let mut new = written.len() as u64;
        if !in_multi {
            self.flush(client, link).await?;
            self.drain(client, link).await?;
            new = 0;
            let backend = link
                .own_connection()
                .await
                .map_err(server_error(&self.ctx.span))?;
            for key in written {
                let exists = backend.call(&[b"EXISTS", key], &mut pushes).await;
                if exists.map_err(server_error(&self.ctx.span))? == Frame::Integer(0) {
                    new += 1;
                }
            }
        }
        let prefix = self.ctx.prefix.as_bytes().clone();
        let counts = &self.ctx.key_counts;
        let mut count = counts.get(&prefix);
        if !in_multi && count.is_none_or(|c| c + new > max) && new > 0 {
            let fresh = emulate::count(&mut self.walker, &self.ctx.prefix).await;
            let fresh = u64::try_from(fresh.map_err(server_error(&self.ctx.span))?).unwrap_or(0);
            counts.set(&prefix, fresh);
            count = Some(fresh);
        }
        for push in pushes {
            self.pubsub(push);
        }
        let count = count.unwrap_or(0);
        if new > 0 && count + new > max {
            return Ok(Some(keyrules::over_limit(&self.ctx.describe, count, max)));
        }
        counts.add(&prefix, new);
        Ok(None)
    }

    /// PSUBSCRIBE and PUNSUBSCRIBE, kept by the proxy (see [`super::patterns`]).
    fn pattern_subscription(&mut self, name: &str, patterns: &[Bytes]) {
        let (prefix, resp3) = (&self.ctx.prefix, self.session.resp3);
        let server = if name == "psubscribe" {
            self.patterns.subscribe(patterns, prefix, resp3)
        } else {
            self.patterns.unsubscribe(patterns, prefix, resp3)
        };
        let owed = if resp3 || self.session.subscribed {
            0
        } else {
            1
        };
        let rewrite = ReplyRewrite::Subscription {
            confirmations: owed,
        };
        // Outside RESP2's subscribed mode the server's one confirmation is owed in order.
        self.forward(server, rewrite, None, record(name, 0));
    }

    /// Queues the proxy's own answer behind the replies still owed.
    fn answer(&mut self, frame: Frame) {
        if self.pending.is_empty() {
            frame.encode(&mut self.to_client);
        } else {
            self.pending.push_back(Expect::Local(frame));
        }
    }

    /// Reads until every reply owed has come.
    async fn drain<S>(&mut self, client: &mut Client<S>, link: &mut Link<'_>) -> Result<(), End>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        while !self.pending.is_empty() {
            let frame = match self.deadline() {
                Some(deadline) => tokio::time::timeout_at(deadline, link.read_frame())
                    .await
                    .map_err(|_| End::Said("ERR query timeout; closing the connection".into()))?,
                None => link.read_frame().await,
            };
            self.reply(frame.map_err(server_error(&self.ctx.span))?)?;
            self.flush(client, link).await?;
        }
        Ok(())
    }

    /// The replies that have come, without waiting for one.
    fn replies_now(&mut self, link: &mut Link<'_>) -> Result<(), End> {
        let polled = {
            let readable = std::pin::pin!(link.readable());
            // Polled once: the relay's own wait registers its waker again.
            readable.poll(&mut std::task::Context::from_waker(std::task::Waker::noop()))
        };
        if let std::task::Poll::Ready(Err(e)) = polled {
            return Err(server_error(&self.ctx.span)(e));
        }
        self.replies(link)
    }

    /// Every whole frame the server has sent; over a lane, only until the client's share is
    /// written, so that replies wait in the seat, where they are counted (the next wait for
    /// replies returns at once).
    fn replies(&mut self, link: &mut Link<'_>) -> Result<(), End> {
        while let Some(frame) = link.buffered().map_err(server_error(&self.ctx.span))? {
            self.reply(frame)?;
            if self.to_client.len() >= super::memory::FREE && link.is_shared() {
                break;
            }
        }
        Ok(())
    }

    fn reply(&mut self, frame: Frame) -> Result<(), End> {
        if matches!(frame, Frame::Push(_)) {
            self.pubsub(frame);
            return Ok(());
        }
        match self.pending.pop_front() {
            Some(Expect::Reply(pending)) if pending.rewrite == ReplyRewrite::Hidden => {}
            Some(Expect::Reply(pending)) => {
                self.log(&pending.log, !frame.is_error());
                if let ReplyRewrite::Subscription { .. } = pending.rewrite {
                    if policy::leaves_subscribed_mode(&frame) {
                        self.session.subscribed = false;
                    }
                    self.pubsub(frame);
                } else {
                    policy::rewrite(frame, &pending.rewrite, &self.ctx.prefix)
                        .encode(&mut self.to_client);
                }
            }
            Some(Expect::Local(_)) => {
                return Err(End::Said("ERR internal error: replies out of order".into()));
            }
            None if !self.session.resp3 => {
                // RESP2 subscribed mode: confirmations and messages.
                if policy::leaves_subscribed_mode(&frame) {
                    self.session.subscribed = false;
                } else if is_subscribe_confirmation(&frame) {
                    self.session.subscribed = true;
                }
                self.pubsub(frame);
            }
            None => return Err(End::Said("ERR the server sent an unexpected reply".into())),
        }
        while let Some(Expect::Local(_)) = self.pending.front() {
            if let Some(Expect::Local(frame)) = self.pending.pop_front() {
                frame.encode(&mut self.to_client);
            }
        }
        Ok(())
    }

    fn pubsub(&mut self, frame: Frame) {
        for frame in self.patterns.server_frame(frame, &self.ctx.prefix) {
            match policy::rewrite_pubsub(frame, &self.ctx.prefix) {
                Some(frame) => frame.encode(&mut self.to_client),
                None => tracing::warn!(
                    parent: &self.ctx.span,
                    "a pub/sub frame outside the tenant's prefix was dropped"
                ),
            }
        }
    }

    fn log(&self, record: &Record, success: bool) {
        if !success {
            self.ctx.metrics.failed.increment(1);
        }
        self.ctx.log.record(
            &self.ctx.origin,
            &LoggedStatement {
                text: &record.text,
                duration_us: i64::try_from(record.started.elapsed().as_micros())
                    .unwrap_or(i64::MAX),
                success,
                sqlstate: None,
                rows: None,
                started_at: record.started_at,
            },
        );
    }
}

/// The log's text of a command: its name and key count, never an argument.
fn record(name: &str, keys: usize) -> Record {
    use std::fmt::Write;
    let mut text = String::with_capacity(name.len() + 12);
    text.extend(name.chars().map(|c| match c {
        '|' => ' ',
        c => c.to_ascii_uppercase(),
    }));
    let _ = match keys {
        1 => write!(text, " (1 key)"),
        keys => write!(text, " ({keys} keys)"),
    };
    let started = std::time::Instant::now();
    Record {
        text,
        started,
        started_at: wall_clock(started),
    }
}

thread_local! {
    /// A monotonic instant and the wall-clock time read with it.
    static WALL: std::cell::Cell<Option<(std::time::Instant, DateTime<Utc>)>> =
        const { std::cell::Cell::new(None) };
}

/// The wall-clock time at `at` (a moment just read): the system's wall clock is read at most
/// once a second per thread and the monotonic clock counts from there, which is one clock read
/// less per command and at most a second's drift between the two clocks.
fn wall_clock(at: std::time::Instant) -> DateTime<Utc> {
    WALL.with(|wall| match wall.get() {
        Some((base, utc)) if at.saturating_duration_since(base) < Duration::from_secs(1) => {
            utc + chrono::TimeDelta::from_std(at - base).unwrap_or_default()
        }
        _ => {
            let utc = Utc::now();
            wall.set(Some((at, utc)));
            utc
        }
    })
}

/// Why a session must end before its client or server ends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// The tenant was suspended or deleted.
    Kill,
    Shutdown,
}

/// Resolves when the tenant is stopped or tdb shuts down. A helper task waits on the two
/// tokens and answers over a oneshot channel, which the relay's loop polls on every wake-up
/// with an atomic read: a token's own future takes two locks each time it is polled. The
/// helper ends with the session (the channel's receiver dropped).
fn watch_stop(ctx: &SessionContext) -> tokio::sync::oneshot::Receiver<Stop> {
    let (told, stop) = tokio::sync::oneshot::channel();
    let (kill, shutdown) = (ctx.kill.clone(), ctx.shutdown.clone());
    tokio::spawn(async move {
        let mut told = told;
        let why = tokio::select! {
            _ = kill.cancelled() => Stop::Kill,
            _ = shutdown.cancelled() => Stop::Shutdown,
            _ = told.closed() => return,
        };
        let _ = told.send(why);
    });
    stop
}

fn is_subscribe_confirmation(frame: &Frame) -> bool {
    let kind = frame
        .as_items()
        .and_then(|items| items.first())
        .and_then(Frame::as_bytes);
    kind.is_some_and(|k| {
        [&b"subscribe"[..], b"psubscribe", b"ssubscribe"]
            .iter()
            .any(|s| k.eq_ignore_ascii_case(s))
    })
}

/// How a failure of the server connection ends the session, logged in the connection's span.
fn server_error(span: &tracing::Span) -> impl Fn(BackendError) -> End + '_ {
    move |e| {
        if let BackendError::TooLarge(_) | BackendError::Unread(_) = e {
            return End::Said(format!("ERR {e}; closing the connection"));
        }
        tracing::warn!(parent: span, error = %e, "the Redis server connection failed");
        End::ServerGone
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_gets_the_command_and_its_key_count_only() {
        assert_eq!(record("get", 1).text, "GET (1 key)");
        assert_eq!(record("client|setname", 0).text, "CLIENT SETNAME (0 keys)");
        assert_eq!(record("mset", 3).text, "MSET (3 keys)");
    }

    #[test]
    fn the_wall_clock_follows_the_monotonic_one() {
        let before = Utc::now();
        let first = wall_clock(std::time::Instant::now());
        std::thread::sleep(Duration::from_millis(20));
        let second = wall_clock(std::time::Instant::now());
        let after = Utc::now();
        // The two clocks may part by a little between readings.
        let slack = chrono::TimeDelta::milliseconds(5);
        assert!(before <= first && first <= second && second <= after + slack);
        assert!(second - first >= chrono::TimeDelta::milliseconds(20));
    }
}
