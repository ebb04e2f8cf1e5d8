//! A tenant's key prefix and the rewrites that apply it.

use bytes::{BufMut, Bytes, BytesMut};

use super::glob::escape_glob;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrefixError {
    #[error("a key prefix cannot be empty")]
    Empty,
    #[error("argument {position} is past the end of the request")]
    NoSuchArgument { position: usize },
}

/// A non-empty key prefix, with its glob-escaped form computed once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prefix {
    raw: Bytes,
    escaped: Bytes,
}

impl Prefix {
    pub fn new(raw: impl Into<Bytes>) -> Result<Self, PrefixError> {
        let raw = raw.into();
        if raw.is_empty() {
            return Err(PrefixError::Empty);
        }
        let escaped = escape_glob(&raw).into();
        Ok(Self { raw, escaped })
    }

    pub fn as_bytes(&self) -> &Bytes {
        &self.raw
    }

    /// `key` with the prefix in front.
    pub fn key(&self, key: &[u8]) -> Bytes {
        let mut out = BytesMut::with_capacity(self.raw.len() + key.len());
        out.put_slice(&self.raw);
        out.put_slice(key);
        out.freeze()
    }

    /// A copy of `args` with the arguments at `positions` prefixed (each once, however often
    /// it is listed); the others are shared, not copied.
    pub fn apply(&self, args: &[Bytes], positions: &[usize]) -> Result<Vec<Bytes>, PrefixError> {
        let mut out = args.to_vec();
        let mut done = vec![false; args.len()];
        for &position in positions {
            let seen = done
                .get_mut(position)
                .ok_or(PrefixError::NoSuchArgument { position })?;
            if !*seen {
                *seen = true;
                out[position] = self.key(&args[position]);
            }
        }
        Ok(out)
    }

    /// The key without the prefix, or `None` when the key does not have it (a name from
    /// outside the tenant, which a proxy must never pass on).
    pub fn strip(&self, key: &Bytes) -> Option<Bytes> {
        key.starts_with(&self.raw)
            .then(|| key.slice(self.raw.len()..))
    }

    /// The client's glob `pattern` anchored in the prefix: it matches exactly the prefixed
    /// names whose rest matches `pattern`. A pattern cannot reach back into the escaped prefix,
    /// so no name outside the prefix can match, whatever the pattern holds.
    pub fn pattern(&self, pattern: &[u8]) -> Bytes {
        let mut out = BytesMut::with_capacity(self.escaped.len() + pattern.len());
        out.put_slice(&self.escaped);
        out.put_slice(pattern);
        out.freeze()
    }

    /// A pattern made by [`Prefix::pattern`] without the escaped prefix (as a pattern
    /// subscription's confirmation names it), or `None` when it does not start with it.
    pub fn strip_pattern(&self, pattern: &Bytes) -> Option<Bytes> {
        pattern
            .starts_with(&self.escaped)
            .then(|| pattern.slice(self.escaped.len()..))
    }

    /// The pattern for every name in the prefix, for SCAN without MATCH.
    pub fn match_all(&self) -> Bytes {
        self.pattern(b"*")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<Bytes> {
        line.split(' ')
            .map(|a| Bytes::copy_from_slice(a.as_bytes()))
            .collect()
    }

    #[test]
    fn apply_prefixes_the_listed_positions_once() {
        let prefix = Prefix::new("t1:").expect("non-empty");
        let out = prefix
            .apply(&args("MSET a 1 b 2"), &[1, 3, 3])
            .expect("in range");
        assert_eq!(out, args("MSET t1:a 1 t1:b 2"));
        assert_eq!(
            prefix.apply(&args("GET a"), &[2]),
            Err(PrefixError::NoSuchArgument { position: 2 })
        );
    }

    #[test]
    fn strip_says_whether_the_key_had_the_prefix() {
        let prefix = Prefix::new("t1:").expect("non-empty");
        assert_eq!(prefix.strip(&Bytes::from("t1:a")), Some(Bytes::from("a")));
        assert_eq!(prefix.strip(&Bytes::from("t1:")), Some(Bytes::new()));
        assert_eq!(prefix.strip(&Bytes::from("t2:a")), None);
        assert_eq!(prefix.strip(&Bytes::from("t1")), None);
    }

    #[test]
    fn patterns_are_anchored_behind_the_escaped_prefix() {
        let prefix = Prefix::new(r"t*[\:").expect("non-empty");
        assert_eq!(prefix.pattern(b"a?"), Bytes::from(r"t\*\[\\:a?"));
        assert_eq!(prefix.match_all(), Bytes::from(r"t\*\[\\:*"));
        assert_eq!(
            prefix.strip_pattern(&prefix.pattern(b"a*")),
            Some(Bytes::from("a*"))
        );
        assert_eq!(prefix.strip_pattern(&Bytes::from(r"t*[\:a")), None);
        assert_eq!(Prefix::new(""), Err(PrefixError::Empty));
    }
}
