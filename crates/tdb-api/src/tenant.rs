//! Tenant operations behind the handlers: creating a tenant's databases from blueprints at
//! their current version (a durable job that the request runs itself), and the connection
//! details handed to applications.

use tdb_catalog::blueprints::Blueprint;
use tdb_catalog::servers::NewDedicatedServer;
use tdb_catalog::tenants::{NewTenant, NewTenantDatabase, TenantDatabase};
use tdb_core::aad::{Aad, TenantRole};
use tdb_core::{ErrorCode, KeyRole, ScopeType, ids, secrets};
use tdb_jobs::provision::{Provisioned, Undone};

use crate::AppState;
use crate::envelope::ApiError;
use crate::workspace::engine_error;

/// One database of a new tenant, resolved and validated.
pub struct Planned {
    pub blueprint: Blueprint,
    /// 1: a database on a shared server; 2: a server of its own.
    pub isolation_level: i32,
    pub region: String,
}

/// The names and sealed passwords of one database to make.
struct Named {
    id: String,
    physical_db: String,
    owner_role: String,
    app_role: String,
    read_role: String,
    server_id: String,
    owner_sealed: Vec<u8>,
    app_sealed: Vec<u8>,
    read_sealed: Vec<u8>,
    /// An L2 database's server, recorded with it.
    dedicated: Option<Dedicated>,
}

/// A dedicated server to record for an L2 database: its id, name and placeholder secret.
struct Dedicated {
    name: String,
    sealed: Vec<u8>,
}

/// How a creation the API answers for stands.
pub enum Created {
    /// Every database is made and at its blueprint's version.
    Ready(Vec<TenantDatabase>),
    /// A dedicated server is being made: the tenant is `provisioning` and its job carries on
    /// after the answer.
    Provisioning(Vec<TenantDatabase>),
}

/// Records the tenant with its `tenant_create` job and runs the job here, in a task of its own
/// under the job's lease: a client that goes away does not stop it, and if this process dies a
/// runner finishes or undoes it. On failure everything made is removed and the error says why.
/// A tenant with an L2 database is answered at once, `provisioning`: making a server takes a
/// while, and the job goes on after the answer.
pub async fn provision(
    state: &AppState,
    project_id: &str,
    name: &str,
    planned: &[Planned],
) -> Result<Created, ApiError> {
    let mut named = Vec::new();
    for p in planned {
        named.push(place(state, p, name).await?);
    }
    let tenant_id = ids::new_id("tnt");
    let rows = new_rows(state, &named, planned);
    let runner = state.jobs.clone();
    let tenant = NewTenant {
        id: &tenant_id,
        project_id,
        name,
    };
    let job = match state
        .catalog
        .create_tenant(
            &tenant,
            &rows,
            &runner.owner,
            tdb_jobs::LEASE_SECONDS,
            // Only this tdb runs the servers its provisioner makes.
            named
                .iter()
                .any(|m| m.dedicated.is_some())
                .then(|| runner.provisioner.kind()),
        )
        .await
    {
        Err(tdb_catalog::CatalogError::Conflict(_)) => {
            return Err(ApiError::conflict(format!(
                "tenant '{name}' already exists"
            )));
        }
        other => other?,
    };
    let task = tokio::spawn(run_creation(runner, job, tenant_id.clone()));
    if named.iter().any(|m| m.dedicated.is_some()) {
        return Ok(Created::Provisioning(
            state.catalog.tenant_databases(&tenant_id).await?,
        ));
    }
    match task.await {
        Ok(Some(Ok(Provisioned::Ready))) => Ok(Created::Ready(
            state.catalog.tenant_databases(&tenant_id).await?,
        )),
        Ok(Some(Ok(Provisioned::Undone(why)))) => Err(undone_error(why)),
        Ok(Some(Err(e))) => Err(ApiError::new(
            ErrorCode::ServiceUnavailable,
            format!(
                "creating tenant '{name}' failed, and removing what was made is not finished \
                 ({e}); tdb keeps at it, so the tenant disappears on its own"
            ),
        )),
        Ok(None) | Err(_) => Err(ApiError::new(
            ErrorCode::ServiceUnavailable,
            format!(
                "creating tenant '{name}' was interrupted; tdb finishes or undoes it on its own \
                 (see GET /tenants/{name})"
            ),
        )),
    }
}

/// The catalog rows of the planned databases, named.
fn new_rows<'a>(
    state: &'a AppState,
    named: &'a [Named],
    planned: &'a [Planned],
) -> Vec<NewTenantDatabase<'a>> {
    named
        .iter()
        .zip(planned)
        .map(|(m, p)| NewTenantDatabase {
            id: &m.id,
            blueprint_id: &p.blueprint.id,
            server_id: &m.server_id,
            isolation_level: p.isolation_level,
            region: &p.region,
            physical_db: &m.physical_db,
            owner_role: &m.owner_role,
            owner_secret: &m.owner_sealed,
            app_role: &m.app_role,
            app_secret: &m.app_sealed,
            read_role: &m.read_role,
            read_secret: &m.read_sealed,
            dedicated: m.dedicated.as_ref().map(|d| NewDedicatedServer {
                id: &m.server_id,
                name: &d.name,
                engine: p.blueprint.engine,
                region: &p.region,
                admin_user: "",
                admin_secret: &d.sealed,
                provisioner: state.jobs.provisioner.kind(),
            }),
        })
        .collect()
}

