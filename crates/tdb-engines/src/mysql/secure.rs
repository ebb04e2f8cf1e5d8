//! What a MariaDB server shares between its users, closed: the anonymous accounts and the
//! `test` grants a fresh data directory comes with (an anonymous `''@localhost` even shadows
//! tenants' users, so their logins fail), grants to `PUBLIC`, and root logins from elsewhere
//! than the machine itself. Every step reads what is there first, so running it again changes
//! nothing. Also the server-wide figures the control plane asks for.

use sqlx::Connection;
use sqlx::mysql::MySqlConnection;

use super::quote::{account, ident, literal};
use super::{connect_admin, exec, from_sqlx};
use crate::AdminEndpoint;
use crate::engine::Result;

/// Connections kept out of tenants' reach for tdb's own administration (migrations' and
/// sessions' stoppers, provisioning, dumps' bookkeeping).
pub const ADMIN_RESERVE: u32 = 5;

/// What becomes of `root` accounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Root {
    /// A managed server: tdb's administrator replaces root, so every root account goes.
    Drop,
    /// An attached server: its operator may still use root on the machine itself; root from
    /// any other host goes.
    KeepLocal,
}

/// Hardens the server `conn` administers (see the module doc); never drops the account `conn`
/// is logged in as.
pub async fn harden(conn: &mut MySqlConnection, root: Root) -> Result<()> {
    let me: String = sqlx::query_scalar("SELECT CURRENT_USER()")
        .fetch_one(&mut *conn)
        .await
        .map_err(from_sqlx)?;
    for (user, host) in accounts_to_drop(conn, root).await? {
        if format!("{user}@{host}") != me {
            exec(
                conn,
                format!("DROP USER IF EXISTS {}", account(&user, &host)),
            )
            .await?;
        }
    }
    // A fresh data directory's `test` database goes; an attached server's may hold its
    // operator's data, so only the grants that opened it to everyone go (below).
    if root == Root::Drop {
        exec(conn, "DROP DATABASE IF EXISTS `test`").await?;
    }
    forget_wildcard_grants(conn).await?;
    let public: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM mysql.global_priv WHERE User = 'PUBLIC'")
            .fetch_one(&mut *conn)
            .await
            .map_err(from_sqlx)?;
    if public > 0 {
        exec(conn, "REVOKE ALL PRIVILEGES, GRANT OPTION FROM PUBLIC").await?;
    }
    exec(
        conn,
        format!(
            "CREATE DATABASE IF NOT EXISTS {} CHARACTER SET utf8mb4",
            ident(super::meta::META_DB)
        ),
    )
    .await
}

/// Anonymous accounts, and the root accounts `root` says go.
async fn accounts_to_drop(conn: &mut MySqlConnection, root: Root) -> Result<Vec<(String, String)>> {
    let local = "('localhost', '127.0.0.1', '::1')";
    let roots = match root {
        Root::Drop => "User = 'root'".to_string(),
        Root::KeepLocal => format!("(User = 'root' AND Host NOT IN {local})"),
    };
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT User, Host FROM mysql.global_priv WHERE User = '' OR {roots} ORDER BY User, Host"
    )))
    .fetch_all(&mut *conn)
    .await
    .map_err(from_sqlx)
}

/// Removes privilege rows with an empty user (MariaDB matches them for every user, and no
/// `REVOKE` can name them) and the `test`/`test\_%` database grants of a fresh data directory.
async fn forget_wildcard_grants(conn: &mut MySqlConnection) -> Result<()> {
    let test_patterns = format!("({}, {})", literal("test"), literal(r"test\_%"));
    let mut removed = 0;
    for sql in [
        format!("DELETE FROM mysql.db WHERE User = '' OR Db IN {test_patterns}"),
        "DELETE FROM mysql.tables_priv WHERE User = ''".to_string(),
        "DELETE FROM mysql.columns_priv WHERE User = ''".to_string(),
        "DELETE FROM mysql.procs_priv WHERE User = ''".to_string(),
        "DELETE FROM mysql.proxies_priv WHERE User = ''".to_string(),
    ] {
        removed += sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut *conn)
            .await
            .map_err(from_sqlx)?
            .rows_affected();
    }
    if removed > 0 {
        exec(conn, "FLUSH PRIVILEGES").await?;
    }
    Ok(())
}

/// `max_connections` less [`ADMIN_RESERVE`].
pub async fn connection_capacity(server: &AdminEndpoint) -> Result<u32> {
    let mut admin = connect_admin(server).await?;
    let max: i64 = sqlx::query_scalar("SELECT CAST(@@max_connections AS SIGNED)")
        .fetch_one(&mut admin)
        .await
        .map_err(from_sqlx)?;
    let _ = admin.close().await;
    Ok(u32::try_from(max)
        .unwrap_or(u32::MAX)
        .saturating_sub(ADMIN_RESERVE))
}

/// Bytes of data and indexes in the server's databases, its own schemas and tdb's records
/// left out.
pub async fn size_bytes(server: &AdminEndpoint) -> Result<u64> {
    let mut admin = connect_admin(server).await?;
    let total: i64 = sqlx::query_scalar(
        "SELECT CAST(COALESCE(SUM(DATA_LENGTH + INDEX_LENGTH), 0) AS SIGNED)
           FROM information_schema.TABLES
          WHERE TABLE_SCHEMA NOT IN
                ('mysql', 'information_schema', 'performance_schema', 'sys', 'tdb_meta')",
    )
    .fetch_one(&mut admin)
    .await
    .map_err(from_sqlx)?;
    let _ = admin.close().await;
    Ok(u64::try_from(total).unwrap_or(0))
}
