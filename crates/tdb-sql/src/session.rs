//! What a batch may do to its session beyond its transaction, for transaction pooling, which
//! hands a server connection to another client after every transaction and must carry each
//! client's settings with it.
//!
//! [`may_change_settings`] runs on every statement, so it does not parse: it reads the first
//! word of each statement with a scanner that knows comments, string literals, quoted
//! identifiers and dollar quotes. It answers "maybe" whenever in doubt (a false "maybe" costs
//! one read of the session's settings; a false "no" would leak them), so the text is scanned
//! twice, once with backslashes escaping quotes and once without, because which applies
//! depends on `standard_conforming_strings`, a setting the client controls.

use pg_query::NodeEnum;

/// Whether `sql` may change session settings: a statement that begins with `SET`, `RESET`,
/// `DISCARD` or `DO` (a block may run anything), or anywhere in the text `set_config`,
/// `pg_settings` (an `UPDATE` of it sets), or `U&` (an identifier in escapes may spell either).
pub fn may_change_settings(sql: &[u8]) -> bool {
    const CHANGES: [&[u8]; 4] = [b"set", b"reset", b"discard", b"do"];
    let changes = |w: &[u8]| CHANGES.iter().any(|k| w.eq_ignore_ascii_case(k));
    contains_ignoring_case(sql, b"set_config")
        || contains_ignoring_case(sql, b"pg_settings")
        || contains_ignoring_case(sql, b"u&")
        || any_leading_word(sql, false, changes)
        || any_leading_word(sql, true, changes)
}

/// A batch that is one `DEALLOCATE` and nothing else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deallocation {
    All,
    Named(String),
}

/// The `DEALLOCATE` that `sql` (up to a NUL) is, if it is exactly one (what drivers send to drop
/// a prepared statement); the parse settles it once the first word says it may be.
pub fn deallocation(sql: &[u8]) -> Option<Deallocation> {
    let sql = &sql[..sql.iter().position(|b| *b == 0).unwrap_or(sql.len())];
    // One statement, and it begins with DEALLOCATE.
    let mut words = 0;
    let mut first_is_deallocate = false;
    any_leading_word(sql, false, |w| {
        words += 1;
        first_is_deallocate = words == 1 && w.eq_ignore_ascii_case(b"deallocate");
        !first_is_deallocate
    });
    if words != 1 || !first_is_deallocate {
        return None;
    }
    let sql = std::str::from_utf8(sql).ok()?;
    let parsed = pg_query::parse(sql, pg_query::ParserOptions::DEFAULT).ok()?;
    let [raw] = parsed.protobuf.stmts.as_slice() else {
        return None;
    };
    match raw.stmt.as_ref()?.node.as_ref()? {
        NodeEnum::DeallocateStmt(d) if d.isall || d.name.is_empty() => Some(Deallocation::All),
        NodeEnum::DeallocateStmt(d) => Some(Deallocation::Named(d.name.clone())),
        _ => None,
    }
}

/// The custom settings (names with a dot, such as `app.uid`) that `sql` sets with `SET` or with
/// `set_config` and a constant name: the server lists these nowhere, so whoever must read a
/// session's settings back needs their names. Empty when `sql` does not parse.
pub fn custom_settings(sql: &str) -> Vec<String> {
    use pg_query::NodeRef;
    let Ok(parsed) = pg_query::parse(sql, pg_query::ParserOptions::DEFAULT) else {
        return Vec::new();
    };
    let mut names = Vec::new();
    for (node, ..) in parsed.protobuf.nodes() {
        let name = match node {
            NodeRef::VariableSetStmt(v) => Some(v.name.clone()),
            NodeRef::FuncCall(f) if calls_set_config(f) => f.args.first().and_then(constant_text),
            _ => None,
        };
        if let Some(name) = name.filter(|n| n.contains('.'))
            && !names.contains(&name)
        {
            names.push(name);
        }
    }
    names
}

fn calls_set_config(f: &pg_query::protobuf::FuncCall) -> bool {
    f.funcname.last().is_some_and(|n| {
        matches!(&n.node, Some(NodeEnum::String(s)) if s.sval.eq_ignore_ascii_case("set_config"))
    })
}

