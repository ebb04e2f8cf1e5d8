//! MySQL statement text as the server will read it, before any parser sees it: batches split at
//! `;` outside strings, identifiers and comments, comments dropped, and *executable* comments
//! (`/*! … */`, `/*!40101 … */`, MariaDB's `/*M!100300 … */`) opened up, because the server runs
//! what they hold: `/*!50000 DROP DATABASE x */` is a DROP DATABASE, not a comment.
//!
//! Where a string ends depends on the session's `sql_mode` (`NO_BACKSLASH_ESCAPES`,
//! `ANSI_QUOTES`), which the session can change and the proxy does not follow. So a batch is
//! read under every mode ([`readings`]); the relay checks each reading, and refuses the batch
//! when any reading holds a statement it refuses: a crafted string cannot hide a statement
//! from the check by ending where the check does not expect it to.

/// How backslashes behave inside quotes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escapes {
    /// The default: a backslash escapes the next character in `'…'` and `"…"`.
    Backslash,
    /// `NO_BACKSLASH_ESCAPES`: only a doubled quote escapes.
    None,
    /// `ANSI_QUOTES`: `"…"` is an identifier, where a backslash is an ordinary character.
    AnsiQuotes,
}

/// The statements of `sql` read with `escapes`: trimmed, comments dropped, executable
/// comments opened, empty statements left out.
pub fn split(sql: &str, escapes: Escapes) -> Vec<String> {
    let mut statements = Vec::new();
    let mut current = String::with_capacity(sql.len().min(4096));
    let mut chars = sql.char_indices().peekable();
    let mut in_executable = false;
    while let Some((i, c)) = chars.next() {
        let rest = &sql[i..];
        match c {
            '\'' | '"' | '`' => {
                let backslash = !matches!(
                    (c, escapes),
                    ('`', _) | (_, Escapes::None) | ('"', Escapes::AnsiQuotes)
                );
                let end = quoted_end(rest, c, backslash);
                current.push_str(&rest[..end]);
                skip_to(&mut chars, i + end);
            }
            '#' => skip_line(&mut chars, &mut current),
            '-' if rest.starts_with("--") && rest[2..].chars().next().is_none_or(dash_comment) => {
                skip_line(&mut chars, &mut current)
            }
            '/' if rest.starts_with("/*") => {
                let (opener, executable) = executable_opener(rest);
                if executable && !in_executable {
                    in_executable = true;
                    current.push(' ');
                    skip_to(&mut chars, i + opener);
                } else {
                    // An ordinary comment (or one inside an executable one, which ends both).
                    let end = rest.find("*/").map_or(rest.len(), |e| e + 2);
                    in_executable = false;
                    current.push(' ');
                    skip_to(&mut chars, i + end);
                }
            }
            '*' if in_executable && rest.starts_with("*/") => {
                in_executable = false;
                current.push(' ');
                skip_to(&mut chars, i + 2);
            }
            ';' => finish(&mut statements, &mut current),
            c => current.push(c),
        }
    }
    finish(&mut statements, &mut current);
    statements
}

/// Every distinct way the server may split and read `sql` (see the module's note).
pub fn readings(sql: &str) -> Vec<Vec<String>> {
    // The modes differ only in what a backslash does inside quotes: without one, they read
    // alike, and one split is all of them.
    if !sql.contains('\\') {
        return vec![split(sql, Escapes::Backslash)];
    }
    let mut all: Vec<Vec<String>> = Vec::with_capacity(3);
    for escapes in [Escapes::Backslash, Escapes::None, Escapes::AnsiQuotes] {
        let reading = split(sql, escapes);
        if !all.contains(&reading) {
            all.push(reading);
        }
    }
    all
}

/// The first `n` words of a statement, upper-cased (`CREATE`, `TABLE`, …), skipping
/// parentheses.
pub fn leading_words(statement: &str, n: usize) -> Vec<String> {
    statement
        .split(|c: char| c.is_whitespace() || c == '(' || c == ')' || c == ';')
        .filter(|w| !w.is_empty())
        .take(n)
        .map(|w| w.to_ascii_uppercase())
        .collect()
}

