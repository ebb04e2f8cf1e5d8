//! The rollback job: puts one tenant database back to a backup.
//!
//! 1. `safety`: a backup of the database as it is now (kind `safety`), so the rollback itself
//!    can be undone.
//! 2. `restoring`: the backup is streamed from the store through gunzip into a fresh database
//!    (named in the catalog before it is created) with the tenant's privilege model. The file is
//!    first read whole and must match the size and SHA-256 recorded when the backup was taken
//!    (psql runs meta-commands, so a tampered file never reaches it), and is hashed again on the
//!    way in. Meanwhile the tenant keeps serving its current data.
//!    A backup taken at an older schema version is then migrated to the version the tenant is
//!    on, so the restored data has the schema the tenant's applications (and its deployments'
//!    results) expect; if the newer versions' statements fail on the old data, the rollback
//!    fails and the tenant keeps its data.
//! 3. `swapped`: the proxies hold the tenant's queries, and one catalog transaction points the
//!    tenant database at the restored database (at the schema version recorded inside it).
//! 4. The old database is dropped (ending the sessions still on it), the hold is released, and
//!    the tenant is `ready` again.
//!
//! Until the swap commits the tenant is on its old data; from then on, on the restored data:
//! never on neither. A failure before the swap drops the fresh database and records why; a job
//! cut off (even by `kill -9`) resumes from its step.

use async_compression::tokio::bufread::GzipDecoder;
use tdb_catalog::backups::Rollback;
use tdb_catalog::servers::Server;
use tdb_catalog::tenants::TenantDatabase;
use tdb_engines::RestoreTarget;
use tokio::io::BufReader;

use crate::access::{admin_endpoint, owner_access};
use crate::{JobError, Runner};
use tdb_core::{BackupStatus, RollbackStep};

/// Attempts after which a rollback that keeps being cut off gives up.
const MAX_ATTEMPTS: i32 = 5;
/// Longest the proxies hold the tenant's queries for the swap.
const SWAP_HOLD_MS: u64 = 30_000;

pub async fn run(runner: &Runner, rollback_id: &str, attempt: i32) -> Result<(), JobError> {
    let catalog = &runner.catalog;
    let rb = match catalog.find_rollback(rollback_id).await {
        Ok(rb) => rb,
        Err(tdb_catalog::CatalogError::NotFound) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    match rb.step {
        // Ended; make sure the tenant is not left `restoring` by a cut-off end.
        RollbackStep::Completed | RollbackStep::Failed => {
            Ok(catalog.end_rollback(&rb, rb.error.as_deref()).await?)
        }
        RollbackStep::Swapped => finish(runner, &rb).await,
        _ if attempt > MAX_ATTEMPTS => {
            fail(
                runner,
                &rb,
                &format!("gave up after {MAX_ATTEMPTS} interrupted attempts"),
            )
            .await
        }
        _ => match prepare(runner, &rb).await {
            Ok(()) => {
                let rb = catalog.find_rollback(&rb.id).await?;
                finish(runner, &rb).await
            }
            // Resumed from its step when the job runs again (or failed after MAX_ATTEMPTS).
            Err(e) if e.is_transient() => Err(e),
            Err(e) => fail(runner, &rb, e.message()).await,
        },
    }
}

/// Steps 1 to 3; `Ok` once the swap has committed.
async fn prepare(runner: &Runner, rb: &Rollback) -> Result<(), JobError> {
    let catalog = &runner.catalog;
    let db = catalog
        .tenant_database(&rb.tenant_database_id)
        .await
        .map_err(|e| JobError::from(e).context("reading the tenant database"))?;
    let server = catalog
        .find_server(&db.server_id)
        .await
        .map_err(|e| JobError::from(e).context("reading the server"))?;
    let backup = catalog
        .find_backup(&rb.backup_id)
        .await
        .map_err(|e| JobError::from(e).context("reading the backup"))?;
    if backup.status != BackupStatus::Completed {
        return Err(JobError::permanent(format!(
            "backup '{}' is {}, not completed",
            backup.storage_path, backup.status
        )));
    }

    safety_backup(runner, rb, &server, &db).await?;

    let new_db = match &rb.new_db {
        Some(name) => name.clone(),
        None => format!("tdb_t_{}", &tdb_core::ids::new_id("r")[2..]),
    };
    if db.physical_db == new_db {
        // Another run of this rollback already switched: nothing here may touch that database.
        return Err(JobError::permanent(
            "the rollback was switched by another run",
        ));
    }
    // Named before it exists: a resumed job finds (and replaces or drops) whatever was made.
    catalog
        .set_rollback_step(&rb.id, RollbackStep::Restoring, None, Some(&new_db))
        .await?;
    let engine = runner.engine(db.engine)?;
    let admin = admin_endpoint(&runner.master_key, &server)?;
    engine
        .create_restore_target(
            &admin,
            &RestoreTarget {
                name: &new_db,
                owner_role: &db.owner_role,
                app_role: &db.app_role,
                read_role: db.read_role.as_deref(),
            },
        )
        .await
        .map_err(|e| JobError::from(e).context("creating the database to restore into"))?;

    let restored = TenantDatabase {
        physical_db: new_db.clone(),
        ..db.clone()
    };
    // The file is checked whole before psql sees a byte of it: psql runs meta-commands (`\!`
    // runs a shell command), so a tampered file must never reach it.
    verify(runner, &backup).await?;
    let owner = owner_access(&runner.master_key, &server, &restored)?;
    let stream = runner.store.open_stream(&backup.storage_path).await?;
    let tally = stream.tally();
    let progress = {
        let (catalog, id, tally) = (catalog.clone(), rb.id.clone(), tally.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                let done = i64::try_from(tally.bytes()).unwrap_or(i64::MAX);
                let _ = catalog.set_rollback_progress(&id, done).await;
            }
        })
    };
    let decoder = GzipDecoder::new(BufReader::with_capacity(256 * 1024, stream));
    let restored_ok = engine.restore(&owner, Box::new(decoder)).await;
    progress.abort();
    let read = tally.written();
    let _ = catalog
        .set_rollback_progress(&rb.id, i64::try_from(read.size).unwrap_or(i64::MAX))
        .await;
    restored_ok
        .map_err(|e| JobError::from(e).context(format!("restoring '{}'", backup.storage_path)))?;
    // And again for what was restored: the file must not have changed between the two reads.
    matches_record(&backup, &read)?;
    let version = to_live_version(runner, &server, &db, &owner, None).await?;

    // The switch. New queries wait at the proxies while the route changes under them.
    let _ = catalog.hold_tenant(&rb.tenant_id, SWAP_HOLD_MS).await;
    let rb = catalog.find_rollback(&rb.id).await?;
    if let Err(e) = catalog.swap_rollback(&rb, version).await {
        let _ = catalog.release_tenant(&rb.tenant_id).await;
        return Err(JobError::from(e).context("switching to the restored database"));
    }
    tracing::info!(rollback = %rb.id, tenant_database = %db.id, restored = %new_db, version, "rollback switched");
    Ok(())
}

