//! One MySQL client connection, from its first byte to its last: admission, the greeting, TLS
//! after an `SSLRequest`, the password exchange ([`super::login`]), routing by the database
//! named in the handshake and the limits, a server connection, then the relay. The client's
//! OK comes only once its server connection stands, so a routing or server refusal is the
//! answer to its login, as a MariaDB server answers an unknown database.
//!
//! The greeting says `5.5.5-10.11.0-MariaDB-tdb`: tenants run on MariaDB 10.11, so clients
//! must pick MariaDB's dialect (ORMs look for `MariaDB` in the version), and the `5.5.5-`
//! prefix is how MariaDB itself keeps old MySQL clients from misreading a major version of 10.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use rand::Rng as _;
use tdb_catalog::routing::{Login, QueryOrigin};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::auth::{self, Verifiers};
use super::backend::{self, Backend, BackendError, BackendTarget, Stop};
use super::capability::{Caps, ExtCaps};
use super::errno;
use super::handshake::{self, ClientHello, Handshake, HandshakeResponse};
use super::login::{Exchange, Next, Stored};
use super::packet::{self, Packet, PacketError, PacketReader};
use super::relay::{self, Guard, RelayEnd, SessionContext};
use super::reply::{self, status};
use super::stream::{ClientIo, Rewound};
use crate::admission::{self, Admission};
use crate::pg::scram;
use crate::route::{Route, RoutingName};
use crate::tenancy::{self, Tenancy};
use crate::{PlaintextPolicy, ProxyState};

/// The protocol's name in logs and metrics.
const PROTOCOL: &str = "mysql";
pub const SERVER_VERSION: &str = "5.5.5-10.11.0-MariaDB-tdb";
/// The largest packet a client may send before it has authenticated (connection attributes
/// included, which clients keep well under this).
const PRE_AUTH_LIMIT: usize = 64 * 1024;
/// How long a connection refused by the address guard may take to be told why.
const REFUSAL_DEADLINE: std::time::Duration = std::time::Duration::from_secs(3);

/// Where the proxy finds a user's credential: the catalog (tests bring their own).
pub trait Logins: Sync {
    /// The live credential named `user`; `Err` when the lookup itself failed.
    fn login(&self, user: &str) -> impl Future<Output = Result<Option<Login>, String>> + Send;
}

impl Logins for tdb_catalog::Catalog {
    fn login(&self, user: &str) -> impl Future<Output = Result<Option<Login>, String>> + Send {
        let user = user.to_string();
        async move { self.proxy_login(&user).await.map_err(|e| e.to_string()) }
    }
}

/// What a client that authenticated asked for.
pub(crate) struct Authenticated {
    login: Login,
    user: String,
    pub(crate) database: Option<String>,
    caps: Caps,
    /// The MariaDB extended capabilities the client took of those offered.
    ext: ExtCaps,
    collation: u8,
    /// The sequence id of the proxy's next packet (the OK that ends the connection phase).
    seq: u8,
    connection_id: u32,
}

/// A MySQL client's connection, from its first byte to its last.
pub async fn handle(stream: TcpStream, peer: SocketAddr, proxy: Arc<ProxyState>) {
    let _ = stream.set_nodelay(true);
    handle_stream(stream, peer, proxy).await;
}

/// [`handle`] over any byte stream; `peer` is the address admission and the logs go by.
pub async fn handle_stream<S>(stream: S, peer: SocketAddr, proxy: Arc<ProxyState>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let places = match admission::admit(&proxy, peer, PROTOCOL) {
        Admission::Admitted(places) => places,
        Admission::Refused(_places, refusal) => {
            // MySQL servers refuse a connection with an error in place of the greeting.
            let mut io = ClientIo::Plain(stream);
            let e = errno::of_refusal(refusal);
            let _ = tokio::time::timeout(REFUSAL_DEADLINE, fail(&mut io, 0, &e)).await;
            return;
        }
        Admission::Closed => return,
    };
    let negotiated = tokio::time::timeout(
        proxy.config.auth_timeout,
        negotiate(stream, peer, &proxy, &proxy.catalog),
    )
    .await;
    drop(places);
    let (mut io, input, auth) = match negotiated {
        Ok(Some(done)) => done,
        Ok(None) => return,
        Err(_) => {
            tracing::debug!(%peer, "authentication timed out");
            return;
        }
    };
    serve(&mut io, input, auth, peer, &proxy).await;
    close(&mut io).await;
}

