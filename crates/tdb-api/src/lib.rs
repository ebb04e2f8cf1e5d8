//! The REST API of the control plane: axum routers (one file per resource), the API-key
//! extractor, the response envelope and the OpenAPI document generated from the handlers.

mod behind;
pub mod compat;
pub mod console;
pub mod envelope;
pub mod extract;
mod import;
pub mod listener;
mod mint;
mod openapi;
mod querylog;
mod routes;
mod tenant;
mod workspace;

use std::sync::Arc;

use tdb_catalog::Catalog;
use tdb_core::Tier;
use tdb_core::secrets::MasterKey;

pub use listener::{ConnectionLimits, serve_app};
pub use routes::{router, router_with};

/// A region tenants can be placed in, from configuration.
pub use tdb_types::Region;

/// Settings the API reads; built by the binary from the layered configuration.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    pub regions: Vec<Region>,
    /// Tier given to new accounts (`free` or `paid`).
    pub default_tier: Tier,
    /// Largest request body accepted, in bytes.
    pub body_limit: usize,
    /// Host and port of the PostgreSQL proxy, as written into connection strings.
    pub pg_public_host: String,
    pub pg_public_port: u16,
    /// Port of the MySQL proxy (on the same host), as written into connection strings.
    pub mysql_public_port: u16,
    /// Port of the Redis proxy (on the same host), as written into connection strings.
    pub redis_public_port: u16,
    /// Lets schema import fetch URLs on loopback and private networks (off: no SSRF).
    pub import_allow_private_urls: bool,
    /// Statements at least this long count as slow in logs and metrics.
    pub slow_query_ms: u64,
    /// Provisioned databases an account may have at once.
    pub provision_limit: u32,
    /// Connections each provisioned database's role may hold on the server.
    pub provision_connection_limit: u32,
    /// Lets registered connections reach loopback and private addresses (off: no SSRF).
    pub connections_allow_private: bool,
    /// Who may sign up.
    pub signup: tdb_core::SignupMode,
    /// Bytes of rows one request may build in memory (queries through the API).
    pub max_answer_bytes: usize,
    /// Days a key minted by a login or a project switch lasts.
    pub login_key_days: u32,
    /// E-mail addresses (lower case) of the accounts that operate this tdb.
    pub operators: Vec<String>,
}

impl ApiConfig {
    pub fn default_region(&self) -> &str {
        self.regions
            .iter()
            .find(|r| r.is_default)
            .map_or("local", |r| r.zone.as_str())
    }
}

impl ApiConfig {
    /// The port of the proxy that speaks `engine`'s protocol.
    pub fn proxy_port(&self, engine: tdb_core::Engine) -> u16 {
        match engine {
            tdb_core::Engine::Mysql => self.mysql_public_port,
            tdb_core::Engine::Redis => self.redis_public_port,
            _ => self.pg_public_port,
        }
    }

    /// A connection string for `database` through the proxy that speaks `engine`'s protocol:
    /// `postgresql://…?sslmode=require`, `mysql://…` (MySQL drivers each set TLS their own
    /// way, so the URL carries no TLS option, as the reference's does not), or `rediss://…/0`
    /// (TLS by the scheme; `user` is the tenant or workspace, and `database` is not written).
    pub fn connection_url(
        &self,
        engine: tdb_core::Engine,
        user: &str,
        password: &str,
        database: &str,
    ) -> String {
        let (host, port) = (&self.pg_public_host, self.proxy_port(engine));
        match engine {
            tdb_core::Engine::Mysql => {
                format!("mysql://{user}:{password}@{host}:{port}/{database}")
            }
            // Redis has one database, 0; the user names the tenant (or workspace) instead.
            tdb_core::Engine::Redis => format!("rediss://{user}:{password}@{host}:{port}/0"),
            _ => format!("postgresql://{user}:{password}@{host}:{port}/{database}?sslmode=require"),
        }
    }
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            regions: vec![Region {
                zone: "local".into(),
                label: "This machine".into(),
                is_default: true,
            }],
            default_tier: Tier::Free,
            body_limit: 1 << 20,
            pg_public_host: "127.0.0.1".into(),
            pg_public_port: 6432,
            mysql_public_port: 6033,
            redis_public_port: 6380,
            import_allow_private_urls: false,
            slow_query_ms: 1000,
            provision_limit: 3,
            provision_connection_limit: 20,
            connections_allow_private: false,
            signup: tdb_core::SignupMode::Open,
            max_answer_bytes: 64 << 20,
            login_key_days: 30,
            operators: Vec::new(),
        }
    }
}

