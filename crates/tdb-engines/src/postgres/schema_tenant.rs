//! Provisioned (AutoDB-style) databases: a named schema and a login role of its own, in a
//! database of its own on a shared server, closed to PUBLIC. The role may use and create in its
//! schema only: the schema belongs to the administrator (so the tenant cannot grant it to
//! anyone), the role has no CREATE or TEMP on the database, is not its owner, and starts with
//! `search_path` set to its schema.
//!
//! Each gets a database of its own because some things PostgreSQL shares between everything in
//! one database and cannot be closed by privileges: notification channels above all (`LISTEN`
//! and `NOTIFY` check no privilege, and a `DO` block can run them out of any guard's sight).
//! Databases provisioned before this lived as schemas of one shared database; they keep working
//! there and are dropped the same way.

use sqlx::Connection;

use super::{admin_access, connect, exec, quote_ident};
use crate::AdminEndpoint;
use crate::engine::{Result, SchemaTenantSpec};

/// Creates the database when it does not exist yet, and closes it (and its `public` schema) to
/// PUBLIC. Safe to run again.
async fn ensure_database(server: &AdminEndpoint, database: &str) -> Result<()> {
    let mut admin = connect(&admin_access(server, "postgres")).await?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(database)
            .fetch_one(&mut admin)
            .await
            .map_err(super::from_sqlx)?;
    if !exists {
        let created = exec(
            &mut admin,
            format!("CREATE DATABASE {}", quote_ident(database)),
        )
        .await;
        // Two first tenants at once: the loser finds the database made by the other
        // (42P04, or 23505 when both inserted into pg_database at the same moment).
        if let Err(e) = created
            && !matches!(&e, crate::EngineError::Query { sqlstate, .. }
                if sqlstate == "42P04" || sqlstate == "23505")
        {
            return Err(e);
        }
    }
    exec(
        &mut admin,
        format!(
            "REVOKE ALL ON DATABASE {} FROM PUBLIC",
            quote_ident(database)
        ),
    )
    .await?;
    let _ = admin.close().await;
    let mut inside = connect(&admin_access(server, database)).await?;
    // Notification channels belong to the database: no role may send on them through the
    // function (the proxy refuses the LISTEN and NOTIFY statements too).
    exec(
        &mut inside,
        "REVOKE ALL ON SCHEMA public FROM PUBLIC;
         REVOKE EXECUTE ON FUNCTION pg_catalog.pg_notify(text, text) FROM PUBLIC"
            .into(),
    )
    .await?;
    super::visibility::hide(&mut inside).await?;
    let _ = inside.close().await;
    Ok(())
}

pub async fn create(server: &AdminEndpoint, spec: &SchemaTenantSpec<'_>) -> Result<()> {
    ensure_database(server, spec.database).await?;
    let (db, schema, role) = (
        quote_ident(spec.database),
        quote_ident(spec.schema),
        quote_ident(spec.role),
    );
    let built = async {
        let mut admin = connect(&admin_access(server, "postgres")).await?;
        for sql in [
            super::tenant::role_sql(spec.role, spec.password, spec.connection_limit),
            format!("GRANT CONNECT ON DATABASE {db} TO {role}"),
            format!("ALTER ROLE {role} SET search_path = {schema}"),
        ] {
            exec(&mut admin, sql).await?;
        }
        let _ = admin.close().await;
        let mut inside = connect(&admin_access(server, spec.database)).await?;
        exec(
            &mut inside,
            format!(
                "CREATE SCHEMA {schema};
                 REVOKE ALL ON SCHEMA {schema} FROM PUBLIC;
                 GRANT USAGE, CREATE ON SCHEMA {schema} TO {role};"
            ),
        )
        .await?;
        let _ = inside.close().await;
        Ok(())
    };
    if let Err(e) = built.await {
        // Leave nothing behind: a failed create is retried from scratch under new names.
        let _ = drop(server, spec.database, spec.schema, spec.role).await;
        return Err(e);
    }
    Ok(())
}

