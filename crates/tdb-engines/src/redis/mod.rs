//! The Redis engine: one shared `redis-server`, on which a tenant's or workspace's "database"
//! is a key namespace, the keys (and pub/sub channels) under the prefix `<name>:`, where
//! `<name>` is the catalog's opaque physical name (`[a-z0-9_]{1,40}`, so no prefix is ever a
//! prefix of another: a name holds no `:`). Its logins are ACL users confined to that prefix
//! and to data commands ([`acl`]). Redis ACLs alone do not keep tenants apart (`KEYS`, `SCAN`,
//! `FLUSHDB`, `SELECT` ignore key patterns), so what tenants send is rewritten and checked
//! first, by the proxy and by this engine's sessions ([`rewrite`]); the ACL users are the
//! second wall.
//!
//! Conventions shared with the rest of tdb: a host that starts with `/` is the server's Unix
//! socket. A refused command is `EngineError::Query` with the server's message and its error
//! code (`NOPERM`, `ERR`) as `detail`; `sqlstate` is empty.
//!
//! Files: [`conn`] (tdb's client), [`namespace`] (create, drop, restore targets), [`acl`],
//! [`dump`], [`session`] with [`rewrite`] and [`render`], [`settings`] (the proxy's key rules),
//! [`server`] (capacity, size, the `default` user).

pub mod acl;
pub mod conn;
pub mod dump;
pub mod namespace;
mod render;
pub mod rewrite;
pub mod server;
mod session;
pub mod settings;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tdb_resp::command::CommandTable;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::AdminEndpoint;
use crate::capability::{KeySettings, KeyValueSettings};
use crate::engine::{
    CatalogSweep, DatabaseAccess, DatabaseSpec, Dump, Engine, EngineError, Limits, RestoreTarget,
    Result, Session, TenantSpec,
};

/// Sessions for users' commands (API queries) open at once.
pub const MAX_SESSIONS: usize = 32;
/// Of those, the sessions one owner (a project) may have: a quarter.
pub const MAX_OWNER_SESSIONS: usize = MAX_SESSIONS / 4;
/// How long a new session waits for one of them.
const SESSION_WAIT: Duration = Duration::from_secs(10);
/// The longest namespace name.
const MAX_NAME: usize = 40;
/// Names no namespace may have: `tdb:` holds tdb's own records ([`settings`]).
const RESERVED: [&str; 1] = ["tdb"];

/// The key prefix of namespace `name`: `name:`. Its channels take the same prefix.
pub fn key_prefix(name: &str) -> String {
    format!("{name}:")
}

/// Refuses a namespace name that is not `[a-z0-9_]{1,40}`, or that is tdb's own.
pub fn check_name(name: &str) -> Result<()> {
    let valid = (1..=MAX_NAME).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !valid || RESERVED.contains(&name) {
        return Err(EngineError::Query {
            message: format!("ERR invalid namespace name {name:?}: [a-z0-9_]{{1,40}}, not 'tdb'"),
            sqlstate: String::new(),
            detail: Some("ERR".into()),
            position: None,
        });
    }
    Ok(())
}

/// Refuses an ACL user name that is not `[A-Za-z0-9_.-]{1,64}`, or that is the server's
/// `default` or tdb's administrator.
pub fn check_user(user: &str) -> Result<()> {
    let valid = (1..=64).contains(&user.len())
        && user
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if !valid || user == "default" || user == crate::managed::redis::ADMIN_USER {
        return Err(EngineError::Query {
            message: format!("ERR invalid user name {user:?}"),
            sqlstate: String::new(),
            detail: Some("ERR".into()),
            position: None,
        });
    }
    Ok(())
}

pub struct RedisEngine {
    /// Sessions open at once for users' commands.
    sessions: Arc<Semaphore>,
    tables: Tables,
}

impl Default for RedisEngine {
    fn default() -> Self {
        Self::new()
    }
}

/// A session's places: among its owner's sessions and among all.
pub struct SessionPlace {
    _owner: OwnedSemaphorePermit,
    _all: OwnedSemaphorePermit,
}

/// Each server's command table, from its own `COMMAND` reply, loaded by the first session on
/// it and kept (by host and port).
#[derive(Default)]
pub struct Tables(Mutex<HashMap<(String, u16), Arc<CommandTable>>>);

impl Tables {
    async fn get(
        &self,
        conn: &mut conn::RedisConn,
        at: &DatabaseAccess,
    ) -> Result<Arc<CommandTable>> {
        let key = (at.host.clone(), at.port);
        if let Some(table) = self.lock().get(&key) {
            return Ok(table.clone());
        }
        let reply = conn.call(&["COMMAND"]).await?;
        let table = Arc::new(
            CommandTable::from_reply(&reply).map_err(|e| EngineError::Internal(e.to_string()))?,
        );
        self.lock().insert(key, table.clone());
        Ok(table)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, u16), Arc<CommandTable>>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl RedisEngine {
    pub fn new() -> Self {
        Self {
            sessions: Arc::new(Semaphore::new(MAX_SESSIONS)),
            tables: Tables::default(),
        }
    }

    /// A place for one more session of the owner whose places `limits` carries, then among all
    /// sessions, or `Busy` after waiting [`SESSION_WAIT`].
    async fn session_place(&self, limits: &Limits) -> Result<SessionPlace> {
        let wait = |sem: Arc<Semaphore>| tokio::time::timeout(SESSION_WAIT, sem.acquire_owned());
        let Ok(Ok(owner)) = wait(limits.owner_sessions.clone()).await else {
            return Err(EngineError::Busy(format!(
                "this project already runs {MAX_OWNER_SESSIONS} query sessions at once; try \
                 again shortly"
            )));
        };
        let Ok(Ok(all)) = wait(self.sessions.clone()).await else {
            return Err(EngineError::Busy(format!(
                "tdb already runs {MAX_SESSIONS} query sessions; try again shortly"
            )));
        };
        Ok(SessionPlace {
            _owner: owner,
            _all: all,
        })
    }
}

#[async_trait]
impl Engine for RedisEngine {
    fn kind(&self) -> tdb_core::Engine {
        tdb_core::Engine::Redis
    }

