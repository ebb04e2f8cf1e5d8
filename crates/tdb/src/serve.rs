//! `tdb serve`: prepares and locks the data dir, loads the master key, starts the managed
//! PostgreSQL server (or uses an attached one), opens the catalog, records the servers, and runs
//! the API until SIGINT or SIGTERM, after which every child process is stopped.

use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use anyhow::Context;
use sqlx::postgres::PgConnectOptions;
use tdb_catalog::Catalog;
use tdb_catalog::servers::ServerSpec;
use tdb_core::aad::Aad;
use tdb_core::secrets::MasterKey;
use tdb_core::{Engine as EngineKind, ServerRole};
use tdb_engines::managed::archive::{ArchiveOptions, Repository, WalArchive};
use tdb_engines::managed::postgres::{Listen, ManagedPostgresOptions};
use tdb_engines::managed::provisioner::LocalOptions;
use tdb_engines::{
    AdminEndpoint, Engine, Engines, LocalProvisioner, ManagedPostgres, PgBinaries, PostgresEngine,
    RunAs,
};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, ServerConfig};

const CATALOG_DB: &str = "tdb_catalog";
const SHARED_PG: &str = "postgresql-shared";

pub async fn run(config: Config) -> anyhow::Result<()> {
    prepare_data_dir(&config)?;
    // Held until this function returns, after the managed server has stopped: nothing else
    // may touch the data dir or its servers while another tdb serve owns them.
    let dir = config.data_dir.clone();
    let _lock = tokio::task::spawn_blocking(move || crate::datadir::lock(&dir))
        .await
        .context("taking the data dir's lock")??;
    let limits = connection_limits(&config)?;
    let metrics = crate::telemetry::install()?;
    let master_key = load_master_key(&config)?;
    let shutdown = CancellationToken::new();
    tokio::spawn(watch_signals(shutdown.clone()));

    let archive = wal_archive(&config)?;
    let managed = match &config.catalog_url {
        Some(_) => None,
        None => Some(start_shared_postgres(&config, &master_key, archive.clone()).await?),
    };
    let process = Process {
        metrics,
        limits,
        shutdown,
    };
    let result = run_with_catalog(&config, &master_key, (managed.as_ref(), archive), process).await;
    if let Some(server) = managed {
        server.shutdown().await;
    }
    tracing::info!("tdb stopped");
    result
}

/// Raises the file limit and sizes the API's connection limits to it; logs both.
fn connection_limits(config: &Config) -> anyhow::Result<tdb_api::ConnectionLimits> {
    let files = crate::fdlimit::raise().context("reading the file limit")?;
    match files.raised_from {
        Some(from) => tracing::info!(
            from,
            to = files.soft,
            hard = files.hard,
            "file limit raised"
        ),
        None => tracing::info!(soft = files.soft, hard = files.hard, "file limit"),
    }
    let limits = config.connection_limits(files.soft);
    tracing::info!(
        max_connections = limits.max_connections,
        per_address = limits.max_per_address,
        header_timeout_secs = limits.header_timeout.as_secs(),
        body_timeout_secs = limits.body_timeout.as_secs(),
        "API connection limits"
    );
    Ok(limits)
}

/// What the whole process shares, set up before the catalog is opened.
struct Process {
    metrics: metrics_exporter_prometheus::PrometheusHandle,
    /// The API's connection limits, sized to the file limit.
    limits: tdb_api::ConnectionLimits,
    shutdown: CancellationToken,
}

