//! Tenant databases and their migrations. The owner role owns every object and is used only by
//! tdb, logging in as itself: DDL never runs under `SET ROLE` from the administrator, where a
//! `DO` block could `RESET ROLE` back to superuser. Applications get a second role with row
//! privileges only (through default privileges), so "no DDL on tenants" holds in the database
//! itself. The schema version lives in `tdb_meta.schema_version`, updated in the migration's
//! own transaction.

use sqlx::postgres::PgConnection;
use sqlx::{Connection, Row};

use std::time::Duration;

use super::{admin_access, connect, exec, from_sqlx, quote_ident, quote_literal};
use crate::AdminEndpoint;
use crate::engine::{
    DatabaseAccess, EngineError, Migration, MigrationPlan, RestoreTarget, Result, TenantSpec,
};

/// A login role with no powers beyond its grants, with a SCRAM verifier (never the password).
pub(super) fn role_sql(name: &str, password: &str, limit: u32) -> String {
    let verifier = tdb_core::secrets::scram_verifier(password);
    format!(
        "CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS \
         NOINHERIT CONNECTION LIMIT {limit} PASSWORD {}",
        quote_ident(name),
        quote_literal(&verifier)
    )
}

pub async fn secure_server(server: &AdminEndpoint, extra: &[&str]) -> Result<()> {
    let mut admin = connect(&admin_access(server, "postgres")).await?;
    for db in ["postgres", "template1"].iter().chain(extra) {
        exec(
            &mut admin,
            format!("REVOKE ALL ON DATABASE {} FROM PUBLIC", quote_ident(db)),
        )
        .await?;
    }
    let _ = admin.close().await;
    // Databases copied from template1 start with the shared catalogs closed.
    super::visibility::hide_in(server, "template1").await
}

pub async fn create(server: &AdminEndpoint, spec: &TenantSpec<'_>) -> Result<()> {
    let (db, owner, app, read) = (
        quote_ident(spec.name),
        quote_ident(spec.owner_role),
        quote_ident(spec.app_role),
        quote_ident(spec.read_role),
    );
    let built = async {
        let mut admin = connect(&admin_access(server, "postgres")).await?;
        for sql in [
            role_sql(spec.owner_role, spec.owner_password, 5),
            role_sql(spec.app_role, spec.app_password, spec.connection_limit),
            role_sql(spec.read_role, spec.read_password, spec.connection_limit),
            // Privileges are the wall; this default only makes a write fail sooner and clearer.
            format!("ALTER ROLE {read} SET default_transaction_read_only = on"),
            format!("CREATE DATABASE {db} OWNER {owner}"),
            format!("REVOKE ALL ON DATABASE {db} FROM PUBLIC"),
            format!("GRANT CONNECT ON DATABASE {db} TO {app}, {read}"),
        ] {
            exec(&mut admin, sql).await?;
        }
        let _ = admin.close().await;
        let mut inside = connect(&admin_access(server, spec.name)).await?;
        exec(&mut inside, inside_sql(&owner, &app, &read)).await?;
        super::visibility::hide(&mut inside).await?;
        let _ = inside.close().await;
        Ok(())
    };
    if let Err(e) = built.await {
        // Leave nothing behind, whichever step failed: a failed create is retried from scratch.
        let _ = drop_all(server, spec).await;
        return Err(e);
    }
    Ok(())
}

async fn drop_all(server: &AdminEndpoint, spec: &TenantSpec<'_>) -> Result<()> {
    let mut admin = connect(&admin_access(server, "postgres")).await?;
    let db = quote_ident(spec.name);
    exec(
        &mut admin,
        format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"),
    )
    .await?;
    for role in [spec.read_role, spec.app_role, spec.owner_role] {
        exec(
            &mut admin,
            format!("DROP ROLE IF EXISTS {}", quote_ident(role)),
        )
        .await?;
    }
    let _ = admin.close().await;
    Ok(())
}

