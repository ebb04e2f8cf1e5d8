//! The ACL users of a namespace: the second wall behind the proxy. Each is
//! `reset on #<sha256> ~<prefix>* &<prefix>*` and a command list; Redis ACLs alone do not keep
//! tenants apart (keyless commands such as `KEYS`, `SCAN` and `FLUSHDB` ignore key patterns),
//! so the lists grant data commands only and take every server-wide command away:
//!
//! - the application user ([`APP_RULES`]): the data types, transactions, pub/sub, blocking
//!   commands and key commands (`+@keyspace +@read +@write` and the type categories), less
//!   `@dangerous` and `@admin` (`FLUSHALL`, `FLUSHDB`, `SWAPDB`, `MIGRATE`, `RESTORE`,
//!   `CONFIG`, `DEBUG`, `MONITOR`, `SHUTDOWN`, `SAVE`, `BGSAVE`, `BGREWRITEAOF`, replication
//!   and cluster commands, `ACL` and `CLIENT` beyond what is given back), less `MOVE`,
//!   `SELECT`, `RANDOMKEY` and `DBSIZE` (global, or out of the one database; the proxy
//!   emulates `DBSIZE`), less `FUNCTION`, `FCALL`, `FCALL_RO` and `SCRIPT FLUSH|KILL` (shared
//!   state), less `PUBSUB` (its subcommands list or count every tenant's channels, from a
//!   script too; the proxy answers a tenant's `PUBSUB NUMSUB` for its own channels as the
//!   administrator).
//!   Less `KEYS` and `SCAN` too: Redis does not hold them to the user's key patterns
//!   (redis/redis#8152), so a script (`EVAL "return redis.call('SCAN','0')" 0`) would list
//!   every tenant's key names. The proxy and the API's sessions answer a tenant's KEYS, SCAN
//!   and DBSIZE with walks of their own, as the server's administrator, anchored in the prefix.
//!   Given back: `SORT`, `SORT_RO` (their patterns are rewritten by the proxy, and
//!   `SORT … BY/GET` keys are checked by the ACL), `EVAL`, `EVALSHA`, `EVAL_RO`, `EVALSHA_RO`,
//!   `SCRIPT LOAD|EXISTS` (a script's `redis.call` is checked against the same user), `PING`,
//!   `ECHO`, `TIME`, `HELLO`, `COMMAND` (the server's command table; nothing of a tenant),
//!   `CLIENT SETNAME|GETNAME|ID|INFO` and `ACL WHOAMI`.
//! - the read user ([`READ_RULES`]): `@read` less the same, with `SORT_RO`, `EVAL_RO`,
//!   `EVALSHA_RO`, the subscribe commands, transactions and the connection commands.
//! - a tenant's owner (tdb's own login: dumps and restores): the application user's rules and
//!   `RESTORE`, `KEYS` and `SCAN`, which they need (payloads are checked whole by the server,
//!   `sanitize-dump-payload yes` on managed servers). A workspace's owner is the login its
//!   clients use, so it gets the application user's rules alone.
//!
//! Redis has no per-user connection limit: `connection_limit` is kept by the proxy
//! (`max_connections`), never by the server. And Redis compares a `PSUBSCRIBE` pattern with
//! the channel rules literally: these users may subscribe to the pattern `<prefix>*` and to no
//! narrower one.

use super::conn::{self, RedisConn};
use crate::engine::{EngineError, Result};

/// What a role may run, after `reset on #<hash> ~<prefix>* &<prefix>*`. Rules apply in order:
/// categories, then whole commands taken away, then commands and subcommands given back.
pub const APP_RULES: &[&str] = &[
    "+@keyspace",
    "+@read",
    "+@write",
    "+@string",
    "+@hash",
    "+@list",
    "+@set",
    "+@sortedset",
    "+@bitmap",
    "+@hyperloglog",
    "+@geo",
    "+@stream",
    "+@pubsub",
    "+@transaction",
    "+@blocking",
    "-@dangerous",
    "-@admin",
    "-@scripting",
    "-move",
    "-select",
    "-swapdb",
    "-randomkey",
    "-dbsize",
    "-flushall",
    "-flushdb",
    "-migrate",
    "-function",
    "-fcall",
    "-fcall_ro",
    "-script",
    "-pubsub",
    "-client",
    "-acl",
    "-config",
    "-debug",
    "-monitor",
    "-shutdown",
    "-save",
    "-bgsave",
    "-bgrewriteaof",
    "-replicaof",
    "-slaveof",
    "-sync",
    "-psync",
    "-cluster",
    "-keys",
    "-scan",
    "+sort",
    "+sort_ro",
    "+eval",
    "+evalsha",
    "+eval_ro",
    "+evalsha_ro",
    "+script|load",
    "+script|exists",
    "+ping",
    "+echo",
    "+time",
    "+hello",
    "+command",
    "+client|setname",
    "+client|getname",
    "+client|id",
    "+client|info",
    "+acl|whoami",
];

pub const READ_RULES: &[&str] = &[
    "+@read",
    "+@transaction",
    "-@dangerous",
    "-@admin",
    "-@scripting",
    "-randomkey",
    "-dbsize",
    "-pubsub",
    "-client",
    "-acl",
    "-keys",
    "-scan",
    "+sort_ro",
    "+eval_ro",
    "+evalsha_ro",
    "+script|exists",
    "+subscribe",
    "+unsubscribe",
    "+psubscribe",
    "+punsubscribe",
    "+ssubscribe",
    "+sunsubscribe",
    "+ping",
    "+echo",
    "+time",
    "+hello",
    "+command",
    "+client|setname",
    "+client|getname",
    "+client|id",
    "+client|info",
    "+acl|whoami",
];

