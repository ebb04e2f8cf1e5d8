//! Databases and their users. Each user is `'name'@'%'` with a `mysql_native_password` hash
//! (never the password), `MAX_USER_CONNECTIONS` for its connection limit, and privileges on its
//! one database only, the database named escaped (see [`super::quote`]):
//!
//! - the owner (tdb's migrations and dumps; a workspace's own login): [`OWNER_PRIVILEGES`],
//!   DDL and rows, no `GRANT OPTION`, no `EVENT` (events run later with the definer's
//!   privileges), no `FILE` or other server privilege. `DROP` is there because `DROP TABLE`
//!   and `TRUNCATE` need it; MariaDB lets the same privilege drop the database itself (and
//!   `CREATE` make it again), which only ever harms the database's own tenant. tdb's proxy
//!   refuses `DROP`/`CREATE DATABASE` whatever the grants say.
//! - the application user: [`APP_PRIVILEGES`], rows and nothing of the schema.
//! - the read user: `SELECT`. Not `EXECUTE`: routines run with their definer's (the owner's)
//!   privileges by default, so calling one could write.

use sqlx::Connection;
use sqlx::mysql::MySqlConnection;

use super::quote::{ANY_HOST, account, grant_db, grant_pattern, ident, literal, native_hash};
use super::{connect_admin, exec, from_sqlx, meta};
use crate::AdminEndpoint;
use crate::engine::{DatabaseSpec, EngineError, RestoreTarget, Result, TenantSpec};

/// The owner's privileges on its database.
pub const OWNER_PRIVILEGES: &str = "SELECT, INSERT, UPDATE, DELETE, CREATE, ALTER, INDEX, DROP, \
     REFERENCES, CREATE VIEW, SHOW VIEW, TRIGGER, CREATE ROUTINE, ALTER ROUTINE, EXECUTE, \
     CREATE TEMPORARY TABLES, LOCK TABLES";
/// The application user's: rows, stored routines the owner made, and the session-scoped
/// `CREATE TEMPORARY TABLES` and `LOCK TABLES` that ORMs and batch jobs use. Its temporary
/// tables are its session's own; no table of the database can be created, altered or dropped.
pub const APP_PRIVILEGES: &str =
    "SELECT, INSERT, UPDATE, DELETE, EXECUTE, CREATE TEMPORARY TABLES, LOCK TABLES";
/// The read user's.
pub const READ_PRIVILEGES: &str = "SELECT";
/// The owner's connection limit on a tenant database: tdb alone uses it.
const OWNER_CONNECTIONS: u32 = 5;

/// Databases of the server itself and of tdb, which no tenant or workspace may be named.
const RESERVED: [&str; 5] = [
    "mysql",
    "information_schema",
    "performance_schema",
    "sys",
    meta::META_DB,
];

/// Refuses a database name that is the server's or tdb's own.
fn check_name(name: &str) -> Result<()> {
    if RESERVED.iter().any(|r| r.eq_ignore_ascii_case(name)) {
        return Err(EngineError::Query {
            message: format!("database name {name} is reserved"),
            sqlstate: "42000".into(),
            detail: None,
            position: None,
        });
    }
    Ok(())
}

fn create_user_sql(name: &str, password: &str, limit: u32) -> String {
    format!(
        "CREATE USER {} IDENTIFIED BY PASSWORD {} WITH MAX_USER_CONNECTIONS {limit}",
        account(name, ANY_HOST),
        literal(&native_hash(password))
    )
}

fn grant_sql(privileges: &str, db: &str, user: &str) -> String {
    format!(
        "GRANT {privileges} ON {}.* TO {}",
        grant_db(db),
        account(user, ANY_HOST)
    )
}

fn create_db_sql(db: &str) -> String {
    format!(
        "CREATE DATABASE {} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci",
        ident(db)
    )
}

/// What a create has made so far, so a failure takes back exactly that (and never a database
/// or user that was there before).
#[derive(Default)]
struct Made {
    db: Option<String>,
    users: Vec<String>,
}

