//! One client connection, from its first byte to its last: TLS negotiation, the startup packet,
//! SCRAM, routing and the limits, a server connection, then the relay.

use std::net::SocketAddr;
use std::sync::Arc;

use tdb_catalog::routing::{Login, QueryOrigin};
use tdb_core::settings::PoolMode;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use super::backend::{Backend, BackendError, BackendTarget};
use super::frame::{self, PgError};
use super::message::{TxStatus, front};
use super::relay::{ClientState, RelayEnd, ServerSide, SessionContext, relay};
use super::scram::{ScramServer, Verifier};
use super::sqlstate;
use super::startup::{self, StartupRequest};
use super::stop::{ServerOf, end_running};
use crate::admission::{self, Admission};
use crate::cancel::CancelTarget;
use crate::route::Route;
use crate::tenancy::{self, Tenancy};
use crate::{PlaintextPolicy, ProxyState};

/// The protocol's name in logs and metrics.
const PROTOCOL: &str = "postgresql";
/// How long the error that ends a session may take to reach the client's socket.
const FAREWELL_WRITE: std::time::Duration = std::time::Duration::from_secs(2);
/// How long a connection refused by the address guard may take to be told why.
const REFUSAL_DEADLINE: std::time::Duration = std::time::Duration::from_secs(3);

enum ClientIo<S> {
    Plain(S),
    Tls(Box<TlsStream<S>>),
}

/// A client's connection: TCP in production, any byte stream (an in-memory one in tests).
pub trait ClientStream: AsyncRead + AsyncWrite + Unpin + Send {
    type Read<'a>: AsyncRead + Unpin + Send
    where
        Self: 'a;
    type Write<'a>: AsyncWrite + Unpin + Send
    where
        Self: 'a;
    /// The stream's reading and writing halves, borrowed for the session.
    fn halves(&mut self) -> (Self::Read<'_>, Self::Write<'_>);
}

impl ClientStream for TcpStream {
    type Read<'a> = tokio::net::tcp::ReadHalf<'a>;
    type Write<'a> = tokio::net::tcp::WriteHalf<'a>;
    fn halves(&mut self) -> (Self::Read<'_>, Self::Write<'_>) {
        self.split()
    }
}

impl ClientStream for tokio::io::DuplexStream {
    type Read<'a> = tokio::io::ReadHalf<&'a mut Self>;
    type Write<'a> = tokio::io::WriteHalf<&'a mut Self>;
    fn halves(&mut self) -> (Self::Read<'_>, Self::Write<'_>) {
        tokio::io::split(self)
    }
}

/// What a client that authenticated asked for.
struct Authenticated {
    login: Login,
    user: String,
    database: String,
    /// The server parameters it asked for ([`params::requested`]).
    params: Vec<(String, String)>,
}

/// A PostgreSQL client's connection, from its first byte to its last.
pub async fn handle(stream: TcpStream, peer: SocketAddr, proxy: Arc<ProxyState>) {
    let _ = stream.set_nodelay(true);
    handle_stream(stream, peer, proxy).await;
}

/// [`handle`] over any byte stream; `peer` is the address admission and the logs go by.
pub async fn handle_stream<S: ClientStream>(stream: S, peer: SocketAddr, proxy: Arc<ProxyState>) {
    let (unauthenticated, refusal) = match admission::admit(&proxy, peer, PROTOCOL) {
        Admission::Admitted(places) => (places, None),
        Admission::Refused(places, refusal) => (places, Some(refusal)),
        Admission::Closed => return,
    };
    if let Some(refusal) = refusal {
        let _ =
            tokio::time::timeout(REFUSAL_DEADLINE, refuse(stream, &proxy, refusal.into())).await;
        return;
    }
    let started =
        tokio::time::timeout(proxy.config.auth_timeout, negotiate(stream, peer, &proxy)).await;
    drop(unauthenticated);
    let (mut io, auth) = match started {
        Ok(Some(done)) => done,
        Ok(None) => return,
        Err(_) => {
            tracing::debug!(%peer, "authentication timed out");
            return;
        }
    };
    match &mut io {
        ClientIo::Plain(s) => {
            let (mut r, mut w) = s.halves();
            serve(&mut r, &mut w, auth, &proxy).await;
        }
        ClientIo::Tls(s) => {
            let (mut r, mut w) = tokio::io::split(s.as_mut());
            serve(&mut r, &mut w, auth, &proxy).await;
        }
    }
}

/// Keeps the open-sessions gauge right however a session ends.
struct SessionCount(crate::metrics::ProxyMetrics);

impl Drop for SessionCount {
    fn drop(&mut self) {
        self.0.sessions.decrement(1.0);
    }
}