/// Runs a tenant's creation job under its lease and records its end; `None` when the lease was
/// lost (a runner finishes or undoes the job).
async fn run_creation(
    runner: tdb_jobs::Runner,
    job: i64,
    tenant_id: String,
) -> Option<Result<Provisioned, tdb_jobs::JobError>> {
    let outcome = runner
        .under_lease(job, tdb_jobs::provision::run(&runner, &tenant_id, false))
        .await;
    let recorded = match &outcome {
        Some(Ok(_)) => runner.catalog.finish_job(job, &runner.owner).await,
        // The undo could not finish: a runner takes the job over shortly.
        Some(Err(_)) => runner.catalog.retry_job(job, &runner.owner, 1).await,
        None => Ok(()),
    };
    if let Err(e) = recorded {
        tracing::warn!(job, error = %e, "recording a tenant creation's end failed");
    }
    if let Some(Ok(Provisioned::Undone(why))) = &outcome {
        tracing::warn!(tenant = %tenant_id, error = %why, "a tenant's creation was undone");
    }
    outcome
}

/// Refuses level 2 for an engine whose databases cannot have a server of their own: the
/// provisioners make PostgreSQL servers only (a 400 on `isolation_level`).
pub fn dedicated_available(engine: tdb_core::Engine) -> Result<(), ApiError> {
    if engine == tdb_core::Engine::Postgresql {
        return Ok(());
    }
    Err(ApiError::field(
        "isolation_level",
        format!(
            "isolation level 2 (a server of its own) is not available for {} tenants yet; \
             use level 1",
            crate::workspace::display_engine(engine)
        ),
    ))
}

/// Where one planned database goes: a shared server of its region with room (L1), or a new
/// dedicated server (L2).
async fn place(state: &AppState, p: &Planned, tenant: &str) -> Result<Named, ApiError> {
    if p.isolation_level == 2 {
        dedicated_available(p.blueprint.engine)?;
        let server_id = ids::server_id();
        let dedicated = Dedicated {
            name: format!("pg-l2-{}", &server_id[4..]),
            // Replaced by the server's own once its provisioner has made it.
            sealed: state
                .master_key
                .seal(b"", tdb_core::aad::Aad::ServerAdmin(&server_id)),
        };
        let mut named = name_database(state, server_id);
        named.dedicated = Some(dedicated);
        return Ok(named);
    }
    crate::workspace::ensure_shared(state, p.blueprint.engine).await?;
    let server = state
        .catalog
        .place_shared(p.blueprint.engine, &p.region)
        .await?
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::ServiceUnavailable,
                format!(
                    "no shared {} server in region '{}' takes new databases (each is draining, \
                     offline or full); an operator can add one under [[servers]]",
                    p.blueprint.engine, p.region
                ),
            )
        })?;
    let mut named = name_database(state, server.id);
    if p.blueprint.engine == tdb_core::Engine::Mysql {
        let routing = tdb_core::routing::RoutingName::tenant(&p.blueprint.name, tenant);
        if let Some(name) = same_name(state, &routing.to_string()).await? {
            named.physical_db = name;
        }
    }
    Ok(named)
}

/// A MySQL database takes the name clients use (`<blueprint>__<tenant>`,
/// `<workspace>_workspace`), so `DATABASE()` and names qualified with it mean what clients
/// expect and the proxy never rewrites SQL. `None` when that name is too long for MySQL (64
/// characters) or another project holds it: the database then keeps its opaque name, and the
/// proxy still routes the name clients use to it.
pub async fn same_name(state: &AppState, routing: &str) -> Result<Option<String>, ApiError> {
    const MYSQL_MAX_NAME: usize = 64;
    if routing.len() > MYSQL_MAX_NAME {
        return Ok(None);
    }
    Ok((!state.catalog.physical_db_taken(routing).await?).then(|| routing.to_string()))
}

/// Opaque names and fresh sealed passwords for one database on `server_id`.
fn name_database(state: &AppState, server_id: String) -> Named {
    let id = ids::new_id("tdb");
    let suffix = id[4..].to_string();
    let seal = |role| {
        state.master_key.seal(
            secrets::new_password("").as_bytes(),
            Aad::TenantRole(&id, role),
        )
    };
    Named {
        physical_db: format!("tdb_t_{suffix}"),
        owner_role: format!("tdb_to_{suffix}"),
        app_role: format!("tdb_ta_{suffix}"),
        read_role: format!("tdb_tr_{suffix}"),
        owner_sealed: seal(TenantRole::Owner),
        app_sealed: seal(TenantRole::App),
        read_sealed: seal(TenantRole::Read),
        server_id,
        id,
        dedicated: None,
    }
}

/// Why a creation was undone, as the client sees it.
fn undone_error(why: Undone) -> ApiError {
    match why {
        Undone::Create(e) => crate::workspace::admin_error(e),
        Undone::Migrate(e) => engine_error(e),
        Undone::Other(m) => ApiError::conflict(format!("the tenant was not created: {m}")),
    }
}

/// A tenant-scoped proxy login with row privileges (API.md deviation 2).
pub async fn mint_credential(
    state: &AppState,
    project_id: &str,
    tenant: &str,
) -> Result<(String, String), ApiError> {
    mint_role_credential(state, project_id, tenant, KeyRole::Write).await
}

/// A tenant-scoped proxy login with `role` (`write`: rows; `read`: SELECT only).
pub async fn mint_role_credential(
    state: &AppState,
    project_id: &str,
    tenant: &str,
    role: KeyRole,
) -> Result<(String, String), ApiError> {
    crate::mint::scoped_credential(state, project_id, ScopeType::Tenant, tenant, role, "t").await
}
