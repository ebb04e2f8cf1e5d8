//! The MySQL engine against real MariaDB servers managed by tdb: the server starts hardened
//! and comes back on the same data; inside it, a tenant's users reach their own database and
//! nothing else; migrations resume after a failure without running a statement twice; dumps
//! restore to the same rows; sessions answer rows, counts, errors and timeouts; a move's parts
//! (counts and checksums, fences, closed databases) do what the move needs.

#[path = "mysql/attached.rs"]
mod attached;
#[path = "mysql/dumps.rs"]
mod dumps;
#[path = "mysql/fence.rs"]
mod fence;
#[path = "mysql/isolation.rs"]
mod isolation;
#[path = "mysql/migrations.rs"]
mod migrations;
#[path = "mysql/moves.rs"]
mod moves;
#[path = "mysql/server.rs"]
mod server;
#[path = "mysql/sessions.rs"]
mod sessions;
#[path = "mysql/support.rs"]
mod support;

use tdb_core::secrets::MasterKey;
use tdb_engines::managed::mariadb::{self, Listen};
use tdb_engines::{ManagedMariadb, MysqlEngine};

use support::{Ctx, Tenant, options, tempdir};

/// One server for every scenario of the engine, run in order: each leaves what the next uses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_engine_on_mariadb() {
    let tmp = tempdir();
    let dir = tmp.path().join("mariadb");
    let server = ManagedMariadb::start(options(&dir, &MasterKey::generate(), Listen::Loopback))
        .await
        .expect("start");
    let ctx = Ctx {
        engine: MysqlEngine::new(None),
        e: server.endpoint().clone(),
        acme: Tenant::new("shop__acme", "acme"),
        lookalike: Tenant::new("shopxyacme", "xy"),
        other: Tenant::new("shop__other", "other"),
    };
    let started = std::time::Instant::now();
    isolation::server_figures(&ctx).await;
    isolation::tenants_are_created_once(&ctx).await;
    isolation::isolation_holds_inside_mariadb(&ctx).await;
    isolation::connection_limits_hold(&ctx).await;
    migrations::migrations_apply_resume_and_dry_run(&ctx).await;
    sessions::sessions_answer_rows_counts_errors_and_timeouts(&ctx).await;
    migrations::introspection_and_export(&ctx).await;
    dumps::dump_restores_the_same_rows_and_schema(&ctx).await;
    moves::fences_sums_and_closing(&ctx).await;
    isolation::workspaces_get_one_owner(&ctx).await;
    isolation::drops_end_sessions_and_take_grants_back(&ctx).await;
    eprintln!("engine scenarios took {:?}", started.elapsed());
    server.shutdown().await;
    mariadb::remove(&dir).await.expect("remove");
}
