//! The PostgreSQL proxy's shared state, accept loop and the catalog change feed.

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::Duration;

use tdb_catalog::Catalog;
use tdb_catalog::routing::{GATES_CHANNEL, ROUTES_CHANNEL};
use tdb_core::secrets::MasterKey;
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::cancel::CancelKeys;
use crate::gate::Gates;
use crate::pg;
use crate::pool::Pool;
use crate::querylog::QueryLog;
use crate::route::Router;
use crate::workers::Workers;

/// When clients may connect without TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlaintextPolicy {
    Allow,
    /// Only from loopback addresses (the default).
    Loopback,
    Refuse,
}

impl std::str::FromStr for PlaintextPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "allow" => Ok(Self::Allow),
            "loopback" => Ok(Self::Loopback),
            "refuse" => Ok(Self::Refuse),
            other => Err(format!(
                "plaintext must be allow, loopback or refuse, not '{other}'"
            )),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ProxyConfig {
    pub plaintext: PlaintextPolicy,
    /// Connections that have not finished authenticating, at most.
    pub max_unauthenticated: usize,
    /// Of those, at most this many from one client address (an IPv6 client's /64), loopback
    /// included: past it a connection is closed at once.
    pub max_unauthenticated_per_address: usize,
    /// From accept to the startup packet (TLS negotiation included), at most: a silent
    /// connection gives its slot back after this.
    pub startup_timeout: Duration,
    /// From accept to authenticated, at most.
    pub auth_timeout: Duration,
    /// How long a client waits for a free slot under `max_connections`.
    pub connect_wait: Duration,
    /// Transaction pooling: how long a transaction waits for a server connection under
    /// `max_connections`.
    pub transaction_wait: Duration,
    /// On shutdown, how long an open transaction may take to finish.
    pub shutdown_grace: Duration,
    /// Whether statements are recorded in the query log.
    pub query_log: bool,
    /// Connection attempts per address, shared with the REST API (a ban here is a ban there).
    pub ip_guard: Arc<tdb_core::ratelimit::IpGuard>,
    /// Failed logins per address, and per user name from one address, in a minute before
    /// attempts are refused.
    pub max_auth_failures_per_ip: usize,
    pub max_auth_failures_per_user: usize,
    /// Worker threads, each with an event loop of its own (see [`crate::workers`]).
    pub workers: usize,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        Self {
            plaintext: PlaintextPolicy::Loopback,
            max_unauthenticated: 256,
            max_unauthenticated_per_address: 32,
            startup_timeout: Duration::from_secs(5),
            auth_timeout: Duration::from_secs(15),
            connect_wait: Duration::from_secs(2),
            transaction_wait: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(10),
            query_log: true,
            ip_guard: Arc::new(tdb_core::ratelimit::IpGuard::new(Default::default())),
            max_auth_failures_per_ip: 30,
            max_auth_failures_per_user: 10,
            workers: 1,
        }
    }
}

/// Bytes of long statements all sessions may hold whole at once (each may be up to 64 MiB).
const STATEMENTS_MEMORY: usize = 256 << 20;

/// TLS handshakes a second, for every refused connection together (each costs about a
/// millisecond of CPU): enough for real clients that were refused to read why, too few for a
/// flood from banned addresses to cost the proxy much.
const REFUSAL_HANDSHAKES_PER_SECOND: u32 = 50;

/// Everything sessions share.
pub struct ProxyState {
    pub config: ProxyConfig,
    pub catalog: Catalog,
    pub tls: Option<crate::tls::ServerTls>,
    pub router: Router,
    pub gates: Gates,
    pub pool: Pool,
    pub cancels: CancelKeys,
    pub log: QueryLog,
    pub unauthenticated: Arc<Semaphore>,
    /// Unauthenticated connections per client address.
    pub peers: Arc<tdb_core::slots::AddressSlots>,
    /// The instruments of each protocol served, labelled with its name.
    metrics:
        std::sync::Mutex<std::collections::HashMap<&'static str, crate::metrics::ProxyMetrics>>,
    /// Recent failed logins by address and by user name.
    pub failures_by_ip: tdb_core::ratelimit::FailureThrottle<std::net::IpAddr>,
    pub failures_by_user: tdb_core::ratelimit::FailureThrottle<(String, std::net::IpAddr)>,
    /// Salts and keys of fake SCRAM exchanges for unknown users derive from this.
    pub fake_scram_secret: [u8; 32],
    pub shutdown: CancellationToken,
    /// Memory for the long statements sessions hold whole (workspaces' DDL capture, the guard
    /// of provisioned databases), shared by every session.
    pub statements_memory: tdb_engines::budget::MemoryBudget,
    /// TLS handshakes given to connections refused by the address guard, so a client that
    /// asked for TLS can read why (see `pg::session`); past it they are told in plain text.
    pub refusal_handshakes: tdb_core::ratelimit::PerSecond,
    /// The command table of each Redis server, loaded by its first session.
    pub redis_tables: crate::redis::backend::Tables,
    /// Server connections shared by sessions of one ACL user (see [`crate::redis::lane`]).
    pub redis_lanes: crate::redis::lane::Lanes,
    /// What Redis sessions' large requests and replies may hold at once (see
    /// [`crate::redis::memory`]).
    pub redis_memory: tdb_engines::budget::MemoryBudget,
    /// How many keys each Redis tenant holds, for `max_keys`.
    pub redis_key_counts: Arc<crate::redis::keyrules::KeyCounts>,
    /// How a session moves to another worker; set once the workers run ([`Proxy::start`]).
    pub handoff: std::sync::OnceLock<crate::workers::Handoff>,
}

