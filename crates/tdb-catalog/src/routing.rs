//! What the data plane reads and writes: proxy logins, the routes behind routing names, change
//! notifications (so proxies drop cached routes and enforce a tenant's new state), and the
//! query log.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use sqlx::FromRow;
use sqlx::postgres::PgListener;
use sqlx::types::Json;

use crate::servers::Server;
use crate::tenants::TenantDatabase;
use crate::workspaces::Workspace;
use crate::{Catalog, Result};

/// Route changes: the payload is `tenant:<id>` or `workspace:<project id>:<name>`.
pub const ROUTES_CHANNEL: &str = "tdb_routes";
/// Gate commands for tenants: `hold:<tenant id>:<milliseconds>` or `release:<tenant id>`.
pub const GATES_CHANNEL: &str = "tdb_gates";

/// A credential the proxy may accept, found by the user name a client sends.
#[derive(Debug, Clone, FromRow)]
pub struct Login {
    pub project_id: String,
    pub verifier: String,
    /// `project`, `workspace` or `tenant`.
    pub scope_type: String,
    pub scope_value: Option<String>,
    /// `admin`, `write` or `read`.
    pub role: String,
}

/// A tenant database behind `<blueprint>__<tenant>`, with what the proxy needs to reach it.
#[derive(Debug, Clone)]
pub struct TenantRoute {
    pub tenant_status: String,
    pub database: TenantDatabase,
    pub server: Server,
    /// The blueprint's workspace settings (`max_connections`, `query_timeout_ms`, …).
    pub settings: serde_json::Value,
}

/// A workspace behind `<workspace>_workspace`.
#[derive(Debug, Clone)]
pub struct WorkspaceRoute {
    pub workspace: Workspace,
    pub server: Server,
}

/// One statement the proxy relayed. Shared text (`Arc<str>`), so a session's records cost no
/// copies of its names on the hot path.
#[derive(Debug, Clone)]
pub struct QueryRecord {
    pub project_id: Arc<str>,
    pub tenant: Option<Arc<str>>,
    pub workspace: Option<Arc<str>>,
    pub database: Arc<str>,
    pub source: &'static str,
    pub username: Arc<str>,
    pub statement: Arc<str>,
    pub duration_us: i64,
    pub success: bool,
    pub sqlstate: Option<String>,
    pub rows: Option<i64>,
    pub started_at: DateTime<Utc>,
}

impl Catalog {
    /// The live credential named `username`: a minted one, or a project's proxy password when
    /// the user name is the project id.
    /// One statement whatever the name, so the time taken does not tell which kind exists.
    pub async fn proxy_login(&self, username: &str) -> Result<Option<Login>> {
        Ok(sqlx::query_as(
            "SELECT project_id, verifier, scope_type, scope_value, role FROM credentials
              WHERE username = $1 AND revoked_at IS NULL
             UNION ALL
             SELECT id, proxy_verifier, 'project', NULL::text, 'admin'
               FROM projects WHERE id = $1
             LIMIT 1",
        )
        .bind(username)
        .fetch_optional(self.pool())
        .await?)
    }

