//! Routing names to databases. `<blueprint>__<tenant>` names a tenant's database,
//! `<workspace>_workspace` a workspace, `tenant_<12 hex>_<8 hex>` (its schema name) a
//! provisioned schema-per-tenant database. Routes come from the catalog and are cached; the cache
//! forgets a tenant or workspace when the control plane announces a change, and every entry
//! after a short time in any case.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tdb_catalog::Catalog;
use tdb_catalog::routing::Login;
use tdb_core::aad::{Aad, TenantRole};
use tdb_core::keyrules::KeyRules;
pub use tdb_core::routing::RoutingName;
use tdb_core::secrets::MasterKey;
use tdb_core::settings::Settings;
use tdb_core::{KeyRole, ScopeType, TenantStatus, WorkspaceMode};
use tokio::sync::Semaphore;

use crate::refusal::{Reason, Refusal};

/// How long a cached route is trusted without news from the control plane.
const ROUTE_TTL: Duration = Duration::from_secs(30);

/// A role on a server database, with its unsealed password.
#[derive(Clone)]
pub struct Access {
    pub user: String,
    pub password: String,
}

/// A resolved routing name.
pub struct Route {
    pub project_id: String,
    pub name: RoutingName,
    /// The tenant's id (tenants only), the key of its gate.
    pub tenant_id: Option<String>,
    /// Workspaces and provisioned databases are always ready.
    pub status: TenantStatus,
    /// The catalog's id of the server (for its administrator, who ends what a session cannot).
    pub server_id: String,
    pub host: String,
    pub port: u16,
    pub physical_db: String,
    /// Rows (tenants) or everything (workspaces).
    pub write: Access,
    /// SELECT only; tenants made before read roles existed have none.
    pub read: Option<Access>,
    pub settings: Settings,
    /// Redis: the rules for keys (a tenant's from the blueprint version it is at, a
    /// workspace's as they stand); empty for other engines.
    pub key_rules: Arc<KeyRules>,
    /// The workspace's blueprint, where DDL run through the workspace is queued (tenant mode).
    pub blueprint_id: Option<String>,
    /// Caps concurrent client sessions: the settings' `max_connections` under session pooling,
    /// `max_client_connections` under transaction pooling.
    pub slots: Arc<Semaphore>,
    /// Transaction pooling: caps the server connections its transactions hold at once at
    /// `max_connections`; a transaction waits its turn in order of arrival.
    pub server_slots: Arc<Semaphore>,
    /// Connections the server keeps for all tenants (through the proxies), when known.
    pub server_budget: Option<u32>,
}

impl Route {
    pub fn is_workspace(&self) -> bool {
        matches!(self.name, RoutingName::Workspace { .. })
    }

    /// "tenant \"acme\"" or "workspace \"design\"", for messages.
    pub fn describe(&self) -> String {
        match &self.name {
            RoutingName::Tenant { tenant, .. } => format!("tenant \"{tenant}\""),
            RoutingName::Workspace { name } => format!("workspace \"{name}\""),
            RoutingName::Provisioned { schema } => format!("database \"{schema}\""),
        }
    }
}

/// What a routing name resolved to in the catalog, before it becomes a [`Route`].
struct Target {
    server: tdb_catalog::servers::Server,
    /// The catalog's id of the tenant database, workspace or provisioned database: the key of
    /// its connection slots.
    id: String,
    tenant_id: Option<String>,
    status: TenantStatus,
    physical_db: String,
    write: Access,
    read: Option<Access>,
    settings: Settings,
    key_rules: KeyRules,
    blueprint_id: Option<String>,
}

fn unavailable(e: tdb_catalog::CatalogError) -> Refusal {
    tracing::error!(error = %e, "catalog lookup failed in the proxy");
    Refusal::new(
        Reason::Unavailable,
        "the database catalog is not available; try again",
    )
}

struct Cached {
    route: Arc<Route>,
    at: Instant,
}

pub struct Router {
    catalog: Catalog,
    key: MasterKey,
    cache: Mutex<HashMap<(String, String), Cached>>,
    /// Semaphores by tenant database or workspace id, so a refreshed route keeps the count.
    slots: Mutex<HashMap<String, (u32, Arc<Semaphore>)>>,
    /// Bumped by every invalidation, so a lookup that raced one is not cached.
    generation: AtomicU64,
    /// Servers' administrators read lately, by server id, until when (`None`: for good).
    admins: Mutex<HashMap<String, (Access, Option<Instant>)>>,
}

/// How long a server's administrator is kept after it was read from the catalog.
const ADMIN_TTL: Duration = Duration::from_secs(60);

