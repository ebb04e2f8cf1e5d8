//! A move's parts on one server: the same count and checksum for a database and its restored
//! copy (and a different one after a change), open transactions counted, a fence that locks the
//! users out and ends their sessions, a database closed to its users and opened again, and
//! users reset as tdb has them. Moves themselves are tested end to end in `crates/tdb/tests`.

use sqlx::Connection;
use tdb_engines::{Engine, EngineError, RestoreTarget, RoleState};

use super::support::*;

/// MariaDB's "Access denied, this account is locked".
const ACCOUNT_LOCKED: u16 = 4151;

pub async fn fences_sums_and_closing(ctx: &Ctx) {
    let (engine, e, acme) = (&ctx.engine, &ctx.e, &ctx.acme);
    let moves = engine.moves().expect("MySQL moves");
    let why = moves
        .replication_blocker(e, &acme.db)
        .await
        .expect("blocker");
    assert!(why.is_some_and(|w| w.contains("dump and restore")));
    let copy = restored_copy(ctx).await;
    sums_match_and_tell_changes(ctx, &copy).await;
    open_transactions_and_fence(ctx).await;
    close_and_reopen(ctx, &copy).await;
    reset_roles(ctx).await;
    engine
        .drop_database(e, &copy, &[])
        .await
        .expect("drop the copy");
    assert!(matches!(
        moves
            .copy_sequences(&tdb_engines::MoveEnds {
                source: e,
                target: e,
                database: &acme.db,
                name: "m",
            })
            .await,
        Ok(0)
    ));
}

/// Acme's database dumped into `tdb_t_copy`, for acme's users.
async fn restored_copy(ctx: &Ctx) -> String {
    let (engine, e, acme) = (&ctx.engine, &ctx.e, &ctx.acme);
    let target = RestoreTarget {
        name: "tdb_t_copy",
        owner_role: &acme.owner,
        app_role: &acme.app,
        read_role: Some(&acme.read),
    };
    engine
        .create_restore_target(e, &target)
        .await
        .expect("target");
    let dump = engine.dump(&acme.owner(e)).await.expect("dump");
    let copy = access(e, target.name, &acme.owner, OWNER_PW);
    let (restored, finished) = tokio::join!(engine.restore(&copy, dump.output), dump.finish);
    restored.and(finished).expect("dump and restore");
    target.name.to_string()
}

async fn sums_match_and_tell_changes(ctx: &Ctx, copy: &str) {
    let (engine, e, acme) = (&ctx.engine, &ctx.e, &ctx.acme);
    let moves = engine.moves().expect("moves");
    let source = moves.table_sums(e, &acme.db).await.expect("sums");
    assert!(source.contains_key("items") && source.contains_key("blobs"));
    assert!(!source.contains_key("child_count"), "views are not tables");
    assert!(source["items"].0 > 0, "{source:?}");
    assert_eq!(moves.table_sums(e, copy).await.expect("copy sums"), source);
    // One value changed, NULL made the string 'NULL': the sums tell.
    let mut admin = admin(e).await;
    for sql in [
        "UPDATE tdb_t_copy.items SET name = CONCAT(name, 'x') ORDER BY id LIMIT 1",
        "UPDATE tdb_t_copy.blobs SET data = 'NULL' WHERE data IS NULL",
    ] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut admin)
            .await
            .expect(sql);
    }
    let changed = moves.table_sums(e, copy).await.expect("copy sums");
    assert_ne!(changed["items"], source["items"]);
    assert_ne!(changed["blobs"], source["blobs"]);
    assert_eq!(changed["items"].0, source["items"].0);
    assert_eq!(changed["parent"], source["parent"]);
    let _ = admin.close().await;
}

