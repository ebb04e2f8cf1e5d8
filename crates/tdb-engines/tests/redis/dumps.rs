//! Dump, break, restore, verify key by key: every data type with its value (compared as the
//! server's own `DUMP` payload) and its expiry; a key whose deadline passed before the restore
//! does not come back; a restore target opens to the tenant's users and closes again when it
//! is dropped; a dump cut short is refused.

use std::collections::BTreeMap;

use bytes::Bytes;
use tdb_engines::RestoreTarget;
use tdb_engines::redis::conn::RedisConn;
use tdb_resp::frame::Frame;
use tokio::io::AsyncReadExt;

use super::support::{Ctx, OWNER_PW, access, admin, int, ok};

/// Each key of namespace `name` (without the prefix) with its `DUMP` payload and expiry.
async fn snapshot(root: &mut RedisConn, name: &str) -> BTreeMap<String, (Bytes, i64)> {
    let prefix = format!("{name}:");
    let keys = root
        .call(&["KEYS", format!("{prefix}*").as_str()])
        .await
        .expect("KEYS");
    let mut out = BTreeMap::new();
    for key in keys.as_items().expect("keys") {
        let key = String::from_utf8(key.as_bytes().expect("name").to_vec()).expect("utf8");
        // A set's DUMP lists its members in its hash table's order, which a restore need not
        // keep: sets are compared by their sorted members.
        let payload = if ok(root, &["TYPE", &key]).await == Frame::Simple("set".into()) {
            let members = ok(root, &["SMEMBERS", &key]).await;
            let mut members: Vec<Bytes> = members
                .as_items()
                .expect("members")
                .iter()
                .filter_map(|m| m.as_bytes().cloned())
                .collect();
            members.sort();
            Bytes::from(members.join(&b"\n"[..]))
        } else {
            let Frame::Bulk(payload) = ok(root, &["DUMP", &key]).await else {
                panic!("{key} has no payload");
            };
            payload
        };
        let expires = int(&ok(root, &["PEXPIRETIME", &key]).await);
        out.insert(key[prefix.len()..].to_string(), (payload, expires));
    }
    out
}

async fn dump_bytes(ctx: &Ctx) -> Vec<u8> {
    let dump = ctx
        .engine
        .dump(&ctx.acme.owner(&ctx.e))
        .await
        .expect("dump");
    let mut output = dump.output;
    let mut bytes = Vec::new();
    output.read_to_end(&mut bytes).await.expect("read dump");
    dump.finish.await.expect("dump finished whole");
    bytes
}

pub async fn dump_and_restore_key_by_key(ctx: &Ctx) {
    let acme = &ctx.acme;
    let mut root = admin(&ctx.e).await;
    let k = |key: &str| acme.key(key);
    ok(&mut root, &["SET", &k("string"), "value \u{e9}\x00\x01"]).await;
    ok(&mut root, &["HSET", &k("hash"), "a", "1", "b", "2"]).await;
    ok(&mut root, &["RPUSH", &k("list"), "x", "y", "z"]).await;
    ok(&mut root, &["SADD", &k("set"), "m1", "m2"]).await;
    ok(&mut root, &["ZADD", &k("zset"), "1.5", "a", "2", "b"]).await;
    ok(&mut root, &["XADD", &k("stream"), "1-1", "f", "v"]).await;
    ok(&mut root, &["XGROUP", "CREATE", &k("stream"), "g", "0"]).await;
    ok(&mut root, &["SET", &k("expiring"), "soon", "EX", "3600"]).await;
    ok(&mut root, &["SET", &k("brief"), "gone", "PX", "300"]).await;
    ok(&mut root, &["SET", &ctx.other.key("theirs"), "kept"]).await;
    let before = snapshot(&mut root, &acme.name).await;
    assert_eq!(before.len(), 8);
    let bytes = dump_bytes(ctx).await;
    assert!(bytes.starts_with(b"*2\r\n$14\r\ntdb-redis-dump\r\n:1\r\n"));

    // The brief key runs out before the restore.
    while int(&ok(&mut root, &["EXISTS", &k("brief")]).await) == 1 {
        tokio::task::yield_now().await;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let mut expected = before.clone();
    expected.remove("brief");

    // Break the namespace, then restore it in place.
    ok(&mut root, &["DEL", &k("hash"), &k("list")]).await;
    ok(&mut root, &["SET", &k("string"), "broken"]).await;
    ok(&mut root, &["SET", &k("stray"), "not in the dump"]).await;
    ctx.engine
        .restore(
            &acme.owner(&ctx.e),
            Box::new(std::io::Cursor::new(bytes.clone())),
        )
        .await
        .expect("restore in place");
    assert_eq!(snapshot(&mut root, &acme.name).await, expected);
    assert_eq!(
        ok(&mut root, &["GET", &ctx.other.key("theirs")]).await,
        Frame::Bulk("kept".into())
    );

    // Into a restore target, for the tenant's own users.
    let target = RestoreTarget {
        name: "t_acme_r1",
        owner_role: &acme.owner,
        app_role: &acme.app,
        read_role: Some(&acme.read),
    };
    ok(&mut root, &["SET", "t_acme_r1:leftover", "x"]).await;
    ctx.engine
        .create_restore_target(&ctx.e, &target)
        .await
        .expect("target");
    assert!(
        ctx.engine
            .database_exists(&ctx.e, "t_acme_r1")
            .await
            .expect("exists")
    );
    let owner = access(&ctx.e, "t_acme_r1", &acme.owner, OWNER_PW);
    ctx.engine
        .restore(&owner, Box::new(std::io::Cursor::new(bytes.clone())))
        .await
        .expect("restore into the target");
    assert_eq!(snapshot(&mut root, "t_acme_r1").await, expected);
    let mut app = super::support::login(&ctx.e, &acme.app, super::support::APP_PW).await;
    ok(&mut app, &["GET", "t_acme_r1:string"]).await;

    // Dropped without its roles (they serve the live namespace): its keys and patterns go.
    ctx.engine
        .drop_database(&ctx.e, "t_acme_r1", &[])
        .await
        .expect("drop target");
    assert!(
        !ctx.engine
            .database_exists(&ctx.e, "t_acme_r1")
            .await
            .expect("exists")
    );
    assert!(snapshot(&mut root, "t_acme_r1").await.is_empty());
    let err = app
        .call(&["GET", "t_acme_r1:string"])
        .await
        .expect_err("closed");
    assert!(err.to_string().contains("NOPERM"), "{err}");
    ok(&mut app, &["GET", &k("string")]).await;

    // A dump cut short restores nothing as if it were whole.
    let cut = bytes[..bytes.len() - 10].to_vec();
    let err = ctx
        .engine
        .restore(&acme.owner(&ctx.e), Box::new(std::io::Cursor::new(cut)))
        .await
        .expect_err("cut short");
    assert!(err.to_string().contains("not a tdb Redis dump"), "{err}");
    let garbage = b"+OK\r\n".to_vec();
    assert!(
        ctx.engine
            .restore(&acme.owner(&ctx.e), Box::new(std::io::Cursor::new(garbage)))
            .await
            .is_err()
    );
    ctx.engine
        .restore(&acme.owner(&ctx.e), Box::new(std::io::Cursor::new(bytes)))
        .await
        .expect("whole again");
    ok(&mut root, &["UNLINK", &ctx.other.key("theirs")]).await;
}
