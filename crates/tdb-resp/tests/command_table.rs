//! The command table loaded from a real redis-server's `COMMAND` reply, checked against the
//! server's own `COMMAND GETKEYS` for a corpus of commands.

mod common;

use common::{Conn, RedisServer, words};
use tdb_resp::command::{CommandTable, KeyError, sort_positions};
use tdb_resp::frame::Frame;

/// Requests whose keys `key_positions` must place exactly as GETKEYS does.
const AGREE: &[&str] = &[
    "GET k1",
    "SET k1 v EX 10 NX GET",
    "SET k1 v KEEPTTL",
    "GETEX k1 PERSIST",
    "GETDEL k1",
    "INCRBY k1 5",
    "SETRANGE k1 0 v",
    "MSET k1 v k2 v k3 v",
    "MSETNX k1 v k2 v",
    "MGET k1 k2 k3",
    "DEL k1 k2 k3 k4",
    "UNLINK k1 k2",
    "EXISTS k1 k2 k3",
    "TOUCH k1 k2",
    "TYPE k1",
    "EXPIRE k1 10 NX",
    "DUMP k1",
    "RESTORE k1 0 payload REPLACE",
    "RENAME k1 k2",
    "RENAMENX k1 k2",
    "COPY k1 k2 REPLACE",
    "COPY k1 k2 DB 1",
    "LPUSH k1 a b",
    "LPOS k1 x RANK 1",
    "LMOVE k1 k2 LEFT RIGHT",
    "BLMOVE k1 k2 LEFT RIGHT 0",
    "RPOPLPUSH k1 k2",
    "BRPOPLPUSH k1 k2 0",
    "BLPOP k1 k2 k3 5",
    "BRPOP k1 0.5",
    "BLMPOP 1 2 k1 k2 LEFT COUNT 3",
    "LMPOP 3 k1 k2 k3 RIGHT",
    "ZMPOP 2 k1 k2 MIN",
    "BZMPOP 0 1 k1 MAX COUNT 2",
    "BZPOPMIN k1 k2 1",
    "ZUNIONSTORE k1 2 k2 k3 WEIGHTS 1 2",
    "ZINTERSTORE k1 2 k2 k3 AGGREGATE MAX",
    "ZDIFFSTORE k1 2 k2 k3",
    "ZUNION 2 k1 k2 WITHSCORES",
    "ZINTER 3 k1 k2 k3",
    "ZDIFF 2 k1 k2",
    "ZINTERCARD 2 k1 k2 LIMIT 5",
    "ZRANGESTORE k1 k2 0 -1",
    "ZRANGE k1 0 -1 REV",
    "SORT k1",
    "SORT k1 LIMIT 0 5 ALPHA DESC STORE k2",
    "SORT_RO k1 ALPHA",
    "XADD k1 * f v",
    "XADD k1 NOMKSTREAM MAXLEN ~ 10 * f v",
    "XREAD COUNT 2 STREAMS k1 k2 0 0",
    "XREAD BLOCK 0 STREAMS k1 $",
    "XREADGROUP GROUP g c COUNT 1 STREAMS k1 k2 > >",
    "XGROUP CREATE k1 g $ MKSTREAM",
    "XINFO STREAM k1",
    "XAUTOCLAIM k1 g c 0 0",
    "XCLAIM k1 g c 0 1-1",
    "EVAL script 2 k1 k2 arg",
    "EVAL script 0 arg",
    "EVAL_RO script 1 k1",
    "EVALSHA sha 2 k1 k2",
    "FCALL fn 1 k1 arg",
    "FCALL_RO fn 2 k1 k2",
    "GEOADD k1 0 0 m",
    "GEOSEARCHSTORE k1 k2 FROMLONLAT 0 0 BYRADIUS 1 km",
    "GEOSEARCH k1 FROMMEMBER m BYBOX 1 1 km",
    "GEORADIUS k1 0 0 1 km STORE k2",
    "GEORADIUS k1 0 0 1 km STOREDIST k2",
    "GEORADIUS k1 0 0 1 km WITHDIST",
    "GEORADIUSBYMEMBER k1 m 1 km STORE k2",
    "BITOP AND k1 k2 k3 k4",
    "BITFIELD k1 GET u8 0",
    "BITCOUNT k1",
    "OBJECT ENCODING k1",
    "OBJECT FREQ k1",
    "MEMORY USAGE k1 SAMPLES 5",
    "PFADD k1 a b",
    "PFMERGE k1 k2 k3",
    "PFCOUNT k1 k2",
    "SINTERCARD 2 k1 k2 LIMIT 3",
    "SMOVE k1 k2 m",
    "SINTERSTORE k1 k2 k3",
    "SDIFFSTORE k1 k2",
    "SUNION k1 k2",
    "HSET k1 f v f2 v2",
    "LCS k1 k2",
    "WATCH k1 k2 k3",
    "PING hello",
    "PUBLISH chan msg",
    "KEYS *",
    "ECHO hi",
];

