//! Dropping a namespace: every key under its prefix goes, in `SCAN` + `UNLINK` batches (never
//! `KEYS`), its users and settings go, other namespaces keep theirs; a second drop is fine.

use tdb_engines::KeySettings;

use super::support::{APP_PW, Ctx, Tenant, admin, calls, int, login, ok};

const KEYS: usize = 25_000;

pub async fn drops_remove_keys_in_batches(ctx: &Ctx) {
    let big = Tenant::new("t_big");
    ctx.engine
        .create_tenant_database(&ctx.e, &big.spec())
        .await
        .expect("create");
    let kv = ctx.engine.key_value_settings().expect("settings");
    let settings = KeySettings {
        max_keys: Some(KEYS as u64),
        ..KeySettings::default()
    };
    kv.apply_settings(&ctx.e, &big.name, &settings)
        .await
        .expect("apply");
    let mut root = admin(&ctx.e).await;
    for chunk in (0..KEYS).collect::<Vec<_>>().chunks(1000) {
        let mut args = vec!["MSET".to_string()];
        for i in chunk {
            args.extend([big.key(&format!("k{i}")), i.to_string()]);
        }
        root.call(&args).await.expect("MSET");
    }
    ok(&mut root, &["SET", "t_bigger:k1", "kept"]).await;
    ok(&mut root, &["SET", &ctx.other.key("kept"), "kept"]).await;
    let before = int(&ok(&mut root, &["DBSIZE"]).await);
    let mut connected = login(&ctx.e, &big.app, APP_PW).await;
    ok(&mut connected, &["PING"]).await;
    let (unlinks, keys) = (
        calls(&mut root, "unlink").await,
        calls(&mut root, "keys").await,
    );

    ctx.engine
        .drop_database(&ctx.e, &big.name, &big.roles())
        .await
        .expect("drop");

    assert!(
        connected.call(&["PING"]).await.is_err(),
        "the drop ended its clients"
    );
    // The namespace's keys and its settings hash.
    assert_eq!(
        int(&ok(&mut root, &["DBSIZE"]).await),
        before - KEYS as i64 - 1
    );
    assert!(calls(&mut root, "unlink").await - unlinks >= (KEYS / 1000) as u64);
    assert_eq!(calls(&mut root, "keys").await, keys, "no KEYS");
    assert_eq!(
        int(&ok(
            &mut root,
            &["EXISTS", "t_bigger:k1", &ctx.other.key("kept")]
        )
        .await),
        2
    );
    for role in big.roles() {
        let user = ok(&mut root, &["ACL", "GETUSER", role]).await;
        assert!(user.as_items().is_none(), "{role} is gone");
    }
    assert_eq!(
        int(&ok(&mut root, &["EXISTS", "tdb:settings:t_big"]).await),
        0
    );
    assert!(
        !ctx.engine
            .database_exists(&ctx.e, &big.name)
            .await
            .expect("exists")
    );
    ctx.engine
        .drop_database(&ctx.e, &big.name, &big.roles())
        .await
        .expect("dropping again is fine");
    ok(
        &mut root,
        &["UNLINK", "t_bigger:k1", &ctx.other.key("kept")],
    )
    .await;
}
