//! One tenant command made to stay in its namespace, before it is sent: its keys found by the
//! server's own command table and prefixed, `KEYS` and `SCAN` patterns anchored in the prefix,
//! and what the reply needs (the prefix stripped from key names). A command without keys is
//! refused unless it is in a short list that touches no key of anyone's (`PING`, `ECHO`,
//! `TIME`, transactions, scripts, whose `redis.call`s the ACL user checks), or is one the
//! session emulates for the namespace (`DBSIZE`). Default deny: an unknown command, a wrong
//! arity, or keys the table cannot place (`MIGRATE`) are refused.

use bytes::Bytes;
use tdb_resp::command::{CommandTable, KeyError, sort_positions};
use tdb_resp::frame::Frame;
use tdb_resp::prefix::Prefix;

use crate::engine::{EngineError, Result};

/// Keyless commands (and subcommands) a tenant may run as they are.
const KEYLESS: [&str; 13] = [
    "ping",
    "echo",
    "time",
    "multi",
    "exec",
    "discard",
    "unwatch",
    "eval",
    "evalsha",
    "eval_ro",
    "evalsha_ro",
    "script|load",
    "script|exists",
];

/// What to do with a reply before it is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    AsIs,
    /// A list of key names (`KEYS`).
    Keys,
    /// `[cursor, [key names]]` (`SCAN`).
    Scan,
    /// `[key, …]`: blocking pops and `LMPOP`/`ZMPOP`.
    FirstKey,
    /// `[[key, entries], …]`: `XREAD`, `XREADGROUP`.
    StreamKeys,
}

/// A command as it will run.
#[derive(Debug, PartialEq)]
pub enum Plan {
    Send {
        args: Vec<Bytes>,
        reply: Reply,
    },
    /// `DBSIZE`: the namespace's keys, counted by the session.
    DbSize,
}

/// A refusal, worded as redis-server words errors.
pub fn refused(message: impl std::fmt::Display) -> EngineError {
    EngineError::Query {
        message: format!("ERR {message}"),
        sqlstate: String::new(),
        detail: Some("ERR".into()),
    }
}

/// The plan for `args` (the command name first) in the namespace of `prefix`.
pub fn plan(table: &CommandTable, prefix: &Prefix, mut args: Vec<Bytes>) -> Result<Plan> {
    let name = String::from_utf8_lossy(&args[0]).to_ascii_lowercase();
    let arity = |n: usize| {
        if args.len() == n {
            Ok(())
        } else {
            Err(refused(format!(
                "wrong number of arguments for '{name}' command"
            )))
        }
    };
    match name.as_str() {
        "dbsize" => return arity(1).map(|()| Plan::DbSize),
        "keys" => {
            arity(2)?;
            args[1] = prefix.pattern(&args[1]);
            return Ok(Plan::Send {
                args,
                reply: Reply::Keys,
            });
        }
        "scan" => return scan(prefix, args),
        "publish" | "spublish" => {
            arity(3)?;
            args[1] = prefix.key(&args[1]);
            return Ok(Plan::Send {
                args,
                reply: Reply::AsIs,
            });
        }
        _ => {}
    }
    let refs: Vec<&[u8]> = args.iter().map(|a| &a[..]).collect();
    let command = table.lookup(&refs).map_err(refused)?.name().to_string();
    let positions = match table.key_positions(&refs) {
        Ok(positions) => positions,
        Err(KeyError::SortPatterns) => {
            let found = sort_positions(&refs);
            found.keys.into_iter().chain(found.patterns).collect()
        }
        Err(e) => return Err(refused(e)),
    };
    if positions.is_empty() && !KEYLESS.contains(&command.as_str()) {
        return Err(refused(format!(
            "'{command}' is not available in a namespace: it reaches beyond its keys"
        )));
    }
    let args = prefix.apply(&args, &positions).map_err(refused)?;
    let reply = match command.as_str() {
        "blpop" | "brpop" | "bzpopmin" | "bzpopmax" | "lmpop" | "blmpop" | "zmpop" | "bzmpop" => {
            Reply::FirstKey
        }
        "xread" | "xreadgroup" => Reply::StreamKeys,
        _ => Reply::AsIs,
    };
    Ok(Plan::Send { args, reply })
}

