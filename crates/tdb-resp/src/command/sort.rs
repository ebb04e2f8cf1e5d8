//! SORT and SORT_RO, whose key specs leave the BY/GET patterns and the STORE destination
//! `unknown`. Arguments are read as redis-server's `sortGetKeys` reads them: `LIMIT` takes two,
//! `BY` and `GET` one, and the last `STORE` wins.

use super::error::KeyError;

/// Where a SORT request names keys.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SortPositions {
    /// The sorted key and the STORE destination: prefix them like any key.
    pub keys: Vec<usize>,
    /// BY and GET patterns (`weight_*`, `obj_*->field`): prefix them too, so the keys they
    /// expand to stay in the tenant's prefix. `GET #` (the element itself) is not listed.
    pub patterns: Vec<usize>,
}

/// The keys and patterns of `SORT`/`SORT_RO key ...` (`args[0]` is the command name).
pub fn sort_positions(args: &[&[u8]]) -> SortPositions {
    let mut found = SortPositions {
        keys: vec![1],
        ..SortPositions::default()
    };
    let mut store = None;
    let mut at = 2;
    while let Some(arg) = args.get(at) {
        let is = |word: &str| arg.eq_ignore_ascii_case(word.as_bytes());
        if is("limit") {
            at += 2;
        } else if is("by") || is("get") {
            if let Some(pattern) = args.get(at + 1)
                && *pattern != b"#"
            {
                found.patterns.push(at + 1);
            }
            at += 1;
        } else if is("store") && at + 1 < args.len() {
            store = Some(at + 1);
        }
        at += 1;
    }
    found.keys.extend(store);
    found
}

/// For SORT and SORT_RO, the key positions or why they are refused; `None` for any other
/// command.
pub(super) fn key_positions(command: &str, args: &[&[u8]]) -> Option<Result<Vec<usize>, KeyError>> {
    if command != "sort" && command != "sort_ro" {
        return None;
    }
    let mut found = sort_positions(args);
    if command == "sort_ro" {
        // SORT_RO has no STORE (one is a syntax error), and `sortROGetKeys` lists only the key.
        found.keys.truncate(1);
    }
    Some(if found.patterns.is_empty() {
        Ok(found.keys)
    } else {
        Err(KeyError::SortPatterns)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn positions(line: &str) -> SortPositions {
        let args: Vec<&[u8]> = line.split(' ').map(str::as_bytes).collect();
        sort_positions(&args)
    }

    #[test]
    fn key_store_and_patterns() {
        let found = positions("SORT k BY w_* LIMIT 0 5 GET # GET o_*->f ALPHA STORE a STORE d");
        assert_eq!(found.keys, [1, 15]);
        assert_eq!(found.patterns, [3, 10]);
        assert_eq!(positions("SORT k DESC").keys, [1]);
        // LIMIT's arguments are skipped even when they look like options.
        assert_eq!(positions("SORT k LIMIT store x").keys, [1]);
        // A trailing STORE without a destination names no key.
        assert_eq!(positions("SORT k STORE").keys, [1]);
    }

    #[test]
    fn patterns_are_refused_by_key_positions() {
        let args: Vec<&[u8]> = vec![b"sort", b"k", b"GET", b"#", b"STORE", b"d"];
        assert_eq!(key_positions("sort", &args), Some(Ok(vec![1, 5])));
        let args: Vec<&[u8]> = vec![b"sort_ro", b"k", b"by", b"w_*"];
        assert_eq!(
            key_positions("sort_ro", &args),
            Some(Err(KeyError::SortPatterns))
        );
        assert_eq!(key_positions("get", &args), None);
    }
}
