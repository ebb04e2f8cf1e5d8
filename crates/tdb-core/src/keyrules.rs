//! A Redis workspace's rules for its keys, the reference's `default_ttl`, `max_keys` and
//! `patterns`. They live in the workspace's settings beside the limits every engine has, are
//! copied into each blueprint version, and reach a tenant with a deployment; the Redis proxy
//! applies the version its tenant is at.
//!
//! A key written without an expiry of its own gets the TTL of the most specific pattern it
//! matches, or else `default_ttl`. "Most specific" is the longest pattern, then the first in
//! byte order: `cache:user:*` wins over `cache:*`, whatever order the request listed them in.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The TTL a pattern gives the keys it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatternRule {
    /// Seconds.
    pub ttl: u64,
}

/// The rules, as stored and as `GET/PATCH /workspaces/{id}/settings` show them for Redis.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct KeyRules {
    /// Seconds a key written without a TTL lives; none when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_ttl: Option<u64>,
    /// Keys one tenant may hold: a write that would create one more is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_keys: Option<u64>,
    /// Glob patterns (Redis's syntax: `*`, `?`, `[…]`, `\`) and the TTL of the keys they match.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub patterns: BTreeMap<String, PatternRule>,
}

/// A rule that cannot be kept, and the field it is in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct RuleError {
    pub field: String,
    pub message: String,
}

impl KeyRules {
    pub const FIELDS: [&'static str; 3] = ["default_ttl", "max_keys", "patterns"];
    /// One second to ten years.
    pub const TTL: (u64, u64) = (1, 10 * 365 * 86_400);
    pub const MAX_KEYS: (u64, u64) = (1, 1_000_000_000);
    pub const MAX_PATTERNS: usize = 100;
    pub const MAX_PATTERN_LEN: usize = 256;

    /// The rules in a stored settings document (absent fields are absent rules).
    pub fn from_json(value: &serde_json::Value) -> Self {
        Self {
            default_ttl: value.get("default_ttl").and_then(serde_json::Value::as_u64),
            max_keys: value.get("max_keys").and_then(serde_json::Value::as_u64),
            patterns: value
                .get("patterns")
                .and_then(|p| serde_json::from_value(p.clone()).ok())
                .unwrap_or_default(),
        }
    }

    /// Writes the rules into a stored settings document, replacing the ones there.
    pub fn merge_into(&self, value: &mut serde_json::Value) {
        let Some(map) = value.as_object_mut() else {
            return;
        };
        for field in Self::FIELDS {
            map.remove(field);
        }
        if let Ok(serde_json::Value::Object(rules)) = serde_json::to_value(self) {
            map.extend(rules);
        }
    }

    /// Whether every rule can be kept: TTLs and the key limit in range, patterns that are
    /// well-formed globs of a sensible size.
    pub fn validate(&self) -> Result<(), RuleError> {
        let error = |field: &str, message: String| RuleError {
            field: field.to_string(),
            message,
        };
        let (lo, hi) = Self::TTL;
        if let Some(ttl) = self.default_ttl
            && !(lo..=hi).contains(&ttl)
        {
            return Err(error(
                "default_ttl",
                format!("must be between {lo} and {hi} seconds"),
            ));
        }
        let (lo_keys, hi_keys) = Self::MAX_KEYS;
        if let Some(max) = self.max_keys
            && !(lo_keys..=hi_keys).contains(&max)
        {
            return Err(error(
                "max_keys",
                format!("must be between {lo_keys} and {hi_keys}"),
            ));
        }
        if self.patterns.len() > Self::MAX_PATTERNS {
            return Err(error(
                "patterns",
                format!("at most {} patterns", Self::MAX_PATTERNS),
            ));
        }
        for (pattern, rule) in &self.patterns {
            let field = format!("patterns.{pattern}");
            if pattern.is_empty() || pattern.len() > Self::MAX_PATTERN_LEN {
                return Err(error(
                    &field,
                    format!("a pattern has 1 to {} characters", Self::MAX_PATTERN_LEN),
                ));
            }
            if let Err(why) = check_glob(pattern.as_bytes()) {
                return Err(error(&field, why.to_string()));
            }
            if !(lo..=hi).contains(&rule.ttl) {
                return Err(error(
                    &field,
                    format!("ttl must be between {lo} and {hi} seconds"),
                ));
            }
        }
        Ok(())
    }

    /// The TTL (seconds) a key written without one gets: its most specific pattern's, else the
    /// default; `None` when it keeps none.
    pub fn ttl_for(&self, key: &[u8]) -> Option<u64> {
        self.patterns
            .iter()
            .filter(|(pattern, _)| glob_match(pattern.as_bytes(), key))
            .max_by(|(a, _), (b, _)| a.len().cmp(&b.len()).then_with(|| b.cmp(a)))
            .map(|(_, rule)| rule.ttl)
            .or(self.default_ttl)
    }

    /// Whether any rule gives keys a TTL.
    pub fn gives_ttls(&self) -> bool {
        self.default_ttl.is_some() || !self.patterns.is_empty()
    }
}

/// Why `pattern` is not a glob Redis reads the way it looks: an unclosed `[`, or a trailing
/// lone `\`.
fn check_glob(pattern: &[u8]) -> Result<(), &'static str> {
    let mut i = 0;
    while i < pattern.len() {
        match pattern[i] {
            b'\\' if i + 1 == pattern.len() => return Err("ends with a lone backslash"),
            b'\\' => i += 2,
            b'[' => {
                let mut j = i + 1;
                if pattern.get(j) == Some(&b'^') {
                    j += 1;
                }
                // A `]` right after `[` (or `[^`) closes an empty class in Redis.
                loop {
                    match pattern.get(j) {
                        None => return Err("has a [ without its ]"),
                        Some(b'\\') => j += 2,
                        Some(b']') => break,
                        Some(_) => j += 1,
                    }
                }
                i = j + 1;
            }
            _ => i += 1,
        }
    }
    Ok(())
}

