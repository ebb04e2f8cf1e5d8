//! `tdb serve` configuration, layered: built-in defaults < `tdb.toml` (in the data dir, or
//! `--config`) < `TDB_*` environment variables < command-line flags.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};
use tdb_api::Region;
use tdb_core::{Engine, ServerRole};

/// An existing database server given to tdb (attached mode).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServerConfig {
    /// Stable name; identifies the server across restarts.
    pub name: String,
    /// `postgresql` (others arrive with their engines).
    #[serde(default = "default_engine")]
    pub engine: Engine,
    /// `shared` (the default and the only role an attached server may have: dedicated servers
    /// are made by tdb's provisioner).
    #[serde(default = "default_role")]
    pub role: ServerRole,
    /// Region zone; defaults to the default region.
    pub region: Option<String>,
    /// Admin connection URL, e.g. `postgresql://admin:secret@db1:5432/postgres`.
    pub url: String,
    /// Databases (tenant databases, workspaces, provisioned) placement puts on it at most;
    /// unset: no limit. A full server keeps what it has.
    #[serde(default)]
    pub max_databases: Option<u32>,
}

fn default_engine() -> Engine {
    Engine::Postgresql
}

fn default_role() -> ServerRole {
    ServerRole::Shared
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Config {
    pub data_dir: PathBuf,
    pub api_listen: SocketAddr,
    pub pg_listen: SocketAddr,
    pub mysql_listen: SocketAddr,
    /// A Unix socket the MySQL proxy also listens on, for clients on this machine; unset: none.
    pub mysql_socket: Option<PathBuf>,
    pub redis_listen: SocketAddr,
    /// Host written into connection strings; defaults to the listen host.
    pub public_host: Option<String>,
    /// Attached mode: the catalog's PostgreSQL URL. Unset: tdb manages its own server.
    pub catalog_url: Option<String>,
    /// The master key (64 hex characters or base64 of 32 bytes); unset: `master.key` in the
    /// data dir, created on first start.
    pub master_key: Option<String>,
    /// The OS user managed servers run as when tdb runs as root.
    pub managed_user: String,
    /// Where PostgreSQL's server binaries are; unset: found automatically.
    pub postgres_bin_dir: Option<PathBuf>,
    /// Tier of new accounts: `free` or `paid`.
    pub default_tier: String,
    /// Who may sign up: `open`, `closed` or `invite` (with a code from an existing account).
    pub signup: String,
    /// Sign-up attempts per client address and hour, outside the trusted networks.
    pub signup_attempts_per_hour: usize,
    /// Largest accepted request body in bytes.
    pub body_limit: usize,
    /// Seconds a client may take to send a request's headers (also how long an idle
    /// keep-alive connection stays open).
    pub api_header_timeout_secs: u64,
    /// Seconds a client may take to send a request's body, from the end of its headers.
    pub api_body_timeout_secs: u64,
    /// Open API connections at most; 0: derived from the file limit (see `fdlimit`).
    pub api_max_connections: usize,
    /// Open API connections per client address (IPv6: its /64), loopback too.
    pub api_max_connections_per_address: usize,
    /// `text` or `json`.
    pub log_format: String,
    /// Lets schema import fetch URLs on loopback and private networks.
    pub import_allow_private_urls: bool,
    /// Tenant databases one deployment migrates at once on each server (every server at once).
    pub deploy_parallelism: usize,
    /// The PostgreSQL proxy's TLS certificate chain (PEM); unset: generated into the data dir.
    pub pg_tls_cert: Option<PathBuf>,
    /// The key of `pg_tls_cert` (PEM).
    pub pg_tls_key: Option<PathBuf>,
    /// Clients without TLS: `allow`, `loopback` (only from loopback addresses) or `refuse`.
    pub pg_plaintext: String,
    /// Proxy connections still authenticating, at most.
    pub pg_max_unauthenticated: usize,
    /// Of those, at most this many from one client address (IPv6: its /64), loopback too
    /// (never more than `pg_max_unauthenticated`).
    pub pg_max_unauthenticated_per_address: usize,
    /// Seconds a proxy client may take to send its startup packet (TLS negotiation included).
    pub pg_startup_timeout_secs: u64,
    /// Seconds an open transaction may take to finish when tdb shuts down.
    pub pg_shutdown_grace_secs: u64,
    /// Transaction pooling: seconds a transaction may wait for one of its database's
    /// `max_connections` server connections before its client is refused (53300).
    pub pg_transaction_wait_secs: u64,
    /// Record every statement through the proxy in the catalog's query log.
    pub pg_query_log: bool,
    /// Worker threads for the proxies' sessions, each with its own event loop; 0: one per CPU.
    pub proxy_workers: usize,
    /// Where backups go: `file:///dir` or `s3://bucket[/prefix]`; unset: `<data-dir>/backups`.
    pub backup_store: Option<String>,
    /// Endpoint of an S3-compatible service (credentials from the AWS_* variables).
    pub backup_s3_endpoint: Option<String>,
    pub backup_s3_region: Option<String>,
    /// Plain HTTP to `backup_s3_endpoint` (local test services only).
    pub backup_s3_allow_http: bool,
    /// Defaults of every project's backup policy (each project may override them).
    pub backup_schedule_enabled: bool,
    /// `HH:MM` or `HH:MM:SS`, UTC.
    pub backup_daily_at: String,
    pub backup_keep_count: i64,
    pub backup_keep_days: i64,
    /// Manual backup requests per project per hour.
    pub backup_hourly_limit: i64,
    /// Seconds between checks of the backup schedule and retention.
    pub backup_schedule_tick_secs: u64,
    /// `max_connections` of the managed PostgreSQL server.
    pub managed_max_connections: u32,
    /// Databases placement puts on the managed shared server at most; unset: no limit.
    pub managed_max_databases: Option<u32>,
    /// `max_connections` of each dedicated (L2) server tdb runs.
    pub dedicated_max_connections: u32,
    /// E-mail addresses of the accounts that operate this tdb: their admin keys may list the
    /// servers (`GET /servers`, `tdb servers list`).
    pub operators: Vec<String>,
    /// Connections each shared server keeps for tdb's own work (its catalog, API queries, jobs);
    /// tenants share the rest. Capped at half of what a server accepts.
    pub server_reserved_connections: u32,
    /// The most of what a server accepts (from roles that are not superusers) that its tenants
    /// may hold together, in percent; what `server_reserved_connections` keeps comes first.
    pub tenant_connections_percent: u32,
    /// Jobs (deployments, backups, rollbacks) run at once; one project may hold half of them.
    pub max_jobs: usize,
    /// Longest one run of a deployment, backup or rollback may take before it is ended and
    /// recorded as failed.
    pub job_time_limit_secs: u64,
    /// Longest the migration of one tenant database may take (a deployment's statements
    /// included), whatever the statements set.
    pub migration_timeout_secs: u64,
    /// How long (ms) a move's cutover lets the tenant's open transactions finish before it ends
    /// them.
    pub move_drain_ms: u64,
    /// How long (s) a move waits for replication to copy every table before falling back to a
    /// dump and restore.
    pub move_sync_timeout_secs: u64,
    /// How long (hours) a moved database's old copy is kept, unreachable, before it is dropped.
    pub move_keep_source_hours: u64,
    /// A managed MariaDB for MySQL workspaces and tenants, initialised in the data dir the first
    /// time one is made (needs `mariadbd`).
    pub mysql_managed: bool,
    /// `max_connections` of the managed MariaDB server.
    pub mysql_max_connections: u32,
    /// A managed redis-server for Redis workspaces and tenants, initialised in the data dir the
    /// first time one is made (needs `redis-server`).
    pub redis_managed: bool,
    /// `maxclients` of the managed redis-server.
    pub redis_max_clients: u32,
    /// `maxmemory` of the managed redis-server, in MiB; 0: a quarter of the machine's memory.
    /// Past it writes that need memory are refused (`noeviction`): no tenant's keys are
    /// evicted for another's, and the server is not killed for lack of memory.
    pub redis_max_memory_mb: u64,
    /// Continuous WAL archiving of every managed server with pgBackRest, and point-in-time
    /// recovery of tenants (needs the `pgbackrest` program).
    pub pitr_enabled: bool,
    /// Days of history every managed server keeps recoverable.
    pub pitr_retention_days: u32,
    /// Longest (s) a commit waits before its WAL is archived: what a lost server could lose.
    pub pitr_archive_timeout_secs: u32,
    /// Hours between full base backups of each managed server.
    pub pitr_full_backup_hours: u64,
    /// Hours between differential base backups (between full ones).
    pub pitr_diff_backup_hours: u64,
    /// Seconds between looks at the archives (the recoverable window, backups due).
    pub pitr_check_secs: u64,
    /// How long (hours, from the request) a recovered tenant's original is kept for
    /// `recover-undo` before it is dropped.
    pub recovery_undo_hours: u64,
    /// Bytes of rows one API request may build in memory (answers of queries).
    pub max_answer_bytes: usize,
    /// Bytes all API answers being built at once may take together.
    pub answer_memory_budget: usize,
    /// Statements at least this long (ms) count as slow in logs and metrics.
    pub slow_query_ms: u64,
    /// Days the query log keeps its records.
    pub query_log_retention_days: i64,
    /// Provisioned databases (`/api/v1/provision`) an account may have at once.
    pub provision_limit: u32,
    /// Days a key minted by `tdb login` or `tdb projects switch` lasts.
    pub login_key_days: u32,
    /// Connections each provisioned database's role may hold.
    pub provision_connection_limit: u32,
    /// Lets registered connections (`/api/v1/connections`) reach loopback and private
    /// addresses when introspected or queried.
    pub connections_allow_private: bool,
    /// Where Prometheus metrics are served (`/metrics`); unset: not served. Keep it off the
    /// public network: it is for the operator.
    pub metrics_listen: Option<SocketAddr>,
    /// Requests (API) and connection attempts (proxies) per second per client address.
    pub rate_limit_per_second: u32,
    /// Refused requests after which an address is banned, and for how long.
    pub rate_limit_ban_after: u32,
    pub rate_limit_ban_secs: u64,
    /// Networks (CIDR) the address rate limit never limits nor bans: the operator's own.
    pub trusted_networks: Vec<String>,
    /// API requests per project per minute, by tier.
    pub quota_free_per_minute: u32,
    pub quota_paid_per_minute: u32,
    /// Failed proxy logins per minute, per address and per user name, before refusals.
    pub pg_max_auth_failures_per_ip: usize,
    pub pg_max_auth_failures_per_user: usize,
    pub regions: Vec<Region>,
    pub servers: Vec<ServerConfig>,
}

impl Default for Config {
    fn default() -> Self {
        let api = tdb_api::ApiConfig::default();
        let backup = tdb_jobs::backup::BackupPolicy::default();
        Self {
            data_dir: PathBuf::from("./tdb-data"),
            api_listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            pg_listen: SocketAddr::from(([127, 0, 0, 1], 6432)),
            mysql_listen: SocketAddr::from(([127, 0, 0, 1], 6033)),
            mysql_socket: None,
            redis_listen: SocketAddr::from(([127, 0, 0, 1], 6380)),
            public_host: None,
            catalog_url: None,
            master_key: None,
            managed_user: "postgres".into(),
            postgres_bin_dir: None,
            default_tier: api.default_tier.as_str().into(),
            signup: api.signup.as_str().into(),
            signup_attempts_per_hour: 20,
            body_limit: api.body_limit,
            api_header_timeout_secs: 10,
            api_body_timeout_secs: 30,
            api_max_connections: 0,
            api_max_connections_per_address: 64,
            log_format: "text".into(),
            import_allow_private_urls: false,
            deploy_parallelism: 8,
            pg_tls_cert: None,
            pg_tls_key: None,
            pg_plaintext: "loopback".into(),
            pg_max_unauthenticated: 256,
            pg_max_unauthenticated_per_address: 32,
            pg_startup_timeout_secs: 5,
            pg_transaction_wait_secs: 30,
            pg_shutdown_grace_secs: 10,
            pg_query_log: true,
            proxy_workers: 0,
            backup_store: None,
            backup_s3_endpoint: None,
            backup_s3_region: None,
            backup_s3_allow_http: false,
            backup_schedule_enabled: backup.schedule_enabled,
            backup_daily_at: backup.daily_at,
            backup_keep_count: backup.keep_count,
            backup_keep_days: backup.keep_days,
            backup_hourly_limit: backup.hourly_limit,
            backup_schedule_tick_secs: 60,
            max_jobs: 4,
            server_reserved_connections: 100,
            tenant_connections_percent: 80,
            managed_max_connections: 300,
            managed_max_databases: None,
            dedicated_max_connections: 100,
            operators: Vec::new(),
            job_time_limit_secs: 6 * 3600,
            migration_timeout_secs: 300,
            move_drain_ms: 5000,
            move_sync_timeout_secs: 3600,
            move_keep_source_hours: 24,
            mysql_managed: true,
            mysql_max_connections: 300,
            redis_managed: true,
            redis_max_clients: 1000,
            redis_max_memory_mb: 0,
            pitr_enabled: true,
            pitr_retention_days: 7,
            pitr_archive_timeout_secs: 60,
            pitr_full_backup_hours: 168,
            pitr_diff_backup_hours: 24,
            pitr_check_secs: 5,
            recovery_undo_hours: 24,
            max_answer_bytes: api.max_answer_bytes,
            answer_memory_budget: 256 << 20,
            slow_query_ms: 1000,
            query_log_retention_days: 7,
            provision_limit: api.provision_limit,
            login_key_days: api.login_key_days,
            provision_connection_limit: api.provision_connection_limit,
            connections_allow_private: api.connections_allow_private,
            metrics_listen: None,
            rate_limit_per_second: 100,
            rate_limit_ban_after: 5,
            rate_limit_ban_secs: 300,
            trusted_networks: vec!["127.0.0.0/8".into(), "::1/128".into()],
            quota_free_per_minute: 1200,
            quota_paid_per_minute: 12000,
            pg_max_auth_failures_per_ip: 30,
            pg_max_auth_failures_per_user: 10,
            regions: api.regions,
            servers: Vec::new(),
        }
    }
}

/// Flags of `tdb serve`; each overrides the same setting from file and environment.
#[derive(Debug, Default, Clone, clap::Args, Serialize)]
pub struct ServeFlags {
    /// Data directory [default: ./tdb-data] [env: TDB_DATA_DIR]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// Configuration file [default: <data-dir>/tdb.toml] [env: TDB_CONFIG]
    #[arg(long)]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// REST API address [default: 127.0.0.1:8080] [env: TDB_API_LISTEN]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_listen: Option<SocketAddr>,
    /// PostgreSQL proxy address [default: 127.0.0.1:6432] [env: TDB_PG_LISTEN]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pg_listen: Option<SocketAddr>,
    /// MySQL proxy address [default: 127.0.0.1:6033] [env: TDB_MYSQL_LISTEN]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mysql_listen: Option<SocketAddr>,
    /// Also serve MySQL clients of this machine on a Unix socket at this path [default: none]
    /// [env: TDB_MYSQL_SOCKET]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mysql_socket: Option<PathBuf>,
    /// Redis proxy address [default: 127.0.0.1:6380] [env: TDB_REDIS_LISTEN]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis_listen: Option<SocketAddr>,
    /// Host written into connection strings [default: the listen host] [env: TDB_PUBLIC_HOST]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_host: Option<String>,
    /// Use this PostgreSQL for the catalog instead of a managed one [env: TDB_CATALOG_URL]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub catalog_url: Option<String>,
    /// Worker threads for the proxies' sessions, each with its own event loop [default: 0, one
    /// per CPU] [env: TDB_PROXY_WORKERS]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy_workers: Option<usize>,
    /// Log format: text or json [default: text] [env: TDB_LOG_FORMAT]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<String>,
}

/// Environment variables that belong to the CLI, not to `serve`.
const CLI_ENV: [&str; 4] = ["api_url", "api_key", "password", "config"];

impl Config {
    /// Resolves the layers. The data dir decides where `tdb.toml` is, so it is taken from the
    /// flag or `TDB_DATA_DIR` first (a `--config` file may still set it).
    pub fn load(flags: &ServeFlags) -> anyhow::Result<Self> {
        let env = || Env::prefixed("TDB_").ignore(&CLI_ENV);
        let early: Config = Figment::from(Serialized::defaults(Config::default()))
            .merge(env())
            .merge(Serialized::defaults(flags))
            .extract()
            .context("reading configuration from environment and flags")?;
        let explicit = flags
            .config
            .clone()
            .or_else(|| std::env::var_os("TDB_CONFIG").map(PathBuf::from));
        let file = explicit
            .clone()
            .unwrap_or_else(|| early.data_dir.join("tdb.toml"));
        if explicit.is_some() && !file.is_file() {
            anyhow::bail!("configuration file {} does not exist", file.display());
        }
        // Nothing is read from a place another user could have written to.
        if early.data_dir.exists() {
            crate::datadir::check_dir(&early.data_dir)?;
        }
        if file.exists() {
            crate::datadir::check_config_file(&file)?;
        }
        let config: Config = Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::file(&file))
            .merge(env())
            .merge(Serialized::defaults(flags))
            .extract()
            .with_context(|| format!("reading configuration ({})", file.display()))?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> anyhow::Result<()> {
        if !["text", "json"].contains(&self.log_format.as_str()) {
            anyhow::bail!(
                "log_format must be 'text' or 'json', not '{}'",
                self.log_format
            );
        }
        self.tier()?;
        self.signup_mode()?;
        self.validate_pitr()?;
        if !(1..=3650).contains(&self.login_key_days) {
            anyhow::bail!("login_key_days must be between 1 and 3650");
        }
        if !(1..=100_000).contains(&self.signup_attempts_per_hour) {
            anyhow::bail!("signup_attempts_per_hour must be between 1 and 100000");
        }
        self.pg_plaintext
            .parse::<tdb_proxy::PlaintextPolicy>()
            .map_err(|e| anyhow::anyhow!("pg_{e}"))?;
        if self.pg_tls_cert.is_some() != self.pg_tls_key.is_some() {
            anyhow::bail!("pg_tls_cert and pg_tls_key go together: set both or neither");
        }
        if !(1..=100_000).contains(&self.pg_max_unauthenticated) {
            anyhow::bail!("pg_max_unauthenticated must be between 1 and 100000");
        }
        if !(1..=100_000).contains(&self.pg_max_unauthenticated_per_address) {
            anyhow::bail!("pg_max_unauthenticated_per_address must be between 1 and 100000");
        }
        if self.redis_max_memory_mb > 1 << 30 {
            anyhow::bail!(
                "redis_max_memory_mb must be at most 1073741824 (0: a quarter of memory)"
            );
        }
        if self.proxy_workers > 1024 {
            anyhow::bail!("proxy_workers must be at most 1024 (0: one per CPU)");
        }
        if !(1..=3600).contains(&self.pg_transaction_wait_secs) {
            anyhow::bail!("pg_transaction_wait_secs must be between 1 and 3600");
        }
        if !(1..=15).contains(&self.pg_startup_timeout_secs) {
            anyhow::bail!(
                "pg_startup_timeout_secs must be between 1 and 15 (the whole authentication's \
                 limit)"
            );
        }
        if !(1..=300).contains(&self.api_header_timeout_secs) {
            anyhow::bail!("api_header_timeout_secs must be between 1 and 300");
        }
        if !(1..=3600).contains(&self.api_body_timeout_secs) {
            anyhow::bail!("api_body_timeout_secs must be between 1 and 3600");
        }
        if self.api_max_connections > 1_000_000 {
            anyhow::bail!("api_max_connections must be at most 1000000 (0: from the file limit)");
        }
        if !(1..=1_000_000).contains(&self.api_max_connections_per_address) {
            anyhow::bail!("api_max_connections_per_address must be between 1 and 1000000");
        }
        if !(1..=256).contains(&self.deploy_parallelism) {
            anyhow::bail!("deploy_parallelism must be between 1 and 256");
        }
        if !(20..=10_000).contains(&self.managed_max_connections) {
            anyhow::bail!("managed_max_connections must be between 20 and 10000");
        }
        if !(20..=10_000).contains(&self.dedicated_max_connections) {
            anyhow::bail!("dedicated_max_connections must be between 20 and 10000");
        }
        if self.managed_max_databases == Some(0)
            || self.servers.iter().any(|s| s.max_databases == Some(0))
        {
            anyhow::bail!("max_databases must be at least 1 (leave it unset for no limit)");
        }
        if !(1..=100).contains(&self.tenant_connections_percent) {
            anyhow::bail!("tenant_connections_percent must be between 1 and 100");
        }
        if !(1..=64).contains(&self.max_jobs) {
            anyhow::bail!("max_jobs must be between 1 and 64");
        }
        if !(1..=7 * 86_400).contains(&self.job_time_limit_secs) {
            anyhow::bail!("job_time_limit_secs must be between 1 and 604800");
        }
        if !(1..=86_400).contains(&self.migration_timeout_secs) {
            anyhow::bail!("migration_timeout_secs must be between 1 and 86400");
        }
        if self.move_drain_ms > 600_000 || self.move_sync_timeout_secs == 0 {
            anyhow::bail!(
                "move_drain_ms must be at most 600000 and move_sync_timeout_secs at least 1"
            );
        }
        if !(1 << 20..=1 << 40).contains(&self.max_answer_bytes) {
            anyhow::bail!("max_answer_bytes must be between 1 MiB and 1 TiB");
        }
        if self.answer_memory_budget < self.max_answer_bytes {
            anyhow::bail!(
                "answer_memory_budget ({}) must be at least max_answer_bytes ({})",
                self.answer_memory_budget,
                self.max_answer_bytes
            );
        }
        if self.rate_limit_per_second == 0 || self.rate_limit_ban_after == 0 {
            anyhow::bail!("rate_limit_per_second and rate_limit_ban_after must be at least 1");
        }
        self.trusted_networks()?;
        if self.quota_free_per_minute == 0 || self.quota_paid_per_minute == 0 {
            anyhow::bail!("quota_free_per_minute and quota_paid_per_minute must be at least 1");
        }
        if self.pg_max_auth_failures_per_ip == 0 || self.pg_max_auth_failures_per_user == 0 {
            anyhow::bail!("pg_max_auth_failures_per_ip and _per_user must be at least 1");
        }
        if !(1..=3650).contains(&self.query_log_retention_days) {
            anyhow::bail!("query_log_retention_days must be between 1 and 3650");
        }
        if !(1..=86_400).contains(&self.backup_schedule_tick_secs) {
            anyhow::bail!("backup_schedule_tick_secs must be between 1 and 86400");
        }
        self.backup_policy()
            .validate()
            .map_err(|e| anyhow::anyhow!("backup_{e}"))?;
        if self.regions.is_empty() {
            anyhow::bail!("at least one region must be configured");
        }
        if self.regions.iter().filter(|r| r.is_default).count() != 1 {
            anyhow::bail!("exactly one region must have is_default = true");
        }
        for server in &self.servers {
            if let Some(region) = &server.region
                && !self.regions.iter().any(|r| &r.zone == region)
            {
                let zones: Vec<&str> = self.regions.iter().map(|r| r.zone.as_str()).collect();
                anyhow::bail!(
                    "server '{}': region '{region}' is not configured (regions: {})",
                    server.name,
                    zones.join(", ")
                );
            }
            if server.role == ServerRole::Dedicated {
                anyhow::bail!(
                    "server '{}': dedicated servers are made by tdb for each L2 tenant; attach \
                     shared servers only (role = \"shared\")",
                    server.name
                );
            }
            if self
                .servers
                .iter()
                .filter(|s| s.name == server.name)
                .count()
                > 1
            {
                anyhow::bail!("server '{}' is configured twice", server.name);
            }
            let scheme_ok = match server.engine {
                Engine::Postgresql => {
                    server.url.starts_with("postgresql://") || server.url.starts_with("postgres://")
                }
                Engine::Mysql => server.url.starts_with("mysql://"),
                Engine::Redis => server.url.starts_with("redis://"),
                other => anyhow::bail!(
                    "server '{}': engine '{other}' cannot be attached yet (postgresql, mysql \
                     and redis can)",
                    server.name
                ),
            };
            if !scheme_ok {
                anyhow::bail!(
                    "server '{}': a {} server's url starts with {}",
                    server.name,
                    server.engine,
                    match server.engine {
                        Engine::Mysql => "mysql://",
                        Engine::Redis => "redis://",
                        _ => "postgresql://",
                    }
                );
            }
        }
        Ok(())
    }

    fn validate_pitr(&self) -> anyhow::Result<()> {
        if !(1..=3650).contains(&self.pitr_retention_days) {
            anyhow::bail!("pitr_retention_days must be between 1 and 3650");
        }
        if !(1..=86_400).contains(&self.pitr_archive_timeout_secs) {
            anyhow::bail!("pitr_archive_timeout_secs must be between 1 and 86400");
        }
        if !(1..=8760).contains(&self.pitr_full_backup_hours)
            || !(1..=8760).contains(&self.pitr_diff_backup_hours)
        {
            anyhow::bail!(
                "pitr_full_backup_hours and pitr_diff_backup_hours must be between 1 and 8760"
            );
        }
        if !(1..=3600).contains(&self.pitr_check_secs) {
            anyhow::bail!("pitr_check_secs must be between 1 and 3600");
        }
        if !(1..=720).contains(&self.recovery_undo_hours) {
            anyhow::bail!("recovery_undo_hours must be between 1 and 720");
        }
        Ok(())
    }

    pub fn default_region(&self) -> &str {
        self.regions
            .iter()
            .find(|r| r.is_default)
            .map_or("local", |r| r.zone.as_str())
    }

    pub fn signup_mode(&self) -> anyhow::Result<tdb_core::SignupMode> {
        self.signup
            .parse()
            .map_err(|e| anyhow::anyhow!("signup {e}, not '{}'", self.signup))
    }

    /// The tier of new accounts.
    pub fn tier(&self) -> anyhow::Result<tdb_core::Tier> {
        self.default_tier
            .parse()
            .map_err(|e| anyhow::anyhow!("default_tier {e}, not '{}'", self.default_tier))
    }

    pub fn api_config(&self) -> tdb_api::ApiConfig {
        tdb_api::ApiConfig {
            regions: self.regions.clone(),
            default_tier: self.tier().unwrap_or(tdb_core::Tier::Free),
            body_limit: self.body_limit,
            pg_public_host: self.pg_public_host(),
            pg_public_port: self.pg_listen.port(),
            mysql_public_port: self.mysql_listen.port(),
            redis_public_port: self.redis_listen.port(),
            import_allow_private_urls: self.import_allow_private_urls,
            slow_query_ms: self.slow_query_ms,
            provision_limit: self.provision_limit,
            provision_connection_limit: self.provision_connection_limit,
            connections_allow_private: self.connections_allow_private,
            signup: self.signup_mode().unwrap_or(tdb_core::SignupMode::Open),
            max_answer_bytes: self.max_answer_bytes,
            login_key_days: self.login_key_days,
            operators: self
                .operators
                .iter()
                .map(|e| e.trim().to_ascii_lowercase())
                .collect(),
        }
    }

    /// How long API clients may take and how many connections they may hold, under a soft
    /// file limit of `soft_file_limit`.
    pub fn connection_limits(&self, soft_file_limit: u64) -> tdb_api::ConnectionLimits {
        let max_connections = match self.api_max_connections {
            0 => crate::fdlimit::api_connection_cap(soft_file_limit),
            n => n,
        };
        tdb_api::ConnectionLimits {
            header_timeout: std::time::Duration::from_secs(self.api_header_timeout_secs),
            body_timeout: std::time::Duration::from_secs(self.api_body_timeout_secs),
            max_connections,
            max_per_address: self.api_max_connections_per_address.min(max_connections),
        }
    }

    pub fn runner_config(&self) -> tdb_jobs::RunnerConfig {
        tdb_jobs::RunnerConfig {
            deploy_parallelism: self.deploy_parallelism,
            max_jobs: self.max_jobs,
            backup_defaults: self.backup_policy(),
            schedule_tick: std::time::Duration::from_secs(self.backup_schedule_tick_secs),
            query_log_retention_days: self.query_log_retention_days,
            job_time_limit: std::time::Duration::from_secs(self.job_time_limit_secs),
            migration_timeout: std::time::Duration::from_secs(self.migration_timeout_secs),
            move_drain: std::time::Duration::from_millis(self.move_drain_ms),
            move_sync_timeout: std::time::Duration::from_secs(self.move_sync_timeout_secs),
            move_keep_source: std::time::Duration::from_secs(self.move_keep_source_hours * 3600),
            pitr_tick: std::time::Duration::from_secs(self.pitr_check_secs),
            pitr_full_every: std::time::Duration::from_secs(self.pitr_full_backup_hours * 3600),
            pitr_diff_every: std::time::Duration::from_secs(self.pitr_diff_backup_hours * 3600),
            recovery_undo_window: std::time::Duration::from_secs(self.recovery_undo_hours * 3600),
        }
    }

    /// The host clients are told to connect to (connection strings, the TLS certificate).
    pub fn pg_public_host(&self) -> String {
        self.public_host
            .clone()
            .unwrap_or_else(|| self.pg_listen.ip().to_string())
    }

    /// `trusted_networks`, parsed; an entry that is no network is named in the error.
    pub fn trusted_networks(&self) -> anyhow::Result<Vec<tdb_core::network::IpNetwork>> {
        self.trusted_networks
            .iter()
            .map(|n| {
                n.parse()
                    .map_err(|e| anyhow::anyhow!("trusted_networks: {e}"))
            })
            .collect()
    }

    /// The address guard the API and every proxy share.
    pub fn ip_guard(&self) -> anyhow::Result<std::sync::Arc<tdb_core::ratelimit::IpGuard>> {
        Ok(std::sync::Arc::new(tdb_core::ratelimit::IpGuard::new(
            tdb_core::ratelimit::IpLimits {
                per_second: self.rate_limit_per_second,
                ban_after: self.rate_limit_ban_after,
                ban_for: std::time::Duration::from_secs(self.rate_limit_ban_secs),
                trusted: self.trusted_networks()?,
            },
        )))
    }

    /// The managed redis-server's `maxmemory` in MiB: `redis_max_memory_mb`, or a quarter of
    /// the machine's memory (256 MiB when /proc/meminfo cannot be read).
    pub fn redis_max_memory_mb(&self) -> u64 {
        if self.redis_max_memory_mb > 0 {
            return self.redis_max_memory_mb;
        }
        let total_kib = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|info| {
                let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
                line.split_whitespace().nth(1)?.parse::<u64>().ok()
            });
        total_kib.map_or(256, |kib| (kib / 1024 / 4).max(64))
    }

    /// The proxies' worker threads: `proxy_workers`, or one per CPU.
    pub fn proxy_worker_count(&self) -> usize {
        match self.proxy_workers {
            0 => std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
            n => n,
        }
    }

    pub fn proxy_config(&self) -> tdb_proxy::ProxyConfig {
        tdb_proxy::ProxyConfig {
            plaintext: self
                .pg_plaintext
                .parse()
                .unwrap_or(tdb_proxy::PlaintextPolicy::Loopback),
            max_unauthenticated: self.pg_max_unauthenticated,
            max_unauthenticated_per_address: self
                .pg_max_unauthenticated_per_address
                .min(self.pg_max_unauthenticated),
            startup_timeout: std::time::Duration::from_secs(self.pg_startup_timeout_secs),
            shutdown_grace: std::time::Duration::from_secs(self.pg_shutdown_grace_secs),
            transaction_wait: std::time::Duration::from_secs(self.pg_transaction_wait_secs),
            query_log: self.pg_query_log,
            max_auth_failures_per_ip: self.pg_max_auth_failures_per_ip,
            max_auth_failures_per_user: self.pg_max_auth_failures_per_user,
            ..tdb_proxy::ProxyConfig::default()
        }
    }

    /// The backup policy of projects that set none of their own.
    pub fn backup_policy(&self) -> tdb_jobs::backup::BackupPolicy {
        tdb_jobs::backup::BackupPolicy {
            schedule_enabled: self.backup_schedule_enabled,
            daily_at: self.backup_daily_at.clone(),
            keep_count: self.backup_keep_count,
            keep_days: self.backup_keep_days,
            hourly_limit: self.backup_hourly_limit,
        }
    }

    pub fn backup_store(&self) -> anyhow::Result<tdb_jobs::store::BackupStore> {
        let config = tdb_jobs::store::StoreConfig {
            url: self.backup_store.clone(),
            s3_endpoint: self.backup_s3_endpoint.clone(),
            s3_region: self.backup_s3_region.clone(),
            s3_allow_http: self.backup_s3_allow_http,
        };
        Ok(tdb_jobs::store::BackupStore::open(
            &config,
            &self.data_dir.join("backups"),
        )?)
    }

    pub fn managed_dir(&self, name: &str) -> PathBuf {
        self.data_dir.join("servers").join(name)
    }

    pub fn master_key_path(&self) -> PathBuf {
        self.data_dir.join("master.key")
    }
}

