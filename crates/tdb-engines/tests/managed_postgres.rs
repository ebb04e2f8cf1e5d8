//! The managed PostgreSQL supervisor against the real server binaries: initialise, serve,
//! survive a crash of the server, stop cleanly, and start again on the same data.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use tdb_core::secrets::MasterKey;
use tdb_engines::managed::postgres::ManagedPostgresOptions;
use tdb_engines::managed::process::alive;
use tdb_engines::{AdminEndpoint, ManagedPostgres, PgBinaries, RunAs};

fn options(dir: &std::path::Path, key: &MasterKey) -> ManagedPostgresOptions {
    ManagedPostgresOptions {
        dir: dir.join("pg"),
        binaries: PgBinaries::find(None).expect("PostgreSQL binaries installed"),
        run_as: RunAs::resolve("postgres").expect("run-as user"),
        master_key: key.clone(),
        label: "test".into(),
        settings: vec![("max_connections".into(), "20".into())],
        listen: tdb_engines::managed::postgres::Listen::PrivateSocket,
        archive: None,
    }
}

async fn connect(e: &AdminEndpoint) -> Result<PgConnection, sqlx::Error> {
    let opts = PgConnectOptions::new()
        .host(&e.host)
        .port(e.port)
        .username(&e.user)
        .password(&e.password)
        .database("postgres");
    PgConnection::connect_with(&opts).await
}

fn postmaster_pid(server: &ManagedPostgres) -> i32 {
    let text = std::fs::read_to_string(server.data_dir().join("postmaster.pid")).expect("pid file");
    text.lines()
        .next()
        .and_then(|l| l.parse().ok())
        .expect("pid")
}

#[tokio::test]
async fn initialises_restarts_after_crash_and_keeps_data() {
    let tmp = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let key = MasterKey::generate();

    let server = ManagedPostgres::start(options(tmp.path(), &key))
        .await
        .expect("start");
    let endpoint = server.endpoint().clone();
    let mut conn = connect(&endpoint).await.expect("connect");
    sqlx::raw_sql("CREATE TABLE kept (v int); INSERT INTO kept VALUES (42)")
        .execute(&mut conn)
        .await
        .expect("write");
    drop(conn);

    // The password is sealed, never written in clear.
    let state = std::fs::read_to_string(tmp.path().join("pg/state.json")).expect("state");
    assert!(!state.contains(&endpoint.password));

    // A crash of the server is noticed and repaired by the supervisor.
    let pid = postmaster_pid(&server);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill postgres");
    let mut recovered = false;
    for _ in 0..300 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if let Ok(mut c) = connect(&endpoint).await {
            let v: i32 = sqlx::query_scalar("SELECT v FROM kept")
                .fetch_one(&mut c)
                .await
                .expect("read");
            assert_eq!(v, 42);
            recovered = true;
            break;
        }
    }
    assert!(recovered, "server was not restarted after a crash");
    let new_pid = postmaster_pid(&server);
    assert_ne!(pid, new_pid);

    // Shutdown stops the process.
    server.shutdown().await;
    assert!(!alive(new_pid), "postgres still running after shutdown");
    assert!(connect(&endpoint).await.is_err());

    // Starting again reuses the cluster, its password and its data.
    let server = ManagedPostgres::start(options(tmp.path(), &key))
        .await
        .expect("restart");
    let mut conn = connect(server.endpoint()).await.expect("connect again");
    let v: i32 = sqlx::query_scalar("SELECT v FROM kept")
        .fetch_one(&mut conn)
        .await
        .expect("read");
    assert_eq!(v, 42);
    drop(conn);
    server.shutdown().await;

    // Under another master key the sealed password cannot be opened: a clear error, no data lost.
    let err = ManagedPostgres::start(options(tmp.path(), &MasterKey::generate()))
        .await
        .err()
        .expect("wrong key must fail");
    assert!(err.to_string().contains("master key"), "{err}");
}
