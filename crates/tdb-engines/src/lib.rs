//! Engines: everything that speaks to a database server as its administrator, and the supervisor
//! of the servers tdb manages itself (the embedded default). Knows nothing of the catalog.

pub mod managed;

pub use managed::postgres::{ManagedPostgres, PgBinaries};
pub use managed::{AdminEndpoint, ManagedError, RunAs};
