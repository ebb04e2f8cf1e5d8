//! Prometheus metrics for the operator: the process-wide recorder, the `/metrics` listener
//! (a separate address, never the public API's), and the gauges that are sampled rather than
//! counted: job queue depth, server health, banned addresses.

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use sqlx::Connection;
use tdb_catalog::Catalog;
use tdb_core::ratelimit::IpGuard;
use tdb_core::secrets::MasterKey;
use tdb_core::{JobKind, JobStatus};
use tokio_util::sync::CancellationToken;

/// Installs the recorder; every `metrics::counter!` and friends from here on is exported.
pub fn install() -> anyhow::Result<PrometheusHandle> {
    PrometheusBuilder::new()
        .install_recorder()
        .context("installing the metrics recorder")
}

/// Serves `GET /metrics` on `addr` until shutdown.
pub async fn serve(
    addr: SocketAddr,
    handle: PrometheusHandle,
    shutdown: CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the metrics listener to {addr}"))?;
    tracing::info!(metrics = %listener.local_addr()?, "Prometheus metrics at /metrics");
    let handle = Arc::new(handle);
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let handle = handle.clone();
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4",
                    )],
                    handle.render(),
                )
            }
        }),
    );
    Ok(tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await;
    }))
}

/// Every 10 s: jobs not done by kind and status, whether each server answers, banned addresses.
pub async fn sample(
    catalog: Catalog,
    key: MasterKey,
    guard: Arc<IpGuard>,
    shutdown: CancellationToken,
) {
    loop {
        if let Ok(open) = catalog.open_jobs().await {
            for &kind in JobKind::ALL {
                for status in [JobStatus::Queued, JobStatus::Running] {
                    let n = open
                        .iter()
                        .find(|(k, s, _)| *k == kind && *s == status)
                        .map_or(0, |(_, _, n)| *n);
                    metrics::gauge!("tdb_jobs_open", "kind" => kind.as_str(), "status" => status.as_str())
                        .set(n as f64);
                }
            }
        }
        metrics::gauge!("tdb_catalog_up").set(if catalog.ping().await { 1.0 } else { 0.0 });
        if let Ok(servers) = catalog.list_servers().await {
            for server in servers {
                let up = server_answers(&key, &server).await;
                metrics::gauge!("tdb_server_up", "server" => server.name.clone(),
                                "engine" => server.engine.as_str(), "managed" => server.managed.to_string())
                .set(if up { 1.0 } else { 0.0 });
            }
        }
        metrics::gauge!("tdb_banned_addresses").set(guard.banned() as f64);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(10)) => {}
        }
    }
}

async fn server_answers(key: &MasterKey, server: &tdb_catalog::servers::Server) -> bool {
    let Ok(admin) = tdb_jobs::access::admin_endpoint(key, server) else {
        return false;
    };
    let Ok(options) = sqlx::postgres::PgConnectOptions::from_str("postgresql://localhost") else {
        return false;
    };
    let options = options
        .host(&admin.host)
        .port(admin.port)
        .username(&admin.user)
        .password(&admin.password)
        .database("postgres")
        .application_name("tdb-health");
    let probe = async {
        let mut conn = sqlx::PgConnection::connect_with(&options).await.ok()?;
        let ok = sqlx::query("SELECT 1").execute(&mut conn).await.is_ok();
        let _ = conn.close().await;
        Some(ok)
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(5), probe).await,
        Ok(Some(true))
    )
}
