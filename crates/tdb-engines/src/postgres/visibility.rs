//! What a role that is not the server's administrator may read of the server beyond its own
//! database. PostgreSQL lets every role read the shared catalogs and the server-wide statistics:
//! other databases' sessions (with their user and `application_name`), per-database counters,
//! every role with its settings and memberships, locks and prepared transactions of every
//! database. On a shared server those belong to other tenants, so PUBLIC loses them.
//!
//! Privileges on `pg_catalog` objects live in each database's own `pg_class` and `pg_proc`,
//! shared catalogs included, so this runs in every database: when one is created, and over every
//! database of a server at start (for databases made before). `template1` gets it too, so
//! databases copied from it start closed. It needs a superuser: anyone else's REVOKE on these
//! objects changes nothing.
//!
//! What stays readable, and why, is listed in `docs/SECURITY.md` ("What a tenant can still
//! see"): `pg_database` (psql's `\l`), role names (psql's `\d` and pg_dump read
//! `pg_roles.oid` and `rolname`), server-wide totals without names.

use sqlx::Connection;
use sqlx::postgres::PgConnection;

use super::{admin_access, connect, exec, from_sqlx};
use crate::AdminEndpoint;
use crate::engine::{CatalogSweep, EngineError, Result};

/// Views and tables of `pg_catalog` closed to PUBLIC. Names missing from the server's version
/// are skipped.
const RELATIONS: &[&str] = &[
    // Sessions of every database, and what hangs off them.
    "pg_stat_activity",
    "pg_stat_ssl",
    "pg_stat_gssapi",
    "pg_stat_progress_analyze",
    "pg_stat_progress_basebackup",
    "pg_stat_progress_cluster",
    "pg_stat_progress_copy",
    "pg_stat_progress_create_index",
    "pg_stat_progress_vacuum",
    "pg_locks",
    "pg_prepared_xacts",
    // Per-database counters.
    "pg_stat_database",
    "pg_stat_database_conflicts",
    // Roles, their memberships and settings (`search_path` names a provisioned schema), and
    // which role owns or may use what in which database.
    "pg_roles",
    "pg_user",
    "pg_group",
    "pg_auth_members",
    "pg_db_role_setting",
    "pg_shdepend",
    // Replication: slot, subscription and origin names of every database.
    "pg_stat_replication",
    "pg_stat_replication_slots",
    "pg_replication_slots",
    "pg_replication_origin",
    "pg_stat_subscription",
    "pg_stat_subscription_stats",
];

/// Functions behind those views, closed too: a view checks its functions' EXECUTE privilege as
/// the caller, and the functions are callable without the views.
const FUNCTIONS: &[&str] = &[
    "pg_stat_get_activity",
    "pg_stat_get_progress_info",
    "pg_lock_status",
    "pg_prepared_xact",
    "pg_stat_get_wal_senders",
    "pg_get_replication_slots",
    "pg_stat_get_replication_slot",
    "pg_stat_get_subscription",
    "pg_stat_get_subscription_stats",
];

/// Families of functions closed by name: one per session attribute, one per database counter.
const FUNCTION_PREFIXES: &[&str] = &["pg_stat_get_backend_", "pg_stat_get_db_"];

/// The statements that close them in the current database; running them again changes nothing.
/// One `DO` block, so servers of other major versions (where some names do not exist) take it
/// as well.
pub(super) fn hide_sql() -> String {
    let list = |names: &[&str]| {
        names
            .iter()
            .map(|n| format!("'{n}'"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "DO $tdb$
         DECLARE
             rel name;
             proc regprocedure;
         BEGIN
             -- Nothing a database's owner made in it may stand in for the catalog's own.
             PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
             FOR rel IN SELECT c.relname FROM pg_catalog.pg_class c
                       WHERE c.relnamespace = 'pg_catalog'::regnamespace
                         AND c.relname = ANY (ARRAY[{relations}])
             LOOP
                 EXECUTE format('REVOKE ALL ON pg_catalog.%I FROM PUBLIC', rel);
             END LOOP;
             FOR proc IN SELECT p.oid FROM pg_catalog.pg_proc p
                       WHERE p.pronamespace = 'pg_catalog'::regnamespace
                         AND (p.proname = ANY (ARRAY[{functions}])
                              OR p.proname LIKE ANY (ARRAY[{prefixes}]))
             LOOP
                 EXECUTE format('REVOKE ALL ON FUNCTION pg_catalog.%s FROM PUBLIC', proc);
             END LOOP;
             -- Role names only: psql's \\d (row security policies) and pg_dump read them.
             GRANT SELECT (oid, rolname) ON pg_catalog.pg_roles TO PUBLIC;
         END
         $tdb$",
        relations = list(RELATIONS),
        functions = list(FUNCTIONS),
        prefixes = FUNCTION_PREFIXES
            .iter()
            .map(|p| format!("'{}%'", p.replace('_', "\\_")))
            .collect::<Vec<_>>()
            .join(", "),
    )
}

/// Closes the shared catalogs in the database `conn` is connected to (as a superuser).
pub(super) async fn hide(conn: &mut PgConnection) -> Result<()> {
    exec(conn, hide_sql()).await
}

/// Closes the shared catalogs in one database of `server`.
pub(super) async fn hide_in(server: &AdminEndpoint, database: &str) -> Result<()> {
    let mut conn = connect(&admin_access(server, database)).await?;
    let result = hide(&mut conn).await;
    let _ = conn.close().await;
    result
}

/// Closes the shared catalogs in every database of the server that accepts connections
/// (`template1` included), one database at a time; a database that fails does not stop the
/// others. Refuses, changing nothing, when the administrator is not a superuser.
pub async fn hide_everywhere(server: &AdminEndpoint) -> Result<CatalogSweep> {
    let mut admin = connect(&admin_access(server, "postgres")).await?;
    let listed = async {
        let superuser: bool = sqlx::query_scalar(
            "SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user",
        )
        .fetch_one(&mut admin)
        .await
        .map_err(from_sqlx)?;
        if !superuser {
            return Err(EngineError::Unsupported(format!(
                "the administrator {} is not a superuser, so the server's catalogs cannot be \
                 closed to tenants",
                server.user
            )));
        }
        sqlx::query_scalar::<_, String>(
            "SELECT datname FROM pg_catalog.pg_database WHERE datallowconn ORDER BY datname",
        )
        .fetch_all(&mut admin)
        .await
        .map_err(from_sqlx)
    };
    let databases = listed.await;
    let _ = admin.close().await;
    let mut swept = CatalogSweep::default();
    for database in databases? {
        match hide_in(server, &database).await {
            Ok(()) => swept.closed += 1,
            // Dropped since it was listed.
            Err(EngineError::Query { sqlstate, .. }) if sqlstate == "3D000" => swept.gone += 1,
            Err(e) => swept.failed.push((database, e.to_string())),
        }
    }
    Ok(swept)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sql_names_every_object_once_and_escapes_prefixes() {
        let sql = hide_sql();
        for name in RELATIONS.iter().chain(FUNCTIONS) {
            assert_eq!(sql.matches(&format!("'{name}'")).count(), 1, "{name}");
        }
        assert!(sql.contains(r"'pg\_stat\_get\_db\_%'"), "{sql}");
        assert!(sql.contains("GRANT SELECT (oid, rolname) ON pg_catalog.pg_roles TO PUBLIC"));
    }
}