/// Redis's glob matching (`stringmatchlen`, case-sensitive) of `text` against `pattern`:
/// `*` any run, `?` one byte, `[abc]`, `[^abc]`, `[a-z]`, and `\` quoting the next byte.
pub fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    // Where to resume after the last `*`: the pattern after it, and the text it has taken.
    let mut star: Option<(usize, usize)> = None;
    loop {
        if p < pattern.len() {
            match pattern[p] {
                b'*' => {
                    while pattern.get(p) == Some(&b'*') {
                        p += 1;
                    }
                    star = Some((p, t));
                    continue;
                }
                _ if t < text.len() => {
                    if let Some(next) = match_one(pattern, p, text[t]) {
                        p = next;
                        t += 1;
                        continue;
                    }
                }
                _ => {}
            }
        } else if t == text.len() {
            return true;
        }
        // A mismatch: let the last `*` take one more byte, or fail.
        match star {
            Some((sp, st)) if st < text.len() => {
                star = Some((sp, st + 1));
                p = sp;
                t = st + 1;
            }
            _ => return false,
        }
    }
}

/// Whether the pattern element at `p` (not `*`) matches `byte`; the index after it if so.
fn match_one(pattern: &[u8], p: usize, byte: u8) -> Option<usize> {
    match pattern[p] {
        b'?' => Some(p + 1),
        b'\\' if p + 1 < pattern.len() => (pattern[p + 1] == byte).then_some(p + 2),
        b'[' => {
            let mut i = p + 1;
            let negate = pattern.get(i) == Some(&b'^');
            if negate {
                i += 1;
            }
            let mut matched = false;
            loop {
                match pattern.get(i) {
                    // Unclosed: Redis treats the rest as the class.
                    None => break,
                    Some(b']') => {
                        i += 1;
                        break;
                    }
                    Some(b'\\') if i + 1 < pattern.len() => {
                        matched |= pattern[i + 1] == byte;
                        i += 2;
                    }
                    Some(&lo) if pattern.get(i + 1) == Some(&b'-') && i + 2 < pattern.len() => {
                        let hi = pattern[i + 2];
                        let (lo, hi) = if lo <= hi { (lo, hi) } else { (hi, lo) };
                        matched |= (lo..=hi).contains(&byte);
                        i += 3;
                    }
                    Some(&c) => {
                        matched |= c == byte;
                        i += 1;
                    }
                }
            }
            (matched != negate).then_some(i)
        }
        c => (c == byte).then_some(p + 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(json: serde_json::Value) -> KeyRules {
        serde_json::from_value(json).expect("rules")
    }

    #[test]
    fn globs_match_as_redis_matches_them() {
        for (pattern, text, expected) in [
            ("cache:*", "cache:a", true),
            ("cache:*", "cache:", true),
            ("cache:*", "cach", false),
            ("*", "", true),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("h[ae]llo", "hello", true),
            ("h[^e]llo", "hello", false),
            ("h[^e]llo", "hallo", true),
            ("h[a-b]llo", "hbllo", true),
            ("h[b-a]llo", "hallo", true),
            (r"a\*b", "a*b", true),
            (r"a\*b", "axb", false),
            ("*:*:x", "a:b:c:x", true),
            ("*:*:x", "a:x", false),
            ("s*ss", "sssss", true),
        ] {
            assert_eq!(
                glob_match(pattern.as_bytes(), text.as_bytes()),
                expected,
                "{pattern} ~ {text}"
            );
        }
    }

    #[test]
    fn the_most_specific_pattern_gives_the_ttl_and_the_default_the_rest() {
        let r = rules(serde_json::json!({
            "default_ttl": 3600,
            "patterns": {"cache:*": {"ttl": 300}, "cache:user:*": {"ttl": 60}, "session:*": {"ttl": 86400}}
        }));
        assert_eq!(r.ttl_for(b"cache:user:7"), Some(60));
        assert_eq!(r.ttl_for(b"cache:page"), Some(300));
        assert_eq!(r.ttl_for(b"session:x"), Some(86400));
        assert_eq!(r.ttl_for(b"other"), Some(3600));
        assert_eq!(KeyRules::default().ttl_for(b"other"), None);
        assert!(r.validate().is_ok());
    }

    #[test]
    fn rules_out_of_range_or_malformed_are_named() {
        for (json, field) in [
            (serde_json::json!({"default_ttl": 0}), "default_ttl"),
            (serde_json::json!({"max_keys": 0}), "max_keys"),
            (
                serde_json::json!({"patterns": {"a[": {"ttl": 5}}}),
                "patterns.a[",
            ),
            (
                serde_json::json!({"patterns": {"a\\": {"ttl": 5}}}),
                "patterns.a\\",
            ),
            (
                serde_json::json!({"patterns": {"a:*": {"ttl": 0}}}),
                "patterns.a:*",
            ),
        ] {
            let e = rules(json.clone()).validate().expect_err("refused");
            assert_eq!(e.field, field, "{json}");
        }
        let unknown = serde_json::from_value::<KeyRules>(
            serde_json::json!({"patterns": {"a:*": {"ttl": 5, "max": 1}}}),
        );
        assert!(unknown.is_err());
    }

    #[test]
    fn rules_merge_into_stored_settings_beside_the_limits() {
        let mut stored = serde_json::json!({"max_connections": 10, "default_ttl": 5});
        let r = rules(serde_json::json!({"max_keys": 100, "patterns": {"x:*": {"ttl": 9}}}));
        r.merge_into(&mut stored);
        assert_eq!(
            stored,
            serde_json::json!({"max_connections": 10, "max_keys": 100, "patterns": {"x:*": {"ttl": 9}}})
        );
        assert_eq!(KeyRules::from_json(&stored), r);
    }
}
