use bytes::Bytes;

use super::*;
use crate::command::KeySpecFlag;

fn s(text: &str) -> Frame {
    Frame::Simple(Bytes::copy_from_slice(text.as_bytes()))
}

fn b(text: &str) -> Frame {
    Frame::Bulk(Bytes::copy_from_slice(text.as_bytes()))
}

/// A RESP2 map: a flat array of names and values.
fn map(fields: Vec<(&str, Frame)>) -> Frame {
    Frame::Array(fields.into_iter().flat_map(|(k, v)| [b(k), v]).collect())
}

fn spec(
    flags: &[&str],
    begin: (&str, Vec<(&str, Frame)>),
    find: (&str, Vec<(&str, Frame)>),
) -> Frame {
    map(vec![
        ("flags", Frame::Array(flags.iter().map(|f| s(f)).collect())),
        (
            "begin_search",
            map(vec![("type", b(begin.0)), ("spec", map(begin.1))]),
        ),
        (
            "find_keys",
            map(vec![("type", b(find.0)), ("spec", map(find.1))]),
        ),
    ])
}

fn index(i: i64) -> (&'static str, Vec<(&'static str, Frame)>) {
    ("index", vec![("index", Frame::Integer(i))])
}

fn range(lastkey: i64, step: i64) -> (&'static str, Vec<(&'static str, Frame)>) {
    (
        "range",
        vec![
            ("lastkey", Frame::Integer(lastkey)),
            ("keystep", Frame::Integer(step)),
            ("limit", Frame::Integer(0)),
        ],
    )
}

fn entry(
    name: &str,
    arity: i64,
    flags: &[&str],
    acl: &[&str],
    specs: Vec<Frame>,
    subs: Vec<Frame>,
) -> Frame {
    Frame::Array(vec![
        b(name),
        Frame::Integer(arity),
        Frame::Array(flags.iter().map(|f| s(f)).collect()),
        Frame::Integer(0),
        Frame::Integer(0),
        Frame::Integer(0),
        Frame::Array(acl.iter().map(|c| s(c)).collect()),
        Frame::Array(vec![]),
        Frame::Array(specs),
        Frame::Array(subs),
    ])
}

fn table() -> CommandTable {
    let keynum = (
        "keynum",
        vec![
            ("keynumidx", Frame::Integer(0)),
            ("firstkey", Frame::Integer(1)),
            ("keystep", Frame::Integer(1)),
        ],
    );
    let reply = Frame::Array(vec![
        entry(
            "get",
            2,
            &["readonly", "fast"],
            &["@read", "@string", "@fast"],
            vec![spec(&["RO", "access"], index(1), range(0, 1))],
            vec![],
        ),
        entry(
            "mset",
            -3,
            &["write"],
            &["@write"],
            vec![spec(&["OW"], index(1), range(-1, 2))],
            vec![],
        ),
        entry(
            "zunionstore",
            -4,
            &["write", "movablekeys"],
            &["@write"],
            vec![
                spec(&["OW"], index(1), range(0, 1)),
                spec(&["RO"], index(2), keynum),
            ],
            vec![],
        ),
        entry("ping", -1, &["fast"], &["@connection"], vec![], vec![]),
        entry(
            "sort",
            -2,
            &["write", "movablekeys"],
            &["@write"],
            vec![
                spec(&["RO"], index(1), range(0, 1)),
                spec(&["RO"], ("unknown", vec![]), ("unknown", vec![])),
            ],
            vec![],
        ),
        entry(
            "object",
            -2,
            &[],
            &["@slow"],
            vec![],
            vec![entry(
                "object|encoding",
                3,
                &["readonly"],
                &["@keyspace", "@read"],
                vec![spec(&["RO"], index(2), range(0, 1))],
                vec![],
            )],
        ),
        Frame::NullArray,
    ]);
    CommandTable::from_reply(&reply).expect("valid table")
}

fn keys(table: &CommandTable, line: &str) -> Result<Vec<usize>, KeyError> {
    let args: Vec<&[u8]> = line.split(' ').map(str::as_bytes).collect();
    table.key_positions(&args)
}