/// A token of a statement (as [`split`] leaves it: comments gone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    /// A bare word, upper-cased: a keyword, a name or a number.
    Word(String),
    /// A back-quoted name, unquoted.
    Name(String),
    /// A quoted string, unquoted (backslash escapes read as the default mode reads them).
    Str(String),
    /// Anything else, one character at a time (`.`, `=`, `@`, …).
    Symbol(char),
}

/// The tokens of one statement.
pub fn tokens(statement: &str) -> Vec<Token> {
    // Room for a short statement's tokens without growing.
    let mut out = Vec::with_capacity(16);
    let mut chars = statement.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            c if c.is_whitespace() => {}
            '\'' | '"' | '`' => {
                let rest = &statement[i..];
                let end = quoted_end(rest, c, c != '`');
                let inner = rest[c.len_utf8()..end]
                    .strip_suffix(c)
                    .unwrap_or(&rest[1..end]);
                out.push(match c {
                    '`' => Token::Name(inner.replace("``", "`")),
                    _ => Token::Str(unescape(inner, c)),
                });
                skip_to(&mut chars, i + end);
            }
            c if c.is_alphanumeric() || c == '_' || c == '$' => {
                let mut end = i + c.len_utf8();
                while let Some((at, n)) = chars.peek().copied() {
                    if !(n.is_alphanumeric() || n == '_' || n == '$') {
                        break;
                    }
                    end = at + n.len_utf8();
                    chars.next();
                }
                // One allocation of the word's size.
                out.push(Token::Word(statement[i..end].to_ascii_uppercase()));
            }
            c => out.push(Token::Symbol(c)),
        }
    }
    out
}

/// The text of a quoted string: backslash escapes and doubled quotes read.
fn unescape(inner: &str, quote: char) -> String {
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some('r') => out.push('\r'),
                Some('0') => out.push('\0'),
                Some(other) => out.push(other),
                None => {}
            },
            c if c == quote => {
                // The second of a doubled quote.
                if chars.clone().next() == Some(quote) {
                    chars.next();
                }
                out.push(quote);
            }
            c => out.push(c),
        }
    }
    out
}

/// After `-- `, the character that makes it a comment (MySQL: a space or a control character).
fn dash_comment(c: char) -> bool {
    c.is_whitespace() || c.is_control()
}

/// The length of the opener when `rest` starts an executable comment: `/*!` or `/*M!` and up
/// to six version digits.
fn executable_opener(rest: &str) -> (usize, bool) {
    let opener = if rest.starts_with("/*!") {
        3
    } else if rest.starts_with("/*M!") {
        4
    } else {
        return (2, false);
    };
    let digits = rest[opener..]
        .bytes()
        .take(6)
        .take_while(u8::is_ascii_digit)
        .count();
    (opener + digits, true)
}

/// Where a quoted string, identifier or name that starts `rest` ends (after its closing quote),
/// or the end of `rest` when it is not closed.
fn quoted_end(rest: &str, quote: char, backslash: bool) -> usize {
    let mut chars = rest.char_indices().skip(1);
    while let Some((i, c)) = chars.next() {
        if backslash && c == '\\' {
            chars.next();
        } else if c == quote {
            // A doubled quote is one quote inside: the scan goes on past it.
            if rest[i + c.len_utf8()..].starts_with(quote) {
                chars.next();
            } else {
                return i + c.len_utf8();
            }
        }
    }
    rest.len()
}

fn skip_to(chars: &mut std::iter::Peekable<std::str::CharIndices<'_>>, end: usize) {
    while chars.peek().is_some_and(|(i, _)| *i < end) {
        chars.next();
    }
}

fn skip_line(chars: &mut std::iter::Peekable<std::str::CharIndices<'_>>, current: &mut String) {
    for (_, c) in chars.by_ref() {
        if c == '\n' {
            break;
        }
    }
    current.push(' ');
}

