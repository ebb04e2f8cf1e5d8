//! The job loop: claim, run with a heartbeat, mark done; poll when idle.

use std::sync::Arc;
use std::time::Duration;

use tdb_catalog::Catalog;
use tdb_catalog::deployments::Job;
use tdb_core::secrets::MasterKey;
use tdb_engines::Engine;
use tokio_util::sync::CancellationToken;

/// Seconds a claimed job stays ours without a heartbeat.
const LEASE_SECONDS: i32 = 10;
const HEARTBEAT: Duration = Duration::from_secs(3);
const IDLE_POLL: Duration = Duration::from_millis(200);

#[derive(Clone)]
pub struct RunnerConfig {
    /// Tenant databases migrated at once by one deployment.
    pub deploy_parallelism: usize,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        Self {
            deploy_parallelism: 8,
        }
    }
}

/// Everything a job needs.
#[derive(Clone)]
pub struct Runner {
    pub catalog: Catalog,
    pub postgres: Arc<dyn Engine>,
    pub master_key: MasterKey,
    pub config: RunnerConfig,
    /// This runner's identity in job leases.
    pub owner: String,
}

impl Runner {
    /// Runs jobs until `shutdown`; a job in progress at shutdown is left to its lease, so the
    /// next start (or another node) resumes it.
    pub async fn run(self, shutdown: CancellationToken) {
        tracing::info!(owner = %self.owner, "job runner started");
        loop {
            let claimed = tokio::select! {
                _ = shutdown.cancelled() => return,
                claimed = self.catalog.claim_job(&self.owner, LEASE_SECONDS) => claimed,
            };
            match claimed {
                Ok(Some(job)) => {
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = self.run_job(job) => {}
                    }
                }
                Ok(None) => {
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(IDLE_POLL) => {}
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "claiming a job failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    async fn run_job(&self, job: Job) {
        tracing::info!(job = job.id, kind = %job.kind, ref_id = %job.ref_id, attempt = job.attempts, "job claimed");
        let heartbeat = {
            let catalog = self.catalog.clone();
            let owner = self.owner.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(HEARTBEAT).await;
                    if !matches!(
                        catalog.renew_job(job.id, &owner, LEASE_SECONDS).await,
                        Ok(true)
                    ) {
                        tracing::warn!(job = job.id, "lost the job's lease");
                        return;
                    }
                }
            })
        };
        let outcome = match job.kind.as_str() {
            "deployment" => crate::deploy::run(self, &job.ref_id).await,
            other => Err(format!("unknown job kind '{other}'")),
        };
        heartbeat.abort();
        if let Err(e) = &outcome {
            tracing::error!(job = job.id, error = %e, "job failed");
        }
        if let Err(e) = self.catalog.finish_job(job.id, &self.owner).await {
            tracing::error!(job = job.id, error = %e, "marking the job done failed; it will run again");
        }
    }
}
