//! One Redis client connection, from its first byte to its last: admission, TLS from the first
//! byte (`rediss://` is implicit TLS: a TLS ClientHello starts with 0x16), plaintext only where
//! the policy allows it, the login phase (AUTH, HELLO, PING, QUIT), tenancy (gates, slots),
//! the server connection and the relay.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tdb_catalog::routing::{Login, QueryOrigin};
use tdb_resp::frame::{Frame, Limits, RequestDecoder};
use tdb_resp::prefix::Prefix;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tracing::Instrument;

use super::backend::{Backend, Target};
use super::hello::{self, Hello, Prelogin};
use super::lane::Claim;
use super::link::Link;
use super::moving::{self, Movable};
use super::relay::{self, SessionContext};
use crate::admission::{self, Admission};
use crate::mysql::stream::{ClientIo, Rewound};
use crate::refusal::Refusal;
use crate::route::{Route, RoutingName};
use crate::tenancy::{self, Tenancy};
use crate::{PlaintextPolicy, ProxyState};

/// The protocol's name in logs and metrics.
pub const PROTOCOL: &str = "redis";
/// The first byte of a TLS record carrying a handshake (the ClientHello).
const TLS_HANDSHAKE: u8 = 0x16;
/// What a client may send before it has logged in (redis-server's own limits for
/// unauthenticated clients are 1024 arguments of 16 KiB).
const PRELOGIN_LIMITS: Limits = Limits {
    max_bulk_len: 16 * 1024,
    max_elements: 16,
    max_depth: 1,
    max_inline_len: 16 * 1024,
    max_line_len: 16 * 1024,
};

/// Where the proxy checks a Redis login: the user is the tenant's id (or
/// `<workspace>_workspace`), the password an API key. The answer is the credential's login and
/// the routing database it opens (what [`tenancy::enter`] takes); `Ok(None)` for a wrong pair,
/// `Err` with a client-safe message when the login cannot be checked or is ambiguous.
pub trait RedisLogins: Sync {
    fn login(
        &self,
        user: &str,
        password: &str,
    ) -> impl Future<Output = Result<Option<(Login, String)>, String>> + Send;
}

/// The catalog's logins: the key is a proxy credential written `<credential>.<password>`, the
/// user a routing name or a tenant's id (see [`crate::keylogin`]). Errors are client-safe.
impl RedisLogins for tdb_catalog::Catalog {
    fn login(
        &self,
        user: &str,
        password: &str,
    ) -> impl Future<Output = Result<Option<(Login, String)>, String>> + Send {
        use crate::keylogin::{KeyLoginError, redis_login};
        let (catalog, user, password) = (self.clone(), user.to_string(), password.to_string());
        async move {
            match redis_login(&catalog, &user, &password).await {
                Ok(found) => Ok(Some(found)),
                Err(KeyLoginError::Invalid) => Ok(None),
                Err(KeyLoginError::Ambiguous(names)) => Err(format!(
                    "'{user}' has several Redis databases: log in as one of {}",
                    names.join(", ")
                )),
                Err(KeyLoginError::Unavailable(e)) => {
                    tracing::error!(error = %e, "catalog lookup of a Redis login failed");
                    Err("the database catalog is not available; try again".into())
                }
            }
        }
    }
}

/// A client that logged in, and what it asked for on the way.
pub struct Authenticated {
    pub login: Login,
    pub user: String,
    pub database: String,
    /// The protocol and client name of its HELLO, if it sent one.
    pub hello: Option<Hello>,
    /// Whether it logged in with HELLO (answered with the server's HELLO reply) or AUTH (+OK).
    pub by_hello: bool,
}

/// The client's connection and what it has sent beyond its login.
pub struct Client<S> {
    pub io: ClientIo<S>,
    pub input: BytesMut,
    pub decoder: RequestDecoder,
}

impl<S> Client<S> {
    /// Bytes of requests read and not yet decided: in the buffer, or in the decoder's request
    /// begun.
    pub fn held(&self) -> usize {
        self.input.len() + self.decoder.pending_bytes()
    }
}

