//! What the data plane reads and writes: proxy logins, the routes behind routing names, change
//! notifications (so proxies drop cached routes and enforce a tenant's new state), and the
//! query log.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use sqlx::FromRow;
use sqlx::postgres::PgListener;
use sqlx::types::Json;
use tdb_core::{KeyRole, ScopeType, TenantStatus};

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
    /// See `tdb_core::secrets::mysql_verifier`; `None` for credentials minted before it.
    pub mysql_verifier: Option<String>,
    /// `project`, `workspace` or `tenant`.
    #[sqlx(try_from = "String")]
    pub scope_type: ScopeType,
    pub scope_value: Option<String>,
    /// `admin`, `write` or `read`.
    #[sqlx(try_from = "String")]
    pub role: KeyRole,
}

/// A tenant database behind `<blueprint>__<tenant>`, with what the proxy needs to reach it.
#[derive(Debug, Clone)]
pub struct TenantRoute {
    pub tenant_status: TenantStatus,
    pub database: TenantDatabase,
    pub server: Server,
    /// The blueprint's workspace settings (`max_connections`, `query_timeout_ms`, …).
    pub settings: serde_json::Value,
    /// The settings of the blueprint version the database is at (for Redis, its rules for
    /// keys, which reach tenants with deployments); `None` before its first deployment.
    pub version_settings: Option<serde_json::Value>,
}

/// A workspace behind `<workspace>_workspace`.
#[derive(Debug, Clone)]
pub struct WorkspaceRoute {
    pub workspace: Workspace,
    pub server: Server,
}

impl Catalog {
    /// The live credential named `username`: a minted one, or a project's proxy password when
    /// the user name is the project id.
    /// One statement whatever the name, so the time taken does not tell which kind exists.
    pub async fn proxy_login(&self, username: &str) -> Result<Option<Login>> {
        Ok(sqlx::query_as(
            "SELECT project_id, verifier, mysql_verifier, scope_type, scope_value, role
               FROM credentials
              WHERE username = $1 AND revoked_at IS NULL
             UNION ALL
             SELECT id, proxy_verifier, proxy_mysql_verifier, 'project', NULL::text, 'admin'
               FROM projects WHERE id = $1 AND status = 'active'
             LIMIT 1",
        )
        .bind(username)
        .fetch_optional(self.pool())
        .await?)
    }