/// Tells a connection refused by the address guard why, in the form its client reads: a client
/// that asked for TLS gets the handshake first (libpq does not show an error sent in answer to
/// its TLS request: it says only "error during SSL exchange"), within the proxy's budget of
/// such handshakes; past the budget, or without TLS, the error goes in plain text. A cancel
/// request is not forwarded.
async fn refuse<S: ClientStream>(stream: S, proxy: &ProxyState, refusal: PgError) {
    let mut io = ClientIo::Plain(stream);
    // At most an encryption request of each kind, then the startup packet.
    for _ in 0..3 {
        let request = match &mut io {
            ClientIo::Plain(s) => startup::read(s).await,
            ClientIo::Tls(s) => startup::read(s.as_mut()).await,
        };
        match (request, io) {
            (Ok(StartupRequest::Ssl), ClientIo::Plain(mut tcp)) => match &proxy.tls {
                Some(tls) if proxy.refusal_handshakes.allow() => {
                    if tcp.write_all(startup::ACCEPT_ENCRYPTION).await.is_err() {
                        return;
                    }
                    let Ok(stream) = tls.acceptor.accept(tcp).await else {
                        return;
                    };
                    io = ClientIo::Tls(Box::new(stream));
                }
                _ => {
                    io = ClientIo::Plain(tcp);
                    break;
                }
            },
            (Ok(StartupRequest::GssEnc), ClientIo::Plain(mut tcp)) => {
                if tcp.write_all(startup::DECLINE_ENCRYPTION).await.is_err() {
                    return;
                }
                io = ClientIo::Plain(tcp);
            }
            (Ok(StartupRequest::Cancel { .. }) | Err(startup::StartupError::Closed), mut done) => {
                close(&mut done).await;
                return;
            }
            (_, other) => {
                io = other;
                break;
            }
        }
    }
    fail(&mut io, refusal).await;
}

/// Everything before the relay. `None` when the connection ended (a cancel request, bad input,
/// failed authentication: the client has been told).
async fn negotiate<S: ClientStream>(
    stream: S,
    peer: SocketAddr,
    proxy: &ProxyState,
) -> Option<(ClientIo<S>, Authenticated)> {
    let (mut io, minor, params) = startup_packet(stream, peer, proxy).await?;
    let mut out = Vec::with_capacity(512);
    let (user, database, client_params) =
        check_startup(&mut io, peer, proxy, (minor, &params), &mut out).await?;
    let login = authenticate(&mut io, peer, proxy, &user, out).await?;
    Some((
        io,
        Authenticated {
            login,
            user,
            database,
            params: client_params,
        },
    ))
}

/// Encryption negotiated (TLS, or plain text refused politely to GSSAPI) and the startup
/// packet read, before the startup deadline. A cancel request is forwarded here.
async fn startup_packet<S: ClientStream>(
    stream: S,
    peer: SocketAddr,
    proxy: &ProxyState,
) -> Option<(ClientIo<S>, u16, Vec<(String, String)>)> {
    let mut io = ClientIo::Plain(stream);
    let mut ssl_asked = false;
    let mut gss_asked = false;
    // A silent or dawdling client gives its pre-authentication slot back at this deadline,
    // well before the whole authentication's timeout.
    let deadline = tokio::time::Instant::now() + proxy.config.startup_timeout;
    let (minor, params) = loop {
        let request = read_request(&mut io, deadline, peer).await?;
        match request {
            StartupRequest::Ssl if !ssl_asked => {
                ssl_asked = true;
                let ClientIo::Plain(tcp) = io else {
                    return None;
                };
                io = encrypt(tcp, proxy, deadline, peer).await?;
            }
            StartupRequest::GssEnc if !gss_asked && !ssl_asked => {
                gss_asked = true;
                if let ClientIo::Plain(tcp) = &mut io {
                    tcp.write_all(startup::DECLINE_ENCRYPTION).await.ok()?;
                }
            }
            StartupRequest::Ssl | StartupRequest::GssEnc => {
                fail(
                    &mut io,
                    PgError::fatal(
                        sqlstate::PROTOCOL_VIOLATION,
                        "encryption was already negotiated",
                    ),
                )
                .await;
                return None;
            }
            StartupRequest::Cancel { pid, key } => {
                if let Some(t) = proxy.cancels.lookup(pid, &key)
                    && let Err(e) = super::backend::cancel(&t.host, t.port, t.pid, t.key).await
                {
                    tracing::warn!(error = %e, "forwarding a cancel request failed");
                }
                close(&mut io).await;
                return None;
            }
            StartupRequest::Startup { minor, params } => break (minor, params),
        }
    };
    Some((io, minor, params))
}

/// The client's next startup-phase request, before `deadline`; `None` when the client
/// dawdled, left or sent something malformed (told why when it can hear it).
async fn read_request<S: ClientStream>(
    io: &mut ClientIo<S>,
    deadline: tokio::time::Instant,
    peer: SocketAddr,
) -> Option<StartupRequest> {
    let request = match io {
        ClientIo::Plain(s) => tokio::time::timeout_at(deadline, startup::read(s)).await,
        ClientIo::Tls(s) => tokio::time::timeout_at(deadline, startup::read(s.as_mut())).await,
    };
    let Ok(request) = request else {
        tracing::debug!(%peer, "no startup packet before the deadline; closing");
        return None;
    };
    match request {
        Ok(r) => Some(r),
        Err(e) => {
            tracing::debug!(%peer, error = %e, "bad startup packet");
            if !matches!(e, startup::StartupError::Closed) {
                let error = PgError::fatal(sqlstate::PROTOCOL_VIOLATION, e.to_string());
                fail(io, error).await;
            }
            None
        }
    }
}