/// Beyond [`APP_RULES`]: what dumps and restores need. A tenant's owner is tdb's own login,
/// never handed to a client (a workspace's owner has the application rules alone).
pub const OWNER_EXTRA: &[&str] = &["+restore", "+keys", "+scan"];

/// The three kinds of login a namespace has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Owner,
    App,
    Read,
}

impl Role {
    fn rules(self) -> Vec<&'static str> {
        match self {
            Self::Owner => APP_RULES.iter().chain(OWNER_EXTRA).copied().collect(),
            Self::App => APP_RULES.to_vec(),
            Self::Read => READ_RULES.to_vec(),
        }
    }
}

/// The key pattern of namespace `name` in an ACL rule (`~name:*`); channels take `&name:*`.
/// Valid names hold no glob metacharacter, so the prefix needs no escaping.
pub fn key_rule(name: &str) -> String {
    format!("~{}*", super::key_prefix(name))
}

fn channel_rule(name: &str) -> String {
    format!("&{}*", super::key_prefix(name))
}

/// `ACL SETUSER` arguments that make `user` a `role` of namespace `name`, from nothing.
pub fn setuser_args(user: &str, role: Role, name: &str, password: &str) -> Vec<String> {
    let mut args: Vec<String> = ["ACL", "SETUSER", user, "reset", "on"]
        .map(String::from)
        .into();
    args.push(crate::managed::redis::password_rule(password));
    args.push(key_rule(name));
    args.push(channel_rule(name));
    args.extend(role.rules().into_iter().map(String::from));
    args
}

/// Whether `user` exists.
pub async fn user_exists(admin: &mut RedisConn, user: &str) -> Result<bool> {
    let reply = admin.call(&["ACL", "GETUSER", user]).await?;
    Ok(reply.as_items().is_some())
}

/// One user of `ACL LIST`: its name, and its key and channel rules.
struct Listed {
    name: String,
    keys: Vec<String>,
    channels: Vec<String>,
}

async fn list(admin: &mut RedisConn) -> Result<Vec<Listed>> {
    let lines = conn::items(admin.call(&["ACL", "LIST"]).await?, "ACL LIST")?;
    Ok(lines
        .iter()
        .filter_map(conn::text)
        .filter_map(|line| {
            let mut words = line.split(' ');
            let (Some("user"), Some(name)) = (words.next(), words.next()) else {
                return None;
            };
            let rest: Vec<&str> = words.collect();
            let with = |test: fn(&str) -> bool| {
                rest.iter()
                    .filter(|w| test(w))
                    .map(|w| w.to_string())
                    .collect()
            };
            Some(Listed {
                name: name.to_string(),
                keys: with(|w| w.starts_with('~') || w.starts_with('%')),
                channels: with(|w| w.starts_with('&')),
            })
        })
        .collect())
}

/// A key rule without its `%R`/`%W`/`%RW` permission part.
fn pattern_of(rule: &str) -> &str {
    rule.find('~').map_or(rule, |at| &rule[at..])
}

/// Whether some user's key rules name namespace `name`.
pub async fn namespace_has_users(admin: &mut RedisConn, name: &str) -> Result<bool> {
    let rule = key_rule(name);
    Ok(list(admin)
        .await?
        .iter()
        .any(|u| u.keys.iter().any(|k| pattern_of(k) == rule)))
}

/// Gives `user` the keys and channels of namespace `name` too (a restore target, before it is
/// switched in). The user must exist.
pub async fn grant_namespace(admin: &mut RedisConn, user: &str, name: &str) -> Result<()> {
    if !user_exists(admin, user).await? {
        return Err(EngineError::Query {
            message: format!("ERR user {user} does not exist"),
            sqlstate: String::new(),
            detail: Some("ERR".into()),
            position: None,
        });
    }
    admin
        .call(&[
            "ACL".to_string(),
            "SETUSER".into(),
            user.into(),
            key_rule(name),
            channel_rule(name),
        ])
        .await?;
    Ok(())
}

/// Takes the keys and channels of namespace `name` from every user that has them among
/// others (ACL rules cannot take one pattern back: the user's patterns are reset and the
/// others given again), so a namespace made later under the same name opens to no one.
pub async fn revoke_namespace(admin: &mut RedisConn, name: &str) -> Result<()> {
    let (key, channel) = (key_rule(name), channel_rule(name));
    for user in list(admin).await? {
        let has_key = user.keys.iter().any(|k| pattern_of(k) == key);
        if !has_key && !user.channels.contains(&channel) {
            continue;
        }
        let mut args: Vec<String> = vec!["ACL".into(), "SETUSER".into(), user.name.clone()];
        args.push("resetkeys".into());
        args.extend(user.keys.into_iter().filter(|k| pattern_of(k) != key));
        args.push("resetchannels".into());
        args.extend(user.channels.into_iter().filter(|c| *c != channel));
        admin.call(&args).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_role_starts_from_nothing_and_holds_its_prefix() {
        let args = setuser_args("t1_app", Role::App, "t_0123", "pw");
        assert_eq!(&args[..5], ["ACL", "SETUSER", "t1_app", "reset", "on"]);
        assert!(args[5].starts_with('#') && args[5].len() == 65);
        assert_eq!(&args[6..8], ["~t_0123:*", "&t_0123:*"]);
        assert!(args.contains(&"-flushall".to_string()));
        assert!(!args.iter().any(|a| a == "+restore"));
        let owner = setuser_args("t1_own", Role::Owner, "t_0123", "pw");
        assert!(owner.contains(&"+restore".to_string()));
    }

    #[test]
    fn permission_parts_are_not_part_of_the_pattern() {
        assert_eq!(pattern_of("%R~t_1:*"), "~t_1:*");
        assert_eq!(pattern_of("~t_1:*"), "~t_1:*");
    }
}