/// `SCAN cursor [MATCH p] [COUNT n] [TYPE t]` with every `MATCH` anchored in the prefix, and
/// one added when there is none.
fn scan(prefix: &Prefix, mut args: Vec<Bytes>) -> Result<Plan> {
    if args.len() < 2 || !args.len().is_multiple_of(2) {
        return Err(refused("syntax error"));
    }
    let mut matched = false;
    for at in (2..args.len()).step_by(2) {
        if args[at].eq_ignore_ascii_case(b"match") {
            args[at + 1] = prefix.pattern(&args[at + 1]);
            matched = true;
        }
    }
    if !matched {
        args.extend([Bytes::from_static(b"MATCH"), prefix.match_all()]);
    }
    Ok(Plan::Send {
        args,
        reply: Reply::Scan,
    })
}

/// `reply` with the prefix stripped from the key names `rule` says it holds. A name without
/// the prefix is never shown: the reply is refused instead.
pub fn strip(prefix: &Prefix, rule: Reply, reply: Frame) -> Result<Frame> {
    let key = |frame: Frame| match frame {
        Frame::Bulk(name) => prefix
            .strip(&name)
            .map(Frame::Bulk)
            .ok_or_else(|| refused("the reply named a key outside the namespace")),
        other => Ok(other),
    };
    let keys = |frame: Frame| match frame {
        Frame::Array(items) => items
            .into_iter()
            .map(key)
            .collect::<Result<Vec<_>>>()
            .map(Frame::Array),
        other => Ok(other),
    };
    let first = |frame: Frame| match frame {
        Frame::Array(mut items) if !items.is_empty() => {
            let name = items.remove(0);
            items.insert(0, key(name)?);
            Ok(Frame::Array(items))
        }
        other => Ok(other),
    };
    match (rule, reply) {
        (Reply::AsIs, reply) => Ok(reply),
        (Reply::Keys, reply) => keys(reply),
        (Reply::Scan, Frame::Array(mut parts)) if parts.len() == 2 => {
            let names = parts.pop().map(keys).transpose()?;
            parts.extend(names);
            Ok(Frame::Array(parts))
        }
        (Reply::FirstKey, reply) => first(reply),
        (Reply::StreamKeys, Frame::Array(streams)) => streams
            .into_iter()
            .map(first)
            .collect::<Result<Vec<_>>>()
            .map(Frame::Array),
        (_, reply) => Ok(reply),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefix() -> Prefix {
        Prefix::new("t_1:").expect("prefix")
    }

    fn args(words: &[&str]) -> Vec<Bytes> {
        words
            .iter()
            .map(|w| Bytes::copy_from_slice(w.as_bytes()))
            .collect()
    }

    #[test]
    fn scan_patterns_are_anchored_or_added() {
        let Ok(Plan::Send { args: got, .. }) =
            scan(&prefix(), args(&["SCAN", "0", "match", "*", "COUNT", "5"]))
        else {
            panic!("planned");
        };
        assert_eq!(got, args(&["SCAN", "0", "match", "t_1:*", "COUNT", "5"]));
        let Ok(Plan::Send { args: got, .. }) = scan(&prefix(), args(&["SCAN", "7"])) else {
            panic!("planned");
        };
        assert_eq!(got, args(&["SCAN", "7", "MATCH", "t_1:*"]));
        assert!(scan(&prefix(), args(&["SCAN", "0", "MATCH"])).is_err());
    }

    #[test]
    fn key_names_in_replies_lose_the_prefix_or_the_reply_is_refused() {
        let bulk = |s: &str| Frame::Bulk(Bytes::copy_from_slice(s.as_bytes()));
        let reply = Frame::Array(vec![
            bulk("0"),
            Frame::Array(vec![bulk("t_1:a"), bulk("t_1:b")]),
        ]);
        assert_eq!(
            strip(&prefix(), Reply::Scan, reply).expect("stripped"),
            Frame::Array(vec![bulk("0"), Frame::Array(vec![bulk("a"), bulk("b")])])
        );
        let popped = Frame::Array(vec![bulk("t_1:l"), bulk("v")]);
        assert_eq!(
            strip(&prefix(), Reply::FirstKey, popped).expect("stripped"),
            Frame::Array(vec![bulk("l"), bulk("v")])
        );
        let foreign = Frame::Array(vec![bulk("t_2:x")]);
        assert!(strip(&prefix(), Reply::Keys, foreign).is_err());
        assert_eq!(
            strip(&prefix(), Reply::FirstKey, Frame::NullArray).expect("nil"),
            Frame::NullArray
        );
    }
}
