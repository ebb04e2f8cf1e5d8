//! A tenant's application role on a real PostgreSQL: it reads and writes its own rows and can do
//! nothing else. Each forbidden attempt is refused by the server and changes nothing.

use std::os::unix::fs::PermissionsExt;

use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use tdb_core::secrets::MasterKey;
use tdb_engines::managed::postgres::ManagedPostgresOptions;
use tdb_engines::{
    AdminEndpoint, DatabaseAccess, Engine, ManagedPostgres, Migration, MigrationPlan, PgBinaries,
    PostgresEngine, RunAs, SqlEngine, TenantSpec,
};

struct Tenant {
    db: String,
    owner: String,
    app: String,
    read: String,
}

impl Tenant {
    fn new(tag: &str) -> Self {
        Self {
            db: format!("tdb_t_{tag}"),
            owner: format!("tdb_to_{tag}"),
            app: format!("tdb_ta_{tag}"),
            read: format!("tdb_tr_{tag}"),
        }
    }

    fn spec(&self) -> TenantSpec<'_> {
        TenantSpec {
            name: &self.db,
            owner_role: &self.owner,
            owner_password: "owner-secret",
            app_role: &self.app,
            app_password: "app-secret",
            read_role: &self.read,
            read_password: "read-secret",
            connection_limit: 10,
        }
    }

    fn owner_access(&self, e: &AdminEndpoint) -> DatabaseAccess {
        access(e, &self.db, &self.owner, "owner-secret")
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

async fn connect(
    e: &AdminEndpoint,
    db: &str,
    user: &str,
    password: &str,
) -> Result<PgConnection, sqlx::Error> {
    let opts = PgConnectOptions::new()
        .host(&e.host)
        .port(e.port)
        .username(user)
        .password(password)
        .database(db);
    PgConnection::connect_with(&opts).await
}

/// A migration of `owner`'s database with a generous timeout.
fn plan<'a>(
    owner: &'a DatabaseAccess,
    admin: &'a AdminEndpoint,
    from: i32,
    statements: &'a [String],
    version: i32,
    dry_run: bool,
) -> MigrationPlan<'a> {
    MigrationPlan {
        owner,
        admin,
        from,
        statements,
        version,
        dry_run,
        timeout: std::time::Duration::from_secs(60),
    }
}

