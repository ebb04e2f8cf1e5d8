//! The pieces every RESP frame is made of: a type byte and a CRLF-terminated header line,
//! strict integers (redis-server's `string2ll`: no sign but `-`, no leading zeros, so each
//! number has one spelling), and length-prefixed payloads taken only once fully arrived.

use bytes::{Bytes, BytesMut};

use super::error::{ByteName, ProtocolError};

/// A type byte and the line after it, up to and without the CRLF.
pub(super) struct Header {
    pub kind: u8,
    content_len: usize,
}

impl Header {
    /// The bytes the header takes on the wire, type byte and CRLF included.
    pub fn len(&self) -> usize {
        self.content_len + 3
    }

    /// The line between the type byte and the CRLF.
    pub fn content<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        &buf[1..1 + self.content_len]
    }
}

/// Reads the header at the front of `buf`. Looks at most `max_line` bytes ahead, so a peer
/// that never sends a line end is refused rather than buffered.
pub(super) fn header(buf: &[u8], max_line: usize) -> Result<Option<Header>, ProtocolError> {
    let Some((&kind, rest)) = buf.split_first() else {
        return Ok(None);
    };
    // A line within the limit has its CR among the first `max_line + 1` bytes.
    let window = &rest[..rest.len().min(max_line.saturating_add(1))];
    let Some(end) = memchr::memchr2(b'\r', b'\n', window) else {
        if rest.len() > max_line {
            return Err(ProtocolError::LineTooLong { max: max_line });
        }
        return Ok(None);
    };
    match rest.get(end..end + 2) {
        Some(b"\r\n") => {}
        None if rest[end] == b'\r' => return Ok(None),
        _ => return Err(ProtocolError::MissingCrlf),
    }
    Ok(Some(Header {
        kind,
        content_len: end,
    }))
}

/// Parses an integer spelled as redis-server spells it.
pub(crate) fn parse_int(text: &[u8]) -> Option<i64> {
    let (negative, digits) = match text.strip_prefix(b"-") {
        Some(digits) => (true, digits),
        None => (false, text),
    };
    match digits {
        [] => return None,
        [b'0'] if !negative => return Some(0),
        [b'0', ..] => return None,
        _ => {}
    }
    digits.iter().try_fold(0i64, |n, &d| {
        if !d.is_ascii_digit() {
            return None;
        }
        let d = i64::from(d - b'0');
        let n = n.checked_mul(10)?;
        if negative {
            n.checked_sub(d)
        } else {
            n.checked_add(d)
        }
    })
}

/// The count or length in a header (`what` names it in the error).
pub(super) fn length(content: &[u8], what: &'static str) -> Result<i64, ProtocolError> {
    if content == b"?" {
        return Err(ProtocolError::Streamed);
    }
    parse_int(content).ok_or(ProtocolError::InvalidLength(what))
}

/// A bulk length checked against the limit; negative lengths are the caller's to handle.
pub(super) fn bulk_len(len: i64, max: usize) -> Result<usize, ProtocolError> {
    match usize::try_from(len) {
        Ok(n) if n <= max => Ok(n),
        Ok(_) => Err(ProtocolError::BulkTooLong { len, max }),
        Err(_) => Err(ProtocolError::InvalidLength("bulk")),
    }
}

/// An aggregate's element count checked against the limit.
pub(super) fn element_count(count: i64, max: usize) -> Result<usize, ProtocolError> {
    match usize::try_from(count) {
        Ok(n) if n <= max => Ok(n),
        Ok(_) => Err(ProtocolError::TooManyElements { count, max }),
        Err(_) => Err(ProtocolError::InvalidLength("aggregate")),
    }
}

/// Takes a `len`-byte payload and its CRLF after a `header_len`-byte header from the front of
/// `buf`, or nothing while any of it is missing.
pub(super) fn payload(
    buf: &mut BytesMut,
    header_len: usize,
    len: usize,
) -> Result<Option<Bytes>, ProtocolError> {
    let end = header_len.saturating_add(len);
    let Some(crlf) = buf.get(end..end.saturating_add(2)) else {
        return Ok(None);
    };
    if crlf != b"\r\n" {
        return Err(ProtocolError::MissingCrlf);
    }
    let frame = buf.split_to(end + 2).freeze();
    Ok(Some(frame.slice(header_len..end)))
}

/// Checks a type byte where only one kind is allowed.
pub(super) fn expect_kind(kind: u8, expected: u8) -> Result<(), ProtocolError> {
    if kind == expected {
        Ok(())
    } else {
        Err(ProtocolError::UnexpectedType {
            expected: ByteName(expected),
            got: ByteName(kind),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_have_one_spelling() {
        assert_eq!(parse_int(b"0"), Some(0));
        assert_eq!(parse_int(b"-12"), Some(-12));
        assert_eq!(parse_int(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_int(b"-9223372036854775808"), Some(i64::MIN));
        for bad in [
            &b""[..],
            b"-",
            b"-0",
            b"01",
            b"+1",
            b" 1",
            b"1 ",
            b"9223372036854775808",
        ] {
            assert_eq!(parse_int(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn header_waits_for_the_line_end_and_bounds_it() {
        assert!(matches!(header(b"+OK\r", 8), Ok(None)));
        let h = header(b"+OK\r\nrest", 8).expect("valid").expect("complete");
        assert_eq!(
            (h.kind, h.len(), h.content(b"+OK\r\n")),
            (b'+', 5, &b"OK"[..])
        );
        assert_eq!(
            header(b"+0123456789", 8).err(),
            Some(ProtocolError::LineTooLong { max: 8 })
        );
        assert_eq!(header(b"+OK\n", 8).err(), Some(ProtocolError::MissingCrlf));
        assert_eq!(
            header(b"+O\rK\r\n", 8).err(),
            Some(ProtocolError::MissingCrlf)
        );
    }

    #[test]
    fn payload_waits_for_every_byte_and_its_crlf() {
        let mut buf = BytesMut::from(&b"$3\r\nfoo\r"[..]);
        assert_eq!(payload(&mut buf, 4, 3), Ok(None));
        buf.extend_from_slice(b"\n+");
        assert_eq!(payload(&mut buf, 4, 3), Ok(Some(Bytes::from("foo"))));
        assert_eq!(&buf[..], b"+");
        let mut bad = BytesMut::from(&b"$3\r\nfooXY"[..]);
        assert_eq!(payload(&mut bad, 4, 3), Err(ProtocolError::MissingCrlf));
    }
}
