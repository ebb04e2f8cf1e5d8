//! The Redis proxy against a real redis-server 7.0 and real clients: `redis-cli` (TLS and
//! plaintext), redis-py (RESP2 and RESP3), and a bare client on the proxy's own codec for
//! malformed frames. As in the MySQL proxy's tests, the catalog is the one part not real:
//! logins come from a fixed set ([`TestLogins`]) and routes are built by hand (the router and
//! tenancy belong to the protocol-neutral core). The ACL users are made as the control plane
//! makes them: each tenant's keys and channels only.

mod clients;
mod isolation;
mod keyrules;
mod lanes;
mod memory;
mod rust_client;
mod server;
mod sessions;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tdb_catalog::routing::Login;
use tdb_core::keyrules::{KeyRules, PatternRule};
use tdb_core::secrets::MasterKey;
use tdb_core::settings::Settings;
use tdb_core::{KeyRole, ScopeType, TenantStatus};
use tdb_engines::redis::acl::Role;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::session::{self, RedisLogins};
use crate::route::{Access, Route, RoutingName};
use crate::tenancy::Tenancy;
use crate::workers::{Handoff, Workers};
use crate::{PlaintextPolicy, ProxyConfig, ProxyState};
pub use server::{Raw, TestRedis, text};
use tokio_util::task::TaskTracker;
use tracing::Instrument;

/// A tenant: its id (the Redis user name), API key, routing database, key prefix (physical
/// database) and ACL user.
pub struct Tenant {
    pub id: &'static str,
    pub key: &'static str,
    pub database: &'static str,
    pub physical: &'static str,
    pub acl_user: &'static str,
    pub acl_password: &'static str,
}

pub const A: Tenant = Tenant {
    id: "acme",
    key: "key-acme-123",
    database: "shop__acme",
    physical: "ta",
    acl_user: "ta_app",
    acl_password: "ta-secret",
};
pub const B: Tenant = Tenant {
    id: "beta",
    key: "key-beta-456",
    database: "shop__beta",
    physical: "tb",
    acl_user: "tb_app",
    acl_password: "tb-secret",
};
/// Tenants with rules for their keys: TTLs for C, a key limit for D.
pub const C: Tenant = Tenant {
    id: "gamma",
    key: "key-gamma-1",
    database: "shop__gamma",
    physical: "tg",
    acl_user: "tg_app",
    acl_password: "tg-secret",
};
pub const D: Tenant = Tenant {
    id: "delta",
    key: "key-delta-2",
    database: "shop__delta",
    physical: "td",
    acl_user: "td_app",
    acl_password: "td-secret",
};
/// C's rules: keys live 100 s, `cache:*` keys 5 s.
pub const C_DEFAULT_TTL: u64 = 100;
pub const C_CACHE_TTL: u64 = 5;
/// D's rule: 3 keys at most.
pub const D_MAX_KEYS: u64 = 3;

/// Tenant A's read credential.
pub const A_READ_KEY: &str = "read-acme-789";
/// The proxy's budget for large requests and replies in these tests.
pub const LARGE_FRAMES: usize = 4 << 20;
/// The routes' `query_timeout_ms`.
pub const QUERY_TIMEOUT_MS: u64 = 1500;

/// Credentials by user name and password.
struct TestLogins(HashMap<(String, String), (Login, String)>);

impl RedisLogins for TestLogins {
    fn login(
        &self,
        user: &str,
        password: &str,
    ) -> impl std::future::Future<Output = Result<Option<(Login, String)>, String>> + Send {
        let found = self
            .0
            .get(&(user.to_string(), password.to_string()))
            .cloned();
        async move { Ok(found) }
    }
}

fn logins() -> TestLogins {
    let login = |role: KeyRole| Login {
        project_id: "p1".into(),
        verifier: String::new(),
        mysql_verifier: None,
        scope_type: ScopeType::Project,
        scope_value: None,
        role,
    };
    let entry = |user: &str, key: &str, role, db: &str| {
        (
            (user.to_string(), key.to_string()),
            (login(role), db.to_string()),
        )
    };
    TestLogins(HashMap::from([
        entry(A.id, A.key, KeyRole::Write, A.database),
        entry(B.id, B.key, KeyRole::Write, B.database),
        entry(A.id, A_READ_KEY, KeyRole::Read, A.database),
        entry(C.id, C.key, KeyRole::Write, C.database),
        entry(D.id, D.key, KeyRole::Write, D.database),
    ]))
}

