//! Moving a database to another MariaDB server. There is no replication between servers yet
//! (MariaDB's is server-wide, by binary log; carrying one database of a shared server is work
//! still to do), so every move goes by dump and restore behind the proxies' hold, and this
//! module owns the cutover's parts: the users' open transactions, fencing them (accounts locked,
//! sessions killed), closing a database to its users and opening it again, resetting users as
//! tdb has them, and a count and checksum of every table on both ends. `AUTO_INCREMENT`
//! positions travel in the dump's `CREATE TABLE`, so there are no sequences to copy.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use sqlx::Connection;
use sqlx::mysql::MySqlConnection;

use super::quote::{ANY_HOST, account, grant_db, grant_pattern, ident, literal, native_hash};
use super::{MysqlEngine, connect_admin, exec, from_sqlx};
use crate::AdminEndpoint;
use crate::capability::{DatabaseMoves, MoveEnds, RoleState, TableSums};
use crate::engine::{EngineError, Result};

/// Why a MySQL move never replicates (the job records it in the move's history).
const NO_REPLICATION: &str =
    "MySQL databases move by dump and restore (no replication between MariaDB servers yet)";

/// How long killed sessions may take to end.
const SESSIONS_END: Duration = Duration::from_secs(10);

fn no_replication() -> EngineError {
    EngineError::Unsupported(NO_REPLICATION.into())
}

/// `?, ?, …` for `n` values (never empty: `NULL` matches nothing).
fn placeholders(n: usize) -> String {
    if n == 0 {
        "NULL".into()
    } else {
        vec!["?"; n].join(", ")
    }
}

/// The sessions of `users` (in `db` only, when given), except the caller's own.
async fn sessions(
    conn: &mut MySqlConnection,
    users: &[&str],
    db: Option<&str>,
) -> Result<Vec<i64>> {
    let sql = format!(
        "SELECT CAST(ID AS SIGNED) FROM information_schema.PROCESSLIST
          WHERE ID <> CONNECTION_ID() AND USER IN ({}){}",
        placeholders(users.len()),
        if db.is_some() { " AND DB = ?" } else { "" }
    );
    let mut query = sqlx::query_scalar(sqlx::AssertSqlSafe(sql));
    for user in users {
        query = query.bind(*user);
    }
    if let Some(db) = db {
        query = query.bind(db);
    }
    query.fetch_all(&mut *conn).await.map_err(from_sqlx)
}

/// Kills those sessions and waits ([`SESSIONS_END`] at most) until they are gone: a killed
/// session shows until its statement has stopped, so once none shows, none can still commit.
async fn end_sessions(conn: &mut MySqlConnection, users: &[&str], db: Option<&str>) -> Result<()> {
    let started = Instant::now();
    loop {
        let ids = sessions(conn, users, db).await?;
        if ids.is_empty() {
            return Ok(());
        }
        if started.elapsed() > SESSIONS_END {
            return Err(EngineError::Internal(format!(
                "{} sessions did not end within {} s of being killed",
                ids.len(),
                SESSIONS_END.as_secs()
            )));
        }
        for id in ids {
            // One that ended meanwhile is fine (1094, unknown thread).
            let _ = exec(conn, format!("KILL CONNECTION {id}")).await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Locks or unlocks the accounts of `users` (absent ones are skipped).
async fn set_locked(server: &AdminEndpoint, users: &[&str], locked: bool) -> Result<()> {
    let mut admin = connect_admin(server).await?;
    let lock = if locked { "LOCK" } else { "UNLOCK" };
    for user in users {
        exec(
            &mut admin,
            format!(
                "ALTER USER IF EXISTS {} ACCOUNT {lock}",
                account(user, ANY_HOST)
            ),
        )
        .await?;
    }
    let _ = admin.close().await;
    Ok(())
}

/// The privileges `user` holds on databases other than `db`, as `GRANT` lists them.
async fn privileges_elsewhere(conn: &mut MySqlConnection, user: &str, db: &str) -> Result<String> {
    let privileges: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT PRIVILEGE_TYPE FROM information_schema.SCHEMA_PRIVILEGES
          WHERE GRANTEE = ? AND TABLE_SCHEMA <> ? ORDER BY 1",
    )
    .bind(account(user, ANY_HOST))
    .bind(grant_pattern(db))
    .fetch_all(&mut *conn)
    .await
    .map_err(from_sqlx)?;
    Ok(privileges.join(", "))
}

/// Whether `user` holds any privilege on `db` itself.
async fn holds_any(conn: &mut MySqlConnection, user: &str, db: &str) -> Result<bool> {
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM mysql.db WHERE User = ? AND Db = ?")
        .bind(user)
        .bind(grant_pattern(db))
        .fetch_one(&mut *conn)
        .await
        .map_err(from_sqlx)?;
    Ok(n > 0)
}

/// Every base table of `db` with its columns in order.
async fn tables(conn: &mut MySqlConnection, db: &str) -> Result<BTreeMap<String, Vec<String>>> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT c.TABLE_NAME, c.COLUMN_NAME FROM information_schema.COLUMNS c
           JOIN information_schema.TABLES t
             ON t.TABLE_SCHEMA = c.TABLE_SCHEMA AND t.TABLE_NAME = c.TABLE_NAME
          WHERE c.TABLE_SCHEMA = ? AND t.TABLE_TYPE IN ('BASE TABLE', 'SYSTEM VERSIONED')
          ORDER BY c.TABLE_NAME, c.ORDINAL_POSITION",
    )
    .bind(db)
    .fetch_all(&mut *conn)
    .await
    .map_err(from_sqlx)?;
    let mut tables: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (table, column) in rows {
        tables.entry(table).or_default().push(column);
    }
    Ok(tables)
}