async fn run_with_catalog(
    config: &Config,
    key: &MasterKey,
    (managed, archive): (Option<&ManagedPostgres>, Option<Arc<WalArchive>>),
    process: Process,
) -> anyhow::Result<()> {
    let Process {
        metrics,
        limits,
        shutdown,
    } = process;
    let catalog_options = match (managed, &config.catalog_url) {
        (Some(server), _) => {
            let admin = connect_options(server.endpoint());
            tdb_catalog::ensure_database(&admin, CATALOG_DB)
                .await
                .context("creating the catalog database")?;
            admin.database(CATALOG_DB)
        }
        (None, Some(url)) => PgConnectOptions::from_str(url).context("parsing catalog_url")?,
        (None, None) => unreachable!("either managed or attached"),
    };
    let catalog_database = catalog_options
        .get_database()
        .unwrap_or("postgres")
        .to_string();
    // Deployments migrate on every server at once, each migration with a few catalog queries:
    // room for two servers' worth beside the API.
    let catalog = Catalog::open(catalog_options.clone(), 32)
        .await
        .context("opening the catalog")?;
    let engines = engines(config);
    register_servers(config, key, &catalog, managed).await?;
    secure_servers(config, &engines, managed, &catalog_database).await?;
    budget_connections(config, key, &catalog, &engines).await;
    // Provisioned databases made before each had a database of its own move out of the shared
    // one (notification channels are per database).
    match catalog.queue_provision_moves().await {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            n,
            "provisioned databases queued to move to databases of their own"
        ),
        Err(e) => tracing::warn!(error = %e, "could not queue the moves of provisioned databases"),
    }

    let listener = bind_listener(config.api_listen)
        .and_then(|l| Ok(tokio::net::TcpListener::from_std(l)?))
        .with_context(|| format!("binding the API to {}", config.api_listen))?;
    tracing::info!(
        api = %listener.local_addr()?,
        data_dir = %config.data_dir.display(),
        signup = %config.signup,
        "tdb is serving"
    );
    let store = config.backup_store().context("opening the backup store")?;
    tracing::info!(backups = %store.location, "backup store ready");
    // Before any job runs: an upload cut off by a kill left its staged file.
    match store.clean_staged().await {
        Ok(0) => {}
        Ok(removed) => tracing::info!(removed, "removed the staged files of cut-off uploads"),
        Err(e) => tracing::warn!(error = %e, "could not clean the backup store's staged files"),
    }
    let shared = crate::shared::SharedServers::new(
        crate::shared::SharedOptions {
            dir: config.managed_dir(crate::shared::SHARED_MYSQL),
            run_as_user: "mysql".into(),
            master_key: key.clone(),
            region: config.default_region().to_string(),
            max_databases: config.managed_max_databases,
            max_connections: config.mysql_max_connections,
            reserved_connections: config.server_reserved_connections,
            tenant_percent: config.tenant_connections_percent,
            enabled: config.mysql_managed,
            redis: crate::shared::RedisOptions {
                dir: config.managed_dir(crate::shared::SHARED_REDIS),
                run_as_user: "redis".into(),
                max_clients: config.redis_max_clients,
                max_memory_mb: config.redis_max_memory_mb(),
                enabled: config.redis_managed,
            },
        },
        catalog.clone(),
        engines.clone(),
    );
    // A MariaDB or redis-server that served before is started again; should one fail, its
    // tenants are refused until it is fixed and the rest are served meanwhile.
    if let Err(e) = shared.start_used().await {
        tracing::error!(error = %format!("{e:#}"), "a managed shared server did not start");
    }
    let provisioner = Arc::new(local_provisioner(config, key, archive.clone())?);
    if let (Some(archive), Some(_)) = (&archive, managed) {
        let node = tdb_engines::Provisioner::kind(provisioner.as_ref());
        register_shared_archive(&catalog, node).await?;
        tracing::info!(repository = %archive.location(), "managed servers archive their WAL");
    }
    let runner = tdb_jobs::Runner {
        catalog: catalog.clone(),
        engines,
        master_key: key.clone(),
        store,
        provisioner,
        archive,
        config: config.runner_config(),
        owner: format!("{}-{}", std::process::id(), tdb_core::ids::new_id("run")),
        shared: shared.clone(),
    };
    let state = tdb_api::AppState::new(config.api_config(), runner.clone(), config.backup_policy());
    let ip_guard = config.ip_guard()?;
    tracing::info!(
        trusted_networks = %config.trusted_networks.join(", "),
        "the address rate limit never limits or bans these networks"
    );
    let state = tdb_api::AppState {
        limits: Arc::new(tdb_api::Limits {
            ip: ip_guard.clone(),
            signups: tdb_api::signup_throttle(config.signup_attempts_per_hour),
            projects: Default::default(),
            free_per_minute: config.quota_free_per_minute,
            paid_per_minute: config.quota_paid_per_minute,
        }),
        answers: tdb_engines::budget::MemoryBudget::new(config.answer_memory_budget),
        ..state
    };
    // Dedicated servers start beside the API: a tenant whose server is not up yet has its
    // connections refused until it is, and everyone else is served meanwhile.
    let dedicated = tokio::spawn({
        let runner = runner.clone();
        async move { tdb_jobs::dedicated::start_all(&runner).await }
    });
    let provisioner = runner.provisioner.clone();
    let jobs = tokio::spawn(runner.run(shutdown.clone()));
    let metrics_server = match config.metrics_listen {
        Some(addr) => Some(crate::telemetry::serve(addr, metrics, shutdown.clone()).await?),
        None => None,
    };
    tokio::spawn(crate::telemetry::sample(
        catalog.clone(),
        key.clone(),
        ip_guard.clone(),
        shutdown.clone(),
    ));
    let (query_log, log_writer) =
        tdb_proxy::querylog::QueryLog::new(catalog.clone(), config.proxy_config().query_log);
    let log_writer = tokio::spawn(log_writer);
    let proxy = start_proxies(
        config,
        key,
        catalog_options,
        ip_guard,
        query_log,
        shutdown.clone(),
    )
    .await?;
    let app = crate::mcp_http::app(state, shutdown.clone());
    let result = tdb_api::serve_app(listener, app, limits, shutdown.clone()).await;
    let _ = jobs.await;
    let _ = proxy.await;
    let _ = dedicated.await;
    provisioner.shutdown().await;
    shared.shutdown().await;
    // The proxy's sessions are gone, and with them every handle on the log: the writer stores
    // what is left and ends.
    let _ = log_writer.await;
    if let Some(server) = metrics_server {
        let _ = server.await;
    }
    catalog.close().await;
    result.context("serving the API")
}

