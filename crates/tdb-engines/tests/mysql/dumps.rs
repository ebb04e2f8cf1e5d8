//! Dumps and restores: the same rows and schema in a fresh database, and a broken or hostile
//! dump stopped.

use std::path::Path;

use sqlx::Connection;

use super::support::*;
use tdb_engines::{Engine, RestoreTarget};

pub async fn dump_restores_the_same_rows_and_schema(ctx: &Ctx) {
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
    broken_and_hostile_dumps_stop(ctx, &target, &restored).await;
}

/// A broken dump stops at its first error and says where; a dump cannot reach the client's
/// shell or files.
async fn broken_and_hostile_dumps_stop(
    ctx: &Ctx,
    target: &RestoreTarget<'_>,
    restored: &tdb_engines::DatabaseAccess,
) {
    let (engine, e) = (&ctx.engine, &ctx.e);
    engine
        .create_restore_target(e, target)
        .await
        .expect("target again");
    let broken =
        b"CREATE TABLE ok (v int);\nTHIS IS NOT SQL;\nCREATE TABLE after (v int);\n".to_vec();
    let err = engine
        .restore(restored, Box::new(std::io::Cursor::new(broken)))
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
    engine
        .create_restore_target(e, target)
        .await
        .expect("target again");
    let shell = b"\\! touch /tmp/tdb-restore-shell\nsystem touch /tmp/tdb-restore-shell\n".to_vec();
    let _ = engine
        .restore(restored, Box::new(std::io::Cursor::new(shell)))
        .await;
    assert!(!Path::new("/tmp/tdb-restore-shell").exists());
    engine
        .drop_database(e, target.name, &[])
        .await
        .expect("drop the restored database");
    let _ = admin.close().await;
}