impl Made {
    async fn undo(self, server: &AdminEndpoint) {
        let users: Vec<&str> = self.users.iter().map(String::as_str).collect();
        let result = match &self.db {
            Some(db) => drop_database(server, db, &users).await,
            None => drop_users(server, &users).await,
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "could not take back a half-made database");
        }
    }
}

/// Creates database `db` and `users` (name, password, connection limit), recording in `made`
/// what each step created.
async fn build(
    conn: &mut MySqlConnection,
    made: &mut Made,
    db: &str,
    users: &[(&str, &str, u32)],
) -> Result<()> {
    exec(conn, create_db_sql(db)).await?;
    made.db = Some(db.to_string());
    for (name, password, limit) in users {
        exec(conn, create_user_sql(name, password, *limit)).await?;
        made.users.push(name.to_string());
    }
    Ok(())
}

/// A workspace's database and its owner.
pub async fn create_workspace(server: &AdminEndpoint, spec: &DatabaseSpec<'_>) -> Result<()> {
    check_name(spec.name)?;
    let mut made = Made::default();
    let built = async {
        let mut admin = connect_admin(server).await?;
        let user = [(spec.owner_role, spec.owner_password, spec.connection_limit)];
        build(&mut admin, &mut made, spec.name, &user).await?;
        exec(
            &mut admin,
            grant_sql(OWNER_PRIVILEGES, spec.name, spec.owner_role),
        )
        .await?;
        let _ = admin.close().await;
        Ok(())
    }
    .await;
    if built.is_err() {
        made.undo(server).await;
    }
    built
}

/// A tenant database, its three users and its record in `tdb_meta`.
pub async fn create(server: &AdminEndpoint, spec: &TenantSpec<'_>) -> Result<()> {
    check_name(spec.name)?;
    let mut made = Made::default();
    let built = async {
        let mut admin = connect_admin(server).await?;
        let users = [
            (spec.owner_role, spec.owner_password, OWNER_CONNECTIONS),
            (spec.app_role, spec.app_password, spec.connection_limit),
            (spec.read_role, spec.read_password, spec.connection_limit),
        ];
        build(&mut admin, &mut made, spec.name, &users).await?;
        let mut sql = grants_sql(
            spec.name,
            spec.owner_role,
            spec.app_role,
            Some(spec.read_role),
        );
        sql.extend(meta::create_sql(spec.name, spec.owner_role));
        for statement in sql {
            exec(&mut admin, statement).await?;
        }
        let _ = admin.close().await;
        Ok(())
    }
    .await;
    if built.is_err() {
        made.undo(server).await;
    }
    built
}

fn grants_sql(db: &str, owner: &str, app: &str, read: Option<&str>) -> Vec<String> {
    let mut sql = vec![
        grant_sql(OWNER_PRIVILEGES, db, owner),
        grant_sql(APP_PRIVILEGES, db, app),
    ];
    sql.extend(read.map(|read| grant_sql(READ_PRIVILEGES, db, read)));
    sql
}

/// An empty database for a restore, made again when a failed attempt left one, with the
/// tenant's users' grants and a fresh record (version 0, until the restore records the
/// dump's).
pub async fn create_restore_target(server: &AdminEndpoint, spec: &RestoreTarget<'_>) -> Result<()> {
    check_name(spec.name)?;
    let built = async {
        let mut admin = connect_admin(server).await?;
        end_sessions(&mut admin, spec.name, &[]).await?;
        exec(
            &mut admin,
            format!("DROP DATABASE IF EXISTS {}", ident(spec.name)),
        )
        .await?;
        exec(&mut admin, create_db_sql(spec.name)).await?;
        let mut sql = grants_sql(spec.name, spec.owner_role, spec.app_role, spec.read_role);
        sql.extend(meta::create_sql(spec.name, spec.owner_role));
        for statement in sql {
            exec(&mut admin, statement).await?;
        }
        let _ = admin.close().await;
        Ok(())
    }
    .await;
    if built.is_err()
        && let Err(e) = drop_database(server, spec.name, &[]).await
    {
        tracing::warn!(error = %e, "could not take back a half-made restore target");
    }
    built
}

