//! Migrations of a tenant database. MariaDB commits DDL as it goes, so a migration cannot be
//! one transaction as PostgreSQL's is. Instead tdb's record of the database ([`meta`]) counts
//! the statements done: each statement runs in a transaction that also records it done (one
//! commit for row statements; DDL commits itself, and the record follows at once), so a run
//! cut off anywhere resumes at the next statement. A crash can still fall in the instant
//! between a DDL statement's own commit and its record; for that, before each statement the
//! record keeps a fingerprint of the schema ([`fingerprint`]). A run that finds one left
//! behind compares it with the schema as it is: changed, the statement ran, and is counted
//! done; unchanged, it did not (MariaDB's DDL is atomic), and runs. So no statement runs twice.
//! A statement that fails leaves the count where it was: the same migration, fixed, resumes
//! there. The version moves only once every statement is done.
//!
//! Migrations of one database wait for each other on a named lock. A dry run applies the
//! statements to a scratch copy of the schema instead (see [`dry_run`]), and leaves the
//! database and its record alone.

use std::time::Duration;

use sqlx::Connection;
use sqlx::mysql::MySqlConnection;

use super::export::{self, Definer};
use super::quote::{ANY_HOST, account, ident, literal, native_hash};
use super::session::end_connection;
use super::tenant::OWNER_PRIVILEGES;
use super::{admin_access, connect, connect_admin, exec, from_sqlx, meta, quote};
use crate::AdminEndpoint;
use crate::engine::{DatabaseAccess, EngineError, Migration, MigrationPlan, Result};

/// How long past the plan's timeout tdb waits before ending the migration's connection itself.
const GRACE: Duration = Duration::from_secs(2);

pub async fn migrate(plan: &MigrationPlan<'_>) -> Result<Migration> {
    if plan.dry_run {
        return dry_run(plan).await;
    }
    let mut conn = connect(plan.owner).await?;
    let id = connection_id(&mut conn).await?;
    // Should the caller stop waiting (a job over its time limit), the connection is ended too,
    // rather than left running a statement with its locks.
    let mut guard = EndOnDrop {
        stopper: Some(admin_access(plan.admin, "")),
        id,
        user: plan.owner.user.clone(),
    };
    let work = migrate_on(&mut conn, plan);
    let result = tokio::time::timeout(plan.timeout + GRACE, work).await;
    match result {
        Ok(result) => {
            guard.stopper = None;
            let _ = conn.close().await;
            result
        }
        Err(_) => {
            drop(conn);
            if let Some(stopper) = guard.stopper.take() {
                end_connection(&stopper, id, &plan.owner.user).await;
            }
            Err(EngineError::Timeout(plan.timeout))
        }
    }
}

async fn connection_id(conn: &mut MySqlConnection) -> Result<i64> {
    sqlx::query_scalar("SELECT CAST(CONNECTION_ID() AS SIGNED)")
        .fetch_one(conn)
        .await
        .map_err(from_sqlx)
}

/// Ends a migration's connection when the migration is dropped before it finished.
struct EndOnDrop {
    stopper: Option<DatabaseAccess>,
    id: i64,
    user: String,
}

impl Drop for EndOnDrop {
    fn drop(&mut self) {
        if let Some(stopper) = self.stopper.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let (id, user) = (self.id, std::mem::take(&mut self.user));
            runtime.spawn(async move { end_connection(&stopper, id, &user).await });
        }
    }
}

async fn migrate_on(conn: &mut MySqlConnection, plan: &MigrationPlan<'_>) -> Result<Migration> {
    let db = &plan.owner.database;
    let lock = meta::lock_name(&meta::read(conn, db).await?);
    let secs = plan.timeout.as_secs_f64().max(0.001);
    exec(conn, format!("SET SESSION max_statement_time = {secs:.3}")).await?;
    let got: Option<i64> = sqlx::query_scalar("SELECT CAST(GET_LOCK(?, ?) AS SIGNED)")
        .bind(&lock)
        .bind(plan.timeout.as_secs_f64())
        .fetch_one(&mut *conn)
        .await
        .map_err(from_sqlx)?;
    if got != Some(1) {
        return Err(EngineError::Busy(format!(
            "another migration of database {db} is running"
        )));
    }
    let result = apply(conn, plan).await;
    let _ = exec(conn, format!("DO RELEASE_LOCK({})", literal(&lock))).await;
    result
}