async fn open_transactions_and_fence(ctx: &Ctx) {
    let (engine, e, acme) = (&ctx.engine, &ctx.e, &ctx.acme);
    let moves = engine.moves().expect("moves");
    let roles = [acme.app.as_str(), acme.read.as_str()];
    // InnoDB answers INNODB_TRX from a cache it refreshes at most every 100 ms.
    let open = || async {
        tokio::time::sleep(std::time::Duration::from_millis(150)).await;
        moves.open_transactions(e, &acme.db, &roles).await
    };
    let mut app = login(e, &acme.app, APP_PW, Some(&acme.db))
        .await
        .expect("app");
    let mut reader = login(e, &acme.read, READ_PW, Some(&acme.db))
        .await
        .expect("read");
    sqlx::raw_sql("SELECT 1")
        .execute(&mut reader)
        .await
        .expect("read");
    assert_eq!(open().await.expect("count"), 0, "an idle session has none");
    sqlx::raw_sql("BEGIN; INSERT INTO items VALUES (90, 'unfinished')")
        .execute(&mut app)
        .await
        .expect("a transaction");
    assert_eq!(open().await.expect("count"), 1);

    moves.fence(e, &acme.db, &roles).await.expect("fence");
    assert!(
        sqlx::raw_sql("COMMIT").execute(&mut app).await.is_err(),
        "the fenced session ended"
    );
    assert!(
        sqlx::raw_sql("SELECT 1")
            .execute(&mut reader)
            .await
            .is_err()
    );
    assert_eq!(open().await.expect("count"), 0);
    let refused = login(e, &acme.app, APP_PW, Some(&acme.db))
        .await
        .expect_err("a fenced user logs in");
    assert_eq!(errno(&refused), Some(ACCOUNT_LOCKED), "{refused}");
    // The owner (dumps) is not fenced; the unfinished row never committed.
    let mut owner = login(e, &acme.owner, OWNER_PW, Some(&acme.db))
        .await
        .expect("owner");
    assert_eq!(
        scalar_i64(&mut owner, "SELECT COUNT(*) FROM items WHERE id = 90").await,
        0
    );
    let _ = owner.close().await;
    moves.fence(e, &acme.db, &roles).await.expect("fence again");
    moves.unfence(e, &roles).await.expect("unfence");
    let app = login(e, &acme.app, APP_PW, Some(&acme.db))
        .await
        .expect("unfenced");
    let _ = app.close().await;
}

/// Closed, `tdb_t_copy` takes none of acme's users (their sessions on acme's own database go on);
/// reopened, they have on it what they have on acme's.
async fn close_and_reopen(ctx: &Ctx, copy: &str) {
    let (engine, e, acme) = (&ctx.engine, &ctx.e, &ctx.acme);
    let moves = engine.moves().expect("moves");
    let roles = [acme.app.as_str(), acme.read.as_str()];
    let mut live = login(e, &acme.app, APP_PW, Some(&acme.db))
        .await
        .expect("live");
    let mut there = login(e, &acme.app, APP_PW, Some(copy)).await.expect("copy");
    moves.close_database(e, copy, &roles).await.expect("close");
    moves.close_database(e, copy, &roles).await.expect("again");
    assert!(sqlx::raw_sql("SELECT 1").execute(&mut there).await.is_err());
    assert_eq!(scalar_i64(&mut live, "SELECT 1").await, 1);
    assert!(
        login(e, &acme.app, APP_PW, Some(copy)).await.is_err(),
        "a closed database opens"
    );
    assert!(
        sqlx::raw_sql("SELECT * FROM tdb_t_copy.items")
            .execute(&mut live)
            .await
            .is_err(),
        "a closed database is read by name"
    );
    moves
        .reopen_database(e, copy, &roles)
        .await
        .expect("reopen");
    let mut admin = admin(e).await;
    for role in roles {
        let privileges = |db: &str| {
            format!(
                "SELECT GROUP_CONCAT(PRIVILEGE_TYPE ORDER BY PRIVILEGE_TYPE)
                   FROM information_schema.SCHEMA_PRIVILEGES
                  WHERE GRANTEE = '''{role}''@''%''' AND TABLE_SCHEMA = '{}'",
                db.replace('_', "\\\\_")
            )
        };
        let on_live = strings(&mut admin, &privileges(&acme.db)).await;
        assert_eq!(strings(&mut admin, &privileges(copy)).await, on_live);
    }
    let _ = admin.close().await;
    let mut there = login(e, &acme.app, APP_PW, Some(copy))
        .await
        .expect("reopened");
    assert!(scalar_i64(&mut there, "SELECT COUNT(*) FROM items").await > 0);
    let _ = there.close().await;
    let _ = live.close().await;
}

/// A user reset takes the password, limit and login tdb has now.
async fn reset_roles(ctx: &Ctx) {
    let (engine, e, acme) = (&ctx.engine, &ctx.e, &ctx.acme);
    let moves = engine.moves().expect("moves");
    let app = [acme.app.as_str()];
    moves.fence(e, &acme.db, &app).await.expect("fence");
    let reset = |password: &'static str| async move {
        let role = RoleState {
            name: &acme.app,
            password,
            connection_limit: 3,
        };
        moves.reset_roles(e, &[role]).await
    };
    reset("another-secret").await.expect("reset");
    assert!(login(e, &acme.app, APP_PW, None).await.is_err());
    let conn = login(e, &acme.app, "another-secret", Some(&acme.db))
        .await
        .expect("the new password, unlocked");
    let _ = conn.close().await;
    reset(APP_PW).await.expect("reset back");
    let missing = moves
        .reset_roles(
            e,
            &[RoleState {
                name: "nobody_here",
                password: "x",
                connection_limit: 1,
            }],
        )
        .await;
    assert!(
        matches!(missing, Err(EngineError::Query { .. })),
        "{missing:?}"
    );
}