impl Router {
    pub fn new(catalog: Catalog, key: MasterKey) -> Self {
        Self {
            catalog,
            key,
            cache: Mutex::new(HashMap::new()),
            slots: Mutex::new(HashMap::new()),
            generation: AtomicU64::new(0),
            admins: Mutex::new(HashMap::new()),
        }
    }

    /// Keeps `access` as the administrator of `server_id` for good (a server the catalog does
    /// not hold, as in tests).
    pub fn remember_admin(&self, server_id: &str, access: Access) {
        if let Ok(mut admins) = self.admins.lock() {
            admins.insert(server_id.to_string(), (access, None));
        }
    }

    /// The route for `database` as `login` may open it, or the error the client should see.
    pub async fn resolve(&self, login: &Login, database: &str) -> Result<Arc<Route>, Refusal> {
        let name =
            RoutingName::parse(database).ok_or_else(|| Refusal::no_such_database(database))?;
        authorize(login, &name, database)?;
        let key = (login.project_id.clone(), database.to_string());
        let cached = {
            let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            cache
                .get(&key)
                .filter(|c| c.at.elapsed() < ROUTE_TTL)
                .map(|c| c.route.clone())
        };
        let route = match cached {
            Some(route) => route,
            None => {
                let generation = self.generation.load(Ordering::Acquire);
                let route = Arc::new(self.load(&login.project_id, name, database).await?);
                let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
                if self.generation.load(Ordering::Acquire) == generation {
                    cache.insert(
                        key,
                        Cached {
                            route: route.clone(),
                            at: Instant::now(),
                        },
                    );
                }
                route
            }
        };
        if login.role == KeyRole::Read && route.read.is_none() {
            return Err(Refusal::new(
                Reason::NotAllowed,
                format!(
                    "read credentials cannot open {}: it has no read-only role",
                    route.describe()
                ),
            ));
        }
        Ok(route)
    }

    async fn load(
        &self,
        project_id: &str,
        name: RoutingName,
        database: &str,
    ) -> Result<Route, Refusal> {
        let target = match &name {
            RoutingName::Tenant { blueprint, tenant } => {
                self.tenant(project_id, blueprint, tenant).await?
            }
            RoutingName::Provisioned { schema } => self.provisioned(project_id, schema).await?,
            RoutingName::Workspace { name } => self.workspace(project_id, name).await?,
        };
        let target = target.ok_or_else(|| Refusal::no_such_database(database))?;
        let slots = self.slots_for(&target.id, target.settings.client_sessions());
        let server_slots = self.slots_for(
            &format!("server:{}", target.id),
            target.settings.max_connections,
        );
        let server = &target.server;
        Ok(Route {
            project_id: project_id.to_string(),
            name,
            tenant_id: target.tenant_id,
            status: target.status,
            server_id: server.id.clone(),
            host: server.host.clone(),
            port: u16::try_from(server.port).unwrap_or(5432),
            physical_db: target.physical_db,
            write: target.write,
            read: target.read,
            slots,
            server_slots,
            server_budget: server
                .tenant_connection_budget
                .and_then(|b| u32::try_from(b).ok()),
            settings: target.settings,
            key_rules: Arc::new(target.key_rules),
            blueprint_id: target.blueprint_id,
        })
    }

    async fn tenant(
        &self,
        project_id: &str,
        blueprint: &str,
        tenant: &str,
    ) -> Result<Option<Target>, Refusal> {
        let route = self
            .catalog
            .tenant_route(project_id, blueprint, tenant)
            .await;
        let Some(r) = route.map_err(unavailable)? else {
            return Ok(None);
        };
        let db = r.database;
        let write = Access {
            user: db.app_role.clone(),
            password: self.secret(&db.app_secret, Aad::TenantRole(&db.id, TenantRole::App))?,
        };
        let read = match (&db.read_role, &db.read_secret) {
            (Some(user), Some(sealed)) => Some(Access {
                user: user.clone(),
                password: self.secret(sealed, Aad::TenantRole(&db.id, TenantRole::Read))?,
            }),
            _ => None,
        };
        Ok(Some(Target {
            server: r.server,
            id: db.id,
            tenant_id: Some(db.tenant_id),
            status: r.tenant_status,
            physical_db: db.physical_db,
            write,
            read,
            settings: Settings::from_json(&r.settings),
            key_rules: r
                .version_settings
                .as_ref()
                .map(KeyRules::from_json)
                .unwrap_or_default(),
            blueprint_id: None,
        }))
    }

