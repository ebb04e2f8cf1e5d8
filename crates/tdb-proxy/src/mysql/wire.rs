//! The MySQL protocol's basic types: fixed-width little-endian integers, length-encoded
//! integers and strings, NUL-terminated strings. [`Reader`] takes them from the front of a
//! payload with every length checked (a short or lying payload is an error, never a panic);
//! the `put_*` functions write them.

/// A payload ended before a value it announced, or a length did not fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed packet: {0}")]
pub struct Malformed(pub &'static str);

/// A cursor over a payload.
#[derive(Debug, Clone, Copy)]
pub struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(payload: &'a [u8]) -> Self {
        Self { rest: payload }
    }

    /// What has not been read yet.
    pub fn rest(&self) -> &'a [u8] {
        self.rest
    }

    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// The next `n` bytes.
    pub fn bytes(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], Malformed> {
        if n > self.rest.len() {
            return Err(Malformed(what));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    /// Everything left.
    pub fn take_rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.rest)
    }

    pub fn u8(&mut self, what: &'static str) -> Result<u8, Malformed> {
        Ok(self.bytes(1, what)?[0])
    }

    pub fn u16(&mut self, what: &'static str) -> Result<u16, Malformed> {
        let b = self.bytes(2, what)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    pub fn u24(&mut self, what: &'static str) -> Result<u32, Malformed> {
        let b = self.bytes(3, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], 0]))
    }

    pub fn u32(&mut self, what: &'static str) -> Result<u32, Malformed> {
        let b = self.bytes(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A length-encoded integer: one byte below 0xfb, or 0xfc/0xfd/0xfe followed by 2, 3 or 8
    /// bytes. 0xfb (NULL in rows) and 0xff (an error packet's header) are not integers.
    pub fn lenenc(&mut self, what: &'static str) -> Result<u64, Malformed> {
        let width = match self.u8(what)? {
            n @ 0..=0xfa => return Ok(u64::from(n)),
            0xfc => 2,
            0xfd => 3,
            0xfe => 8,
            _ => return Err(Malformed(what)),
        };
        let b = self.bytes(width, what)?;
        let mut le = [0u8; 8];
        le[..width].copy_from_slice(b);
        Ok(u64::from_le_bytes(le))
    }

    /// A length-encoded string.
    pub fn lenenc_bytes(&mut self, what: &'static str) -> Result<&'a [u8], Malformed> {
        let len = self.lenenc(what)?;
        let len = usize::try_from(len).map_err(|_| Malformed(what))?;
        self.bytes(len, what)
    }

    /// Bytes up to a NUL, which is consumed.
    pub fn nul_bytes(&mut self, what: &'static str) -> Result<&'a [u8], Malformed> {
        let end = self
            .rest
            .iter()
            .position(|b| *b == 0)
            .ok_or(Malformed(what))?;
        let s = &self.rest[..end];
        self.rest = &self.rest[end + 1..];
        Ok(s)
    }

    /// Bytes up to a NUL (consumed) or to the end, whichever comes first: some clients leave
    /// the terminator off the last string of a packet.
    pub fn nul_or_end(&mut self) -> &'a [u8] {
        match self.rest.iter().position(|b| *b == 0) {
            Some(end) => {
                let s = &self.rest[..end];
                self.rest = &self.rest[end + 1..];
                s
            }
            None => self.take_rest(),
        }
    }
}

/// Text from the wire; names and plugin names are ASCII or UTF-8 in practice, and anything else
/// is kept readable rather than refused.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

pub fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_le_bytes());
}

pub fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

pub fn put_lenenc(out: &mut Vec<u8>, v: u64) {
    match v {
        0..=0xfa => out.push(v as u8),
        0xfb..=0xffff => {
            out.push(0xfc);
            out.extend_from_slice(&(v as u16).to_le_bytes());
        }
        0x1_0000..=0xff_ffff => {
            out.push(0xfd);
            out.extend_from_slice(&(v as u32).to_le_bytes()[..3]);
        }
        _ => {
            out.push(0xfe);
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
}

pub fn put_lenenc_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_lenenc(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

pub fn put_nul(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(bytes);
    out.push(0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn lenenc_widths_are_mysqls() {
        for (v, len) in [
            (0u64, 1),
            (250, 1),
            (251, 3),
            (0xffff, 3),
            (0x1_0000, 4),
            (0xff_ffff, 4),
            (0x100_0000, 9),
        ] {
            let mut out = Vec::new();
            put_lenenc(&mut out, v);
            assert_eq!(out.len(), len, "{v}");
        }
        assert!(Reader::new(&[0xfb]).lenenc("x").is_err(), "NULL");
        assert!(Reader::new(&[0xff]).lenenc("x").is_err(), "error header");
        assert!(Reader::new(&[0xfe, 1, 2]).lenenc("x").is_err(), "short");
    }

    #[test]
    fn nul_strings_need_their_terminator_unless_asked_not_to() {
        let mut r = Reader::new(b"abc\0def");
        assert_eq!(r.nul_bytes("a").expect("a"), b"abc");
        assert!(r.clone().nul_bytes("b").is_err());
        assert_eq!(r.nul_or_end(), b"def");
        assert!(r.is_empty());
    }

    proptest! {
        #[test]
        fn lenenc_round_trips(v in any::<u64>(), s in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut out = Vec::new();
            put_lenenc(&mut out, v);
            put_lenenc_bytes(&mut out, &s);
            let mut r = Reader::new(&out);
            prop_assert_eq!(r.lenenc("v").expect("v"), v);
            prop_assert_eq!(r.lenenc_bytes("s").expect("s"), &s[..]);
            prop_assert!(r.is_empty());
        }

        #[test]
        fn readers_never_panic(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut r = Reader::new(&data);
            let _ = r.lenenc_bytes("a");
            let _ = r.nul_bytes("b");
            let _ = r.u32("c");
            let _ = r.u24("d");
            let _ = r.nul_or_end();
        }
    }
}
