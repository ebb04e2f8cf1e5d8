//! The `tenant_recover` job: puts one tenant database back to a moment of its past, from its
//! server's WAL archive (pgBackRest), while the tenant keeps serving its current data; and the
//! `tenant_recover_undo` job that swaps the original back.
//!
//! 1. `restoring`: the archive is restored to the moment and replayed until it, then promoted:
//!    - L2 (the database has a server of its own): into a new dedicated server, which is then
//!      started and archives into a stanza of its own;
//!    - L1 (a shared server): into a scratch server with only that database readable
//!      (`--db-include`), so the neighbours are never touched.
//! 2. `loading`: L2: the server's roles get their logins, passwords and limits as tdb has them
//!    now. L1: the database is dumped from the scratch server into a new database on the shared
//!    server, made with the tenant's privilege model, and the scratch server goes. Either way the
//!    recovered database is brought to the schema version the tenant is on (like a rollback).
//! 3. `switched`: the proxies hold the tenant's new queries, one catalog transaction points the
//!    tenant database at the recovered copy, and the hold ends.
//! 4. `completed`: the original is kept apart (an L2 server stopped, an L1 database closed to the
//!    tenant's roles) until `undo_until`; the schedule then drops it.
//!
//! Until the switch commits the tenant is served from its original. A recovery that fails
//! before it removes what it made and leaves the tenant `ready` where it was; a crash anywhere
//! resumes from the step (a restore starts again from the archive).

use std::time::{Duration, Instant};

use tdb_catalog::recoveries::Recovery;
use tdb_catalog::servers::Server;
use tdb_catalog::tenants::TenantDatabase;
use tdb_core::RecoveryStep;
use tdb_engines::managed::archive::WalArchive;
use tdb_engines::{AdminEndpoint, DatabaseAccess, RestoreTarget, RoleState};

use crate::access::{admin_endpoint, app_access, owner_access, read_access};
use crate::{JobError, Runner};

/// Attempts after which a recovery that keeps being cut off gives up.
const MAX_ATTEMPTS: i32 = 5;
/// Longest the proxies hold the tenant's queries for the switch.
const SWITCH_HOLD_MS: u64 = 30_000;