/// Everything before routing: the greeting, TLS, the handshake response and the password
/// exchange. `None` when the connection ended (the client has been told why, if it can hear).
pub(crate) async fn negotiate<S, L>(
    stream: S,
    peer: SocketAddr,
    proxy: &ProxyState,
    logins: &L,
) -> Option<(ClientIo<S>, PacketReader, Authenticated)>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
    L: Logins,
{
    let mut io = ClientIo::Plain(stream);
    let mut input = PacketReader::default();
    let nonce = nonce();
    let connection_id = next_connection_id();
    let mut caps = Caps::OFFERED;
    if proxy.tls.is_some() {
        caps = caps.with(Caps::SSL);
    }
    let greeting = Handshake {
        server_version: SERVER_VERSION.to_string(),
        connection_id,
        scramble: nonce,
        caps,
        ext: ExtCaps::OFFERED,
        collation: handshake::UTF8MB4_GENERAL_CI,
        status: status::AUTOCOMMIT,
        auth_plugin: auth::NATIVE.to_string(),
    };
    let mut payload = Vec::new();
    greeting.encode(&mut payload);
    send(&mut io, 0, &payload).await?;
    // A silent or dawdling client gives its slot back at this deadline, well before the
    // authentication's.
    let deadline = Instant::now() + proxy.config.startup_timeout;
    let (mut packet, mut hello) = read_hello(&mut io, &mut input, deadline, 1, peer).await?;
    if let ClientHello::Ssl(_) = hello {
        io = encrypt(io, &mut input, proxy, deadline, peer).await?;
        (packet, hello) = read_hello(&mut io, &mut input, deadline, 2, peer).await?;
    }
    let ClientHello::Response(response) = hello else {
        fail(&mut io, packet.next_seq(), &bad_handshake()).await;
        return None;
    };
    let tls = matches!(io, ClientIo::Tls(_));
    if !tls && !plaintext_allowed(proxy, peer) {
        let e = reply::Err::new(
            errno::SECURE_TRANSPORT_REQUIRED,
            "Connections using insecure transport are prohibited: connect with TLS \
             (--ssl, ssl-mode=REQUIRED)",
        );
        fail(&mut io, packet.next_seq(), &e).await;
        return None;
    }
    if handshake::unsafe_collation(response.collation) {
        let e = reply::Err::new(
            errno::UNKNOWN_CHARACTER_SET,
            "this character set is not supported through tdb (a quote or backslash byte may end \
             a character in it): connect with utf8mb4",
        );
        fail(&mut io, packet.next_seq(), &e).await;
        return None;
    }
    let exchange = (nonce, packet.next_seq());
    let who = (peer, proxy, logins);
    let (login, seq) = authenticate(&mut io, &mut input, who, &response, exchange).await?;
    let caps = response.caps.and(Caps::OFFERED);
    let ext = response.ext.and(ExtCaps::OFFERED);
    Some((
        io,
        input,
        Authenticated {
            login,
            user: response.user,
            database: response.database,
            caps,
            ext,
            collation: response.collation,
            seq,
            connection_id,
        },
    ))
}

/// A fresh nonce: 20 printable bytes (some clients read it as a C string).
fn nonce() -> [u8; 20] {
    let mut rng = rand::rngs::OsRng;
    std::array::from_fn(|_| rng.gen_range(0x21..=0x7e))
}

/// The id a connection is known by to its client (the server's own id is another).
fn next_connection_id() -> u32 {
    static NEXT: std::sync::OnceLock<AtomicU32> = std::sync::OnceLock::new();
    NEXT.get_or_init(|| AtomicU32::new(rand::thread_rng().gen_range(1_000..1_000_000)))
        .fetch_add(1, Ordering::Relaxed)
        .max(1)
}

