//! Capabilities: what only some engines can do, each a trait of its own. An engine offers one by
//! answering `Some(self)` from the matching method of [`crate::Engine`] (`sql()`,
//! `schema_tenants()`, …); callers ask for the capability, never for an engine by name, so an
//! engine without it is refused in one place with a message that says what is missing.

use std::time::Duration;

use async_trait::async_trait;

use crate::AdminEndpoint;
use crate::engine::{
    DatabaseAccess, Limits, Migration, MigrationPlan, Result, SchemaTenantSpec, Session,
};
use crate::schema::{DatabaseOverview, Schema};

/// SQL schemas changed by DDL migrations, with the schema version recorded inside each database
/// (PostgreSQL; MySQL next, where DDL is not transactional).
#[async_trait]
pub trait SqlEngine: Send + Sync {
    /// One migration as `plan` says; see [`MigrationPlan`].
    async fn migrate(&self, plan: &MigrationPlan<'_>) -> Result<Migration>;

    /// The schema version recorded in a tenant database.
    async fn schema_version(&self, owner: &DatabaseAccess) -> Result<i32>;

    /// The DDL that recreates `source`'s schema, in dependency order.
    async fn export_schema(&self, source: &DatabaseAccess) -> Result<Vec<String>>;
}

/// Databases that are a schema and a login role in a shared database (PostgreSQL's provisioned
/// databases).
#[async_trait]
pub trait SchemaTenants: Send + Sync {
    /// Creates a schema-per-tenant database: its schema and login role, in the shared database
    /// (made on first use). On failure nothing of it is left.
    async fn create_schema_tenant(
        &self,
        server: &AdminEndpoint,
        spec: &SchemaTenantSpec<'_>,
    ) -> Result<()>;

    /// Drops a schema-per-tenant database: its sessions, schema, data and role.
    async fn drop_schema_tenant(
        &self,
        server: &AdminEndpoint,
        database: &str,
        schema: &str,
        role: &str,
    ) -> Result<()>;

    /// Moves a provisioned database made before each had a database of its own out of the shared
    /// one, into `to` (see `postgres::schema_tenant::move_out`); with `forget`, removes what is
    /// left in `from` afterwards.
    async fn move_schema_tenant(&self, server: &AdminEndpoint, step: &SchemaMove<'_>)
    -> Result<()>;
}

/// One step of moving a schema-per-tenant database into a database of its own.
pub struct SchemaMove<'a> {
    pub from: &'a str,
    pub to: &'a str,
    pub schema: &'a str,
    pub role: &'a str,
    /// Remove what is left in `from` (after the switch) instead of copying.
    pub forget: bool,
}

/// Tables, columns, indexes and constraints of a database (SQL engines; a document engine's
/// collections would answer here too).
#[async_trait]
pub trait Introspection: Send + Sync {
    async fn introspect(&self, target: &DatabaseAccess) -> Result<Schema>;
}

/// Databases reached by a connection URL rather than by a server tdb administers: registered
/// connections and provisioned databases used through their URL.
#[async_trait]
pub trait UrlSessions: Send + Sync {
    /// A session on the database a connection URL names, as the URL's user; `pin` is the
    /// address to connect to instead of resolving the URL's host again.
    async fn open_url(
        &self,
        url: &str,
        pin: Option<std::net::IpAddr>,
        limits: Limits,
    ) -> Result<Box<dyn Session>>;

    /// What the URL's user sees of its database, minus `excluded` schemas.
    async fn overview_url(
        &self,
        url: &str,
        pin: Option<std::net::IpAddr>,
        excluded: &[String],
    ) -> Result<DatabaseOverview>;
}

/// Rules a key-value engine keeps per namespace (Redis: a tenant's key prefix), applied by the
/// engine where the server can hold them and by the proxy otherwise (Redis: see
/// `crate::redis::settings`).
#[async_trait]
pub trait KeyValueSettings: Send + Sync {
    /// Applies `settings` to the namespace named `namespace` on `server` (for Redis, a record
    /// only the administrator reaches, which the proxy reads and enforces).
    async fn apply_settings(
        &self,
        server: &AdminEndpoint,
        namespace: &str,
        settings: &KeySettings,
    ) -> Result<()>;
}

/// The settings of a key-value namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeySettings {
    /// Given to keys written without an expiry of their own.
    pub default_ttl: Option<Duration>,
    /// Keys the namespace may hold; writes that create more are refused.
    pub max_keys: Option<u64>,
    /// Expiries by glob pattern of the key (as the client names it, without the prefix), for
    /// keys written without one of their own; the first pattern that matches wins over
    /// `default_ttl`.
    pub patterns: Vec<(String, Duration)>,
}

