//! Durable jobs: rows in the catalog's `jobs` table, claimed with `FOR UPDATE SKIP LOCKED` under
//! a lease that a heartbeat renews. A runner that dies (even by `kill -9`) lets its lease run
//! out and another run picks the job up again; every step is idempotent, so resuming never
//! applies anything twice.

pub mod access;
pub mod deploy;
mod runner;

pub use runner::{Runner, RunnerConfig};
