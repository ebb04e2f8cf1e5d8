//! Which rule applies to a command: the special cases by name (the table's lower-case name,
//! `container|sub` for subcommands), then the generic rule for key-addressed data commands,
//! then refusal.

use std::time::Duration;

use bytes::Bytes;

use super::keyspace;
use super::pubsub;
use super::reply::ReplyRewrite;
use super::{Blocking, Decision, Emulation, Session, no_multi};
use crate::command::{AclCategory, Command, CommandFlag, CommandTable, KeyError};
use crate::frame::{Frame, Request};
use crate::prefix::Prefix;

/// ACL categories whose keyed commands are not plain data commands; each of them that is
/// allowed has a rule of its own.
const SPECIAL: [AclCategory; 6] = [
    AclCategory::Admin,
    AclCategory::Dangerous,
    AclCategory::Pubsub,
    AclCategory::Scripting,
    AclCategory::Connection,
    AclCategory::Transaction,
];

/// Refused with a reason the client can read.
fn refused_because(name: &str) -> Option<&'static str> {
    let top = name.split('|').next().unwrap_or(name);
    Some(match top {
        "randomkey" => "it would pick among every tenant's keys",
        "migrate" => "it moves keys to another server",
        "move" | "swapdb" => "a tenant has only database 0",
        "flushall" => "it empties the whole server (FLUSHDB empties the tenant's keys)",
        "function" | "fcall" | "fcall_ro" => "function libraries are shared by every tenant",
        "config" | "debug" | "monitor" | "shutdown" | "save" | "bgsave" | "bgrewriteaof"
        | "lastsave" | "latency" | "slowlog" | "module" | "memory" | "failover" | "role" => {
            "it is a server administration command"
        }
        "replicaof" | "slaveof" | "sync" | "psync" | "replconf" | "wait" | "waitaof" => {
            "replication is the platform's"
        }
        "cluster" | "readonly" | "readwrite" | "asking" | "restore-asking" => {
            "the server is not a cluster"
        }
        "acl" => "the tenant's access is managed by tdb (ACL WHOAMI answers)",
        "client" => "only CLIENT SETNAME, GETNAME, ID and INFO of one's own connection are allowed",
        "reset" => "it would log the connection out (reconnect instead)",
        "auth" => "the connection is already authenticated (reconnect to change user)",
        "script" => "scripts are shared by every tenant (SCRIPT LOAD and EXISTS are allowed)",
        "pubsub" => "it would count every tenant's subscriptions",
        _ => return None,
    })
}

pub(super) fn decide(
    table: &CommandTable,
    prefix: &Prefix,
    request: &Request,
    session: &mut Session,
    in_multi: bool,
) -> Decision {
    let args = request.args();
    // COMMAND is a container whose bare form lists every command.
    if args[0].eq_ignore_ascii_case(b"command") {
        return forward(args.to_vec(), ReplyRewrite::Keep, 0);
    }
    let command = match table.lookup(args) {
        Ok(command) => command,
        Err(e) => return refuse_key_error(&e),
    };
    let never_queued = no_multi(table, &args[0])
        || command.has_flag(&CommandFlag::NoMulti)
        || NOT_IN_MULTI.contains(&command.name());
    if in_multi && never_queued {
        return Decision::Refuse("ERR Command not allowed inside a transaction".into());
    }
    match special(table, prefix, request, session, command) {
        Some(decision) => decision,
        None if plain_data(command) => keyed(table, prefix, request, command),
        None => refuse(command.name()),
    }
}

/// Commands the server runs at once rather than queue inside MULTI (so they would have no
/// place in EXEC's array), or that a transaction cannot hold through the proxy.
const NOT_IN_MULTI: [&str; 7] = [
    "watch",
    "subscribe",
    "psubscribe",
    "ssubscribe",
    "unsubscribe",
    "punsubscribe",
    "sunsubscribe",
];

/// A keyed command of the data types, with no special meaning. MOVE is keyed but leaves the
/// tenant's database.
pub(super) fn plain_data(command: &Command) -> bool {
    command.is_keyed()
        && command.name() != "move"
        && !SPECIAL.iter().any(|c| command.in_category(c))
}

