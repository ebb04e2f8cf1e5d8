//! A tenant's rules for its keys ([`tdb_core::keyrules::KeyRules`], from the blueprint version
//! it is at), applied to the writes it sends: a SET without an expiry of its own gets `EX ttl`;
//! any other write that may create a key is followed by `EXPIRE key ttl NX` (which gives a TTL
//! only to a key that has none), its reply swallowed; and `max_keys` keeps a tenant at its limit
//! from creating a key (overwriting works). Scripts are not covered: EVAL is not a write command
//! to the table, and the keys a script touches are its own business.

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::Bytes;
use tdb_core::keyrules::KeyRules;
use tdb_resp::command::CommandTable;
use tdb_resp::frame::Request;

/// Commands whose own arguments decide the key's expiry: a rule's EXPIRE after them would undo
/// what the client asked for (SET gets `EX` instead when it names no expiry).
const OWN_EXPIRY: [&str; 9] = [
    "set",
    "setex",
    "psetex",
    "getex",
    "persist",
    "expire",
    "pexpire",
    "expireat",
    "pexpireat",
];

/// SET's options that give or keep an expiry.
const SET_EXPIRY_OPTIONS: [&[u8]; 5] = [b"ex", b"px", b"exat", b"pxat", b"keepttl"];

/// What the rules add to one forwarded request.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Appended to a SET as `EX <seconds>`.
    pub set_ttl: Option<u64>,
    /// `EXPIRE <key> <seconds> NX` to send after the request (keys as forwarded).
    pub expires: Vec<(Bytes, u64)>,
    /// The keys (as forwarded) the request may create, for `max_keys`.
    pub written: Vec<Bytes>,
}

/// The plan for `request`, forwarded as `forwarded` (the same arguments, keys prefixed).
pub fn plan(
    rules: &KeyRules,
    table: &CommandTable,
    request: &Request,
    forwarded: &[Bytes],
) -> Plan {
    let args = request.args();
    if rules.max_keys.is_none() && !rules.gives_ttls() {
        return Plan::default();
    }
    let refs: Vec<&[u8]> = args.iter().map(|a| &a[..]).collect();
    let positions = table.written_key_positions(&refs).unwrap_or_default();
    let name = tdb_resp::policy::command_name(table, request);
    let mut plan = Plan {
        written: positions
            .iter()
            .filter_map(|&p| forwarded.get(p).cloned())
            .collect(),
        ..Plan::default()
    };
    if name == "set" && !args.iter().skip(3).any(|a| is_expiry_option(a)) {
        plan.set_ttl = rules.ttl_for(&args[1]);
    }
    if !OWN_EXPIRY.contains(&&*name) {
        for &p in &positions {
            if let (Some(ttl), Some(key)) = (rules.ttl_for(&args[p]), forwarded.get(p)) {
                plan.expires.push((key.clone(), ttl));
            }
        }
    }
    plan
}

fn is_expiry_option(arg: &[u8]) -> bool {
    SET_EXPIRY_OPTIONS
        .iter()
        .any(|o| arg.eq_ignore_ascii_case(o))
}

/// How many keys each tenant holds, as last counted (by SCAN) plus the keys this proxy saw it
/// create since. Deletions and expiries are not seen, so the count errs high; a write it would
/// refuse has the tenant's keys counted again first, so a refusal is always on a fresh count.
#[derive(Default)]
pub struct KeyCounts(Mutex<HashMap<Bytes, u64>>);

impl KeyCounts {
    pub fn get(&self, prefix: &Bytes) -> Option<u64> {
        self.lock().get(prefix).copied()
    }

    pub fn set(&self, prefix: &Bytes, count: u64) {
        self.lock().insert(prefix.clone(), count);
    }

    pub fn add(&self, prefix: &Bytes, created: u64) {
        *self.lock().entry(prefix.clone()).or_default() += created;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Bytes, u64>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The refusal of a write past the limit.
pub fn over_limit(describe: &str, count: u64, max: u64) -> String {
    format!(
        "ERR max_keys reached: {describe} holds {count} keys and its max_keys is {max} \
         (overwriting or deleting keys still works)"
    )
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use bytes::BytesMut;
    use tdb_core::keyrules::PatternRule;
    use tdb_resp::frame::{Limits, ReplyDecoder};

    use super::*;

    fn table() -> CommandTable {
        let fixture = include_bytes!("../../../tdb-resp/src/policy/fixtures/command-7.0.15.resp");
        let mut buf = BytesMut::from(&fixture[..]);
        let reply = ReplyDecoder::new(Limits::default())
            .decode(&mut buf)
            .expect("valid")
            .expect("whole");
        CommandTable::from_reply(&reply).expect("loads")
    }

    fn rules() -> KeyRules {
        KeyRules {
            default_ttl: Some(100),
            max_keys: Some(10),
            patterns: BTreeMap::from([("cache:*".to_string(), PatternRule { ttl: 5 })]),
        }
    }

    fn plan_of(line: &str) -> Plan {
        let args: Vec<Bytes> = line
            .split(' ')
            .map(|a| Bytes::copy_from_slice(a.as_bytes()))
            .collect();
        let forwarded: Vec<Bytes> = args
            .iter()
            .map(|a| Bytes::from(format!("t:{}", String::from_utf8_lossy(a))))
            .collect();
        let request = Request::new(args).expect("a name");
        plan(&rules(), &table(), &request, &forwarded)
    }

    #[test]
    fn set_gets_ex_unless_it_names_an_expiry() {
        assert_eq!(plan_of("SET cache:a v").set_ttl, Some(5));
        assert_eq!(plan_of("SET k v NX").set_ttl, Some(100));
        for line in [
            "SET k v EX 9",
            "SET k v px 9",
            "SET k v KEEPTTL",
            "SET k v EXAT 9",
        ] {
            assert_eq!(plan_of(line).set_ttl, None, "{line}");
        }
        assert!(plan_of("SET k v").expires.is_empty());
    }

    #[test]
    fn other_writes_get_an_expire_nx_per_written_key() {
        let plan = plan_of("MSET cache:a 1 b 2");
        assert_eq!(
            plan.expires,
            [(Bytes::from("t:cache:a"), 5), (Bytes::from("t:b"), 100)]
        );
        assert_eq!(plan.written, [Bytes::from("t:cache:a"), Bytes::from("t:b")]);
        assert_eq!(
            plan_of("LMOVE src dst LEFT RIGHT").expires,
            [(Bytes::from("t:dst"), 100)]
        );
        for line in ["GET k", "PERSIST k", "EXPIRE k 5", "DEL k", "EVAL s 1 k"] {
            assert!(plan_of(line).expires.is_empty(), "{line}");
        }
        assert_eq!(plan_of("PERSIST k").written, [Bytes::from("t:k")]);
    }

    #[test]
    fn no_rules_no_plan() {
        let request = Request::new(vec![Bytes::from("SET"), Bytes::from("k"), Bytes::from("v")])
            .expect("a name");
        let forwarded = request.args().to_vec();
        assert_eq!(
            plan(&KeyRules::default(), &table(), &request, &forwarded),
            Plan::default()
        );
    }

    #[test]
    fn counts_add_up_per_prefix() {
        let counts = KeyCounts::default();
        let p = Bytes::from("t:");
        assert_eq!(counts.get(&p), None);
        counts.set(&p, 3);
        counts.add(&p, 2);
        assert_eq!(counts.get(&p), Some(5));
    }
}
