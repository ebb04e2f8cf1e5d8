//! Spelling names and values into MariaDB statements. Identifiers are backtick-quoted; a
//! database named in a `GRANT` is also a pattern, where `_` and `%` are wildcards: unescaped,
//! `GRANT … ON shop__acme.*` also opens `shopxyacme`, so every grant goes through
//! [`grant_db`].

/// Backtick-quotes an identifier (a backtick inside is doubled).
pub fn ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// Single-quotes a string literal. Backslashes are doubled too: the server reads them as
/// escapes unless `NO_BACKSLASH_ESCAPES` is set, which tdb's sessions never set.
pub fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "''"))
}

/// A database as a `GRANT … ON <db>.*` names it: the wildcards `_` and `%` (and the escape
/// character itself) escaped, then quoted, so the grant matches this one database only.
pub fn grant_db(name: &str) -> String {
    ident(&grant_pattern(name))
}

/// The escaped database pattern as `mysql.db` stores it (for finding a database's grants).
pub fn grant_pattern(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for c in name.chars() {
        if matches!(c, '\\' | '_' | '%') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The host every tdb-made account has: any. Which hosts reach the server is the listener's
/// business (a private socket for managed servers); the account is keyed by its name alone, so
/// the proxy and tdb's own tools log in as it whatever address they come from.
pub const ANY_HOST: &str = "%";

/// An account name, `'user'@'host'`.
pub fn account(user: &str, host: &str) -> String {
    format!("{}@{}", literal(user), literal(host))
}

/// The `mysql_native_password` hash of `password` (`*` and the upper-case hex of
/// SHA1(SHA1(password))), for `IDENTIFIED BY PASSWORD`: the server stores exactly this, and the
/// plaintext never reaches it (nor its logs).
pub fn native_hash(password: &str) -> String {
    let verifier = tdb_core::secrets::mysql_verifier(password);
    let native = verifier.split(':').next().unwrap_or_default();
    format!("*{}", native.to_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_name_one_database_only() {
        assert_eq!(grant_db("shop__acme"), r"`shop\_\_acme`");
        assert_eq!(grant_db("a%b"), r"`a\%b`");
        assert_eq!(grant_db(r"a\b"), r"`a\\b`");
        assert_eq!(grant_db("we`ird_x"), r"`we``ird\_x`");
        assert_eq!(grant_pattern("plain"), "plain");
    }

    #[test]
    fn identifiers_and_literals_are_quoted() {
        assert_eq!(ident("t"), "`t`");
        assert_eq!(ident("a`b"), "`a``b`");
        assert_eq!(literal("it's"), "'it''s'");
        assert_eq!(literal(r"a\'"), r"'a\\'''");
        assert_eq!(account("app", ANY_HOST), "'app'@'%'");
    }

    #[test]
    fn native_hashes_are_what_mariadb_stores() {
        // SELECT PASSWORD('password') on MariaDB 10.11.
        assert_eq!(
            native_hash("password"),
            "*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19"
        );
    }
}