/// The answer to `SSLRequest`: the TLS handshake when the proxy has a certificate, else `N`
/// and plain text.
async fn encrypt<S: ClientStream>(
    mut tcp: S,
    proxy: &ProxyState,
    deadline: tokio::time::Instant,
    peer: SocketAddr,
) -> Option<ClientIo<S>> {
    let Some(tls) = &proxy.tls else {
        tcp.write_all(startup::DECLINE_ENCRYPTION).await.ok()?;
        return Some(ClientIo::Plain(tcp));
    };
    tcp.write_all(startup::ACCEPT_ENCRYPTION).await.ok()?;
    // The handshake reads straight from the socket: nothing the client sent before it is ever
    // taken as protocol (CVE-2021-23214).
    match tokio::time::timeout_at(deadline, tls.acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => Some(ClientIo::Tls(Box::new(tls))),
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake past the deadline");
            None
        }
    }
}

/// What the startup packet asks for, within what the proxy allows: the user, the database and
/// the server parameters. Protocol negotiation, when needed, goes into `out`.
async fn check_startup<S: ClientStream>(
    io: &mut ClientIo<S>,
    peer: SocketAddr,
    proxy: &ProxyState,
    (minor, params): (u16, &[(String, String)]),
    out: &mut Vec<u8>,
) -> Option<(String, String, Vec<(String, String)>)> {
    let tls = matches!(io, ClientIo::Tls(_));
    let plaintext_ok = match proxy.config.plaintext {
        PlaintextPolicy::Allow => true,
        PlaintextPolicy::Loopback => peer.ip().is_loopback(),
        PlaintextPolicy::Refuse => false,
    };
    if !tls && !plaintext_ok {
        fail(
            io,
            PgError::fatal(
                sqlstate::INVALID_AUTHORIZATION_SPECIFICATION,
                "this server accepts only encrypted connections: connect with sslmode=require",
            ),
        )
        .await;
        return None;
    }
    let get = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    if get("replication").is_some_and(|v| !matches!(v, "false" | "off" | "0" | "no")) {
        fail(
            io,
            PgError::fatal(
                sqlstate::PROTOCOL_VIOLATION,
                "replication connections are not supported",
            ),
        )
        .await;
        return None;
    }
    let unknown: Vec<&str> = params
        .iter()
        .map(|(k, _)| k.as_str())
        .filter(|k| k.starts_with("_pq_."))
        .collect();
    if minor > 0 || !unknown.is_empty() {
        frame::negotiate_protocol(out, 0, &unknown);
    }
    let Some(user) = get("user").filter(|u| !u.is_empty()).map(str::to_string) else {
        fail(
            io,
            PgError::fatal(
                sqlstate::INVALID_AUTHORIZATION_SPECIFICATION,
                "no user name specified in the startup packet",
            ),
        )
        .await;
        return None;
    };
    let database = get("database")
        .filter(|d| !d.is_empty())
        .unwrap_or(&user)
        .to_string();
    let client_params = match super::params::requested(params) {
        Ok(p) => p,
        Err(e) => {
            fail(io, e).await;
            return None;
        }
    };

    Some((user, database, client_params))
}

/// The SCRAM exchange for `user`, after the throttles of failed logins; sends what is in `out`
/// first. The login when it succeeded.
async fn authenticate<S: ClientStream>(
    io: &mut ClientIo<S>,
    peer: SocketAddr,
    proxy: &ProxyState,
    user: &str,
    mut out: Vec<u8>,
) -> Option<Login> {
    if let Err(refusal) = admission::login_throttle(proxy, user, peer) {
        fail(io, refusal.into()).await;
        return None;
    }
    let login = match proxy.catalog.proxy_login(user).await {
        Ok(login) => login,
        Err(e) => {
            tracing::error!(error = %e, "catalog lookup of a proxy login failed");
            fail(
                io,
                PgError::fatal(
                    sqlstate::CANNOT_CONNECT_NOW,
                    "the database catalog is not available; try again",
                ),
            )
            .await;
            return None;
        }
    };
    let verifier = login.as_ref().and_then(|l| Verifier::parse(&l.verifier));
    let mut exchange = match verifier {
        Some(v) => ScramServer::new(v, true),
        None => ScramServer::new(Verifier::fake(&proxy.fake_scram_secret, user), false),
    };
    // Over TLS, SCRAM-SHA-256-PLUS binds the exchange to this TLS session.
    if let (ClientIo::Tls(_), Some(end_point)) =
        (&*io, proxy.tls.as_ref().and_then(|t| t.end_point.clone()))
    {
        exchange = exchange.with_binding(end_point);
    }
    frame::auth_sasl(&mut out, exchange.mechanisms());
    send(io, &out).await?;
    out.clear();
    let authenticated = async {
        let first = read_auth(io).await.ok()?;
        let (mechanism, data) = frame::parse_sasl_initial(&first)?;
        let server_first = exchange.client_first_for(mechanism, data).ok()?;
        let mut msg = Vec::new();
        frame::auth_sasl_continue(&mut msg, &server_first);
        send(io, &msg).await?;
        let last = read_auth(io).await.ok()?;
        exchange.client_final(&last).ok()
    }
    .await;
    let (Some(server_final), Some(login)) = (authenticated, login) else {
        admission::login_failed(proxy, PROTOCOL, user, peer);
        // The same answer for a wrong password, an unknown user and a broken exchange.
        fail(
            io,
            PgError::fatal(
                sqlstate::INVALID_PASSWORD,
                format!("password authentication failed for user \"{user}\""),
            ),
        )
        .await;
        return None;
    };
    frame::auth_sasl_final(&mut out, &server_final);
    frame::auth_ok(&mut out);
    send(io, &out).await?;
    Some(login)
}

