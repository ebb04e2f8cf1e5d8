//! The Redis engine against real redis-servers managed by tdb: the server starts hardened and
//! comes back on the same data; on it, a tenant's ACL users reach their own prefix and nothing
//! else; drops unlink in batches; dumps restore key by key with values and expiries; sessions
//! prefix, anchor, strip and refuse.

#[path = "redis/drops.rs"]
mod drops;
#[path = "redis/dumps.rs"]
mod dumps;
#[path = "redis/isolation.rs"]
mod isolation;
#[path = "redis/server.rs"]
mod server;
#[path = "redis/sessions.rs"]
mod sessions;
#[path = "redis/support.rs"]
mod support;

use std::sync::Arc;

use tdb_core::secrets::MasterKey;
use tdb_engines::managed::redis::{self, Listen};
use tdb_engines::{Engine, Engines, ManagedRedis, RedisEngine};

use support::{Ctx, Tenant, options, tempdir};

/// One server for every namespace scenario, run in order: each leaves what the next uses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_engine_on_a_managed_server() {
    let tmp = tempdir();
    let dir = tmp.path().join("redis");
    let server = ManagedRedis::start(options(&dir, &MasterKey::generate(), Listen::Loopback))
        .await
        .expect("start");
    let engines = Engines::new([Arc::new(RedisEngine::new()) as Arc<dyn Engine>]);
    let ctx = Ctx {
        engine: engines
            .require(tdb_core::Engine::Redis)
            .expect("registered"),
        e: server.endpoint().clone(),
        acme: Tenant::new("t_acme"),
        other: Tenant::new("t_other"),
    };
    let started = std::time::Instant::now();
    isolation::server_figures(&ctx).await;
    isolation::namespaces_are_created_once(&ctx).await;
    isolation::acl_users_hold_their_prefix(&ctx).await;
    isolation::settings_are_kept_where_only_tdb_reaches(&ctx).await;
    sessions::sessions_stay_in_their_namespace(&ctx).await;
    dumps::dump_and_restore_key_by_key(&ctx).await;
    drops::drops_remove_keys_in_batches(&ctx).await;
    eprintln!("engine scenarios took {:?}", started.elapsed());
    server.shutdown().await;
    redis::remove(&dir).await.expect("remove");
}

/// The server's own life: files, logins, restart, re-hardening (a server of its own: it is
/// stopped and started).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managed_redis_server() {
    server::starts_hardened_keeps_data_and_rehardens().await;
}
