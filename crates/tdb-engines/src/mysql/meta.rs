//! tdb's record of each tenant database: its schema version and the progress of a migration
//! under way. It lives in the administrator's `tdb_meta` database, in one table per tenant
//! database, named as the database. MariaDB cannot take one table back from a database-wide
//! grant, so a record inside the tenant database would be writable by its application user;
//! here the tenant's owner alone may use its own table (a table-level grant, which MariaDB
//! matches exactly, wildcards and all), and the application and read users see nothing of it.
//!
//! A dump carries the version on its first line ([`header`]), and a restore records it for the
//! target, as PostgreSQL's dumps carry their `tdb_meta` schema.

use sqlx::mysql::MySqlConnection;

use super::quote::{account, ident, literal};
use super::{exec, from_sqlx};
use crate::engine::{EngineError, Result};

/// The administrator's database of records.
pub const META_DB: &str = "tdb_meta";

/// The start of a dump's first line, before the version.
const HEADER: &str = "-- tdb_meta schema_version ";

/// The record of database `db`, qualified.
pub fn table(db: &str) -> String {
    format!("{}.{}", ident(META_DB), ident(db))
}

/// One database's record.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Record {
    pub version: i32,
    /// The version a migration under way goes to, and how many of its statements are done.
    pub target: Option<i32>,
    pub done: i32,
    /// The schema's [`fingerprint`](super::migrate::fingerprint) just before statement
    /// `done + 1` started, until it is recorded done.
    pub pending: Option<String>,
    /// Names the lock migrations of this database take (see [`lock_name`]).
    pub lock_key: String,
}

/// Statements, run by the administrator, that make a fresh record of `db` (version 0; one left
/// by an earlier database of that name is replaced) for `owner` to read and write.
pub fn create_sql(db: &str, owner: &str) -> Vec<String> {
    let t = table(db);
    let key = tdb_core::secrets::new_password("");
    vec![
        format!(
            "CREATE DATABASE IF NOT EXISTS {} CHARACTER SET utf8mb4",
            ident(META_DB)
        ),
        format!("DROP TABLE IF EXISTS {t}"),
        format!(
            "CREATE TABLE {t} (id TINYINT NOT NULL PRIMARY KEY, version INT NOT NULL, \
             target INT NULL, done INT NOT NULL DEFAULT 0, pending CHAR(64) NULL, \
             lock_key CHAR(32) NOT NULL) \
             ENGINE=InnoDB"
        ),
        format!(
            "INSERT INTO {t} (id, version, lock_key) VALUES (1, 0, {})",
            literal(&key)
        ),
        format!(
            "GRANT SELECT, INSERT, UPDATE, DELETE ON {t} TO {}",
            account(owner, super::quote::ANY_HOST)
        ),
    ]
}

/// The record of `db`, as its owner (or the administrator) reads it.
pub async fn read(conn: &mut MySqlConnection, db: &str) -> Result<Record> {
    let row: Option<Record> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT version, target, done, pending, lock_key FROM {} WHERE id = 1",
        table(db)
    )))
    .fetch_optional(&mut *conn)
    .await
    .map_err(from_sqlx)?;
    row.ok_or_else(|| EngineError::Internal(format!("tdb's record of database {db} has no row")))
}

/// Statement `done + 1` of a migration to `target` is about to run on a schema whose
/// fingerprint is `before` (committed before the statement starts).
pub async fn set_pending(
    conn: &mut MySqlConnection,
    db: &str,
    target: i32,
    done: i32,
    before: &str,
) -> Result<()> {
    exec(
        conn,
        format!(
            "UPDATE {} SET target = {target}, done = {done}, pending = {} WHERE id = 1",
            table(db),
            literal(before)
        ),
    )
    .await
}

/// A migration to `target` has its first `done` statements applied.
pub async fn set_progress(
    conn: &mut MySqlConnection,
    db: &str,
    target: i32,
    done: i32,
) -> Result<()> {
    exec(
        conn,
        format!(
            "UPDATE {} SET target = {target}, done = {done}, pending = NULL WHERE id = 1",
            table(db)
        ),
    )
    .await
}

/// The database is at `version`, with no migration under way.
pub async fn set_version(conn: &mut MySqlConnection, db: &str, version: i32) -> Result<()> {
    exec(
        conn,
        format!(
            "UPDATE {} SET version = {version}, target = NULL, done = 0, pending = NULL \
             WHERE id = 1",
            table(db)
        ),
    )
    .await
}

/// The named lock that serialises migrations of one database. Lock names are one namespace
/// for the whole server, so the name holds a key only the owner can read: no other tenant can
/// take it first and stall this tenant's migrations.
pub fn lock_name(record: &Record) -> String {
    format!("tdb_migrate_{}", record.lock_key)
}

/// A dump's first line, naming the schema version it holds.
pub fn header(version: i32) -> String {
    format!("{HEADER}{version}\n")
}

/// The version a dump's first line names, if it is a [`header`].
pub fn parse_header(line: &str) -> Option<i32> {
    line.trim_end().strip_prefix(HEADER)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip() {
        assert_eq!(parse_header(&header(42)), Some(42));
        assert_eq!(parse_header("-- MariaDB dump 10.19"), None);
        assert_eq!(parse_header("-- tdb_meta schema_version x\n"), None);
    }

    #[test]
    fn records_are_tables_named_as_their_database() {
        assert_eq!(table("shop__acme"), "`tdb_meta`.`shop__acme`");
        let sql = create_sql("shop__acme", "own");
        assert!(sql.last().is_some_and(|s| s.ends_with("TO 'own'@'%'")));
    }
}