fn plaintext_allowed(proxy: &ProxyState, peer: SocketAddr) -> bool {
    match proxy.config.plaintext {
        PlaintextPolicy::Allow => true,
        PlaintextPolicy::Loopback => peer.ip().is_loopback(),
        PlaintextPolicy::Refuse => false,
    }
}

fn bad_handshake() -> reply::Err {
    reply::Err::new(errno::HANDSHAKE, "Bad handshake")
}

/// The client's packet numbered `seq` of the connection phase, before `deadline`: an
/// `SSLRequest` or the handshake response. `None` when the client dawdled, left or sent
/// something malformed (told why when it can hear it).
async fn read_hello<S>(
    io: &mut ClientIo<S>,
    input: &mut PacketReader,
    deadline: Instant,
    seq: u8,
    peer: SocketAddr,
) -> Option<(Packet, ClientHello)>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let read = tokio::time::timeout_at(deadline, input.next(io, PRE_AUTH_LIMIT)).await;
    let packet = match read {
        Ok(Ok(packet)) => packet,
        Ok(Err(PacketError::TooLarge { .. })) => {
            let e = reply::Err::new(errno::PACKET_TOO_LARGE, "handshake packet too large");
            fail(io, seq, &e).await;
            return None;
        }
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "no handshake response");
            return None;
        }
        Err(_) => {
            tracing::debug!(%peer, "no handshake response before the deadline; closing");
            return None;
        }
    };
    if packet.seq != seq {
        fail(io, seq, &bad_handshake()).await;
        return None;
    }
    match ClientHello::decode(&packet.payload) {
        Ok(hello) => Some((packet, hello)),
        Err(e) => {
            tracing::debug!(%peer, error = %e, "bad handshake response");
            fail(io, packet.next_seq(), &bad_handshake()).await;
            None
        }
    }
}