/// Brings the restored database (reached as `restored`) to the schema version of the tenant's
/// live database, the one it replaces; returns the version it is at. Asks the live database
/// again afterwards, in case a deployment moved it meanwhile.
/// `restored_admin` is the administrator of the restored database's server (`None`: `server`'s).
pub(crate) async fn to_live_version(
    runner: &Runner,
    server: &Server,
    live: &TenantDatabase,
    restored: &tdb_engines::DatabaseAccess,
    restored_admin: Option<&tdb_engines::AdminEndpoint>,
) -> Result<i32, JobError> {
    let engine = runner.engine(live.engine)?;
    let live_owner = owner_access(&runner.master_key, server, live)?;
    let admin = match restored_admin {
        Some(admin) => admin.clone(),
        None => admin_endpoint(&runner.master_key, server)?,
    };
    if engine.sql().is_none()
        && let Some(rules) = engine.key_value_settings()
    {
        // No schema in the namespace: it takes the live database's rules for keys.
        crate::forward::apply_key_rules(
            &runner.catalog,
            rules,
            &admin,
            &restored.database,
            &live.blueprint_id,
            live.version,
        )
        .await
        .map_err(JobError::transient)?;
        return Ok(live.version);
    }
    let sql = engine.require_sql()?;
    let mut version = sql
        .schema_version(restored)
        .await
        .map_err(|e| JobError::from(e).context("reading the restored schema version"))?;
    for _ in 0..3 {
        // The live database has the last word; the catalog's copy stands in when it is out of
        // reach.
        let target = sql
            .schema_version(&live_owner)
            .await
            .unwrap_or(live.version);
        if version >= target {
            return Ok(version);
        }
        let forwarded = crate::forward::bring_forward(
            &runner.catalog,
            engine.as_ref(),
            &crate::forward::ForwardTarget {
                owner: restored,
                admin: &admin,
                blueprint_id: &live.blueprint_id,
                target,
                timeout: runner.config.migration_timeout,
            },
        )
        .await
        .map_err(|e| {
            let why = format!(
                "the backup holds schema version {version} and the tenant is on version \
                 {target}: {e}; the tenant keeps its data"
            );
            match e {
                crate::forward::ForwardError::Refused { .. } => JobError::Permanent(why),
                crate::forward::ForwardError::Unavailable(_) => JobError::Transient(why),
            }
        })?;
        tracing::info!(tenant_database = %live.id, from = forwarded.from, to = forwarded.to,
            "restored database brought to the tenant's schema version");
        version = forwarded.to;
    }
    Ok(version)
}

