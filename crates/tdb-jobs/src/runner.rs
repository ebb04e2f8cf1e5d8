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
/// A run stops once its lease has gone this long without renewal (it expires at LEASE_SECONDS).
const LEASE_SAFETY: Duration = Duration::from_secs(8);
/// Runs of a job that keeps failing, at most.
const MAX_ATTEMPTS: i32 = 10;
const RETRY_AFTER_SECONDS: i32 = 5;

#[derive(Clone)]
pub struct RunnerConfig {
    /// Tenant databases migrated at once by one deployment.
    pub deploy_parallelism: usize,
    /// Jobs one runner works on at once (a long backup does not hold up a deployment).
    pub max_jobs: usize,
    /// Backup policy for projects that set none of their own.
    pub backup_defaults: crate::backup::BackupPolicy,
    /// How often the backup schedule and retention are checked.
    pub schedule_tick: Duration,
    /// Days the query log keeps its records.
    pub query_log_retention_days: i64,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        Self {
            deploy_parallelism: 8,
            max_jobs: 4,
            backup_defaults: crate::backup::BackupPolicy::default(),
            schedule_tick: Duration::from_secs(60),
            query_log_retention_days: 7,
        }
    }
}

/// Everything a job needs.
#[derive(Clone)]
pub struct Runner {
    pub catalog: Catalog,
    pub postgres: Arc<dyn Engine>,
    pub master_key: MasterKey,
    pub store: crate::store::BackupStore,
    pub config: RunnerConfig,
    /// This runner's identity in job leases.
    pub owner: String,
}

impl Runner {
    /// The engine of a catalog engine name.
    pub fn engine(&self, kind: &str) -> Result<Arc<dyn Engine>, String> {
        match kind {
            "postgresql" => Ok(self.postgres.clone()),
            other => Err(format!("the {other} engine is not available yet")),
        }
    }

    /// Runs jobs (up to `max_jobs` at once) and the backup schedule until `shutdown`; a job in
    /// progress at shutdown is left to its lease, so the next start (or another node) resumes
    /// it.
    pub async fn run(self, shutdown: CancellationToken) {
        tracing::info!(owner = %self.owner, "job runner started");
        let mut running = tokio::task::JoinSet::new();
        running.spawn(crate::schedule::run(self.clone(), shutdown.clone()));
        let slots = Arc::new(tokio::sync::Semaphore::new(self.config.max_jobs.max(1)));
        loop {
            while running.try_join_next().is_some() {}
            let permit = tokio::select! {
                _ = shutdown.cancelled() => break,
                permit = slots.clone().acquire_owned() => match permit {
                    Ok(p) => p,
                    Err(_) => break,
                },
            };
            let claimed = tokio::select! {
                _ = shutdown.cancelled() => break,
                claimed = self.catalog.claim_job(&self.owner, LEASE_SECONDS) => claimed,
            };
            match claimed {
                Ok(Some(job)) => {
                    let runner = self.clone();
                    running.spawn(async move {
                        runner.run_job(job).await;
                        drop(permit);
                    });
                }
                Ok(None) => {
                    drop(permit);
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(IDLE_POLL) => {}
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "claiming a job failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
        // Jobs cut off here resume from their steps once their leases run out.
        running.shutdown().await;
    }

    async fn run_job(&self, job: Job) {
        let started = std::time::Instant::now();
        tracing::info!(job = job.id, kind = %job.kind, ref_id = %job.ref_id, attempt = job.attempts, "job claimed");
        // The job runs only while its lease is ours: once it cannot be renewed in time, another
        // runner may claim the job, so this run stops (as if it had crashed) rather than race it.
        let lease_lost = {
            let catalog = self.catalog.clone();
            let owner = self.owner.clone();
            async move {
                let mut renewed = std::time::Instant::now();
                loop {
                    tokio::time::sleep(HEARTBEAT).await;
                    match catalog.renew_job(job.id, &owner, LEASE_SECONDS).await {
                        Ok(true) => renewed = std::time::Instant::now(),
                        Ok(false) => return,
                        Err(e) => {
                            tracing::warn!(job = job.id, error = %e, "renewing the job's lease failed")
                        }
                    }
                    if renewed.elapsed() >= LEASE_SAFETY {
                        return;
                    }
                }
            }
        };
        let work = async {
            match job.kind.as_str() {
                "deployment" => crate::deploy::run(self, &job.ref_id).await,
                "backup" => crate::backup::run(self, &job.ref_id).await,
                "rollback" => crate::rollback::run(self, &job.ref_id, job.attempts).await,
                other => Err(format!("unknown job kind '{other}'")),
            }
        };
        let outcome = tokio::select! {
            outcome = work => outcome,
            () = lease_lost => {
                tracing::warn!(job = job.id, "lost the job's lease; stopping this run of it");
                return;
            }
        };
        let kind = job.kind.clone();
        metrics::histogram!("tdb_job_duration_seconds", "kind" => kind.clone())
            .record(started.elapsed().as_secs_f64());
        let result = if outcome.is_ok() { "ok" } else { "error" };
        metrics::counter!("tdb_jobs_total", "kind" => kind, "outcome" => result).increment(1);
        let recorded = match &outcome {
            // A job that could not record its end (a catalog blip, say) runs again shortly; its
            // steps are idempotent. After MAX_ATTEMPTS it is given up.
            Err(e) if job.attempts < MAX_ATTEMPTS => {
                tracing::error!(job = job.id, error = %e, "job failed; it will run again");
                self.catalog
                    .retry_job(job.id, &self.owner, RETRY_AFTER_SECONDS)
                    .await
            }
            Err(e) => {
                tracing::error!(job = job.id, error = %e, attempts = job.attempts, "job failed; giving up");
                self.catalog.finish_job(job.id, &self.owner).await
            }
            Ok(()) => self.catalog.finish_job(job.id, &self.owner).await,
        };
        if let Err(e) = recorded {
            tracing::error!(job = job.id, error = %e, "recording the job's end failed; it will run again");
        }
    }
}