impl ProxyState {
    /// The proxy's state. Sessions record their statements into `log` (see [`QueryLog::new`]),
    /// whose writer may run elsewhere.
    pub fn new(
        config: ProxyConfig,
        catalog: Catalog,
        key: &MasterKey,
        tls: Option<crate::tls::ServerTls>,
        log: QueryLog,
        shutdown: CancellationToken,
    ) -> Arc<Self> {
        metrics::counter!("tdb_query_log_dropped_total").absolute(0);
        let window = Duration::from_secs(60);
        let failures_by_ip =
            tdb_core::ratelimit::FailureThrottle::new(config.max_auth_failures_per_ip, window);
        let failures_by_user =
            tdb_core::ratelimit::FailureThrottle::new(config.max_auth_failures_per_user, window);
        Arc::new(Self {
            unauthenticated: Arc::new(Semaphore::new(config.max_unauthenticated)),
            pool: Pool::new(config.workers),
            peers: tdb_core::slots::AddressSlots::new(config.max_unauthenticated_per_address),
            config,
            router: Router::new(catalog.clone(), key.clone()),
            catalog,
            tls,
            gates: Gates::default(),
            cancels: CancelKeys::default(),
            log,
            fake_scram_secret: key.derive("proxy-fake-scram"),
            statements_memory: tdb_engines::budget::MemoryBudget::new(STATEMENTS_MEMORY),
            refusal_handshakes: tdb_core::ratelimit::PerSecond::new(REFUSAL_HANDSHAKES_PER_SECOND),
            redis_tables: Default::default(),
            redis_lanes: Default::default(),
            redis_memory: tdb_engines::budget::MemoryBudget::new(crate::redis::memory::BUDGET),
            redis_key_counts: Default::default(),
            handoff: std::sync::OnceLock::new(),
            failures_by_ip,
            failures_by_user,
            metrics: std::sync::Mutex::default(),
            shutdown,
        })
    }

    /// The instruments of `protocol` (`postgresql`, …): taken from the recorder on first use.
    pub fn metrics(&self, protocol: &'static str) -> crate::metrics::ProxyMetrics {
        let mut all = self.metrics.lock().unwrap_or_else(|e| e.into_inner());
        all.entry(protocol)
            .or_insert_with(|| crate::metrics::ProxyMetrics::new(protocol))
            .clone()
    }
}

/// The address a client on a Unix socket goes by in admission, the plaintext policy and the
/// logs: the proxy's own machine, as a loopback client.
pub const UNIX_PEER: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0));

/// A socket the proxy takes clients on: TCP, or a Unix socket for clients on the proxy's own
/// machine. A connection is accepted on the acceptor's event loop and handed, detached, to the
/// worker that will serve it.
pub trait Listener: Send + 'static {
    /// A connection registered with the event loop of the worker that serves it.
    type Stream: Send + 'static;
    /// A connection between its acceptor and its worker.
    type Detached: Send + 'static;
    /// The next connection and the address its client goes by.
    fn accept(&self) -> impl Future<Output = std::io::Result<(Self::Detached, SocketAddr)>> + Send;
    /// Registers `detached` with the current worker's event loop.
    fn attach(detached: Self::Detached) -> std::io::Result<Self::Stream>;
}

impl Listener for TcpListener {
    type Stream = TcpStream;
    type Detached = std::net::TcpStream;

    async fn accept(&self) -> std::io::Result<(Self::Detached, SocketAddr)> {
        let (stream, peer) = TcpListener::accept(self).await?;
        Ok((stream.into_std()?, peer))
    }

    fn attach(detached: Self::Detached) -> std::io::Result<Self::Stream> {
        TcpStream::from_std(detached)
    }
}

impl Listener for UnixListener {
    type Stream = UnixStream;
    type Detached = std::os::unix::net::UnixStream;