/// Privileges inside a new tenant database: the owner owns `public` and `tdb_meta`; the
/// application role may use `public` and gets row privileges on what the owner creates; the read
/// role gets SELECT only.
fn inside_sql(owner: &str, app: &str, read: &str) -> String {
    format!(
        "{}
         CREATE SCHEMA tdb_meta AUTHORIZATION {owner};
         REVOKE ALL ON SCHEMA tdb_meta FROM PUBLIC;
         CREATE TABLE tdb_meta.schema_version (version integer NOT NULL);
         INSERT INTO tdb_meta.schema_version VALUES (0);
         ALTER TABLE tdb_meta.schema_version OWNER TO {owner};",
        privileges_sql(owner, app, Some(read))
    )
}

/// The privilege model without `tdb_meta`: what a restore target starts with, before the dump
/// brings the schema, the data and `tdb_meta` (its recorded version). The application role uses
/// `public` with row privileges; the read role (when there is one) gets SELECT only.
fn privileges_sql(owner: &str, app: &str, read: Option<&str>) -> String {
    let users = read.map_or_else(|| app.to_string(), |read| format!("{app}, {read}"));
    let read_grants = read.map_or_else(String::new, |read| {
        format!(
            "ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA public
                 GRANT SELECT ON TABLES TO {read};
             ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA public
                 GRANT SELECT ON SEQUENCES TO {read};"
        )
    });
    format!(
        "ALTER SCHEMA public OWNER TO {owner};
         REVOKE ALL ON SCHEMA public FROM PUBLIC;
         GRANT USAGE ON SCHEMA public TO {users};
         ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA public
             GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {app};
         ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA public
             GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO {app};
         {read_grants}
         ALTER DEFAULT PRIVILEGES FOR ROLE {owner} REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;
         ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA public
             GRANT EXECUTE ON FUNCTIONS TO {users};"
    )
}

/// An empty database for a restore: owned by the tenant's owner role, reachable by its
/// application (and read) role, with the privilege model in place so every object the dump
/// creates (as the owner) gets the same grants as the original.
pub async fn create_restore_target(server: &AdminEndpoint, spec: &RestoreTarget<'_>) -> Result<()> {
    let (db, owner, app) = (
        quote_ident(spec.name),
        quote_ident(spec.owner_role),
        quote_ident(spec.app_role),
    );
    let read = spec.read_role.map(quote_ident);
    let users = read
        .as_ref()
        .map_or_else(|| app.clone(), |read| format!("{app}, {read}"));
    let built = async {
        let mut admin = connect(&admin_access(server, "postgres")).await?;
        for sql in [
            format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"),
            format!("CREATE DATABASE {db} OWNER {owner}"),
            format!("REVOKE ALL ON DATABASE {db} FROM PUBLIC"),
            format!("GRANT CONNECT ON DATABASE {db} TO {users}"),
        ] {
            exec(&mut admin, sql).await?;
        }
        let _ = admin.close().await;
        let mut inside = connect(&admin_access(server, spec.name)).await?;
        exec(&mut inside, privileges_sql(&owner, &app, read.as_deref())).await?;
        super::visibility::hide(&mut inside).await?;
        let _ = inside.close().await;
        Ok(())
    };
    if let Err(e) = built.await {
        let _ = drop_only(server, spec.name).await;
        return Err(e);
    }
    Ok(())
}

async fn drop_only(server: &AdminEndpoint, name: &str) -> Result<()> {
    let mut admin = connect(&admin_access(server, "postgres")).await?;
    let result = exec(
        &mut admin,
        format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote_ident(name)),
    )
    .await;
    let _ = admin.close().await;
    result
}

async fn current_version(conn: &mut PgConnection, lock: bool) -> Result<i32> {
    let sql = if lock {
        "SELECT version FROM tdb_meta.schema_version FOR UPDATE"
    } else {
        "SELECT version FROM tdb_meta.schema_version"
    };
    let row = sqlx::query(sql)
        .fetch_one(&mut *conn)
        .await
        .map_err(from_sqlx)?;
    row.try_get::<i32, _>(0).map_err(from_sqlx)
}

pub async fn schema_version(owner: &DatabaseAccess) -> Result<i32> {
    let mut conn = connect(owner).await?;
    let v = current_version(&mut conn, false).await;
    let _ = conn.close().await;
    v
}

