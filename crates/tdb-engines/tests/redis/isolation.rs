//! Namespaces and their ACL users, against the server itself (no proxy, no session in front):
//! a tenant's users reach their own prefix and nothing else, and no server-wide command.

use tdb_engines::KeySettings;
use tdb_engines::redis::settings;

use super::support::{
    APP_PW, Ctx, READ_PW, Tenant, admin, bulk, is_query_error, login, ok, refused, text,
};

pub async fn server_figures(ctx: &Ctx) {
    assert_eq!(ctx.engine.kind(), tdb_core::Engine::Redis);
    assert!(ctx.engine.key_value_settings().is_some());
    assert_eq!(
        ctx.engine
            .connection_capacity(&ctx.e)
            .await
            .expect("capacity"),
        200 - 16
    );
    assert!(ctx.engine.size_bytes(&ctx.e).await.expect("size") > 0);
    ctx.engine.secure_server(&ctx.e, &[]).await.expect("secure");
    let default_admin = tdb_engines::AdminEndpoint {
        user: "default".into(),
        ..ctx.e.clone()
    };
    assert!(ctx.engine.secure_server(&default_admin, &[]).await.is_err());
    let sweep = ctx
        .engine
        .hide_shared_catalogs(&ctx.e)
        .await
        .expect("sweep");
    assert_eq!(sweep, Default::default());
}

pub async fn namespaces_are_created_once(ctx: &Ctx) {
    for t in [&ctx.acme, &ctx.other] {
        assert!(
            !ctx.engine
                .database_exists(&ctx.e, &t.name)
                .await
                .expect("exists")
        );
        ctx.engine
            .create_tenant_database(&ctx.e, &t.spec())
            .await
            .expect("create");
        assert!(
            ctx.engine
                .database_exists(&ctx.e, &t.name)
                .await
                .expect("exists")
        );
    }
    let again = ctx
        .engine
        .create_tenant_database(&ctx.e, &ctx.acme.spec())
        .await;
    assert!(again.is_err(), "a namespace is made once");
    // Another namespace with a user that exists: refused, and nothing made.
    let mut clash = Tenant::new("t_clash");
    clash.app = ctx.acme.app.clone();
    assert!(
        ctx.engine
            .create_tenant_database(&ctx.e, &clash.spec())
            .await
            .is_err()
    );
    assert!(
        !ctx.engine
            .database_exists(&ctx.e, "t_clash")
            .await
            .expect("exists")
    );
    let mut conn = admin(&ctx.e).await;
    let owner = ok(&mut conn, &["ACL", "GETUSER", &clash.owner]).await;
    assert!(
        owner.as_items().is_none(),
        "no user of a refused namespace is left"
    );
    for bad in ["tdb", "T_1", "a:b", "x*", ""] {
        let bad_tenant = Tenant::new(bad);
        let err = ctx
            .engine
            .create_tenant_database(&ctx.e, &bad_tenant.spec())
            .await
            .expect_err(bad);
        assert!(is_query_error(&err, "ERR"), "{bad}: {err}");
    }
    // The users' passwords are only hashes in the ACL.
    let listed = format!("{:?}", ok(&mut conn, &["ACL", "LIST"]).await);
    assert!(!listed.contains(APP_PW) && !listed.contains(READ_PW));
}

