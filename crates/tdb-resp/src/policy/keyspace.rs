//! The keyspace commands that name no key but reach every key: KEYS and SCAN (their patterns
//! anchored in the prefix), SORT (its BY/GET patterns prefixed), and the database commands
//! (SELECT, INFO, COPY's DB option) that a tenant of one prefix in database 0 cannot use as is.

use bytes::Bytes;

use super::reply::ReplyRewrite;
use super::rules::{forward, refuse};
use super::{Decision, Emulation};
use crate::command::{CommandTable, KeyError, sort_positions};
use crate::frame::Frame;
use crate::prefix::Prefix;

/// `KEYS pattern` → `KEYS <prefix><pattern>`, the prefix stripped from the names.
pub(super) fn keys(args: &[Bytes], prefix: &Prefix) -> Decision {
    let [name, pattern] = args else {
        return arity("keys");
    };
    forward(
        vec![name.clone(), prefix.pattern(pattern)],
        ReplyRewrite::KeyList,
        0,
    )
}

/// The largest `COUNT` a tenant's SCAN passes on.
pub const MAX_SCAN_COUNT: u64 = 1000;

/// `SCAN cursor [MATCH p] [COUNT n] [TYPE t]`: options are read in pairs from the third
/// argument as redis-server reads them; every MATCH is anchored (the server uses the last),
/// a COUNT above [`MAX_SCAN_COUNT`] is lowered to it, and a SCAN without MATCH gets
/// `MATCH <prefix>*`. An odd option list is a syntax error here,
/// as it is for the server.
pub(super) fn scan(args: &[Bytes], prefix: &Prefix) -> Decision {
    if args.len() < 2 {
        return arity("scan");
    }
    // An option without its value would make the server read the MATCH added here as one.
    if !args.len().is_multiple_of(2) {
        return Decision::Refuse("ERR syntax error".into());
    }
    let mut out = args.to_vec();
    let mut matched = false;
    let mut at = 2;
    while at + 1 < out.len() {
        if out[at].eq_ignore_ascii_case(b"match") {
            out[at + 1] = prefix.pattern(&out[at + 1]);
            matched = true;
        }
        // SCAN may answer fewer than COUNT; a larger one would have the shared server walk
        // much of its keyspace in one step.
        let count = std::str::from_utf8(&out[at + 1])
            .ok()
            .and_then(|n| n.parse::<u64>().ok());
        if out[at].eq_ignore_ascii_case(b"count") && count.is_some_and(|n| n > MAX_SCAN_COUNT) {
            out[at + 1] = Bytes::from(MAX_SCAN_COUNT.to_string());
        }
        at += 2;
    }
    if !matched {
        out.push(Bytes::from_static(b"MATCH"));
        out.push(prefix.match_all());
    }
    forward(out, ReplyRewrite::Scan, 0)
}

/// SORT/SORT_RO: the key and STORE destination prefixed like keys; BY and GET patterns with a
/// `*` prefixed, so the keys they expand to stay in the tenant's prefix. A pattern without
/// `*` (`BY nosort`, `GET #`) never names a key and is kept.
pub(super) fn sort(table: &CommandTable, prefix: &Prefix, args: &[Bytes]) -> Decision {
    let refs: Vec<&[u8]> = args.iter().map(|a| &a[..]).collect();
    match table.key_positions(&refs) {
        Ok(_) | Err(KeyError::SortPatterns) => {}
        Err(e) => return Decision::Refuse(format!("ERR {e}")),
    }
    let found = sort_positions(&refs);
    let Ok(mut out) = prefix.apply(args, &found.keys) else {
        return arity("sort");
    };
    for &at in &found.patterns {
        if memchr::memchr(b'*', &args[at]).is_some() {
            // A SORT pattern is not a glob: the prefix goes in literally.
            out[at] = prefix.key(&args[at]);
        }
    }
    forward(out, ReplyRewrite::Keep, found.keys.len())
}

/// Whether a COPY names a destination database.
pub(super) fn has_db_option(args: &[Bytes]) -> bool {
    args.iter().skip(3).any(|a| a.eq_ignore_ascii_case(b"db"))
}

/// `SELECT 0` is where the tenant already is; any other database is refused.
pub(super) fn select(args: &[Bytes]) -> Decision {
    match args {
        [_, index] if &index[..] == b"0" => {
            Decision::Emulate(Emulation::Answer(Frame::Simple(Bytes::from_static(b"OK"))))
        }
        [_, _] => Decision::Refuse(
            "ERR SELECT is not allowed through tdb for a database other than 0: a tenant has \
             only database 0"
                .into(),
        ),
        _ => arity("select"),
    }
}

/// INFO: only the keyspace section, with the tenant's count (bare INFO answers it too).
pub(super) fn info(args: &[Bytes]) -> Decision {
    let only_keyspace = args[1..]
        .iter()
        .all(|s| s.eq_ignore_ascii_case(b"keyspace"));
    if only_keyspace {
        Decision::Emulate(Emulation::InfoKeyspace)
    } else {
        let mut refused = refuse("info");
        if let Decision::Refuse(message) = &mut refused {
            message.push_str(
                ": only INFO keyspace is available (the rest describes the shared server)",
            );
        }
        refused
    }
}

fn arity(name: &str) -> Decision {
    Decision::Refuse(format!(
        "ERR wrong number of arguments for '{name}' command"
    ))
}