pub async fn run(runner: &Runner, id: &str, attempt: i32) -> Result<(), JobError> {
    let catalog = &runner.catalog;
    let r = match catalog.find_recovery(id).await {
        Ok(r) => r,
        Err(tdb_catalog::CatalogError::NotFound) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    match r.step {
        RecoveryStep::Switched => finish(runner, &r).await,
        RecoveryStep::Queued | RecoveryStep::Restoring | RecoveryStep::Loading => {
            if attempt > MAX_ATTEMPTS {
                let why = format!("gave up after {MAX_ATTEMPTS} interrupted attempts");
                return abandon(runner, &r, &why).await;
            }
            match advance(runner, &r).await {
                Ok(()) => finish(runner, &catalog.find_recovery(id).await?).await,
                Err(e) if e.is_transient() => Err(e),
                Err(e) => abandon(runner, &r, e.message()).await,
            }
        }
        _ => Ok(()),
    }
}

/// Ends a recovery that ran past the job's time limit as failed (the tenant keeps its data).
pub async fn give_up(runner: &Runner, id: &str, why: &str) -> Result<(), JobError> {
    match runner.catalog.find_recovery(id).await {
        Ok(r) if r.step == RecoveryStep::Switched => finish(runner, &r).await,
        Ok(r) => abandon(runner, &r, why).await,
        Err(tdb_catalog::CatalogError::NotFound) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn archive(runner: &Runner) -> Result<&WalArchive, JobError> {
    runner
        .archive
        .as_deref()
        .ok_or_else(|| JobError::permanent("this tdb archives no WAL (pitr_enabled is off)"))
}

/// Steps 1 to 3; `Ok` once the switch has committed.
async fn advance(runner: &Runner, r: &Recovery) -> Result<(), JobError> {
    let catalog = &runner.catalog;
    let db = catalog.tenant_database(&r.tenant_database_id).await?;
    if db.server_id != r.original_server_id || db.physical_db != r.original_db {
        return Err(JobError::permanent(
            "the tenant database is no longer where the recovery started from",
        ));
    }
    let original = catalog.find_server(&r.original_server_id).await?;
    let stanza = catalog
        .archive_of(&original.id)
        .await?
        .map(|a| a.stanza)
        .ok_or_else(|| {
            JobError::permanent(format!("server '{}' archives no WAL", original.name))
        })?;
    let at = r.target_at.format("%Y-%m-%dT%H:%M:%S%.6fZ");
    catalog
        .set_recovery_step(
            &r.id,
            RecoveryStep::Restoring,
            Some(&format!(
                "restoring the archive of '{}' to {at}",
                original.name
            )),
        )
        .await?;
    let started = Instant::now();
    let version = if r.level == 2 {
        recover_dedicated(runner, r, &db, &original, started).await?
    } else {
        recover_shared(runner, r, &db, (&original, &stanza)).await?
    };
    let held = Instant::now();
    catalog.hold_tenant(&r.tenant_id, SWITCH_HOLD_MS).await?;
    let held_ms = i32::try_from(held.elapsed().as_millis()).unwrap_or(i32::MAX);
    let r = catalog.find_recovery(&r.id).await?;
    if let Err(e) = catalog.switch_recovery(&r, version, held_ms).await {
        let _ = catalog.release_tenant(&r.tenant_id).await;
        return Err(JobError::from(e).context("switching to the recovered database"));
    }
    let _ = catalog.release_tenant(&r.tenant_id).await;
    tracing::info!(recovery = %r.id, tenant_database = %db.id, held_ms, version, "recovery switched");
    Ok(())
}

/// L2: a new dedicated server from the original's archive, its roles as tdb has them now, at
/// the tenant's schema version. Returns that version.
async fn recover_dedicated(
    runner: &Runner,
    r: &Recovery,
    db: &TenantDatabase,
    original: &Server,
    started: Instant,
) -> Result<i32, JobError> {
    let catalog = &runner.catalog;
    let recovered = catalog.find_server(&r.recovered_server_id).await?;
    let recovered =
        crate::dedicated::start_recovered(runner, &recovered, original, r.target_at).await?;
    catalog
        .set_recovery_step(
            &r.id,
            RecoveryStep::Loading,
            Some(&format!(
                "server '{}' restored, replayed and promoted in {} ms",
                recovered.name,
                started.elapsed().as_millis()
            )),
        )
        .await?;
    let restored = TenantDatabase {
        server_id: recovered.id.clone(),
        ..db.clone()
    };
    let admin = admin_endpoint(&runner.master_key, &recovered)?;
    reset_roles(runner, &recovered, &restored, &admin).await?;
    let owner = owner_access(&runner.master_key, &recovered, &restored)?;
    crate::rollback::to_live_version(runner, original, db, &owner, Some(&admin)).await
}

/// The tenant roles on the recovered server as tdb has them now.
async fn reset_roles(
    runner: &Runner,
    server: &Server,
    db: &TenantDatabase,
    admin: &AdminEndpoint,
) -> Result<(), JobError> {
    let tenant = runner
        .catalog
        .tenant_by_id(&db.tenant_id)
        .await?
        .ok_or_else(|| JobError::permanent("the tenant is gone"))?;
    let limit = crate::provision::connection_limit(runner, &tenant, db, server)
        .await
        .map_err(|e| JobError::permanent(e.to_string()))?;
    let owner = owner_access(&runner.master_key, server, db)?;
    let app = app_access(&runner.master_key, server, db)?;
    let read = read_access(&runner.master_key, server, db).transpose()?;
    let mut roles = vec![
        RoleState {
            name: &db.owner_role,
            password: &owner.password,
            connection_limit: 5,
        },
        RoleState {
            name: &db.app_role,
            password: &app.password,
            connection_limit: limit,
        },
    ];
    if let Some(read) = &read {
        roles.push(RoleState {
            name: &read.user,
            password: &read.password,
            connection_limit: limit,
        });
    }
    let engine = runner.engine(db.engine)?;
    engine.require_moves()?.reset_roles(admin, &roles).await?;
    Ok(())
}

/// L1: a scratch server from the shared server's archive with only this database, dumped into
/// a new database on the shared server, at the tenant's schema version. Returns that version.
async fn recover_shared(
    runner: &Runner,
    r: &Recovery,
    db: &TenantDatabase,
    (server, stanza): (&Server, &str),
) -> Result<i32, JobError> {
    let catalog = &runner.catalog;
    let archive = archive(runner)?;
    let admin = admin_endpoint(&runner.master_key, server)?;
    let scratch = tdb_engines::managed::postgres::open_scratch(
        &archive.scratch_dir(&r.id),
        (archive, stanza),
        r.target_at,
        &db.physical_db,
        archive.binaries()?,
        &admin,
    )
    .await
    .map_err(|e| JobError::from(e).context("restoring the archive into a scratch server"))?;
    let (restored_ms, replayed_ms) = (scratch.restored.as_millis(), scratch.replayed.as_millis());
    let restored_what = if scratch.only_one() {
        "only its database restored"
    } else {
        "every database restored, as the database is newer than the base backup"
    };
    let loaded = load_from_scratch(runner, r, db, server, scratch.endpoint()).await;
    if let Err(e) = scratch.remove().await {
        tracing::warn!(recovery = %r.id, error = %e, "could not remove the scratch server");
    }
    let loaded_ms = loaded?;
    catalog
        .set_recovery_step(
            &r.id,
            RecoveryStep::Loading,
            Some(&format!(
                "scratch server restored in {restored_ms} ms ({restored_what}) and replayed \
                 to the moment in {replayed_ms} ms; the database dumped and loaded into '{}' \
                 in {loaded_ms} ms",
                r.recovered_db
            )),
        )
        .await?;
    let recovered = TenantDatabase {
        physical_db: r.recovered_db.clone(),
        ..db.clone()
    };
    let owner = owner_access(&runner.master_key, server, &recovered)?;
    crate::rollback::to_live_version(runner, server, db, &owner, None).await
}

/// The database on the scratch server streamed into a fresh database on the shared server;
/// returns how long it took (ms).
async fn load_from_scratch(
    runner: &Runner,
    r: &Recovery,
    db: &TenantDatabase,
    server: &Server,
    scratch: &AdminEndpoint,
) -> Result<u128, JobError> {
    let started = Instant::now();
    runner
        .catalog
        .set_recovery_step(&r.id, RecoveryStep::Loading, None)
        .await?;
    let engine = runner.engine(db.engine)?;
    let admin = admin_endpoint(&runner.master_key, server)?;
    engine
        .create_restore_target(
            &admin,
            &RestoreTarget {
                name: &r.recovered_db,
                owner_role: &db.owner_role,
                app_role: &db.app_role,
                read_role: db.read_role.as_deref(),
            },
        )
        .await
        .map_err(|e| JobError::from(e).context("creating the database to recover into"))?;
    let source = DatabaseAccess {
        host: scratch.host.clone(),
        port: scratch.port,
        database: db.physical_db.clone(),
        user: scratch.user.clone(),
        password: scratch.password.clone(),
    };
    let recovered = TenantDatabase {
        physical_db: r.recovered_db.clone(),
        ..db.clone()
    };
    let target = owner_access(&runner.master_key, server, &recovered)?;
    let dump = engine.dump(&source).await?;
    let (restored, finished) = tokio::join!(engine.restore(&target, dump.output), dump.finish);
    restored
        .and(finished)
        .map_err(|e| JobError::from(e).context("copying the recovered database"))?;
    Ok(started.elapsed().as_millis())
}

/// Step 4: the original kept apart for the undo window, the recovery completed.
async fn finish(runner: &Runner, r: &Recovery) -> Result<(), JobError> {
    let catalog = &runner.catalog;
    let original = catalog.find_server(&r.original_server_id).await?;
    if r.level == 2 {
        if crate::dedicated::is_ours(runner, &original) {
            crate::dedicated::stop(runner, &original).await?;
        }
    } else {
        let db = catalog.tenant_database(&r.tenant_database_id).await?;
        let admin = admin_endpoint(&runner.master_key, &original)?;
        let engine = runner.engine(db.engine)?;
        engine
            .require_moves()?
            .close_database(&admin, &r.original_db, &login_roles(&db))
            .await?;
    }
    catalog.complete_recovery(&r.id).await?;
    let _ = catalog.release_tenant(&r.tenant_id).await;
    tracing::info!(recovery = %r.id, "recovery completed; the original is kept for its undo window");
    Ok(())
}

fn login_roles(db: &TenantDatabase) -> Vec<&str> {
    let mut roles = vec![db.app_role.as_str()];
    roles.extend(db.read_role.as_deref());
    roles
}

/// A recovery that did not switch: what it made goes, and the tenant is `ready` on its original
/// with the error recorded.
async fn abandon(runner: &Runner, r: &Recovery, why: &str) -> Result<(), JobError> {
    let catalog = &runner.catalog;
    let current = catalog.find_recovery(&r.id).await?;
    match current.step {
        RecoveryStep::Switched => return finish(runner, &current).await,
        RecoveryStep::Queued | RecoveryStep::Restoring | RecoveryStep::Loading => {}
        _ => return Ok(()),
    }
    tracing::warn!(recovery = %r.id, error = why, "recovery failed; the tenant keeps its data");
    let _ = catalog.release_tenant(&r.tenant_id).await;
    remove_recovered(runner, r).await?;
    catalog.fail_recovery(r, why).await?;
    Ok(())
}

/// Removes the recovered copy (never the live database: the caller knows it is not).
async fn remove_recovered(runner: &Runner, r: &Recovery) -> Result<(), JobError> {
    let catalog = &runner.catalog;
    if r.level == 2 {
        let Ok(recovered) = catalog.find_server(&r.recovered_server_id).await else {
            return Ok(());
        };
        if crate::dedicated::is_ours(runner, &recovered) {
            crate::dedicated::destroy(runner, &recovered).await?;
        }
        catalog.delete_server(&recovered.id).await?;
        return Ok(());
    }
    if let Some(archive) = runner.archive.as_deref() {
        tdb_engines::managed::postgres::remove(&archive.scratch_dir(&r.id))
            .await
            .map_err(JobError::from)?;
    }
    let server = catalog.find_server(&r.recovered_server_id).await?;
    let admin = admin_endpoint(&runner.master_key, &server)?;
    let db = catalog.tenant_database(&r.tenant_database_id).await?;
    runner
        .engine(db.engine)?
        .drop_database(&admin, &r.recovered_db, &[])
        .await?;
    Ok(())
}

/// The `tenant_recover_undo` job: the original is opened (or its server started) again, the
/// proxies hold the tenant's queries while one transaction points the tenant database back at
/// it, and the recovered copy goes.
pub async fn undo(runner: &Runner, id: &str) -> Result<(), JobError> {
    let catalog = &runner.catalog;
    let r = match catalog.find_recovery(id).await {
        Ok(r) => r,
        Err(tdb_catalog::CatalogError::NotFound) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    match r.step {
        RecoveryStep::Undoing => {}
        // Switched back by a run cut off before it removed the recovered copy.
        RecoveryStep::Undone => return remove_recovered(runner, &r).await,
        _ => return Ok(()),
    }
    match swap_back(runner, &r).await {
        Ok(()) => remove_recovered(runner, &r).await,
        Err(e) if e.is_transient() => Err(e),
        Err(e) => {
            let _ = catalog.release_tenant(&r.tenant_id).await;
            catalog.abandon_recovery_undo(&r, e.message()).await?;
            Ok(())
        }
    }
}

async fn swap_back(runner: &Runner, r: &Recovery) -> Result<(), JobError> {
    let catalog = &runner.catalog;
    let db = catalog.tenant_database(&r.tenant_database_id).await?;
    if db.server_id != r.recovered_server_id || db.physical_db != r.recovered_db {
        return Err(JobError::permanent(
            "the tenant database has moved since its recovery; the original cannot come back",
        ));
    }
    let mut original = catalog.find_server(&r.original_server_id).await?;
    let engine = runner.engine(db.engine)?;
    if r.level == 2 {
        original = crate::dedicated::start(runner, &original).await?;
    } else {
        let admin = admin_endpoint(&runner.master_key, &original)?;
        engine
            .require_moves()?
            .reopen_database(&admin, &r.original_db, &login_roles(&db))
            .await?;
    }
    let back = TenantDatabase {
        server_id: original.id.clone(),
        physical_db: r.original_db.clone(),
        ..db.clone()
    };
    let owner = owner_access(&runner.master_key, &original, &back)?;
    let version = engine
        .require_sql()?
        .schema_version(&owner)
        .await
        .map_err(|e| JobError::from(e).context("reading the original's schema version"))?;
    catalog.hold_tenant(&r.tenant_id, SWITCH_HOLD_MS).await?;
    let switched = catalog.switch_recovery_back(r, version).await;
    let _ = catalog.release_tenant(&r.tenant_id).await;
    switched.map_err(|e| JobError::from(e).context("switching back to the original"))?;
    tracing::info!(recovery = %r.id, "recovery undone");
    Ok(())
}

/// Drops the originals kept past their undo window (the schedule's work).
pub async fn drop_expired_originals(runner: &Runner) -> Result<(), JobError> {
    for r in runner.catalog.originals_to_drop().await? {
        drop_original(runner, &r).await?;
    }
    Ok(())
}

/// Drops every original the tenant's recoveries still keep (its hard delete).
pub async fn drop_originals_of(runner: &Runner, tenant_id: &str) -> Result<(), JobError> {
    for r in runner.catalog.kept_originals(tenant_id).await? {
        drop_original(runner, &r).await?;
    }
    Ok(())
}

async fn drop_original(runner: &Runner, r: &Recovery) -> Result<(), JobError> {
    let catalog = &runner.catalog;
    let db = catalog.tenant_database(&r.tenant_database_id).await?;
    // Moved back onto it since: the original is the live copy.
    let live = db.server_id == r.original_server_id && db.physical_db == r.original_db;
    if !live {
        let original = catalog.find_server(&r.original_server_id).await?;
        if r.level == 2 {
            if crate::dedicated::is_ours(runner, &original) {
                crate::dedicated::destroy(runner, &original).await?;
                catalog.delete_server(&original.id).await?;
            }
        } else {
            let admin = admin_endpoint(&runner.master_key, &original)?;
            runner
                .engine(db.engine)?
                .drop_database(&admin, &r.original_db, &[])
                .await?;
        }
    }
    catalog.original_dropped(&r.id).await?;
    tracing::info!(recovery = %r.id, "the recovered tenant's original was dropped");
    Ok(())
}

/// The time left until `until`, as the reference writes it (`23h 45m`).
pub fn remaining(
    until: chrono::DateTime<chrono::Utc>,
    now: chrono::DateTime<chrono::Utc>,
) -> String {
    let left = (until - now).to_std().unwrap_or(Duration::ZERO).as_secs();
    format!("{}h {}m", left / 3600, (left % 3600) / 60)
}
