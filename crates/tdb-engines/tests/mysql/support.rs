//! What the MySQL tests share: servers in reachable temporary directories, logins, tenants,
//! and small queries whose failure is the test's.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sqlx::Connection;
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection, MySqlDatabaseError};
use tdb_core::secrets::MasterKey;
use tdb_engines::budget::MemoryBudget;
use tdb_engines::managed::mariadb::Listen;
use tdb_engines::{
    AdminEndpoint, DatabaseAccess, Limits, ManagedMariadbOptions, MigrationPlan, MysqlEngine,
    RunAs, TenantSpec,
};

pub const OWNER_PW: &str = "owner-secret";
pub const APP_PW: &str = "app-secret";
pub const READ_PW: &str = "read-secret";

/// Access denied: to a database (1044), a table (1142), a column (1143), a privilege (1227),
/// for a user (1045, `FILE`), to create users by GRANT (1410), to a routine (1370).
pub const DENIED: [u16; 7] = [1044, 1045, 1142, 1143, 1227, 1370, 1410];

pub fn tempdir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("tdb-mysql-")
        .tempdir()
        .expect("tempdir");
    // The server runs as `mysql` when tests run as root: it must be able to enter the dir.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    dir
}

pub fn options(dir: &Path, key: &MasterKey, listen: Listen) -> ManagedMariadbOptions {
    ManagedMariadbOptions {
        dir: dir.to_path_buf(),
        run_as: RunAs::resolve("mysql").expect("run-as user"),
        master_key: key.clone(),
        label: "test".into(),
        listen,
        settings: vec![("max_connections".into(), "60".into())],
    }
}

/// A connection as `user` over loopback TCP (or the endpoint's socket).
pub async fn login(
    e: &AdminEndpoint,
    user: &str,
    password: &str,
    db: Option<&str>,
) -> Result<MySqlConnection, sqlx::Error> {
    let opts = MySqlConnectOptions::new().username(user).password(password);
    let opts = if e.host.starts_with('/') {
        opts.socket(&e.host)
    } else {
        opts.host(&e.host).port(e.port)
    };
    let opts = match db {
        Some(db) => opts.database(db),
        None => opts,
    };
    MySqlConnection::connect_with(&opts).await
}

pub async fn admin(e: &AdminEndpoint) -> MySqlConnection {
    login(e, &e.user, &e.password, None)
        .await
        .expect("admin login")
}

pub fn server_pid(data_dir: &Path) -> i32 {
    let text = std::fs::read_to_string(data_dir.join("mariadbd.pid")).expect("pid file");
    text.trim().parse().expect("pid")
}

/// What a fresh data directory brings and tdb must have removed.
pub async fn assert_hardened(e: &AdminEndpoint) {
    let mut conn = admin(e).await;
    let accounts: Vec<(String, String)> =
        sqlx::query_as("SELECT User, Host FROM mysql.global_priv ORDER BY User, Host")
            .fetch_all(&mut conn)
            .await
            .expect("accounts");
    assert!(
        accounts.iter().all(|(u, _)| !u.is_empty() && u != "root"),
        "anonymous or root accounts left: {accounts:?}"
    );
    let dbs: Vec<String> =
        sqlx::query_scalar("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA")
            .fetch_all(&mut conn)
            .await
            .expect("databases");
    assert!(!dbs.iter().any(|d| d == "test"), "{dbs:?}");
    let wildcard: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM mysql.db WHERE User = '' OR Db LIKE 'test%'")
            .fetch_one(&mut conn)
            .await
            .expect("db grants");
    assert_eq!(wildcard, 0);
    let (local_infile, secure_file_priv): (i64, String) =
        sqlx::query_as("SELECT @@local_infile + 0, @@secure_file_priv")
            .fetch_one(&mut conn)
            .await
            .expect("settings");
    assert_eq!(local_infile, 0);
    assert!(secure_file_priv.ends_with("/files/"), "{secure_file_priv}");
    // Its own temporary directory: a server starting clears its tmpdir of `#sql*` files.
    let tmpdir: String = sqlx::query_scalar("SELECT @@tmpdir")
        .fetch_one(&mut conn)
        .await
        .expect("tmpdir");
    assert!(tmpdir.ends_with("/mariadb/tmp"), "{tmpdir}");
    let _ = conn.close().await;
}

pub async fn admin_login_fails(e: &AdminEndpoint) -> bool {
    login(e, &e.user, &e.password, None).await.is_err()
}

pub struct Tenant {
    pub db: String,
    pub owner: String,
    pub app: String,
    pub read: String,
}

