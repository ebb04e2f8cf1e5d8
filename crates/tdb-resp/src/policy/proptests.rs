//! The policy's invariant over arbitrary requests: whatever a client sends, a forwarded request
//! names no key outside the prefix (by the server's own key positions), KEYS and SCAN patterns
//! are anchored, and deciding never panics.

use bytes::Bytes;
use proptest::collection::vec;
use proptest::prelude::*;

use super::tests::table;
use super::*;

/// Every command and subcommand of the table, as the words a client sends.
fn names() -> Vec<Vec<String>> {
    let mut names: Vec<Vec<String>> = table()
        .commands()
        .flat_map(|c| {
            let top = vec![c.name().to_string()];
            let subs = c
                .subcommands()
                .keys()
                .map(|full| full.split('|').map(str::to_string).collect::<Vec<_>>());
            std::iter::once(top).chain(subs)
        })
        .collect();
    names.sort();
    names
}

/// Arguments that steer commands: keywords of key specs and options, counts, and names that
/// look like other tenants' keys or globs.
fn argument() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "STREAMS",
            "MATCH",
            "STORE",
            "BY",
            "GET",
            "KEYS",
            "DB",
            "COUNT",
            "BLOCK",
            "LIMIT",
            "STOREDIST",
            "WEIGHTS",
            "GROUP",
            "TYPE",
            "REPLACE",
            "#",
            "*",
            "0",
            "1",
            "2",
            "3",
            "t2:secret",
            "t1:",
            "[t]2:*",
            "\\\\*",
            "",
        ])
        .prop_map(str::to_string),
        "[a-z0-9:*?]{0,6}",
    ]
}

fn requests() -> impl Strategy<Value = Vec<Bytes>> {
    (prop::sample::select(names()), vec(argument(), 0..8)).prop_map(|(name, args)| {
        name.into_iter()
            .chain(args)
            .map(|a| Bytes::from(a.into_bytes()))
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn forwarded_keys_stay_in_the_prefix(args in requests(), resp3 in any::<bool>()) {
        let prefix = Prefix::new("t1:").expect("non-empty");
        let request = Request::new(args).expect("a name");
        let mut session = Session::new("acme", resp3);
        let Decision::Forward { args, .. } = decide(table(), &prefix, &request, &mut session) else {
            return Ok(());
        };
        let refs: Vec<&[u8]> = args.iter().map(|a| &a[..]).collect();
        if let Ok(positions) = table().key_positions(&refs) {
            for p in positions {
                prop_assert!(args[p].starts_with(b"t1:"), "{:?} from {:?}", args, request);
            }
        }
        let name = args[0].to_ascii_lowercase();
        if name == b"keys" {
            prop_assert!(args[1].starts_with(b"t1:"));
        }
        if name == b"scan" {
            let matches: Vec<&Bytes> = args
                .iter()
                .skip(2)
                .step_by(2)
                .zip(args.iter().skip(3).step_by(2))
                .filter(|(option, _)| option.eq_ignore_ascii_case(b"match"))
                .map(|(_, pattern)| pattern)
                .collect();
            prop_assert!(!matches.is_empty(), "{:?}", args);
            prop_assert!(matches.iter().all(|p| p.starts_with(b"t1:")), "{:?}", args);
        }
    }
}