/// A Redis client's connection, from its first byte to its last. `span` is the connection's:
/// entered while the session logs in and is routed, and named as the parent of what the relay
/// logs, but not entered on the relay's every wake-up (see [`crate::server::Proxy::listen_in_span`]).
pub async fn handle<L: RedisLogins>(
    stream: TcpStream,
    peer: SocketAddr,
    proxy: Arc<ProxyState>,
    logins: Arc<L>,
    span: tracing::Span,
) {
    let routed = admit_and_route(stream, peer, &proxy, &*logins)
        .instrument(span.clone())
        .await;
    if let Some((client, auth, tenancy)) = routed {
        serve_on_lane_worker(client, auth, tenancy, peer, proxy, span).await;
    }
}

/// Admission, the login and the route: `None` when the session ends there (the client has
/// been told why, if it can hear).
async fn admit_and_route<L: RedisLogins>(
    stream: TcpStream,
    peer: SocketAddr,
    proxy: &ProxyState,
    logins: &L,
) -> Option<(Client<Movable>, Authenticated, Tenancy)> {
    let _ = stream.set_nodelay(true);
    let places = match admission::admit(proxy, peer, PROTOCOL) {
        Admission::Admitted(places) => places,
        Admission::Refused(_places, refusal) => {
            let mut stream = stream;
            let _ = stream.write_all(&error_line(&refusal.message)).await;
            return None;
        }
        Admission::Closed => return None,
    };
    let negotiated = tokio::time::timeout(
        proxy.config.auth_timeout,
        negotiate(Movable::new(stream), peer, proxy, logins),
    )
    .await;
    drop(places);
    let Ok(Some((mut client, auth))) = negotiated else {
        return None;
    };
    match tenancy::enter(proxy, &auth.login, &auth.database).await {
        Ok(tenancy) => Some((client, auth, tenancy)),
        Err(refusal) => {
            refuse(&mut client, &refusal).await;
            let _ = client.io.shutdown().await;
            None
        }
    }
}

/// A routed session, run on the worker of its user's lane when it starts on one: a session
/// accepted by another worker claims the lane's place and moves there (see [`super::lane`]),
/// with its client socket ([`moving`]). Closes the client's connection at the end. `span` is
/// the connection's, as [`handle`] has it.
pub(crate) async fn serve_on_lane_worker(
    mut client: Client<Movable>,
    auth: Authenticated,
    tenancy: Tenancy,
    peer: SocketAddr,
    proxy: Arc<ProxyState>,
    span: tracing::Span,
) {
    let claim = match (&auth.hello, target(&tenancy.route, &auth)) {
        (None, Ok(target)) => Some(proxy.redis_lanes.claim(&target)),
        _ => None,
    };
    if let Some(home) = claim.as_ref().and_then(Claim::home)
        && Some(home) != crate::workers::current()
        && let Some(handoff) = proxy.handoff.get().filter(|h| h.can_reach(home))
    {
        let socket = match moving::detach(&mut client.io) {
            Ok(socket) => socket,
            Err(e) => {
                tracing::warn!(parent: &span, error = %e, "a Redis session could not leave its worker");
                return;
            }
        };
        let (state, here) = (proxy.clone(), span.clone());
        let moved = handoff.spawn_on(home, move || async move {
            if let Err(e) = moving::attach(&mut client.io, socket) {
                tracing::warn!(parent: &span, error = %e, "a Redis session could not join its lane's worker");
                return;
            }
            serve_claimed(&mut client, auth, tenancy, claim, peer, &state, span).await;
            let _ = client.io.shutdown().await;
        });
        if !moved {
            // The worker stopped after the check above: only while the proxy shuts down.
            tracing::debug!(
                parent: &here,
                "the proxy is stopping: a Redis session ends instead of moving"
            );
        }
        return;
    }
    serve_claimed(&mut client, auth, tenancy, claim, peer, &proxy, span).await;
    let _ = client.io.shutdown().await;
}

