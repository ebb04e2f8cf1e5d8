//! Engines: everything that speaks to a database server as its administrator, and the supervisor
//! of the servers tdb manages itself (the embedded default). Knows nothing of the catalog. A core
//! trait every engine implements ([`Engine`]), capability traits for what only some have
//! ([`capability`]), and the registry the rest of tdb finds them in ([`Engines`]).

pub mod budget;
pub mod capability;
pub mod engine;
pub mod managed;
pub mod mysql;
pub mod postgres;
pub mod redis;
mod registry;
pub mod schema;

pub use capability::{
    DatabaseMoves, Introspection, KeySettings, KeyValueSettings, MoveEnds, RoleState, SchemaMove,
    SchemaTenants, SqlEngine, TableSums, UrlSessions,
};
pub use engine::{
    CatalogSweep, DatabaseAccess, DatabaseSpec, Dump, Engine, EngineError, Limits, Migration,
    MigrationPlan, QueryOutput, RestoreTarget, SchemaTenantSpec, Session, TenantSpec,
};
pub use managed::mariadb::{ManagedMariadb, ManagedMariadbOptions};
pub use managed::postgres::{ManagedPostgres, PgBinaries};
pub use managed::provisioner::{LocalProvisioner, Provisioner, ServerRequest};
pub use managed::redis::{ManagedRedis, ManagedRedisOptions};
pub use managed::{AdminEndpoint, ManagedError, RunAs};
pub use mysql::MysqlEngine;
pub use postgres::PostgresEngine;
pub use redis::RedisEngine;
pub use registry::Engines;
