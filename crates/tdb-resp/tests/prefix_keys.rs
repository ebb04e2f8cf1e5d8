//! Anchored patterns against a real redis-server: `KEYS <rewritten>` returns exactly the
//! tenant's keys that the client's pattern matches, and never a key outside the prefix, for
//! tricky patterns and prefixes that contain glob metacharacters themselves.

mod common;

use std::collections::BTreeSet;

use bytes::Bytes;
use common::{Conn, RedisServer};
use tdb_resp::frame::Frame;
use tdb_resp::prefix::Prefix;

/// No prefix is a prefix of another: with `t` beside `t1:`, tenant `t`'s key `1:a` would be
/// tenant `t1:`'s `a`, which no pattern rewriting can prevent (see the module doc of `prefix`).
const PREFIXES: &[&str] = &[
    "t1:", "t*:", "t?:", "t[:", "t]:", r"t\:", "t[1]:", "*", r"\",
];

/// Every tenant's keys, before prefixing; the empty name is the prefix itself.
const NAMES: &[&str] = &[
    "a", "ab", "b*", r"\", "[x]", "", "x?y", "]", "^", "1:a", "-",
];

/// Keys outside every tenant, near-misses of the prefixes.
const OUTSIDERS: &[&str] = &["t1", "T1:a", "tx:a", "t:a", "other", "t1;a"];

const PATTERNS: &[&str] = &[
    "*", r"\", "[", r"a\", r"*\", "[^a]*", "[^", "[a-", "?", r"b\*", r"\[x]", "[]", "*[", r"[\]",
    "[!a]", "*]", "[]]", "[^]]*", "\\*", "??", "[z-a]", "1:*", "", "[^a-z]", "*?*?*",
];

fn set(conn: &mut Conn, key: &[u8]) {
    assert_eq!(
        conn.call_bytes(&[b"SET", key, b"v"]),
        Frame::Simple("OK".into())
    );
}

fn keys(conn: &mut Conn, pattern: &[u8]) -> BTreeSet<Bytes> {
    match conn.call_bytes(&[b"KEYS", pattern]) {
        Frame::Array(names) => names.iter().filter_map(|n| n.as_bytes().cloned()).collect(),
        other => panic!("KEYS answered {other:?}"),
    }
}

#[test]
fn rewritten_keys_patterns_never_leave_the_prefix() {
    let server = RedisServer::start();
    // Database 0 holds every tenant's prefixed keys; database 1 one tenant's names bare, to
    // say what the client's pattern should match.
    let mut shared = server.connect();
    let mut bare = server.connect();
    assert_eq!(bare.call(&["SELECT", "1"]), Frame::Simple("OK".into()));
    for name in NAMES {
        set(&mut bare, name.as_bytes());
    }
    let prefixes: Vec<Prefix> = PREFIXES
        .iter()
        .map(|p| Prefix::new(*p).expect("non-empty"))
        .collect();
    for prefix in &prefixes {
        for name in NAMES {
            set(&mut shared, &prefix.key(name.as_bytes()));
        }
    }
    for outsider in OUTSIDERS {
        set(&mut shared, outsider.as_bytes());
    }
    let mut checked = 0;
    for prefix in &prefixes {
        for pattern in PATTERNS {
            let found = keys(&mut shared, &prefix.pattern(pattern.as_bytes()));
            let stripped: BTreeSet<Bytes> = found
                .iter()
                .map(|k| {
                    prefix
                        .strip(k)
                        .unwrap_or_else(|| panic!("{k:?} is outside {prefix:?} for {pattern:?}"))
                })
                .collect();
            let expected = keys(&mut bare, pattern.as_bytes());
            assert_eq!(stripped, expected, "prefix {prefix:?}, pattern {pattern:?}");
            checked += 1;
        }
    }
    eprintln!("{checked} prefix/pattern pairs stayed inside their prefix");
}

#[test]
fn prefixed_requests_run_against_the_server() {
    let server = RedisServer::start();
    let mut conn = server.connect();
    let table =
        tdb_resp::command::CommandTable::from_reply(&conn.call(&["COMMAND"])).expect("table");
    let prefix = Prefix::new("t*:").expect("non-empty");
    let request: Vec<Bytes> = ["MSET", "a", "1", "b", "2"]
        .into_iter()
        .map(Bytes::from)
        .collect();
    let refs: Vec<&[u8]> = request.iter().map(|a| &a[..]).collect();
    let positions = table.key_positions(&refs).expect("keys");
    let rewritten = prefix.apply(&request, &positions).expect("in range");
    let refs: Vec<&[u8]> = rewritten.iter().map(|a| &a[..]).collect();
    assert_eq!(conn.call_bytes(&refs), Frame::Simple("OK".into()));
    let found = keys(&mut conn, &prefix.match_all());
    let stripped: BTreeSet<Bytes> = found.iter().filter_map(|k| prefix.strip(k)).collect();
    assert_eq!(
        stripped,
        BTreeSet::from([Bytes::from("a"), Bytes::from("b")])
    );
}
