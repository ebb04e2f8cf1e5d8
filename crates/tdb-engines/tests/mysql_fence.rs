//! A migration cut off in the instant between a DDL statement's own commit and tdb's record of
//! it (a `kill -9` there ran the statement twice on resume: "Duplicate column"). The record
//! keeps the schema's fingerprint from before each statement, so the resumed migration counts
//! a statement that ran as done and runs one that did not. Both cases are set up by hand here,
//! as the crash leaves them.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use sqlx::Connection;
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection};
use tdb_core::secrets::MasterKey;
use tdb_engines::managed::mariadb::Listen;
use tdb_engines::{
    AdminEndpoint, DatabaseAccess, Engine, ManagedMariadb, ManagedMariadbOptions, Migration,
    MigrationPlan, MysqlEngine, RunAs, TenantSpec,
};

async fn connect(e: &AdminEndpoint, user: &str, password: &str, db: &str) -> MySqlConnection {
    let opts = MySqlConnectOptions::new()
        .host(&e.host)
        .port(e.port)
        .username(user)
        .password(password)
        .database(db);
    MySqlConnection::connect_with(&opts).await.expect("login")
}

async fn columns(conn: &mut MySqlConnection) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT column_name FROM information_schema.columns \
         WHERE table_schema = DATABASE() AND table_name = 'events' ORDER BY ordinal_position",
    )
    .fetch_all(conn)
    .await
    .expect("columns")
}

/// Leaves `db`'s record as a crash just before statement 1 of a migration to version 1 would:
/// its fingerprint taken, nothing counted done.
async fn crash_before_first(admin: &mut MySqlConnection, owner: &mut MySqlConnection, db: &str) {
    let before = tdb_engines::mysql::schema_fingerprint(owner, db)
        .await
        .expect("fingerprint");
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE `tdb_meta`.`{db}` SET target = 1, done = 0, pending = '{before}' WHERE id = 1"
    )))
    .execute(admin)
    .await
    .expect("record");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_cut_off_from_its_record_is_not_run_twice() {
    let dir = tempfile::Builder::new()
        .prefix("tdb-fence-")
        .tempdir()
        .expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let server = ManagedMariadb::start(ManagedMariadbOptions {
        dir: dir.path().join("mariadb"),
        run_as: RunAs::resolve("mysql").expect("run-as user"),
        master_key: MasterKey::generate(),
        label: "fence".into(),
        listen: Listen::Loopback,
        settings: vec![],
    })
    .await
    .expect("server starts");
    let e = server.endpoint().clone();
    let engine = MysqlEngine::new(None);
    let mut admin = connect(&e, &e.user, &e.password, "mysql").await;
    let statements: Vec<String> = [
        "ALTER TABLE events ADD COLUMN a int",
        "ALTER TABLE events ADD COLUMN b int",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();

    // `ran`: the crash came after statement 1 committed; otherwise before it.
    for (db, ran) in [("shop__ran", true), ("shop__not", false)] {
        let suffix = db.trim_start_matches("shop__");
        let (owner_role, owner_pw) = (format!("o_{suffix}"), "owner-pw-1234567890");
        let spec = TenantSpec {
            name: db,
            owner_role: &owner_role,
            owner_password: owner_pw,
            app_role: &format!("a_{suffix}"),
            app_password: "app-pw-1234567890",
            read_role: &format!("r_{suffix}"),
            read_password: "read-pw-1234567890",
            connection_limit: 5,
        };
        engine
            .create_tenant_database(&e, &spec)
            .await
            .expect("tenant");
        let mut owner = connect(&e, &owner_role, owner_pw, db).await;
        sqlx::query("CREATE TABLE events (id int PRIMARY KEY)")
            .execute(&mut owner)
            .await
            .expect("table");
        crash_before_first(&mut admin, &mut owner, db).await;
        if ran {
            sqlx::query(sqlx::AssertSqlSafe(statements[0].clone()))
                .execute(&mut owner)
                .await
                .expect("statement 1 ran");
        }
        let access = DatabaseAccess {
            host: e.host.clone(),
            port: e.port,
            database: db.into(),
            user: owner_role.clone(),
            password: owner_pw.into(),
        };
        let plan = MigrationPlan {
            owner: &access,
            admin: &e,
            from: 0,
            statements: &statements,
            version: 1,
            dry_run: false,
            timeout: Duration::from_secs(30),
        };
        let done = engine
            .sql()
            .expect("sql")
            .migrate(&plan)
            .await
            .unwrap_or_else(|err| panic!("{db}: {err}"));
        assert_eq!(done, Migration::Applied { from: 0 }, "{db}");
        assert_eq!(columns(&mut owner).await, ["id", "a", "b"], "{db}");
        let _ = owner.close().await;
    }
    let _ = admin.close().await;
    server.shutdown().await;
}
