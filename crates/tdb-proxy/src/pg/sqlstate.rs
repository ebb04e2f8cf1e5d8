//! The SQLSTATE codes the proxy sends or looks for, named as PostgreSQL's `errcodes.txt` names
//! them: each is spelled once, here (a test holds the rest of the crate to that).

pub const WARNING: &str = "01000";
pub const CONNECTION_FAILURE: &str = "08006";
pub const PROTOCOL_VIOLATION: &str = "08P01";
pub const FEATURE_NOT_SUPPORTED: &str = "0A000";
pub const INVALID_PARAMETER_VALUE: &str = "22023";
pub const INVALID_AUTHORIZATION_SPECIFICATION: &str = "28000";
pub const INVALID_PASSWORD: &str = "28P01";
/// "database … does not exist".
pub const INVALID_CATALOG_NAME: &str = "3D000";
pub const INSUFFICIENT_PRIVILEGE: &str = "42501";
pub const UNDEFINED_OBJECT: &str = "42704";
/// "prepared statement … does not exist".
pub const INVALID_SQL_STATEMENT_NAME: &str = "26000";
pub const TOO_MANY_CONNECTIONS: &str = "53300";
pub const CANT_CHANGE_RUNTIME_PARAM: &str = "55P02";
pub const QUERY_CANCELED: &str = "57014";
pub const ADMIN_SHUTDOWN: &str = "57P01";
pub const CANNOT_CONNECT_NOW: &str = "57P03";
pub const INTERNAL_ERROR: &str = "XX000";

/// What a server answers when it refuses a run-time parameter a client asked for: its name,
/// its value, or the role's right to set it. The proxy relays these as they are.
pub const PARAMETER_REFUSALS: [&str; 4] = [
    UNDEFINED_OBJECT,
    INVALID_PARAMETER_VALUE,
    INSUFFICIENT_PRIVILEGE,
    CANT_CHANGE_RUNTIME_PARAM,
];

/// `code` as one of [`PARAMETER_REFUSALS`], if it is one.
pub fn parameter_refusal(code: &str) -> Option<&'static str> {
    PARAMETER_REFUSALS.iter().copied().find(|c| *c == code)
}

/// The SQLSTATE a refusal of the core is sent with.
#[cfg(feature = "server")]
pub fn of_refusal(reason: crate::refusal::Reason) -> &'static str {
    use crate::refusal::Reason;
    match reason {
        Reason::TooMany => TOO_MANY_CONNECTIONS,
        Reason::Unavailable => CANNOT_CONNECT_NOW,
        Reason::NoSuchDatabase => INVALID_CATALOG_NAME,
        Reason::NotAllowed => INSUFFICIENT_PRIVILEGE,
        Reason::LoginsThrottled => INVALID_AUTHORIZATION_SPECIFICATION,
        Reason::ShuttingDown => ADMIN_SHUTDOWN,
        Reason::Internal => INTERNAL_ERROR,
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// Five characters of digits and capitals with at least one digit, in quotes: a SQLSTATE.
    fn sqlstate_literals(code: &str) -> Vec<String> {
        let bytes = code.as_bytes();
        let mut found = Vec::new();
        for i in 0..bytes.len().saturating_sub(6) {
            let w = &bytes[i..i + 7];
            let inner = &w[1..6];
            if w[0] == b'"'
                && w[6] == b'"'
                && inner
                    .iter()
                    .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
                && inner.iter().any(u8::is_ascii_digit)
            {
                found.push(String::from_utf8_lossy(inner).into_owned());
            }
        }
        found
    }

    fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("src").flatten() {
            let path = entry.path();
            if path.is_dir() {
                sources(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    #[test]
    fn no_sqlstate_is_spelled_outside_this_table() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        sources(&src, &mut files);
        assert!(files.len() > 10, "{files:?}");
        let mut stray = Vec::new();
        for file in files {
            // The MySQL proxy keeps its SQLSTATEs in a table of its own; test modules may
            // spell what they expect (and numbers that only look like SQLSTATEs).
            let in_tests = file.components().any(|c| c.as_os_str() == "tests");
            if file.ends_with("pg/sqlstate.rs") || file.ends_with("mysql/errno.rs") || in_tests {
                continue;
            }
            let text = std::fs::read_to_string(&file).expect("read");
            // Tests may spell what they expect.
            let code = text.split("#[cfg(test)]").next().unwrap_or_default();
            for literal in sqlstate_literals(code) {
                stray.push(format!("{}: {literal}", file.display()));
            }
        }
        assert!(
            stray.is_empty(),
            "SQLSTATEs spelled outside sqlstate.rs: {stray:#?}"
        );
        assert_eq!(
            sqlstate_literals(r#"x("42501") "BEGIN" "0A000""#),
            ["42501", "0A000"]
        );
    }
}