/// Everything before routing: TLS or plaintext, then the login phase. `None` when the
/// connection ended (the client has been told why, if it can hear).
pub async fn negotiate<S, L>(
    mut stream: S,
    peer: SocketAddr,
    proxy: &ProxyState,
    logins: &L,
) -> Option<(Client<S>, Authenticated)>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
    L: RedisLogins,
{
    let deadline = Instant::now() + proxy.config.startup_timeout;
    let mut first = BytesMut::with_capacity(4096);
    match tokio::time::timeout_at(deadline, stream.read_buf(&mut first)).await {
        Ok(Ok(n)) if n > 0 => {}
        _ => return None,
    }
    let io = if first[0] == TLS_HANDSHAKE {
        let tls = proxy.tls.as_ref()?;
        let rewound = Rewound {
            ahead: std::mem::take(&mut first).to_vec(),
            inner: stream,
        };
        match tokio::time::timeout_at(deadline, tls.acceptor.accept(rewound)).await {
            Ok(Ok(tls)) => ClientIo::Tls(Box::new(tls)),
            _ => {
                tracing::debug!(%peer, "TLS handshake failed");
                return None;
            }
        }
    } else if plaintext_allowed(proxy, peer) {
        ClientIo::Plain(stream)
    } else {
        let message = "TLS is required: connect with rediss:// (redis-cli --tls)";
        let _ = stream.write_all(&error_line(message)).await;
        return None;
    };
    let mut client = Client {
        io,
        input: first,
        decoder: RequestDecoder::new(PRELOGIN_LIMITS),
    };
    let auth = login_phase(&mut client, peer, proxy, logins).await?;
    client.decoder.set_limits(Limits::default());
    Some((client, auth))
}

fn plaintext_allowed(proxy: &ProxyState, peer: SocketAddr) -> bool {
    match proxy.config.plaintext {
        PlaintextPolicy::Allow => true,
        PlaintextPolicy::Loopback => peer.ip().is_loopback(),
        PlaintextPolicy::Refuse => false,
    }
}

/// Reads requests until a login succeeds; answers the others of the login phase.
async fn login_phase<S, L>(
    client: &mut Client<S>,
    peer: SocketAddr,
    proxy: &ProxyState,
    logins: &L,
) -> Option<Authenticated>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
    L: RedisLogins,
{
    let mut resp3 = false;
    let mut hello_seen: Option<Hello> = None;
    loop {
        let request = match client.decoder.decode(&mut client.input) {
            Ok(Some(request)) => request,
            Ok(None) => {
                if client.io.read_buf(&mut client.input).await.ok()? == 0 {
                    return None;
                }
                continue;
            }
            Err(e) => {
                let _ = write_frame(&mut client.io, &e.reply()).await;
                return None;
            }
        };
        let (user, password, by_hello) = match Prelogin::read(&request) {
            Prelogin::Auth { user, password } => (user, password, false),
            Prelogin::Hello(hello) => {
                if let Some(proto) = hello.proto {
                    resp3 = proto == 3;
                }
                let auth = hello.auth.clone();
                hello_seen = Some(merge(hello_seen, hello));
                match auth {
                    Some((user, password)) => (user, password, true),
                    None => {
                        write_frame(&mut client.io, &hello::prelogin_hello(resp3))
                            .await
                            .ok()?;
                        continue;
                    }
                }
            }
            Prelogin::Ping(message) => {
                let pong = message.map_or(Frame::Simple(Bytes::from_static(b"PONG")), Frame::Bulk);
                write_frame(&mut client.io, &pong).await.ok()?;
                continue;
            }
            Prelogin::Quit => {
                let _ = write_frame(&mut client.io, &Frame::Simple("OK".into())).await;
                return None;
            }
            Prelogin::Error(e) => {
                write_frame(&mut client.io, &Frame::Error(e)).await.ok()?;
                continue;
            }
        };
        let user = String::from_utf8_lossy(&user).into_owned();
        let password = String::from_utf8_lossy(&password).into_owned();
        match check(peer, proxy, logins, &user, &password).await {
            Ok((login, database)) => {
                return Some(Authenticated {
                    login,
                    user,
                    database,
                    hello: hello_seen,
                    by_hello,
                });
            }
            Err(e) => {
                write_frame(&mut client.io, &Frame::Error(e)).await.ok()?;
            }
        }
    }
}