/// Requests `key_positions` refuses, with why; what GETKEYS says is printed.
fn refused() -> Vec<(&'static str, KeyError)> {
    vec![
        ("SORT k1 BY w_* GET o_* STORE k2", KeyError::SortPatterns),
        ("SORT_RO k1 GET o_*->f", KeyError::SortPatterns),
        // A destination named twice: the server writes the last (GETKEYS agrees), the key specs
        // find the first, so nothing can say which to prefix without re-reading the command.
        (
            "SORT k1 GET # STORE k2 STORE k3",
            KeyError::RepeatedDestination {
                command: "sort".into(),
                option: "STORE".into(),
            },
        ),
        (
            "GEORADIUS k1 0 0 1 km STORE k2 STORE k3",
            KeyError::RepeatedDestination {
                command: "georadius".into(),
                option: "STORE/STOREDIST".into(),
            },
        ),
        (
            "MIGRATE host 6379 k1 0 5000",
            KeyError::Incomplete("migrate".into()),
        ),
        (
            "MIGRATE host 6379 \"\" 0 5000 KEYS k1 k2",
            KeyError::Incomplete("migrate".into()),
        ),
        ("BLMPOP 0 5 k1 LEFT", KeyError::BadNumkeys("blmpop".into())),
        ("EVAL script x k1", KeyError::BadNumkeys("eval".into())),
        ("GET", KeyError::Arity("get".into())),
        (
            "OBJECT NOPE k1",
            KeyError::UnknownSubcommand {
                command: "object".into(),
                subcommand: "NOPE".into(),
            },
        ),
        (
            "NOSUCHCOMMAND k1",
            KeyError::UnknownCommand("NOSUCHCOMMAND".into()),
        ),
    ]
}

fn load(conn: &mut Conn) -> CommandTable {
    CommandTable::from_reply(&conn.call(&["COMMAND"])).expect("the COMMAND reply loads")
}

/// GETKEYS' key names; its "no keys" errors as an empty list.
fn getkeys(conn: &mut Conn, args: &[&str]) -> Result<Vec<String>, String> {
    let mut request = vec!["COMMAND", "GETKEYS"];
    request.extend_from_slice(args);
    match conn.call(&request) {
        Frame::Array(keys) => Ok(keys
            .iter()
            .map(|k| String::from_utf8_lossy(k.as_bytes().expect("a key name")).into_owned())
            .collect()),
        Frame::Error(e)
            if e.ends_with(b"has no key arguments")
                || e.ends_with(b"Invalid arguments specified for command") =>
        {
            Ok(vec![])
        }
        other => Err(format!("{other:?}")),
    }
}

fn ours(table: &CommandTable, args: &[&str]) -> Result<Vec<String>, KeyError> {
    let bytes: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    table
        .key_positions(&bytes)
        .map(|positions| positions.iter().map(|&p| args[p].to_owned()).collect())
}

#[test]
fn key_positions_agree_with_command_getkeys() {
    let server = RedisServer::start();
    let mut conn = server.connect();
    let table = load(&mut conn);
    assert!(table.len() > 200, "{} commands", table.len());
    let mut disagreements = Vec::new();
    for line in AGREE {
        let args = words(line);
        let theirs = getkeys(&mut conn, &args);
        let mine = ours(&table, &args);
        if mine.as_ref().ok() != theirs.as_ref().ok() {
            disagreements.push(format!("{line}: ours {mine:?}, GETKEYS {theirs:?}"));
        }
    }
    assert!(disagreements.is_empty(), "{disagreements:#?}");
    assert!(AGREE.len() >= 60);
    eprintln!("{} requests agree with COMMAND GETKEYS", AGREE.len());
}

#[test]
fn refusals_are_the_documented_special_cases() {
    let server = RedisServer::start();
    let mut conn = server.connect();
    let table = load(&mut conn);
    for (line, expected) in refused() {
        let args = words(line);
        assert_eq!(ours(&table, &args), Err(expected), "{line}");
        eprintln!(
            "refused {line}; GETKEYS says {:?}",
            getkeys(&mut conn, &args)
        );
    }
    // SORT with patterns: the key and destination as GETKEYS has them, plus the patterns.
    let args = words("SORT k1 BY w_* GET o_* GET # STORE k2");
    let bytes: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    let sort = sort_positions(&bytes);
    let keys: Vec<&str> = sort.keys.iter().map(|&p| args[p]).collect();
    assert_eq!(
        Ok(keys.iter().map(|k| k.to_string()).collect()),
        getkeys(&mut conn, &args)
    );
    assert_eq!(sort.patterns, [3, 5]);
}

#[test]
fn only_sort_and_migrate_have_incomplete_key_specs() {
    let server = RedisServer::start();
    let table = load(&mut server.connect());
    assert_eq!(table.incomplete_commands(), ["migrate", "sort", "sort_ro"]);
}

#[test]
fn resp3_reply_loads_the_same_table() {
    let server = RedisServer::start();
    let mut conn = server.connect();
    let resp2 = load(&mut conn);
    let hello = conn.call(&["HELLO", "3"]);
    assert!(matches!(hello, Frame::Map(_)), "{hello:?}");
    let reply = conn.call(&["COMMAND"]);
    // In RESP3 the key specs are maps (and flags and subcommands sets).
    let has_map_specs = |entry: &Frame| {
        entry
            .as_items()
            .and_then(|items| items.get(8))
            .and_then(Frame::as_items)
            .is_some_and(|specs| matches!(specs.first(), Some(Frame::Map(_))))
    };
    assert!(
        reply
            .as_items()
            .is_some_and(|entries| entries.iter().any(has_map_specs))
    );
    assert_eq!(CommandTable::from_reply(&reply), Ok(resp2));
}

#[test]
fn command_info_of_some_names_loads_and_skips_unknown_ones() {
    let server = RedisServer::start();
    let mut conn = server.connect();
    let reply = conn.call(&["COMMAND", "INFO", "get", "object", "nosuch"]);
    let table = CommandTable::from_reply(&reply).expect("loads");
    assert_eq!(table.len(), 2);
    assert_eq!(
        table.key_positions(&[b"object", b"encoding", b"k"]),
        Ok(vec![2])
    );
}