/// Ends the role's sessions, drops its schema with everything in it, whatever else it owns in
/// the database (large objects included), the database itself when nothing else lives there,
/// and the role. Parts already gone are fine.
pub async fn drop(server: &AdminEndpoint, database: &str, schema: &str, role: &str) -> Result<()> {
    let mut admin = connect(&admin_access(server, "postgres")).await?;
    let role_exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)")
            .bind(role)
            .fetch_one(&mut admin)
            .await
            .map_err(super::from_sqlx)?;
    let db_exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(database)
            .fetch_one(&mut admin)
            .await
            .map_err(super::from_sqlx)?;
    if role_exists {
        exec(
            &mut admin,
            format!("ALTER ROLE {} NOLOGIN", quote_ident(role)),
        )
        .await?;
        sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1")
            .bind(role)
            .execute(&mut admin)
            .await
            .map_err(super::from_sqlx)?;
    }
    if db_exists {
        let mut inside = connect(&admin_access(server, database)).await?;
        exec(
            &mut inside,
            format!("DROP SCHEMA IF EXISTS {} CASCADE", quote_ident(schema)),
        )
        .await?;
        if role_exists {
            // Large objects and anything created outside the schema; also revokes the role's
            // privileges here and on the database itself.
            exec(
                &mut inside,
                format!("DROP OWNED BY {} CASCADE", quote_ident(role)),
            )
            .await?;
        }
        let others: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_namespace
              WHERE nspname NOT IN ('public', 'information_schema')
                AND nspname NOT LIKE 'pg\\_%'",
        )
        .fetch_one(&mut inside)
        .await
        .map_err(super::from_sqlx)?;
        let _ = inside.close().await;
        if others == 0 {
            exec(
                &mut admin,
                format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    quote_ident(database)
                ),
            )
            .await?;
        }
    }
    if role_exists {
        exec(
            &mut admin,
            format!("DROP ROLE IF EXISTS {}", quote_ident(role)),
        )
        .await?;
    }
    let _ = admin.close().await;
    Ok(())
}

/// A provisioned database made before each had a database of its own, to move out of the shared
/// one: its schema, with everything in it, its owners and its grants, goes to `to` (made here),
/// the role may connect there, and nothing of it is left in `from`.
pub struct SchemaMove<'a> {
    pub from: &'a str,
    pub to: &'a str,
    pub schema: &'a str,
    pub role: &'a str,
}

/// Copies the schema into a fresh `to` (dropped first if an earlier attempt left it) while the
/// role cannot log in, then lets it in again. The schema stays in `from` until
/// [`forget_moved`]: the caller switches its records in between, so a crash leaves one whole
/// copy in use.
pub async fn move_out(
    server: &AdminEndpoint,
    tools: (&std::path::Path, &std::path::Path),
    m: &SchemaMove<'_>,
) -> Result<()> {
    let role = quote_ident(m.role);
    let mut admin = connect(&admin_access(server, "postgres")).await?;
    exec(&mut admin, format!("ALTER ROLE {role} NOLOGIN")).await?;
    sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1")
        .bind(m.role)
        .execute(&mut admin)
        .await
        .map_err(super::from_sqlx)?;
    exec(
        &mut admin,
        format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote_ident(m.to)),
    )
    .await?;
    let _ = admin.close().await;
    let copied = async {
        ensure_database(server, m.to).await?;
        let mut admin = connect(&admin_access(server, "postgres")).await?;
        exec(
            &mut admin,
            format!("GRANT CONNECT ON DATABASE {} TO {role}", quote_ident(m.to)),
        )
        .await?;
        let _ = admin.close().await;
        let dump = super::dump::dump_schema(tools.0, &admin_access(server, m.from), m.schema)?;
        let restored =
            super::dump::restore(tools.1, &admin_access(server, m.to), dump.output).await;
        let dumped = dump.finish.await;
        restored.and(dumped)
    };
    let result = copied.await;
    let mut admin = connect(&admin_access(server, "postgres")).await?;
    if result.is_err() {
        // Nothing half-copied stays behind; the role keeps its shared copy.
        let _ = exec(
            &mut admin,
            format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote_ident(m.to)),
        )
        .await;
    }
    exec(&mut admin, format!("ALTER ROLE {role} LOGIN")).await?;
    let _ = admin.close().await;
    result
}

/// Removes a moved schema from the shared database it left, and that database once it holds
/// no other.
pub async fn forget_moved(server: &AdminEndpoint, m: &SchemaMove<'_>) -> Result<()> {
    let mut admin = connect(&admin_access(server, "postgres")).await?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(m.from)
            .fetch_one(&mut admin)
            .await
            .map_err(super::from_sqlx)?;
    if !exists {
        return Ok(());
    }
    let mut inside = connect(&admin_access(server, m.from)).await?;
    exec(
        &mut inside,
        format!("DROP SCHEMA IF EXISTS {} CASCADE", quote_ident(m.schema)),
    )
    .await?;
    let others: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_namespace
          WHERE nspname NOT IN ('public', 'information_schema') AND nspname NOT LIKE 'pg\\_%'",
    )
    .fetch_one(&mut inside)
    .await
    .map_err(super::from_sqlx)?;
    let _ = inside.close().await;
    let from = quote_ident(m.from);
    let sql = if others == 0 {
        format!("DROP DATABASE IF EXISTS {from} WITH (FORCE)")
    } else {
        format!(
            "REVOKE CONNECT ON DATABASE {from} FROM {}",
            quote_ident(m.role)
        )
    };
    exec(&mut admin, sql).await?;
    let _ = admin.close().await;
    Ok(())
}
