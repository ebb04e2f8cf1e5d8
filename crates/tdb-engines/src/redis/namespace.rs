//! Namespaces: a tenant's (or workspace's) keys are those under its prefix on a shared server,
//! and its logins are ACL users whose key and channel patterns are that prefix (see
//! [`super::acl`]). Creating one makes its users; dropping one closes them, unlinks every key
//! under the prefix in batches, then deletes them.

use bytes::Bytes;
use tdb_resp::frame::Frame;
use tdb_resp::prefix::Prefix;

use super::acl::{self, Role};
use super::conn::{self, RedisConn};
use super::{check_name, check_user, settings};
use crate::AdminEndpoint;
use crate::engine::{DatabaseSpec, EngineError, RestoreTarget, Result, TenantSpec};

/// Keys asked for per `SCAN` step, and unlinked per `UNLINK`.
pub const SCAN_COUNT: &str = "1000";

/// Creates a workspace's namespace: its owner, with the application user's rules (its clients
/// log in as it; it is never dumped). A user of that name, or a namespace of that name, is an
/// error.
pub async fn create_workspace(server: &AdminEndpoint, spec: &DatabaseSpec<'_>) -> Result<()> {
    check_name(spec.name)?;
    let users = [(spec.owner_role, Role::App, spec.owner_password)];
    create(server, spec.name, &users).await
}

/// Creates a tenant's namespace: its owner, application and read users.
pub async fn create_tenant(server: &AdminEndpoint, spec: &TenantSpec<'_>) -> Result<()> {
    check_name(spec.name)?;
    let users = [
        (spec.owner_role, Role::Owner, spec.owner_password),
        (spec.app_role, Role::App, spec.app_password),
        (spec.read_role, Role::Read, spec.read_password),
    ];
    create(server, spec.name, &users).await
}

/// Makes `users` for namespace `name`, after checking that none of them and no user of the
/// namespace exists; a failure deletes the users it made.
async fn create(server: &AdminEndpoint, name: &str, users: &[(&str, Role, &str)]) -> Result<()> {
    for (user, _, _) in users {
        check_user(user)?;
    }
    let mut admin = conn::connect(server).await?;
    if acl::namespace_has_users(&mut admin, name).await? {
        return Err(exists(format!("namespace {name} exists")));
    }
    for (user, _, _) in users {
        if acl::user_exists(&mut admin, user).await? {
            return Err(exists(format!("user {user} exists")));
        }
    }
    let mut made = Vec::new();
    let built = async {
        for (user, role, password) in users {
            admin
                .call(&acl::setuser_args(user, *role, name, password))
                .await?;
            made.push(*user);
        }
        super::server::save_acl(&mut admin).await
    }
    .await;
    if let Err(e) = built {
        if !made.is_empty() {
            let mut args = vec!["ACL", "DELUSER"];
            args.extend(&made);
            if let Err(undo) = admin.call(&args).await {
                tracing::warn!(error = %undo, "could not take back half-made Redis users");
            }
        }
        return Err(e);
    }
    Ok(())
}

fn exists(message: String) -> EngineError {
    EngineError::Query {
        message: format!("ERR {message}"),
        sqlstate: String::new(),
        detail: Some("ERR".into()),
        position: None,
    }
}

/// Whether namespace `name` exists: whether some ACL user's key pattern is its prefix (every
/// namespace has its users from its creation until its drop has removed its keys). Keys alone
/// are not looked for: that is a walk of the whole shared keyspace.
pub async fn exists_on(server: &AdminEndpoint, name: &str) -> Result<bool> {
    check_name(name)?;
    let mut admin = conn::connect(server).await?;
    acl::namespace_has_users(&mut admin, name).await
}

/// Drops namespace `name`: `roles` are turned off and their clients ended, every key under
/// the prefix is unlinked in batches, its settings removed, the roles deleted, the prefix
/// taken from any other user that had it (a restore target's), and the ACL file saved.
/// Absent parts are fine; a drop cut off is finished by running it again (the roles keep the
/// namespace findable until its keys are gone).
pub async fn drop_namespace(server: &AdminEndpoint, name: &str, roles: &[&str]) -> Result<()> {
    check_name(name)?;
    for role in roles {
        check_user(role)?;
    }
    let mut admin = conn::connect(server).await?;
    for role in roles {
        if acl::user_exists(&mut admin, role).await? {
            admin.call(&["ACL", "SETUSER", *role, "off"]).await?;
            // No client of the user is fine (an error reply).
            let _ = admin.call(&["CLIENT", "KILL", "USER", *role]).await;
        }
    }
    unlink_all(&mut admin, &prefix_of(name)).await?;
    admin
        .call(&["DEL", settings::settings_key(name).as_str()])
        .await?;
    if !roles.is_empty() {
        let mut args = vec!["ACL", "DELUSER"];
        args.extend(roles);
        admin.call(&args).await?;
    }
    acl::revoke_namespace(&mut admin, name).await?;
    super::server::save_acl(&mut admin).await
}