/// A table's row count and the sum (modulo 2^63 - 1) of 60 bits of each row's MD5: the same
/// whatever order the rows are stored or read in. Each value is hashed as its bytes, quoted,
/// so `NULL`, `'NULL'` and a comma inside a value stay apart.
fn table_sum_sql(db: &str, table: &str, columns: &[String]) -> String {
    let row: Vec<String> = columns
        .iter()
        .map(|c| format!("QUOTE(CAST({} AS BINARY))", ident(c)))
        .collect();
    format!(
        "SELECT COUNT(*), CAST(COALESCE(SUM(CAST(CONV(LEFT(MD5(CONCAT_WS(',', {})), 15), 16, 10) \
         AS UNSIGNED)), 0) % 9223372036854775807 AS SIGNED) FROM {}.{}",
        row.join(", "),
        ident(db),
        ident(table)
    )
}

#[async_trait]
impl DatabaseMoves for MysqlEngine {
    async fn replication_blocker(
        &self,
        _source: &AdminEndpoint,
        _database: &str,
    ) -> Result<Option<String>> {
        Ok(Some(NO_REPLICATION.into()))
    }

    async fn start_replication(&self, _ends: &MoveEnds<'_>) -> Result<()> {
        Err(no_replication())
    }

    async fn replication_state(&self, _ends: &MoveEnds<'_>) -> Result<(i64, i64, Option<String>)> {
        Err(no_replication())
    }