/// TLS after an `SSLRequest`. What the client sent past the request (its TLS hello, sent
/// without waiting) goes to the TLS handshake, never to the MySQL protocol.
async fn encrypt<S>(
    io: ClientIo<S>,
    input: &mut PacketReader,
    proxy: &ProxyState,
    deadline: Instant,
    peer: SocketAddr,
) -> Option<ClientIo<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (ClientIo::Plain(stream), Some(tls)) = (io, &proxy.tls) else {
        // Not offered, or asked for twice: a client that does this is not to be trusted to
        // read an error either.
        tracing::debug!(%peer, "SSLRequest where TLS is not offered");
        return None;
    };
    let ahead = std::mem::take(input).take_buffered();
    let stream = Rewound {
        ahead,
        inner: stream,
    };
    match tokio::time::timeout_at(deadline, tls.acceptor.accept(stream)).await {
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

/// The password exchange for the handshake response's user, after the throttles of failed
/// logins; `(nonce, seq)`: the greeting's nonce and the next packet's sequence id. The login
/// and the sequence id of the proxy's next packet when it succeeded.
async fn authenticate<S, L>(
    io: &mut ClientIo<S>,
    input: &mut PacketReader,
    (peer, proxy, logins): (SocketAddr, &ProxyState, &L),
    response: &HandshakeResponse,
    (nonce, seq): ([u8; 20], u8),
) -> Option<(Login, u8)>
where
    S: AsyncRead + AsyncWrite + Unpin,
    L: Logins,
{
    let user = response.user.as_str();
    if let Err(refusal) = admission::login_throttle(proxy, user, peer) {
        fail(io, seq, &errno::of_refusal(refusal)).await;
        return None;
    }
    let login = match logins.login(user).await {
        Ok(login) => login,
        Err(e) => {
            tracing::error!(error = %e, "catalog lookup of a proxy login failed");
            let e = reply::Err::new(
                errno::UNKNOWN,
                "the database catalog is not available; try again",
            );
            fail(io, seq, &e).await;
            return None;
        }
    };
    let stored = stored(login.as_ref(), &proxy.fake_scram_secret, user);
    let tls = matches!(io, ClientIo::Tls(_));
    let mut exchange = Exchange::new(stored, nonce, tls);
    if !response.caps.has(Caps::PLUGIN_AUTH) {
        exchange = exchange.without_switch();
    }
    let first = exchange.first(response.auth_plugin.as_deref(), &response.auth_response);
    let (verdict, seq) = converse(io, input, &mut exchange, first, seq).await;
    match (verdict, login) {
        (Ok(preface), Some(login)) if !user.is_empty() => {
            let mut seq = seq;
            if let Some(preface) = preface {
                seq = send(io, seq, &preface).await?;
            }
            Some((login, seq))
        }
        (verdict, _) => {
            admission::login_failed(proxy, PROTOCOL, user, peer);
            tracing::debug!(%peer, user, why = ?verdict.err(), "MySQL login refused");
            let using = if exchange.used_password() {
                "YES"
            } else {
                "NO"
            };
            let e = reply::Err::new(
                errno::ACCESS_DENIED,
                format!(
                    "Access denied for user '{user}'@'{}' (using password: {using})",
                    peer.ip()
                ),
            );
            fail(io, seq, &e).await;
            None
        }
    }
}

/// What the proxy checks `user`'s key against: its MySQL digests, its SCRAM verifier when it
/// has none, or fake digests when there is no such user.
fn stored(login: Option<&Login>, secret: &[u8; 32], user: &str) -> Stored {
    let Some(login) = login else {
        return Stored::Mysql(Verifiers::fake(secret, user));
    };
    let digests = login
        .mysql_verifier
        .as_deref()
        .and_then(tdb_core::secrets::parse_mysql_verifier);
    match (digests, scram::Verifier::parse(&login.verifier)) {
        (Some((native, sha2)), _) => Stored::Mysql(Verifiers::new(native, sha2)),
        (None, Some(scram)) => Stored::Scram(scram),
        (None, None) => Stored::Mysql(Verifiers::fake(secret, user)),
    }
}

/// Runs the exchange's rounds from `next`: the verdict (`Ok` with the packet to send before
/// the OK) and the sequence id of the proxy's next packet.
async fn converse<S>(
    io: &mut ClientIo<S>,
    input: &mut PacketReader,
    exchange: &mut Exchange,
    mut next: Next,
    mut seq: u8,
) -> (Result<Option<Vec<u8>>, super::login::Why>, u8)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    loop {
        match next {
            Next::Accept { preface } => return (Ok(preface), seq),
            Next::Reject(why) => return (Err(why), seq),
            Next::Ask(payload) => {
                let Some(after) = send(io, seq, &payload).await else {
                    return (Err(super::login::Why::Protocol), seq);
                };
                let packet = match input.next(io, PRE_AUTH_LIMIT).await {
                    Ok(p) if p.seq == after => p,
                    _ => return (Err(super::login::Why::Protocol), after),
                };
                seq = packet.next_seq();
                next = exchange.more(&packet.payload);
            }
        }
    }
}

/// Sends `payload` as the packet numbered `seq`; the sequence id after it.
async fn send<W: AsyncWrite + Unpin>(io: &mut W, seq: u8, payload: &[u8]) -> Option<u8> {
    let mut out = Vec::with_capacity(payload.len() + packet::HEADER_LEN);
    let next = packet::encode(&mut out, seq, payload);
    io.write_all(&out).await.ok()?;
    io.flush().await.ok()?;
    Some(next)
}

/// Sends `e` as packet `seq` and closes the connection: every caller ends the session.
async fn fail<S>(io: &mut ClientIo<S>, seq: u8, e: &reply::Err)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut payload = Vec::new();
    e.encode(&mut payload);
    if send(io, seq, &payload).await.is_some() {
        close(io).await;
    }
}

/// Ends a connection: over TLS with a `close_notify`, so the client reads a clean end.
async fn close<S: AsyncRead + AsyncWrite + Unpin>(io: &mut ClientIo<S>) {
    let _ = tokio::time::timeout(relay::FAREWELL_WRITE, io.shutdown()).await;
}

/// Keeps the open-sessions gauge right however a session ends.
struct SessionCount(crate::metrics::ProxyMetrics);