/// The engine registry, built once by `tdb serve` and shared with the job runner.
pub use tdb_engines::Engines;

/// Rate limits of the API: the address guard it shares with the proxies, sign-up attempts per
/// address, and the tiers' quotas.
pub struct Limits {
    pub ip: Arc<tdb_core::ratelimit::IpGuard>,
    /// Sign-up attempts per client address (its /64 for IPv6) outside the trusted networks, in
    /// a sliding hour.
    pub signups: tdb_core::ratelimit::FailureThrottle<std::net::IpAddr>,
    pub projects: tdb_core::ratelimit::MinuteQuota<String>,
    /// API requests per project per minute, by tier.
    pub free_per_minute: u32,
    pub paid_per_minute: u32,
}

impl Limits {
    pub fn per_minute(&self, tier: Tier) -> u32 {
        match tier {
            Tier::Free => self.free_per_minute,
            Tier::Paid => self.paid_per_minute,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            ip: Arc::new(tdb_core::ratelimit::IpGuard::new(Default::default())),
            signups: signup_throttle(20),
            projects: Default::default(),
            free_per_minute: 1200,
            paid_per_minute: 12000,
        }
    }
}

/// At most `per_hour` sign-up attempts per address in any hour.
pub fn signup_throttle(per_hour: usize) -> tdb_core::ratelimit::FailureThrottle<std::net::IpAddr> {
    tdb_core::ratelimit::FailureThrottle::new(per_hour, std::time::Duration::from_secs(3600))
}

/// Each project's share of query sessions, by project id.
pub type ProjectSessions = std::collections::HashMap<String, Arc<tokio::sync::Semaphore>>;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub catalog: Catalog,
    pub config: Arc<ApiConfig>,
    /// The job runner's engine registry (one registry for the API and the jobs).
    pub engines: Engines,
    /// Opens the sealed secrets the platform uses itself (server and owner-role passwords).
    pub master_key: MasterKey,
    /// Bounds concurrent password hashing (19 MiB and tens of milliseconds each), so a flood of
    /// sign-ups or logins queues instead of exhausting memory.
    pub hashing: Arc<tokio::sync::Semaphore>,
    /// Where backups are stored.
    pub backups: tdb_jobs::store::BackupStore,
    /// Backup policy for projects that set none of their own.
    pub backup_defaults: tdb_jobs::backup::BackupPolicy,
    pub limits: Arc<Limits>,
    /// Memory for the answers of all requests being built at once.
    pub answers: tdb_engines::budget::MemoryBudget,
    /// Each project's share of the engines' query sessions.
    pub sessions_by_project: Arc<std::sync::Mutex<ProjectSessions>>,
    /// The job runner's context: the API queues jobs and runs tenant creations itself under
    /// its leases, with its engines, store and limits.
    pub jobs: tdb_jobs::Runner,
}

impl AppState {
    pub fn new(
        config: ApiConfig,
        jobs: tdb_jobs::Runner,
        backup_defaults: tdb_jobs::backup::BackupPolicy,
    ) -> Self {
        let permits = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self {
            catalog: jobs.catalog.clone(),
            config: Arc::new(config),
            engines: jobs.engines.clone(),
            master_key: jobs.master_key.clone(),
            hashing: Arc::new(tokio::sync::Semaphore::new(permits)),
            backups: jobs.store.clone(),
            backup_defaults,
            limits: Arc::new(Limits::default()),
            answers: tdb_engines::budget::MemoryBudget::default(),
            sessions_by_project: Default::default(),
            jobs,
        }
    }

    /// The query sessions `project_id` may have open at once (a quarter of the engines'), shared
    /// by its requests. Projects with none open are forgotten as others come.
    pub fn project_sessions(&self, project_id: &str) -> Arc<tokio::sync::Semaphore> {
        let mut all = self
            .sessions_by_project
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if all.len() > 1024 {
            all.retain(|_, s| Arc::strong_count(s) > 1);
        }
        all.entry(project_id.to_string())
            .or_insert_with(|| {
                Arc::new(tokio::sync::Semaphore::new(
                    tdb_engines::postgres::MAX_OWNER_SESSIONS,
                ))
            })
            .clone()
    }
}
