//! Validated names. A value of these types exists only if it passed its rule, so code past the
//! API edge never re-checks (or forgets to check) a name.

use std::fmt;

/// Why a name was refused; the message names the rule, the caller names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NameError(pub String);

/// Workspace, blueprint and tenant names: `^[a-z][a-z0-9_]{0,62}$` without `__`, the separator
/// of routing names (`<blueprint>__<tenant>`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ResourceName(String);

impl ResourceName {
    pub const RULE: &'static str = "must match ^[a-z][a-z0-9_]{0,62}$ and must not contain '__'";

    pub fn parse(s: &str) -> Result<Self, NameError> {
        let bytes = s.as_bytes();
        let shape_ok = !bytes.is_empty()
            && bytes.len() <= 63
            && bytes[0].is_ascii_lowercase()
            && bytes
                .iter()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_');
        if !shape_ok || s.contains("__") {
            return Err(NameError(Self::RULE.to_string()));
        }
        Ok(Self(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ResourceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A project's display name ("Healthcare SaaS"): 1 to 63 characters, no control characters, no
/// leading or trailing space, no `__`, and not shaped like a project id (`switch` accepts both).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ProjectName(String);

impl ProjectName {
    pub const MAX_CHARS: usize = 63;

    pub fn parse(s: &str) -> Result<Self, NameError> {
        let chars = s.chars().count();
        if chars == 0 || chars > Self::MAX_CHARS {
            return Err(NameError(format!(
                "must be 1 to {} characters",
                Self::MAX_CHARS
            )));
        }
        if s.chars().any(char::is_control) || s.trim() != s {
            return Err(NameError(
                "must not contain control characters or leading/trailing spaces".into(),
            ));
        }
        if s.contains("__") {
            return Err(NameError("must not contain '__'".into()));
        }
        if crate::ids::looks_like_project_id(s) {
            return Err(NameError("must not look like a project id".into()));
        }
        Ok(Self(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An account's e-mail address, lower-cased. The check is deliberately simple (one `@`, a dotted
/// domain, no spaces, at most 254 bytes): the real proof of an address is mail, not a regex.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

impl Email {
    pub fn parse(s: &str) -> Result<Self, NameError> {
        let invalid = || NameError("must be a valid e-mail address".into());
        if s.len() > 254 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid());
        }
        let (local, domain) = s.split_once('@').ok_or_else(invalid)?;
        let domain_ok = domain.contains('.')
            && !domain.contains('@')
            && domain.split('.').all(|label| !label.is_empty());
        if local.is_empty() || local.len() > 64 || !domain_ok {
            return Err(invalid());
        }
        Ok(Self(s.to_ascii_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Account passwords: at least 8 characters; at most 1024 bytes so hashing cost stays bounded.
pub fn check_password(s: &str) -> Result<(), NameError> {
    if s.chars().count() < 8 {
        return Err(NameError("must be at least 8 characters".into()));
    }
    if s.len() > 1024 {
        return Err(NameError("must be at most 1024 bytes".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn resource_names_follow_the_rule() {
        for ok in ["a", "myapp", "acme_corp", "a1", &"a".repeat(63)] {
            assert!(ResourceName::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "1abc",
            "_abc",
            "Acme",
            "acme__corp",
            "a-b",
            "a b",
            "é",
            &"a".repeat(64),
        ] {
            assert!(ResourceName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn project_names_allow_display_text_but_not_the_separator() {
        assert!(ProjectName::parse("Healthcare SaaS").is_ok());
        assert!(ProjectName::parse("E-commerce Platform").is_ok());
        assert!(ProjectName::parse("my__project").is_err());
        assert!(ProjectName::parse(" padded").is_err());
        assert!(ProjectName::parse("tab\there").is_err());
        assert!(ProjectName::parse("tdb_0123456789abcdef").is_err());
        assert!(ProjectName::parse(&"x".repeat(64)).is_err());
    }

    #[test]
    fn emails() {
        assert_eq!(
            Email::parse("Alice@Example.COM").map(|e| e.0),
            Ok("alice@example.com".into())
        );
        for bad in [
            "",
            "alice",
            "@example.com",
            "alice@",
            "alice@example",
            "a b@example.com",
            "a@b@c.com",
            "alice@example..com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn passwords() {
        assert!(check_password("short").is_err());
        assert!(check_password("longenough").is_ok());
        assert!(check_password(&"p".repeat(2000)).is_err());
    }

    proptest! {
        #[test]
        fn accepted_resource_names_never_hold_the_separator(s in "\\PC{0,80}") {
            if let Ok(name) = ResourceName::parse(&s) {
                prop_assert!(!name.as_str().contains("__"));
                prop_assert!(name.as_str().len() <= 63);
            }
            let _ = ProjectName::parse(&s);
            let _ = Email::parse(&s);
        }
    }
}
