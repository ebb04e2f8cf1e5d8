//! Durable jobs: rows in the catalog's `jobs` table, claimed with `FOR UPDATE SKIP LOCKED` under
//! a lease that a heartbeat renews. A runner that dies (even by `kill -9`) lets its lease run
//! out and another run picks the job up again; every step is idempotent, so resuming never
//! applies anything twice. Deployments, backups, rollbacks, tenant creations and project
//! deletions are jobs, claimed fairly between projects; the backup schedule and retention run on
//! a timer beside them. A job that fails says whether running it again can help
//! ([`JobError`]): one that can is run again after a back-off, one that cannot is recorded as
//! failed where its owner looks.

pub mod access;
pub mod archive;
pub mod backup;
pub mod client_error;
pub mod dedicated;
pub mod deploy;
pub mod error;
pub mod forward;
pub mod moves;
pub mod provision;
pub mod provision_move;
pub mod recover;
pub mod rollback;
mod runner;
pub mod schedule;
pub mod store;
pub mod teardown;

pub use error::JobError;
pub use runner::{LEASE_SECONDS, NoSharedServers, Runner, RunnerConfig, SharedServers};