/// A's route reaches the server by its Unix socket, B's by TCP.
fn routes(redis: &TestRedis, query_timeout_ms: u64) -> HashMap<String, Arc<Route>> {
    let route = |t: &Tenant, host: String, read: Option<Access>, rules: KeyRules| Route {
        project_id: "p1".into(),
        name: RoutingName::parse(t.database).expect("a routing name"),
        tenant_id: Some(t.id.to_string()),
        status: TenantStatus::Ready,
        server_id: "redis-1".into(),
        host,
        port: redis.port,
        physical_db: t.physical.into(),
        write: Access {
            user: t.acl_user.into(),
            password: t.acl_password.into(),
        },
        read,
        settings: Settings {
            query_timeout_ms,
            ..Settings::default()
        },
        key_rules: Arc::new(rules),
        blueprint_id: None,
        slots: Arc::new(Semaphore::new(10)),
        server_slots: Arc::new(Semaphore::new(10)),
        server_budget: None,
    };
    let read = Access {
        user: "ta_read".into(),
        password: "ta-read-secret".into(),
    };
    let socket = redis.socket.display().to_string();
    let tcp = || "127.0.0.1".to_string();
    let ttls = KeyRules {
        default_ttl: Some(C_DEFAULT_TTL),
        patterns: BTreeMap::from([("cache:*".to_string(), PatternRule { ttl: C_CACHE_TTL })]),
        ..KeyRules::default()
    };
    let limit = KeyRules {
        max_keys: Some(D_MAX_KEYS),
        ..KeyRules::default()
    };
    HashMap::from([
        (
            A.database.to_string(),
            Arc::new(route(&A, socket, Some(read), KeyRules::default())),
        ),
        (
            B.database.to_string(),
            Arc::new(route(&B, tcp(), None, KeyRules::default())),
        ),
        (
            C.database.to_string(),
            Arc::new(route(&C, tcp(), None, ttls)),
        ),
        (
            D.database.to_string(),
            Arc::new(route(&D, tcp(), None, limit)),
        ),
    ])
}

/// The server with the tenants' ACL users (and A's read-only user), made by tdb's own rules.
pub async fn server() -> anyhow::Result<TestRedis> {
    let redis = TestRedis::start()?;
    for t in [&A, &B, &C, &D] {
        redis
            .acl_user(t.acl_user, Role::App, t.physical, t.acl_password)
            .await?;
    }
    redis
        .acl_user("ta_read", Role::Read, A.physical, "ta-read-secret")
        .await?;
    Ok(redis)
}

/// A proxy in front of the test server, on a loopback port of its own.
pub struct Fixture {
    pub proxy: Arc<ProxyState>,
    pub addr: SocketAddr,
    /// The CA that signed the proxy's certificate.
    pub ca: PathBuf,
    _tls: tempfile::TempDir,
    sessions: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
    /// The proxy's worker threads, when its sessions run on them ([`Fixture::on_workers`]).
    pub workers: Option<(Arc<Workers>, TaskTracker)>,
}

impl Fixture {
    pub async fn start(redis: &TestRedis, plaintext: PlaintextPolicy) -> anyhow::Result<Self> {
        Self::start_with(redis, plaintext, 0, QUERY_TIMEOUT_MS).await
    }

    /// A proxy whose sessions run on `workers` worker threads, as `tdb serve` runs them, each
    /// accepted connection on the least busy one.
    pub async fn on_workers(redis: &TestRedis, workers: usize) -> anyhow::Result<Self> {
        Self::start_with(redis, PlaintextPolicy::Loopback, workers, QUERY_TIMEOUT_MS).await
    }

    /// A proxy whose routes have no `query_timeout_ms`: the server may stay silent.
    pub async fn without_timeout(redis: &TestRedis) -> anyhow::Result<Self> {
        Self::start_with(redis, PlaintextPolicy::Loopback, 0, 0).await
    }