#[test]
fn loads_flags_categories_and_specs() {
    let table = table();
    assert_eq!(table.len(), 6);
    let get = table.get(b"GET").expect("get");
    assert!(get.has_flag(&CommandFlag::Readonly));
    assert!(get.in_category(&AclCategory::String));
    assert_eq!(
        get.key_specs()[0].flags,
        [KeySpecFlag::Ro, KeySpecFlag::Access]
    );
    let object = table.get(b"object").expect("object");
    assert!(object.subcommands().contains_key("object|encoding"));
}

#[test]
fn finds_keys_of_commands_and_subcommands() {
    let table = table();
    assert_eq!(keys(&table, "get k"), Ok(vec![1]));
    assert_eq!(keys(&table, "MSET a 1 b 2"), Ok(vec![1, 3]));
    assert_eq!(
        keys(&table, "ZUNIONSTORE d 2 a b WEIGHTS 1 2"),
        Ok(vec![1, 3, 4])
    );
    assert_eq!(keys(&table, "OBJECT Encoding k"), Ok(vec![2]));
    assert_eq!(keys(&table, "PING"), Ok(vec![]));
    assert_eq!(keys(&table, "SORT k STORE d"), Ok(vec![1, 3]));
}

#[test]
fn refuses_what_it_cannot_place() {
    let table = table();
    assert_eq!(
        keys(&table, "FOO k"),
        Err(KeyError::UnknownCommand("FOO".into()))
    );
    assert_eq!(
        keys(&table, "OBJECT FREQ k"),
        Err(KeyError::UnknownSubcommand {
            command: "object".into(),
            subcommand: "FREQ".into()
        })
    );
    assert_eq!(keys(&table, "GET a b"), Err(KeyError::Arity("get".into())));
    assert_eq!(keys(&table, "MSET a"), Err(KeyError::Arity("mset".into())));
    assert_eq!(
        keys(&table, "ZUNIONSTORE d 3 a b"),
        Err(KeyError::BadNumkeys("zunionstore".into()))
    );
    assert_eq!(keys(&table, "SORT k BY w_*"), Err(KeyError::SortPatterns));
    assert_eq!(table.incomplete_commands(), ["sort"]);
    assert_eq!(
        table.key_positions(&[]),
        Err(KeyError::UnknownCommand(String::new()))
    );
}

#[test]
fn resp3_maps_load_like_resp2_arrays() {
    fn to_resp3(frame: &Frame) -> Frame {
        match frame {
            // Key spec maps are the arrays whose first element is the bulk "flags", etc.
            Frame::Array(items)
                if items.first().and_then(Frame::as_bytes).is_some_and(|k| {
                    ["flags", "type", "index", "lastkey", "keynumidx", "keyword"]
                        .iter()
                        .any(|n| k == n)
                }) =>
            {
                Frame::Map(
                    items
                        .chunks_exact(2)
                        .map(|kv| (to_resp3(&kv[0]), to_resp3(&kv[1])))
                        .collect(),
                )
            }
            Frame::Array(items) => Frame::Array(items.iter().map(to_resp3).collect()),
            other => other.clone(),
        }
    }
    let resp2 = table();
    let get = resp2.get(b"get").expect("get").clone();
    let entry2 = entry(
        "get",
        2,
        &["readonly", "fast"],
        &["@read", "@string", "@fast"],
        vec![spec(&["RO", "access"], index(1), range(0, 1))],
        vec![],
    );
    let resp3 = CommandTable::from_reply(&Frame::Array(vec![to_resp3(&entry2)])).expect("valid");
    assert_eq!(resp3.get(b"get"), Some(&get));
}

#[test]
fn malformed_replies_are_load_errors() {
    assert!(CommandTable::from_reply(&Frame::Integer(1)).is_err());
    assert!(CommandTable::from_reply(&Frame::Array(vec![Frame::Array(vec![b("get")])])).is_err());
    let bad_spec = entry(
        "get",
        2,
        &[],
        &[],
        vec![map(vec![("flags", Frame::Array(vec![]))])],
        vec![],
    );
    let err = CommandTable::from_reply(&Frame::Array(vec![bad_spec])).expect_err("no begin_search");
    assert!(err.to_string().contains("begin_search"), "{err}");
}
