//! Writing frames. Each type has one spelling, the one the decoder accepts, so a decoded frame
//! encodes back to its own bytes. Simple strings and errors cannot carry a line end: one that
//! was built with CR or LF inside is written with spaces instead (as redis-server does for
//! error messages), so a rewritten reply can never inject a second one.

use bytes::{BufMut, BytesMut};

use super::types::Frame;

impl Frame {
    /// Appends the wire form of this frame to `dst`.
    pub fn encode(&self, dst: &mut BytesMut) {
        match self {
            Self::Simple(text) => line(dst, b'+', text),
            Self::Error(text) => line(dst, b'-', text),
            Self::Integer(n) => number(dst, b':', *n),
            Self::Bulk(data) => blob(dst, b'$', &[data]),
            Self::NullBulk => dst.put_slice(b"$-1\r\n"),
            Self::Array(items) => aggregate(dst, b'*', items),
            Self::NullArray => dst.put_slice(b"*-1\r\n"),
            Self::Null => dst.put_slice(b"_\r\n"),
            Self::Double(d) => line(dst, b',', d.as_bytes()),
            Self::Boolean(b) => dst.put_slice(if *b { b"#t\r\n" } else { b"#f\r\n" }),
            Self::BlobError(data) => blob(dst, b'!', &[data]),
            Self::Verbatim { format, text } => blob(dst, b'=', &[format, b":", text]),
            Self::BigNumber(n) => line(dst, b'(', n.as_bytes()),
            Self::Map(pairs) => map(dst, b'%', pairs),
            Self::Set(items) => aggregate(dst, b'~', items),
            Self::Attribute { attributes, frame } => {
                map(dst, b'|', attributes);
                frame.encode(dst);
            }
            Self::Push(items) => aggregate(dst, b'>', items),
        }
    }
}

fn line(dst: &mut BytesMut, kind: u8, text: &[u8]) {
    dst.put_u8(kind);
    if memchr::memchr2(b'\r', b'\n', text).is_some() {
        dst.extend(
            text.iter()
                .map(|&b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
        );
    } else {
        dst.put_slice(text);
    }
    dst.put_slice(b"\r\n");
}

/// A type byte, a decimal number and CRLF.
pub(super) fn number(dst: &mut BytesMut, kind: u8, n: i64) {
    // Every length of every frame passes here: itoa rather than the formatting machinery.
    let mut digits = itoa::Buffer::new();
    dst.put_u8(kind);
    dst.put_slice(digits.format(n).as_bytes());
    dst.put_slice(b"\r\n");
}

/// A length-prefixed payload made of `parts`.
pub(super) fn blob(dst: &mut BytesMut, kind: u8, parts: &[&[u8]]) {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    number(dst, kind, len_i64(len));
    for part in parts {
        dst.put_slice(part);
    }
    dst.put_slice(b"\r\n");
}

fn aggregate(dst: &mut BytesMut, kind: u8, items: &[Frame]) {
    number(dst, kind, len_i64(items.len()));
    for item in items {
        item.encode(dst);
    }
}

fn map(dst: &mut BytesMut, kind: u8, pairs: &[(Frame, Frame)]) {
    number(dst, kind, len_i64(pairs.len()));
    for (key, value) in pairs {
        key.encode(dst);
        value.encode(dst);
    }
}

/// Lengths of things in memory fit an i64 on every platform Rust supports.
pub(super) fn len_i64(len: usize) -> i64 {
    i64::try_from(len).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::frame::{BigNumber, Double};

    fn encoded(frame: &Frame) -> Vec<u8> {
        let mut dst = BytesMut::new();
        frame.encode(&mut dst);
        dst.to_vec()
    }

    #[test]
    fn every_type_has_its_wire_form() {
        let cases: Vec<(Frame, &[u8])> = vec![
            (Frame::Simple("OK".into()), b"+OK\r\n"),
            (Frame::Error("ERR x".into()), b"-ERR x\r\n"),
            (Frame::Integer(-42), b":-42\r\n"),
            (Frame::Integer(i64::MIN), b":-9223372036854775808\r\n"),
            (Frame::Bulk("".into()), b"$0\r\n\r\n"),
            (Frame::NullBulk, b"$-1\r\n"),
            (Frame::NullArray, b"*-1\r\n"),
            (Frame::Null, b"_\r\n"),
            (Frame::Double(Double::from_f64(1.5)), b",1.5\r\n"),
            (Frame::Boolean(false), b"#f\r\n"),
            (Frame::BlobError("SYNTAX x".into()), b"!8\r\nSYNTAX x\r\n"),
            (
                Frame::Verbatim {
                    format: *b"txt",
                    text: "hi".into(),
                },
                b"=6\r\ntxt:hi\r\n",
            ),
            (
                Frame::BigNumber(BigNumber::parse(Bytes::from("-1")).expect("valid")),
                b"(-1\r\n",
            ),
            (
                Frame::Map(vec![(Frame::Simple("a".into()), Frame::Integer(1))]),
                b"%1\r\n+a\r\n:1\r\n",
            ),
            (Frame::Set(vec![]), b"~0\r\n"),
            (
                Frame::Attribute {
                    attributes: vec![],
                    frame: Box::new(Frame::Push(vec![Frame::Null])),
                },
                b"|0\r\n>1\r\n_\r\n",
            ),
        ];
        for (frame, wire) in cases {
            assert_eq!(encoded(&frame), wire, "{frame:?}");
        }
    }

    #[test]
    fn line_ends_inside_simple_strings_become_spaces() {
        let frame = Frame::Error("ERR a\r\n+OK".into());
        assert_eq!(encoded(&frame), b"-ERR a  +OK\r\n");
    }
}