async fn read_auth<S: ClientStream>(io: &mut ClientIo<S>) -> Result<Vec<u8>, frame::FrameError> {
    match io {
        ClientIo::Plain(s) => frame::read_auth_message(s, front::PASSWORD).await,
        ClientIo::Tls(s) => frame::read_auth_message(s.as_mut(), front::PASSWORD).await,
    }
}

async fn send<S: ClientStream>(io: &mut ClientIo<S>, bytes: &[u8]) -> Option<()> {
    let done = match io {
        ClientIo::Plain(s) => s.write_all(bytes).await,
        ClientIo::Tls(s) => {
            let s = s.as_mut();
            match s.write_all(bytes).await {
                Ok(()) => s.flush().await,
                Err(e) => Err(e),
            }
        }
    };
    done.ok()
}

/// Sends `error` and closes the connection: every caller ends the session.
async fn fail<S: ClientStream>(io: &mut ClientIo<S>, error: PgError) {
    let mut out = Vec::new();
    error.encode(&mut out);
    if send(io, &out).await.is_some() {
        close(io).await;
    }
}

/// Ends a connection before its session: over TLS with a `close_notify`, so the client reads a
/// clean end and not a truncated stream (libpq's TLS cancel requests report an "unexpected
/// eof" otherwise, although the cancel worked). A client that does not read gets
/// [`FAREWELL_WRITE`] at most.
async fn close<S: ClientStream>(io: &mut ClientIo<S>) {
    if let ClientIo::Tls(s) = io {
        let _ = tokio::time::timeout(FAREWELL_WRITE, s.as_mut().shutdown()).await;
    }
}

async fn fail_w<W: AsyncWrite + Unpin>(w: &mut W, error: PgError) {
    let mut out = Vec::new();
    error.encode(&mut out);
    let _ = w.write_all(&out).await;
    let _ = w.flush().await;
}

/// After authentication: route, limits, a server connection, the relay, and clean-up.
async fn serve<R, W>(client_r: &mut R, client_w: &mut W, auth: Authenticated, proxy: &ProxyState)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let Tenancy {
        route,
        gate,
        kill,
        slot,
    } = match tenancy::enter(proxy, &auth.login, &auth.database).await {
        Ok(t) => t,
        Err(e) => return fail_w(client_w, e.into()).await,
    };
    if let Some(tenant) = &route.tenant_id {
        tracing::Span::current().record("tenant", tenant.as_str());
    }
    let transaction_mode = route.settings.pool_mode == PoolMode::Transaction;
    let target = match backend_target(&route, &auth, transaction_mode) {
        Ok(t) => Arc::new(t),
        Err(e) => return fail_w(client_w, e).await,
    };
    let Some((backend, pid)) = greet(client_w, &route, &target, &auth, proxy).await else {
        return;
    };
    let ctx = session_context(&route, &auth, (gate, kill), &target, proxy);
    ctx.metrics.sessions.increment(1.0);
    let _counted = SessionCount(ctx.metrics.clone());
    let attached = if transaction_mode {
        // The connection served the greeting; the first transaction takes whichever is free.
        proxy.cancels.retarget(pid, None);
        proxy.pool.keep(target.clone(), backend).await;
        None
    } else {
        Some(backend)
    };
    let mut session = Session {
        server_id: route.server_id.clone(),
        route,
        target,
        auth: &auth,
        proxy,
        ctx,
        pid,
        state: ClientState::default(),
        at_boundary: true,
    };
    let (end, idle, backend) = session.run(client_r, client_w, attached).await;
    proxy.cancels.unregister(pid);
    drop(slot);
    // What the client is told, then what becomes of the server connection.
    if let Some(error) = farewell(&end, &session.route, proxy).await {
        if session.at_boundary {
            tell(client_w, error).await;
        } else {
            // A message to the client was cut short: anything more would be read as its rest.
            tracing::debug!(
                code = error.code,
                "session ended in the middle of a message"
            );
        }
    }
    let Some(backend) = backend else {
        // Between transactions (transaction pooling): no server connection to clean up.
        return;
    };
    let server = ServerOf {
        target: &session.target,
        server_id: &session.server_id,
    };
    settle(&end, idle, backend, server, proxy).await;
}