/// Reads the whole file and compares it with the size and SHA-256 recorded when it was taken.
async fn verify(runner: &Runner, backup: &tdb_catalog::backups::Backup) -> Result<(), JobError> {
    let mut stream = runner.store.open_stream(&backup.storage_path).await?;
    tokio::io::copy(&mut stream, &mut tokio::io::sink())
        .await
        .map_err(|e| JobError::transient(format!("reading '{}': {e}", backup.storage_path)))?;
    matches_record(backup, &stream.written())
}

fn matches_record(
    backup: &tdb_catalog::backups::Backup,
    read: &crate::store::Written,
) -> Result<(), JobError> {
    let expected_size = backup.size_bytes.and_then(|s| u64::try_from(s).ok());
    if expected_size == Some(read.size) && backup.sha256.as_deref() == Some(read.sha256.as_str()) {
        return Ok(());
    }
    Err(JobError::permanent(format!(
        "backup '{}' is corrupt: its bytes do not match the checksum recorded when it was taken \
         (read {} bytes, recorded {})",
        backup.storage_path,
        read.size,
        expected_size.map_or_else(|| "none".into(), |s| s.to_string())
    )))
}

/// Step 1, once: reuses a safety backup a cut-off attempt completed.
async fn safety_backup(
    runner: &Runner,
    rb: &Rollback,
    server: &Server,
    db: &TenantDatabase,
) -> Result<(), JobError> {
    let catalog = &runner.catalog;
    if let Some(id) = &rb.safety_backup_id
        && let Ok(existing) = catalog.find_backup(id).await
        && existing.status == BackupStatus::Completed
    {
        return Ok(());
    }
    let backup = catalog.find_backup(&rb.backup_id).await?;
    let planned = crate::backup::plan_safety(runner, &backup.project_id, db).await?;
    catalog
        .set_rollback_step(&rb.id, RollbackStep::Safety, Some(&planned.id), None)
        .await?;
    crate::backup::take_safety(runner, server, db, &planned).await
}

/// Step 4: drops the old database, releases the hold, ends the rollback.
async fn finish(runner: &Runner, rb: &Rollback) -> Result<(), JobError> {
    let catalog = &runner.catalog;
    if let Some(old) = &rb.old_db {
        let dropped = async {
            let db = catalog.tenant_database(&rb.tenant_database_id).await?;
            if &db.physical_db == old {
                return Err(JobError::permanent(format!(
                    "{old} is the tenant's live database; not dropping it"
                )));
            }
            let server = catalog.find_server(&db.server_id).await?;
            let admin = admin_endpoint(&runner.master_key, &server)?;
            runner
                .engine(db.engine)?
                .drop_database(&admin, old, &[])
                .await
                .map_err(JobError::from)
        };
        if let Err(e) = dropped.await {
            // The tenant is on its restored data either way; the old copy is only garbage.
            tracing::warn!(rollback = %rb.id, old_db = %old, error = %e, "could not drop the replaced database");
        }
    }
    let _ = catalog.release_tenant(&rb.tenant_id).await;
    catalog.end_rollback(rb, None).await?;
    tracing::info!(rollback = %rb.id, "rollback completed");
    Ok(())
}

/// Ends a rollback that did not reach the swap: the fresh database goes, the tenant stays on
/// its data, and the error says why.
/// Ends a rollback that ran past the job time limit as failed (the tenant keeps its data, or
/// finishes on the restored data if the switch had committed).
pub async fn give_up(runner: &Runner, rollback_id: &str, error: &str) -> Result<(), JobError> {
    match runner.catalog.find_rollback(rollback_id).await {
        Ok(rb) => fail(runner, &rb, error).await,
        Err(tdb_catalog::CatalogError::NotFound) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

async fn fail(runner: &Runner, rb: &Rollback, error: &str) -> Result<(), JobError> {
    let catalog = &runner.catalog;
    let current = catalog.find_rollback(&rb.id).await?;
    match current.step {
        // The switch committed after all (its answer was lost): finish instead.
        RollbackStep::Swapped => return finish(runner, &current).await,
        RollbackStep::Completed | RollbackStep::Failed => return Ok(()),
        RollbackStep::Queued | RollbackStep::Safety | RollbackStep::Restoring => {}
    }
    tracing::warn!(rollback = %rb.id, error, "rollback failed; the tenant keeps its data");
    let current = Some(current);
    if let Some(new_db) = current.as_ref().and_then(|r| r.new_db.clone())
        && let Ok(db) = catalog.tenant_database(&rb.tenant_database_id).await
        && db.physical_db != new_db
        && let Ok(server) = catalog.find_server(&db.server_id).await
        && let Ok(admin) = admin_endpoint(&runner.master_key, &server)
        && let Ok(engine) = runner.engine(db.engine)
    {
        let _ = engine.drop_database(&admin, &new_db, &[]).await;
    }
    Ok(catalog.end_rollback(rb, Some(error)).await?)
}