    async fn start_with(
        redis: &TestRedis,
        plaintext: PlaintextPolicy,
        workers: usize,
        query_timeout_ms: u64,
    ) -> anyhow::Result<Self> {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let tls_dir = tempfile::tempdir()?;
        let generated = crate::tls::GeneratedTls {
            dir: tls_dir.path().to_path_buf(),
        };
        let (cert, key) = generated.ensure(&["localhost".into(), "127.0.0.1".into()])?;
        let tls = crate::tls::acceptor(&cert, &key)?;
        // Nothing listens there: the catalog is not used.
        let catalog = tdb_catalog::Catalog::lazy(
            "postgres://nobody@127.0.0.1:1/none"
                .parse()
                .expect("options"),
        );
        // Enabled, with no writer: records stay in the batch, where the tests count them.
        let (log, _writer) = crate::querylog::QueryLog::new(catalog.clone(), true);
        let config = ProxyConfig {
            plaintext,
            ..ProxyConfig::default()
        };
        let mut proxy = ProxyState::new(
            config,
            catalog,
            &MasterKey::generate(),
            Some(tls),
            log,
            CancellationToken::new(),
        );
        // A small budget for large frames, which the tests can fill.
        Arc::get_mut(&mut proxy)
            .expect("not shared yet")
            .redis_memory = tdb_engines::budget::MemoryBudget::new(LARGE_FRAMES);
        // The test server's administrator is its default user (no password): the walker of
        // KEYS, SCAN and the emulations logs in as it.
        proxy.router.remember_admin(
            "redis-1",
            crate::route::Access {
                user: "default".into(),
                password: "unused".into(),
            },
        );
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let sessions = Arc::new(Mutex::new(Vec::new()));
        let routes = Arc::new(routes(redis, query_timeout_ms));
        let (accept, workers) = if workers == 0 {
            let accept = tokio::spawn(accept(listener, proxy.clone(), routes, sessions.clone()));
            (accept, None)
        } else {
            let workers = Arc::new(Workers::start(workers, "test-redis-worker")?);
            let tracker = TaskTracker::new();
            let _ = proxy.handoff.set(Handoff::new(&workers, &tracker));
            let accept = tokio::spawn(accept_on_workers(
                listener,
                proxy.clone(),
                routes,
                workers.clone(),
                tracker.clone(),
            ));
            (accept, Some((workers, tracker)))
        };
        Ok(Self {
            workers,
            proxy,
            addr,
            ca: generated.ca_cert(),
            _tls: tls_dir,
            sessions,
            accept,
        })
    }

    /// A bare client, logged in as `tenant`.
    pub async fn login(&self, tenant: &Tenant) -> anyhow::Result<Raw<tokio::net::TcpStream>> {
        let mut raw = self.raw().await?;
        let answer = raw.call(&["AUTH", tenant.id, tenant.key]).await?;
        anyhow::ensure!(text(&answer) == "OK", "AUTH answered {answer:?}");
        Ok(raw)
    }

    /// `redis-cli` at the proxy, logged in as `tenant`, over TLS with the proxy's CA or in
    /// plaintext; its command (or commands, on standard input) to be added.
    pub fn redis_cli(&self, tls: bool, tenant: &Tenant) -> tokio::process::Command {
        let mut cli = tokio::process::Command::new("redis-cli");
        cli.args(["-h", "127.0.0.1", "-p", &self.addr.port().to_string()])
            .args([
                "--user",
                tenant.id,
                "--pass",
                tenant.key,
                "--no-auth-warning",
            ]);
        if tls {
            cli.arg("--tls").arg("--cacert").arg(&self.ca);
        }
        cli
    }

    /// A bare client, not logged in.
    pub async fn raw(&self) -> anyhow::Result<Raw<tokio::net::TcpStream>> {
        Ok(Raw::new(tokio::net::TcpStream::connect(self.addr).await?))
    }