    /// The blueprints a project's tenant has Redis databases from (the Redis proxy's login
    /// names the tenant alone when it has one).
    pub async fn tenant_redis_blueprints(
        &self,
        project_id: &str,
        tenant: &str,
    ) -> Result<Vec<String>> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT b.name
               FROM tenants t
               JOIN tenant_databases d ON d.tenant_id = t.id
               JOIN blueprints b ON b.id = d.blueprint_id
               JOIN workspaces w ON w.id = b.workspace_id
              WHERE t.project_id = $1 AND t.name = $2 AND w.engine = 'redis'
              ORDER BY b.name",
        )
        .bind(project_id)
        .bind(tenant)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().map(|(name,)| name).collect())
    }

    /// Removes a tenant's query log (the tenant is purged; a new tenant may take its name).
    pub async fn delete_tenant_query_log(&self, project_id: &str, tenant: &str) -> Result<()> {
        sqlx::query("DELETE FROM query_log_chunk WHERE project_id = $1 AND tenant = $2")
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
        type Row = (
            String,
            String,
            Json<serde_json::Value>,
            Option<Json<serde_json::Value>>,
        );
        let row: Option<Row> = sqlx::query_as(
            "SELECT t.status, d.id, w.settings, v.settings
               FROM tenants t
               JOIN tenant_databases d ON d.tenant_id = t.id
               JOIN blueprints b ON b.id = d.blueprint_id
               JOIN workspaces w ON w.id = b.workspace_id
               LEFT JOIN blueprint_versions v
                      ON v.blueprint_id = d.blueprint_id AND v.version = d.version
              WHERE t.project_id = $1 AND t.name = $3 AND b.name = $2",
        )
        .bind(project_id)
        .bind(blueprint)
        .bind(tenant)
        .fetch_optional(self.pool())
        .await?;
        let Some((tenant_status, database_id, settings, version_settings)) = row else {
            return Ok(None);
        };
        let database = self.tenant_database(&database_id).await?;
        let server = self.find_server(&database.server_id).await?;
        Ok(Some(TenantRoute {
            tenant_status: tenant_status.try_into()?,
            database,
            server,
            settings: settings.0,
            version_settings: version_settings.map(|v| v.0),
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
    pub async fn tenant_status(&self, tenant_id: &str) -> Result<Option<TenantStatus>> {
        let status: Option<String> = sqlx::query_scalar("SELECT status FROM tenants WHERE id = $1")
            .bind(tenant_id)
            .fetch_optional(self.pool())
            .await?;
        Ok(status.map(TenantStatus::try_from).transpose()?)
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

    /// Writes a batch with one binary `COPY`, one row per chunk, on a pooled connection whose
    /// commit does not wait for its WAL (see [`LogWriter`] for the proxy's steady stream).
    pub async fn append_log_batch(&self, batch: &LogBatch) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool().begin().await?;
        sqlx::query("SET LOCAL synchronous_commit = off")
            .execute(&mut *tx)
            .await?;
        copy_batch(&mut tx, batch).await?;
        tx.commit().await?;
        Ok(())
    }
}

/// The query log's writer: one catalog connection of its own, on which commits do not wait for
/// their WAL to reach disk (set once), so a batch costs two round trips, the `COPY` and its data.
/// A crash may lose the last batch; tenants' own commits never queue behind the log's.
pub struct LogWriter {
    catalog: Catalog,
    conn: Option<sqlx::PgConnection>,
}

impl LogWriter {
    pub fn new(catalog: Catalog) -> Self {
        Self {
            catalog,
            conn: None,
        }
    }

    /// Writes a batch with one binary `COPY`, one row per chunk. After a failure the next batch
    /// starts on a new connection.
    pub async fn write(&mut self, batch: &LogBatch) -> Result<()> {
        use sqlx::Connection;
        if batch.is_empty() {
            return Ok(());
        }
        let conn = match &mut self.conn {
            Some(conn) => conn,
            None => {
                let options = self.catalog.pool().connect_options();
                let mut conn = sqlx::PgConnection::connect_with(&options).await?;
                sqlx::query("SET synchronous_commit = off")
                    .execute(&mut conn)
                    .await?;
                self.conn.insert(conn)
            }
        };
        let written = copy_batch(conn, batch).await;
        if written.is_err()
            && let Some(conn) = self.conn.take()
        {
            let _ = conn.close().await;
        }
        written
    }
}

async fn copy_batch(conn: &mut sqlx::PgConnection, batch: &LogBatch) -> Result<()> {
    let mut copy = conn
        .copy_in_raw(
            "COPY query_log_chunk (project_id, tenant, workspace, database, source, username,
                                   first_at, last_at, records, statements, durations_us,
                                   successes, sqlstates, row_counts, started)
             FROM STDIN (FORMAT binary)",
        )
        .await?;
    copy.send(batch.encode()).await?;
    copy.finish().await?;
    Ok(())
}

/// Who ran a statement: what the records of one chunk share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryOrigin {
    pub project_id: Arc<str>,
    pub tenant: Option<Arc<str>>,
    pub workspace: Option<Arc<str>>,
    pub database: Arc<str>,
    pub source: &'static str,
    pub username: Arc<str>,
}

/// Hashed by the database alone, which equal origins share: a batch is looked up by its
/// origin for every statement a proxy relays, and origins that differ only in the other fields
/// are few.
impl std::hash::Hash for QueryOrigin {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.database.hash(state);
    }
}

