//! Securing an attached MariaDB: the operator's own data stays, what opened the server to
//! everyone goes. A managed server's fresh `test` database is dropped; an attached server's
//! `test` database may be its operator's, and securing it had dropped it.

use std::os::unix::fs::PermissionsExt;

use sqlx::Connection;
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection};
use tdb_core::secrets::MasterKey;
use tdb_engines::managed::mariadb::Listen;
use tdb_engines::{Engine, ManagedMariadb, ManagedMariadbOptions, MysqlEngine, RunAs};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn securing_an_attached_server_keeps_its_operators_data() {
    let dir = tempfile::Builder::new()
        .prefix("tdb-attached-")
        .tempdir()
        .expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let server = ManagedMariadb::start(ManagedMariadbOptions {
        dir: dir.path().join("mariadb"),
        run_as: RunAs::resolve("mysql").expect("run-as user"),
        master_key: MasterKey::generate(),
        label: "attached".into(),
        listen: Listen::Loopback,
        settings: vec![],
    })
    .await
    .expect("server starts");
    let e = server.endpoint().clone();
    let opts = MySqlConnectOptions::new()
        .host(&e.host)
        .port(e.port)
        .username(&e.user)
        .password(&e.password);
    let mut admin = MySqlConnection::connect_with(&opts).await.expect("admin");
    // What an operator's server may hold: a `test` database with data, opened to everyone by an
    // anonymous account and a wildcard grant, as old installations were.
    for sql in [
        "CREATE DATABASE test",
        "CREATE TABLE test.notes (id int PRIMARY KEY, body text)",
        "INSERT INTO test.notes VALUES (1, 'keep me')",
        "CREATE USER ''@'%'",
        "GRANT ALL ON `test`.* TO ''@'%'",
    ] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut admin)
            .await
            .unwrap_or_else(|err| panic!("{sql}: {err}"));
    }
    MysqlEngine::new(None)
        .secure_server(&e, &[])
        .await
        .expect("secured");
    let kept: String = sqlx::query_scalar("SELECT body FROM test.notes WHERE id = 1")
        .fetch_one(&mut admin)
        .await
        .expect("the operator's data is still there");
    assert_eq!(kept, "keep me");
    let anonymous: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM mysql.global_priv WHERE User = ''")
            .fetch_one(&mut admin)
            .await
            .expect("accounts");
    assert_eq!(anonymous, 0, "the anonymous account goes");
    let open: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM mysql.db WHERE User = ''")
        .fetch_one(&mut admin)
        .await
        .expect("grants");
    assert_eq!(open, 0, "the grant that opened it goes");
    let _ = admin.close().await;
    server.shutdown().await;
}
