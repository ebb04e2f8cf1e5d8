//! Workspace operations behind the handlers: reaching a workspace's database with its own
//! owner role, running a batch while tracking which DDL actually committed, and queueing that
//! DDL on the blueprint.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tdb_catalog::servers::Server;
use tdb_catalog::workspaces::Workspace;
use tdb_core::aad::Aad;
use tdb_core::{ErrorCode, WorkspaceMode};
use tdb_engines::{AdminEndpoint, DatabaseAccess, Engine, EngineError, Limits, QueryOutput};
use tdb_sql::{Kind, Statement, TxOp};

use crate::AppState;
use crate::envelope::ApiError;

pub use tdb_core::settings::Settings;

/// The limits a REST session runs under.
/// The bounds of one request's statements: the settings' timeout and row cap, a fresh answer of
/// `max_answer_bytes` from the process's budget (shared by the request's sessions), and the
/// project's share of query sessions.
pub fn limits(state: &AppState, project_id: &str, settings: &Settings) -> Limits {
    Limits {
        timeout: Duration::from_millis(settings.query_timeout_ms),
        max_rows: settings.max_rows_per_query as usize,
        answer: state.answers.answer(state.config.max_answer_bytes),
        owner_sessions: state.project_sessions(project_id),
    }
}

/// Maps an engine failure to the answer a client should see.
pub fn engine_error(e: EngineError) -> ApiError {
    match e {
        EngineError::Query { sqlstate, .. } if sqlstate == "53100" => out_of_space(),
        EngineError::Query {
            message,
            sqlstate,
            detail,
            position,
        } => {
            let code = if sqlstate == "42501" {
                ErrorCode::PermissionDenied
            } else {
                ErrorCode::BadRequest
            };
            let mut err = ApiError::new(code, message).with("sqlstate", sqlstate);
            if let Some(detail) = detail {
                err = err.with("detail", detail);
            }
            if let Some(position) = position {
                err = err.with("position", position);
            }
            err
        }
        EngineError::Timeout(d) => ApiError::bad_request(format!(
            "query exceeded the timeout of {} ms",
            d.as_millis()
        ))
        .with("sqlstate", "57014"),
        EngineError::TooLarge(over) => too_large(over),
        EngineError::Unsupported(m) => ApiError::bad_request(m),
        EngineError::Busy(m) => ApiError::new(ErrorCode::ServiceUnavailable, m),
        EngineError::Connect(m) => {
            tracing::error!(error = %m, "database server unreachable");
            ApiError::new(
                ErrorCode::ServiceUnavailable,
                "database server unreachable, try again",
            )
        }
        EngineError::Internal(m) => ApiError::internal(m),
    }
}

/// Maps a failure of an operation tdb performs as the server's administrator (create or drop a
/// database): whatever the server said is tdb's problem, not the client's, so it is logged and
/// answered as a 500 with a request id (503 when the server is unreachable).
pub fn admin_error(e: EngineError) -> ApiError {
    match e {
        EngineError::Connect(_) => engine_error(e),
        EngineError::Query { sqlstate, .. } if sqlstate == "53100" => out_of_space(),
        other => ApiError::internal(other),
    }
}

/// A server that has no room left (SQLSTATE 53100): the operator's to fix, and said plainly.
pub fn out_of_space() -> ApiError {
    tracing::error!("a database server is out of disk space");
    ApiError::new(
        ErrorCode::ServiceUnavailable,
        "the database server is out of disk space; nothing was changed. Try again once the \
         operator has freed space",
    )
    .with("sqlstate", "53100")
}

/// An answer over its memory budget: 413 naming the request's limit, or 503 when all answers
/// being built together fill the process's budget.
pub fn too_large(over: tdb_engines::budget::OverBudget) -> ApiError {
    use tdb_engines::budget::OverBudget;
    match over {
        OverBudget::Answer { limit } => {
            ApiError::new(ErrorCode::PayloadTooLarge, over.to_string()).with("limit_bytes", limit)
        }
        OverBudget::Process { .. } => {
            ApiError::new(ErrorCode::ServiceUnavailable, over.to_string())
        }
    }
}