/// One statement as the log records it.
#[derive(Debug, Clone, Copy)]
pub struct LoggedStatement<'a> {
    /// The text (the first 2 KiB, as the caller cut it).
    pub text: &'a str,
    pub duration_us: i64,
    pub success: bool,
    /// The SQLSTATE of a failure.
    pub sqlstate: Option<&'a str>,
    /// Rows returned or affected, when the server said.
    pub rows: Option<i64>,
    pub started_at: DateTime<Utc>,
}

/// Records waiting to be written, already in the form the server reads: per origin, one chunk
/// of parallel arrays whose elements are laid down as each record arrives, so adding a record
/// costs a hash lookup and a few appends, and writing a batch costs one `COPY`. A busy tenant's
/// batch becomes one heap tuple, one index entry and one compressed TOAST value on the server.
#[derive(Debug, Default)]
pub struct LogBatch {
    /// Hashed with foldhash: every statement a proxy relays is added here, and SipHash over
    /// the origin's names showed in the Redis proxy's profile.
    chunks: HashMap<Arc<QueryOrigin>, Vec<Columns>, foldhash::fast::RandomState>,
    records: usize,
}

/// One chunk's arrays, each as its elements in binary form (a length, then the bytes; -1 for
/// NULL), without the array header, which [`LogBatch::encode`] adds.
#[derive(Debug, Default)]
struct Columns {
    records: u32,
    first: i64,
    last: i64,
    statements: Vec<u8>,
    durations: Vec<u8>,
    successes: Vec<u8>,
    sqlstates: Vec<u8>,
    rows: Vec<u8>,
    started: Vec<u8>,
}

/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01 UTC).
const PG_EPOCH_OFFSET_US: i64 = 946_684_800_000_000;

/// The most records in one chunk (the table's CHECK; record ids keep 16 bits for the place).
const CHUNK_MAX: u32 = 65_535;

/// Type OIDs of the arrays' elements.
const TEXT_OID: u32 = 25;
const INT8_OID: u32 = 20;
const BOOL_OID: u32 = 16;
const TIMESTAMPTZ_OID: u32 = 1184;

impl LogBatch {
    /// Adds one record. Statement text loses any NUL, which PostgreSQL text cannot hold.
    pub fn push(&mut self, origin: &Arc<QueryOrigin>, statement: &LoggedStatement<'_>) {
        let chunks = match self.chunks.get_mut(origin) {
            Some(chunks) => chunks,
            None => self.chunks.entry(origin.clone()).or_default(),
        };
        if chunks.last().is_none_or(|c| c.records >= CHUNK_MAX) {
            chunks.push(Columns::default());
        }
        let Some(c) = chunks.last_mut() else {
            return;
        };
        let at = statement.started_at.timestamp_micros() - PG_EPOCH_OFFSET_US;
        if c.records == 0 {
            (c.first, c.last) = (at, at);
        } else {
            c.first = c.first.min(at);
            c.last = c.last.max(at);
        }
        c.records += 1;
        if statement.text.contains('\0') {
            text(&mut c.statements, Some(&statement.text.replace('\0', "")));
        } else {
            text(&mut c.statements, Some(statement.text));
        }
        int8(&mut c.durations, Some(statement.duration_us));
        c.successes.extend_from_slice(&1i32.to_be_bytes());
        c.successes.push(u8::from(statement.success));
        text(&mut c.sqlstates, statement.sqlstate);
        int8(&mut c.rows, statement.rows);
        int8(&mut c.started, Some(at));
        self.records += 1;
    }

