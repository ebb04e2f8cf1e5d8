//! Shared servers started on first use: the managed MariaDB that serves MySQL workspaces and
//! tenants. `tdb serve` does not start one until a MySQL workspace or tenant is first made
//! (most installations never need it); once its data directory exists, every later start
//! brings it up with the rest, so its tenants are served.

use std::path::PathBuf;
use std::sync::Arc;

use tdb_catalog::Catalog;
use tdb_catalog::servers::ServerSpec;
use tdb_core::secrets::MasterKey;
use tdb_core::{Engine as EngineKind, ServerRole};
use tdb_engines::managed::mariadb::{ManagedMariadb, ManagedMariadbOptions};
use tdb_engines::managed::postgres::Listen;
use tdb_engines::{Engines, RunAs};
use tokio::sync::Mutex;

/// The managed MariaDB's name in the catalog.
pub const SHARED_MYSQL: &str = "mysql-shared";

/// What starting the managed MariaDB takes.
pub struct SharedOptions {
    /// The server's own directory (`<data-dir>/mariadb`).
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
}

/// The shared servers this tdb starts on demand, and stops when it stops.
pub struct SharedServers {
    options: SharedOptions,
    catalog: Catalog,
    engines: Engines,
    mysql: Mutex<Option<ManagedMariadb>>,
}

impl SharedServers {
    pub fn new(options: SharedOptions, catalog: Catalog, engines: Engines) -> Arc<Self> {
        Arc::new(Self {
            options,
            catalog,
            engines,
            mysql: Mutex::new(None),
        })
    }

    /// Starts the servers that were used before (their directories exist), so their databases
    /// are served from the start.
    pub async fn start_used(&self) -> anyhow::Result<()> {
        if self.options.enabled && self.options.dir.join("state.json").exists() {
            self.ensure_mysql().await?;
        }
        Ok(())
    }

    /// Stops what was started.
    pub async fn shutdown(&self) {
        if let Some(server) = self.mysql.lock().await.take() {
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
        let e = server.endpoint().clone();
        let spec = ServerSpec {
            name: SHARED_MYSQL,
            engine: EngineKind::Mysql,
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
        let engine = self.engines.require(EngineKind::Mysql)?;
        engine.secure_server(&e, &[]).await?;
        let capacity = engine.connection_capacity(&e).await?;
        // Tenants share a budget below the server's capacity, so tdb's own work (migrations,
        // dumps, admin queries) always finds a connection.
        let budget = crate::serve::tenant_budget(
            capacity,
            self.options.reserved_connections,
            self.options.tenant_percent,
        );
        if let Some(row) = self.catalog.find_server_by_name(SHARED_MYSQL).await? {
            self.catalog
                .set_tenant_connection_budget(&row.id, budget)
                .await?;
        }
        tracing::info!(
            server = SHARED_MYSQL,
            capacity,
            tenants = budget,
            "managed MariaDB ready"
        );
        *slot = Some(server);
        Ok(())
    }
}

#[async_trait::async_trait]
impl tdb_jobs::SharedServers for SharedServers {
    async fn ensure(&self, engine: EngineKind) -> Result<bool, String> {
        if engine != EngineKind::Mysql || !self.options.enabled {
            return Ok(false);
        }
        self.ensure_mysql()
            .await
            .map(|()| true)
            .map_err(|e| format!("{e:#}"))
    }
}