    async fn accept(&self) -> std::io::Result<(Self::Detached, SocketAddr)> {
        let (stream, _) = UnixListener::accept(self).await?;
        Ok((stream.into_std()?, UNIX_PEER))
    }

    fn attach(detached: Self::Detached) -> std::io::Result<Self::Stream> {
        UnixStream::from_std(detached)
    }
}

/// The proxy of one process, whatever its protocols: the worker threads, the catalog change
/// feed and the reaper of idle server connections (each started once), and every session,
/// tracked until it ends. Each protocol's listener is added with [`Proxy::listen`].
pub struct Proxy {
    state: Arc<ProxyState>,
    workers: Arc<Workers>,
    tracker: TaskTracker,
}

impl Proxy {
    /// Starts the workers (`config.workers`) and the background tasks.
    pub fn start(state: Arc<ProxyState>) -> std::io::Result<Self> {
        let workers = Arc::new(Workers::start(state.config.workers, "tdb-proxy")?);
        let tracker = TaskTracker::new();
        // A state serves one proxy: a second start keeps the first one's handoff.
        let _ = state
            .handoff
            .set(crate::workers::Handoff::new(&workers, &tracker));
        tracker.spawn(follow_changes(state.clone()));
        tracker.spawn(reap_idle(state.clone(), workers.clone()));
        Ok(Self {
            state,
            workers,
            tracker,
        })
    }