    /// How many records the batch holds.
    pub fn len(&self) -> usize {
        self.records
    }

    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// The batch in `COPY … (FORMAT binary)` form: the signature and header, then per chunk
    /// the field count and each field as a length and its bytes in the type's binary form (-1
    /// for NULL), then the trailer.
    pub fn encode(&self) -> Vec<u8> {
        let size: usize = self
            .chunks
            .iter()
            .flat_map(|(o, cs)| cs.iter().map(move |c| (o, c)))
            .map(|(o, c)| {
                256 + o.project_id.len()
                    + o.database.len()
                    + o.username.len()
                    + c.statements.len()
                    + c.durations.len()
                    + c.successes.len()
                    + c.sqlstates.len()
                    + c.rows.len()
                    + c.started.len()
            })
            .sum();
        let mut out = Vec::with_capacity(size + 32);
        out.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
        out.extend_from_slice(&0i32.to_be_bytes());
        out.extend_from_slice(&0i32.to_be_bytes());
        for (o, chunks) in &self.chunks {
            for c in chunks {
                out.extend_from_slice(&15i16.to_be_bytes());
                text(&mut out, Some(&o.project_id));
                text(&mut out, o.tenant.as_deref());
                text(&mut out, o.workspace.as_deref());
                text(&mut out, Some(&o.database));
                text(&mut out, Some(o.source));
                text(&mut out, Some(&o.username));
                int8(&mut out, Some(c.first));
                int8(&mut out, Some(c.last));
                out.extend_from_slice(&4i32.to_be_bytes());
                out.extend_from_slice(&c.records.to_be_bytes());
                array(&mut out, TEXT_OID, c.records, &c.statements);
                array(&mut out, INT8_OID, c.records, &c.durations);
                array(&mut out, BOOL_OID, c.records, &c.successes);
                array(&mut out, TEXT_OID, c.records, &c.sqlstates);
                array(&mut out, INT8_OID, c.records, &c.rows);
                array(&mut out, TIMESTAMPTZ_OID, c.records, &c.started);
            }
        }
        out.extend_from_slice(&(-1i16).to_be_bytes());
        out
    }
}

/// A one-dimensional array field: its length, then the header (dimensions, a has-nulls flag
/// that may be 0 on input whatever the elements, the element type, the length and lower bound),
/// then the elements.
fn array(out: &mut Vec<u8>, oid: u32, len: u32, elements: &[u8]) {
    out.extend_from_slice(&((20 + elements.len()) as i32).to_be_bytes());
    out.extend_from_slice(&1i32.to_be_bytes());
    out.extend_from_slice(&0i32.to_be_bytes());
    out.extend_from_slice(&oid.to_be_bytes());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&1i32.to_be_bytes());
    out.extend_from_slice(elements);
}

fn text(out: &mut Vec<u8>, value: Option<&str>) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(database: &str, username: &str) -> Arc<QueryOrigin> {
        Arc::new(QueryOrigin {
            project_id: "p".into(),
            tenant: Some("acme".into()),
            workspace: None,
            database: database.into(),
            source: "proxy",
            username: username.into(),
        })
    }

    #[test]
    fn a_batch_keeps_one_chunk_per_origin_whichever_session_holds_it() {
        let statement = LoggedStatement {
            text: "GET (1 key)",
            duration_us: 5,
            success: true,
            sqlstate: None,
            rows: None,
            started_at: Utc::now(),
        };
        let mut batch = LogBatch::default();
        // Equal origins held by two sessions (two allocations) share a chunk; an origin that
        // differs only outside the database (the hash) has one of its own.
        for o in [
            origin("shop__acme", "app"),
            origin("shop__acme", "app"),
            origin("shop__acme", "owner"),
            origin("shop__globex", "app"),
        ] {
            batch.push(&o, &statement);
        }
        assert_eq!(batch.len(), 4);
        let mut chunks: Vec<(String, String, u32)> = batch
            .chunks
            .iter()
            .flat_map(|(o, cs)| {
                cs.iter()
                    .map(|c| (o.database.to_string(), o.username.to_string(), c.records))
            })
            .collect();
        chunks.sort();
        assert_eq!(
            chunks,
            [
                ("shop__acme".into(), "app".into(), 2),
                ("shop__acme".into(), "owner".into(), 1),
                ("shop__globex".into(), "app".into(), 1),
            ]
        );
    }
}
