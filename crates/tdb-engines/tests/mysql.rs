//! The MySQL engine against real MariaDB servers managed by tdb: the server starts hardened
//! and comes back on the same data; inside it, a tenant's users reach their own database and
//! nothing else; migrations resume after a failure without running a statement twice; dumps
//! restore to the same rows; sessions answer rows, counts, errors and timeouts.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use sqlx::Connection;
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection};
use tdb_core::secrets::MasterKey;
use tdb_engines::managed::mariadb::{self, Listen};
use tdb_engines::managed::process::alive;
use tdb_engines::{AdminEndpoint, ManagedMariadb, ManagedMariadbOptions, RunAs};

fn tempdir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("tdb-mysql-")
        .tempdir()
        .expect("tempdir");
    // The server runs as `mysql` when tests run as root: it must be able to enter the dir.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    dir
}

fn options(dir: &Path, key: &MasterKey, listen: Listen) -> ManagedMariadbOptions {
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
async fn login(
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

async fn admin(e: &AdminEndpoint) -> MySqlConnection {
    login(e, &e.user, &e.password, None)
        .await
        .expect("admin login")
}

fn server_pid(data_dir: &Path) -> i32 {
    let text = std::fs::read_to_string(data_dir.join("mariadbd.pid")).expect("pid file");
    text.trim().parse().expect("pid")
}

/// What a fresh data directory brings and tdb must have removed.
async fn assert_hardened(e: &AdminEndpoint) {
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
    let _ = conn.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managed_server_starts_hardened_survives_a_crash_and_restarts() {
    let tmp = tempdir();
    let dir = tmp.path().join("mariadb");
    let key = MasterKey::generate();
    let server = ManagedMariadb::start(options(&dir, &key, Listen::Loopback))
        .await
        .expect("start");
    let endpoint = server.endpoint().clone();
    assert_eq!(endpoint.host, "127.0.0.1");
    assert_hardened(&endpoint).await;

    // Root cannot log in, with or without a password; nobody can without one.
    for user in ["root", "", "tdb_admin"] {
        assert!(login(&endpoint, user, "", None).await.is_err(), "{user:?}");
    }
    // The password is sealed, never written in clear; the data dir is the server's alone.
    let state = std::fs::read_to_string(dir.join("state.json")).expect("state");
    assert!(!state.contains(&endpoint.password));
    let state_mode = std::fs::metadata(dir.join("state.json"))
        .expect("state")
        .mode();
    assert_eq!(state_mode & 0o777, 0o600);
    let data = std::fs::metadata(dir.join("data")).expect("data dir");
    assert_eq!(data.mode() & 0o777, 0o700);
    let mysql = RunAs::resolve("mysql").expect("run-as");
    assert_eq!(data.uid(), mysql.uid.as_raw());
    assert!(!dir.join("init.sql").exists());

    let mut conn = admin(&endpoint).await;
    sqlx::raw_sql(
        "CREATE DATABASE kept; CREATE TABLE kept.t (v int); INSERT INTO kept.t VALUES (42)",
    )
    .execute(&mut conn)
    .await
    .expect("write");
    let _ = conn.close().await;

    // A crash of the server is noticed and repaired by the supervisor.
    let pid = server_pid(server.data_dir());
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill mariadbd");
    let mut recovered = false;
    for _ in 0..300 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if let Ok(mut c) = login(&endpoint, &endpoint.user, &endpoint.password, None).await {
            let v: i32 = sqlx::query_scalar("SELECT v FROM kept.t")
                .fetch_one(&mut c)
                .await
                .expect("read");
            assert_eq!(v, 42);
            recovered = true;
            break;
        }
    }
    assert!(recovered, "server was not restarted after a crash");
    let new_pid = server_pid(server.data_dir());
    assert_ne!(pid, new_pid);

    server.shutdown().await;
    assert!(!alive(new_pid), "mariadbd still running after shutdown");
    assert!(admin_login_fails(&endpoint).await);

    // Starting again reuses the data directory, its password and its data.
    let server = ManagedMariadb::start(options(&dir, &key, Listen::Loopback))
        .await
        .expect("restart");
    assert_eq!(server.endpoint().password, endpoint.password);
    let mut conn = admin(server.endpoint()).await;
    let v: i32 = sqlx::query_scalar("SELECT v FROM kept.t")
        .fetch_one(&mut conn)
        .await
        .expect("read");
    assert_eq!(v, 42);
    let _ = conn.close().await;
    server.shutdown().await;

    // Under another master key the sealed password cannot be opened: a clear error.
    let err = ManagedMariadb::start(options(&dir, &MasterKey::generate(), Listen::Loopback))
        .await
        .err()
        .expect("wrong key must fail");
    assert!(err.to_string().contains("master key"), "{err}");
    mariadb::remove(&dir).await.expect("remove");
    assert!(!dir.exists());
}

async fn admin_login_fails(e: &AdminEndpoint) -> bool {
    login(e, &e.user, &e.password, None).await.is_err()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_socket_server_has_no_tcp_port() {
    let tmp = tempdir();
    let dir = tmp.path().join("mariadb");
    let key = MasterKey::generate();
    let server = ManagedMariadb::start(options(&dir, &key, Listen::PrivateSocket))
        .await
        .expect("start");
    let endpoint = server.endpoint().clone();
    assert!(endpoint.host.starts_with('/'), "{}", endpoint.host);
    assert!(endpoint.host.ends_with("/mysqld.sock"));
    let socket_dir = Path::new(&endpoint.host).parent().expect("socket dir");
    let meta = std::fs::metadata(socket_dir).expect("socket dir");
    assert_eq!(meta.mode() & 0o777, 0o700);
    assert_hardened(&endpoint).await;
    let mut conn = admin(&endpoint).await;
    let skip: i64 = sqlx::query_scalar("SELECT @@skip_networking + 0")
        .fetch_one(&mut conn)
        .await
        .expect("skip_networking");
    assert_eq!(skip, 1);
    let _ = conn.close().await;
    let tcp = AdminEndpoint {
        host: "127.0.0.1".into(),
        ..endpoint.clone()
    };
    assert!(admin_login_fails(&tcp).await);
    server.shutdown().await;
    mariadb::remove(&dir).await.expect("remove");
}

// --- the engine ----------------------------------------------------------------------------

use std::sync::Arc;

use sqlx::mysql::MySqlDatabaseError;
use tdb_engines::budget::MemoryBudget;
use tdb_engines::{
    DatabaseAccess, DatabaseSpec, Engine, EngineError, Limits, Migration, MigrationPlan,
    MysqlEngine, RestoreTarget, TenantSpec,
};

const OWNER_PW: &str = "owner-secret";
const APP_PW: &str = "app-secret";
const READ_PW: &str = "read-secret";

struct Tenant {
    db: String,
    owner: String,
    app: String,
    read: String,
}

impl Tenant {
    fn new(db: &str, tag: &str) -> Self {
        Self {
            db: db.into(),
            owner: format!("{tag}_own"),
            app: format!("{tag}_app"),
            read: format!("{tag}_read"),
        }
    }

    fn spec(&self) -> TenantSpec<'_> {
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

    fn owner(&self, e: &AdminEndpoint) -> DatabaseAccess {
        access(e, &self.db, &self.owner, OWNER_PW)
    }

    fn app(&self, e: &AdminEndpoint) -> DatabaseAccess {
        access(e, &self.db, &self.app, APP_PW)
    }

    fn roles(&self) -> [&str; 3] {
        [&self.owner, &self.app, &self.read]
    }
}

fn access(e: &AdminEndpoint, db: &str, user: &str, password: &str) -> DatabaseAccess {
    DatabaseAccess {
        host: e.host.clone(),
        port: e.port,
        database: db.into(),
        user: user.into(),
        password: password.into(),
    }
}

fn limits(timeout: Duration, max_rows: usize) -> Limits {
    Limits {
        timeout,
        max_rows,
        answer: MemoryBudget::new(1 << 20).answer(1 << 20),
        owner_sessions: Arc::new(tokio::sync::Semaphore::new(4)),
    }
}

fn plan<'a>(
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

fn statements(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn errno(e: &sqlx::Error) -> Option<u16> {
    e.as_database_error()?
        .try_downcast_ref::<MySqlDatabaseError>()
        .map(|e| e.number())
}

/// The error number the server refuses `sql` with.
async fn refused(conn: &mut MySqlConnection, sql: &str) -> u16 {
    let err = sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
        .execute(&mut *conn)
        .await
        .expect_err(sql);
    errno(&err).unwrap_or_else(|| panic!("{sql}: not a server error: {err}"))
}

async fn scalar_i64(conn: &mut MySqlConnection, sql: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string()))
        .fetch_one(&mut *conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

async fn strings(conn: &mut MySqlConnection, sql: &str) -> Vec<String> {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string()))
        .fetch_all(&mut *conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

struct Ctx {
    engine: MysqlEngine,
    e: AdminEndpoint,
    acme: Tenant,
    lookalike: Tenant,
    other: Tenant,
}

/// One server for every scenario of the engine, run in order: each leaves what the next uses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_engine_on_mariadb() {
    let tmp = tempdir();
    let dir = tmp.path().join("mariadb");
    let server = ManagedMariadb::start(options(&dir, &MasterKey::generate(), Listen::Loopback))
        .await
        .expect("start");
    let ctx = Ctx {
        engine: MysqlEngine::new(None),
        e: server.endpoint().clone(),
        acme: Tenant::new("shop__acme", "acme"),
        lookalike: Tenant::new("shopxyacme", "xy"),
        other: Tenant::new("shop__other", "other"),
    };
    let started = std::time::Instant::now();
    server_figures(&ctx).await;
    tenants_are_created_once(&ctx).await;
    isolation_holds_inside_mariadb(&ctx).await;
    connection_limits_hold(&ctx).await;
    migrations_apply_resume_and_dry_run(&ctx).await;
    sessions_answer_rows_counts_errors_and_timeouts(&ctx).await;
    introspection_and_export(&ctx).await;
    dump_restores_the_same_rows_and_schema(&ctx).await;
    workspaces_get_one_owner(&ctx).await;
    drops_end_sessions_and_take_grants_back(&ctx).await;
    eprintln!("engine scenarios took {:?}", started.elapsed());
    server.shutdown().await;
    mariadb::remove(&dir).await.expect("remove");
}

async fn server_figures(ctx: &Ctx) {
    let capacity = ctx
        .engine
        .connection_capacity(&ctx.e)
        .await
        .expect("capacity");
    assert_eq!(capacity, 60 - 5);
    // Hardening again changes nothing and fails nothing.
    ctx.engine
        .secure_server(&ctx.e, &["x"])
        .await
        .expect("secure");
    ctx.engine
        .secure_server(&ctx.e, &[])
        .await
        .expect("secure again");
    let sweep = ctx
        .engine
        .hide_shared_catalogs(&ctx.e)
        .await
        .expect("sweep");
    assert_eq!(sweep, Default::default());
    assert_hardened(&ctx.e).await;
    assert_eq!(ctx.engine.kind(), tdb_core::Engine::Mysql);
}

async fn tenants_are_created_once(ctx: &Ctx) {
    for t in [&ctx.acme, &ctx.lookalike, &ctx.other] {
        assert!(
            !ctx.engine
                .database_exists(&ctx.e, &t.db)
                .await
                .expect("exists")
        );
        ctx.engine
            .create_tenant_database(&ctx.e, &t.spec())
            .await
            .expect("create tenant");
        assert!(
            ctx.engine
                .database_exists(&ctx.e, &t.db)
                .await
                .expect("exists")
        );
    }
    // A second create fails and leaves the first as it was.
    ctx.engine
        .create_tenant_database(&ctx.e, &ctx.acme.spec())
        .await
        .expect_err("exists already");
    let app = login(&ctx.e, &ctx.acme.app, APP_PW, Some(&ctx.acme.db))
        .await
        .expect("acme app still logs in");
    let _ = app.close().await;
    // Users named as existing ones: the database made meanwhile is taken back.
    let clash = Tenant {
        db: "shop__clash".into(),
        ..Tenant::new("shop__clash", "acme")
    };
    ctx.engine
        .create_tenant_database(&ctx.e, &clash.spec())
        .await
        .expect_err("users exist");
    assert!(
        !ctx.engine
            .database_exists(&ctx.e, &clash.db)
            .await
            .expect("exists")
    );
    let app = login(&ctx.e, &ctx.acme.app, APP_PW, Some(&ctx.acme.db))
        .await
        .expect("acme app untouched");
    let _ = app.close().await;

    // Some data: acme's own table (by its owner), the others' secrets (by the administrator).
    let mut owner = login(&ctx.e, &ctx.acme.owner, OWNER_PW, Some(&ctx.acme.db))
        .await
        .expect("owner");
    sqlx::raw_sql("CREATE TABLE items (id int PRIMARY KEY, name varchar(20)); INSERT INTO items VALUES (1, 'one')")
        .execute(&mut owner)
        .await
        .expect("owner DDL");
    let _ = owner.close().await;
    let mut admin = admin(&ctx.e).await;
    for db in [&ctx.lookalike.db, &ctx.other.db] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "CREATE TABLE `{db}`.secret (v int); INSERT INTO `{db}`.secret VALUES (42)"
        )))
        .execute(&mut admin)
        .await
        .expect("secret");
    }
    let _ = admin.close().await;
}