/// The session's first server connection and the client's greeting: the server's parameters,
/// the key to cancel with (the proxy's own, standing for the server's) and ReadyForQuery.
/// Under transaction pooling the greeting's connection counts under `max_connections` too.
/// `None` when the client has been told why not, or is gone.
async fn greet<W: AsyncWrite + Unpin>(
    client_w: &mut W,
    route: &Route,
    target: &Arc<BackendTarget>,
    auth: &Authenticated,
    proxy: &ProxyState,
) -> Option<(Backend, u32)> {
    let tenant_slot = if target.transaction_pooling {
        match take_server_slot(route, proxy, &proxy.shutdown).await {
            Ok(permit) => Some(permit),
            Err(CheckOut::Refused(e)) => {
                fail_w(client_w, e).await;
                return None;
            }
            Err(_) => {
                fail_w(client_w, shutting_down()).await;
                return None;
            }
        }
    } else {
        None
    };
    let mut backend = match proxy.pool.acquire(target, route.server_budget, 0).await {
        Ok((b, _reused)) => b,
        Err(e) => {
            fail_w(client_w, backend_error(e, route, &auth.database)).await;
            return None;
        }
    };
    backend.tenant_slot = tenant_slot;
    let (pid, key) = proxy.cancels.register(CancelTarget {
        host: target.host.clone(),
        port: target.port,
        pid: backend.pid,
        key: backend.key,
    });
    let mut hello = Vec::with_capacity(512);
    for (name, value) in &backend.params {
        frame::parameter_status(&mut hello, name, value);
    }
    frame::backend_key_data(&mut hello, pid, key);
    frame::ready_for_query(&mut hello, TxStatus::Idle.byte());
    if client_w.write_all(&hello).await.is_err() || client_w.flush().await.is_err() {
        proxy.cancels.unregister(pid);
        proxy.pool.release(target.clone(), backend).await;
        return None;
    }
    Some((backend, pid))
}

/// Who the session is and what its relays must do.
fn session_context(
    route: &Route,
    auth: &Authenticated,
    (gate, kill): (
        Option<Arc<crate::gate::Gate>>,
        tokio_util::sync::CancellationToken,
    ),
    target: &BackendTarget,
    proxy: &ProxyState,
) -> SessionContext {
    let origin = Arc::new(QueryOrigin {
        project_id: Arc::from(route.project_id.as_str()),
        tenant: match &route.name {
            crate::route::RoutingName::Tenant { tenant, .. } => Some(Arc::from(tenant.as_str())),
            _ => None,
        },
        workspace: match &route.name {
            crate::route::RoutingName::Workspace { name } => Some(Arc::from(name.as_str())),
            _ => None,
        },
        database: Arc::from(auth.database.as_str()),
        source: "proxy",
        username: Arc::from(auth.user.as_str()),
    });
    SessionContext {
        origin,
        capture_ddl_into: route.blueprint_id.clone(),
        gate,
        log: proxy.log.clone(),
        catalog: proxy.catalog.clone(),
        kill,
        shutdown: proxy.shutdown.clone(),
        shutdown_grace: proxy.config.shutdown_grace,
        transaction_mode: target.transaction_pooling,
        pinned_identity: matches!(route.name, crate::route::RoutingName::Provisioned { .. }),
        metrics: proxy.metrics(PROTOCOL),
        query_timeout: (route.settings.query_timeout_ms > 0)
            .then(|| std::time::Duration::from_millis(route.settings.query_timeout_ms)),
        statements_memory: proxy.statements_memory.clone(),
        plan_epoch: proxy.pool.plan_epoch(target),
    }
}

/// A session past its greeting: where its transactions go, and what its client has.
struct Session<'a> {
    auth: &'a Authenticated,
    proxy: &'a ProxyState,
    ctx: SessionContext,
    /// The route as last resolved, the server connection target and server it gives.
    route: Arc<Route>,
    target: Arc<BackendTarget>,
    server_id: String,
    /// The id the client cancels with.
    pid: u32,
    state: ClientState,
    /// Whether the client is between messages (anything sent to it now is read whole).
    at_boundary: bool,
}

/// How a session's relays ended: why, whether the server connection was idle, and the
/// connection when the session still holds one.
type Ended = (RelayEnd, bool, Option<Backend>);

