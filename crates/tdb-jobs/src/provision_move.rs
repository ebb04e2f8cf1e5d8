//! The `provision_move` job: gives a provisioned database made before each had a PostgreSQL
//! database of its own (they were schemas of one shared database, which shares notification
//! channels between them) a database of its own. Queued at start for each such database.
//!
//! 1. The schema is copied, with its owners and grants, into a fresh database named after the
//!    provisioned database, while its role cannot log in (its sessions end; clients reconnect).
//! 2. One catalog update points the provisioned database at the new one (the proxies follow).
//! 3. The schema is dropped from the shared database, and that database once it is empty.
//!
//! Until step 2 the old copy is the one in use, afterwards the new one: a crash anywhere resumes
//! (step 1 starts over from a fresh database; step 3 is idempotent).

use tdb_engines::SchemaMove;

use crate::access::admin_endpoint;
use crate::{JobError, Runner};
use tdb_core::ConnectionStatus;

/// Runs the move named by `reference`: `<provisioned id>@<shared database>`.
pub async fn run(runner: &Runner, reference: &str) -> Result<(), JobError> {
    let catalog = &runner.catalog;
    let (provisioned_id, shared) = reference.split_once('@').ok_or_else(|| {
        JobError::permanent(format!("bad provision_move reference '{reference}'"))
    })?;
    let Some(p) = catalog.provisioned_by_id(provisioned_id).await? else {
        return Ok(());
    };
    if p.status != ConnectionStatus::Active {
        return Ok(());
    }
    let own = own_database(&p.id);
    let server = catalog.find_server(&p.server_id).await?;
    let admin = admin_endpoint(&runner.master_key, &server)?;
    let engine = runner.engine(server.engine)?;
    let engine = engine.require_schema_tenants()?;
    let step = |forget| SchemaMove {
        from: shared,
        to: &own,
        schema: &p.schema_name,
        role: &p.role_name,
        forget,
    };
    // Already switched (a run cut off after it): only the shared copy may be left.
    if p.database != own {
        engine
            .move_schema_tenant(&admin, &step(false))
            .await
            .map_err(|e| {
                JobError::from(e).context(format!("copying provisioned database {} out", p.id))
            })?;
        catalog.set_provisioned_database(&p.id, &own).await?;
    }
    engine
        .move_schema_tenant(&admin, &step(true))
        .await
        .map_err(|e| {
            JobError::from(e).context(format!(
                "removing provisioned database {} from {shared}",
                p.id
            ))
        })?;
    tracing::info!(provisioned = %p.id, from = %shared, to = %own, "provisioned database moved to a database of its own");
    Ok(())
}

/// The database a provisioned database moves to, named after it so a resumed move finds it.
fn own_database(id: &str) -> String {
    let hex: String = id
        .chars()
        .filter(|c| c.is_ascii_hexdigit())
        .take(20)
        .collect();
    format!("tdb_p_{}", hex.to_ascii_lowercase())
}