    /// Accepts connections on `listener` until shutdown; each runs `session` on the least busy
    /// worker, inside a span naming the protocol and the client's address (a session adds its
    /// tenant once it knows it). Admission is the session's first step (see
    /// [`crate::admission`]), in the form its protocol can tell a client.
    pub async fn listen<L, H, Fut>(&self, listener: L, protocol: &'static str, session: H)
    where
        L: Listener,
        H: Fn(L::Stream, SocketAddr, Arc<ProxyState>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let session = move |stream, peer, state, span: tracing::Span| {
            session(stream, peer, state).instrument(span)
        };
        self.listen_in_span(listener, protocol, session).await;
    }

    /// [`listen`](Self::listen) for a session that enters its span itself, where it chooses:
    /// a span entered by the task is entered and left on every wake-up, which for a session
    /// relaying small requests one by one is a share of its CPU that shows.
    pub async fn listen_in_span<L, H, Fut>(&self, listener: L, protocol: &'static str, session: H)
    where
        L: Listener,
        H: Fn(L::Stream, SocketAddr, Arc<ProxyState>, tracing::Span) -> Fut
            + Clone
            + Send
            + Sync
            + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let shutdown = self.state.shutdown.clone();
        loop {
            let accepted = tokio::select! {
                _ = shutdown.cancelled() => break,
                accepted = listener.accept() => accepted,
            };
            match accepted {
                Ok((stream, peer)) => {
                    let state = self.state.clone();
                    let session = session.clone();
                    self.workers.spawn(&self.tracker, move || {
                        let span = tracing::info_span!(
                            "connection",
                            protocol,
                            peer = %peer,
                            tenant = tracing::field::Empty
                        );
                        async move {
                            // Registered with the event loop of the worker it runs on.
                            match L::attach(stream) {
                                Ok(stream) => session(stream, peer, state, span).await,
                                Err(e) => tracing::warn!(
                                    parent: &span,
                                    error = %e,
                                    "taking a connection failed"
                                ),
                            }
                        }
                    });
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, protocol, "accepting a proxy connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    /// After shutdown: lets sessions finish their transactions (up to the grace period), closes
    /// pooled connections and stops the workers. Every session the shutdown ends is told so by
    /// its own task, and a statement still running at the deadline is stopped on the server;
    /// this waits for that too, so the caller may stop the servers afterwards.
    pub async fn finish(self) {
        self.tracker.close();
        // A session past the deadline cancels its statement, and a statement that ignores the
        // cancel gets `ESCALATION` before the server's administrator ends it.
        let grace =
            self.state.config.shutdown_grace + pg::watchdog::ESCALATION + Duration::from_secs(2);
        if tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("proxy sessions still open after the shutdown grace period");
        }
        // Each worker closes its own pooled connections, on its own event loop, then ends.
        let state = self.state.clone();
        self.workers
            .on_each(move || {
                let state = state.clone();
                async move { state.pool.close_all().await }
            })
            .await;
        // A session handing itself to another worker holds the workers for a moment.
        let mut workers = self.workers;
        for _ in 0..100 {
            match Arc::try_unwrap(workers) {
                Ok(workers) => {
                    let _ = tokio::task::spawn_blocking(move || workers.stop()).await;
                    return;
                }
                Err(shared) => workers = shared,
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tracing::warn!("the proxy's worker threads are still held: left to end with the process");
    }
}

/// Serves PostgreSQL clients on `listener` until shutdown, then finishes (see
/// [`Proxy::finish`]).
pub async fn serve_pg(listener: TcpListener, state: Arc<ProxyState>) -> std::io::Result<()> {
    let proxy = Proxy::start(state)?;
    proxy
        .listen(listener, "postgresql", pg::session::handle)
        .await;
    proxy.finish().await;
    Ok(())
}

/// Serves Redis clients on `listener` until shutdown, then finishes (see [`Proxy::finish`]).
/// Logins are checked against the catalog (see [`crate::keylogin`]).
pub async fn serve_redis(listener: TcpListener, state: Arc<ProxyState>) -> std::io::Result<()> {
    let logins = Arc::new(state.catalog.clone());
    let proxy = Proxy::start(state)?;
    let session = move |stream, peer, state, span| {
        crate::redis::handle(stream, peer, state, logins.clone(), span)
    };
    proxy.listen_in_span(listener, "redis", session).await;
    proxy.finish().await;
    Ok(())
}

/// Applies the control plane's news: forgets changed routes, ends the sessions of tenants that
/// are no longer ready, holds and releases gates. When the feed breaks, everything cached is
/// forgotten and every known tenant is checked again.
async fn follow_changes(state: Arc<ProxyState>) {
    let mut listener = None;
    loop {
        if state.shutdown.is_cancelled() {
            return;
        }
        let l = match &mut listener {
            Some(l) => l,
            None => match state.catalog.listen().await {
                Ok(l) => {
                    // Anything may have changed while nobody listened.
                    state.router.forget_all();
                    recheck_all(&state).await;
                    listener.insert(l)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen to the catalog; retrying");
                    tokio::select! {
                        _ = state.shutdown.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    }
                }
            },
        };
        let next = tokio::select! {
            _ = state.shutdown.cancelled() => return,
            n = l.try_recv() => n,
        };
        match next {
            Ok(Some(n)) => apply(&state, n.channel(), n.payload()).await,
            Ok(None) => {
                // The connection dropped; sqlx reconnects on the next call.
                state.router.forget_all();
                recheck_all(&state).await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "the catalog change feed failed; reconnecting");
                listener = None;
            }
        }
    }
}

async fn apply(state: &ProxyState, channel: &str, payload: &str) {
    match channel {
        ROUTES_CHANNEL => {
            if let Some(tenant_id) = payload.strip_prefix("tenant:") {
                state.router.forget_tenant(tenant_id);
                recheck(state, tenant_id).await;
            } else if let Some(rest) = payload
                .strip_prefix("workspace:")
                .or_else(|| payload.strip_prefix("provision:"))
                && let Some((project, _name)) = rest.split_once(':')
            {
                state.router.forget_workspace(project);
            }
        }
        GATES_CHANNEL => {
            let mut parts = payload.split(':');
            match (parts.next(), parts.next(), parts.next()) {
                (Some("hold"), Some(tenant), Some(ms)) => {
                    let ms: u64 = ms.parse().unwrap_or(0).min(600_000);
                    let until = tokio::time::Instant::now() + Duration::from_millis(ms);
                    state.gates.hold(tenant, until);
                }
                (Some("release"), Some(tenant), None) => state.gates.release(tenant),
                _ => tracing::warn!(payload, "unknown gate command"),
            }
        }
        _ => {}
    }
}

/// Ends the sessions of a tenant that is no longer ready. When the catalog cannot answer,
/// nothing is ended: an outage of the catalog is not a suspension.
async fn recheck(state: &ProxyState, tenant_id: &str) {
    match state.router.tenant_status(tenant_id).await {
        Ok(Some(status)) if status.serves() => {}
        Ok(_) => state.gates.kill(tenant_id),
        Err(()) => {}
    }
}

async fn recheck_all(state: &ProxyState) {
    for tenant_id in state.gates.tenant_ids() {
        recheck(state, &tenant_id).await;
    }
}

/// Every 10 s: closes pooled connections idle too long (each worker its own), and reports
/// query-log records lost since the last report (the /metrics endpoint will count them too).
async fn reap_idle(state: Arc<ProxyState>, workers: Arc<Workers>) {
    let mut reported = 0;
    loop {
        tokio::select! {
            _ = state.shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(10)) => {
                let pool_state = state.clone();
                workers
                    .on_each(move || {
                        let state = pool_state.clone();
                        async move { state.pool.evict(None).await }
                    })
                    .await;
                let dropped = state.log.dropped();
                metrics::counter!("tdb_query_log_dropped_total").absolute(dropped);
                if dropped > reported {
                    tracing::warn!(
                        dropped = dropped - reported,
                        total = dropped,
                        "query log records dropped: the log writer fell behind"
                    );
                    reported = dropped;
                }
            }
        }
    }
}