/// A string constant, also under a cast (`'app.uid'::text`).
fn constant_text(node: &pg_query::protobuf::Node) -> Option<String> {
    match node.node.as_ref()? {
        NodeEnum::AConst(c) => match c.val.as_ref()? {
            pg_query::protobuf::a_const::Val::Sval(s) => Some(s.sval.clone()),
            _ => None,
        },
        NodeEnum::TypeCast(t) => constant_text(t.arg.as_ref()?),
        _ => None,
    }
}

fn contains_ignoring_case(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

/// Whether `found` holds for the first word of a statement in `sql` (a statement that begins
/// with anything else, such as a parenthesis, has none), trying each in order and stopping at
/// the first that does. `backslash_escapes`: a backslash inside '…' escapes the next byte, as
/// with `standard_conforming_strings` off.
fn any_leading_word(
    sql: &[u8],
    backslash_escapes: bool,
    mut found: impl FnMut(&[u8]) -> bool,
) -> bool {
    let mut at_start = true;
    let mut i = 0;
    while i < sql.len() {
        match sql[i] {
            b';' => {
                at_start = true;
                i += 1;
            }
            b if is_space(b) => i += 1,
            b'-' if sql.get(i + 1) == Some(&b'-') => i = after_line_comment(sql, i),
            b'/' if sql.get(i + 1) == Some(&b'*') => i = after_block_comment(sql, i),
            b'\'' => {
                i = after_quoted(sql, i, b'\'', backslash_escapes);
                at_start = false;
            }
            b'"' => {
                i = after_quoted(sql, i, b'"', false);
                at_start = false;
            }
            b'$' => {
                i = after_dollar(sql, i);
                at_start = false;
            }
            b if is_word_byte(b) && !b.is_ascii_digit() => {
                let start = i;
                while i < sql.len() && (is_word_byte(sql[i]) || sql[i] == b'$') {
                    i += 1;
                }
                let word = &sql[start..i];
                if word.eq_ignore_ascii_case(b"e") && sql.get(i) == Some(&b'\'') {
                    // E'…': backslashes escape whatever the settings.
                    i = after_quoted(sql, i, b'\'', true);
                } else if at_start && found(word) {
                    return true;
                }
                at_start = false;
            }
            _ => {
                at_start = false;
                i += 1;
            }
        }
    }
    false
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80
}

/// PostgreSQL's whitespace: space, tab, newline, carriage return, form feed, vertical tab.
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0c | 0x0b)
}

/// Past a `--` comment at `open`: it ends at a newline or a carriage return.
fn after_line_comment(sql: &[u8], open: usize) -> usize {
    sql[open..]
        .iter()
        .position(|b| matches!(b, b'\n' | b'\r'))
        .map_or(sql.len(), |n| open + n + 1)
}

/// Past a literal or identifier opened at `open` by `quote`; a doubled quote stays inside. A
/// string literal followed by whitespace holding a newline and another quote goes on there, in
/// the same escape mode (PostgreSQL joins the two).
fn after_quoted(sql: &[u8], open: usize, quote: u8, backslash_escapes: bool) -> usize {
    let mut i = open + 1;
    while i < sql.len() {
        match sql[i] {
            b'\\' if backslash_escapes => i += 2,
            q if q == quote && sql.get(i + 1) == Some(&quote) => i += 2,
            q if q == quote => match continuation(sql, i + 1) {
                Some(next) if quote == b'\'' => i = next + 1,
                _ => return i + 1,
            },
            _ => i += 1,
        }
    }
    sql.len()
}

/// Where a string literal continues after `from`: the quote that follows whitespace (and `--`
/// comments) holding at least one newline.
fn continuation(sql: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    let mut newline = false;
    while i < sql.len() {
        match sql[i] {
            b'\n' | b'\r' => {
                newline = true;
                i += 1;
            }
            b if is_space(b) => i += 1,
            b'-' if sql.get(i + 1) == Some(&b'-') => i = after_line_comment(sql, i),
            b'\'' if newline => return Some(i),
            _ => return None,
        }
    }
    None
}

/// Past a (nested) block comment opened at `open`.
fn after_block_comment(sql: &[u8], open: usize) -> usize {
    let mut depth = 0usize;
    let mut i = open;
    while i + 1 < sql.len() {
        match (sql[i], sql[i + 1]) {
            (b'/', b'*') => {
                depth += 1;
                i += 2;
            }
            (b'*', b'/') => {
                depth -= 1;
                i += 2;
                if depth == 0 {
                    return i;
                }
            }
            _ => i += 1,
        }
    }
    sql.len()
}

