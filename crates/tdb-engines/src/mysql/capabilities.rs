//! MySQL's capabilities beyond the core engine: SQL migrations with the version in tdb's record
//! of each database, schema export, and introspection from `information_schema`.

use async_trait::async_trait;
use sqlx::Connection;

use super::export::{self, Definer};
use super::{MysqlEngine, connect, introspect, meta, migrate};
use crate::capability::{Introspection, SqlEngine};
use crate::engine::{DatabaseAccess, Migration, MigrationPlan, Result};
use crate::schema::Schema;

#[async_trait]
impl SqlEngine for MysqlEngine {
    async fn migrate(&self, plan: &MigrationPlan<'_>) -> Result<Migration> {
        migrate::migrate(plan).await
    }

    async fn schema_version(&self, owner: &DatabaseAccess) -> Result<i32> {
        let mut conn = connect(owner).await?;
        let record = meta::read(&mut conn, &owner.database).await;
        let _ = conn.close().await;
        record.map(|r| r.version)
    }

    /// Without `DEFINER` clauses: whoever replays the DDL defines the views, routines and
    /// triggers.
    async fn export_schema(&self, source: &DatabaseAccess) -> Result<Vec<String>> {
        let mut conn = connect(source).await?;
        let ddl = export::schema_ddl(&mut conn, &source.database, Definer::Drop).await;
        let _ = conn.close().await;
        ddl
    }
}

#[async_trait]
impl Introspection for MysqlEngine {
    async fn introspect(&self, target: &DatabaseAccess) -> Result<Schema> {
        let mut conn = connect(target).await?;
        let schema = introspect::read(&mut conn, &target.database).await;
        let _ = conn.close().await;
        schema
    }
}