/// Access denied: to a database (1044), a table (1142), a column (1143), a privilege (1227),
/// for a user (1045, `FILE`), to create users by GRANT (1410), to a routine (1370).
const DENIED: [u16; 7] = [1044, 1045, 1142, 1143, 1227, 1370, 1410];

async fn isolation_holds_inside_mariadb(ctx: &Ctx) {
    let (acme, e) = (&ctx.acme, &ctx.e);
    let mut app = login(e, &acme.app, APP_PW, Some(&acme.db))
        .await
        .expect("app");
    // Its own rows: read and write.
    sqlx::raw_sql(
        "INSERT INTO items VALUES (2, 'two'); UPDATE items SET name = 'uno' WHERE id = 1",
    )
    .execute(&mut app)
    .await
    .expect("app writes rows");
    assert_eq!(scalar_i64(&mut app, "SELECT COUNT(*) FROM items").await, 2);
    // Session-scoped temporary tables are its own.
    sqlx::raw_sql("CREATE TEMPORARY TABLE scratch (v int); DROP TEMPORARY TABLE scratch")
        .execute(&mut app)
        .await
        .expect("temporary table");

    // Nothing of the other databases, the one whose name `_` would match included.
    for db in [&ctx.lookalike.db, &ctx.other.db] {
        assert_eq!(refused(&mut app, &format!("USE `{db}`")).await, 1044);
        assert_eq!(
            refused(&mut app, &format!("SELECT * FROM `{db}`.secret")).await,
            1142
        );
    }
    let dbs = strings(&mut app, "SHOW DATABASES").await;
    assert_eq!(dbs, vec!["information_schema".to_string(), acme.db.clone()]);
    let schemas = strings(
        &mut app,
        "SELECT DISTINCT TABLE_SCHEMA FROM information_schema.TABLES ORDER BY 1",
    )
    .await;
    // Besides its own: the catalogs' own tables, and the three performance_schema tables
    // MariaDB opens to everyone (global and session status, its own connection attributes).
    assert_eq!(
        schemas,
        ["information_schema", "performance_schema", acme.db.as_str()]
    );
    let open = strings(
        &mut app,
        "SELECT TABLE_NAME FROM information_schema.TABLES
          WHERE TABLE_SCHEMA = 'performance_schema' ORDER BY 1",
    )
    .await;
    assert_eq!(
        open,
        [
            "global_status",
            "session_account_connect_attrs",
            "session_status"
        ]
    );
    let users = scalar_i64(
        &mut app,
        "SELECT COUNT(*) FROM information_schema.PROCESSLIST
          WHERE USER <> SUBSTRING_INDEX(CURRENT_USER(), '@', 1)",
    )
    .await;
    assert_eq!(users, 0, "other users' sessions are hidden");

    for sql in [
        "SELECT * FROM mysql.user",
        "SELECT * FROM mysql.global_priv",
        "SELECT * FROM tdb_meta.shop__acme",
        "CREATE TABLE t (v int)",
        "ALTER TABLE items ADD COLUMN c int",
        "DROP TABLE items",
        "TRUNCATE TABLE items",
        "CREATE INDEX i ON items (name)",
        "CREATE VIEW v AS SELECT 1",
        "CREATE PROCEDURE p() SELECT 1",
        "CREATE TRIGGER tr BEFORE INSERT ON items FOR EACH ROW SET @x = 1",
        "GRANT SELECT ON shop__acme.* TO 'xy_app'@'%'",
        "CREATE USER 'intruder'@'%' IDENTIFIED BY 'x'",
        "SET PASSWORD FOR 'other_app'@'%' = PASSWORD('x')",
        "SELECT * FROM items INTO OUTFILE '/tmp/tdb-leak.txt'",
        "LOAD DATA INFILE '/etc/passwd' INTO TABLE items",
        "DROP DATABASE shop__acme",
        "CREATE DATABASE shop__acme2",
        "SET GLOBAL max_connections = 1",
        "KILL 1",
        "INSERT INTO tdb_meta.shop__acme (id, version, lock_key) VALUES (2, 9, 'x')",
        "UPDATE tdb_meta.shop__acme SET version = 99",
    ] {
        let n = refused(&mut app, sql).await;
        assert!(
            DENIED.contains(&n) || (sql.starts_with("KILL") && matches!(n, 1094 | 1095)),
            "{sql}: error {n}"
        );
    }
    assert!(!Path::new("/tmp/tdb-leak.txt").exists());
    assert_eq!(scalar_i64(&mut app, "SELECT COUNT(*) FROM items").await, 2);
    let _ = app.close().await;

    // The read user reads and writes nothing.
    let mut read = login(e, &acme.read, READ_PW, Some(&acme.db))
        .await
        .expect("read");
    assert_eq!(scalar_i64(&mut read, "SELECT COUNT(*) FROM items").await, 2);
    for sql in [
        "INSERT INTO items VALUES (3, 'three')",
        "UPDATE items SET name = 'x'",
        "DELETE FROM items",
        "CREATE TEMPORARY TABLE scratch (v int)",
    ] {
        let n = refused(&mut read, sql).await;
        assert!(DENIED.contains(&n), "{sql}: error {n}");
    }
    let _ = read.close().await;

    // The lookalike's own app still reads its own secret: the grants are per database.
    let mut xy = login(e, &ctx.lookalike.app, APP_PW, Some(&ctx.lookalike.db))
        .await
        .expect("xy app");
    assert_eq!(scalar_i64(&mut xy, "SELECT v FROM secret").await, 42);
    assert_eq!(
        refused(&mut xy, "SELECT * FROM shop__acme.items").await,
        1142
    );
    let _ = xy.close().await;
}

