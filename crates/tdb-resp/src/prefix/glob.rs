//! Glob patterns as redis-server matches them (`stringmatchlen`: `*`, `?`, `[...]` with `^`
//! and ranges, `\` escaping the next byte). A literal put in front of a client's pattern must
//! have its metacharacters escaped, or a prefix like `t*:` would match every tenant's keys.

/// `literal` as a pattern that matches exactly it: `* ? [ ] \` preceded by a backslash.
pub fn escape_glob(literal: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(literal.len() + 4);
    for &b in literal {
        if matches!(b, b'*' | b'?' | b'[' | b']' | b'\\') {
            out.push(b'\\');
        }
        out.push(b);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metacharacters_are_escaped_and_nothing_else() {
        assert_eq!(escape_glob(b"t1:"), b"t1:");
        assert_eq!(escape_glob(br"a*b?c[d]e\f"), br"a\*b\?c\[d\]e\\f");
        assert_eq!(escape_glob(b""), b"");
    }
}