pub async fn exists(conn: &mut MySqlConnection, name: &str) -> Result<bool> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?",
    )
    .bind(name)
    .fetch_one(&mut *conn)
    .await
    .map_err(from_sqlx)?;
    Ok(n > 0)
}

/// Drops database `name`, its record and every grant naming them, then `users`, after ending
/// the sessions of those users and every session using the database. Absent parts are fine.
pub async fn drop_database(server: &AdminEndpoint, name: &str, users: &[&str]) -> Result<()> {
    check_name(name)?;
    let mut admin = connect_admin(server).await?;
    end_sessions(&mut admin, name, users).await?;
    revoke_all_on(&mut admin, name).await?;
    exec(
        &mut admin,
        format!("DROP DATABASE IF EXISTS {}", ident(name)),
    )
    .await?;
    exec(
        &mut admin,
        format!("DROP TABLE IF EXISTS {}", meta::table(name)),
    )
    .await?;
    let _ = admin.close().await;
    drop_users(server, users).await
}

/// Drops `users`, whatever hosts they have accounts for.
async fn drop_users(server: &AdminEndpoint, users: &[&str]) -> Result<()> {
    if users.is_empty() {
        return Ok(());
    }
    let mut admin = connect_admin(server).await?;
    for user in users {
        let hosts: Vec<String> =
            sqlx::query_scalar("SELECT Host FROM mysql.global_priv WHERE User = ?")
                .bind(*user)
                .fetch_all(&mut admin)
                .await
                .map_err(from_sqlx)?;
        for host in hosts {
            exec(
                &mut admin,
                format!("DROP USER IF EXISTS {}", account(user, &host)),
            )
            .await?;
        }
    }
    let _ = admin.close().await;
    Ok(())
}

/// Takes back every grant on database `name` and on its record, whoever holds it: a database
/// made later under the same name must not open to users of this one.
async fn revoke_all_on(conn: &mut MySqlConnection, name: &str) -> Result<()> {
    let on_db: Vec<(String, String)> =
        sqlx::query_as("SELECT User, Host FROM mysql.db WHERE Db = ?")
            .bind(grant_pattern(name))
            .fetch_all(&mut *conn)
            .await
            .map_err(from_sqlx)?;
    for (user, host) in on_db {
        let sql = format!(
            "REVOKE ALL PRIVILEGES ON {}.* FROM {}",
            grant_db(name),
            account(&user, &host)
        );
        exec(conn, sql).await?;
    }
    let on_record: Vec<(String, String)> =
        sqlx::query_as("SELECT User, Host FROM mysql.tables_priv WHERE Db = ? AND Table_name = ?")
            .bind(meta::META_DB)
            .bind(name)
            .fetch_all(&mut *conn)
            .await
            .map_err(from_sqlx)?;
    for (user, host) in on_record {
        let sql = format!(
            "REVOKE ALL PRIVILEGES ON {} FROM {}",
            meta::table(name),
            account(&user, &host)
        );
        exec(conn, sql).await?;
    }
    Ok(())
}

/// Ends the sessions of `users` and every session whose current database is `db`, except the
/// caller's own.
pub async fn end_sessions(conn: &mut MySqlConnection, db: &str, users: &[&str]) -> Result<()> {
    let by_user = if users.is_empty() {
        "FALSE".to_string()
    } else {
        format!("USER IN ({})", vec!["?"; users.len()].join(", "))
    };
    let sql = format!(
        "SELECT CAST(ID AS SIGNED) FROM information_schema.PROCESSLIST
          WHERE ID <> CONNECTION_ID() AND (DB = ? OR {by_user})"
    );
    let mut query = sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).bind(db);
    for user in users {
        query = query.bind(*user);
    }
    let ids: Vec<i64> = query.fetch_all(&mut *conn).await.map_err(from_sqlx)?;
    for id in ids {
        // A session that ended meanwhile is fine (1094, unknown thread).
        let _ = exec(conn, format!("KILL CONNECTION {id}")).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_servers_and_tdbs_databases_are_reserved() {
        for name in ["mysql", "SYS", "tdb_meta", "information_schema"] {
            assert!(check_name(name).is_err(), "{name}");
        }
        assert!(check_name("shop__acme").is_ok());
    }
}