/// The rules by name; `None` for the generic rule.
fn special(
    table: &CommandTable,
    prefix: &Prefix,
    request: &Request,
    session: &mut Session,
    command: &Command,
) -> Option<Decision> {
    let args = request.args();
    let as_is = || forward(args.to_vec(), ReplyRewrite::Keep, 0);
    let decision = match command.name() {
        "keys" => keyspace::keys(args, prefix),
        "scan" => keyspace::scan(args, prefix),
        "sort" | "sort_ro" => keyspace::sort(table, prefix, args),
        "copy" if keyspace::has_db_option(args) => Decision::Refuse(
            "ERR COPY ... DB is not allowed through tdb: a tenant has only \
                              database 0"
                .into(),
        ),
        "select" => keyspace::select(args),
        "dbsize" => Decision::Emulate(Emulation::DbSize),
        "flushdb" => Decision::Emulate(Emulation::FlushDb),
        "info" => keyspace::info(args),
        "acl|whoami" => Decision::Emulate(Emulation::Answer(Frame::Bulk(session.user.clone()))),
        "hello" => hello(args, session),
        "restore" | "eval" | "evalsha" | "eval_ro" | "evalsha_ro" | "watch" => {
            keyed(table, prefix, request, command)
        }
        "ping" | "echo" | "time" | "lolwut" | "unwatch" => as_is(),
        "script|load" | "script|exists" => as_is(),
        "client|setname" | "client|getname" | "client|id" | "client|info" => as_is(),
        name if name.ends_with("|help") => as_is(),
        name => pubsub::decide(name, args, prefix, session)?,
    };
    Some(decision)
}

/// HELLO after login: a protocol switch (and SETNAME) goes to the server; AUTH does not.
fn hello(args: &[Bytes], session: &mut Session) -> Decision {
    if args.iter().any(|a| a.eq_ignore_ascii_case(b"auth")) {
        return Decision::Refuse(
            "ERR 'HELLO ... AUTH' is not allowed through tdb: the connection is already \
             authenticated (reconnect to change user)"
                .into(),
        );
    }
    match args.get(1).map(|v| &v[..]) {
        Some(b"3") => session.resp3 = true,
        Some(b"2") => session.resp3 = false,
        _ => {}
    }
    forward(args.to_vec(), ReplyRewrite::Keep, 0)
}

/// The generic rule: every key argument prefixed.
pub(super) fn keyed(
    table: &CommandTable,
    prefix: &Prefix,
    request: &Request,
    command: &Command,
) -> Decision {
    let args = request.args();
    let refs: Vec<&[u8]> = args.iter().map(|a| &a[..]).collect();
    let positions = match table.key_positions(&refs) {
        Ok(positions) => positions,
        Err(e) => return refuse_key_error(&e),
    };
    let Ok(prefixed) = prefix.apply(args, &positions) else {
        return refuse_key_error(&KeyError::Incomplete(command.name().to_owned()));
    };
    Decision::Forward {
        args: prefixed,
        reply: reply_for(command.name()),
        keys: positions.len(),
        blocking: blocking(command, args),
    }
}

/// Replies that carry key names.
fn reply_for(name: &str) -> ReplyRewrite {
    match name {
        "blpop" | "brpop" | "bzpopmin" | "bzpopmax" | "lmpop" | "blmpop" | "zmpop" | "bzmpop" => {
            ReplyRewrite::KeyFirst
        }
        "xread" | "xreadgroup" => ReplyRewrite::Streams,
        _ => ReplyRewrite::Keep,
    }
}

/// How long a blocking command asked to wait: seconds as the last argument, or as the first
/// for BLMPOP/BZMPOP, or XREAD's `BLOCK` milliseconds. `None` when it does not block.
fn blocking(command: &Command, args: &[Bytes]) -> Option<Blocking> {
    if !command.has_flag(&CommandFlag::Blocking) {
        return None;
    }
    let seconds =
        |arg: Option<&Bytes>| -> Option<f64> { std::str::from_utf8(arg?).ok()?.parse().ok() };
    let wait = match command.name() {
        "blmpop" | "bzmpop" => seconds(args.get(1))?,
        "xread" | "xreadgroup" => {
            let at = args.iter().position(|a| a.eq_ignore_ascii_case(b"block"))?;
            seconds(args.get(at + 1))? / 1000.0
        }
        _ => seconds(args.last())?,
    };
    if !wait.is_finite() || wait < 0.0 {
        return None;
    }
    Some(if wait == 0.0 {
        Blocking::Forever
    } else {
        Blocking::For(Duration::from_secs_f64(wait.min(1e9)))
    })
}

pub(super) fn forward(args: Vec<Bytes>, reply: ReplyRewrite, keys: usize) -> Decision {
    Decision::Forward {
        args,
        reply,
        keys,
        blocking: None,
    }
}

/// `-ERR` naming the command, and why when there is a reason to give.
pub(super) fn refuse(name: &str) -> Decision {
    let shown = name.replace('|', " ").to_ascii_uppercase();
    match refused_because(name).filter(|why| !why.is_empty()) {
        Some(why) => Decision::Refuse(format!("ERR '{shown}' is not allowed through tdb: {why}")),
        None => Decision::Refuse(format!("ERR '{shown}' is not allowed through tdb")),
    }
}

fn refuse_key_error(e: &KeyError) -> Decision {
    Decision::Refuse(match e {
        KeyError::UnknownCommand(name) => {
            format!("ERR unknown command '{name}' (not allowed through tdb)")
        }
        other => format!("ERR {other}"),
    })
}