async fn apply(conn: &mut MySqlConnection, plan: &MigrationPlan<'_>) -> Result<Migration> {
    let db = &plan.owner.database;
    let record = meta::read(conn, db).await?;
    if record.version >= plan.version {
        return Ok(Migration::AlreadyAt(record.version));
    }
    if record.version != plan.from {
        return Ok(Migration::Mismatch(record.version));
    }
    let mut start = resume_at(db, &record, plan)?;
    if let Some(before) = &record.pending
        && start < plan.statements.len()
        && fingerprint(conn, db).await? != *before
    {
        // The statement after the last counted ran before a crash cut off its record.
        start += 1;
        let done = i32::try_from(start).unwrap_or(i32::MAX);
        meta::set_progress(conn, db, plan.version, done).await?;
    }
    for (i, statement) in plan.statements.iter().enumerate().skip(start) {
        let done = i32::try_from(i + 1).unwrap_or(i32::MAX);
        let before = fingerprint(conn, db).await?;
        meta::set_pending(conn, db, plan.version, done - 1, &before).await?;
        exec(conn, "START TRANSACTION").await?;
        if let Err(e) = exec(conn, statement.as_str()).await {
            let _ = exec(conn, "ROLLBACK").await;
            return Err(in_statement(e, statement));
        }
        meta::set_progress(conn, db, plan.version, done).await?;
        exec(conn, "COMMIT").await?;
    }
    meta::set_version(conn, db, plan.version).await?;
    // Committed explicitly: a statement may have turned autocommit off for the session.
    exec(conn, "COMMIT").await?;
    Ok(Migration::Applied {
        from: record.version,
    })
}

/// A digest of everything DDL can change in database `db` as `information_schema` shows it:
/// tables and their options, columns, indexes, constraints, views, triggers, routines and
/// partitions. Row counts and `AUTO_INCREMENT` positions are left out (statements that change
/// only those change nothing a second run would trip on).
pub async fn fingerprint(conn: &mut MySqlConnection, db: &str) -> Result<String> {
    const PARTS: [&str; 9] = [
        "SELECT CONCAT_WS('|', table_name, table_type, engine, table_collation, create_options, \
         table_comment) AS v FROM information_schema.tables WHERE table_schema = ?",
        "SELECT CONCAT_WS('|', table_name, column_name, ordinal_position, column_type, \
         is_nullable, IFNULL(column_default, '~'), extra, IFNULL(collation_name, '~'), \
         column_comment, IFNULL(generation_expression, '~')) AS v \
         FROM information_schema.columns WHERE table_schema = ?",
        "SELECT CONCAT_WS('|', table_name, index_name, seq_in_index, column_name, non_unique, \
         IFNULL(sub_part, '~'), index_type, IFNULL(collation, '~')) AS v \
         FROM information_schema.statistics WHERE table_schema = ?",
        "SELECT CONCAT_WS('|', table_name, constraint_name, constraint_type) AS v \
         FROM information_schema.table_constraints WHERE constraint_schema = ?",
        "SELECT CONCAT_WS('|', table_name, constraint_name, check_clause) AS v \
         FROM information_schema.check_constraints WHERE constraint_schema = ?",
        "SELECT CONCAT_WS('|', table_name, constraint_name, referenced_table_name, update_rule, \
         delete_rule) AS v FROM information_schema.referential_constraints \
         WHERE constraint_schema = ?",
        "SELECT CONCAT_WS('|', table_name, view_definition, check_option) AS v \
         FROM information_schema.views WHERE table_schema = ?",
        "SELECT CONCAT_WS('|', trigger_name, event_manipulation, event_object_table, \
         action_timing, action_statement) AS v \
         FROM information_schema.triggers WHERE trigger_schema = ?",
        "SELECT CONCAT_WS('|', routine_name, routine_type, routine_definition) AS v \
         FROM information_schema.routines WHERE routine_schema = ?",
    ];
    use sha2::Digest as _;
    let mut digest = sha2::Sha256::new();
    for (i, part) in PARTS.iter().enumerate() {
        let mut rows: Vec<Option<String>> = sqlx::query_scalar(*part)
            .bind(db)
            .fetch_all(&mut *conn)
            .await
            .map_err(from_sqlx)?;
        rows.sort();
        digest.update(format!("#{i}\n"));
        for row in rows {
            digest.update(row.unwrap_or_default());
            digest.update("\n");
        }
    }
    Ok(hex::encode(digest.finalize()))
}

/// The statement to start at: the first, or the one after the last done by an earlier run of
/// this migration. Progress towards another version is an error: those statements were other
/// statements.
fn resume_at(db: &str, record: &meta::Record, plan: &MigrationPlan<'_>) -> Result<usize> {
    let done = usize::try_from(record.done).unwrap_or(0);
    match record.target {
        None => Ok(0),
        Some(target) if target == plan.version && done <= plan.statements.len() => Ok(done),
        Some(target) => Err(EngineError::Query {
            message: format!(
                "database {db} is partway through a migration to version {target} ({done} \
                 statements done); finish that migration before another"
            ),
            sqlstate: "HY000".into(),
            detail: None,
            position: None,
        }),
    }
}