/// Every attack of one tenant's application user on another's keys, channels and the server.
pub async fn acl_users_hold_their_prefix(ctx: &Ctx) {
    let (acme, other) = (&ctx.acme, &ctx.other);
    let mut root = admin(&ctx.e).await;
    ok(&mut root, &["SET", &other.key("secret"), "s3cret"]).await;
    ok(&mut root, &["SET", "unprefixed", "x"]).await;
    let mut app = login(&ctx.e, &acme.app, APP_PW).await;

    // Its own keys: every data type, transactions, scripts on its keys.
    ok(&mut app, &["SET", &acme.key("k"), "v"]).await;
    ok(&mut app, &["HSET", &acme.key("h"), "f", "v"]).await;
    ok(&mut app, &["LPUSH", &acme.key("l"), "a"]).await;
    ok(&mut app, &["ZADD", &acme.key("z"), "1", "m"]).await;
    ok(&mut app, &["XADD", &acme.key("s"), "*", "f", "v"]).await;
    ok(&mut app, &["MULTI"]).await;
    ok(&mut app, &["INCR", &acme.key("n")]).await;
    ok(&mut app, &["EXEC"]).await;
    let script = "return redis.call('GET', KEYS[1])";
    let got = ok(&mut app, &["EVAL", script, "1", &acme.key("k")]).await;
    assert_eq!(got, bulk("v"));
    assert_eq!(text(&ok(&mut app, &["ACL", "WHOAMI"]).await), acme.app);
    ok(&mut app, &["CLIENT", "ID"]).await;
    ok(&mut app, &["PUBLISH", &acme.key("news"), "hi"]).await;

    // Nothing of the other tenant's, nor outside any prefix.
    let secret = other.key("secret");
    let copy_target = acme.key("copy");
    let attacks: Vec<Vec<&str>> = vec![
        vec!["GET", &secret],
        vec!["SET", &secret, "mine"],
        vec!["DEL", &secret],
        vec!["UNLINK", &secret],
        vec!["GET", "unprefixed"],
        vec!["EXISTS", &secret],
        vec!["DUMP", &secret],
        vec!["OBJECT", "ENCODING", &secret],
        vec!["COPY", &secret, &copy_target],
        vec!["RENAME", &copy_target, &secret],
        vec!["PUBLISH", "t_other:news", "x"],
        vec!["FLUSHALL"],
        vec!["FLUSHDB"],
        vec!["RANDOMKEY"],
        vec!["DBSIZE"],
        vec!["ACL", "SETUSER", &acme.app, "~*"],
        vec!["ACL", "LIST"],
        vec!["CONFIG", "GET", "*"],
        vec!["CONFIG", "SET", "appendonly", "no"],
        vec!["SELECT", "1"],
        vec!["SELECT", "0"],
        vec!["MOVE", &copy_target, "0"],
        vec!["SWAPDB", "0", "1"],
        vec!["FUNCTION", "FLUSH"],
        vec!["FUNCTION", "LIST"],
        vec!["FCALL", "f", "0"],
        vec!["SCRIPT", "FLUSH"],
        vec!["SCRIPT", "KILL"],
        vec!["CLIENT", "LIST"],
        vec!["CLIENT", "KILL", "ID", "1"],
        vec!["MONITOR"],
        vec!["INFO"],
        vec!["DEBUG", "OBJECT", &copy_target],
        vec!["SHUTDOWN", "NOSAVE"],
        vec!["SAVE"],
        vec!["BGSAVE"],
        vec!["BGREWRITEAOF"],
        vec!["REPLICAOF", "127.0.0.1", "1"],
        vec!["MIGRATE", "127.0.0.1", "1", &copy_target, "0", "1"],
        vec!["RESTORE", &copy_target, "0", "x"],
        vec!["PUBSUB", "CHANNELS"],
        vec!["HGETALL", "tdb:settings:t_acme"],
        vec!["SORT", &copy_target, "BY", "t_other:*"],
    ];
    for attack in &attacks {
        let code = refused(&mut app, attack).await;
        assert!(code == "NOPERM" || code == "ERR", "{attack:?}: {code}");
    }
    // Scripts run with the user's ACL: a key name built inside the script is checked too.
    let built = "return redis.call('GET', 't_other' .. ':secret')";
    refused(&mut app, &["EVAL", built, "0"]).await;
    refused(&mut app, &["EVAL", "return redis.call('FLUSHALL')", "0"]).await;
    refused(&mut app, &["EVAL", script, "1", &secret]).await;
    // Pattern subscriptions: Redis compares a pattern with the ACL's channel patterns
    // literally, so only the whole prefix can be subscribed to (the proxy filters below it).
    let mut listener = login(&ctx.e, &acme.app, APP_PW).await;
    ok(&mut listener, &["PSUBSCRIBE", "t_acme:*"]).await;
    let mut narrow = login(&ctx.e, &acme.app, APP_PW).await;
    assert_eq!(
        refused(&mut narrow, &["PSUBSCRIBE", "t_acme:news.*"]).await,
        "NOPERM"
    );
    assert_eq!(refused(&mut narrow, &["PSUBSCRIBE", "*"]).await, "NOPERM");
    assert_eq!(
        refused(&mut narrow, &["SUBSCRIBE", "t_other:news"]).await,
        "NOPERM"
    );
    // The other tenant's key is untouched.
    assert_eq!(ok(&mut root, &["GET", &secret]).await, bulk("s3cret"));

    // The read user reads and writes nothing.
    let mut read = login(&ctx.e, &acme.read, READ_PW).await;
    assert_eq!(ok(&mut read, &["GET", &acme.key("k")]).await, bulk("v"));
    for attack in [
        vec!["SET", acme.key("k").as_str(), "w"],
        vec!["DEL", acme.key("k").as_str()],
        vec!["GET", secret.as_str()],
        vec!["EVAL", script, "1", acme.key("k").as_str()],
        vec!["PUBLISH", acme.key("news").as_str(), "x"],
        vec!["FLUSHDB"],
    ] {
        let code = refused(&mut read, &attack).await;
        assert_eq!(code, "NOPERM", "{attack:?}");
    }
    let ro = ok(&mut read, &["EVAL_RO", script, "1", &acme.key("k")]).await;
    assert_eq!(ro, bulk("v"));
}

pub async fn settings_are_kept_where_only_tdb_reaches(ctx: &Ctx) {
    let kv = ctx.engine.key_value_settings().expect("key-value settings");
    let wanted = KeySettings {
        default_ttl: Some(std::time::Duration::from_secs(60)),
        max_keys: Some(500),
        patterns: vec![("cache:*".into(), std::time::Duration::from_secs(300))],
    };
    kv.apply_settings(&ctx.e, &ctx.acme.name, &wanted)
        .await
        .expect("apply");
    let mut root = admin(&ctx.e).await;
    assert_eq!(
        settings::read(&mut root, &ctx.acme.name)
            .await
            .expect("read"),
        wanted
    );
    let mut app = login(&ctx.e, &ctx.acme.app, APP_PW).await;
    let key = settings::settings_key(&ctx.acme.name);
    assert_eq!(refused(&mut app, &["HGETALL", &key]).await, "NOPERM");
    assert_eq!(refused(&mut app, &["DEL", &key]).await, "NOPERM");
    kv.apply_settings(&ctx.e, &ctx.acme.name, &KeySettings::default())
        .await
        .expect("clear");
    assert_eq!(
        super::support::int(&ok(&mut root, &["EXISTS", &key]).await),
        0
    );
    assert!(kv.apply_settings(&ctx.e, "tdb", &wanted).await.is_err());
}