    /// Removes a tenant's query log (the tenant is purged; a new tenant may take its name).
    pub async fn delete_tenant_query_log(&self, project_id: &str, tenant: &str) -> Result<()> {
        sqlx::query("DELETE FROM query_log WHERE project_id = $1 AND tenant = $2")
            .bind(project_id)
            .bind(tenant)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// The database a project's tenant has from a blueprint, with its server and settings.
    pub async fn tenant_route(
        &self,
        project_id: &str,
        blueprint: &str,
        tenant: &str,
    ) -> Result<Option<TenantRoute>> {
        let row: Option<(String, String, Json<serde_json::Value>)> = sqlx::query_as(
            "SELECT t.status, d.id, w.settings
               FROM tenants t
               JOIN tenant_databases d ON d.tenant_id = t.id
               JOIN blueprints b ON b.id = d.blueprint_id
               JOIN workspaces w ON w.id = b.workspace_id
              WHERE t.project_id = $1 AND t.name = $3 AND b.name = $2",
        )
        .bind(project_id)
        .bind(blueprint)
        .bind(tenant)
        .fetch_optional(self.pool())
        .await?;
        let Some((tenant_status, database_id, settings)) = row else {
            return Ok(None);
        };
        let database = self.tenant_database(&database_id).await?;
        let server = self.find_server(&database.server_id).await?;
        Ok(Some(TenantRoute {
            tenant_status,
            database,
            server,
            settings: settings.0,
        }))
    }

    pub async fn workspace_route(
        &self,
        project_id: &str,
        name: &str,
    ) -> Result<Option<WorkspaceRoute>> {
        let workspace = match self.find_workspace(project_id, name).await {
            Ok(ws) => ws,
            Err(crate::CatalogError::NotFound) => return Ok(None),
            Err(e) => return Err(e),
        };
        let server = self.find_server(&workspace.server_id).await?;
        Ok(Some(WorkspaceRoute { workspace, server }))
    }

    /// A tenant's status; `None` when the tenant no longer exists.
    pub async fn tenant_status(&self, tenant_id: &str) -> Result<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT status FROM tenants WHERE id = $1")
                .bind(tenant_id)
                .fetch_optional(self.pool())
                .await?,
        )
    }

    /// Tells every proxy that a tenant's location changed (a move); status changes announce
    /// themselves in [`Catalog::move_tenant`].
    pub async fn notify_tenant_changed(&self, tenant_id: &str) -> Result<()> {
        self.notify(ROUTES_CHANNEL, &format!("tenant:{tenant_id}"))
            .await
    }

    /// Tells every proxy that a provisioned database of a project changed (it was deleted).
    pub async fn notify_provision_changed(&self, project_id: &str) -> Result<()> {
        self.notify(ROUTES_CHANNEL, &format!("provision:{project_id}:"))
            .await
    }

    /// Parks new queries of a tenant on every proxy until released or `millis` have passed.
    pub async fn hold_tenant(&self, tenant_id: &str, millis: u64) -> Result<()> {
        self.notify(GATES_CHANNEL, &format!("hold:{tenant_id}:{millis}"))
            .await
    }

    pub async fn release_tenant(&self, tenant_id: &str) -> Result<()> {
        self.notify(GATES_CHANNEL, &format!("release:{tenant_id}"))
            .await
    }

    async fn notify(&self, channel: &str, payload: &str) -> Result<()> {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(channel)
            .bind(payload)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// A connection listening on the data plane's channels.
    pub async fn listen(&self) -> Result<PgListener> {
        let mut listener = PgListener::connect_with(self.pool()).await?;
        listener.listen_all([ROUTES_CHANNEL, GATES_CHANNEL]).await?;
        Ok(listener)
    }

    /// Appends a batch of records in one statement.
    pub async fn append_query_log(&self, records: &[QueryRecord]) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let mut project = Vec::with_capacity(records.len());
        let mut tenant = Vec::with_capacity(records.len());
        let mut workspace = Vec::with_capacity(records.len());
        let mut database = Vec::with_capacity(records.len());
        let mut source = Vec::with_capacity(records.len());
        let mut username = Vec::with_capacity(records.len());
        let mut statement = Vec::with_capacity(records.len());
        let mut duration = Vec::with_capacity(records.len());
        let mut success = Vec::with_capacity(records.len());
        let mut sqlstate = Vec::with_capacity(records.len());
        let mut rows = Vec::with_capacity(records.len());
        let mut started = Vec::with_capacity(records.len());
        for r in records {
            project.push(&*r.project_id);
            tenant.push(r.tenant.as_deref());
            workspace.push(r.workspace.as_deref());
            database.push(&*r.database);
            source.push(r.source);
            username.push(&*r.username);
            statement.push(&*r.statement);
            duration.push(r.duration_us);
            success.push(r.success);
            sqlstate.push(r.sqlstate.as_deref());
            rows.push(r.rows);
            started.push(r.started_at);
        }
        // The log does not wait for its WAL to reach disk: a crash may lose the last batch,
        // and tenants' own commits never queue behind the log's.
        let mut tx = self.pool().begin().await?;
        sqlx::query("SET LOCAL synchronous_commit = off")
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO query_log (project_id, tenant, workspace, database, source, username,
                                    statement, duration_us, success, sqlstate, rows, started_at)
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                                  $6::text[], $7::text[], $8::int8[], $9::bool[], $10::text[],
                                  $11::int8[], $12::timestamptz[])",
        )
        .bind(&project)
        .bind(&tenant)
        .bind(&workspace)
        .bind(&database)
        .bind(&source)
        .bind(&username)
        .bind(&statement)
        .bind(&duration)
        .bind(&success)
        .bind(&sqlstate)
        .bind(&rows)
        .bind(&started)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