impl Drop for SessionCount {
    fn drop(&mut self) {
        self.0.sessions.decrement(1.0);
    }
}

/// After authentication: the route and a slot under its limits, then the rest of the session.
async fn serve<C>(
    client: &mut C,
    input: PacketReader,
    auth: Authenticated,
    peer: SocketAddr,
    proxy: &ProxyState,
) where
    C: AsyncRead + AsyncWrite + Unpin + Send,
{
    let Some(database) = auth.database.as_deref() else {
        let e = reply::Err::new(
            errno::NO_DB,
            "No database selected: connect to <blueprint>__<tenant> or <workspace>_workspace",
        );
        return refuse(client, auth.seq, e).await.unwrap_or(());
    };
    match tenancy::enter(proxy, &auth.login, database).await {
        Ok(tenancy) => serve_routed(client, input, auth, tenancy, peer, proxy).await,
        Err(refusal) => refuse(client, auth.seq, errno::of_refusal(refusal))
            .await
            .unwrap_or(()),
    }
}

/// A routed session: its server connection, the client's OK, the relay, and clean-up.
pub(crate) async fn serve_routed<C>(
    client: &mut C,
    input: PacketReader,
    auth: Authenticated,
    tenancy: Tenancy,
    peer: SocketAddr,
    proxy: &ProxyState,
) where
    C: AsyncRead + AsyncWrite + Unpin + Send,
{
    let seq = auth.seq;
    let Some((target, mut backend)) = connect(client, &auth, &tenancy.route).await else {
        return;
    };
    let ok = reply::Ok {
        status: backend.status,
        ..reply::Ok::default()
    };
    let mut payload = Vec::new();
    ok.encode(&mut payload);
    if send(client, seq, &payload).await.is_none() {
        backend.quit().await;
        return;
    }
    let Tenancy {
        route,
        gate,
        kill,
        slot,
    } = tenancy;
    if let Some(tenant) = &route.tenant_id {
        tracing::Span::current().record("tenant", tenant.as_str());
    }
    let ctx = session_context(&route, &auth, (gate, kill), target, (peer, &backend), proxy);
    ctx.metrics.sessions.increment(1.0);
    let _counted = SessionCount(ctx.metrics.clone());
    let ended = relay::relay(client, input, &mut backend, &ctx).await;
    drop(slot);
    if let Some(seq) = ended.client_seq {
        let why_killed = match ended.end {
            RelayEnd::Killed => why_killed(&route, proxy).await,
            _ => String::new(),
        };
        if let Some(e) = relay::farewell(ended.end, &ctx, why_killed) {
            relay::tell(client, seq, &e).await;
        }
    }
    settle(ended.end, ended.idle, backend, &ctx.target).await;
}

/// The server connection for the routed client; `None` when it was told why not.
async fn connect<C>(
    client: &mut C,
    auth: &Authenticated,
    route: &Route,
) -> Option<(BackendTarget, Backend)>
where
    C: AsyncWrite + Unpin,
{
    let target = match backend_target(route, auth) {
        Ok(t) => t,
        Err(e) => return refuse(client, auth.seq, e).await,
    };
    match Backend::connect(&target).await {
        Ok(backend) => Some((target, backend)),
        Err(e) => {
            let database = auth.database.as_deref().unwrap_or_default();
            let e = backend_error(e, route, database);
            refuse(client, auth.seq, e).await
        }
    }
}

async fn refuse<W: AsyncWrite + Unpin, T>(client: &mut W, seq: u8, e: reply::Err) -> Option<T> {
    let mut payload = Vec::new();
    e.encode(&mut payload);
    let _ = send(client, seq, &payload).await;
    None
}