/// Empties namespace `target.name` and opens it to the tenant's existing users beside their
/// own, for a restore that is switched in afterwards.
pub async fn create_restore_target(
    server: &AdminEndpoint,
    target: &RestoreTarget<'_>,
) -> Result<()> {
    check_name(target.name)?;
    let mut admin = conn::connect(server).await?;
    unlink_all(&mut admin, &prefix_of(target.name)).await?;
    let roles = [
        Some(target.owner_role),
        Some(target.app_role),
        target.read_role,
    ];
    for role in roles.into_iter().flatten() {
        check_user(role)?;
        acl::grant_namespace(&mut admin, role, target.name).await?;
    }
    super::server::save_acl(&mut admin).await
}

/// The prefix of a valid name.
pub fn prefix_of(name: &str) -> Prefix {
    match Prefix::new(super::key_prefix(name)) {
        Ok(prefix) => prefix,
        // A name followed by `:` is never empty.
        Err(_) => unreachable!("a key prefix is never empty"),
    }
}

/// A walk of the keys under a prefix with `SCAN … MATCH <prefix>* COUNT 1000`. A key may come
/// twice (SCAN promises only that a key present throughout comes at least once).
pub struct KeyScan {
    pattern: Bytes,
    cursor: Bytes,
    done: bool,
}

impl KeyScan {
    pub fn new(prefix: &Prefix) -> Self {
        Self {
            pattern: prefix.match_all(),
            cursor: Bytes::from_static(b"0"),
            done: false,
        }
    }

    /// A walk of the keys matching `pattern` (already anchored in a prefix).
    pub fn matching(pattern: Bytes) -> Self {
        Self {
            pattern,
            cursor: Bytes::from_static(b"0"),
            done: false,
        }
    }

    /// The next step's keys (full names, possibly none); `None` once the walk is over.
    pub async fn next(&mut self, conn: &mut RedisConn) -> Result<Option<Vec<Bytes>>> {
        if self.done {
            return Ok(None);
        }
        let args: [&[u8]; 6] = [
            b"SCAN",
            &self.cursor,
            b"MATCH",
            &self.pattern,
            b"COUNT",
            SCAN_COUNT.as_bytes(),
        ];
        let (next, keys) = scan_reply(conn.call(&args).await?)?;
        self.done = &next[..] == b"0";
        self.cursor = next;
        Ok(Some(keys))
    }
}

/// The cursor and keys of a `SCAN` reply.
pub fn scan_reply(reply: Frame) -> Result<(Bytes, Vec<Bytes>)> {
    let mut parts = conn::items(reply, "SCAN")?.into_iter();
    let (Some(Frame::Bulk(cursor)), Some(keys)) = (parts.next(), parts.next()) else {
        return Err(EngineError::Internal("SCAN: unexpected reply".into()));
    };
    let keys = conn::items(keys, "SCAN keys")?
        .into_iter()
        .filter_map(|k| match k {
            Frame::Bulk(b) => Some(b),
            _ => None,
        })
        .collect();
    Ok((cursor, keys))
}

/// Unlinks every key under `prefix`, a `SCAN` step at a time (never `KEYS`, never one `DEL`
/// of everything: the server stays responsive between steps, and `UNLINK` frees large values
/// in the background). Returns how many keys were unlinked.
pub async fn unlink_all(conn: &mut RedisConn, prefix: &Prefix) -> Result<u64> {
    let mut scan = KeyScan::new(prefix);
    let mut removed = 0u64;
    while let Some(keys) = scan.next(conn).await? {
        if keys.is_empty() {
            continue;
        }
        let mut args: Vec<Bytes> = vec![Bytes::from_static(b"UNLINK")];
        args.extend(keys);
        let n = conn::integer(&conn.call(&args).await?, "UNLINK")?;
        removed += u64::try_from(n).unwrap_or(0);
    }
    Ok(removed)
}