impl Tenant {
    pub fn new(db: &str, tag: &str) -> Self {
        Self {
            db: db.into(),
            owner: format!("{tag}_own"),
            app: format!("{tag}_app"),
            read: format!("{tag}_read"),
        }
    }

    pub fn spec(&self) -> TenantSpec<'_> {
        TenantSpec {
            name: &self.db,
            owner_role: &self.owner,
            owner_password: OWNER_PW,
            app_role: &self.app,
            app_password: APP_PW,
            read_role: &self.read,
            read_password: READ_PW,
            connection_limit: 3,
        }
    }

    pub fn owner(&self, e: &AdminEndpoint) -> DatabaseAccess {
        access(e, &self.db, &self.owner, OWNER_PW)
    }

    pub fn app(&self, e: &AdminEndpoint) -> DatabaseAccess {
        access(e, &self.db, &self.app, APP_PW)
    }

    pub fn roles(&self) -> [&str; 3] {
        [&self.owner, &self.app, &self.read]
    }
}

pub fn access(e: &AdminEndpoint, db: &str, user: &str, password: &str) -> DatabaseAccess {
    DatabaseAccess {
        host: e.host.clone(),
        port: e.port,
        database: db.into(),
        user: user.into(),
        password: password.into(),
    }
}

pub fn limits(timeout: Duration, max_rows: usize) -> Limits {
    Limits {
        timeout,
        max_rows,
        answer: MemoryBudget::new(1 << 20).answer(1 << 20),
        owner_sessions: Arc::new(tokio::sync::Semaphore::new(4)),
    }
}

pub fn plan<'a>(
    owner: &'a DatabaseAccess,
    admin: &'a AdminEndpoint,
    (from, version): (i32, i32),
    statements: &'a [String],
    dry_run: bool,
) -> MigrationPlan<'a> {
    MigrationPlan {
        owner,
        admin,
        from,
        statements,
        version,
        dry_run,
        timeout: Duration::from_secs(30),
    }
}

pub fn statements(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

pub fn errno(e: &sqlx::Error) -> Option<u16> {
    e.as_database_error()?
        .try_downcast_ref::<MySqlDatabaseError>()
        .map(|e| e.number())
}

/// The error number the server refuses `sql` with.
pub async fn refused(conn: &mut MySqlConnection, sql: &str) -> u16 {
    let err = sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
        .execute(&mut *conn)
        .await
        .expect_err(sql);
    errno(&err).unwrap_or_else(|| panic!("{sql}: not a server error: {err}"))
}

pub async fn scalar_i64(conn: &mut MySqlConnection, sql: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string()))
        .fetch_one(&mut *conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

pub async fn strings(conn: &mut MySqlConnection, sql: &str) -> Vec<String> {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string()))
        .fetch_all(&mut *conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// Column names of `table` in acme's database.
pub async fn columns(e: &AdminEndpoint, db: &str, table: &str) -> Vec<String> {
    let mut conn = admin(e).await;
    let names = sqlx::query_scalar(
        "SELECT COLUMN_NAME FROM information_schema.COLUMNS
          WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
    )
    .bind(db)
    .bind(table)
    .fetch_all(&mut conn)
    .await
    .expect("columns");
    let _ = conn.close().await;
    names
}

pub async fn leftovers_of_dry_runs(e: &AdminEndpoint) -> (i64, i64) {
    let mut conn = admin(e).await;
    let dbs = scalar_i64(
        &mut conn,
        "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE 'tdb\\_dry\\_%'",
    )
    .await;
    let users = scalar_i64(
        &mut conn,
        "SELECT COUNT(*) FROM mysql.global_priv WHERE User LIKE 'tdb\\_dry\\_%'",
    )
    .await;
    let _ = conn.close().await;
    (dbs, users)
}

/// `CHECKSUM TABLE` of each of `tables` in `db`.
pub async fn checksums(e: &AdminEndpoint, db: &str, tables: &[&str]) -> Vec<i64> {
    let mut conn = admin(e).await;
    let mut sums = Vec::new();
    for table in tables {
        let row: (String, Option<i64>) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "CHECKSUM TABLE `{db}`.`{table}`"
        )))
        .fetch_one(&mut conn)
        .await
        .expect("checksum");
        sums.push(row.1.expect("table exists"));
    }
    let _ = conn.close().await;
    sums
}

pub struct Ctx {
    pub engine: MysqlEngine,
    pub e: AdminEndpoint,
    pub acme: Tenant,
    pub lookalike: Tenant,
    pub other: Tenant,
}