/// Where and as whom the session reaches its database.
fn backend_target(route: &Route, auth: &Authenticated) -> Result<BackendTarget, reply::Err> {
    let access = if auth.login.role == tdb_core::KeyRole::Read {
        route.read.clone().ok_or_else(|| {
            reply::Err::new(
                errno::DBACCESS_DENIED,
                "this credential has no role on the database",
            )
        })?
    } else {
        route.write.clone()
    };
    let timeout = route.settings.query_timeout_ms;
    Ok(BackendTarget {
        host: route.host.clone(),
        port: route.port,
        database: route.physical_db.clone(),
        user: access.user,
        password: access.password,
        client_caps: auth.caps,
        client_ext: auth.ext,
        collation: auth.collation,
        statement_timeout: (timeout > 0).then(|| std::time::Duration::from_millis(timeout)),
    })
}

fn backend_error(e: BackendError, route: &Route, database: &str) -> reply::Err {
    tracing::warn!(error = %e, database, "connecting to a server database failed");
    match e {
        // Too many connections, for the server or for the tenant's user.
        BackendError::Refused(e) if e.code == 1040 || e.code == 1203 => reply::Err::new(
            errno::CON_COUNT,
            format!(
                "too many connections for {} (max_connections is {})",
                route.describe(),
                route.settings.max_connections
            ),
        ),
        BackendError::Refused(e) if e.code == errno::BAD_DB.code => {
            reply::Err::new(errno::BAD_DB, format!("Unknown database '{database}'"))
        }
        _ => reply::Err::new(
            errno::UNKNOWN,
            format!("could not connect to the server of {}", route.describe()),
        ),
    }
}

/// Who the session is and what its relay must do.
fn session_context(
    route: &Route,
    auth: &Authenticated,
    (gate, kill): (
        Option<Arc<crate::gate::Gate>>,
        tokio_util::sync::CancellationToken,
    ),
    target: BackendTarget,
    (peer, backend): (SocketAddr, &Backend),
    proxy: &ProxyState,
) -> SessionContext {
    let database = auth.database.clone().unwrap_or_default();
    let origin = Arc::new(QueryOrigin {
        project_id: Arc::from(route.project_id.as_str()),
        tenant: match &route.name {
            RoutingName::Tenant { tenant, .. } => Some(Arc::from(tenant.as_str())),
            _ => None,
        },
        workspace: match &route.name {
            RoutingName::Workspace { name } => Some(Arc::from(name.as_str())),
            _ => None,
        },
        database: Arc::from(database.as_str()),
        source: "proxy",
        username: Arc::from(auth.user.as_str()),
    });
    let guard = Guard {
        tenant: route.tenant_id.is_some(),
        workspace: route.is_workspace(),
        own_database: route.physical_db.clone(),
        connected_as: database,
        user: auth.user.clone(),
        host: peer.ip().to_string(),
        thread_id: backend.thread_id,
    };
    SessionContext {
        origin,
        capture_ddl_into: route.blueprint_id.clone(),
        gate,
        log: proxy.log.clone(),
        catalog: proxy.catalog.clone(),
        kill,
        shutdown: proxy.shutdown.clone(),
        shutdown_grace: proxy.config.shutdown_grace,
        metrics: proxy.metrics(PROTOCOL),
        query_timeout: target.statement_timeout,
        statements_memory: proxy.statements_memory.clone(),
        guard,
        target,
        proxy_id: auth.connection_id,
    }
}

/// Why a killed session ended, as its client is told.
async fn why_killed(route: &Route, proxy: &ProxyState) -> String {
    match proxy.router.current_status(route).await {
        Some(status) => format!("terminating connection: {} is {status}", route.describe()),
        None => format!("terminating connection: {} was removed", route.describe()),
    }
}

/// What becomes of the session's server connection: a goodbye when it runs nothing; else what
/// it runs is stopped first (a client gone mid-statement leaves nothing running).
async fn settle(end: RelayEnd, idle: bool, backend: Backend, target: &BackendTarget) {
    if end == RelayEnd::ServerGone {
        return;
    }
    if idle {
        backend.quit().await;
        return;
    }
    let thread_id = backend.thread_id;
    drop(backend);
    let stopped = tokio::time::timeout(
        relay::ESCALATION,
        backend::stop(target, thread_id, Stop::Connection),
    );
    match stopped.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "stopping a session's statement failed"),
        Err(_) => tracing::warn!("stopping a session's statement timed out"),
    }
}