    async fn provisioned(&self, project_id: &str, schema: &str) -> Result<Option<Target>, Refusal> {
        let route = self.catalog.provision_route(project_id, schema).await;
        let Some(r) = route.map_err(unavailable)? else {
            return Ok(None);
        };
        let p = r.provisioned;
        let write = Access {
            user: p.role_name.clone(),
            password: self.secret(&p.role_secret, Aad::Provisioned(&p.id))?,
        };
        Ok(Some(Target {
            server: r.server,
            id: p.id,
            tenant_id: None,
            status: TenantStatus::Ready,
            physical_db: p.database,
            write,
            read: None,
            settings: Settings::default(),
            key_rules: KeyRules::default(),
            blueprint_id: None,
        }))
    }

    async fn workspace(&self, project_id: &str, name: &str) -> Result<Option<Target>, Refusal> {
        let route = self.catalog.workspace_route(project_id, name).await;
        let Some(r) = route.map_err(unavailable)? else {
            return Ok(None);
        };
        let ws = r.workspace;
        // Tenant mode: DDL run through the workspace is queued on its blueprint.
        let blueprint_id = if ws.mode == WorkspaceMode::Tenant {
            let bp = self.catalog.find_blueprint(project_id, name).await;
            Some(bp.map_err(unavailable)?.id)
        } else {
            None
        };
        let write = Access {
            user: ws.owner_role.clone(),
            password: self.secret(&ws.owner_secret, Aad::WorkspaceOwner(&ws.id))?,
        };
        Ok(Some(Target {
            server: r.server,
            settings: Settings::from_json(&ws.settings.0),
            key_rules: KeyRules::from_json(&ws.settings.0),
            id: ws.id,
            tenant_id: None,
            status: TenantStatus::Ready,
            physical_db: ws.physical_db,
            write,
            read: None,
            blueprint_id,
        }))
    }

    fn secret(&self, sealed: &[u8], aad: Aad<'_>) -> Result<String, Refusal> {
        self.key.open_string(sealed, aad).map_err(|e| {
            tracing::error!(error = %e, "cannot unseal a role secret");
            Refusal::new(Reason::Internal, "internal error reaching the database")
        })
    }

    fn slots_for(&self, id: &str, max: u32) -> Arc<Semaphore> {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        match slots.get(id) {
            Some((size, sem)) if *size == max => sem.clone(),
            _ => {
                // A changed limit takes a fresh semaphore; sessions holding the old one finish.
                let sem = Arc::new(Semaphore::new(max as usize));
                slots.insert(id.to_string(), (max, sem.clone()));
                sem
            }
        }
    }

    /// Forgets the routes of a tenant.
    pub fn forget_tenant(&self, tenant_id: &str) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.retain(|_, c| c.route.tenant_id.as_deref() != Some(tenant_id));
    }

    /// Forgets a project's routes when one of its workspaces changed: its settings also govern
    /// the tenants of its blueprint.
    pub fn forget_workspace(&self, project_id: &str) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.retain(|(project, _), _| project != project_id);
    }

    /// Forgets everything (the change feed was interrupted).
    pub fn forget_all(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.cache.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// A tenant's status straight from the catalog: `Ok(None)` when the tenant is gone, an
    /// error when the catalog cannot say (which must not be taken for "gone").
    pub async fn tenant_status(&self, tenant_id: &str) -> Result<Option<TenantStatus>, ()> {
        let lookup = self.catalog.tenant_status(tenant_id);
        match tokio::time::timeout(Duration::from_secs(5), lookup).await {
            Ok(Ok(status)) => Ok(status),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, tenant_id, "cannot read a tenant's status");
                Err(())
            }
            Err(_) => {
                tracing::warn!(tenant_id, "reading a tenant's status timed out");
                Err(())
            }
        }
    }

    /// The administrator of a route's server: for ending a server session that a cancel did
    /// not stop, and for the Redis proxy's keyspace walks. Kept for a minute after it is read,
    /// so walks do not ask the catalog each time. `None` when the catalog cannot say or the
    /// secret does not open.
    pub async fn admin(&self, server_id: &str) -> Option<Access> {
        if let Ok(admins) = self.admins.lock()
            && let Some((access, until)) = admins.get(server_id)
            && until.is_none_or(|until| Instant::now() < until)
        {
            return Some(access.clone());
        }
        let lookup = self.catalog.find_server(server_id);
        let server = match tokio::time::timeout(Duration::from_secs(5), lookup).await {
            Ok(Ok(server)) => server,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, server_id, "cannot read a server's administrator");
                return None;
            }
            Err(_) => {
                tracing::warn!(server_id, "reading a server's administrator timed out");
                return None;
            }
        };
        match self
            .key
            .open_string(&server.admin_secret, Aad::ServerAdmin(&server.id))
        {
            Ok(password) => {
                let access = Access {
                    user: server.admin_user,
                    password,
                };
                if let Ok(mut admins) = self.admins.lock() {
                    let until = Instant::now() + ADMIN_TTL;
                    admins.insert(server_id.to_string(), (access.clone(), Some(until)));
                }
                Some(access)
            }
            Err(e) => {
                tracing::error!(error = %e, server_id, "cannot unseal a server's admin secret");
                None
            }
        }
    }

    /// The current status of a route's tenant, for the message that ends its sessions.
    pub async fn current_status(&self, route: &Route) -> Option<TenantStatus> {
        self.tenant_status(route.tenant_id.as_deref()?)
            .await
            .ok()
            .flatten()
    }
}