pub async fn migrate(plan: &MigrationPlan<'_>) -> Result<Migration> {
    let mut conn = connect(plan.owner).await?;
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut conn)
        .await
        .map_err(from_sqlx)?;
    // Should the caller stop waiting (a job over its time limit), the backend is ended too,
    // rather than left running the migration with its locks.
    let mut guard = StopOnDrop {
        admin: Some(plan.admin.clone()),
        pid,
        role: plan.owner.user.clone(),
    };
    let work = migrate_on(&mut conn, plan);
    // The server's statement_timeout fires first; tdb's own deadline is for statements that
    // lift it (a `DO` block may) or ignore the cancel.
    match tokio::time::timeout(plan.timeout + Duration::from_secs(2), work).await {
        Ok(result) => {
            guard.admin = None;
            let _ = conn.close().await;
            result
        }
        Err(_) => {
            drop(conn);
            if let Some(admin) = guard.admin.take() {
                stop_backend(&admin, pid, &plan.owner.user).await;
            }
            Err(EngineError::Timeout(plan.timeout))
        }
    }
}

/// Ends a migration's backend when the migration is dropped before it finished.
struct StopOnDrop {
    admin: Option<AdminEndpoint>,
    pid: i32,
    role: String,
}

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        if let Some(admin) = self.admin.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let (pid, role) = (self.pid, std::mem::take(&mut self.role));
            runtime.spawn(async move { stop_backend(&admin, pid, &role).await });
        }
    }
}

/// Ends a migration's backend that outlived its deadline, as the administrator (the owner role
/// cannot be trusted for it: its statements may have changed its password).
async fn stop_backend(admin: &AdminEndpoint, pid: i32, role: &str) {
    let stopped = async {
        let mut conn = connect(&admin_access(admin, "postgres")).await?;
        sqlx::query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid = $1 AND usename = $2",
        )
        .bind(pid)
        .bind(role)
        .execute(&mut conn)
        .await
        .map_err(from_sqlx)?;
        let _ = conn.close().await;
        Ok::<(), EngineError>(())
    };
    if let Err(e) = stopped.await {
        tracing::warn!(pid, error = %e, "could not end a migration that outlived its deadline");
    }
}

async fn migrate_on(conn: &mut PgConnection, plan: &MigrationPlan<'_>) -> Result<Migration> {
    let (expected, statements, version, dry_run) =
        (plan.from, plan.statements, plan.version, plan.dry_run);
    let mut tx = conn.begin().await.map_err(from_sqlx)?;
    // The row lock serialises concurrent migrations of one database; the second sees the new
    // version and does nothing.
    let from = current_version(&mut tx, true).await?;
    if from >= version {
        return Ok(Migration::AlreadyAt(from));
    }
    if from != expected {
        return Ok(Migration::Mismatch(from));
    }
    let ms = plan.timeout.as_millis().max(1);
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "SET LOCAL statement_timeout = {ms}"
    )))
    .execute(&mut *tx)
    .await
    .map_err(from_sqlx)?;
    sqlx::raw_sql("SET LOCAL search_path = public")
        .execute(&mut *tx)
        .await
        .map_err(from_sqlx)?;
    for statement in statements {
        sqlx::raw_sql(sqlx::AssertSqlSafe(statement.clone()))
            .execute(&mut *tx)
            .await
            .map_err(|e| match from_sqlx(e) {
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
            })?;
    }
    sqlx::query("UPDATE tdb_meta.schema_version SET version = $1")
        .bind(version)
        .execute(&mut *tx)
        .await
        .map_err(from_sqlx)?;
    if dry_run {
        tx.rollback().await.map_err(from_sqlx)?;
        return Ok(Migration::WouldApply { from });
    }
    tx.commit().await.map_err(from_sqlx)?;
    Ok(Migration::Applied { from })
}

fn excerpt(statement: &str) -> String {
    let one_line = statement.split_whitespace().collect::<Vec<_>>().join(" ");
    match one_line.char_indices().nth(80) {
        Some((i, _)) => format!("{}…", &one_line[..i]),
        None => one_line,
    }
}