    /// InnoDB transactions of `roles`' sessions in `database`. A transaction that has run no
    /// statement yet has none: its next statement waits at the proxies' hold, and the fence
    /// ends it unapplied. InnoDB answers from a cache refreshed at most every 100 ms, so a
    /// transaction may be counted that long after its end (the drain waits a little longer),
    /// and one begun since the last refresh missed (only before the hold reaches the proxies,
    /// as for any engine; the fence then ends it, never committed).
    async fn open_transactions(
        &self,
        source: &AdminEndpoint,
        database: &str,
        roles: &[&str],
    ) -> Result<i64> {
        let sql = format!(
            "SELECT COUNT(*) FROM information_schema.INNODB_TRX t
               JOIN information_schema.PROCESSLIST p ON p.ID = t.trx_mysql_thread_id
              WHERE p.DB = ? AND p.USER IN ({})",
            placeholders(roles.len())
        );
        let mut admin = connect_admin(source).await?;
        let mut query = sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).bind(database);
        for role in roles {
            query = query.bind(*role);
        }
        let n = query.fetch_one(&mut admin).await.map_err(from_sqlx);
        let _ = admin.close().await;
        n
    }

    /// Locks the accounts, then ends all their sessions: on the source they serve this
    /// database alone, and one that is in no database could still write to it by name.
    async fn fence(&self, source: &AdminEndpoint, _database: &str, roles: &[&str]) -> Result<()> {
        set_locked(source, roles, true).await?;
        let mut admin = connect_admin(source).await?;
        let ended = end_sessions(&mut admin, roles, None).await;
        let _ = admin.close().await;
        ended
    }

    async fn unfence(&self, source: &AdminEndpoint, roles: &[&str]) -> Result<()> {
        set_locked(source, roles, false).await
    }

    /// Takes back the users' privileges on `database` (MariaDB has no right to connect of its
    /// own: a user with none on it can no longer use it) and ends their sessions in it.
    async fn close_database(
        &self,
        server: &AdminEndpoint,
        database: &str,
        roles: &[&str],
    ) -> Result<()> {
        let mut admin = connect_admin(server).await?;
        let closed = async {
            for role in roles {
                if holds_any(&mut admin, role, database).await? {
                    let sql = format!(
                        "REVOKE ALL PRIVILEGES ON {}.* FROM {}",
                        grant_db(database),
                        account(role, ANY_HOST)
                    );
                    exec(&mut admin, sql).await?;
                }
            }
            end_sessions(&mut admin, roles, Some(database)).await
        }
        .await;
        let _ = admin.close().await;
        closed
    }

    /// Gives each user on `database` the privileges it holds on the database it serves
    /// meanwhile (the tenant's live one, on the same server): what it had here before.
    async fn reopen_database(
        &self,
        server: &AdminEndpoint,
        database: &str,
        roles: &[&str],
    ) -> Result<()> {
        let mut admin = connect_admin(server).await?;
        let reopened = async {
            for role in roles {
                let privileges = privileges_elsewhere(&mut admin, role, database).await?;
                if privileges.is_empty() {
                    return Err(EngineError::Internal(format!(
                        "user {role} holds no privileges on another database to take over"
                    )));
                }
                let sql = format!(
                    "GRANT {privileges} ON {}.* TO {}",
                    grant_db(database),
                    account(role, ANY_HOST)
                );
                exec(&mut admin, sql).await?;
            }
            Ok(())
        }
        .await;
        let _ = admin.close().await;
        reopened
    }

    async fn reset_roles(&self, server: &AdminEndpoint, roles: &[RoleState<'_>]) -> Result<()> {
        let mut admin = connect_admin(server).await?;
        let reset = async {
            for role in roles {
                let sql = format!(
                    "ALTER USER {} IDENTIFIED BY PASSWORD {} WITH MAX_USER_CONNECTIONS {} \
                     ACCOUNT UNLOCK",
                    account(role.name, ANY_HOST),
                    literal(&native_hash(role.password)),
                    role.connection_limit
                );
                exec(&mut admin, sql).await?;
            }
            Ok(())
        }
        .await;
        let _ = admin.close().await;
        reset
    }

    async fn mark_and_wait(
        &self,
        _ends: &MoveEnds<'_>,
        _token: &str,
        _wait: Duration,
    ) -> Result<()> {
        Err(no_replication())
    }

    /// `AUTO_INCREMENT` positions are in the dump's `CREATE TABLE` statements, and MariaDB's
    /// `SEQUENCE` objects are dumped with their values.
    async fn copy_sequences(&self, _ends: &MoveEnds<'_>) -> Result<u32> {
        Ok(0)
    }

    async fn table_sums(&self, server: &AdminEndpoint, database: &str) -> Result<TableSums> {
        let mut admin = connect_admin(server).await?;
        let summed = async {
            let mut sums = TableSums::new();
            for (table, columns) in tables(&mut admin, database).await? {
                let sql = table_sum_sql(database, &table, &columns);
                let sum: (i64, i64) = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                    .fetch_one(&mut admin)
                    .await
                    .map_err(from_sqlx)?;
                sums.insert(table, sum);
            }
            Ok(sums)
        }
        .await;
        let _ = admin.close().await;
        summed
    }

    async fn stop_replication(&self, _ends: &MoveEnds<'_>) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_sums_hash_every_column_as_quoted_bytes() {
        let sql = table_sum_sql("shop__acme", "we`ird", &["id".into(), "a b".into()]);
        assert!(
            sql.contains("QUOTE(CAST(`id` AS BINARY)), QUOTE(CAST(`a b` AS BINARY))"),
            "{sql}"
        );
        assert!(sql.ends_with("FROM `shop__acme`.`we``ird`"), "{sql}");
    }

    #[test]
    fn empty_lists_match_nothing() {
        assert_eq!(placeholders(0), "NULL");
        assert_eq!(placeholders(2), "?, ?");
    }
}
