//! Dedicated (L2) servers over their lives, through the runner's [`Provisioner`]: started (made
//! first when new) with their address recorded, stopped with their data kept (a trashed
//! tenant's), destroyed with their record. Each step is safe to run again after a crash.
//!
//! [`Provisioner`]: tdb_engines::Provisioner

use tdb_catalog::servers::Server;
use tdb_core::aad::Aad;
use tdb_core::{ServerRole, ServerStatus};
use tdb_engines::ServerRequest;

use crate::{JobError, Runner};

/// Whether this runner's provisioner made `server` (and so may start, stop or remove it).
pub fn is_ours(runner: &Runner, server: &Server) -> bool {
    server.role == ServerRole::Dedicated
        && server.provisioner.as_deref() == Some(runner.provisioner.kind())
}

fn check_ours(runner: &Runner, server: &Server) -> Result<(), JobError> {
    if is_ours(runner, server) {
        return Ok(());
    }
    Err(JobError::permanent(format!(
        "server '{}' was not made by this tdb's '{}' provisioner (its provisioner: {})",
        server.name,
        runner.provisioner.kind(),
        server.provisioner.as_deref().unwrap_or("none")
    )))
}

/// Starts the dedicated server (making it when it does not exist yet), records where it
/// listens and how many connections it keeps for its tenant, and returns its record as it is
/// now, `active`.
pub async fn start(runner: &Runner, server: &Server) -> Result<Server, JobError> {
    check_ours(runner, server)?;
    let request = ServerRequest {
        name: &server.name,
        region: &server.region,
    };
    let endpoint = runner
        .provisioner
        .provision(&request)
        .await
        .map_err(|e| JobError::from(e).context(format!("starting server '{}'", server.name)))?;
    started(runner, server, &endpoint).await
}

/// Like [`start`] for a server made from the archive of the dedicated server `source` as it was
/// at `at` (a point-in-time recovery); a server already made is only started.
pub async fn start_recovered(
    runner: &Runner,
    server: &Server,
    source: &Server,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<Server, JobError> {
    check_ours(runner, server)?;
    check_ours(runner, source)?;
    let request = ServerRequest {
        name: &server.name,
        region: &server.region,
    };
    let endpoint = runner
        .provisioner
        .provision_recovered(&request, &source.name, at)
        .await
        .map_err(|e| {
            JobError::from(e).context(format!(
                "making server '{}' from the archive of '{}'",
                server.name, source.name
            ))
        })?;
    started(runner, server, &endpoint).await
}

/// Records where the started server listens (its archive too, when this tdb archives) and how
/// many connections it keeps for its tenant; returns its record as it is now, `active`.
async fn started(
    runner: &Runner,
    server: &Server,
    endpoint: &tdb_engines::AdminEndpoint,
) -> Result<Server, JobError> {
    let sealed = runner
        .master_key
        .seal(endpoint.password.as_bytes(), Aad::ServerAdmin(&server.id));
    let catalog = &runner.catalog;
    catalog
        .server_started(
            &server.id,
            &endpoint.host,
            endpoint.port,
            (&endpoint.user, &sealed),
        )
        .await?;
    if runner.archive.is_some() {
        catalog
            .register_archive(&server.id, &server.name, runner.provisioner.kind())
            .await?;
    }
    let engine = runner.engine(server.engine)?;
    match engine.connection_capacity(endpoint).await {
        Ok(capacity) => {
            let budget = capacity.saturating_sub(RESERVED_FOR_TDB.min(capacity / 2));
            catalog
                .set_tenant_connection_budget(&server.id, budget)
                .await?;
        }
        Err(e) => tracing::warn!(server = %server.name, error = %e,
            "could not read the dedicated server's connection capacity"),
    }
    Ok(catalog.find_server(&server.id).await?)
}

/// Connections a dedicated server keeps for tdb's own work (migrations, admin queries,
/// backups); its tenant may have the rest.
const RESERVED_FOR_TDB: u32 = 10;

/// Stops the dedicated server, keeping its data, and records it `stopped`.
pub async fn stop(runner: &Runner, server: &Server) -> Result<(), JobError> {
    check_ours(runner, server)?;
    runner
        .provisioner
        .stop(&server.name)
        .await
        .map_err(|e| JobError::from(e).context(format!("stopping server '{}'", server.name)))?;
    runner
        .catalog
        .set_server_status(&server.id, ServerStatus::Stopped)
        .await?;
    Ok(())
}

/// Removes the dedicated server and its data; the catalog forgets it once nothing is recorded
/// on it any more.
pub async fn destroy(runner: &Runner, server: &Server) -> Result<(), JobError> {
    check_ours(runner, server)?;
    runner
        .catalog
        .set_server_status(&server.id, ServerStatus::Offline)
        .await?;
    runner
        .provisioner
        .destroy(&server.name)
        .await
        .map_err(|e| JobError::from(e).context(format!("removing server '{}'", server.name)))?;
    Ok(())
}

/// Starts every dedicated server of this runner's provisioner that should be running (tdb's
/// start), several at once; one that fails is logged and left for the next start.
pub async fn start_all(runner: &Runner) {
    let servers = match runner
        .catalog
        .servers_to_run(runner.provisioner.kind())
        .await
    {
        Ok(servers) => servers,
        Err(e) => {
            tracing::error!(error = %e, "could not list the dedicated servers to start");
            return;
        }
    };
    let starts = servers.iter().map(|server| async move {
        match start(runner, server).await {
            Ok(_) => tracing::info!(server = %server.name, "dedicated server started"),
            Err(e) => tracing::error!(server = %server.name, error = %e,
                "could not start a dedicated server; its tenant's connections fail until it runs"),
        }
    });
    futures_util::future::join_all(starts).await;
}
