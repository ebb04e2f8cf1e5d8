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

    /// Appends a batch of records with one binary `COPY`: the server inserts them in bulk
    /// (several rows per WAL record) without parsing any SQL or text.
    pub async fn append_query_log(&self, records: &[QueryRecord]) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let data = copy_rows(records);
        // The log does not wait for its WAL to reach disk: a crash may lose the last batch,
        // and tenants' own commits never queue behind the log's.
        let mut tx = self.pool().begin().await?;
        sqlx::query("SET LOCAL synchronous_commit = off")
            .execute(&mut *tx)
            .await?;
        let mut copy = tx
            .copy_in_raw(
                "COPY query_log (project_id, tenant, workspace, database, source, username,
                                 statement, duration_us, success, sqlstate, rows, started_at)
                 FROM STDIN (FORMAT binary)",
            )
            .await?;
        copy.send(data).await?;
        copy.finish().await?;
        tx.commit().await?;
        Ok(())
    }
}

/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01 UTC).
const PG_EPOCH_OFFSET_US: i64 = 946_684_800_000_000;

/// Records in `COPY … (FORMAT binary)` form: the signature and header, then per row the
/// field count and each field as a length and its bytes in the type's binary form (-1 for
/// NULL), then the trailer.
fn copy_rows(records: &[QueryRecord]) -> Vec<u8> {
    fn text(out: &mut Vec<u8>, value: Option<&str>) {
        // PostgreSQL text holds no NUL; one would fail the whole batch.
        let cleaned;
        let value = match value {
            Some(v) if v.contains('\0') => {
                cleaned = v.replace('\0', "");
                Some(cleaned.as_str())
            }
            other => other,
        };
        match value {
            Some(v) => {
                out.extend_from_slice(&(v.len() as i32).to_be_bytes());
                out.extend_from_slice(v.as_bytes());
            }
            None => out.extend_from_slice(&(-1i32).to_be_bytes()),
        }
    }
    fn int8(out: &mut Vec<u8>, value: Option<i64>) {
        match value {
            Some(v) => {
                out.extend_from_slice(&8i32.to_be_bytes());
                out.extend_from_slice(&v.to_be_bytes());
            }
            None => out.extend_from_slice(&(-1i32).to_be_bytes()),
        }
    }
    let size: usize = records
        .iter()
        .map(|r| 120 + r.statement.len() + r.database.len() + r.username.len())
        .sum();
    let mut out = Vec::with_capacity(size + 32);
    out.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
    out.extend_from_slice(&0i32.to_be_bytes());
    out.extend_from_slice(&0i32.to_be_bytes());
    for r in records {
        out.extend_from_slice(&12i16.to_be_bytes());
        text(&mut out, Some(&r.project_id));
        text(&mut out, r.tenant.as_deref());
        text(&mut out, r.workspace.as_deref());
        text(&mut out, Some(&r.database));
        text(&mut out, Some(r.source));
        text(&mut out, Some(&r.username));
        text(&mut out, Some(&r.statement));
        int8(&mut out, Some(r.duration_us));
        out.extend_from_slice(&1i32.to_be_bytes());
        out.push(u8::from(r.success));
        text(&mut out, r.sqlstate.as_deref());
        int8(&mut out, r.rows);
        int8(
            &mut out,
            Some(r.started_at.timestamp_micros() - PG_EPOCH_OFFSET_US),
        );
    }
    out.extend_from_slice(&(-1i16).to_be_bytes());
    out
}