#[tokio::test]
async fn tenant_roles_are_confined_to_their_rows() {
    let tmp = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let server = ManagedPostgres::start(ManagedPostgresOptions {
        dir: tmp.path().join("pg"),
        binaries: PgBinaries::find(None).expect("binaries"),
        run_as: RunAs::resolve("postgres").expect("run as"),
        master_key: MasterKey::generate(),
        label: "isolation".into(),
        settings: vec![],
        listen: tdb_engines::managed::postgres::Listen::PrivateSocket,
        archive: None,
    })
    .await
    .expect("server");
    let e = server.endpoint().clone();
    let engine = PostgresEngine::new(None);
    engine.secure_server(&e, &[]).await.expect("secure");
    let (a, b) = (Tenant::new("a"), Tenant::new("b"));
    engine
        .create_tenant_database(&e, &a.spec())
        .await
        .expect("tenant a");
    engine
        .create_tenant_database(&e, &b.spec())
        .await
        .expect("tenant b");

    // Migrations run as the owner, record the version in the same transaction, never twice.
    let ddl = vec![
        "CREATE TABLE notes (id serial PRIMARY KEY, body text NOT NULL)".to_string(),
        "CREATE FUNCTION note_count() RETURNS bigint LANGUAGE sql AS 'SELECT count(*) FROM notes'"
            .to_string(),
    ];
    for t in [&a, &b] {
        assert_eq!(
            engine
                .migrate(&plan(&t.owner_access(&e), &e, 0, &ddl, 1, false))
                .await
                .expect("migrate"),
            Migration::Applied { from: 0 }
        );
        assert_eq!(
            engine
                .migrate(&plan(&t.owner_access(&e), &e, 0, &ddl, 1, false))
                .await
                .expect("again"),
            Migration::AlreadyAt(1)
        );
        assert_eq!(
            engine
                .schema_version(&t.owner_access(&e))
                .await
                .expect("version"),
            1
        );
    }
    let failing = vec![
        "ALTER TABLE notes ADD COLUMN tag text".to_string(),
        "ALTER TABLE nope ADD COLUMN x int".to_string(),
    ];
    let err = engine
        .migrate(&plan(&a.owner_access(&e), &e, 1, &failing, 2, false))
        .await
        .expect_err("must fail");
    assert!(err.to_string().contains("nope"), "{err}");
    assert_eq!(
        engine
            .schema_version(&a.owner_access(&e))
            .await
            .expect("version"),
        1,
        "nothing half-applied"
    );
    let wrong = engine
        .migrate(&plan(&a.owner_access(&e), &e, 0, &ddl, 2, false))
        .await
        .expect("mismatch");
    assert_eq!(
        wrong,
        Migration::Mismatch(1),
        "a database not at the expected version is left alone"
    );
    let dry = engine
        .migrate(&plan(&a.owner_access(&e), &e, 1, &failing[..1], 2, true))
        .await
        .expect("dry run");
    assert_eq!(dry, Migration::WouldApply { from: 1 });
    assert_eq!(
        engine
            .schema_version(&a.owner_access(&e))
            .await
            .expect("version"),
        1,
        "dry run rolled back"
    );

    // The application role reads and writes rows in its own database.
    let mut app = connect(&e, &a.db, &a.app, "app-secret")
        .await
        .expect("app connects");
    sqlx::raw_sql("INSERT INTO notes (body) VALUES ('hello'); UPDATE notes SET body = 'hi'; SELECT note_count()")
        .execute(&mut app)
        .await
        .expect("DML works");

    // The read role sees the rows and cannot change them, even after switching its session
    // default back to read-write.
    let mut read = connect(&e, &a.db, &a.read, "read-secret")
        .await
        .expect("read connects");
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM notes")
        .fetch_one(&mut read)
        .await
        .expect("read selects");
    assert_eq!(n, 1);
    for write in [
        "INSERT INTO notes (body) VALUES ('x')",
        "SET default_transaction_read_only = off; UPDATE notes SET body = 'x'",
        "SET default_transaction_read_only = off; DELETE FROM notes",
        "SET default_transaction_read_only = off; CREATE TABLE sneaky (a int)",
    ] {
        assert!(
            sqlx::raw_sql(write).execute(&mut read).await.is_err(),
            "the read role ran: {write}"
        );
        let _ = sqlx::raw_sql("RESET ALL").execute(&mut read).await;
    }

    // It cannot reach any other database.
    for db in [b.db.as_str(), "postgres", "template1"] {
        let err = connect(&e, db, &a.app, "app-secret")
            .await
            .err()
            .unwrap_or_else(|| panic!("connected to {db}"));
        assert!(err.to_string().contains("permission denied"), "{db}: {err}");
    }
    assert!(
        connect(&e, &a.db, &b.app, "app-secret").await.is_err(),
        "b's role into a's database"
    );

    // And inside its own database it can do nothing but rows.
    let forbidden = [
        "SET ROLE tdb_to_a",
        "SET SESSION AUTHORIZATION tdb_to_a",
        "ALTER ROLE tdb_ta_a CONNECTION LIMIT -1",
        "ALTER ROLE tdb_ta_a SUPERUSER",
        "CREATE ROLE sneaky",
        "CREATE DATABASE sneaky",
        "CREATE EXTENSION pgcrypto",
        "CREATE SCHEMA sneaky",
        "CREATE TABLE sneaky (a int)",
        "CREATE TEMP TABLE sneaky (a int)",
        "CREATE VIEW sneaky AS SELECT 1",
        "CREATE FUNCTION sneaky() RETURNS int LANGUAGE sql AS 'SELECT 1'",
        "ALTER TABLE notes ADD COLUMN sneaky int",
        "DROP TABLE notes",
        "TRUNCATE notes",
        "CREATE INDEX sneaky ON notes (body)",
        "UPDATE tdb_meta.schema_version SET version = 99",
        "COPY notes TO PROGRAM 'cat > /tmp/tdb-sneaky'",
        "COPY notes FROM PROGRAM 'echo 1'",
        "COPY notes TO '/tmp/tdb-sneaky'",
        "COPY notes FROM '/etc/passwd'",
        "SELECT pg_read_file('/etc/passwd')",
        "SELECT pg_ls_dir('.')",
        "SELECT lo_import('/etc/passwd')",
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid <> pg_backend_pid()",
        "SELECT pg_reload_conf()",
        "ALTER SYSTEM SET work_mem = '1GB'",
        "DO $$ BEGIN EXECUTE 'CREATE TABLE sneaky (a int)'; END $$",
        "LOAD 'auto_explain'",
    ];
    for sql in forbidden {
        let result = sqlx::raw_sql(sql).execute(&mut app).await;
        assert!(result.is_err(), "allowed: {sql}");
    }
    // A GRANT without grant option is only a warning in PostgreSQL; what matters is that it
    // grants nothing.
    sqlx::raw_sql("GRANT SELECT ON notes TO PUBLIC")
        .execute(&mut app)
        .await
        .ok();
    let mut owner = connect(&e, &a.db, &a.owner, "owner-secret")
        .await
        .expect("owner");
    let public_grants: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.role_table_grants WHERE table_name = 'notes' AND grantee = 'PUBLIC'",
    )
    .fetch_one(&mut owner)
    .await
    .expect("grants");
    assert_eq!(public_grants, 0, "the app role granted access to PUBLIC");
    let tables: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
            .fetch_one(&mut owner)
            .await
            .expect("count");
    assert_eq!(tables, 1, "no table appeared");
    let version: i32 = sqlx::query_scalar("SELECT version FROM tdb_meta.schema_version")
        .fetch_one(&mut owner)
        .await
        .expect("version");
    assert_eq!(version, 1);
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM notes")
        .fetch_one(&mut owner)
        .await
        .expect("rows");
    assert_eq!(rows, 1);
    assert!(!std::path::Path::new("/tmp/tdb-sneaky").exists());

    // Dropping a tenant removes its database and both roles.
    drop(app);
    drop(owner);
    engine
        .drop_database(&e, &a.db, &[&a.app, &a.owner])
        .await
        .expect("drop");
    assert!(connect(&e, &a.db, &a.owner, "owner-secret").await.is_err());
    server.shutdown().await;
}
