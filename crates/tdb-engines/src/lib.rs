//! Engines: everything that speaks to a database server as its administrator, and the supervisor
//! of the servers tdb manages itself (the embedded default). Knows nothing of the catalog.

pub mod budget;
pub mod engine;
pub mod managed;
pub mod postgres;
pub mod schema;

pub use engine::{
    CatalogSweep, DatabaseAccess, DatabaseSpec, Dump, Engine, EngineError, Limits, Migration,
    MigrationPlan, QueryOutput, RestoreTarget, SchemaTenantSpec, Session, TenantSpec,
};
pub use managed::postgres::{ManagedPostgres, PgBinaries};
pub use managed::{AdminEndpoint, ManagedError, RunAs};
pub use postgres::PostgresEngine;
