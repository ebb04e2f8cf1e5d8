//! Shared servers started on first use: the managed MariaDB that serves MySQL workspaces and
//! tenants, and the managed redis-server that holds Redis ones as key prefixes. `tdb serve`
//! does not start one until a workspace or tenant of its engine is first made (most
//! installations never need it); once its data directory exists, every later start brings it
//! up with the rest, so its tenants are served.

use std::path::PathBuf;
use std::sync::Arc;

use tdb_catalog::Catalog;
use tdb_catalog::servers::ServerSpec;
use tdb_core::secrets::MasterKey;
use tdb_core::{Engine as EngineKind, ServerRole};
use tdb_engines::managed::mariadb::{ManagedMariadb, ManagedMariadbOptions};
use tdb_engines::managed::postgres::Listen;
use tdb_engines::{AdminEndpoint, Engines, ManagedRedis, ManagedRedisOptions, RunAs};
use tokio::sync::Mutex;

/// The managed MariaDB's name in the catalog.
pub const SHARED_MYSQL: &str = "mysql-shared";
/// The managed redis-server's name in the catalog.
pub const SHARED_REDIS: &str = "redis-shared";

/// What starting the managed Redis takes, beside what it shares with MariaDB's options.
pub struct RedisOptions {
    /// The server's own directory (`<data-dir>/servers/redis-shared`).
    pub dir: PathBuf,
    pub run_as_user: String,
    /// `maxclients`.
    pub max_clients: u32,
    /// `maxmemory`, in MiB (writes past it are refused: `noeviction`).
    pub max_memory_mb: u64,
    /// Whether this tdb manages a redis-server at all (`redis_managed`).
    pub enabled: bool,
}

/// What starting the managed servers takes.
pub struct SharedOptions {
    /// The MariaDB's own directory (`<data-dir>/servers/mysql-shared`).
    pub dir: PathBuf,
    pub run_as_user: String,
    pub master_key: MasterKey,
    pub region: String,
    pub max_databases: Option<u32>,
    /// Connections the server accepts in all.
    pub max_connections: u32,
    /// What tenants may hold of the server's connections together, as for every shared server
    /// (`server_reserved_connections`, `tenant_connections_percent`).
    pub reserved_connections: u32,
    pub tenant_percent: u32,
    /// Whether this tdb manages a MariaDB at all (`mysql_managed`).
    pub enabled: bool,
    pub redis: RedisOptions,
}

/// The shared servers this tdb starts on demand, and stops when it stops.
pub struct SharedServers {
    options: SharedOptions,
    catalog: Catalog,
    engines: Engines,
    mysql: Mutex<Option<ManagedMariadb>>,
    redis: Mutex<Option<ManagedRedis>>,
}

impl SharedServers {
    pub fn new(options: SharedOptions, catalog: Catalog, engines: Engines) -> Arc<Self> {
        Arc::new(Self {
            options,
            catalog,
            engines,
            mysql: Mutex::new(None),
            redis: Mutex::new(None),
        })
    }

    /// Starts the servers that were used before (their directories exist), so their databases
    /// are served from the start.
    pub async fn start_used(&self) -> anyhow::Result<()> {
        let mut failed = None;
        if self.options.enabled && self.options.dir.join("state.json").exists() {
            failed = self.ensure_mysql().await.err();
        }
        let redis = &self.options.redis;
        if redis.enabled && redis.dir.join("state.json").exists() {
            failed = failed.or(self.ensure_redis().await.err());
        }
        failed.map_or(Ok(()), Err)
    }

    /// Stops what was started.
    pub async fn shutdown(&self) {
        if let Some(server) = self.mysql.lock().await.take() {
            server.shutdown().await;
        }
        if let Some(server) = self.redis.lock().await.take() {
            server.shutdown().await;
        }
    }

    async fn ensure_mysql(&self) -> anyhow::Result<()> {
        let mut slot = self.mysql.lock().await;
        if slot.is_some() {
            return Ok(());
        }
        let server = ManagedMariadb::start(ManagedMariadbOptions {
            dir: self.options.dir.clone(),
            run_as: RunAs::resolve(&self.options.run_as_user)?,
            master_key: self.options.master_key.clone(),
            label: SHARED_MYSQL.into(),
            listen: Listen::PrivateSocket,
            settings: vec![(
                "max_connections".into(),
                self.options.max_connections.to_string(),
            )],
        })
        .await?;
        self.register(SHARED_MYSQL, EngineKind::Mysql, server.endpoint())
            .await?;
        *slot = Some(server);
        Ok(())
    }

    async fn ensure_redis(&self) -> anyhow::Result<()> {
        let mut slot = self.redis.lock().await;
        if slot.is_some() {
            return Ok(());
        }
        let redis = &self.options.redis;
        let server = ManagedRedis::start(ManagedRedisOptions {
            dir: redis.dir.clone(),
            run_as: RunAs::resolve(&redis.run_as_user)?,
            master_key: self.options.master_key.clone(),
            label: SHARED_REDIS.into(),
            listen: Listen::PrivateSocket,
            settings: vec![
                ("maxclients".into(), redis.max_clients.to_string()),
                ("maxmemory".into(), format!("{}mb", redis.max_memory_mb)),
                ("maxmemory-policy".into(), "noeviction".into()),
            ],
        })
        .await?;
        self.register(SHARED_REDIS, EngineKind::Redis, server.endpoint())
            .await?;
        *slot = Some(server);
        Ok(())
    }

    /// Records a managed server in the catalog, secures it, and gives its tenants their share
    /// of its connections.
    async fn register(
        &self,
        name: &str,
        engine_kind: EngineKind,
        e: &AdminEndpoint,
    ) -> anyhow::Result<()> {
        let spec = ServerSpec {
            name,
            engine: engine_kind,
            role: ServerRole::Shared,
            region: &self.options.region,
            host: &e.host,
            port: e.port,
            admin_user: &e.user,
            managed: true,
            max_databases: self.options.max_databases,
        };
        let key = &self.options.master_key;
        self.catalog
            .upsert_server(&spec, tdb_core::ids::server_id, |id| {
                key.seal(e.password.as_bytes(), tdb_core::aad::Aad::ServerAdmin(id))
            })
            .await?;
        let engine = self.engines.require(engine_kind)?;
        engine.secure_server(e, &[]).await?;
        let capacity = engine.connection_capacity(e).await?;
        // Tenants share a budget below the server's capacity, so tdb's own work (migrations,
        // dumps, admin queries) always finds a connection.
        let budget = crate::serve::tenant_budget(
            capacity,
            self.options.reserved_connections,
            self.options.tenant_percent,
        );
        if let Some(row) = self.catalog.find_server_by_name(name).await? {
            self.catalog
                .set_tenant_connection_budget(&row.id, budget)
                .await?;
        }
        tracing::info!(
            server = name,
            capacity,
            tenants = budget,
            "managed shared server ready"
        );
        Ok(())
    }
}

#[async_trait::async_trait]
impl tdb_jobs::SharedServers for SharedServers {
    async fn ensure(&self, engine: EngineKind) -> Result<bool, String> {
        let started = match engine {
            EngineKind::Mysql if self.options.enabled => self.ensure_mysql().await,
            EngineKind::Redis if self.options.redis.enabled => self.ensure_redis().await,
            _ => return Ok(false),
        };
        started.map(|()| true).map_err(|e| format!("{e:#}"))
    }
}