/// A role as tdb has it now.
pub struct RoleState<'a> {
    pub name: &'a str,
    pub password: &'a str,
    pub connection_limit: u32,
}

/// Both ends of a move of `database` (the same name on both servers) and the name of what the
/// move makes on them (publication, slot, subscription).
pub struct MoveEnds<'a> {
    pub source: &'a AdminEndpoint,
    pub target: &'a AdminEndpoint,
    pub database: &'a str,
    pub name: &'a str,
}

/// Each table's row count and an order-free checksum of its rows, by table name.
pub type TableSums = std::collections::BTreeMap<String, (i64, i64)>;

/// Moving a database to another server while it serves: replication from the source to the
/// target, and the cutover's parts (PostgreSQL: logical replication). Every method may run again
/// after a crash.
#[async_trait]
pub trait DatabaseMoves: Send + Sync {
    /// Why replication cannot carry the database (a setting of the source's, a table without a
    /// key); `None` when it can.
    async fn replication_blocker(
        &self,
        source: &AdminEndpoint,
        database: &str,
    ) -> Result<Option<String>>;

    /// Starts replicating every table (after copying what they hold); idempotent.
    async fn start_replication(&self, ends: &MoveEnds<'_>) -> Result<()>;

    /// Tables replicated, tables caught up with their initial copy, and an error the
    /// replication reported.
    async fn replication_state(&self, ends: &MoveEnds<'_>) -> Result<(i64, i64, Option<String>)>;

    /// Transactions open on the source database by `roles`.
    async fn open_transactions(
        &self,
        source: &AdminEndpoint,
        database: &str,
        roles: &[&str],
    ) -> Result<i64>;

    /// Stops `roles` from logging in on the source and ends their sessions in `database`.
    async fn fence(&self, source: &AdminEndpoint, database: &str, roles: &[&str]) -> Result<()>;

    /// Lets `roles` log in on the source again (a move that did not switch).
    async fn unfence(&self, source: &AdminEndpoint, roles: &[&str]) -> Result<()>;

    /// Keeps `database` apart (a recovered tenant's original, kept for an undo): `roles` may no
    /// longer connect to it, and their sessions on it end. The roles keep their logins (they
    /// serve the tenant's live database on the same server).
    async fn close_database(
        &self,
        server: &AdminEndpoint,
        database: &str,
        roles: &[&str],
    ) -> Result<()>;

    /// Lets `roles` connect to `database` again (an undone recovery's original).
    async fn reopen_database(
        &self,
        server: &AdminEndpoint,
        database: &str,
        roles: &[&str],
    ) -> Result<()>;

    /// Gives each role its login, password and connection limit as tdb has them now (a server
    /// restored to an earlier moment brings its roles back as they were then).
    async fn reset_roles(&self, server: &AdminEndpoint, roles: &[RoleState<'_>]) -> Result<()>;

    /// Commits a marker on the source and waits (up to `wait`) until the target has applied
    /// it, and so everything committed before it.
    async fn mark_and_wait(&self, ends: &MoveEnds<'_>, token: &str, wait: Duration) -> Result<()>;

    /// Sets every sequence on the target to its value on the source; returns how many.
    async fn copy_sequences(&self, ends: &MoveEnds<'_>) -> Result<u32>;

    /// Every table's row count and checksum.
    async fn table_sums(&self, server: &AdminEndpoint, database: &str) -> Result<TableSums>;

    /// Removes what replication made on both ends; idempotent.
    async fn stop_replication(&self, ends: &MoveEnds<'_>) -> Result<()>;
}
