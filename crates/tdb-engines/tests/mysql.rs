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
