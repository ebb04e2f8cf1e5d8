//! PostgreSQL's capabilities beyond the core engine: SQL migrations with the version inside each
//! database, schema-per-tenant databases, introspection from pg_catalog, and sessions on
//! databases reached by a connection URL.

use async_trait::async_trait;
use sqlx::Connection;

use super::{
    PostgresEngine, connect, connect_with, export, introspect, overview, schema_tenant, session,
    tenant, url_options,
};
use crate::AdminEndpoint;
use crate::capability::{Introspection, SchemaMove, SchemaTenants, SqlEngine, UrlSessions};
use crate::engine::{
    DatabaseAccess, Limits, Migration, MigrationPlan, Result, SchemaTenantSpec, Session,
};
use crate::schema::{DatabaseOverview, Schema};

#[async_trait]
impl SqlEngine for PostgresEngine {
    async fn migrate(&self, plan: &MigrationPlan<'_>) -> Result<Migration> {
        tenant::migrate(plan).await
    }

    async fn schema_version(&self, owner: &DatabaseAccess) -> Result<i32> {
        tenant::schema_version(owner).await
    }

    async fn export_schema(&self, source: &DatabaseAccess) -> Result<Vec<String>> {
        export::dump_schema(&self.pg_dump(), source).await
    }
}

#[async_trait]
impl SchemaTenants for PostgresEngine {
    async fn create_schema_tenant(
        &self,
        server: &AdminEndpoint,
        spec: &SchemaTenantSpec<'_>,
    ) -> Result<()> {
        schema_tenant::create(server, spec).await
    }

    async fn drop_schema_tenant(
        &self,
        server: &AdminEndpoint,
        database: &str,
        schema: &str,
        role: &str,
    ) -> Result<()> {
        schema_tenant::drop(server, database, schema, role).await
    }

    async fn move_schema_tenant(
        &self,
        server: &AdminEndpoint,
        step: &SchemaMove<'_>,
    ) -> Result<()> {
        let m = schema_tenant::SchemaMove {
            from: step.from,
            to: step.to,
            schema: step.schema,
            role: step.role,
        };
        if step.forget {
            schema_tenant::forget_moved(server, &m).await
        } else {
            let (pg_dump, psql) = (self.pg_dump(), self.tool("psql"));
            schema_tenant::move_out(server, (&pg_dump, &psql), &m).await
        }
    }
}

#[async_trait]
impl Introspection for PostgresEngine {
    async fn introspect(&self, target: &DatabaseAccess) -> Result<Schema> {
        let mut conn = connect(target).await?;
        let schema = introspect::read(&mut conn).await;
        let _ = conn.close().await;
        schema
    }
}

#[async_trait]
impl UrlSessions for PostgresEngine {
    async fn open_url(
        &self,
        url: &str,
        pin: Option<std::net::IpAddr>,
        limits: Limits,
    ) -> Result<Box<dyn Session>> {
        let place = self.session_place(&limits).await?;
        Ok(Box::new(
            session::PgSession::open_url(url, pin, limits, place).await?,
        ))
    }

    async fn overview_url(
        &self,
        url: &str,
        pin: Option<std::net::IpAddr>,
        excluded: &[String],
    ) -> Result<DatabaseOverview> {
        let mut conn = connect_with(&url_options(url, pin)?).await?;
        let overview = overview::read(&mut conn, excluded).await;
        let _ = conn.close().await;
        overview
    }
}