fn finish(statements: &mut Vec<String>, current: &mut String) {
    let text = current.trim();
    if !text.is_empty() {
        statements.push(text.to_string());
    }
    current.clear();
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn default(sql: &str) -> Vec<String> {
        split(sql, Escapes::Backslash)
    }

    #[test]
    fn batches_split_outside_quotes_and_comments() {
        assert_eq!(
            default("SELECT 'a;b'; SELECT `x;y` -- c;\n; # d;\n SELECT \"e\\\";f\";"),
            ["SELECT 'a;b'", "SELECT `x;y`", "SELECT \"e\\\";f\""]
        );
        assert_eq!(default("SELECT 1 /* ; */ + 1"), ["SELECT 1   + 1"]);
        // `--` without a space is two minus signs.
        assert_eq!(
            default("SELECT 1--1; SELECT 2"),
            ["SELECT 1--1", "SELECT 2"]
        );
        assert_eq!(
            default("SELECT 'it''s'; SELECT 2"),
            ["SELECT 'it''s'", "SELECT 2"]
        );
        assert!(default(" ; ;-- nothing").is_empty());
    }

    #[test]
    fn executable_comments_are_code() {
        assert_eq!(
            default("/*!50000 DROP DATABASE x */; SELECT /*M!100300 1 + */ 1"),
            ["DROP DATABASE x", "SELECT   1 +   1"]
        );
        assert_eq!(
            default("/*!40101 SET @a = 1 */;/*!*/ SELECT 2"),
            ["SET @a = 1", "SELECT 2"]
        );
        assert_eq!(
            default("/*! GRANT ALL ON *.* TO x */"),
            ["GRANT ALL ON *.* TO x"]
        );
    }

    #[test]
    fn every_escape_mode_is_read() {
        // Without NO_BACKSLASH_ESCAPES one SELECT; with it, a SELECT, a DROP and a comment.
        let sql = r"SELECT 'x\'; DROP DATABASE other; -- '";
        let all = readings(sql);
        assert!(all.contains(&vec![sql.to_string()]));
        assert!(
            all.iter()
                .any(|r| r.contains(&"DROP DATABASE other".to_string())),
            "{all:?}"
        );
        // ANSI_QUOTES: a backslash does not escape inside double quotes.
        let sql = r#"SELECT "a\"; DROP TABLE t; SELECT "b""#;
        assert!(
            readings(sql)
                .iter()
                .any(|r| r.contains(&"DROP TABLE t".to_string()))
        );
        assert_eq!(readings("SELECT 1").len(), 1);
    }

    #[test]
    fn leading_words_skip_parentheses() {
        assert_eq!(leading_words("(select 1) union", 2), ["SELECT", "1"]);
        assert_eq!(
            leading_words("create  table\tt", 3),
            ["CREATE", "TABLE", "T"]
        );
    }

    #[test]
    fn tokens_unquote_names_and_strings() {
        assert_eq!(
            tokens("use `shop``x`; SELECT 'it''s', \"a\\\"b\" INTO @v"),
            [
                Token::Word("USE".into()),
                Token::Name("shop`x".into()),
                Token::Symbol(';'),
                Token::Word("SELECT".into()),
                Token::Str("it's".into()),
                Token::Symbol(','),
                Token::Str("a\"b".into()),
                Token::Word("INTO".into()),
                Token::Symbol('@'),
                Token::Word("V".into()),
            ]
        );
        assert_eq!(tokens("'open"), [Token::Str("open".into())]);
    }

    proptest! {
        #[test]
        fn tokens_never_panic(sql in ".{0,60}") {
            let _ = tokens(&sql);
        }

        #[test]
        fn splitting_never_panics_and_never_grows(sql in ".{0,80}") {
            for r in readings(&sql) {
                for s in r {
                    prop_assert!(s.len() <= sql.len() + 8);
                }
            }
        }

        #[test]
        fn without_a_backslash_every_mode_reads_alike(sql in "[a-z ;'\"`#/*!M0-9\\-\n]{0,60}") {
            let default = split(&sql, Escapes::Backslash);
            prop_assert_eq!(&split(&sql, Escapes::None), &default);
            prop_assert_eq!(&split(&sql, Escapes::AnsiQuotes), &default);
            prop_assert_eq!(readings(&sql), vec![default]);
        }

        #[test]
        fn ascii_noise_splits(sql in "[a-z ;'\"`\\\\#/*!M0-9\\-\n]{0,60}") {
            let _ = readings(&sql);
        }
    }
}