impl Session<'_> {
    /// Session pooling: one relay for the whole session, on `attached`. Transaction pooling:
    /// one relay per transaction, each on whichever server connection is free when the client
    /// sends work.
    async fn run<R, W>(
        &mut self,
        client_r: &mut R,
        client_w: &mut W,
        attached: Option<Backend>,
    ) -> Ended
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let mut attached = attached;
        loop {
            let backend = match attached.take() {
                Some(b) => b,
                None => match self.next_connection(client_r, client_w).await {
                    Ok(b) => b,
                    Err(ended) => return ended,
                },
            };
            if let Err(ended) = self.transaction(client_r, client_w, backend).await {
                return ended;
            }
        }
    }

    /// Transaction pooling, between transactions: waits for the client's next work, then a
    /// server connection for it, wherever the route points now.
    async fn next_connection<R, W>(
        &mut self,
        client_r: &mut R,
        client_w: &mut W,
    ) -> Result<Backend, Ended>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let ctx = &self.ctx;
        if let Some(end) = wait_for_work(client_r, &mut self.state, ctx).await {
            return Err((end, true, None));
        }
        // A hold parks the next transaction before it takes a connection; once released, it
        // goes wherever the route now points (a cutover).
        if let Some(gate) = &ctx.gate {
            tokio::select! {
                _ = gate.pass() => {}
                _ = ctx.kill.cancelled() => return Err((RelayEnd::Killed, true, None)),
                _ = ctx.shutdown.cancelled() => return Err((RelayEnd::Drained, true, None)),
            }
        }
        // The route as it is now: where it points, and its limits (a changed max_connections
        // takes effect for sessions already open too).
        let (auth, proxy) = (self.auth, self.proxy);
        if let Ok(fresh) = proxy.router.resolve(&auth.login, &auth.database).await
            // The same route (as cached): the same target, not built again.
            && !Arc::ptr_eq(&fresh, &self.route)
            && let Ok(moved) = backend_target(&fresh, auth, true)
        {
            self.target = Arc::new(moved);
            self.server_id.clone_from(&fresh.server_id);
            self.route = fresh;
        }
        let client = (client_r, &mut self.state);
        match check_out(&self.route, &self.target, ctx, proxy, client).await {
            Ok(b) => Ok(b),
            Err(CheckOut::Refused(e)) => {
                fail_w(client_w, e).await;
                Err((RelayEnd::ServerGone, false, None))
            }
            Err(CheckOut::Ended(end)) => Err((end, true, None)),
        }
    }

    /// One relay on `backend`: to the end of the session (session pooling) or of a
    /// transaction, after which the connection goes back to the pool (transaction pooling).
    async fn transaction<R, W>(
        &mut self,
        client_r: &mut R,
        client_w: &mut W,
        mut backend: Backend,
    ) -> Result<(), Ended>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let (proxy, transaction_mode) = (self.proxy, self.ctx.transaction_mode);
        let cancel = CancelTarget {
            host: self.target.host.clone(),
            port: self.target.port,
            pid: backend.pid,
            key: backend.key,
        };
        proxy.cancels.retarget(self.pid, Some(cancel.clone()));
        // Transaction pooling: a connection another client used last carries whatever that
        // client did to its session, seen or not: it is reset, and given this client's own
        // settings, ahead of this client's work.
        let state = &mut self.state;
        let reset = (transaction_mode && backend.last_client != state.id())
            .then(|| super::backend::settings_messages(&state.settings));
        backend.last_client = state.id();
        let outcome = {
            let (mut sr, mut sw) = backend.stream.split();
            let server = ServerSide {
                r: &mut sr,
                w: &mut sw,
                prepared: &mut backend.prepared,
                cancel: &cancel,
                reset,
            };
            relay(client_r, client_w, server, &self.ctx, state).await
        };
        proxy.cancels.retarget(self.pid, None);
        self.at_boundary = outcome.client_at_boundary;
        let kept = match &outcome.end {
            RelayEnd::Detached { reusable: true } => {
                track_settings(&mut backend, state, outcome.settings_may_have_changed).await
            }
            RelayEnd::ClientGone if transaction_mode && outcome.idle => {
                track_settings(&mut backend, state, outcome.settings_may_have_changed).await
            }
            _ => Ok(()),
        };
        if let Err(e) = kept {
            backend.terminate().await;
            let why = format!("could not read this session's settings back from the server: {e}");
            if self.at_boundary {
                fail_w(client_w, PgError::fatal(sqlstate::CONNECTION_FAILURE, why)).await;
            }
            return Err((RelayEnd::ServerGone, false, None));
        }
        match outcome.end {
            RelayEnd::Detached { reusable: true } => {
                proxy.pool.keep(self.target.clone(), backend).await;
                Ok(())
            }
            RelayEnd::Detached { reusable: false } => {
                backend.terminate().await;
                Ok(())
            }
            end => Err((end, outcome.idle, Some(backend))),
        }
    }
}

/// Transaction pooling, after a transaction that may have changed the session's settings: they
/// are read back, as what the client now has and what the connection now carries.
async fn track_settings(
    backend: &mut Backend,
    state: &mut ClientState,
    may_have_changed: bool,
) -> Result<(), String> {
    if may_have_changed {
        let custom = state.custom_settings.iter().map(String::as_str);
        // Boxed: the exchange's future is large and seldom needed.
        state.settings = Box::pin(backend.read_settings(custom)).await?;
    }
    Ok(())
}