#[cfg(test)]
// figment's Jail closures return figment::Error by its design; the size is not ours to change.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_architecture() {
        let c = Config::default();
        assert_eq!(c.api_listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.pg_listen.to_string(), "127.0.0.1:6432");
        assert_eq!(c.data_dir, PathBuf::from("./tdb-data"));
        assert!(c.validate().is_ok());
    }

    #[test]
    fn layers_override_in_order() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "tdb.toml",
                r#"
                api_listen = "127.0.0.1:9000"
                pg_listen = "127.0.0.1:7000"
                public_host = "from-file"
                "#,
            )?;
            jail.set_env("TDB_PG_LISTEN", "127.0.0.1:7001");
            jail.set_env("TDB_PUBLIC_HOST", "from-env");
            let flags = ServeFlags {
                data_dir: Some(PathBuf::from(".")),
                public_host: Some("from-flag".into()),
                ..ServeFlags::default()
            };
            let c = Config::load(&flags).map_err(|e| e.to_string())?;
            assert_eq!(
                c.api_listen.to_string(),
                "127.0.0.1:9000",
                "file beats default"
            );
            assert_eq!(c.pg_listen.to_string(), "127.0.0.1:7001", "env beats file");
            assert_eq!(
                c.public_host.as_deref(),
                Some("from-flag"),
                "flag beats env"
            );
            Ok(())
        });
    }

    #[test]
    fn bad_values_are_refused_with_their_name() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("tdb.toml", "log_format = \"xml\"\n")?;
            let flags = ServeFlags {
                data_dir: Some(PathBuf::from(".")),
                ..ServeFlags::default()
            };
            let err = Config::load(&flags)
                .expect_err("xml is no log format")
                .to_string();
            assert!(err.contains("log_format"), "{err}");
            jail.create_file("tdb.toml", "trusted_networks = [\"10.0.0.0/33\"]\n")?;
            let err = format!("{:#}", Config::load(&flags).expect_err("bad network"));
            assert!(
                err.contains("trusted_networks") && err.contains("10.0.0.0/33"),
                "{err}"
            );
            jail.create_file("tdb.toml", "signup = \"maybe\"\n")?;
            let err = format!("{:#}", Config::load(&flags).expect_err("bad signup"));
            assert!(err.contains("signup") && err.contains("invite"), "{err}");
            jail.create_file("tdb.toml", "")?;
            jail.set_env("TDB_API_LISTEN", "not-an-address");
            let err = format!("{:#}", Config::load(&flags).expect_err("bad address"));
            assert!(err.to_lowercase().contains("api_listen"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn server_pools_are_checked_at_start() {
        figment::Jail::expect_with(|jail| {
            let flags = ServeFlags {
                data_dir: Some(PathBuf::from(".")),
                ..ServeFlags::default()
            };
            let server = |extra: &str| {
                format!(
                    "[[servers]]\nname = \"pg-1\"\nurl = \"postgresql://a:b@h/postgres\"\n{extra}"
                )
            };
            let refused =
                |jail: &mut figment::Jail, toml: &str| -> figment::error::Result<String> {
                    jail.create_file("tdb.toml", toml)?;
                    Ok(format!("{:#}", Config::load(&flags).expect_err(toml)))
                };
            let err = refused(jail, &server("region = \"mars\"\n"))?;
            assert!(err.contains("mars") && err.contains("local"), "{err}");
            let err = refused(jail, &server("role = \"dedicated\"\n"))?;
            assert!(err.contains("shared"), "{err}");
            let err = refused(jail, &server("max_databases = 0\n"))?;
            assert!(err.contains("max_databases"), "{err}");
            let err = refused(jail, &format!("{}{}", server(""), server("")))?;
            assert!(err.contains("twice"), "{err}");
            jail.create_file("tdb.toml", &server("max_databases = 50\n"))?;
            let c = Config::load(&flags).map_err(|e| e.to_string())?;
            assert_eq!(c.servers[0].max_databases, Some(50));
            Ok(())
        });
    }
}
