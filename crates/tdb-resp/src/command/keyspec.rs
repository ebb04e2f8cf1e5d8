//! Redis 7 key specifications and how redis-server evaluates them (`getKeysUsingKeySpecs` in
//! `db.c`): a begin search finds where the keys start, by index or after a keyword; a find-keys
//! rule says how far they run, as a range or as a count read from a numkeys argument.

use super::error::KeyError;
use super::flags::KeySpecFlag;
use crate::frame::wire::parse_int;

/// One key specification of a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySpec {
    pub flags: Vec<KeySpecFlag>,
    pub begin_search: BeginSearch,
    pub find_keys: FindKeys,
    pub notes: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BeginSearch {
    /// Keys start at this argument (the command name is 0).
    Index(i64),
    /// Keys start after `keyword`, searched from `startfrom` (from the end when negative).
    Keyword { keyword: String, startfrom: i64 },
    /// Only the command's own code knows.
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FindKeys {
    /// The last key is `lastkey` after the first (from the end when negative; with a `limit`
    /// only the first 1/limit of the remaining arguments), every `step`th argument.
    Range {
        lastkey: i64,
        step: i64,
        limit: i64,
    },
    /// The argument at `keynumidx` (after the begin search) counts the keys, which start at
    /// `firstkey`, every `step`th argument.
    Keynum {
        keynumidx: i64,
        firstkey: i64,
        step: i64,
    },
    Unknown,
}

/// The pre-7 key range: first, last (from the end when negative) and step; `first` 0 means no
/// keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LegacyRange {
    pub first: i64,
    pub last: i64,
    pub step: i64,
}

impl KeySpec {
    /// Whether evaluating this spec can miss keys: redis-server marks it `incomplete`, or one
    /// of its searches is `unknown`.
    pub fn is_incomplete(&self) -> bool {
        self.flags.contains(&KeySpecFlag::Incomplete)
            || self.begin_search == BeginSearch::Unknown
            || self.find_keys == FindKeys::Unknown
    }

    /// Appends the positions of the keys this spec finds in `args` (the command name first).
    pub(super) fn positions(
        &self,
        command: &str,
        args: &[&[u8]],
        out: &mut Vec<usize>,
    ) -> Result<(), KeyError> {
        let incomplete = || KeyError::Incomplete(command.to_owned());
        let argc = len_i64(args.len());
        let first = match &self.begin_search {
            BeginSearch::Index(index) => *index,
            BeginSearch::Keyword { keyword, startfrom } => {
                match find_keyword(args, keyword, *startfrom) {
                    Some(at) => at + 1,
                    None => return Ok(()),
                }
            }
            BeginSearch::Unknown => return Err(incomplete()),
        };
        let (first, last, step) = match self.find_keys {
            FindKeys::Range {
                lastkey,
                step,
                limit,
            } => (first, range_end(first, argc, lastkey, limit), step),
            FindKeys::Keynum {
                keynumidx,
                firstkey,
                step,
            } => {
                let bad = || KeyError::BadNumkeys(command.to_owned());
                let count = arg(args, first.saturating_add(keynumidx))
                    .and_then(parse_int)
                    .filter(|n| *n >= 0)
                    .ok_or_else(bad)?;
                let first = first.saturating_add(firstkey);
                let last = first.saturating_add(count.saturating_sub(1).saturating_mul(step));
                if count > 0 && last >= argc {
                    return Err(bad());
                }
                (first, last, step)
            }
            FindKeys::Unknown => return Err(incomplete()),
        };
        push_range(first, last, step, argc, out).ok_or_else(incomplete)
    }
}

impl LegacyRange {
    pub(super) fn positions(&self, argc: usize, out: &mut Vec<usize>) -> Option<()> {
        if self.first == 0 {
            return Some(());
        }
        let argc = len_i64(argc);
        let last = if self.last < 0 {
            argc + self.last
        } else {
            self.last
        };
        push_range(self.first, last, self.step, argc, out)
    }
}

/// Where a range of keys ends, as `getKeysUsingKeySpecs` computes it.
fn range_end(first: i64, argc: i64, lastkey: i64, limit: i64) -> i64 {
    if lastkey >= 0 {
        first.saturating_add(lastkey)
    } else if limit <= 0 {
        argc.saturating_add(lastkey)
    } else {
        first.saturating_add((argc - first) / limit + lastkey)
    }
}

