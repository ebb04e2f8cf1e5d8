//! The RESP2 and RESP3 frame types. Every distinction the wire makes is kept (a RESP2 null
//! bulk is not a RESP3 null, a double keeps its spelling), so a decoded frame re-encodes to the
//! bytes it came from.

use bytes::Bytes;

/// One RESP value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// `+OK`
    Simple(Bytes),
    /// `-ERR message`
    Error(Bytes),
    /// `:42`
    Integer(i64),
    /// `$3\r\nfoo`
    Bulk(Bytes),
    /// RESP2's `$-1`.
    NullBulk,
    /// `*2\r\n...`
    Array(Vec<Frame>),
    /// RESP2's `*-1`.
    NullArray,
    /// RESP3's `_`.
    Null,
    /// `,3.14`
    Double(Double),
    /// `#t` / `#f`
    Boolean(bool),
    /// `!len\r\nmessage`
    BlobError(Bytes),
    /// `=len\r\ntxt:text`: a three-byte format, then the text.
    Verbatim { format: [u8; 3], text: Bytes },
    /// `(12345678901234567890`
    BigNumber(BigNumber),
    /// `%n`: n key/value pairs, in wire order.
    Map(Vec<(Frame, Frame)>),
    /// `~n`
    Set(Vec<Frame>),
    /// `|n` pairs of out-of-band attributes, then the frame they describe.
    Attribute {
        attributes: Vec<(Frame, Frame)>,
        frame: Box<Frame>,
    },
    /// `>n`: an out-of-band push (pub/sub messages, tracking invalidations).
    Push(Vec<Frame>),
}

impl Frame {
    /// The bytes of a string-like frame (simple, bulk, verbatim text).
    pub fn as_bytes(&self) -> Option<&Bytes> {
        match self {
            Self::Simple(b) | Self::Bulk(b) | Self::Verbatim { text: b, .. } => Some(b),
            _ => None,
        }
    }

    pub fn as_integer(&self) -> Option<i64> {
        match self {
            Self::Integer(n) => Some(*n),
            _ => None,
        }
    }

    /// The elements of an array, set or push.
    pub fn as_items(&self) -> Option<&[Frame]> {
        match self {
            Self::Array(items) | Self::Set(items) | Self::Push(items) => Some(items),
            _ => None,
        }
    }

    /// Whether this is an error reply of either kind.
    pub fn is_error(&self) -> bool {
        matches!(self, Self::Error(_) | Self::BlobError(_))
    }
}

/// A RESP3 double as spelled on the wire (`1.5`, `inf`, `-inf`, `nan`, `1e+300`), kept so that
/// passing it through changes nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Double(Bytes);

impl Double {
    /// Accepts `inf`, `-inf`, `nan`, or a decimal number with an optional exponent.
    pub fn parse(text: Bytes) -> Option<Self> {
        let special = matches!(&text[..], b"inf" | b"-inf" | b"nan");
        let numeric = !text.is_empty()
            && text
                .iter()
                .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'))
            && std::str::from_utf8(&text).is_ok_and(|s| s.parse::<f64>().is_ok());
        (special || numeric).then_some(Self(text))
    }

    pub fn from_f64(value: f64) -> Self {
        let text = if value.is_nan() {
            "nan".to_owned()
        } else if value.is_infinite() {
            if value > 0.0 { "inf" } else { "-inf" }.to_owned()
        } else {
            format!("{value:?}")
        };
        Self(text.into())
    }

    pub fn value(&self) -> f64 {
        match &self.0[..] {
            b"inf" => f64::INFINITY,
            b"-inf" => f64::NEG_INFINITY,
            text => std::str::from_utf8(text)
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(f64::NAN),
        }
    }

    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }
}

/// A RESP3 big number: an optional `-`, then decimal digits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BigNumber(Bytes);

impl BigNumber {
    pub fn parse(text: Bytes) -> Option<Self> {
        let digits = text.strip_prefix(b"-").unwrap_or(&text);
        let valid = !digits.is_empty() && digits.iter().all(u8::is_ascii_digit);
        valid.then_some(Self(text))
    }

    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_keep_their_spelling_and_value() {
        for (text, value) in [("1.5", 1.5), ("inf", f64::INFINITY), ("1e+300", 1e300)] {
            let double = Double::parse(Bytes::from(text)).expect(text);
            assert_eq!(double.as_bytes(), text);
            assert_eq!(double.value(), value);
        }
        assert!(
            Double::parse(Bytes::from("nan"))
                .expect("nan")
                .value()
                .is_nan()
        );
        for bad in ["", "infinity", "NaN", "1.5x", "--1"] {
            assert_eq!(Double::parse(Bytes::from(bad)), None, "{bad}");
        }
    }

    #[test]
    fn from_f64_round_trips() {
        for value in [0.0, -2.5, 1e300, f64::MIN_POSITIVE, f64::NEG_INFINITY] {
            assert_eq!(Double::from_f64(value).value(), value);
        }
    }

    #[test]
    fn big_numbers_are_signed_digits() {
        assert!(BigNumber::parse(Bytes::from("-123456789012345678901234567890")).is_some());
        for bad in ["", "-", "+1", "1.0", "1 2"] {
            assert_eq!(BigNumber::parse(Bytes::from(bad)), None, "{bad}");
        }
    }
}
