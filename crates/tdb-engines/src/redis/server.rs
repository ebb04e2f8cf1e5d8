//! A Redis server as a whole: how many clients it takes from tenants, how much memory its data
//! takes, and the one thing it shares with every client that must be closed (the `default`
//! user, which every unauthenticated connection is).

use super::conn::{self, RedisConn};
use crate::AdminEndpoint;
use crate::engine::{EngineError, Result};

/// Client connections kept for tdb itself (administration, dumps, sessions of the API).
pub const ADMIN_RESERVE: u32 = 16;

/// `maxclients` less [`ADMIN_RESERVE`].
pub async fn connection_capacity(server: &AdminEndpoint) -> Result<u32> {
    let mut admin = conn::connect(server).await?;
    let max = crate::managed::redis::config_get(&mut admin, "maxclients").await?;
    let max: u32 = max
        .parse()
        .map_err(|_| EngineError::Internal(format!("maxclients is {max:?}")))?;
    Ok(max.saturating_sub(ADMIN_RESERVE))
}

/// `used_memory` from `INFO memory`: Redis keeps its data in memory, and its files on disk are
/// a copy of it.
pub async fn size_bytes(server: &AdminEndpoint) -> Result<u64> {
    let mut admin = conn::connect(server).await?;
    let info = admin.call(&["INFO", "memory"]).await?;
    let text = conn::text(&info).unwrap_or_default();
    info_field(&text, "used_memory")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| EngineError::Internal("INFO memory has no used_memory".into()))
}

/// The value of `field` in an `INFO` answer (`name:value` lines).
pub fn info_field<'a>(info: &'a str, field: &str) -> Option<&'a str> {
    info.lines()
        .filter_map(|l| l.trim_end().split_once(':'))
        .find(|(name, _)| *name == field)
        .map(|(_, value)| value)
}

/// Turns the `default` user off, without a password or a permission, unless it is already;
/// then saves the ACL file. A server without one (an attached server configured with `user`
/// lines) keeps the change until it restarts, which is logged.
pub async fn close_default_user(admin: &mut RedisConn) -> Result<()> {
    let user = admin.call(&["ACL", "GETUSER", "default"]).await?;
    if is_closed(&user) {
        return Ok(());
    }
    admin
        .call(&[
            "ACL",
            "SETUSER",
            "default",
            "off",
            "resetpass",
            "resetkeys",
            "resetchannels",
            "-@all",
        ])
        .await?;
    tracing::warn!("the Redis default user was open; it is off now");
    save_acl(admin).await
}

/// Commands earlier versions of tdb gave tenants' users and no longer do: a script could point
/// them at another tenant's channels (`PUBSUB NUMSUB`, which the proxy now answers itself).
const RETIRED: [&str; 2] = ["pubsub|numsub", "pubsub|shardnumsub"];

/// Takes [`RETIRED`] commands from every user that was given them by name (at each start:
/// users made before keep their rules otherwise), and saves the ACL file if one changed.
pub async fn retire_rules(admin: &mut RedisConn) -> Result<()> {
    let list = conn::items(admin.call(&["ACL", "LIST"]).await?, "ACL LIST")?;
    let mut changed = 0;
    for line in list.iter().filter_map(conn::text) {
        let mut words = line.split(' ');
        let (Some("user"), Some(user)) = (words.next(), words.next()) else {
            continue;
        };
        let given: Vec<String> = words
            .filter_map(|w| w.strip_prefix('+'))
            .filter(|c| RETIRED.contains(c))
            .map(|c| format!("-{c}"))
            .collect();
        if given.is_empty() {
            continue;
        }
        let mut args = vec!["ACL", "SETUSER", user];
        args.extend(given.iter().map(String::as_str));
        admin.call(&args).await?;
        changed += 1;
    }
    if changed > 0 {
        tracing::info!(users = changed, "took retired commands from Redis users");
        save_acl(admin).await?;
    }
    Ok(())
}

/// `ACL SAVE`, where the server has an ACL file.
pub async fn save_acl(admin: &mut RedisConn) -> Result<()> {
    match admin.call(&["ACL", "SAVE"]).await {
        Ok(_) => Ok(()),
        Err(e) if e.to_string().contains("not configured to use an ACL file") => {
            tracing::warn!("this Redis server has no ACL file: its users last until it restarts");
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Whether an `ACL GETUSER` answer is a user that is off, with no password, no key, no
/// channel and no command.
fn is_closed(user: &tdb_resp::frame::Frame) -> bool {
    let Some(fields) = user.as_items() else {
        return false;
    };
    let field = |name: &str| {
        fields
            .chunks_exact(2)
            .find(|kv| kv[0].as_bytes().is_some_and(|k| k == name))
            .map(|kv| &kv[1])
    };
    let flags: Vec<String> = field("flags")
        .and_then(|f| f.as_items())
        .map(|f| f.iter().filter_map(conn::text).collect())
        .unwrap_or_default();
    let empty = |name: &str| match field(name) {
        Some(f) => f.as_items().map_or_else(
            || conn::text(f).is_some_and(|t| t.is_empty()),
            <[_]>::is_empty,
        ),
        None => true,
    };
    let commands = field("commands").and_then(conn::text).unwrap_or_default();
    flags.iter().any(|f| f == "off")
        && !flags.iter().any(|f| f == "nopass")
        && empty("passwords")
        && empty("keys")
        && empty("channels")
        && commands == "-@all"
}

/// Refuses an attached server's administrator that is the `default` user: closing it would
/// lock tdb out.
pub fn check_admin(server: &AdminEndpoint) -> Result<()> {
    if server.user == "default" {
        return Err(EngineError::Unsupported(
            "attach Redis with a named administrator user (ACL SETUSER … +@all), not `default`: \
             tdb turns the default user off"
                .into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_fields_are_read_by_name() {
        let info = "# Memory\r\nused_memory:1024\r\nused_memory_human:1.00K\r\n";
        assert_eq!(info_field(info, "used_memory"), Some("1024"));
        assert_eq!(info_field(info, "used"), None);
    }
}
