//! The job loop: claim (fairly between projects), run with a heartbeat and a time limit, mark
//! done; poll when idle.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tdb_catalog::Catalog;
use tdb_catalog::jobs::Job;
use tdb_core::JobKind;
use tdb_core::secrets::MasterKey;
use tdb_engines::{Engine, Engines};
use tokio_util::sync::CancellationToken;

use crate::JobError;

/// Seconds a claimed job stays ours without a heartbeat.
pub const LEASE_SECONDS: i32 = 10;
const HEARTBEAT: Duration = Duration::from_secs(3);
const IDLE_POLL: Duration = Duration::from_millis(200);
/// A run stops once its lease has gone this long without renewal (it expires at LEASE_SECONDS).
const LEASE_SAFETY: Duration = Duration::from_secs(8);
/// Runs of a job that keeps failing on something unreachable, at most (with the back-off, some
/// four minutes of trying).
const MAX_ATTEMPTS: i32 = 10;

#[derive(Clone)]
pub struct RunnerConfig {
    /// Tenant databases migrated at once by one deployment on each server.
    pub deploy_parallelism: usize,
    /// Jobs one runner works on at once (a long backup does not hold up a deployment).
    pub max_jobs: usize,
    /// Backup policy for projects that set none of their own.
    pub backup_defaults: crate::backup::BackupPolicy,
    /// How often the backup schedule and retention are checked.
    pub schedule_tick: Duration,
    /// Days the query log keeps its records.
    pub query_log_retention_days: i64,
    /// Longest one run of a deployment, backup or rollback may take; it is then ended and
    /// recorded as failed.
    pub job_time_limit: Duration,
    /// Longest the migration of one tenant database may take.
    pub migration_timeout: Duration,
    /// How long a move's cutover lets open transactions finish before it ends them.
    pub move_drain: Duration,
    /// How long a move waits for replication to copy every table before it falls back to a
    /// dump and restore.
    pub move_sync_timeout: Duration,
    /// How long a moved database's old copy is kept (unreachable) before it is dropped.
    pub move_keep_source: Duration,
    /// How often the WAL archives are looked at (recoverable window, backups due).
    pub pitr_tick: Duration,
    /// A full base backup of every managed server at least this often.
    pub pitr_full_every: Duration,
    /// A differential base backup at least this often between full ones.
    pub pitr_diff_every: Duration,
    /// How long a recovered tenant's original is kept for `recover-undo`, from the request.
    pub recovery_undo_window: Duration,
}

impl RunnerConfig {
    /// Jobs one project may run at once: half the runner's slots, so another project always
    /// finds one free (with a single slot, there is nothing to share).
    pub fn per_project(&self) -> i64 {
        i64::try_from((self.max_jobs / 2).max(1)).unwrap_or(1)
    }
}

impl Default for RunnerConfig {
    fn default() -> Self {
        Self {
            deploy_parallelism: 8,
            max_jobs: 4,
            backup_defaults: crate::backup::BackupPolicy::default(),
            schedule_tick: Duration::from_secs(60),
            query_log_retention_days: 7,
            job_time_limit: Duration::from_secs(6 * 3600),
            migration_timeout: Duration::from_secs(300),
            move_drain: Duration::from_secs(5),
            move_sync_timeout: Duration::from_secs(3600),
            move_keep_source: Duration::from_secs(24 * 3600),
            pitr_tick: Duration::from_secs(5),
            pitr_full_every: Duration::from_secs(7 * 24 * 3600),
            pitr_diff_every: Duration::from_secs(24 * 3600),
            recovery_undo_window: Duration::from_secs(24 * 3600),
        }
    }
}

/// Everything a job needs.
#[derive(Clone)]
pub struct Runner {
    pub catalog: Catalog,
    /// The engine registry `tdb serve` built, shared with the API.
    pub engines: Engines,
    pub master_key: MasterKey,
    pub store: crate::store::BackupStore,
    /// Makes, starts, stops and removes dedicated (L2) servers.
    pub provisioner: Arc<dyn tdb_engines::Provisioner>,
    /// Where the managed servers archive their WAL; `None`: no archiving, no recovery.
    pub archive: Option<Arc<tdb_engines::managed::archive::WalArchive>>,
    pub config: RunnerConfig,
    /// This runner's identity in job leases.
    pub owner: String,
    /// Shared servers tdb starts the first time a database of their engine is wanted.
    pub shared: Arc<dyn SharedServers>,
}

/// Shared servers started on first use: tdb's managed MariaDB is initialised and started the
/// first time a MySQL workspace or tenant is made, not by every `tdb serve`.
#[async_trait::async_trait]
pub trait SharedServers: Send + Sync {
    /// Makes sure this tdb's managed shared server of `engine` runs and is in the catalog,
    /// starting it on first use. `Ok(false)`: this tdb manages no server of that engine (an
    /// attached one may serve it).
    async fn ensure(&self, engine: tdb_core::Engine) -> Result<bool, String>;
}

