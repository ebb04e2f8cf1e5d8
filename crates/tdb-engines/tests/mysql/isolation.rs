//! Databases, users and grants: each tenant's users reach their own database and nothing
//! else, within their connection limits; workspaces; drops that take everything back.

use std::path::Path;
use std::time::Duration;

use sqlx::Connection;

use super::support::*;
use tdb_engines::{DatabaseSpec, Engine, EngineError};

pub async fn server_figures(ctx: &Ctx) {
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

pub async fn tenants_are_created_once(ctx: &Ctx) {
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

pub async fn isolation_holds_inside_mariadb(ctx: &Ctx) {
    app_keeps_to_its_database(ctx).await;
    app_changes_no_schema_and_nothing_of_the_server(ctx).await;
    read_user_only_reads(ctx).await;
    lookalike_keeps_its_own(ctx).await;
}

/// acme's app user: its own rows, and nothing of the other databases (the one whose name `_`
/// would match included) or of the catalogs.
async fn app_keeps_to_its_database(ctx: &Ctx) {
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
    let _ = app.close().await;
}

/// acme's app user changes no table definition, no grant, no user, no file, no database and
/// no server setting; nor tdb's record.
async fn app_changes_no_schema_and_nothing_of_the_server(ctx: &Ctx) {
    let (acme, e) = (&ctx.acme, &ctx.e);
    let mut app = login(e, &acme.app, APP_PW, Some(&acme.db))
        .await
        .expect("app");

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
}

/// The read user reads and writes nothing.
async fn read_user_only_reads(ctx: &Ctx) {
    let (acme, e) = (&ctx.acme, &ctx.e);
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
}

/// The lookalike's own app still reads its own secret: the grants are per database.
async fn lookalike_keeps_its_own(ctx: &Ctx) {
    let e = &ctx.e;
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

pub async fn connection_limits_hold(ctx: &Ctx) {
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

pub async fn workspaces_get_one_owner(ctx: &Ctx) {
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

pub async fn drops_end_sessions_and_take_grants_back(ctx: &Ctx) {
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