/// Appends `first..=last` by `step`, skipping positions past the arguments (a command with a
/// variable arity reports those itself). `None` for a step that would never advance.
fn push_range(first: i64, last: i64, step: i64, argc: i64, out: &mut Vec<usize>) -> Option<()> {
    if step < 1 {
        return None;
    }
    let mut at = first.max(1);
    while at <= last && at < argc {
        out.push(usize::try_from(at).ok()?);
        at = at.checked_add(step)?;
    }
    Some(())
}

/// The position of `keyword` (any case): searched forwards from `startfrom` up to the
/// last-but-one argument, or backwards from `argc + startfrom` down to 1 when negative.
fn find_keyword(args: &[&[u8]], keyword: &str, startfrom: i64) -> Option<i64> {
    let argc = len_i64(args.len());
    let is_keyword =
        |at: &i64| arg(args, *at).is_some_and(|a| a.eq_ignore_ascii_case(keyword.as_bytes()));
    if startfrom > 0 {
        (startfrom..argc - 1).find(is_keyword)
    } else {
        (1..=argc + startfrom).rev().find(is_keyword)
    }
}

fn arg<'a>(args: &[&'a [u8]], at: i64) -> Option<&'a [u8]> {
    usize::try_from(at)
        .ok()
        .and_then(|at| args.get(at))
        .copied()
}

fn len_i64(len: usize) -> i64 {
    i64::try_from(len).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(begin_search: BeginSearch, find_keys: FindKeys) -> KeySpec {
        KeySpec {
            flags: vec![],
            begin_search,
            find_keys,
            notes: None,
        }
    }

    fn positions(spec: &KeySpec, line: &str) -> Result<Vec<usize>, KeyError> {
        let args: Vec<&[u8]> = line.split(' ').map(str::as_bytes).collect();
        let mut out = Vec::new();
        spec.positions("cmd", &args, &mut out).map(|()| out)
    }

    #[test]
    fn index_and_range() {
        let all = spec(
            BeginSearch::Index(1),
            FindKeys::Range {
                lastkey: -1,
                step: 1,
                limit: 0,
            },
        );
        assert_eq!(positions(&all, "DEL a b c"), Ok(vec![1, 2, 3]));
        let pairs = spec(
            BeginSearch::Index(1),
            FindKeys::Range {
                lastkey: -1,
                step: 2,
                limit: 0,
            },
        );
        assert_eq!(positions(&pairs, "MSET a 1 b 2"), Ok(vec![1, 3]));
        let blocking = spec(
            BeginSearch::Index(1),
            FindKeys::Range {
                lastkey: -2,
                step: 1,
                limit: 0,
            },
        );
        assert_eq!(positions(&blocking, "BLPOP a b 0"), Ok(vec![1, 2]));
    }

    #[test]
    fn keyword_with_limit_takes_half_of_the_rest() {
        let streams = spec(
            BeginSearch::Keyword {
                keyword: "STREAMS".into(),
                startfrom: 1,
            },
            FindKeys::Range {
                lastkey: -1,
                step: 1,
                limit: 2,
            },
        );
        assert_eq!(
            positions(&streams, "XREAD COUNT 1 streams s1 s2 0 0"),
            Ok(vec![4, 5])
        );
        assert_eq!(positions(&streams, "XREAD COUNT 1"), Ok(vec![]));
        let backwards = spec(
            BeginSearch::Keyword {
                keyword: "KEYS".into(),
                startfrom: -2,
            },
            FindKeys::Range {
                lastkey: -1,
                step: 1,
                limit: 0,
            },
        );
        assert_eq!(
            positions(&backwards, "MIGRATE h p KEYS 0 5 KEYS a b"),
            Ok(vec![7, 8])
        );
    }

    #[test]
    fn keynum_counts_are_checked() {
        let numkeys = spec(
            BeginSearch::Index(2),
            FindKeys::Keynum {
                keynumidx: 0,
                firstkey: 1,
                step: 1,
            },
        );
        assert_eq!(positions(&numkeys, "EVAL s 2 a b x"), Ok(vec![3, 4]));
        assert_eq!(positions(&numkeys, "EVAL s 0 x"), Ok(vec![]));
        for bad in [
            "EVAL s 3 a b",
            "EVAL s -1 a",
            "EVAL s x a",
            "EVAL s 01 a",
            "EVAL s",
        ] {
            assert_eq!(
                positions(&numkeys, bad),
                Err(KeyError::BadNumkeys("cmd".into())),
                "{bad}"
            );
        }
    }

    #[test]
    fn unknown_searches_are_incomplete() {
        let unknown = spec(BeginSearch::Unknown, FindKeys::Unknown);
        assert!(unknown.is_incomplete());
        assert_eq!(
            positions(&unknown, "SORT k"),
            Err(KeyError::Incomplete("cmd".into()))
        );
    }
}