/// No shared server is started on demand.
pub struct NoSharedServers;

#[async_trait::async_trait]
impl SharedServers for NoSharedServers {
    async fn ensure(&self, _engine: tdb_core::Engine) -> Result<bool, String> {
        Ok(false)
    }
}

impl Runner {
    /// The engine a catalog record names (its `engine` column).
    pub fn engine(&self, kind: tdb_core::Engine) -> Result<Arc<dyn Engine>, JobError> {
        Ok(self.engines.require(kind)?)
    }

    /// Runs jobs (up to `max_jobs` at once) and the backup schedule until `shutdown`; a job in
    /// progress at shutdown is left to its lease, so the next start (or another node) resumes
    /// it.
    pub async fn run(self, shutdown: CancellationToken) {
        tracing::info!(owner = %self.owner, "job runner started");
        let mut running = tokio::task::JoinSet::new();
        running.spawn(crate::schedule::run(self.clone(), shutdown.clone()));
        running.spawn(crate::archive::run(self.clone(), shutdown.clone()));
        let slots = Arc::new(tokio::sync::Semaphore::new(self.config.max_jobs.max(1)));
        let per_project = self.config.per_project();
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
                claimed = self.catalog.claim_job(&self.owner, LEASE_SECONDS, per_project, self.provisioner.kind()) => claimed,
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

    /// Runs `work` while the lease of job `id` is ours, renewing it; `None` once the lease is
    /// lost (another runner may have claimed the job, so this run stops as if it had crashed).
    pub async fn under_lease<T>(&self, id: i64, work: impl Future<Output = T>) -> Option<T> {
        let lease_lost = async {
            let mut renewed = std::time::Instant::now();
            loop {
                tokio::time::sleep(HEARTBEAT).await;
                match self.catalog.renew_job(id, &self.owner, LEASE_SECONDS).await {
                    Ok(true) => renewed = std::time::Instant::now(),
                    Ok(false) => return,
                    Err(e) => {
                        tracing::warn!(job = id, error = %e, "renewing the job's lease failed")
                    }
                }
                if renewed.elapsed() >= LEASE_SAFETY {
                    return;
                }
            }
        };
        tokio::select! {
            outcome = work => Some(outcome),
            () = lease_lost => {
                tracing::warn!(job = id, "lost the job's lease; stopping this run of it");
                None
            }
        }
    }

    async fn run_job(&self, job: Job) {
        let started = std::time::Instant::now();
        tracing::info!(job = job.id, kind = %job.kind, ref_id = %job.ref_id, attempt = job.attempts, "job claimed");
        let must_finish = job.kind.must_finish();
        let work = async {
            let work = self.work(&job);
            if must_finish {
                return work.await;
            }
            match tokio::time::timeout(self.config.job_time_limit, work).await {
                Ok(outcome) => outcome,
                Err(_) => Err(self.over_time(&job).await),
            }
        };
        let Some(outcome) = self.under_lease(job.id, work).await else {
            return;
        };
        let kind = job.kind.as_str();
        metrics::histogram!("tdb_job_duration_seconds", "kind" => kind)
            .record(started.elapsed().as_secs_f64());
        let result = match &outcome {
            Ok(()) => "ok",
            Err(JobFailure::OverTime(_)) => "timeout",
            Err(_) => "error",
        };
        metrics::counter!("tdb_jobs_total", "kind" => kind, "outcome" => result).increment(1);
        let recorded = match outcome {
            // Ended for good: its failure is recorded where its owner sees it.
            Err(JobFailure::OverTime(e)) => {
                tracing::error!(job = job.id, kind = %job.kind, error = %e, "job ended: over its time limit");
                self.catalog.finish_job(job.id, &self.owner).await
            }
            Err(JobFailure::Failed(e)) => self.failed(&job, must_finish, e).await,
            Ok(()) => self.catalog.finish_job(job.id, &self.owner).await,
        };
        if let Err(e) = recorded {
            tracing::error!(job = job.id, error = %e, "recording the job's end failed; it will run again");
        }
    }

    /// A run that failed: runs again after a back-off, or is recorded as failed where the job's
    /// owner looks and ends (see [`after_failure`]).
    async fn failed(
        &self,
        job: &Job,
        must_finish: bool,
        e: JobError,
    ) -> Result<(), tdb_catalog::CatalogError> {
        match after_failure(must_finish, job.attempts, &e) {
            AfterFailure::RunAgain(after) => {
                tracing::error!(job = job.id, kind = %job.kind, error = %e, attempt = job.attempts,
                    retry_in_secs = after.as_secs(), "job failed; it will run again");
                let seconds = i32::try_from(after.as_secs()).unwrap_or(i32::MAX);
                self.catalog.retry_job(job.id, &self.owner, seconds).await
            }
            AfterFailure::Record(why) => {
                tracing::error!(job = job.id, kind = %job.kind, error = %why, attempts = job.attempts,
                    "job failed; not running it again");
                self.record_failure(job, &why).await;
                self.catalog.finish_job(job.id, &self.owner).await
            }
        }
    }

    async fn work(&self, job: &Job) -> Result<(), JobFailure> {
        let done = match job.kind {
            JobKind::Deployment => crate::deploy::run(self, &job.ref_id).await,
            JobKind::Backup => crate::backup::run(self, &job.ref_id).await,
            JobKind::Rollback => crate::rollback::run(self, &job.ref_id, job.attempts).await,
            JobKind::TenantCreate => crate::provision::run(self, &job.ref_id, true)
                .await
                .map(|_| ()),
            JobKind::ProjectDelete => crate::teardown::delete_project(self, job).await,
            JobKind::ProvisionMove => crate::provision_move::run(self, &job.ref_id).await,
            JobKind::TenantMove => crate::moves::run(self, &job.ref_id, job.attempts).await,
            JobKind::TenantRecover => crate::recover::run(self, &job.ref_id, job.attempts).await,
            JobKind::TenantRecoverUndo => crate::recover::undo(self, &job.ref_id).await,
        };
        done.map_err(JobFailure::Failed)
    }

    /// Records a job that ran past its time limit as failed where its owner looks, and says
    /// why.
    async fn over_time(&self, job: &Job) -> JobFailure {
        let why = format!(
            "stopped after the job time limit of {} s (job_time_limit_secs)",
            self.config.job_time_limit.as_secs()
        );
        self.record_failure(job, &why).await;
        JobFailure::OverTime(why)
    }

    /// Records a job's failure where its owner looks: the deployment, the backup, the rollback.
    async fn record_failure(&self, job: &Job, why: &str) {
        let recorded = match job.kind.as_str() {
            "deployment" => self
                .catalog
                .fail_deployment(&job.ref_id, why)
                .await
                .map_err(JobError::from),
            "backup" => self
                .catalog
                .fail_backup(&job.ref_id, why)
                .await
                .map_err(JobError::from),
            "rollback" => crate::rollback::give_up(self, &job.ref_id, why).await,
            "tenant_move" => crate::moves::give_up(self, &job.ref_id, why).await,
            "tenant_recover" => crate::recover::give_up(self, &job.ref_id, why).await,
            _ => Ok(()),
        };
        if let Err(e) = recorded {
            tracing::error!(job = job.id, error = %e, "recording a job's failure failed");
        }
    }
}

/// What becomes of a job whose run failed.
#[derive(Debug, PartialEq, Eq)]
enum AfterFailure {
    /// It runs again after this long.
    RunAgain(Duration),
    /// It ends, recorded as failed with this message.
    Record(String),
}

/// A job that must finish runs again whatever failed; another runs again when the failure may
/// pass (the catalog or a server could not be reached), up to MAX_ATTEMPTS; a failure that
/// running again cannot mend (a statement the tenant database refused) is recorded at once.
fn after_failure(must_finish: bool, attempts: i32, e: &JobError) -> AfterFailure {
    if must_finish || (e.is_transient() && attempts < MAX_ATTEMPTS) {
        return AfterFailure::RunAgain(crate::error::backoff(attempts));
    }
    if e.is_transient() {
        return AfterFailure::Record(format!("gave up after {attempts} attempts: {e}"));
    }
    AfterFailure::Record(e.to_string())
}

/// How a job's run failed.
#[derive(Debug)]
enum JobFailure {
    /// It failed; the error says whether running it again may help.
    Failed(JobError),
    /// It ran past its time limit and has been recorded as failed.
    OverTime(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_statement_is_recorded_at_once_and_a_blip_runs_again() {
        let refused = JobError::permanent("column \"note\" already exists");
        assert_eq!(
            after_failure(false, 1, &refused),
            AfterFailure::Record("column \"note\" already exists".into())
        );
        let blip = JobError::transient("cannot connect to the database server");
        assert_eq!(
            after_failure(false, 1, &blip),
            AfterFailure::RunAgain(Duration::from_secs(2))
        );
        assert_eq!(
            after_failure(false, 3, &blip),
            AfterFailure::RunAgain(Duration::from_secs(8))
        );
        assert!(matches!(
            after_failure(false, MAX_ATTEMPTS, &blip),
            AfterFailure::Record(why) if why.starts_with("gave up after 10 attempts")
        ));
    }

    #[test]
    fn jobs_that_must_finish_keep_trying_with_a_back_off() {
        for e in [JobError::permanent("x"), JobError::transient("y")] {
            assert_eq!(
                after_failure(true, 1, &e),
                AfterFailure::RunAgain(Duration::from_secs(2))
            );
            assert_eq!(
                after_failure(true, MAX_ATTEMPTS + 40, &e),
                AfterFailure::RunAgain(Duration::from_secs(60))
            );
        }
    }
}