/// Whether the credential's scope covers the routing name. Answered before any lookup, so the
/// reply does not depend on what exists.
fn authorize(login: &Login, name: &RoutingName, database: &str) -> Result<(), Refusal> {
    let scope = login.scope_value.as_deref().unwrap_or("");
    let allowed = match (login.scope_type, name) {
        (ScopeType::Project, _) => true,
        (ScopeType::Tenant, RoutingName::Tenant { tenant, .. }) => tenant == scope,
        (ScopeType::Workspace, RoutingName::Workspace { name }) => name == scope,
        (ScopeType::Provision, RoutingName::Provisioned { schema }) => schema == scope,
        _ => false,
    };
    if !allowed {
        let what = match login.scope_type {
            ScopeType::Tenant => format!("tenant \"{scope}\""),
            ScopeType::Workspace => format!("workspace \"{scope}\""),
            ScopeType::Provision => format!("database \"{scope}\""),
            ScopeType::Project => "the project".to_string(),
        };
        return Err(Refusal::new(
            Reason::NotAllowed,
            format!(
                "permission denied for database \"{database}\": this credential opens only {what}"
            ),
        ));
    }
    if login.role == KeyRole::Read && matches!(name, RoutingName::Workspace { .. }) {
        return Err(Refusal::new(
            Reason::NotAllowed,
            format!(
                "permission denied for database \"{database}\": read credentials open tenant databases only"
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn login(scope_type: &str, scope_value: Option<&str>, role: &str) -> Login {
        Login {
            project_id: "p".into(),
            verifier: String::new(),
            mysql_verifier: None,
            scope_type: scope_type.parse().expect("scope type"),
            scope_value: scope_value.map(str::to_string),
            role: role.parse().expect("role"),
        }
    }

    #[test]
    fn scopes_limit_what_opens() {
        let t = |db: &str| RoutingName::parse(db).expect("name");
        let acme = login("tenant", Some("acme"), "write");
        assert!(authorize(&acme, &t("app__acme"), "app__acme").is_ok());
        assert!(authorize(&acme, &t("other__acme"), "other__acme").is_ok());
        let denied = authorize(&acme, &t("app__globex"), "app__globex").expect_err("denied");
        assert_eq!(denied.reason, Reason::NotAllowed);
        assert!(authorize(&acme, &t("app_workspace"), "app_workspace").is_err());
        let ws = login("workspace", Some("app"), "admin");
        assert!(authorize(&ws, &t("app_workspace"), "app_workspace").is_ok());
        assert!(authorize(&ws, &t("other_workspace"), "other_workspace").is_err());
        assert!(authorize(&ws, &t("app__acme"), "app__acme").is_err());
        let project = login("project", None, "admin");
        assert!(authorize(&project, &t("app__acme"), "app__acme").is_ok());
        let read = login("tenant", Some("acme"), "read");
        assert!(authorize(&read, &t("app__acme"), "app__acme").is_ok());
        let schema = "tenant_a1b2c3d4e5f6_7890abcd";
        let own = login("provision", Some(schema), "write");
        assert!(authorize(&own, &t(schema), schema).is_ok());
        let other = "tenant_000000000000_00000000";
        assert!(authorize(&own, &t(other), other).is_err());
        assert!(authorize(&own, &t("app__acme"), "app__acme").is_err());
        assert!(authorize(&acme, &t(schema), schema).is_err());
        assert!(authorize(&project, &t(schema), schema).is_ok());
        let read_project = login("project", None, "read");
        assert!(authorize(&read_project, &t("app_workspace"), "app_workspace").is_err());
    }
}
