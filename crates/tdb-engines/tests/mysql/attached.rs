//! Securing an attached MariaDB: the operator's own data stays, what opened the server to
//! everyone goes. A managed server's fresh `test` database is dropped; an attached server's
//! `test` database may be its operator's, and securing it had dropped it.

use sqlx::Connection;
use tdb_core::secrets::MasterKey;
use tdb_engines::managed::mariadb::Listen;
use tdb_engines::{Engine, ManagedMariadb, MysqlEngine};

use super::support::{admin, options, scalar_i64, tempdir};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn securing_an_attached_server_keeps_its_operators_data() {
    let tmp = tempdir();
    let server = ManagedMariadb::start(options(
        &tmp.path().join("mariadb"),
        &MasterKey::generate(),
        Listen::Loopback,
    ))
    .await
    .expect("server starts");
    let e = server.endpoint().clone();
    let mut root = admin(&e).await;
    // What an operator's server may hold: a `test` database with data, opened to everyone by
    // an anonymous account and a wildcard grant, as old installations were.
    for sql in [
        "CREATE DATABASE test",
        "CREATE TABLE test.notes (id int PRIMARY KEY, body text)",
        "INSERT INTO test.notes VALUES (1, 'keep me')",
        "CREATE USER ''@'%'",
        "GRANT ALL ON `test`.* TO ''@'%'",
    ] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut root)
            .await
            .unwrap_or_else(|err| panic!("{sql}: {err}"));
    }
    MysqlEngine::new(None)
        .secure_server(&e, &[])
        .await
        .expect("secured");
    let kept: String = sqlx::query_scalar("SELECT body FROM test.notes WHERE id = 1")
        .fetch_one(&mut root)
        .await
        .expect("the operator's data is still there");
    assert_eq!(kept, "keep me");
    let anonymous = "SELECT COUNT(*) FROM mysql.global_priv WHERE User = ''";
    assert_eq!(
        scalar_i64(&mut root, anonymous).await,
        0,
        "anonymous account"
    );
    let open = "SELECT COUNT(*) FROM mysql.db WHERE User = ''";
    assert_eq!(
        scalar_i64(&mut root, open).await,
        0,
        "the grant that opened it"
    );
    let _ = root.close().await;
    server.shutdown().await;
}
