//! A migration cut off in the instant between a DDL statement's own commit and tdb's record of
//! it (a `kill -9` there ran the statement twice on resume: "Duplicate column"). The record
//! keeps the schema's fingerprint from before each statement, so the resumed migration counts
//! a statement that ran as done and runs one that did not. Both sides of the crash are set up
//! by hand here, as the crash leaves them.

use sqlx::Connection;
use tdb_core::secrets::MasterKey;
use tdb_engines::managed::mariadb::Listen;
use tdb_engines::{Engine, ManagedMariadb, Migration, MysqlEngine};

use super::support::{OWNER_PW, Tenant, admin, columns, login, options, plan, statements, tempdir};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_cut_off_from_its_record_is_not_run_twice() {
    let tmp = tempdir();
    let server = ManagedMariadb::start(options(
        &tmp.path().join("mariadb"),
        &MasterKey::generate(),
        Listen::Loopback,
    ))
    .await
    .expect("server starts");
    let e = server.endpoint().clone();
    let engine = MysqlEngine::new(None);
    let mut root = admin(&e).await;
    let list = statements(&[
        "ALTER TABLE events ADD COLUMN a int",
        "ALTER TABLE events ADD COLUMN b int",
    ]);
    // `ran`: the crash came after statement 1 committed; otherwise before it.
    for (db, ran) in [("shop__ran", true), ("shop__not", false)] {
        let t = Tenant::new(db, db.trim_start_matches("shop__"));
        engine
            .create_tenant_database(&e, &t.spec())
            .await
            .expect("tenant");
        let mut owner = login(&e, &t.owner, OWNER_PW, Some(db))
            .await
            .expect("owner");
        sqlx::query("CREATE TABLE events (id int PRIMARY KEY)")
            .execute(&mut owner)
            .await
            .expect("table");
        let before = tdb_engines::mysql::schema_fingerprint(&mut owner, db)
            .await
            .expect("fingerprint");
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE `tdb_meta`.`{db}` SET target = 1, done = 0, pending = '{before}' WHERE id = 1"
        )))
        .execute(&mut root)
        .await
        .expect("the record a crash leaves");
        if ran {
            sqlx::query(sqlx::AssertSqlSafe(list[0].clone()))
                .execute(&mut owner)
                .await
                .expect("statement 1 ran");
        }
        let _ = owner.close().await;
        let access = t.owner(&e);
        let done = engine
            .sql()
            .expect("sql")
            .migrate(&plan(&access, &e, (0, 1), &list, false))
            .await
            .unwrap_or_else(|err| panic!("{db}: {err}"));
        assert_eq!(done, Migration::Applied { from: 0 }, "{db}");
        assert_eq!(columns(&e, db, "events").await, ["id", "a", "b"], "{db}");
    }
    let _ = root.close().await;
    server.shutdown().await;
}
