//! Inline commands: what redis-cli and telnet send when a command is typed (`PING\r\n`). The
//! line is split as redis-server's `sdssplitargs` splits it: words separated by whitespace,
//! `"double quotes"` with `\n \r \t \b \a \\ \" \xHH` escapes, `'single quotes'` with only `\'`,
//! a closing quote followed by a space or the end, and a NUL ending the line.

use bytes::{Bytes, BytesMut};

use super::error::ProtocolError;

pub(super) enum Inline {
    Incomplete,
    /// A blank line, which redis-server ignores.
    Blank,
    Args(Vec<Bytes>),
}

/// Takes one inline command line (ended by `\n`, an optional `\r` before it dropped) from the
/// front of `buf`.
pub(super) fn decode(buf: &mut BytesMut, max: usize) -> Result<Inline, ProtocolError> {
    let window = &buf[..buf.len().min(max.saturating_add(1))];
    let Some(nl) = memchr::memchr(b'\n', window) else {
        if buf.len() > max {
            return Err(ProtocolError::InlineTooLong { max });
        }
        return Ok(Inline::Incomplete);
    };
    let line = buf.split_to(nl + 1);
    let text = &line[..nl];
    let text = text.strip_suffix(b"\r").unwrap_or(text);
    let args = split_args(text)?;
    Ok(if args.is_empty() {
        Inline::Blank
    } else {
        Inline::Args(args)
    })
}

/// C's `isspace`, which is what skips the whitespace between words.
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

fn split_args(text: &[u8]) -> Result<Vec<Bytes>, ProtocolError> {
    // redis-server parses a C string: nothing after a NUL is seen.
    let text = match memchr::memchr(0, text) {
        Some(nul) => &text[..nul],
        None => text,
    };
    let mut args = Vec::new();
    let mut at = 0;
    loop {
        while text.get(at).is_some_and(|&b| is_space(b)) {
            at += 1;
        }
        if at == text.len() {
            return Ok(args);
        }
        let (arg, next) = word(text, at)?;
        args.push(Bytes::from(arg));
        at = next;
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Quote {
    None,
    Double,
    Single,
}

/// One word starting at `at`; returns it and where scanning continues.
fn word(text: &[u8], mut at: usize) -> Result<(Vec<u8>, usize), ProtocolError> {
    let mut out = Vec::new();
    let mut quote = Quote::None;
    loop {
        let b = text.get(at).copied();
        match (quote, b) {
            (Quote::None, None | Some(b' ' | b'\n' | b'\r' | b'\t')) => return Ok((out, at)),
            (Quote::Double | Quote::Single, None) => return Err(ProtocolError::UnbalancedQuotes),
            (Quote::None, Some(b'"')) => quote = Quote::Double,
            (Quote::None, Some(b'\'')) => quote = Quote::Single,
            (Quote::Double, Some(b'\\')) if text.get(at + 1).is_some() => {
                let (byte, used) = escape(&text[at + 1..]);
                out.push(byte);
                at += used;
            }
            (Quote::Single, Some(b'\\')) if text.get(at + 1) == Some(&b'\'') => {
                out.push(b'\'');
                at += 1;
            }
            (Quote::Double, Some(b'"')) | (Quote::Single, Some(b'\'')) => {
                return match text.get(at + 1) {
                    Some(&next) if !is_space(next) => Err(ProtocolError::UnbalancedQuotes),
                    _ => Ok((out, at + 1)),
                };
            }
            (_, Some(b)) => out.push(b),
        }
        at += 1;
    }
}

/// The byte a backslash escape inside double quotes stands for, and how many bytes after the
/// backslash it took.
fn escape(after: &[u8]) -> (u8, usize) {
    if let [b'x', hi, lo, ..] = after
        && let (Some(hi), Some(lo)) = (hex(*hi), hex(*lo))
    {
        return (hi << 4 | lo, 3);
    }
    let byte = match after[0] {
        b'n' => b'\n',
        b'r' => b'\r',
        b't' => b'\t',
        b'b' => 0x08,
        b'a' => 0x07,
        other => other,
    };
    (byte, 1)
}

fn hex(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(text: &str) -> Result<Vec<String>, ProtocolError> {
        split_args(text.as_bytes()).map(|args| {
            args.iter()
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect()
        })
    }

    #[test]
    fn plain_words() {
        assert_eq!(
            split("  SET  key\tvalue "),
            Ok(vec!["SET".into(), "key".into(), "value".into()])
        );
        assert_eq!(split(""), Ok(vec![]));
        assert_eq!(split(" \x0b "), Ok(vec![]));
    }

    #[test]
    fn quotes_and_escapes_as_redis_splits_them() {
        assert_eq!(
            split(r#"SET "a b" 'c d' "x\n\x41\"" 'it\'s' "\q""#),
            Ok(vec![
                "SET".into(),
                "a b".into(),
                "c d".into(),
                "x\nA\"".into(),
                "it's".into(),
                "q".into()
            ])
        );
        assert_eq!(split(r#"ab"c d"e"#), Err(ProtocolError::UnbalancedQuotes));
        assert_eq!(split(r#"ab"c d""#), Ok(vec!["abc d".into()]));
        assert_eq!(split(r#""open"#), Err(ProtocolError::UnbalancedQuotes));
        assert_eq!(split(r#""\"#), Err(ProtocolError::UnbalancedQuotes));
        assert_eq!(split("'open"), Err(ProtocolError::UnbalancedQuotes));
        assert_eq!(split("a\0b c"), Ok(vec!["a".into()]));
        assert_eq!(split(r#""\xZZ""#), Ok(vec!["xZZ".into()]));
    }

    #[test]
    fn lines_end_at_newline_and_are_bounded() {
        let mut buf = BytesMut::from(&b"PING\r\nECHO"[..]);
        assert!(matches!(decode(&mut buf, 16), Ok(Inline::Args(a)) if a == ["PING"]));
        assert!(matches!(decode(&mut buf, 16), Ok(Inline::Incomplete)));
        buf.extend_from_slice(b" hi\n\r\n");
        assert!(matches!(decode(&mut buf, 16), Ok(Inline::Args(a)) if a == ["ECHO", "hi"]));
        assert!(matches!(decode(&mut buf, 16), Ok(Inline::Blank)));
        let mut long = BytesMut::from(&[b'a'; 17][..]);
        assert!(matches!(
            decode(&mut long, 16),
            Err(ProtocolError::InlineTooLong { max: 16 })
        ));
        let mut exact = BytesMut::from(&b"aaaaaaaaaaaaaaaa\n"[..]);
        assert!(matches!(decode(&mut exact, 16), Ok(Inline::Args(_))));
    }
}
