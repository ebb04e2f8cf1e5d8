//! The managed server: its files are private and hold no password, the `default` user is
//! refused, the administrator works, data survives a restart (append-only file), and the
//! hardening is put right again at a start after someone undid it.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use tdb_engines::AdminEndpoint;
use tdb_engines::redis::conn::{self, RedisConn};

use tdb_core::secrets::MasterKey;
use tdb_engines::ManagedRedis;
use tdb_engines::managed::redis::{self, Listen};

use super::support::{admin, anonymous, bulk, ok, options, refused, tempdir, text};

fn server_pid(dir: &Path) -> i32 {
    let text = std::fs::read_to_string(dir.join("data/redis.pid")).expect("pid file");
    text.trim().parse().expect("pid")
}

/// The administrator's connection once a server other than `old` serves again.
async fn back_after(e: &AdminEndpoint, dir: &Path, old: i32) -> RedisConn {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let restarted = std::fs::read_to_string(dir.join("data/redis.pid"))
            .ok()
            .and_then(|t| t.trim().parse::<i32>().ok())
            .is_some_and(|pid| pid != old);
        if restarted
            && let Ok(mut conn) = conn::connect(e).await
            && conn.call(&["PING"]).await.is_ok()
        {
            return conn;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the server did not come back"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

pub async fn starts_hardened_keeps_data_and_rehardens() {
    let tmp = tempdir();
    let dir = tmp.path().join("redis");
    let key = MasterKey::generate();
    let server = ManagedRedis::start(options(&dir, &key, Listen::Loopback))
        .await
        .expect("start");
    let e = server.endpoint().clone();
    assert_eq!(e.user, "tdb_admin");

    // Private files; the password appears in none of them.
    for file in ["state.json", "redis.conf", "data/users.acl"] {
        let path = dir.join(file);
        assert_eq!(mode(&path), 0o600, "{file}");
        let content = std::fs::read_to_string(&path).expect("read");
        assert!(!content.contains(&e.password), "{file} holds the password");
    }
    assert_eq!(mode(&dir.join("data")), 0o700);
    let state = std::fs::read_to_string(dir.join("state.json")).expect("state");
    assert!(state.contains("admin_password_sealed"), "{state}");
    let conf = std::fs::read_to_string(dir.join("redis.conf")).expect("conf");
    assert!(!conf.contains("rename-command") && conf.contains("appendonly yes"));

    // Nobody gets in without logging in; `default` has no password to log in with.
    let mut anon = anonymous(&e).await;
    assert_eq!(refused(&mut anon, &["PING"]).await, "NOAUTH");
    assert_eq!(
        refused(&mut anon, &["AUTH", "default", ""]).await,
        "WRONGPASS"
    );
    assert_eq!(refused(&mut anon, &["AUTH", "anything"]).await, "WRONGPASS");

    let mut conn = admin(&e).await;
    ok(&mut conn, &["SET", "kept", "value"]).await;
    drop(conn);
    // Killed outright: the supervisor starts it again, and the append-only file brings the
    // write back (no snapshot was saved).
    let killed = server_pid(&dir);
    nix::sys::signal::kill(Pid::from_raw(killed), Signal::SIGKILL).expect("kill");
    let mut conn = back_after(&e, &dir, killed).await;
    assert_eq!(ok(&mut conn, &["GET", "kept"]).await, bulk("value"));
    assert!(dir.join("data/appendonlydir").is_dir());
    assert!(!dir.join("data/dump.rdb").exists(), "no snapshot yet");
    let mut anon = anonymous(&e).await;
    ok(
        &mut conn,
        &[
            "ACL",
            "SETUSER",
            "kept_user",
            "on",
            "#0000000000000000000000000000000000000000000000000000000000000000",
            "~kept:*",
            "+get",
            "+pubsub|numsub",
        ],
    )
    .await;
    // Undo the hardening, persistently: the next start must put it right.
    ok(
        &mut conn,
        &["ACL", "SETUSER", "default", "on", "nopass", "~*", "+@all"],
    )
    .await;
    ok(&mut conn, &["ACL", "SAVE"]).await;
    assert_eq!(text(&ok(&mut anon, &["PING"]).await), "PONG");
    drop(conn);
    server.shutdown().await;

    // Back on the private socket this time: same data, same users, default closed again.
    let server = ManagedRedis::start(options(&dir, &key, Listen::PrivateSocket))
        .await
        .expect("restart");
    let e = server.endpoint().clone();
    assert!(
        e.host.starts_with('/') && e.host.ends_with("/redis.sock"),
        "{}",
        e.host
    );
    assert_eq!(mode(&dir.join("run")), 0o700);
    let mut conn = admin(&e).await;
    assert_eq!(ok(&mut conn, &["GET", "kept"]).await, bulk("value"));
    let user = ok(&mut conn, &["ACL", "GETUSER", "kept_user"]).await;
    assert!(user.as_items().is_some(), "users made at run time persist");
    // A command earlier versions gave tenants' users and tdb no longer does is taken back.
    let rules = format!("{user:?}");
    assert!(rules.contains("+get"), "{rules}");
    assert!(!rules.contains("+pubsub|numsub"), "{rules}");
    assert_eq!(refused(&mut anonymous(&e).await, &["PING"]).await, "NOAUTH");
    for (name, want) in [
        ("protected-mode", "yes"),
        ("enable-debug-command", "no"),
        ("enable-module-command", "no"),
        ("databases", "1"),
        ("appendfsync", "everysec"),
    ] {
        let reply = ok(&mut conn, &["CONFIG", "GET", name]).await;
        let items = reply.as_items().expect("pairs");
        assert_eq!(text(&items[1]), want, "{name}");
    }
    assert_eq!(refused(&mut conn, &["DEBUG", "SLEEP", "0"]).await, "ERR");
    assert_eq!(refused(&mut conn, &["SELECT", "1"]).await, "ERR");
    drop(conn);
    server.shutdown().await;

    // Another master key cannot open the admin password.
    let err = ManagedRedis::start(options(&dir, &MasterKey::generate(), Listen::Loopback))
        .await
        .err()
        .expect("a wrong key fails");
    assert!(err.to_string().contains("unsealed"), "{err}");

    redis::remove(&dir).await.expect("remove");
    assert!(!dir.exists());
    redis::remove(&dir).await.expect("removing again is fine");
}