/// What becomes of a session's server connection as the session ends: back to the pool when
/// the client said goodbye between transactions; closed otherwise, and whatever it still runs
/// is stopped (a client that left mid-statement leaves nothing running on the server).
async fn settle(
    end: &RelayEnd,
    idle: bool,
    backend: Backend,
    server: ServerOf<'_>,
    proxy: &ProxyState,
) {
    match end {
        RelayEnd::ClientGone if idle && server.target.transaction_pooling => {
            proxy.pool.keep(server.target.clone(), backend).await;
        }
        RelayEnd::ClientGone if idle => {
            proxy.pool.release(server.target.clone(), backend).await;
        }
        // The server is gone, or it already has the connection back between transactions.
        RelayEnd::ServerGone | RelayEnd::Detached { .. } => {}
        // Cancelled once and ignored: the administrator ends it.
        RelayEnd::Unresponsive => end_running(backend, server, &proxy.router, true).await,
        _ if idle => backend.terminate().await,
        RelayEnd::ClientGone
        | RelayEnd::Killed
        | RelayEnd::DeadlinePassed
        | RelayEnd::Drained
        | RelayEnd::ProtocolError(_) => {
            end_running(backend, server, &proxy.router, false).await;
        }
    }
}

/// The error a session's client gets as it ends, if any.
async fn farewell(end: &RelayEnd, route: &Route, proxy: &ProxyState) -> Option<PgError> {
    match end {
        RelayEnd::Killed => {
            let why = match proxy.router.current_status(route).await {
                Some(status) => format!("terminating connection: {} is {status}", route.describe()),
                None => format!("terminating connection: {} was removed", route.describe()),
            };
            Some(PgError::fatal(sqlstate::ADMIN_SHUTDOWN, why))
        }
        RelayEnd::Drained | RelayEnd::DeadlinePassed => Some(shutting_down()),
        RelayEnd::ProtocolError(what) => Some(PgError::fatal(sqlstate::PROTOCOL_VIOLATION, *what)),
        RelayEnd::Unresponsive => Some(PgError::fatal(
            sqlstate::QUERY_CANCELED,
            format!(
                "terminating connection: a statement ran longer than query_timeout_ms ({} ms) \
                 and did not stop when cancelled",
                route.settings.query_timeout_ms
            ),
        )),
        RelayEnd::ClientGone | RelayEnd::ServerGone | RelayEnd::Detached { .. } => None,
    }
}

/// What a session that tdb's shutdown ends is told.
fn shutting_down() -> PgError {
    crate::refusal::Refusal::shutting_down().into()
}

/// Writes a session's last error, giving up after a moment: a client that stopped reading
/// must not hold its session (and a shutdown) open.
async fn tell<W: AsyncWrite + Unpin>(w: &mut W, error: PgError) {
    if tokio::time::timeout(FAREWELL_WRITE, fail_w(w, error))
        .await
        .is_err()
    {
        tracing::debug!("a client did not read its session's last error");
    }
}

/// Why a transaction got no server connection.
enum CheckOut {
    /// The client is told this, and its session ends.
    Refused(PgError),
    /// The session was ended meanwhile (the tenant suspended, tdb shutting down).
    Ended(RelayEnd),
}

/// Transaction pooling: a server connection for the client's next transaction, under the
/// route's `max_connections` (waiting in order of arrival), given the client's own settings.
async fn check_out<R: AsyncRead + Unpin>(
    route: &Route,
    target: &BackendTarget,
    ctx: &SessionContext,
    proxy: &ProxyState,
    (client_r, state): (&mut R, &mut ClientState),
) -> Result<Backend, CheckOut> {
    let slot = take_server_slot(route, proxy, &ctx.shutdown);
    tokio::pin!(slot);
    let permit = loop {
        tokio::select! {
            got = &mut slot => break got?,
            _ = ctx.kill.cancelled() => return Err(CheckOut::Ended(RelayEnd::Killed)),
            // A client that leaves while its transaction waits takes the transaction with it:
            // it must not run later for no one (a client that timed out and retried would have
            // it run twice).
            gone = client_left(client_r, state), if state.pending_bytes() < WATCH_LIMIT => {
                if gone {
                    return Err(CheckOut::Ended(RelayEnd::ClientGone));
                }
            }
        }
    };
    let mut backend = match proxy
        .pool
        .acquire(target, route.server_budget, state.id())
        .await
    {
        Ok((b, _)) => b,
        Err(e) => {
            return Err(CheckOut::Refused(backend_error(
                e,
                route,
                &ctx.origin.database,
            )));
        }
    };
    backend.tenant_slot = Some(permit);
    Ok(backend)
}

/// Bytes a client may send ahead while its transaction waits for a server connection, past
/// which the proxy stops reading (and watching) until the transaction runs: beyond a usual
/// transaction's messages, the rest waits in the kernel's socket buffer, not in tdb's memory
/// (a tenant may have thousands of clients waiting).
const WATCH_LIMIT: usize = 16 * 1024;

/// Reads what the client sends meanwhile (kept for the relay); true once it has gone.
async fn client_left<R: AsyncRead + Unpin>(client_r: &mut R, state: &mut ClientState) -> bool {
    use tokio::io::AsyncReadExt;
    matches!(client_r.read_buf(state.buffer()).await, Ok(0) | Err(_))
}

