//! The MySQL proxy against a real MariaDB 10.11 and real clients: the `mariadb` command-line
//! client (MariaDB Connector/C) and sqlx's MySQL driver, plus a bare client on the proxy's
//! codec for what those cannot be made to send. The catalog is the one part not real here:
//! logins come from a fixed set ([`Logins`]) and routes are built by hand, because the router
//! and tenancy belong to the protocol-neutral core (tested there, and end to end by `tdb
//! serve`'s tests). Everything from the client's first byte to MariaDB's answer is the proxy's
//! own code.

mod mariadb;
mod raw;
mod sessions;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tdb_catalog::routing::Login;
use tdb_core::secrets::{MasterKey, mysql_verifier, scram_verifier};
use tdb_core::settings::Settings;
use tdb_core::{KeyRole, ScopeType, TenantStatus};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::session::{self, Logins};
use crate::route::{Access, Route, RoutingName};
use crate::tenancy::Tenancy;
use crate::{PlaintextPolicy, ProxyConfig, ProxyState};
use mariadb::*;

/// The key of a credential with MySQL digests, of one made before them, of a read key.
pub const KEY: (&str, &str) = ("u_key", "k-secret-123");
pub const OLD_KEY: (&str, &str) = ("u_old", "old-secret-456");
pub const READ_KEY: (&str, &str) = ("u_read", "read-secret-789");
pub const TENANT_ID: &str = "t1";
/// The routes' `query_timeout_ms`.
pub const QUERY_TIMEOUT_MS: u64 = 1500;

/// Credentials by user name.
struct TestLogins(HashMap<String, Login>);

impl Logins for TestLogins {
    fn login(
        &self,
        user: &str,
    ) -> impl std::future::Future<Output = Result<Option<Login>, String>> + Send {
        let found = self.0.get(user).cloned();
        async move { Ok(found) }
    }
}

fn logins() -> TestLogins {
    let login = |key: &str, mysql: bool, role: KeyRole| Login {
        project_id: "p1".into(),
        verifier: scram_verifier(key),
        mysql_verifier: mysql.then(|| mysql_verifier(key)),
        scope_type: ScopeType::Project,
        scope_value: None,
        role,
    };
    TestLogins(HashMap::from([
        (KEY.0.to_string(), login(KEY.1, true, KeyRole::Admin)),
        (
            OLD_KEY.0.to_string(),
            login(OLD_KEY.1, false, KeyRole::Write),
        ),
        (
            READ_KEY.0.to_string(),
            login(READ_KEY.1, true, KeyRole::Read),
        ),
    ]))
}

/// The tenant's and the workspace's routes to the test server.
fn routes(port: u16) -> HashMap<String, Arc<Route>> {
    let route = |db: &str, tenant: Option<&str>, (user, password): (&str, &str)| Route {
        project_id: "p1".into(),
        name: RoutingName::parse(db).expect("a routing name"),
        tenant_id: tenant.map(str::to_string),
        status: TenantStatus::Ready,
        server_id: "s1".into(),
        host: "127.0.0.1".into(),
        port,
        physical_db: db.into(),
        write: Access {
            user: user.into(),
            password: password.into(),
        },
        read: None,
        settings: Settings {
            query_timeout_ms: QUERY_TIMEOUT_MS,
            ..Settings::default()
        },
        key_rules: Arc::default(),
        blueprint_id: tenant.is_none().then(|| "bp1".to_string()),
        slots: Arc::new(Semaphore::new(10)),
        server_slots: Arc::new(Semaphore::new(10)),
        server_budget: None,
    };
    HashMap::from([
        (
            TENANT_DB.to_string(),
            Arc::new(route(
                TENANT_DB,
                Some(TENANT_ID),
                (TENANT_USER, TENANT_PASSWORD),
            )),
        ),
        (
            WORKSPACE_DB.to_string(),
            Arc::new(route(
                WORKSPACE_DB,
                None,
                (WORKSPACE_USER, WORKSPACE_PASSWORD),
            )),
        ),
    ])
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
}

impl Fixture {
    pub async fn start(db_port: u16, plaintext: PlaintextPolicy) -> anyhow::Result<Self> {
        let config = ProxyConfig {
            plaintext,
            ..ProxyConfig::default()
        };
        Self::with_config(db_port, config).await
    }

    pub async fn with_config(db_port: u16, config: ProxyConfig) -> anyhow::Result<Self> {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let tls_dir = tempfile::tempdir()?;
        let generated = crate::tls::GeneratedTls {
            dir: tls_dir.path().to_path_buf(),
        };
        let (cert, key) = generated.ensure(&["localhost".into(), "127.0.0.1".into()])?;
        let tls = crate::tls::acceptor(&cert, &key)?;
        // Nothing listens there: the catalog is not used but for DDL capture, which fails.
        let catalog = tdb_catalog::Catalog::lazy(
            "postgres://nobody@127.0.0.1:1/none"
                .parse()
                .expect("options"),
        );
        let (log, _writer) = crate::querylog::QueryLog::new(catalog.clone(), false);
        let proxy = ProxyState::new(
            config,
            catalog,
            &MasterKey::generate(),
            Some(tls),
            log,
            CancellationToken::new(),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let sessions = Arc::new(Mutex::new(Vec::new()));
        let accept = tokio::spawn(accept(
            listener,
            proxy.clone(),
            Arc::new(routes(db_port)),
            sessions.clone(),
        ));
        Ok(Self {
            proxy,
            addr,
            ca: generated.ca_cert(),
            _tls: tls_dir,
            sessions,
            accept,
        })
    }

    /// Waits for every session to end; fails if one panicked.
    pub async fn finish(self) -> anyhow::Result<()> {
        self.accept.abort();
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

/// What `session::handle` does, with the test's logins and routes in place of the catalog's.
async fn one_session(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    proxy: Arc<ProxyState>,
    logins: Arc<TestLogins>,
    routes: Arc<HashMap<String, Arc<Route>>>,
) {
    let Some((mut io, input, auth)) = session::negotiate(stream, peer, &proxy, &*logins).await
    else {
        return;
    };
    let database = auth.database.clone().unwrap_or_default();
    let route = routes.get(&database).expect("a known database").clone();
    let gate = route.tenant_id.as_deref().map(|t| proxy.gates.get(t));
    let kill = gate
        .as_ref()
        .map_or_else(CancellationToken::new, |g| g.kill_token());
    let slot = route.slots.clone().try_acquire_owned().expect("a slot");
    let tenancy = Tenancy {
        route,
        gate,
        kill,
        slot,
    };
    session::serve_routed(&mut io, input, auth, tenancy, peer, &proxy).await;
    let _ = tokio::io::AsyncWriteExt::shutdown(&mut io).await;
}
