//! The managed server: hardened at its first start, repaired after a crash, the same after a
//! restart, an orphan left by a killed tdb stopped before a start, and on a private socket
//! without a TCP port.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use sqlx::Connection;
use tdb_core::secrets::MasterKey;
use tdb_engines::managed::mariadb::{self, Listen};
use tdb_engines::managed::process::alive;
use tdb_engines::{AdminEndpoint, ManagedMariadb, RunAs};

use super::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
pub async fn managed_server_starts_hardened_survives_a_crash_and_restarts() {
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

    let new_pid = crash_is_repaired(&server, &endpoint).await;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
pub async fn a_private_socket_server_has_no_tcp_port() {
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

/// Kills the server; the supervisor starts it again on the same data. Returns its new pid.
async fn crash_is_repaired(server: &ManagedMariadb, endpoint: &AdminEndpoint) -> i32 {
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
        if let Ok(mut c) = login(endpoint, &endpoint.user, &endpoint.password, None).await {
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
    new_pid
}

/// Starts `mariadbd` on the server in `dir` as a killed tdb would have left it running: its
/// own process, not supervised. The process is reaped by a thread of its own once it exits.
fn orphan(dir: &Path) -> i32 {
    use std::os::unix::process::CommandExt;
    let run_as = RunAs::resolve("mysql").expect("run-as");
    let data = dir.join("data");
    let mut command = std::process::Command::new("/usr/sbin/mariadbd");
    command
        .arg(format!("--defaults-file={}", dir.join("my.cnf").display()))
        .arg("--datadir")
        .arg(&data)
        .arg(format!(
            "--pid-file={}",
            data.join("mariadbd.pid").display()
        ))
        .arg(format!("--log-error={}", dir.join("orphan.log").display()))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    if run_as.switch {
        let _ = std::fs::File::create(dir.join("orphan.log"));
        run_as.own(&dir.join("orphan.log")).expect("chown log");
        command.uid(run_as.uid.as_raw()).gid(run_as.gid.as_raw());
    }
    let mut child = command.spawn().expect("spawn the orphan");
    let pid = i32::try_from(child.id()).expect("pid");
    std::thread::spawn(move || child.wait());
    pid
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
pub async fn an_orphan_of_a_killed_tdb_is_stopped_before_a_start() {
    let tmp = tempdir();
    let dir = tmp.path().join("mariadb");
    let key = MasterKey::generate();
    let server = ManagedMariadb::start(options(&dir, &key, Listen::Loopback))
        .await
        .expect("start");
    let endpoint = server.endpoint().clone();
    server.shutdown().await;
    let pid = orphan(&dir);
    let mut serving = false;
    for _ in 0..200 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if !admin_login_fails(&endpoint).await {
            serving = true;
            break;
        }
    }
    assert!(serving, "the orphan did not start");
    assert_eq!(server_pid(&dir.join("data")), pid);

    let server = ManagedMariadb::start(options(&dir, &key, Listen::Loopback))
        .await
        .expect("start over the orphan");
    assert!(!alive(pid), "the orphan still runs");
    let new_pid = server_pid(server.data_dir());
    assert_ne!(new_pid, pid);
    let mut conn = admin(server.endpoint()).await;
    sqlx::raw_sql("SELECT 1")
        .execute(&mut conn)
        .await
        .expect("serves");
    let _ = conn.close().await;
    server.shutdown().await;
    mariadb::remove(&dir).await.expect("remove");
}