    /// `maxclients` less [`server::ADMIN_RESERVE`].
    async fn connection_capacity(&self, server: &AdminEndpoint) -> Result<u32> {
        server::connection_capacity(server).await
    }

    /// `used_memory`: the data lives in memory.
    async fn size_bytes(&self, server: &AdminEndpoint) -> Result<u64> {
        server::size_bytes(server).await
    }

    /// Turns the `default` user off (every unauthenticated client is it). The administrator
    /// must be another user. Redis has no databases to close: `extra` needs nothing.
    async fn secure_server(&self, server: &AdminEndpoint, _extra: &[&str]) -> Result<()> {
        server::check_admin(server)?;
        let mut admin = conn::connect(server).await?;
        server::close_default_user(&mut admin).await?;
        server::retire_rules(&mut admin).await
    }

    /// Nothing is shared between namespaces that the ACL users could read (they run no server
    /// command), so there is nothing to sweep.
    async fn hide_shared_catalogs(&self, _server: &AdminEndpoint) -> Result<CatalogSweep> {
        Ok(CatalogSweep::default())
    }

    /// A workspace's namespace and its owner. Its `connection_limit` cannot be kept by Redis,
    /// which has no per-user connection limit: the proxy keeps it (`max_connections`).
    async fn create_database(&self, server: &AdminEndpoint, spec: &DatabaseSpec<'_>) -> Result<()> {
        namespace::create_workspace(server, spec).await
    }

    /// Whether some ACL user's key pattern is the namespace's prefix (see
    /// [`namespace::exists_on`]).
    async fn database_exists(&self, server: &AdminEndpoint, name: &str) -> Result<bool> {
        namespace::exists_on(server, name).await
    }

    /// A tenant's namespace and its owner, application and read users. Its `connection_limit`
    /// cannot be kept by Redis, which has no per-user connection limit: the proxy keeps it.
    async fn create_tenant_database(
        &self,
        server: &AdminEndpoint,
        spec: &TenantSpec<'_>,
    ) -> Result<()> {
        namespace::create_tenant(server, spec).await
    }

    async fn drop_database(
        &self,
        server: &AdminEndpoint,
        name: &str,
        roles: &[&str],
    ) -> Result<()> {
        namespace::drop_namespace(server, name, roles).await
    }

    /// See [`dump`]: run as the namespace's owner (its ACL allows `DUMP` and `PEXPIRETIME` on
    /// its keys; any of its users would do).
    async fn dump(&self, source: &DatabaseAccess) -> Result<Dump> {
        dump::dump(source).await
    }

    async fn create_restore_target(
        &self,
        server: &AdminEndpoint,
        target: &RestoreTarget<'_>,
    ) -> Result<()> {
        namespace::create_restore_target(server, target).await
    }

    /// Not atomic, unlike PostgreSQL's: see [`dump::restore`] for what a failure leaves.
    async fn restore(
        &self,
        target: &DatabaseAccess,
        input: Box<dyn tokio::io::AsyncRead + Send + Unpin>,
    ) -> Result<()> {
        dump::restore(target, input).await
    }

    async fn open(
        &self,
        target: &DatabaseAccess,
        limits: Limits,
        admin: Option<&AdminEndpoint>,
    ) -> Result<Box<dyn Session>> {
        let place = self.session_place(&limits).await?;
        Ok(Box::new(
            session::RedisSession::open(target, limits, admin, &self.tables, place).await?,
        ))
    }

    fn key_value_settings(&self) -> Option<&dyn KeyValueSettings> {
        Some(self)
    }
}

#[async_trait]
impl KeyValueSettings for RedisEngine {
    /// Writes the namespace's settings where the proxy reads them ([`settings`]).
    async fn apply_settings(
        &self,
        server: &AdminEndpoint,
        namespace: &str,
        settings: &KeySettings,
    ) -> Result<()> {
        check_name(namespace)?;
        let mut admin = conn::connect(server).await?;
        settings::write(&mut admin, namespace, settings).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_opaque_and_never_a_prefix_of_one_another() {
        for good in ["t_0123456789abcdef", "ws_1", &"a".repeat(40)] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", "tdb", "T_1", "a:b", "a*", "a b", &"a".repeat(41), "ü"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        assert_eq!(key_prefix("t_1"), "t_1:");
        // `t_1:` is no prefix of `t_12:`, since names hold no `:`.
        assert!(!key_prefix("t_12").starts_with(&key_prefix("t_1")));
    }

    #[test]
    fn user_names_exclude_the_servers_and_tdbs() {
        assert!(check_user("t_1_app").is_ok());
        for bad in ["default", "tdb_admin", "a b", "", "a>b"] {
            assert!(check_user(bad).is_err(), "{bad}");
        }
    }
}