/// The engine implementing `kind`, or a 400 naming the engine when it is not available yet.
pub fn engine_for(state: &AppState, kind: tdb_core::Engine) -> Result<Arc<dyn Engine>, ApiError> {
    state.engines.get(kind).ok_or_else(|| {
        ApiError::field(
            "database",
            format!(
                "{} workspaces are not available yet (available: {})",
                display_engine(kind),
                state
                    .engines
                    .kinds()
                    .map(display_engine)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
    })
}

/// Starts tdb's managed shared server of `kind` if this is its first use (see
/// [`tdb_jobs::SharedServers`]); a server that cannot start is a 503 saying why.
pub async fn ensure_shared(state: &AppState, kind: tdb_core::Engine) -> Result<(), ApiError> {
    state
        .jobs
        .shared
        .ensure(kind)
        .await
        .map(drop)
        .map_err(|why| {
            ApiError::new(
                tdb_core::ErrorCode::ServiceUnavailable,
                format!(
                    "the managed {} server could not be started: {why}",
                    display_engine(kind)
                ),
            )
        })
}

pub fn display_engine(kind: tdb_core::Engine) -> &'static str {
    match kind {
        tdb_core::Engine::Postgresql => "PostgreSQL",
        tdb_core::Engine::Mysql => "MySQL",
        tdb_core::Engine::Redis => "Redis",
        tdb_core::Engine::Mongodb => "MongoDB",
    }
}

pub fn admin_endpoint(state: &AppState, server: &Server) -> Result<AdminEndpoint, ApiError> {
    let password = state
        .master_key
        .open_string(&server.admin_secret, Aad::ServerAdmin(&server.id))
        .map_err(ApiError::internal)?;
    Ok(AdminEndpoint {
        host: server.host.clone(),
        port: u16::try_from(server.port).map_err(ApiError::internal)?,
        user: server.admin_user.clone(),
        password,
    })
}

/// A workspace with what it takes to reach its database.
pub struct Resolved {
    pub ws: Workspace,
    pub engine: Arc<dyn Engine>,
    pub access: DatabaseAccess,
    /// The server's administrator, who ends statements that outlive their timeout.
    pub admin: AdminEndpoint,
    pub settings: Settings,
}

impl Resolved {
    pub fn tenant_mode(&self) -> bool {
        self.ws.mode == WorkspaceMode::Tenant
    }
}

/// Looks up the caller's workspace `name` (404 otherwise) and how to reach it as its owner.
pub async fn resolve(state: &AppState, project_id: &str, name: &str) -> Result<Resolved, ApiError> {
    let ws = state
        .catalog
        .find_workspace(project_id, name)
        .await
        .map_err(|e| match e {
            tdb_catalog::CatalogError::NotFound => {
                ApiError::not_found(format!("workspace '{name}' not found"))
            }
            other => ApiError::from_catalog(other, "workspace"),
        })?;
    let engine = engine_for(state, ws.engine)?;
    let server = state.catalog.find_server(&ws.server_id).await?;
    let password = state
        .master_key
        .open_string(&ws.owner_secret, Aad::WorkspaceOwner(&ws.id))
        .map_err(ApiError::internal)?;
    let access = DatabaseAccess {
        host: server.host.clone(),
        port: u16::try_from(server.port).map_err(ApiError::internal)?,
        database: ws.physical_db.clone(),
        user: ws.owner_role.clone(),
        password,
    };
    let settings = Settings::from_json(&ws.settings.0);
    let admin = admin_endpoint(state, &server)?;
    Ok(Resolved {
        ws,
        engine,
        access,
        admin,
        settings,
    })
}

/// The SQL dialect of an engine's workspaces and tenants.
pub fn dialect(kind: tdb_core::Engine) -> tdb_sql::Dialect {
    match kind {
        tdb_core::Engine::Mysql => tdb_sql::Dialect::Mysql,
        tdb_core::Engine::Redis => tdb_sql::Dialect::Redis,
        _ => tdb_sql::Dialect::Postgres,
    }
}

/// DDL seen in a batch, kept only once it is committed: inside `BEGIN` it waits for `COMMIT`,
/// `ROLLBACK` drops it, `ROLLBACK TO SAVEPOINT` drops what came after the savepoint. Where DDL
/// commits at once (MySQL), it is kept as it runs, with the transaction it ended.
#[derive(Default)]
pub struct DdlTracker {
    committed: Vec<(String, String)>,
    open: Option<Vec<(String, String)>>,
    savepoints: Vec<(String, usize)>,
    ddl_commits: bool,
}

impl DdlTracker {
    pub fn new(dialect: tdb_sql::Dialect) -> Self {
        Self {
            ddl_commits: dialect.ddl_commits(),
            ..Self::default()
        }
    }

    /// Notes a statement that succeeded.
    pub fn ran(&mut self, st: &Statement<'_>) {
        match &st.kind {
            Kind::Ddl if self.ddl_commits => {
                self.transaction(&TxOp::Commit);
                self.committed.push((st.text.to_string(), st.tag.clone()));
            }
            Kind::Ddl => {
                let item = (st.text.to_string(), st.tag.clone());
                match self.open.as_mut() {
                    Some(buffer) => buffer.push(item),
                    None => self.committed.push(item),
                }
            }
            Kind::Transaction(op) => self.transaction(op),
            _ => {}
        }
    }

    fn transaction(&mut self, op: &TxOp) {
        match op {
            TxOp::Begin => {
                self.open.get_or_insert_with(Vec::new);
            }
            TxOp::Commit => {
                if let Some(buffer) = self.open.take() {
                    self.committed.extend(buffer);
                }
                self.savepoints.clear();
            }
            TxOp::Rollback | TxOp::TwoPhase => {
                self.open = None;
                self.savepoints.clear();
            }
            TxOp::CommitAndChain => {
                if let Some(buffer) = self.open.replace(Vec::new()) {
                    self.committed.extend(buffer);
                }
                self.savepoints.clear();
            }
            TxOp::RollbackAndChain => {
                self.open = Some(Vec::new());
                self.savepoints.clear();
            }
            TxOp::Savepoint(name) => {
                let len = self.open.as_ref().map_or(0, Vec::len);
                self.savepoints.push((name.clone(), len));
            }
            TxOp::RollbackTo(name) => {
                if let Some(i) = self.savepoints.iter().rposition(|(n, _)| n == name) {
                    let len = self.savepoints[i].1;
                    self.savepoints.truncate(i + 1);
                    if let Some(buffer) = self.open.as_mut() {
                        buffer.truncate(len);
                    }
                }
            }
            TxOp::Release(name) => {
                if let Some(i) = self.savepoints.iter().rposition(|(n, _)| n == name) {
                    self.savepoints.truncate(i);
                }
            }
        }
    }

    /// The DDL that is committed; an unfinished transaction is rolled back when the session
    /// closes, so its DDL is dropped.
    pub fn finish(self) -> Vec<(String, String)> {
        self.committed
    }
}

/// What a batch did.
pub struct BatchOutcome {
    pub last: QueryOutput,
    pub executed: usize,
    pub elapsed: Duration,
    pub captured: Vec<i64>,
    /// The statement that failed (index, text) and why; the batch stopped there.
    pub failure: Option<(usize, String, EngineError)>,
}

/// Runs a batch statement by statement in one session, stopping at the first error, and (in
/// tenant mode) queues every DDL statement that committed, in order.
/// With `read_only` (read keys) the batch runs inside a read-only transaction that is rolled
/// back, so even a SELECT calling a function that writes cannot change anything.
pub async fn run_batch(
    state: &AppState,
    r: &Resolved,
    statements: &[Statement<'_>],
    read_only: bool,
    key_id: &str,
) -> Result<BatchOutcome, ApiError> {
    let started = Instant::now();
    let mut log = crate::querylog::ApiLog::workspace(&r.ws.project_id, &r.ws.name, key_id);
    let mut session = r
        .engine
        .open(
            &r.access,
            limits(state, &r.ws.project_id, &r.settings),
            Some(&r.admin),
        )
        .await
        .map_err(engine_error)?;
    if read_only {
        session
            .run("START TRANSACTION READ ONLY")
            .await
            .map_err(engine_error)?;
    }
    let mut tracker = DdlTracker::new(dialect(r.ws.engine));
    let mut last = QueryOutput::default();
    let mut executed = 0;
    let mut failure = None;
    for (i, st) in statements.iter().enumerate() {
        let (at, began) = (chrono::Utc::now(), Instant::now());
        let ran = session.run(st.text).await;
        log.ran(st.text, at, began.elapsed(), ran.as_ref());
        match ran {
            Ok(out) => {
                tracker.ran(st);
                last = out;
                executed += 1;
            }
            Err(e) => {
                failure = Some((i, st.text.to_string(), e));
                break;
            }
        }
    }
    session.close().await;
    log.flush(state);
    let elapsed = started.elapsed();
    let captured = queue(state, r, tracker.finish()).await?;
    Ok(BatchOutcome {
        last,
        executed,
        elapsed,
        captured,
        failure,
    })
}

/// Queues DDL on the workspace's blueprint (tenant mode); control mode records nothing.
pub async fn queue(
    state: &AppState,
    r: &Resolved,
    ddl: Vec<(String, String)>,
) -> Result<Vec<i64>, ApiError> {
    if !r.tenant_mode() || ddl.is_empty() {
        return Ok(Vec::new());
    }
    let blueprint = state
        .catalog
        .find_blueprint(&r.ws.project_id, &r.ws.name)
        .await?;
    let rows: Vec<tdb_catalog::blueprints::NewDdl<'_>> = ddl
        .iter()
        .map(|(statement, tag)| tdb_catalog::blueprints::NewDdl { statement, tag })
        .collect();
    Ok(state.catalog.queue_ddl(&blueprint.id, &rows).await?)
}

/// `8ms`, `1.2s`.
pub fn format_duration(d: Duration) -> String {
    if d.as_millis() < 1000 {
        format!("{}ms", d.as_millis())
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::DdlTracker;

    fn run(batch: &str) -> Vec<String> {
        let mut tracker = DdlTracker::default();
        for st in tdb_sql::classify_all(batch).expect("classify") {
            tracker.ran(&st);
        }
        tracker.finish().into_iter().map(|(s, _)| s).collect()
    }

    fn run_mysql(batch: &str) -> Vec<String> {
        let mut tracker = DdlTracker::new(tdb_sql::Dialect::Mysql);
        for st in tdb_sql::mysql::classify_all(batch).expect("classify") {
            tracker.ran(&st);
        }
        tracker.finish().into_iter().map(|(s, _)| s).collect()
    }

    #[test]
    fn mysql_ddl_is_kept_as_it_runs_since_it_commits_at_once() {
        // MySQL commits before and after DDL: a later ROLLBACK cannot take it back.
        assert_eq!(
            run_mysql("BEGIN; CREATE TABLE a (x int); ROLLBACK"),
            ["CREATE TABLE a (x int)"]
        );
        assert_eq!(
            run_mysql("START TRANSACTION; CREATE TABLE a (x int)"),
            ["CREATE TABLE a (x int)"]
        );
        assert_eq!(
            run_mysql("CREATE TABLE a (x int); SELECT 1; CREATE INDEX i ON a (x)"),
            ["CREATE TABLE a (x int)", "CREATE INDEX i ON a (x)"]
        );
    }

    #[test]
    fn only_committed_ddl_is_kept() {
        assert_eq!(
            run("CREATE TABLE a (x int); SELECT 1"),
            ["CREATE TABLE a (x int)"]
        );
        assert_eq!(
            run("BEGIN; CREATE TABLE a (x int); COMMIT"),
            ["CREATE TABLE a (x int)"]
        );
        assert!(run("BEGIN; CREATE TABLE a (x int); ROLLBACK").is_empty());
        assert!(
            run("BEGIN; CREATE TABLE a (x int)").is_empty(),
            "unfinished"
        );
        assert_eq!(
            run(
                "BEGIN; CREATE TABLE a (x int); SAVEPOINT s; CREATE TABLE b (x int); \
                 ROLLBACK TO SAVEPOINT s; CREATE TABLE c (x int); COMMIT"
            ),
            ["CREATE TABLE a (x int)", "CREATE TABLE c (x int)"]
        );
        assert_eq!(
            run("BEGIN; SAVEPOINT s; CREATE TABLE a (x int); RELEASE SAVEPOINT s; COMMIT"),
            ["CREATE TABLE a (x int)"]
        );
        assert_eq!(
            run(
                "BEGIN; CREATE TABLE a (x int); COMMIT AND CHAIN; CREATE TABLE b (x int); ROLLBACK"
            ),
            ["CREATE TABLE a (x int)"]
        );
        assert!(
            run("BEGIN; CREATE TABLE a (x int); ROLLBACK AND CHAIN; CREATE TABLE b (x int)")
                .is_empty()
        );
    }
}
