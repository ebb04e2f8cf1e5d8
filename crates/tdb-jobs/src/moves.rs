//! The `tenant_move` job: moves one tenant database to another server (L1 -> L2, L2 -> L1, a
//! dedicated server's region, one shared server to another) while it serves.
//!
//! 1. `queued`: a safety backup of the database as it is (listed with its backups, kind
//!    `safety`); a dedicated target server is made or started.
//! 2. `target`: the database is created on the target with its roles and the schema at the
//!    tenant's version; the method is chosen: logical replication, or a dump and restore when
//!    replication cannot carry it (the source's `wal_level`, a table without a key). The
//!    history says which and why.
//! 3. `syncing` (tenant `syncing`, serving from the source): a publication and a subscription
//!    copy the tables and then follow every commit, until each table has caught up.
//! 4. `cutover` (tenant `migrating`): the proxies hold the tenant's new queries; open
//!    transactions get until the drain deadline, then the source's sessions are ended and its
//!    login roles may not log in; a marker committed on the source and seen on the target
//!    proves everything committed before it arrived; sequences are copied; every table's count
//!    and checksum must match; one catalog transaction switches the route, and the hold ends.
//!    When replication failed (or its marker never arrives), the data goes by dump and restore
//!    behind the same hold instead.
//! 5. `switched`: replication is removed from both ends; the source is kept (unreachable) for
//!    `move_keep_source`, then dropped by the schedule.
//!
//! Until the switch commits the tenant lives on its source; after it, on the target. A move that
//! fails before the switch gives the source its logins back, removes the target and leaves the
//! tenant `ready` where it was; a crash anywhere resumes from the step (the cutover starts again
//! with a new hold).

use std::time::{Duration, Instant};

use tdb_catalog::moves::Move;
use tdb_catalog::servers::Server;
use tdb_catalog::tenants::TenantDatabase;
use tdb_core::{MoveMethod, MoveStep, TenantStatus};
use tdb_engines::{AdminEndpoint, DatabaseMoves, MoveEnds, RestoreTarget};

use crate::access::{admin_endpoint, owner_access};
use crate::{JobError, Runner};

/// Attempts after which a move that keeps being cut off gives up.
const MAX_ATTEMPTS: i32 = 5;
/// How long one hold lasts at the proxies; renewed while a dump-and-restore runs.
const HOLD_MS: u64 = 30_000;
/// How long after asking for a hold the cutover counts the source's open transactions.
const HOLD_REACHES_PROXIES: Duration = Duration::from_millis(30);
/// How long the target may take to apply the source's last commit once the source is fenced.
const CATCH_UP: Duration = Duration::from_secs(30);