/// A later HELLO keeps what an earlier one set and it does not change.
fn merge(earlier: Option<Hello>, later: Hello) -> Hello {
    let earlier = earlier.unwrap_or_default();
    Hello {
        proto: later.proto.or(earlier.proto),
        auth: later.auth,
        setname: later.setname.or(earlier.setname),
    }
}

/// Checks a user and password after the throttles of failed logins; the error line to answer.
async fn check<L: RedisLogins>(
    peer: SocketAddr,
    proxy: &ProxyState,
    logins: &L,
    user: &str,
    password: &str,
) -> Result<(Login, String), Bytes> {
    if let Err(refusal) = admission::login_throttle(proxy, user, peer) {
        return Err(format!("ERR {}", refusal.message).into());
    }
    match logins.login(user, password).await {
        Ok(Some(found)) => Ok(found),
        Ok(None) => {
            admission::login_failed(proxy, PROTOCOL, user, peer);
            tracing::debug!(%peer, user, "Redis login refused");
            Err(Bytes::from_static(hello::WRONGPASS))
        }
        Err(e) => Err(format!("ERR {e}").into()),
    }
}

async fn refuse<S>(client: &mut Client<S>, refusal: &Refusal)
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let line = Frame::Error(format!("ERR {}", refusal.message).into());
    let _ = write_frame(&mut client.io, &line).await;
}

/// A routed session: its server connection, the answer to the login, the relay. `span` is the
/// connection's, entered until the relay starts (see [`handle`]).
pub async fn serve_routed<S>(
    client: &mut Client<S>,
    auth: Authenticated,
    tenancy: Tenancy,
    peer: SocketAddr,
    proxy: &ProxyState,
    span: tracing::Span,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    serve_claimed(client, auth, tenancy, None, peer, proxy, span).await;
}

/// [`serve_routed`] for a session that may have claimed its lane's place already; `span` is
/// the connection's, entered until the relay starts (see [`handle`]).
async fn serve_claimed<S>(
    client: &mut Client<S>,
    auth: Authenticated,
    tenancy: Tenancy,
    claim: Option<Claim>,
    peer: SocketAddr,
    proxy: &ProxyState,
    span: tracing::Span,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let connect = connect(client, auth, tenancy, claim, peer, proxy, span.clone());
    let Some(Connected {
        mut link,
        ctx,
        walker,
        slot,
    }) = connect.instrument(span).await
    else {
        return;
    };
    let last_words = relay::relay(client, &mut link, &ctx, walker).await;
    drop((link, slot));
    if let Some(last_words) = last_words {
        relay::farewell(client, &last_words).await;
    }
}

/// A session ready to relay.
struct Connected<'a> {
    link: Link<'a>,
    ctx: SessionContext,
    walker: super::walker::Walker<'a>,
    /// The session's place under the tenant's `max_connections`.
    slot: tokio::sync::OwnedSemaphorePermit,
}