/// Transaction pooling: a place among the route's `max_connections` server connections, in
/// order of arrival, waiting up to `transaction_wait`; else 53300 naming the limit.
async fn take_server_slot(
    route: &Route,
    proxy: &ProxyState,
    shutdown: &tokio_util::sync::CancellationToken,
) -> Result<tokio::sync::OwnedSemaphorePermit, CheckOut> {
    // Free now: no timer to set.
    if let Ok(permit) = route.server_slots.clone().try_acquire_owned() {
        return Ok(permit);
    }
    let wait = proxy.config.transaction_wait;
    tokio::select! {
        biased;
        _ = shutdown.cancelled() => Err(CheckOut::Ended(RelayEnd::Drained)),
        got = tokio::time::timeout(wait, route.server_slots.clone().acquire_owned()) => match got {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(CheckOut::Refused(PgError::fatal(
                sqlstate::TOO_MANY_CONNECTIONS,
                format!(
                    "too many connections for {}: its {} server connections (max_connections) \
                     stayed busy for {} s",
                    route.describe(),
                    route.settings.max_connections,
                    wait.as_secs()
                ),
            ))),
        },
    }
}

/// Where and as whom a session reaches its database, and with which parameters: the route's
/// server and role for the credential, the client's parameters within what the route allows.
fn backend_target(
    route: &Route,
    auth: &Authenticated,
    transaction_mode: bool,
) -> Result<BackendTarget, PgError> {
    let access = if auth.login.role == tdb_core::KeyRole::Read {
        route.read.clone().ok_or_else(|| {
            PgError::fatal(
                sqlstate::INSUFFICIENT_PRIVILEGE,
                "this credential has no role on the database",
            )
        })?
    } else {
        route.write.clone()
    };
    // A provisioned database's search_path stays in its schema, as the relay holds `SET`s to.
    if let crate::route::RoutingName::Provisioned { schema } = &route.name
        && let Some((_, path)) = auth.params.iter().find(|(n, _)| n == "search_path")
        && let Some(why) =
            tdb_sql::pinned_session_refusal(&format!("SET search_path TO {path}"), schema)
    {
        return Err(PgError::fatal(sqlstate::INSUFFICIENT_PRIVILEGE, why));
    }
    let params = super::params::for_route(&auth.params, route.settings.query_timeout_ms)?;
    Ok(BackendTarget {
        host: route.host.clone(),
        port: route.port,
        database: route.physical_db.clone(),
        user: access.user,
        password: access.password,
        params,
        transaction_pooling: transaction_mode,
    })
}

/// Transaction pooling, between transactions: waits until the client sends something (then
/// `None`: time to take a server connection), or the session ends (its end).
async fn wait_for_work<R: AsyncRead + Unpin>(
    client_r: &mut R,
    state: &mut ClientState,
    ctx: &SessionContext,
) -> Option<RelayEnd> {
    use tokio::io::AsyncReadExt;
    if state.has_input() {
        return state.terminates().then_some(RelayEnd::ClientGone);
    }
    tokio::select! {
        read = client_r.read_buf(state.buffer()) => match read {
            Ok(0) | Err(_) => Some(RelayEnd::ClientGone),
            Ok(_) => state.terminates().then_some(RelayEnd::ClientGone),
        },
        _ = ctx.kill.cancelled() => Some(RelayEnd::Killed),
        _ = ctx.shutdown.cancelled() => Some(RelayEnd::Drained),
    }
}

fn backend_error(e: BackendError, route: &Route, database: &str) -> PgError {
    tracing::warn!(error = %e, database, "connecting to a server database failed");
    // The server refused a parameter the client asked for: its name or value, or the tenant's
    // right to set it. Said as the server says it.
    if let BackendError::Refused { code, message, .. } = &e
        && let Some(code) = sqlstate::parameter_refusal(code)
    {
        return PgError::fatal(code, message.clone());
    }
    match e {
        BackendError::Refused { code, .. } if code == sqlstate::TOO_MANY_CONNECTIONS => {
            PgError::fatal(
                sqlstate::TOO_MANY_CONNECTIONS,
                format!(
                    "too many connections for {} (max_connections is {})",
                    route.describe(),
                    route.settings.max_connections
                ),
            )
        }
        BackendError::ServerFull { budget } => PgError::fatal(
            sqlstate::TOO_MANY_CONNECTIONS,
            format!(
                "the server of {} has no connection free for tenants: its {budget} are in use; \
                 try again shortly",
                route.describe()
            ),
        ),
        BackendError::Refused { code, .. } if code == sqlstate::INVALID_CATALOG_NAME => {
            crate::refusal::Refusal::no_such_database(database).into()
        }
        BackendError::Refused { code, .. } if code == sqlstate::CANNOT_CONNECT_NOW => {
            PgError::fatal(
                sqlstate::CANNOT_CONNECT_NOW,
                format!(
                    "the server of {} is starting up or shutting down; try again",
                    route.describe()
                ),
            )
        }
        _ => PgError::fatal(
            sqlstate::CONNECTION_FAILURE,
            format!("could not connect to the server of {}", route.describe()),
        ),
    }
}