async fn connection_limits_hold(ctx: &Ctx) {
    let acme = &ctx.acme;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(
            login(&ctx.e, &acme.app, APP_PW, Some(&acme.db))
                .await
                .expect("within the limit"),
        );
    }
    let err = login(&ctx.e, &acme.app, APP_PW, Some(&acme.db))
        .await
        .expect_err("over MAX_USER_CONNECTIONS");
    assert_eq!(errno(&err), Some(1226), "{err}");
    // The engine says so as a busy server, which may succeed later.
    let busy = ctx
        .engine
        .open(&acme.app(&ctx.e), limits(Duration::from_secs(5), 10), None)
        .await
        .err()
        .expect("busy");
    assert!(matches!(busy, EngineError::Busy(_)), "{busy:?}");
    assert!(busy.is_transient());
    for conn in held {
        let _ = conn.close().await;
    }
}

/// Column names of `table` in acme's database.
async fn columns(e: &AdminEndpoint, db: &str, table: &str) -> Vec<String> {
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

async fn leftovers_of_dry_runs(e: &AdminEndpoint) -> (i64, i64) {
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

async fn migrations_apply_resume_and_dry_run(ctx: &Ctx) {
    let (engine, e, acme) = (&ctx.engine, &ctx.e, &ctx.acme);
    let sql = engine.sql().expect("sql");
    let owner = acme.owner(e);
    assert_eq!(sql.schema_version(&owner).await.expect("version"), 0);

    let v1 = statements(&[
        "CREATE TABLE parent (id int PRIMARY KEY, label varchar(20) COLLATE utf8mb4_bin)",
        "CREATE TABLE child (id int AUTO_INCREMENT PRIMARY KEY, parent_id int NOT NULL, \
         qty int DEFAULT 1, CONSTRAINT child_parent FOREIGN KEY (parent_id) REFERENCES parent (id) \
         ON DELETE CASCADE, CONSTRAINT qty_positive CHECK (qty > 0), KEY by_qty (qty, parent_id))",
        "CREATE VIEW child_count AS SELECT parent_id, COUNT(*) AS n FROM child GROUP BY parent_id",
    ]);
    let run = sql.migrate(&plan(&owner, e, (0, 1), &v1, false)).await;
    assert_eq!(run.expect("v1"), Migration::Applied { from: 0 });
    assert_eq!(sql.schema_version(&owner).await.expect("version"), 1);
    let again = sql.migrate(&plan(&owner, e, (0, 1), &v1, false)).await;
    assert_eq!(again.expect("rerun"), Migration::AlreadyAt(1));
    let skipped = sql.migrate(&plan(&owner, e, (3, 4), &v1, false)).await;
    assert_eq!(skipped.expect("mismatch"), Migration::Mismatch(1));

    // Statement 2 of 3 fails: statement 1 stays done and recorded, the version stays.
    let broken = statements(&[
        "ALTER TABLE parent ADD COLUMN note varchar(10)",
        "INSERT INTO nowhere VALUES (1)",
        "ALTER TABLE parent ADD COLUMN extra int",
    ]);
    let err = sql
        .migrate(&plan(&owner, e, (1, 2), &broken, false))
        .await
        .expect_err("statement 2 fails");
    match &err {
        EngineError::Query {
            message,
            sqlstate,
            detail,
        } => {
            assert!(message.contains("nowhere"), "{message}");
            assert_eq!(sqlstate, "42S02");
            assert_eq!(detail.as_deref(), Some("1146"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(sql.schema_version(&owner).await.expect("version"), 1);
    assert_eq!(
        columns(e, &acme.db, "parent").await,
        ["id", "label", "note"]
    );
    // Another migration cannot start over what is half done.
    let other = statements(&["SELECT 1"]);
    sql.migrate(&plan(&owner, e, (1, 3), &other, false))
        .await
        .expect_err("partway to version 2");
    // Fixed, it resumes at statement 2: statement 1 (which would fail a second time, the
    // column exists) is not run again.
    let fixed = statements(&[
        "ALTER TABLE parent ADD COLUMN note varchar(10)",
        "INSERT INTO parent (id, label, note) VALUES (1, 'Alpha', 'n')",
        "ALTER TABLE parent ADD COLUMN extra int",
    ]);
    let resumed = sql.migrate(&plan(&owner, e, (1, 2), &fixed, false)).await;
    assert_eq!(resumed.expect("resumed"), Migration::Applied { from: 1 });
    assert_eq!(sql.schema_version(&owner).await.expect("version"), 2);
    assert_eq!(
        columns(e, &acme.db, "parent").await,
        ["id", "label", "note", "extra"]
    );

    // A dry run applies to a copy and leaves the tenant (and the server) as it was.
    let v3 = statements(&[
        "ALTER TABLE child ADD COLUMN shipped tinyint(1) NOT NULL DEFAULT 0",
        "CREATE TABLE audit (id int PRIMARY KEY)",
        "INSERT INTO child (parent_id) VALUES (1)",
    ]);
    let dry = sql.migrate(&plan(&owner, e, (2, 3), &v3, true)).await;
    assert_eq!(dry.expect("dry run"), Migration::WouldApply { from: 2 });
    assert_eq!(sql.schema_version(&owner).await.expect("version"), 2);
    assert!(
        !columns(e, &acme.db, "child")
            .await
            .contains(&"shipped".to_string())
    );
    assert!(columns(e, &acme.db, "audit").await.is_empty());
    assert_eq!(leftovers_of_dry_runs(e).await, (0, 0));
    // A dry run that fails says why, and leaves nothing either; one that names the real
    // database is refused (its scratch user has no grant there).
    let bad = statements(&["ALTER TABLE child ADD COLUMN parent_id int"]);
    sql.migrate(&plan(&owner, e, (2, 3), &bad, true))
        .await
        .expect_err("duplicate column");
    let escape = statements(&["ALTER TABLE shop__acme.child ADD COLUMN sneaky int"]);
    sql.migrate(&plan(&owner, e, (2, 3), &escape, true))
        .await
        .expect_err("the real database is out of reach");
    assert!(
        !columns(e, &acme.db, "child")
            .await
            .contains(&"sneaky".to_string())
    );
    assert_eq!(leftovers_of_dry_runs(e).await, (0, 0));
    // The real run.
    let applied = sql.migrate(&plan(&owner, e, (2, 3), &v3, false)).await;
    assert_eq!(applied.expect("v3"), Migration::Applied { from: 2 });
}

async fn sessions_answer_rows_counts_errors_and_timeouts(ctx: &Ctx) {
    use serde_json::json;
    let (engine, e, acme) = (&ctx.engine, &ctx.e, &ctx.acme);
    let mut session = engine
        .open(&acme.app(e), limits(Duration::from_secs(1), 3), Some(e))
        .await
        .expect("session");
    let out = session
        .run(
            "SELECT 1 AS i, -5 AS neg, 18446744073709551615 AS big, 'x' AS s, 1.5e0 AS f, \
             CAST(2.50 AS DECIMAL(5,2)) AS d, NULL AS n, X'FF00' AS b, DATE '2024-01-02' AS dt, \
             label FROM parent",
        )
        .await
        .expect("select");
    assert_eq!(
        out.columns,
        ["i", "neg", "big", "s", "f", "d", "n", "b", "dt", "label"]
    );
    assert_eq!(
        out.rows,
        vec![vec![
            json!(1),
            json!(-5),
            json!(18446744073709551615u64),
            json!("x"),
            json!(1.5),
            json!("2.50"),
            json!(null),
            json!("0xff00"),
            json!("2024-01-02"),
            // A utf8mb4_bin column is text, not bytes.
            json!("Alpha"),
        ]]
    );
    assert_eq!((out.row_count, out.truncated), (1, false));

    // DML answers the rows it affected.
    let out = session
        .run("INSERT INTO items VALUES (10, 'a'), (11, 'b'), (12, 'c'), (13, 'd')")
        .await
        .expect("insert");
    assert_eq!((out.row_count, out.columns.len()), (4, 0));
    let out = session
        .run("UPDATE items SET name = 'z' WHERE id >= 12")
        .await
        .expect("update");
    assert_eq!(out.row_count, 2);
    // Rows past max_rows are counted, not kept.
    let out = session
        .run("SELECT id FROM items ORDER BY id")
        .await
        .expect("many");
    assert_eq!((out.rows.len(), out.row_count, out.truncated), (3, 6, true));
    // A query without rows still names its columns.
    let out = session
        .run("SELECT id, name FROM items WHERE id < 0")
        .await
        .expect("empty");
    assert_eq!((out.columns.len(), out.row_count), (2, 0));

    // Errors carry the server's message, SQLSTATE and error number.
    let query_error = |e: EngineError| match e {
        EngineError::Query {
            message,
            sqlstate,
            detail,
        } => (message, sqlstate, detail),
        other => panic!("{other:?}"),
    };
    let err = session
        .run("INSERT INTO items VALUES (10, 'again')")
        .await
        .expect_err("duplicate");
    let (message, sqlstate, detail) = query_error(err);
    assert!(message.contains("Duplicate entry"), "{message}");
    assert_eq!(
        (sqlstate.as_str(), detail.as_deref()),
        ("23000", Some("1062"))
    );
    let err = session.run("SELEC 1").await.expect_err("syntax");
    let (_, sqlstate, detail) = query_error(err);
    assert_eq!(
        (sqlstate.as_str(), detail.as_deref()),
        ("42000", Some("1064"))
    );
    // The session goes on after refused statements.
    session.run("SELECT 1").await.expect("still usable");

    // The server's timeout ends a long statement; the session stays usable.
    let started = std::time::Instant::now();
    let err = session.run("SELECT SLEEP(5)").await.expect_err("timeout");
    assert!(matches!(err, EngineError::Timeout(_)), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
    session
        .run("SELECT 1")
        .await
        .expect("usable after a server timeout");

    // A statement that lifts the server's timeout is stopped by tdb: the connection is ended.
    let mut admin = admin(e).await;
    let before = scalar_i64(
        &mut admin,
        "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = 'acme_app'",
    )
    .await;
    assert!(before >= 1);
    let started = std::time::Instant::now();
    let err = session
        .run("SET STATEMENT max_statement_time = 0 FOR SELECT SLEEP(30)")
        .await
        .expect_err("client timeout");
    assert!(matches!(err, EngineError::Timeout(_)), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(4));
    let mut gone = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let left = scalar_i64(
            &mut admin,
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = 'acme_app'",
        )
        .await;
        if left == 0 {
            gone = true;
            break;
        }
    }
    assert!(gone, "the stuck statement's connection was not ended");
    session
        .run("SELECT 1")
        .await
        .expect_err("the session has ended");
    session.close().await;
    let _ = admin.close().await;

    // An answer over the request's memory fails alone.
    let mut small = limits(Duration::from_secs(5), 1000);
    small.answer = MemoryBudget::new(4096).answer(4096);
    let mut session = engine
        .open(&acme.app(e), small, None)
        .await
        .expect("session");
    let err = session
        .run("SELECT REPEAT('x', 1000) FROM items a, items b")
        .await
        .expect_err("too large");
    assert!(matches!(err, EngineError::TooLarge(_)), "{err:?}");
    session.close().await;
}

async fn introspection_and_export(ctx: &Ctx) {
    let (engine, e, acme) = (&ctx.engine, &ctx.e, &ctx.acme);
    let owner = acme.owner(e);
    let schema = engine
        .introspection()
        .expect("introspection")
        .introspect(&owner)
        .await
        .expect("introspect");
    let names: Vec<&str> = schema.tables.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["audit", "child", "items", "parent"]);
    let child = &schema.tables[1];
    let id = &child.columns[0];
    assert_eq!((id.name.as_str(), id.data_type.as_str()), ("id", "int(11)"));
    assert_eq!(id.identity.as_deref(), Some("by default"));
    assert!(!id.nullable);
    let qty = &child.columns[2];
    assert_eq!((qty.default.as_deref(), qty.nullable), (Some("1"), true));
    let indexes: Vec<&str> = child
        .indexes
        .iter()
        .map(|i| i.definition.as_str())
        .collect();
    assert!(indexes.contains(&"PRIMARY KEY (`id`)"), "{indexes:?}");
    assert!(
        indexes.contains(&"KEY `by_qty` (`qty`,`parent_id`)"),
        "{indexes:?}"
    );
    assert_eq!(child.foreign_keys.len(), 1);
    let fk = &child.foreign_keys[0];
    assert_eq!(
        (fk.name.as_str(), fk.references_table.as_str()),
        ("child_parent", "parent")
    );
    assert_eq!(
        (fk.columns.clone(), fk.references_columns.clone()),
        (vec!["parent_id".to_string()], vec!["id".to_string()])
    );
    assert!(
        fk.definition.contains("ON DELETE CASCADE"),
        "{}",
        fk.definition
    );
    assert_eq!(child.checks.len(), 1);
    assert_eq!(child.checks[0].name, "qty_positive");

    let ddl = engine
        .sql()
        .expect("sql")
        .export_schema(&owner)
        .await
        .expect("export");
    let position = |needle: &str| {
        ddl.iter()
            .position(|s| s.contains(needle))
            .unwrap_or_else(|| panic!("{needle} not in {ddl:#?}"))
    };
    assert!(position("CREATE TABLE `parent`") < position("CREATE TABLE `child`"));
    assert!(position("CREATE TABLE `child`") < position("VIEW `child_count`"));
    assert!(
        ddl.iter()
            .all(|s| !s.contains("DEFINER=") && !s.contains("AUTO_INCREMENT="))
    );
    assert!(ddl.iter().all(|s| !s.contains("tdb_meta")));
}

/// `CHECKSUM TABLE` of each of `tables` in `db`.
async fn checksums(e: &AdminEndpoint, db: &str, tables: &[&str]) -> Vec<i64> {
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

async fn dump_restores_the_same_rows_and_schema(ctx: &Ctx) {
    use tokio::io::AsyncReadExt;
    let (engine, e, acme) = (&ctx.engine, &ctx.e, &ctx.acme);
    let owner = acme.owner(e);
    // Something only a dump with routines and triggers carries, and binary data.
    let mut conn = login(e, &acme.owner, OWNER_PW, Some(&acme.db))
        .await
        .expect("owner");
    sqlx::raw_sql(
        "CREATE TABLE blobs (id int PRIMARY KEY, data varbinary(16));
         INSERT INTO blobs VALUES (1, X'00FF0A27'), (2, NULL);
         CREATE TRIGGER items_upper BEFORE INSERT ON items FOR EACH ROW SET NEW.name = UPPER(NEW.name);
         CREATE FUNCTION twice(x int) RETURNS int DETERMINISTIC RETURN x * 2",
    )
    .execute(&mut conn)
    .await
    .expect("owner objects");
    let _ = conn.close().await;

    let mut dump = engine.dump(&owner).await.expect("dump");
    let mut bytes = Vec::new();
    dump.output
        .read_to_end(&mut bytes)
        .await
        .expect("read dump");
    dump.finish.await.expect("dump finished");
    let text = String::from_utf8_lossy(&bytes);
    assert!(
        text.starts_with("-- tdb_meta schema_version 3\n"),
        "{}",
        &text[..200.min(text.len())]
    );
    assert!(!text.contains(OWNER_PW));
    assert!(!text.contains("CREATE DATABASE") && !text.contains("USE `"));
    assert!(text.contains("items_upper") && text.contains("twice"));

    let target = RestoreTarget {
        name: "tdb_t_restored",
        owner_role: &acme.owner,
        app_role: &acme.app,
        read_role: Some(&acme.read),
    };
    engine
        .create_restore_target(e, &target)
        .await
        .expect("target");
    let restored = access(e, target.name, &acme.owner, OWNER_PW);
    engine
        .restore(&restored, Box::new(std::io::Cursor::new(bytes.clone())))
        .await
        .expect("restore");
    let tables = ["blobs", "child", "items", "parent"];
    assert_eq!(
        checksums(e, &acme.db, &tables).await,
        checksums(e, target.name, &tables).await
    );
    let sql = engine.sql().expect("sql");
    assert_eq!(sql.schema_version(&restored).await.expect("version"), 3);
    assert_eq!(
        sql.export_schema(&owner).await.expect("export"),
        sql.export_schema(&restored).await.expect("export restored")
    );
    // The tenant's users have their privileges on the restored database.
    let mut app = login(e, &acme.app, APP_PW, Some(target.name))
        .await
        .expect("app");
    sqlx::raw_sql("INSERT INTO items VALUES (20, 'lower')")
        .execute(&mut app)
        .await
        .expect("app writes the restored database");
    let name: String = sqlx::query_scalar("SELECT name FROM items WHERE id = 20")
        .fetch_one(&mut app)
        .await
        .expect("read");
    assert_eq!(name, "LOWER", "the trigger came along");
    assert_eq!(refused(&mut app, "DROP TABLE items").await, 1142);
    let _ = app.close().await;

    // A broken dump stops at its first error and says where.
    engine
        .create_restore_target(e, &target)
        .await
        .expect("target again");
    let broken =
        b"CREATE TABLE ok (v int);\nTHIS IS NOT SQL;\nCREATE TABLE after (v int);\n".to_vec();
    let err = engine
        .restore(&restored, Box::new(std::io::Cursor::new(broken)))
        .await
        .expect_err("broken dump");
    assert!(err.to_string().contains("1064"), "{err}");
    let mut admin = admin(e).await;
    let made = strings(
        &mut admin,
        "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'tdb_t_restored'",
    )
    .await;
    assert_eq!(made, ["ok"], "stopped at the first error");
    // A dump cannot reach the client's shell or files.
    engine
        .create_restore_target(e, &target)
        .await
        .expect("target again");
    let shell = b"\\! touch /tmp/tdb-restore-shell\nsystem touch /tmp/tdb-restore-shell\n".to_vec();
    let _ = engine
        .restore(&restored, Box::new(std::io::Cursor::new(shell)))
        .await;
    assert!(!Path::new("/tmp/tdb-restore-shell").exists());
    engine
        .drop_database(e, target.name, &[])
        .await
        .expect("drop the restored database");
    let _ = admin.close().await;
}

async fn workspaces_get_one_owner(ctx: &Ctx) {
    let (engine, e) = (&ctx.engine, &ctx.e);
    let spec = DatabaseSpec {
        name: "ws__one",
        owner_role: "ws_one_owner",
        owner_password: OWNER_PW,
        connection_limit: 2,
    };
    engine.create_database(e, &spec).await.expect("workspace");
    engine.create_database(e, &spec).await.expect_err("exists");
    assert!(engine.database_exists(e, spec.name).await.expect("exists"));
    let mut conn = login(e, spec.owner_role, OWNER_PW, Some(spec.name))
        .await
        .expect("owner");
    sqlx::raw_sql("CREATE TABLE notes (id int PRIMARY KEY); INSERT INTO notes VALUES (1)")
        .execute(&mut conn)
        .await
        .expect("owner DDL and rows");
    assert_eq!(
        strings(&mut conn, "SHOW DATABASES").await,
        ["information_schema", "ws__one"]
    );
    assert_eq!(
        refused(&mut conn, "SELECT * FROM shop__acme.items").await,
        1142
    );
    assert_eq!(refused(&mut conn, "CREATE DATABASE ws__two").await, 1044);
    let _ = conn.close().await;
    // A workspace has no schema version; its dump has no header but restores all the same.
    let owner = access(e, spec.name, spec.owner_role, OWNER_PW);
    let mut dump = engine.dump(&owner).await.expect("dump");
    let mut bytes = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut dump.output, &mut bytes)
        .await
        .expect("read");
    dump.finish.await.expect("finished");
    assert!(!bytes.starts_with(b"-- tdb_meta"));
    engine
        .drop_database(e, spec.name, &[spec.owner_role])
        .await
        .expect("drop");
}

async fn drops_end_sessions_and_take_grants_back(ctx: &Ctx) {
    let (engine, e, other) = (&ctx.engine, &ctx.e, &ctx.other);
    let mut session = login(e, &other.app, APP_PW, Some(&other.db))
        .await
        .expect("app");
    engine
        .drop_database(e, &other.db, &other.roles())
        .await
        .expect("drop");
    assert!(
        sqlx::raw_sql("SELECT 1")
            .execute(&mut session)
            .await
            .is_err(),
        "session ended"
    );
    assert!(!engine.database_exists(e, &other.db).await.expect("exists"));
    assert!(login(e, &other.app, APP_PW, None).await.is_err());
    let mut admin = admin(e).await;
    let users = scalar_i64(
        &mut admin,
        "SELECT COUNT(*) FROM mysql.global_priv WHERE User LIKE 'other\\_%'",
    )
    .await;
    assert_eq!(users, 0);
    let grants = scalar_i64(
        &mut admin,
        "SELECT COUNT(*) FROM mysql.db WHERE Db = 'shop\\\\_\\\\_other'",
    )
    .await;
    assert_eq!(grants, 0);
    let record = scalar_i64(
        &mut admin,
        "SELECT COUNT(*) FROM information_schema.TABLES
          WHERE TABLE_SCHEMA = 'tdb_meta' AND TABLE_NAME = 'shop__other'",
    )
    .await;
    assert_eq!(record, 0);
    let _ = admin.close().await;
    // Dropping again is fine; the other tenants are untouched.
    engine
        .drop_database(e, &other.db, &other.roles())
        .await
        .expect("drop again");
    let mut xy = login(e, &ctx.lookalike.app, APP_PW, Some(&ctx.lookalike.db))
        .await
        .expect("xy app");
    assert_eq!(scalar_i64(&mut xy, "SELECT v FROM secret").await, 42);
    let _ = xy.close().await;
    let size = engine.size_bytes(e).await.expect("size");
    assert!(size > 0);
}