pub async fn run(runner: &Runner, move_id: &str, attempt: i32) -> Result<(), JobError> {
    let catalog = &runner.catalog;
    let m = match catalog.find_move(move_id).await {
        Ok(m) => m,
        Err(tdb_catalog::CatalogError::NotFound) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    match m.step {
        MoveStep::Completed | MoveStep::Failed => Ok(()),
        MoveStep::Switched => finish(runner, &m).await,
        _ if attempt > MAX_ATTEMPTS => {
            undo(
                runner,
                &m,
                &format!("gave up after {MAX_ATTEMPTS} interrupted attempts"),
            )
            .await
        }
        _ => match advance(runner, &m).await {
            Ok(()) => finish(runner, &catalog.find_move(move_id).await?).await,
            Err(e) if e.is_transient() => Err(e),
            Err(e) => undo(runner, &m, e.message()).await,
        },
    }
}

/// Ends a move that ran past the job's time limit as failed (the tenant stays on its source).
pub async fn give_up(runner: &Runner, move_id: &str, why: &str) -> Result<(), JobError> {
    match runner.catalog.find_move(move_id).await {
        Ok(m) if matches!(m.step, MoveStep::Switched) => finish(runner, &m).await,
        Ok(m) => undo(runner, &m, why).await,
        Err(tdb_catalog::CatalogError::NotFound) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Both servers of a move, reachable.
struct Ends {
    db: TenantDatabase,
    source: Server,
    target: Server,
    source_admin: AdminEndpoint,
    target_admin: AdminEndpoint,
    /// What the move names on the servers (publication, slot, subscription).
    name: String,
}

impl Ends {
    fn of(&self) -> MoveEnds<'_> {
        MoveEnds {
            source: &self.source_admin,
            target: &self.target_admin,
            database: &self.db.physical_db,
            name: &self.name,
        }
    }

    /// The roles that log in to the database (its owner never does but for tdb's migrations).
    fn login_roles(&self) -> Vec<&str> {
        let mut roles = vec![self.db.app_role.as_str()];
        roles.extend(self.db.read_role.as_deref());
        roles
    }
}

fn replication_name(move_id: &str) -> String {
    format!("tdb_mv_{}", move_id.trim_start_matches("mov_"))
}

async fn ends(runner: &Runner, m: &Move) -> Result<Ends, JobError> {
    let catalog = &runner.catalog;
    let db = catalog.tenant_database(&m.tenant_database_id).await?;
    if db.server_id != m.from_server_id {
        return Err(JobError::permanent(
            "the tenant database is no longer on the server the move started from",
        ));
    }
    let source = catalog.find_server(&m.from_server_id).await?;
    let mut target = catalog.find_server(&m.to_server_id).await?;
    if crate::dedicated::is_ours(runner, &target) {
        target = crate::dedicated::start(runner, &target).await?;
    }
    Ok(Ends {
        source_admin: admin_endpoint(&runner.master_key, &source)?,
        target_admin: admin_endpoint(&runner.master_key, &target)?,
        name: replication_name(&m.id),
        db,
        source,
        target,
    })
}

/// Steps 1 to 4; `Ok` once the switch has committed.
async fn advance(runner: &Runner, m: &Move) -> Result<(), JobError> {
    let catalog = &runner.catalog;
    let e = ends(runner, m).await?;
    if e.source.id == e.target.id {
        return Err(JobError::permanent(
            "the source and the target are one server",
        ));
    }
    let engine = runner.engine(e.db.engine)?;
    let moves = engine.require_moves()?;
    let mut m = m.clone();
    if matches!(m.step, MoveStep::Queued | MoveStep::Target) {
        safety_backup(runner, &m, &e).await?;
        build_target(runner, &m, &e).await?;
        let blocker = moves
            .replication_blocker(&e.source_admin, &e.db.physical_db)
            .await?;
        let (method, note) = match blocker {
            None => (
                MoveMethod::Replication,
                "target built; replicating".to_string(),
            ),
            Some(why) => (
                MoveMethod::Dump,
                format!(
                    "target built; dump and restore behind a hold, as replication cannot run: {why}"
                ),
            ),
        };
        catalog
            .set_move_step(&m.id, MoveStep::Syncing, Some(method), Some(&note))
            .await?;
        m = catalog.find_move(&m.id).await?;
    }
    let mut method = m.method().unwrap_or(MoveMethod::Dump);
    if m.step == MoveStep::Syncing && method == MoveMethod::Replication {
        if let Err(why) = sync(runner, &e, moves).await {
            if why.is_transient() {
                return Err(why);
            }
            method = fall_back(runner, &m, &e, moves, why.message()).await?;
        }
        catalog
            .set_move_step(
                &m.id,
                MoveStep::Cutover,
                Some(method),
                Some("caught up; cutover"),
            )
            .await?;
    } else if m.step == MoveStep::Syncing {
        catalog
            .set_move_step(&m.id, MoveStep::Cutover, None, None)
            .await?;
    }
    let m = catalog.find_move(&m.id).await?;
    cutover(runner, &m, &e, moves, method).await
}

/// Step 1: the safety backup, once (a completed one from a cut-off attempt is kept).
async fn safety_backup(runner: &Runner, m: &Move, e: &Ends) -> Result<(), JobError> {
    let catalog = &runner.catalog;
    if let Some(id) = &m.safety_backup_id
        && let Ok(existing) = catalog.find_backup(id).await
        && existing.status == tdb_core::BackupStatus::Completed
    {
        return Ok(());
    }
    let planned = crate::backup::plan_safety(runner, &m.project_id, &e.db).await?;
    catalog.set_move_safety_backup(&m.id, &planned.id).await?;
    crate::backup::take_safety(runner, &e.source, &e.db, &planned).await
}

/// Step 2: the database on the target, from nothing, at the tenant's schema version. A copy
/// kept there by an earlier move away from that server goes first (its undo window ends).
async fn build_target(runner: &Runner, m: &Move, e: &Ends) -> Result<(), JobError> {
    let catalog = &runner.catalog;
    catalog
        .set_move_step(&m.id, MoveStep::Target, None, None)
        .await?;
    if m.step == MoveStep::Queued
        && let Err(why) = target_is_free(runner, e).await
    {
        // Nothing on the target was touched: a retry checks again, and the undo leaves the
        // target's database alone.
        catalog
            .set_move_step(&m.id, MoveStep::Queued, None, None)
            .await?;
        return Err(why);
    }
    let engine = runner.engine(e.db.engine)?;
    engine
        .drop_database(&e.target_admin, &e.db.physical_db, &e.db.roles())
        .await?;
    catalog.forget_kept_sources(&e.db.id, &e.target.id).await?;
    let tenant = catalog
        .tenant_by_id(&e.db.tenant_id)
        .await?
        .ok_or_else(|| JobError::permanent("the tenant is gone"))?;
    crate::provision::build_on(runner, &tenant, &e.db, &e.target, e.db.version)
        .await
        .map_err(|why| JobError::permanent(format!("building the target database: {why}")))
}

/// Before a move first touches its target: a database of that name there that is not a copy
/// an earlier move of this one kept is someone else's (a MySQL database is named as clients
/// name it, so an operator's server may hold one), and the move stops without touching it. A
/// move cut off during this check resumes past it (it is then at `target`).
async fn target_is_free(runner: &Runner, e: &Ends) -> Result<(), JobError> {
    let engine = runner.engine(e.db.engine)?;
    if !engine
        .database_exists(&e.target_admin, &e.db.physical_db)
        .await?
    {
        return Ok(());
    }
    let kept = runner.catalog.kept_sources(&e.db.tenant_id).await?;
    if kept
        .iter()
        .any(|k| k.tenant_database_id == e.db.id && k.from_server_id == e.target.id)
    {
        return Ok(());
    }
    Err(JobError::permanent(format!(
        "server '{}' already holds a database named '{}' that is not this tenant's; tdb leaves \
         it alone",
        e.target.name, e.db.physical_db
    )))
}

/// Step 3: replication started and every table caught up with its initial copy. `Err`
/// (permanent) when replication reported errors: the caller falls back.
async fn sync(runner: &Runner, e: &Ends, moves: &dyn DatabaseMoves) -> Result<(), JobError> {
    moves
        .start_replication(&e.of())
        .await
        .map_err(|err| JobError::permanent(format!("replication could not start: {err}")))?;
    let started = Instant::now();
    loop {
        let (total, ready, error) = moves.replication_state(&e.of()).await?;
        if let Some(error) = error {
            return Err(JobError::permanent(format!("replication failed: {error}")));
        }
        if total > 0 && ready == total {
            return Ok(());
        }
        if started.elapsed() > runner.config.move_sync_timeout {
            return Err(JobError::permanent(format!(
                "replication had copied {ready} of {total} tables after {} s",
                runner.config.move_sync_timeout.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Replication failed: removes it, records why, and carries on with a dump and restore.
async fn fall_back(
    runner: &Runner,
    m: &Move,
    e: &Ends,
    moves: &dyn DatabaseMoves,
    why: &str,
) -> Result<MoveMethod, JobError> {
    tracing::warn!(move_id = %m.id, error = why, "replication failed; the move falls back to dump and restore");
    moves.stop_replication(&e.of()).await?;
    runner
        .catalog
        .set_move_step(
            &m.id,
            m.step,
            Some(MoveMethod::Dump),
            Some(&format!("falling back to dump and restore: {why}")),
        )
        .await?;
    Ok(MoveMethod::Dump)
}

/// Step 4: hold, drain, fence, catch up (or dump and restore), check, switch, release.
async fn cutover(
    runner: &Runner,
    m: &Move,
    e: &Ends,
    moves: &dyn DatabaseMoves,
    mut method: MoveMethod,
) -> Result<(), JobError> {
    let catalog = &runner.catalog;
    catalog
        .move_tenant(
            &m.tenant_id,
            &[TenantStatus::Syncing],
            TenantStatus::Migrating,
        )
        .await?;
    let held = Instant::now();
    catalog.hold_tenant(&m.tenant_id, HOLD_MS).await?;
    // The hold reaches the proxies by notification: a transaction that passed a gate just
    // before has this long to reach the source, where draining sees it.
    tokio::time::sleep(HOLD_REACHES_PROXIES).await;
    let roles = e.login_roles();
    let drained = drain(runner, e, moves, &roles).await?;
    moves
        .fence(&e.source_admin, &e.db.physical_db, &roles)
        .await?;
    if method == MoveMethod::Replication {
        let token = tdb_core::ids::random_hex(8);
        let fenced = Instant::now();
        let caught_up = async {
            moves.mark_and_wait(&e.of(), &token, CATCH_UP).await?;
            moves.copy_sequences(&e.of()).await
        };
        match caught_up.await {
            Ok(sequences) => {
                let note = format!(
                    "source fenced after {drained} ms of draining; target caught up and \
                     {sequences} sequences copied in {} ms",
                    fenced.elapsed().as_millis()
                );
                catalog
                    .set_move_step(&m.id, MoveStep::Cutover, None, Some(&note))
                    .await?;
            }
            Err(err) => {
                method = fall_back(runner, m, e, moves, &err.to_string()).await?;
            }
        }
    }
    if method == MoveMethod::Dump {
        dump_and_restore(runner, m, e, drained).await?;
    }
    verify(runner, &m.id, e, moves).await?;
    let held_ms = i32::try_from(held.elapsed().as_millis()).unwrap_or(i32::MAX);
    let m = catalog.find_move(&m.id).await?;
    if let Err(err) = catalog.switch_move(&m, held_ms).await {
        let _ = catalog.release_tenant(&m.tenant_id).await;
        return Err(JobError::from(err).context("switching the route"));
    }
    let _ = catalog.release_tenant(&m.tenant_id).await;
    tracing::info!(move_id = %m.id, held_ms, method = %method, "move switched");
    Ok(())
}

/// Waits for the transactions open on the source to end, up to the drain deadline; returns how
/// long it waited (ms). The rest are ended by the fence.
async fn drain(
    runner: &Runner,
    e: &Ends,
    moves: &dyn DatabaseMoves,
    roles: &[&str],
) -> Result<u128, JobError> {
    let started = Instant::now();
    while started.elapsed() < runner.config.move_drain {
        let open = moves
            .open_transactions(&e.source_admin, &e.db.physical_db, roles)
            .await?;
        if open == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(started.elapsed().as_millis())
}

/// The fallback: the fenced source dumped straight into an empty target, the hold renewed
/// until it is done.
async fn dump_and_restore(
    runner: &Runner,
    m: &Move,
    e: &Ends,
    drained_ms: u128,
) -> Result<(), JobError> {
    let catalog = &runner.catalog;
    let engine = runner.engine(e.db.engine)?;
    engine
        .create_restore_target(
            &e.target_admin,
            &RestoreTarget {
                name: &e.db.physical_db,
                owner_role: &e.db.owner_role,
                app_role: &e.db.app_role,
                read_role: e.db.read_role.as_deref(),
            },
        )
        .await?;
    let source = owner_access(&runner.master_key, &e.source, &e.db)?;
    let target = owner_access(&runner.master_key, &e.target, &e.db)?;
    let renew = {
        let (catalog, tenant) = (catalog.clone(), m.tenant_id.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(HOLD_MS / 3)).await;
                let _ = catalog.hold_tenant(&tenant, HOLD_MS).await;
            }
        })
    };
    let copied = async {
        let dump = engine.dump(&source).await?;
        let (restored, finished) = tokio::join!(engine.restore(&target, dump.output), dump.finish);
        restored?;
        finished
    };
    let outcome = copied.await;
    renew.abort();
    outcome.map_err(|err| JobError::from(err).context("dump and restore"))?;
    catalog
        .set_move_step(
            &m.id,
            MoveStep::Cutover,
            None,
            Some(&format!(
                "source fenced after {drained_ms} ms of draining; dumped and restored behind \
                 the hold"
            )),
        )
        .await?;
    Ok(())
}

/// Every table's row count and checksum, and the schema version, must be the same on both.
async fn verify(
    runner: &Runner,
    move_id: &str,
    e: &Ends,
    moves: &dyn DatabaseMoves,
) -> Result<(), JobError> {
    let started = Instant::now();
    let (source, target) = tokio::join!(
        moves.table_sums(&e.source_admin, &e.db.physical_db),
        moves.table_sums(&e.target_admin, &e.db.physical_db)
    );
    let (source, target) = (source?, target?);
    if source != target {
        let differ: Vec<&String> = source
            .iter()
            .filter(|(t, sums)| target.get(*t) != Some(sums))
            .map(|(t, _)| t)
            .chain(target.keys().filter(|t| !source.contains_key(*t)))
            .collect();
        return Err(JobError::permanent(format!(
            "the target differs from the source in {}",
            differ
                .iter()
                .map(|t| t.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let engine = runner.engine(e.db.engine)?;
    let sql = engine.require_sql()?;
    let source_owner = owner_access(&runner.master_key, &e.source, &e.db)?;
    let target_owner = owner_access(&runner.master_key, &e.target, &e.db)?;
    let (from, to) = tokio::join!(
        sql.schema_version(&source_owner),
        sql.schema_version(&target_owner)
    );
    let (from, to) = (from?, to?);
    if from != to {
        return Err(JobError::permanent(format!(
            "the source is at schema version {from} and the target at {to} (a deployment ran \
             during the move)"
        )));
    }
    runner
        .catalog
        .set_move_step(
            move_id,
            MoveStep::Cutover,
            None,
            Some(&format!(
                "{} tables match in count and checksum ({} ms)",
                source.len(),
                started.elapsed().as_millis()
            )),
        )
        .await?;
    Ok(())
}

/// Step 5: replication removed, the source kept for the undo window (a dedicated source server
/// stopped), the move completed.
async fn finish(runner: &Runner, m: &Move) -> Result<(), JobError> {
    let catalog = &runner.catalog;
    let db = catalog.tenant_database(&m.tenant_database_id).await?;
    let source = catalog.find_server(&m.from_server_id).await?;
    let target = catalog.find_server(&m.to_server_id).await?;
    if m.method() == Some(MoveMethod::Replication) {
        let engine = runner.engine(db.engine)?;
        let moves = engine.require_moves()?;
        let (source_admin, target_admin) = (
            admin_endpoint(&runner.master_key, &source)?,
            admin_endpoint(&runner.master_key, &target)?,
        );
        moves
            .stop_replication(&MoveEnds {
                source: &source_admin,
                target: &target_admin,
                database: &db.physical_db,
                name: &replication_name(&m.id),
            })
            .await
            .map_err(|e| JobError::from(e).context("removing the move's replication"))?;
    }
    if crate::dedicated::is_ours(runner, &source) {
        crate::dedicated::stop(runner, &source).await?;
    }
    let keep = chrono::Duration::from_std(runner.config.move_keep_source)
        .unwrap_or(chrono::Duration::hours(24));
    catalog
        .complete_move(&m.id, chrono::Utc::now() + keep)
        .await?;
    let _ = catalog.release_tenant(&m.tenant_id).await;
    tracing::info!(move_id = %m.id, "move completed");
    Ok(())
}

/// A move that did not switch: the source gets its logins back and the hold ends, the target
/// goes, and the tenant is `ready` on its source with the error recorded.
async fn undo(runner: &Runner, m: &Move, why: &str) -> Result<(), JobError> {
    let catalog = &runner.catalog;
    let current = catalog.find_move(&m.id).await?;
    match current.step {
        MoveStep::Switched => return finish(runner, &current).await,
        MoveStep::Completed | MoveStep::Failed => return Ok(()),
        _ => {}
    }
    tracing::warn!(move_id = %m.id, error = why, "move failed; the tenant stays on its source");
    let db = catalog.tenant_database(&m.tenant_database_id).await?;
    let source = catalog.find_server(&m.from_server_id).await?;
    let target = catalog.find_server(&m.to_server_id).await?;
    let engine = runner.engine(db.engine)?;
    let source_admin = admin_endpoint(&runner.master_key, &source)?;
    if let Some(moves) = engine.moves() {
        let mut roles = vec![db.app_role.as_str()];
        roles.extend(db.read_role.as_deref());
        moves.unfence(&source_admin, &roles).await?;
        if let Ok(target_admin) = admin_endpoint(&runner.master_key, &target)
            && target.port != 0
        {
            let ends = MoveEnds {
                source: &source_admin,
                target: &target_admin,
                database: &db.physical_db,
                name: &replication_name(&m.id),
            };
            if let Err(e) = moves.stop_replication(&ends).await {
                tracing::warn!(move_id = %m.id, error = %e, "could not remove the move's replication");
            }
        }
    }
    let _ = catalog.release_tenant(&m.tenant_id).await;
    // The target goes, never the live database: the switch did not happen, so it is the source.
    // A move that stopped while queued never touched a shared target: what is there is not its.
    if db.server_id != target.id {
        if crate::dedicated::is_ours(runner, &target) {
            crate::dedicated::destroy(runner, &target).await?;
            catalog.delete_server(&target.id).await?;
        } else if current.step != MoveStep::Queued
            && let Ok(target_admin) = admin_endpoint(&runner.master_key, &target)
        {
            engine
                .drop_database(&target_admin, &db.physical_db, &db.roles())
                .await?;
        }
    }
    catalog.fail_move(m, why).await?;
    Ok(())
}

/// Drops the sources that completed moves kept past their undo window (the schedule's work).
pub async fn drop_kept_sources(runner: &Runner) -> Result<(), JobError> {
    for m in runner.catalog.sources_to_drop().await? {
        drop_source(runner, &m).await?;
    }
    Ok(())
}

/// Drops every copy the tenant's moves still keep (its hard delete).
pub async fn drop_sources_of(runner: &Runner, tenant_id: &str) -> Result<(), JobError> {
    for m in runner.catalog.kept_sources(tenant_id).await? {
        drop_source(runner, &m).await?;
    }
    Ok(())
}

/// Drops the copy a completed move kept: a shared server's copy of the database with its roles,
/// or a whole dedicated server.
async fn drop_source(runner: &Runner, m: &Move) -> Result<(), JobError> {
    let catalog = &runner.catalog;
    let db = catalog.tenant_database(&m.tenant_database_id).await?;
    // Moved back onto that server since: the copy there is the live one.
    if db.server_id != m.from_server_id {
        let source = catalog.find_server(&m.from_server_id).await?;
        if crate::dedicated::is_ours(runner, &source) {
            crate::dedicated::destroy(runner, &source).await?;
            catalog.delete_server(&source.id).await?;
        } else {
            let admin = admin_endpoint(&runner.master_key, &source)?;
            runner
                .engine(db.engine)?
                .drop_database(&admin, &db.physical_db, &db.roles())
                .await?;
        }
    }
    catalog.source_dropped(&m.id).await?;
    tracing::info!(move_id = %m.id, "the moved database's old copy was dropped");
    Ok(())
}