    /// Waits for every session to end; fails if one panicked.
    pub async fn finish(mut self) -> anyhow::Result<()> {
        self.accept.abort();
        // Gone once it has been dropped, with its hold on the workers.
        let _ = (&mut self.accept).await;
        if let Some((workers, tracker)) = self.workers.take() {
            tracker.close();
            tokio::time::timeout(std::time::Duration::from_secs(15), tracker.wait())
                .await
                .map_err(|_| anyhow::anyhow!("a session did not end"))?;
            let workers = Arc::into_inner(workers).expect("the workers are not shared");
            tokio::task::spawn_blocking(move || workers.stop()).await?;
        }
        let handles: Vec<_> = std::mem::take(&mut *self.sessions.lock().expect("lock"));
        for handle in handles {
            match tokio::time::timeout(std::time::Duration::from_secs(15), handle).await {
                Ok(Err(e)) if e.is_panic() => anyhow::bail!("a session panicked: {e}"),
                Ok(_) => {}
                Err(_) => anyhow::bail!("a session did not end"),
            }
        }
        Ok(())
    }
}

async fn accept(
    listener: TcpListener,
    proxy: Arc<ProxyState>,
    routes: Arc<HashMap<String, Arc<Route>>>,
    sessions: Arc<Mutex<Vec<JoinHandle<()>>>>,
) {
    let logins = Arc::new(logins());
    while let Ok((stream, peer)) = listener.accept().await {
        let handle = tokio::spawn(one_session(
            stream,
            peer,
            proxy.clone(),
            logins.clone(),
            routes.clone(),
        ));
        sessions.lock().expect("lock").push(handle);
    }
}

/// [`accept`] for sessions on worker threads.
async fn accept_on_workers(
    listener: TcpListener,
    proxy: Arc<ProxyState>,
    routes: Arc<HashMap<String, Arc<Route>>>,
    workers: Arc<Workers>,
    tracker: TaskTracker,
) {
    let logins = Arc::new(logins());
    while let Ok((stream, peer)) = listener.accept().await {
        let (proxy, logins, routes) = (proxy.clone(), logins.clone(), routes.clone());
        let stream = stream.into_std().expect("a socket off this runtime");
        workers.spawn(&tracker, move || async move {
            let stream = tokio::net::TcpStream::from_std(stream).expect("a socket on the worker");
            let stream = super::moving::Movable::new(stream);
            let Some((client, auth)) = session::negotiate(stream, peer, &proxy, &*logins).await
            else {
                return;
            };
            let tenancy = tenancy(&proxy, &routes, &auth);
            session::serve_on_lane_worker(
                client,
                auth,
                tenancy,
                peer,
                proxy,
                tracing::Span::none(),
            )
            .await;
        });
    }
}

/// The route of the database a client logged in to, a gate and a slot, as `tenancy::enter`
/// gives them.
fn tenancy(
    proxy: &ProxyState,
    routes: &HashMap<String, Arc<Route>>,
    auth: &session::Authenticated,
) -> Tenancy {
    let route = routes
        .get(&auth.database)
        .expect("a known database")
        .clone();
    let gate = route.tenant_id.as_deref().map(|t| proxy.gates.get(t));
    let kill = gate
        .as_ref()
        .map_or_else(CancellationToken::new, |g| g.kill_token());
    let slot = route.slots.clone().try_acquire_owned().expect("a slot");
    Tenancy {
        route,
        gate,
        kill,
        slot,
    }
}

/// What `session::handle` does, with the test's logins and routes in place of the catalog's.
async fn one_session(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    proxy: Arc<ProxyState>,
    logins: Arc<TestLogins>,
    routes: Arc<HashMap<String, Arc<Route>>>,
) {
    // The span `tdb serve` gives a connection, entered by the session where it chooses.
    let span = tracing::info_span!(
        "connection",
        protocol = session::PROTOCOL,
        peer = %peer,
        tenant = tracing::field::Empty
    );
    let negotiated = session::negotiate(stream, peer, &proxy, &*logins)
        .instrument(span.clone())
        .await;
    let Some((mut client, auth)) = negotiated else {
        return;
    };
    let tenancy = tenancy(&proxy, &routes, &auth);
    session::serve_routed(&mut client, auth, tenancy, peer, &proxy, span).await;
    let _ = tokio::io::AsyncWriteExt::shutdown(&mut client.io).await;
}