/// Past a dollar-quoted string opened at `open` (`$$` or `$tag$`); past the `$` alone when it
/// opens none (a parameter such as `$1`).
fn after_dollar(sql: &[u8], open: usize) -> usize {
    let tag_end = sql[open + 1..]
        .iter()
        .position(|b| !(is_word_byte(*b)))
        .map(|n| open + 1 + n);
    let Some(close) = tag_end.filter(|&e| sql[e] == b'$') else {
        return open + 1;
    };
    if sql.get(open + 1).is_some_and(u8::is_ascii_digit) {
        return open + 1;
    }
    let tag = &sql[open..=close];
    sql[close + 1..]
        .windows(tag.len())
        .position(|w| w == tag)
        .map_or(sql.len(), |n| close + 1 + n + tag.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_changes_are_found_wherever_a_statement_starts() {
        for sql in [
            "SET timezone = 'UTC'",
            "  set search_path = x",
            "BEGIN; SET LOCAL work_mem = '1MB'; COMMIT",
            "/* a /* nested */ comment */ RESET ALL",
            "-- note\nDISCARD ALL",
            "SELECT 1;reset timezone",
            "DO $$BEGIN PERFORM 1; END$$",
            "SELECT pg_catalog.SET_CONFIG('a.b', 'c', false)",
            // Whichever way backslashes are read, a SET may follow the literal.
            "SELECT 'a\\'; SET x.y = 1; --'",
            "SELECT 'a\\''; SET x.y = 1",
            // What the review of these rules found: a comment that ends at a carriage return,
            // a vertical tab, a literal continuing an E'' one (so in its escape mode), and
            // identifiers or tables that set by other names.
            "-- x\rSET app.uid = 'alice'",
            "\x0bSET app.uid = 'alice'",
            "SELECT E'x'\n'\\''; SELECT 'y\\'; SET app.u = 'alice'; --'",
            "SELECT U&\"set\\005fconfig\"('app.u', 'a', false)",
            "UPDATE pg_settings SET setting = 'x' WHERE name = 'search_path'",
        ] {
            assert!(may_change_settings(sql.as_bytes()), "{sql}");
        }
        for sql in [
            "UPDATE t SET a = 1",
            "SELECT 'x; SET a = 1'",
            "SELECT $tag$; SET a = 1$tag$",
            "SELECT \"x; set\" FROM t",
            "-- SET a = 1\nSELECT 1",
            "/* ; SET a = 1 */ SELECT 1",
            "SELECT E'\\'; SET a = 1'",
            "INSERT INTO t VALUES ($1, $2)",
            "SELECT offset_set FROM dataset",
        ] {
            assert!(!may_change_settings(sql.as_bytes()), "{sql}");
        }
    }

    #[test]
    fn custom_settings_are_named_from_set_and_set_config() {
        assert_eq!(
            custom_settings(
                "SET app.uid = 'a'; SELECT set_config('app.tenant'::text, $1, false), \
                 pg_catalog.set_config('app.uid', 'b', false); SET timezone = 'UTC'; \
                 SELECT set_config($2, 'x', false)"
            ),
            ["app.uid", "app.tenant"]
        );
        assert_eq!(custom_settings("SET LOCAL app.x TO 1"), ["app.x"]);
        assert!(custom_settings("SELECT 'app.uid'").is_empty());
        assert!(custom_settings("SET app.").is_empty());
    }

    #[test]
    fn one_deallocate_is_recognised_and_nothing_else() {
        assert_eq!(
            deallocation("DEALLOCATE ALL".as_bytes()),
            Some(Deallocation::All)
        );
        assert_eq!(
            deallocation("deallocate prepare all".as_bytes()),
            Some(Deallocation::All)
        );
        assert_eq!(
            deallocation("DEALLOCATE \"_pg3_0\"".as_bytes()),
            Some(Deallocation::Named("_pg3_0".into()))
        );
        assert_eq!(
            deallocation(" DEALLOCATE PREPARE s1 ;".as_bytes()),
            Some(Deallocation::Named("s1".into()))
        );
        assert_eq!(deallocation("DEALLOCATE a; DEALLOCATE b".as_bytes()), None);
        assert_eq!(deallocation("SELECT 'DEALLOCATE ALL'".as_bytes()), None);
        assert_eq!(deallocation("DEALLOCATE".as_bytes()), None);
    }
}