/// The session's way to its server, the answer to its login, and what its relay needs; `None`
/// when the session ends here (the client has been told why, if it can hear).
async fn connect<'a, S>(
    client: &mut Client<S>,
    auth: Authenticated,
    tenancy: Tenancy,
    claim: Option<Claim>,
    peer: SocketAddr,
    proxy: &'a ProxyState,
    span: tracing::Span,
) -> Option<Connected<'a>>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let Tenancy {
        route,
        gate,
        kill,
        slot,
    } = tenancy;
    let resp3 = auth.hello.as_ref().and_then(|h| h.proto) == Some(3);
    let target = match target(&route, &auth) {
        Ok(target) => Target {
            memory: Some(proxy.redis_memory.clone()),
            ..target
        },
        Err(refusal) => {
            refuse(client, &refusal).await;
            return None;
        }
    };
    // A client that logged in with HELLO gets the server's answer to it, from a connection of
    // its own; one that logged in with AUTH starts on its user's shared lane.
    let connected = if auth.hello.is_none() {
        let claim = claim.unwrap_or_else(|| proxy.redis_lanes.claim(&target));
        proxy
            .redis_lanes
            .join(claim, &target, &proxy.redis_tables)
            .await
            .map(|seat| Link::shared(seat, target, &proxy.redis_tables))
    } else {
        Backend::connect(&target, &proxy.redis_tables)
            .await
            .map(|backend| Link::own(backend, target, &proxy.redis_tables))
    };
    let mut link = match connected {
        Ok(link) => link,
        Err(e) => {
            tracing::warn!(error = %e, database = auth.database, "connecting to redis-server failed");
            let message = format!("could not connect to the server of {}", route.describe());
            let refusal = Refusal::new(crate::refusal::Reason::Unavailable, message);
            refuse(client, &refusal).await;
            return None;
        }
    };
    let answer = match (auth.by_hello, link.take_hello()) {
        (true, Some(hello)) => hello,
        _ => Frame::Simple(Bytes::from_static(b"OK")),
    };
    if write_frame(&mut client.io, &answer).await.is_err() {
        return None;
    }
    if let Some(tenant) = &route.tenant_id {
        span.record("tenant", tenant.as_str());
    }
    let prefix = Prefix::new(format!("{}:", route.physical_db)).ok()?;
    let ctx = SessionContext {
        origin: origin(&route, &auth),
        prefix,
        user: Bytes::from(auth.user.clone()),
        resp3,
        gate,
        kill,
        shutdown: proxy.shutdown.clone(),
        log: proxy.log.clone(),
        metrics: proxy.metrics(PROTOCOL),
        query_timeout: (route.settings.query_timeout_ms > 0)
            .then(|| std::time::Duration::from_millis(route.settings.query_timeout_ms)),
        describe: route.describe(),
        key_rules: route.key_rules.clone(),
        key_counts: proxy.redis_key_counts.clone(),
        memory: proxy.redis_memory.clone(),
        span,
    };
    tracing::debug!(%peer, "Redis session routed");
    let walker = super::walker::Walker::new(
        &proxy.router,
        &proxy.redis_tables,
        &route.server_id,
        &route.host,
        route.port,
    );
    Some(Connected {
        link,
        ctx,
        walker,
        slot,
    })
}

/// Where and as whom the session reaches its server: the route's write access, or its read
/// access for read credentials.
fn target(route: &Route, auth: &Authenticated) -> Result<Target, Refusal> {
    let access = if auth.login.role == tdb_core::KeyRole::Read {
        route.read.clone().ok_or_else(|| {
            Refusal::new(
                crate::refusal::Reason::NotAllowed,
                "this credential has no read-only user on the server",
            )
        })?
    } else {
        route.write.clone()
    };
    let hello = auth
        .hello
        .as_ref()
        .and_then(|h| h.proto.map(|p| (p, h.setname.clone())));
    Ok(Target {
        server_id: route.server_id.clone(),
        host: route.host.clone(),
        port: route.port,
        user: access.user,
        password: access.password,
        hello,
        memory: None,
    })
}

fn origin(route: &Route, auth: &Authenticated) -> Arc<QueryOrigin> {
    Arc::new(QueryOrigin {
        project_id: Arc::from(route.project_id.as_str()),
        tenant: match &route.name {
            RoutingName::Tenant { tenant, .. } => Some(Arc::from(tenant.as_str())),
            _ => None,
        },
        workspace: match &route.name {
            RoutingName::Workspace { name } => Some(Arc::from(name.as_str())),
            _ => None,
        },
        database: Arc::from(auth.database.as_str()),
        source: "proxy",
        username: Arc::from(auth.user.as_str()),
    })
}

/// `-message\r\n`, for a client that has not spoken yet.
fn error_line(message: &str) -> Vec<u8> {
    let mut out = BytesMut::new();
    Frame::Error(format!("ERR {message}").into()).encode(&mut out);
    out.to_vec()
}

/// Writes one frame and flushes it.
pub async fn write_frame<W: AsyncWrite + Unpin>(io: &mut W, frame: &Frame) -> std::io::Result<()> {
    let mut out = BytesMut::new();
    frame.encode(&mut out);
    io.write_all(&out).await?;
    io.flush().await
}