/// Binds the PostgreSQL and MySQL proxies and runs them until shutdown, apart from the API and
/// the jobs: a
/// thread of its own accepts connections and follows the catalog's changes, and the sessions
/// run on `proxy_workers` worker threads, each with an event loop of its own (see
/// `tdb_proxy::workers`). It has its own small catalog pool, which lives until the workers have
/// stopped. Its sessions hand their statements to `query_log`, whose writer runs on the
/// caller's runtime: encoding and sending the batches never holds up the relay.
async fn start_proxies(
    config: &Config,
    key: &MasterKey,
    catalog_options: PgConnectOptions,
    ip_guard: Arc<tdb_core::ratelimit::IpGuard>,
    query_log: tdb_proxy::querylog::QueryLog,
    shutdown: CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let (cert, key_path) = match (&config.pg_tls_cert, &config.pg_tls_key) {
        (Some(cert), Some(key)) => (cert.clone(), key.clone()),
        _ => {
            let mut hosts = vec![
                "localhost".to_string(),
                "127.0.0.1".to_string(),
                "::1".to_string(),
            ];
            for host in [
                config.pg_public_host(),
                config.pg_listen.ip().to_string(),
                config.mysql_listen.ip().to_string(),
                config.redis_listen.ip().to_string(),
            ] {
                if !hosts.contains(&host) && host != "0.0.0.0" && host != "::" {
                    hosts.push(host);
                }
            }
            tdb_proxy::tls::GeneratedTls {
                dir: config.data_dir.join("tls"),
            }
            .ensure(&hosts)
            .context("generating the proxy's TLS certificate")?
        }
    };
    let tls = tdb_proxy::tls::acceptor(&cert, &key_path)?;
    let listener = bind_listener(config.pg_listen)
        .with_context(|| format!("binding the PostgreSQL proxy to {}", config.pg_listen))?;
    let mysql_listener = bind_listener(config.mysql_listen)
        .with_context(|| format!("binding the MySQL proxy to {}", config.mysql_listen))?;
    let redis_listener = bind_listener(config.redis_listen)
        .with_context(|| format!("binding the Redis proxy to {}", config.redis_listen))?;
    let (mysql_socket, socket_file) = match &config.mysql_socket {
        Some(path) => {
            let (listener, file) = bind_unix_listener(path)
                .with_context(|| format!("binding the MySQL proxy to {}", path.display()))?;
            (Some(listener), Some(file))
        }
        None => (None, None),
    };
    // Every limit lives in the shared state, so it holds across workers exactly as with one.
    let workers = config.proxy_worker_count();
    tracing::info!(pg = %listener.local_addr()?, mysql = %mysql_listener.local_addr()?,
        redis = %redis_listener.local_addr()?, workers, "proxies listening");
    if let Some(path) = &config.mysql_socket {
        tracing::info!(mysql = %path.display(), "MySQL proxy listening on a Unix socket");
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the proxy's runtime")?;
    let proxy_config = tdb_proxy::ProxyConfig {
        ip_guard,
        workers,
        ..config.proxy_config()
    };
    let key = key.clone();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let thread = std::thread::Builder::new()
        .name("tdb-pg-proxy".into())
        .spawn(move || {
            // The socket's file goes when this thread ends, however it ends.
            let _socket_file = socket_file;
            runtime.block_on(async move {
                let started = async {
                    let catalog = Catalog::open(catalog_options, 4).await?;
                    let listener = tokio::net::TcpListener::from_std(listener)?;
                    let mysql_listener = tokio::net::TcpListener::from_std(mysql_listener)?;
                    let redis_listener = tokio::net::TcpListener::from_std(redis_listener)?;
                    let mysql_socket = mysql_socket
                        .map(tokio::net::UnixListener::from_std)
                        .transpose()?;
                    anyhow::Ok((
                        catalog,
                        (listener, mysql_listener, redis_listener, mysql_socket),
                    ))
                };
                let (catalog, listeners) = match started.await {
                    Ok(v) => {
                        let _ = ready_tx.send(Ok(()));
                        v
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let state = tdb_proxy::ProxyState::new(
                    proxy_config,
                    catalog.clone(),
                    &key,
                    Some(tls),
                    query_log,
                    shutdown,
                );
                if let Err(e) = serve_proxies(listeners, state).await {
                    tracing::error!(error = %e, "starting the proxy's workers failed");
                }
                catalog.close().await;
            })
        })
        .context("starting the proxy's thread")?;
    ready_rx
        .await
        .context("the proxy's thread ended early")?
        .context("opening the proxy's catalog pool")?;
    Ok(tokio::task::spawn_blocking(move || {
        if thread.join().is_err() {
            tracing::error!("the proxy's thread panicked");
        }
    }))
}

/// The proxy's listeners: PostgreSQL, MySQL, Redis, and MySQL's Unix socket if configured.
type Listeners = (
    tokio::net::TcpListener,
    tokio::net::TcpListener,
    tokio::net::TcpListener,
    Option<tokio::net::UnixListener>,
);

/// Serves PostgreSQL, MySQL and Redis clients on one proxy (its workers, limits, gates and
/// query log shared) until shutdown, then finishes its sessions.
async fn serve_proxies(
    (pg, mysql, redis, mysql_socket): Listeners,
    state: Arc<tdb_proxy::ProxyState>,
) -> std::io::Result<()> {
    // Redis logins are checked against the catalog by key (see tdb_proxy::keylogin).
    let logins = Arc::new(state.catalog.clone());
    let proxy = tdb_proxy::Proxy::start(state)?;
    let redis_session = move |stream, peer, state, span| {
        tdb_proxy::redis::handle(stream, peer, state, logins.clone(), span)
    };
    let mysql_socket = async {
        if let Some(socket) = mysql_socket {
            let session = tdb_proxy::mysql::session::handle_stream::<tokio::net::UnixStream>;
            proxy.listen(socket, "mysql", session).await;
        }
    };
    tokio::join!(
        proxy.listen(pg, "postgresql", tdb_proxy::pg::session::handle),
        proxy.listen(mysql, "mysql", tdb_proxy::mysql::session::handle),
        proxy.listen_in_span(redis, "redis", redis_session),
        mysql_socket,
    );
    proxy.finish().await;
    Ok(())
}

/// Creates the data dir, or refuses an unsafe one. When managed servers run as another user
/// (the shared one, and dedicated servers in attached mode too) they must be able to pass
/// through it, so it is 0711 (enter, not list); otherwise 0700.
fn prepare_data_dir(config: &Config) -> anyhow::Result<()> {
    let mode = if nix::unistd::Uid::effective().is_root() {
        0o711
    } else {
        0o700
    };
    crate::datadir::prepare(&config.data_dir, mode)
}

/// The master key: from configuration (`TDB_MASTER_KEY`), else `master.key` in the data dir,
/// created with mode 0600 on first start.
fn load_master_key(config: &Config) -> anyhow::Result<MasterKey> {
    if let Some(text) = &config.master_key {
        return MasterKey::parse(text).context("master_key / TDB_MASTER_KEY");
    }
    let path = config.master_key_path();
    if path.exists() {
        let mode = std::fs::metadata(&path)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            anyhow::bail!(
                "{} is readable by other users (mode {mode:o}); run `chmod 600` on it",
                path.display()
            );
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        return MasterKey::parse(&text).with_context(|| format!("parsing {}", path.display()));
    }
    let key = MasterKey::generate();
    write_private(&path, &key.to_hex())?;
    tracing::info!(path = %path.display(), "created master key");
    Ok(key)
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    Ok(())
}

async fn start_shared_postgres(
    config: &Config,
    key: &MasterKey,
    archive: Option<Arc<WalArchive>>,
) -> anyhow::Result<ManagedPostgres> {
    let options = ManagedPostgresOptions {
        dir: config.managed_dir(SHARED_PG),
        binaries: PgBinaries::find(config.postgres_bin_dir.as_deref())?,
        run_as: RunAs::resolve(&config.managed_user)?,
        master_key: key.clone(),
        label: SHARED_PG.into(),
        settings: vec![
            (
                "max_connections".into(),
                config.managed_max_connections.to_string(),
            ),
            // A tenant database moves off the shared server by logical replication.
            ("wal_level".into(), "logical".into()),
        ],
        listen: Listen::PrivateSocket,
        archive: archive.map(|a| (a, SHARED_PG.to_string())),
    };
    ManagedPostgres::start(options)
        .await
        .context("starting the managed PostgreSQL server")
}

/// The provisioner of dedicated servers: one managed PostgreSQL per L2 database, each under
/// `dedicated/` in the data dir, run as the managed servers' user, with logical WAL (a dedicated
/// server is the source of a move back to a shared one).
fn local_provisioner(
    config: &Config,
    key: &MasterKey,
    archive: Option<Arc<WalArchive>>,
) -> anyhow::Result<LocalProvisioner> {
    let binaries = PgBinaries::find(config.postgres_bin_dir.as_deref())
        .inspect_err(|e| tracing::warn!(error = %e, "dedicated (L2) servers cannot be made here"))
        .ok();
    Ok(LocalProvisioner::new(LocalOptions {
        root: config.data_dir.join("dedicated"),
        binaries,
        run_as: RunAs::resolve(&config.managed_user)?,
        master_key: key.clone(),
        settings: vec![
            (
                "max_connections".into(),
                config.dedicated_max_connections.to_string(),
            ),
            ("wal_level".into(), "logical".into()),
        ],
        node: crate::datadir::node_id(&config.data_dir)?,
        archive,
    }))
}

/// Records that the managed shared server archives its WAL into its stanza, kept by this tdb.
async fn register_shared_archive(catalog: &Catalog, node: &str) -> anyhow::Result<()> {
    let shared = catalog
        .find_server_by_name(SHARED_PG)
        .await?
        .context("the managed server is not in the catalog")?;
    catalog
        .register_archive(&shared.id, SHARED_PG, node)
        .await?;
    Ok(())
}

/// The WAL archive of the managed servers: pgBackRest's repository in the backup store (a
/// `pgbackrest` directory in a local store, a `pgbackrest` prefix in a bucket). `None` when
/// `pitr_enabled` is off or pgBackRest is not installed (then nothing can be recovered to a
/// moment, and the API says why).
fn wal_archive(config: &Config) -> anyhow::Result<Option<Arc<WalArchive>>> {
    if !config.pitr_enabled {
        tracing::info!("point-in-time recovery is off (pitr_enabled = false)");
        return Ok(None);
    }
    let Some(program) = WalArchive::find_program() else {
        tracing::warn!(
            "pgbackrest is not installed: no WAL archiving and no point-in-time recovery \
             (apt-get install pgbackrest)"
        );
        return Ok(None);
    };
    let run_as = RunAs::resolve(&config.managed_user)?;
    let (repository, env) = match config.backup_store.as_deref() {
        None => (
            Repository::Posix(local_repository(&config.data_dir.join("backups"), &run_as)?),
            Vec::new(),
        ),
        Some(url) if url.starts_with("file://") => (
            Repository::Posix(local_repository(
                Path::new(&url["file://".len()..]),
                &run_as,
            )?),
            Vec::new(),
        ),
        Some(url) if url.starts_with("s3://") => s3_repository(config, url)?,
        Some(url) => {
            anyhow::bail!("backup_store must be file:///dir or s3://bucket[/prefix], not '{url}'")
        }
    };
    let archive = WalArchive::open(ArchiveOptions {
        program,
        dir: config.data_dir.join("pitr"),
        repository,
        run_as,
        binaries: PgBinaries::find(config.postgres_bin_dir.as_deref()).ok(),
        env,
        retention_days: config.pitr_retention_days,
        archive_timeout_secs: config.pitr_archive_timeout_secs,
    })
    .context("preparing the WAL archive")?;
    Ok(Some(Arc::new(archive)))
}

/// `pgbackrest/` in a local backup store. The store stays closed to everyone but tdb and, when
/// the servers run as another user, that user's group, which may pass through it (0710) to the
/// repository it writes.
fn local_repository(store: &Path, run_as: &RunAs) -> anyhow::Result<std::path::PathBuf> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if !store.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(store)
            .with_context(|| format!("creating {}", store.display()))?;
    }
    if run_as.switch {
        nix::unistd::chown(store, None, Some(run_as.gid))
            .with_context(|| format!("chgrp {} {}", run_as.name, store.display()))?;
        std::fs::set_permissions(store, std::fs::Permissions::from_mode(0o710))
            .with_context(|| format!("chmod 710 {}", store.display()))?;
    }
    Ok(store.join("pgbackrest"))
}

/// A `pgbackrest` prefix in the backup store's bucket, reached with the AWS_* credentials tdb
/// has (handed to pgBackRest and the servers through their environment, never a file).
fn s3_repository(
    config: &Config,
    url: &str,
) -> anyhow::Result<(Repository, Vec<(String, String)>)> {
    let rest = &url["s3://".len()..];
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let region = config
        .backup_s3_region
        .clone()
        .or_else(|| std::env::var("AWS_REGION").ok())
        .unwrap_or_else(|| "us-east-1".into());
    let endpoint = config
        .backup_s3_endpoint
        .as_deref()
        .map(|e| {
            e.trim_start_matches("https://")
                .trim_start_matches("http://")
                .to_string()
        })
        .unwrap_or_else(|| format!("s3.{region}.amazonaws.com"));
    let prefix = prefix.trim_matches('/');
    let path = if prefix.is_empty() {
        "/pgbackrest".to_string()
    } else {
        format!("/{prefix}/pgbackrest")
    };
    let mut env = Vec::new();
    for (from, to) in [
        ("AWS_ACCESS_KEY_ID", "PGBACKREST_REPO1_S3_KEY"),
        ("AWS_SECRET_ACCESS_KEY", "PGBACKREST_REPO1_S3_KEY_SECRET"),
        ("AWS_SESSION_TOKEN", "PGBACKREST_REPO1_S3_TOKEN"),
    ] {
        if let Ok(value) = std::env::var(from) {
            env.push((to.to_string(), value));
        }
    }
    Ok((
        Repository::S3 {
            bucket: bucket.to_string(),
            path,
            endpoint,
            region,
            path_style: config.backup_s3_endpoint.is_some(),
        },
        env,
    ))
}

fn connect_options(e: &AdminEndpoint) -> PgConnectOptions {
    PgConnectOptions::new()
        .host(&e.host)
        .port(e.port)
        .username(&e.user)
        .password(&e.password)
        .database("postgres")
}

/// The engine registry: every engine this build drives, built once and shared by the API and the
/// job runner. A new engine is registered here (see docs/ENGINES.md).
fn engines(config: &Config) -> Engines {
    let bindir = PgBinaries::find(config.postgres_bin_dir.as_deref())
        .ok()
        .map(|b| b.bindir);
    let postgres: Arc<dyn Engine> = Arc::new(PostgresEngine::new(bindir));
    let mysql: Arc<dyn Engine> = Arc::new(tdb_engines::MysqlEngine::new(None));
    let redis: Arc<dyn Engine> = Arc::new(tdb_engines::RedisEngine::new());
    Engines::new([postgres, mysql, redis])
}

/// Records every server tdb may place databases on: the managed shared server, the configured
/// `[[servers]]`, and in attached mode without `[[servers]]` the catalog's own server.
async fn register_servers(
    config: &Config,
    key: &MasterKey,
    catalog: &Catalog,
    managed: Option<&ManagedPostgres>,
) -> anyhow::Result<()> {
    let region = config.default_region();
    if let Some(server) = managed {
        let e = server.endpoint();
        let spec = ServerSpec {
            name: SHARED_PG,
            engine: EngineKind::Postgresql,
            role: ServerRole::Shared,
            region,
            host: &e.host,
            port: e.port,
            admin_user: &e.user,
            managed: true,
            max_databases: config.managed_max_databases,
        };
        upsert(catalog, key, &spec, &e.password).await?;
    }
    let mut attached = config.servers.clone();
    if let (None, true, Some(url)) = (managed, attached.is_empty(), &config.catalog_url) {
        attached.push(catalog_server(url));
    }
    for server in &attached {
        let e = attached_endpoint(server)?;
        let spec = ServerSpec {
            name: &server.name,
            engine: server.engine,
            role: server.role,
            region: server.region.as_deref().unwrap_or(region),
            host: &e.host,
            port: e.port,
            admin_user: &e.user,
            managed: false,
            max_databases: server.max_databases,
        };
        upsert(catalog, key, &spec, &e.password).await?;
    }
    Ok(())
}

/// Closes every shared server's own databases (and the catalog's, where it lives there) to
/// PUBLIC, so workspace and tenant roles reach nothing but their own database.
async fn secure_servers(
    config: &Config,
    engines: &Engines,
    managed: Option<&ManagedPostgres>,
    catalog_database: &str,
) -> anyhow::Result<()> {
    let mut targets: Vec<(Arc<dyn Engine>, AdminEndpoint, Vec<&str>)> = Vec::new();
    if let Some(server) = managed {
        let engine = engines.require(tdb_core::Engine::Postgresql)?;
        targets.push((engine, server.endpoint().clone(), vec![catalog_database]));
    }
    let mut attached = config.servers.clone();
    if let (None, true, Some(url)) = (managed, attached.is_empty(), &config.catalog_url) {
        attached.push(catalog_server(url));
    }
    for server in attached.iter().filter(|s| s.role == ServerRole::Shared) {
        let engine = match engines.require(server.engine) {
            Ok(engine) => engine,
            Err(e) => {
                tracing::warn!(server = %server.name, error = %e, "not securing the server");
                continue;
            }
        };
        let endpoint = attached_endpoint(server)?;
        let same_as_catalog = Some(&server.url) == config.catalog_url.as_ref();
        targets.push((
            engine,
            endpoint,
            if same_as_catalog {
                vec![catalog_database]
            } else {
                vec![]
            },
        ));
    }
    for (engine, endpoint, extra) in targets {
        // An attached server's administrator may not own these databases (hosted offerings);
        // say so loudly rather than refuse to start.
        if let Err(e) = engine.secure_server(&endpoint, &extra).await {
            tracing::warn!(
                server = %format!("{}:{}", endpoint.host, endpoint.port),
                error = %e,
                "could not revoke PUBLIC access to the server's own databases; \
                 tenant roles may connect to them"
            );
        }
        // Databases made before tdb closed the shared catalogs at creation get the same, one
        // at a time, while tdb serves: a server with many databases does not hold up the start.
        tokio::spawn(hide_shared_catalogs(engine, endpoint));
    }
    Ok(())
}

async fn hide_shared_catalogs(engine: Arc<dyn Engine>, endpoint: AdminEndpoint) {
    let server = format!("{}:{}", endpoint.host, endpoint.port);
    match engine.hide_shared_catalogs(&endpoint).await {
        Ok(swept) => {
            tracing::info!(%server, closed = swept.closed, gone = swept.gone,
                failed = swept.failed.len(), "shared catalogs closed to tenants");
            for (database, error) in swept.failed {
                tracing::warn!(%server, %database, %error,
                    "could not close the shared catalogs in a database; its roles may read other \
                     tenants' sessions and roles");
            }
        }
        Err(e) => tracing::warn!(%server, error = %e,
            "could not close the shared catalogs; tenant roles may read other tenants' sessions \
             and roles"),
    }
}

async fn upsert(
    catalog: &Catalog,
    key: &MasterKey,
    spec: &ServerSpec<'_>,
    password: &str,
) -> anyhow::Result<()> {
    catalog
        .upsert_server(spec, tdb_core::ids::server_id, |id| {
            key.seal(password.as_bytes(), Aad::ServerAdmin(id))
        })
        .await
        .with_context(|| format!("recording server '{}'", spec.name))?;
    Ok(())
}

/// How to reach an attached server as its administrator, from its URL: `postgresql://…` (a
/// socket directory in `?host=`), `mysql://…` (a socket file in `?socket=`) or
/// `redis://user:password@host:port` (a socket file in `?socket=`; the user `default` when the
/// URL names none).
fn attached_endpoint(server: &ServerConfig) -> anyhow::Result<AdminEndpoint> {
    let context = || format!("server '{}': parsing url", server.name);
    let password = password_of(&server.url);
    if server.engine == EngineKind::Redis {
        let rest = server
            .url
            .strip_prefix("redis://")
            .ok_or_else(|| anyhow::anyhow!("{}: not a redis:// URL", context()))?;
        let (before_query, query) = rest.split_once('?').unwrap_or((rest, ""));
        let authority = before_query.split('/').next().unwrap_or("");
        let (userinfo, hostport) = authority.rsplit_once('@').unwrap_or(("", authority));
        let user = match userinfo.split(':').next().unwrap_or("") {
            "" => "default".to_string(),
            name => percent_decode(name),
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((host, port)) if !port.contains(']') => {
                let port = port.parse().with_context(context)?;
                (host, port)
            }
            _ => (hostport, 6379),
        };
        let socket = query
            .split('&')
            .find_map(|pair| pair.strip_prefix("socket="))
            .map(percent_decode);
        let host = socket.unwrap_or_else(|| match host.trim_matches(['[', ']']) {
            "" => "127.0.0.1".to_string(),
            host => host.to_string(),
        });
        return Ok(AdminEndpoint {
            host,
            port,
            user,
            password,
        });
    }
    if server.engine == EngineKind::Mysql {
        let opts = sqlx::mysql::MySqlConnectOptions::from_str(&server.url).with_context(context)?;
        let host = opts.get_socket().map_or_else(
            || opts.get_host().to_string(),
            |socket| socket.display().to_string(),
        );
        return Ok(AdminEndpoint {
            host,
            port: opts.get_port(),
            user: opts.get_username().to_string(),
            password,
        });
    }
    let opts = PgConnectOptions::from_str(&server.url).with_context(context)?;
    Ok(AdminEndpoint {
        host: host_of(&opts),
        port: opts.get_port(),
        user: opts.get_username().to_string(),
        password,
    })
}

/// Where a server URL points: its Unix socket directory (`?host=/dir`) or its host name.
fn host_of(opts: &PgConnectOptions) -> String {
    opts.get_socket().map_or_else(
        || opts.get_host().to_string(),
        |dir| dir.display().to_string(),
    )
}

/// Records, for every server, how many connections tenants may share there (see
/// [`tenant_budget`]). A server that does not answer keeps its last figure.
async fn budget_connections(
    config: &Config,
    key: &MasterKey,
    catalog: &Catalog,
    engines: &Engines,
) {
    let Ok(servers) = catalog.list_servers().await else {
        return;
    };
    for server in &servers {
        // Servers of an engine this build lacks are left alone; a dedicated server's budget
        // is recorded when it starts (its tenant has all of it).
        let Ok(engine) = engines.require(server.engine) else {
            continue;
        };
        if server.role == ServerRole::Dedicated {
            continue;
        }
        let budgeted = async {
            let admin = tdb_jobs::access::admin_endpoint(key, server)?;
            let capacity = engine.connection_capacity(&admin).await?;
            let budget = tenant_budget(
                capacity,
                config.server_reserved_connections,
                config.tenant_connections_percent,
            );
            catalog
                .set_tenant_connection_budget(&server.id, budget)
                .await?;
            anyhow::Ok((capacity, budget))
        };
        match budgeted.await {
            Ok((capacity, budget)) => tracing::info!(
                server = %server.name, capacity, tenants = budget,
                "connections the server keeps for tenants"
            ),
            Err(e) => tracing::warn!(server = %server.name, error = %e,
                "could not read the server's connection capacity"),
        }
    }
}

/// How many of a server's connections its tenants may hold together: of what it accepts from
/// roles that are not superusers (`capacity`), at most `percent`, and never what tdb keeps for
/// its own work (`reserved`, itself at most half).
pub(crate) fn tenant_budget(capacity: u32, reserved: u32, percent: u32) -> u32 {
    let share =
        u32::try_from(u64::from(capacity) * u64::from(percent.min(100)) / 100).unwrap_or(capacity);
    share.min(capacity - reserved.min(capacity / 2))
}

/// The catalog's server, used as the shared PostgreSQL server when no `[[servers]]` are given.
fn catalog_server(url: &str) -> ServerConfig {
    ServerConfig {
        name: "postgresql-catalog".into(),
        engine: EngineKind::Postgresql,
        role: ServerRole::Shared,
        region: None,
        url: url.to_string(),
        max_databases: None,
    }
}

/// The percent-decoded password of a connection URL ("" when it has none).
pub fn password_of(url: &str) -> String {
    let Some(rest) = url.split_once("://").map(|(_, r)| r) else {
        return String::new();
    };
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    let Some((userinfo, _)) = authority.rsplit_once('@') else {
        return String::new();
    };
    let Some((_, password)) = userinfo.split_once(':') else {
        return String::new();
    };
    percent_decode(password)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn watch_signals(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
    }
    shutdown.cancel();
}

/// How many connections the kernel holds for a listener before tdb accepts them. The standard
/// library asks for 128: a burst larger than that (a client pool opening at once) while the
/// accept loop is busy got its handshakes dropped, and clients whose last ACK was dropped
/// believed themselves connected to a server that never heard of them.
const LISTEN_BACKLOG: i32 = 1024;

/// A non-blocking listener on `addr` with [`LISTEN_BACKLOG`] (the kernel caps it at
/// `net.core.somaxconn`).
fn bind_listener(addr: std::net::SocketAddr) -> anyhow::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // As the standard library does: a restarted serve rebinds at once despite TIME_WAIT.
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// The file of the proxy's Unix socket. Dropped when the proxy's thread ends, however it ends,
/// it removes the file if the path still names this very socket (another tdb started since
/// may have put its own there).
#[derive(Debug)]
struct UnixSocketFile {
    path: std::path::PathBuf,
    /// The socket's device and inode.
    id: (u64, u64),
}

impl Drop for UnixSocketFile {
    fn drop(&mut self) {
        use std::os::unix::fs::MetadataExt;
        if let Ok(meta) = std::fs::symlink_metadata(&self.path)
            && (meta.dev(), meta.ino()) == self.id
        {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// A Unix socket at `path` that any user of this machine may connect to, as to MariaDB's own
/// socket: the login is what admits a client. A socket file left by a process that is gone
/// (it refuses connections) is replaced; one that answers, a file of another kind or a
/// symbolic link is an error.
///
/// The socket is made in a private directory beside `path`, made connectable there, then
/// moved to `path` only if nothing has taken the name meanwhile: its mode is never set
/// through a path another user could swap for a link, and nothing already at `path` is ever
/// replaced.
fn bind_unix_listener(
    path: &Path,
) -> anyhow::Result<(std::os::unix::net::UnixListener, UnixSocketFile)> {
    use nix::fcntl::{AT_FDCWD, RenameFlags, renameat2};
    use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt};
    use std::os::unix::net::{UnixListener, UnixStream};
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => match UnixStream::connect(path) {
            Ok(_) => anyhow::bail!("{} is in use by another process", path.display()),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                std::fs::remove_file(path).context("removing a stale socket file")?;
            }
            Err(e) => return Err(e).context("checking whether the socket is in use"),
        },
        Ok(_) => anyhow::bail!("{} exists and is not a socket", path.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).context("reading the socket's path"),
    }
    let parent = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let staging = parent.join(format!(".tdb-socket-{:016x}", rand::random::<u64>()));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&staging)
        .with_context(|| format!("making a private directory in {}", parent.display()))?;
    let staged = staging.join("socket");
    let moved = (|| -> anyhow::Result<_> {
        let listener = UnixListener::bind(&staged)?;
        std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o666))?;
        let meta = std::fs::symlink_metadata(&staged)?;
        renameat2(
            AT_FDCWD,
            &staged,
            AT_FDCWD,
            path,
            RenameFlags::RENAME_NOREPLACE,
        )
        .map_err(std::io::Error::from)
        .with_context(|| format!("moving the socket to {}", path.display()))?;
        Ok((listener, meta))
    })();
    // Empty once the socket has moved; on an error, the socket made in it goes too.
    let _ = std::fs::remove_file(&staged);
    let _ = std::fs::remove_dir(&staging);
    let (listener, meta) = moved?;
    listener.set_nonblocking(true)?;
    let file = UnixSocketFile {
        path: path.to_path_buf(),
        id: (meta.dev(), meta.ino()),
    };
    Ok((listener, file))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_unix_socket_replaces_only_a_stale_socket() {
        use std::os::unix::net::{UnixListener, UnixStream};
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("mysql.sock");
        let first = bind_unix_listener(&path).expect("binds");
        let mode = std::fs::metadata(&path)
            .expect("socket")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o666);
        // Nothing is left of the private directory it was made in.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, ["mysql.sock"]);
        // While it listens, a second bind is refused and leaves it working.
        let e = bind_unix_listener(&path).expect_err("in use").to_string();
        assert!(e.contains("in use by another process"), "{e}");
        UnixStream::connect(&path).expect("still listening");
        // A socket file its process left behind is replaced (the guard is kept: a crashed
        // process leaves its file).
        std::mem::forget(first.1);
        drop(first.0);
        assert!(path.exists());
        let second = bind_unix_listener(&path).expect("replaces the stale socket");
        UnixStream::connect(&path).expect("the new one listens");
        // Its guard removes the file it made...
        drop(second);
        assert!(!path.exists(), "removed with its guard");
        // ...but not a socket another process has put at the path since.
        let third = bind_unix_listener(&path).expect("binds again");
        std::fs::remove_file(&path).expect("unlink");
        let _other = UnixListener::bind(&path).expect("another socket at the path");
        drop(third);
        assert!(path.exists(), "another process's socket was removed");
        // Any other file at the path is left alone, and so is a link.
        let file = dir.path().join("not-a-socket");
        std::fs::write(&file, "keep").expect("write");
        let e = bind_unix_listener(&file)
            .expect_err("not a socket")
            .to_string();
        assert!(e.contains("not a socket"), "{e}");
        assert_eq!(std::fs::read_to_string(&file).expect("kept"), "keep");
        let link = dir.path().join("link.sock");
        std::os::unix::fs::symlink(&file, &link).expect("symlink");
        bind_unix_listener(&link).expect_err("a link is refused");
        assert_eq!(std::fs::read_to_string(&file).expect("kept"), "keep");
        let mode = std::fs::metadata(&file).expect("file").permissions().mode();
        assert_ne!(mode & 0o777, 0o666, "the link's target was made writable");
    }

    #[test]
    fn tenants_get_at_most_their_share_and_never_tdbs_reserve() {
        // The managed server's defaults: 300 accepted, 3 for superusers; tdb's 100 bind.
        assert_eq!(tenant_budget(297, 100, 80), 197);
        // A large server: the share binds (80% of 1997).
        assert_eq!(tenant_budget(1997, 100, 80), 1597);
        // A small one: tdb keeps at most half.
        assert_eq!(tenant_budget(97, 100, 80), 49);
        assert_eq!(tenant_budget(57, 35, 80), 29);
        assert_eq!(tenant_budget(1000, 0, 100), 1000);
        assert_eq!(tenant_budget(0, 100, 80), 0);
    }

    #[test]
    fn an_attached_redis_is_reached_by_its_url() {
        let server = |url: &str| ServerConfig {
            name: "r1".into(),
            engine: EngineKind::Redis,
            role: ServerRole::Shared,
            region: None,
            url: url.into(),
            max_databases: None,
        };
        let e =
            attached_endpoint(&server("redis://tdb:s%40cret@cache.internal:6390")).expect("parses");
        assert_eq!(
            (
                e.host.as_str(),
                e.port,
                e.user.as_str(),
                e.password.as_str()
            ),
            ("cache.internal", 6390, "tdb", "s@cret")
        );
        let e = attached_endpoint(&server(
            "redis://:pw@localhost/?socket=/run/redis/redis.sock",
        ))
        .expect("parses");
        assert_eq!(
            (
                e.host.as_str(),
                e.port,
                e.user.as_str(),
                e.password.as_str()
            ),
            ("/run/redis/redis.sock", 6379, "default", "pw")
        );
    }

    #[test]
    fn passwords_come_out_of_urls_decoded() {
        assert_eq!(password_of("postgresql://u:p%40ss@h:5432/db"), "p@ss");
        assert_eq!(password_of("postgresql://u@h/db"), "");
        assert_eq!(password_of("postgresql://h/db"), "");
        assert_eq!(password_of("postgres://a:b:c@h"), "b:c");
    }
}
