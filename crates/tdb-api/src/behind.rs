//! Tenant databases behind their blueprint's current version: skipped by deployments while their
//! tenant was in the trash, or left where they were by a deployment whose statements failed on
//! them. A tenant leaving the trash is brought forward first; any database still behind is
//! shown, in the tenant's details and listing, with why and the call that brings it forward.

use std::collections::HashMap;
use std::time::Instant;

use tdb_catalog::deployments::{LastFailure, RanDeployment, RanResult};
use tdb_catalog::tenants::{Tenant, TenantDatabase};
use tdb_core::ids;
use tdb_jobs::forward::{Forwarded, bring_forward as forward};
use tdb_types::tenants::{Behind, CatchUpBody, CatchUpRequest, DatabaseStanding};

use crate::AppState;
use crate::envelope::ApiError;
use crate::workspace::engine_for;
use tdb_core::TargetStatus;

/// Where a project's tenant databases stand against their blueprints.
pub struct Standing {
    /// Current version of each blueprint, by id.
    current: HashMap<String, i32>,
    /// The newest failed deployment result of each database that is behind.
    failures: HashMap<String, LastFailure>,
}

impl Standing {
    pub async fn load(
        state: &AppState,
        project_id: &str,
        databases: &[TenantDatabase],
    ) -> Result<Self, ApiError> {
        let current: HashMap<String, i32> = state
            .catalog
            .list_blueprints(project_id)
            .await?
            .into_iter()
            .map(|b| (b.id, b.current_version))
            .collect();
        let behind: Vec<String> = databases
            .iter()
            .filter(|db| {
                current
                    .get(&db.blueprint_id)
                    .is_some_and(|&v| db.version < v)
            })
            .map(|db| db.id.clone())
            .collect();
        let failures = if behind.is_empty() {
            HashMap::new()
        } else {
            state
                .catalog
                .last_failures(&behind)
                .await?
                .into_iter()
                .map(|f| (f.tenant_database_id.clone(), f))
                .collect()
        };
        Ok(Self { current, failures })
    }

    /// The blueprint's current version.
    pub fn blueprint_version(&self, db: &TenantDatabase) -> i32 {
        self.current
            .get(&db.blueprint_id)
            .copied()
            .unwrap_or(db.version)
    }

    /// `null` for a database on its blueprint's current version; otherwise by how many versions
    /// it is behind, the error of the newest deployment that failed to bring it forward, and
    /// the call (and CLI command) that deploys the current version to it.
    pub fn behind(&self, db: &TenantDatabase) -> Option<Behind> {
        let current = self.blueprint_version(db);
        if db.version >= current {
            return None;
        }
        let error = self
            .failures
            .get(&db.id)
            .filter(|f| f.version > db.version)
            .and_then(|f| f.error.clone());
        Some(Behind {
            versions: current - db.version,
            error,
            cli: format!(
                "tdb deployments create {} --version {current} --tenants {}",
                db.blueprint, db.tenant_name
            ),
            request: CatchUpRequest {
                method: "POST".into(),
                path: "/deployments".into(),
                body: CatchUpBody {
                    blueprint_name: db.blueprint.clone(),
                    version: current,
                    tenant_ids: vec![db.tenant_name.clone()],
                },
            },
        })
    }

    /// A database's versions, as the restore answers them.
    pub fn entry(&self, db: &TenantDatabase) -> DatabaseStanding {
        DatabaseStanding {
            blueprint: db.blueprint.clone(),
            version: db.version,
            blueprint_version: self.blueprint_version(db),
            behind: self.behind(db),
        }
    }
}

/// Brings each database of a tenant in the trash that is behind its blueprint to the current
/// version, and records what was applied (or why not) as a deployment per database, so the
/// tenant's deployment history says it. A database whose migration fails stays as it was and is
/// shown behind.
pub async fn bring_forward(state: &AppState, tenant: &Tenant) -> Result<(), ApiError> {
    let databases = state.catalog.tenant_databases(&tenant.id).await?;
    let standing = Standing::load(state, &tenant.project_id, &databases).await?;
    for db in &databases {
        let target = standing.blueprint_version(db);
        if db.version >= target {
            continue;
        }
        let started = Instant::now();
        let outcome = forward_one(state, db, target).await?;
        if let Ok(Forwarded { from, .. }) = &outcome
            && *from >= target
        {
            // The catalog's copy was behind the database: nothing was applied.
            state.catalog.set_database_version(&db.id, *from).await?;
            continue;
        }
        let (status, error) = match &outcome {
            Ok(f) => {
                state.catalog.set_database_version(&db.id, f.to).await?;
                (TargetStatus::Completed, None)
            }
            Err(e) => (TargetStatus::Failed, Some(e.to_string())),
        };
        let ms = i32::try_from(started.elapsed().as_millis()).unwrap_or(i32::MAX);
        state
            .catalog
            .record_ran_deployment(&RanDeployment {
                id: &ids::new_id("dep"),
                project_id: &tenant.project_id,
                blueprint_id: &db.blueprint_id,
                version: target,
                results: &[RanResult {
                    tenant_database_id: &db.id,
                    tenant_name: &tenant.name,
                    status,
                    duration_ms: ms,
                    error: error.as_deref(),
                }],
            })
            .await?;
        if let Some(error) = error {
            tracing::warn!(tenant = %tenant.id, database = %db.id, %error,
                "a tenant left the trash behind its blueprint");
        }
    }
    Ok(())
}

/// Migrates one database as its owner; the outer error is the API's own (a sealed secret that
/// does not open, an unknown engine), the inner one the migration's.
async fn forward_one(
    state: &AppState,
    db: &TenantDatabase,
    target: i32,
) -> Result<Result<Forwarded, tdb_jobs::forward::ForwardError>, ApiError> {
    let engine = engine_for(state, db.engine)?;
    let server = state.catalog.find_server(&db.server_id).await?;
    let owner = tdb_jobs::access::owner_access(&state.master_key, &server, db)
        .map_err(ApiError::internal)?;
    let admin = crate::workspace::admin_endpoint(state, &server)?;
    let to = tdb_jobs::forward::ForwardTarget {
        owner: &owner,
        admin: &admin,
        blueprint_id: &db.blueprint_id,
        target,
        timeout: state.jobs.config.migration_timeout,
    };
    Ok(forward(&state.catalog, engine.as_ref(), &to).await)
}