/// The error of a failed statement, saying which statement it was.
fn in_statement(e: EngineError, statement: &str) -> EngineError {
    match e {
        EngineError::Query {
            message,
            sqlstate,
            detail,
            position,
        } => EngineError::Query {
            message: format!("{message} (in: {})", excerpt(statement)),
            sqlstate,
            detail,
            position,
        },
        other => other,
    }
}

fn excerpt(statement: &str) -> String {
    let one_line = statement.split_whitespace().collect::<Vec<_>>().join(" ");
    match one_line.char_indices().nth(80) {
        Some((i, _)) => format!("{}…", &one_line[..i]),
        None => one_line,
    }
}

/// A dry run: the checks of a real run, then the statements (those a real run would run) on a
/// scratch copy of the database's schema, made and dropped by the administrator. They run as a
/// scratch user with the owner's privileges on the copy alone, so a statement that names the
/// real database is refused rather than run on it.
async fn dry_run(plan: &MigrationPlan<'_>) -> Result<Migration> {
    let db = &plan.owner.database;
    let mut owner = connect(plan.owner).await?;
    let record = meta::read(&mut owner, db).await;
    let _ = owner.close().await;
    let record = record?;
    if record.version >= plan.version {
        return Ok(Migration::AlreadyAt(record.version));
    }
    if record.version != plan.from {
        return Ok(Migration::Mismatch(record.version));
    }
    let start = resume_at(db, &record, plan)?;
    let scratch = Scratch::new(plan.owner);
    let result = async {
        scratch.make(plan.admin).await?;
        let work = scratch.run(&plan.statements[start..], plan.timeout);
        match tokio::time::timeout(plan.timeout + GRACE, work).await {
            Ok(result) => result,
            Err(_) => Err(EngineError::Timeout(plan.timeout)),
        }
    }
    .await;
    scratch.remove(plan.admin).await;
    result.map(|()| Migration::WouldApply {
        from: record.version,
    })
}

/// A scratch database and the user that runs a dry run's statements in it.
struct Scratch {
    source: DatabaseAccess,
    access: DatabaseAccess,
}

impl Scratch {
    fn new(source: &DatabaseAccess) -> Self {
        let name = format!("tdb_dry_{}", &tdb_core::secrets::new_password("")[..16]);
        let access = DatabaseAccess {
            database: name.clone(),
            user: name,
            password: tdb_core::secrets::new_password(""),
            ..source.clone()
        };
        Self {
            source: source.clone(),
            access,
        }
    }

    /// Makes the database, copies the source's schema into it (as the administrator, objects
    /// defined by the scratch user) and makes the user.
    async fn make(&self, admin: &AdminEndpoint) -> Result<()> {
        let user = account(&self.access.user, ANY_HOST);
        let mut conn = connect(&admin_access(admin, &self.source.database)).await?;
        let ddl = export::schema_ddl(&mut conn, &self.source.database, Definer::As(&user)).await;
        let _ = conn.close().await;
        let ddl = ddl?;
        let mut conn = connect_admin(admin).await?;
        for sql in [
            format!(
                "CREATE DATABASE {} CHARACTER SET utf8mb4",
                ident(&self.access.database)
            ),
            format!(
                "CREATE USER {user} IDENTIFIED BY PASSWORD {} WITH MAX_USER_CONNECTIONS 2",
                literal(&native_hash(&self.access.password))
            ),
            format!(
                "GRANT {OWNER_PRIVILEGES} ON {}.* TO {user}",
                quote::grant_db(&self.access.database)
            ),
            format!("USE {}", ident(&self.access.database)),
            "SET SESSION foreign_key_checks = 0".to_string(),
        ]
        .into_iter()
        .chain(ddl)
        {
            exec(&mut conn, sql).await?;
        }
        let _ = conn.close().await;
        Ok(())
    }

    /// Runs `statements` in the copy. The copy has the schema and none of the rows, so foreign
    /// keys are not checked: a statement is judged against the schema, not the data (one that
    /// fails only on the tenant's rows, such as a unique index over duplicates, passes here).
    async fn run(&self, statements: &[String], timeout: Duration) -> Result<()> {
        let mut conn = connect(&self.access).await?;
        let secs = timeout.as_secs_f64().max(0.001);
        exec(
            &mut conn,
            format!("SET SESSION max_statement_time = {secs:.3}, foreign_key_checks = 0"),
        )
        .await?;
        for statement in statements {
            exec(&mut conn, statement.as_str())
                .await
                .map_err(|e| in_statement(e, statement))?;
        }
        let _ = conn.close().await;
        Ok(())
    }

    /// Drops the database and the user (ending the user's sessions first).
    async fn remove(&self, admin: &AdminEndpoint) {
        let user = [self.access.user.as_str()];
        let dropped = super::tenant::drop_database(admin, &self.access.database, &user).await;
        if let Err(e) = dropped {
            tracing::warn!(database = %self.access.database, error = %e, "could not drop a dry run's scratch database");
        }
    }
}
