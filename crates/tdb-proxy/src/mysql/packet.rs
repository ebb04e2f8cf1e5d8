//! Packet framing: every MySQL message travels as packets of a 3-byte little-endian payload
//! length and a 1-byte sequence id. A payload of 16 MiB - 1 or more is cut into pieces of that
//! size, ended by a shorter piece (empty when the payload is an exact multiple), each piece with
//! the next sequence id. [`Packet`] is one logical message with its pieces joined; decoding
//! refuses a message over the caller's limit as soon as the header says so, before its bytes
//! are read.

use tokio::io::{AsyncRead, AsyncReadExt};

/// The largest piece's payload; a piece this long says another piece follows.
pub const MAX_PIECE: usize = 0xff_ffff;
pub const HEADER_LEN: usize = 4;

/// One logical packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// The sequence id of its first piece.
    pub seq: u8,
    /// The sequence id of its last piece: a reply takes the next one.
    pub last_seq: u8,
    pub payload: Vec<u8>,
}

impl Packet {
    pub fn new(seq: u8, payload: Vec<u8>) -> Self {
        let pieces = payload.len() / MAX_PIECE;
        Self {
            seq,
            last_seq: seq.wrapping_add(pieces as u8),
            payload,
        }
    }

    /// The sequence id a reply to this packet carries.
    pub fn next_seq(&self) -> u8 {
        self.last_seq.wrapping_add(1)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PacketError {
    #[error("packet larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("packet out of order: sequence id {got} where {expected} was due")]
    OutOfOrder { expected: u8, got: u8 },
    #[error("connection closed")]
    Closed,
    #[error("reading a packet failed: {0}")]
    Io(#[from] std::io::Error),
}

/// The header at the front of `buf`: payload length and sequence id.
pub fn header(buf: &[u8]) -> Option<(usize, u8)> {
    let h = buf.get(..HEADER_LEN)?;
    let len = usize::from(h[0]) | usize::from(h[1]) << 8 | usize::from(h[2]) << 16;
    Some((len, h[3]))
}

/// Decodes one logical packet from the front of `buf`: `Ok(None)` when more bytes are needed,
/// else the packet and how many bytes it took. `limit` bounds the joined payload.
pub fn decode(buf: &[u8], limit: usize) -> Result<Option<(Packet, usize)>, PacketError> {
    let mut pos = 0;
    let mut total = 0usize;
    let mut first_seq = None;
    let mut last_seq = 0u8;
    // First pass: check every header that is here, so a too-large or disordered packet is
    // refused without waiting for its bytes.
    loop {
        let Some((len, seq)) = buf.get(pos..).and_then(header) else {
            return Ok(None);
        };
        match first_seq {
            None => first_seq = Some(seq),
            Some(_) if seq != last_seq.wrapping_add(1) => {
                return Err(PacketError::OutOfOrder {
                    expected: last_seq.wrapping_add(1),
                    got: seq,
                });
            }
            Some(_) => {}
        }
        last_seq = seq;
        total = total.saturating_add(len);
        if total > limit {
            return Err(PacketError::TooLarge { limit });
        }
        pos += HEADER_LEN + len;
        if pos > buf.len() {
            return Ok(None);
        }
        if len < MAX_PIECE {
            break;
        }
    }
    let mut payload = Vec::with_capacity(total);
    let mut at = 0;
    while at < pos {
        let Some((len, _)) = header(&buf[at..]) else {
            return Ok(None);
        };
        payload.extend_from_slice(&buf[at + HEADER_LEN..at + HEADER_LEN + len]);
        at += HEADER_LEN + len;
    }
    let seq = first_seq.unwrap_or_default();
    Ok(Some((
        Packet {
            seq,
            last_seq,
            payload,
        },
        pos,
    )))
}

/// Appends `payload` as packets starting at sequence id `seq`; returns the sequence id after
/// the last piece.
pub fn encode(out: &mut Vec<u8>, seq: u8, payload: &[u8]) -> u8 {
    let mut seq = seq;
    let mut rest = payload;
    loop {
        let n = rest.len().min(MAX_PIECE);
        out.extend_from_slice(&(n as u32).to_le_bytes()[..3]);
        out.push(seq);
        out.extend_from_slice(&rest[..n]);
        seq = seq.wrapping_add(1);
        rest = &rest[n..];
        if n < MAX_PIECE {
            return seq;
        }
    }
}

/// Reads whole packets from a byte stream, keeping what it read past the last one. Reading is
/// cancel-safe: a read abandoned halfway loses nothing.
#[derive(Debug, Default)]
pub struct PacketReader {
    buf: Vec<u8>,
    start: usize,
}

impl PacketReader {
    /// Bytes read and not yet taken as packets.
    pub fn buffered(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    /// The bytes read and not yet taken, giving them up.
    pub fn take_buffered(mut self) -> Vec<u8> {
        self.buf.drain(..self.start);
        self.buf
    }

    /// Drops `n` buffered bytes (a packet relayed straight from the buffer).
    pub fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.buf.len());
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
    }

    /// The next packet, reading as needed; `limit` bounds its joined payload.
    pub async fn next<R: AsyncRead + Unpin>(
        &mut self,
        r: &mut R,
        limit: usize,
    ) -> Result<Packet, PacketError> {
        loop {
            if let Some(packet) = self.take(limit)? {
                return Ok(packet);
            }
            self.fill(r).await?;
        }
    }

    /// A packet already buffered, if a whole one is.
    pub fn take(&mut self, limit: usize) -> Result<Option<Packet>, PacketError> {
        match decode(self.buffered(), limit)? {
            Some((packet, used)) => {
                self.start += used;
                if self.start == self.buf.len() {
                    self.buf.clear();
                    self.start = 0;
                }
                Ok(Some(packet))
            }
            None => Ok(None),
        }
    }

    /// Reads once more from `r`; the connection's end is [`PacketError::Closed`].
    pub async fn fill<R: AsyncRead + Unpin>(&mut self, r: &mut R) -> Result<usize, PacketError> {
        if self.start > 0 && self.start * 2 >= self.buf.len() {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.reserve(8 * 1024);
        match r.read_buf(&mut self.buf).await? {
            0 => Err(PacketError::Closed),
            n => Ok(n),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_payload_of_exactly_one_piece_ends_with_an_empty_one() {
        let payload = vec![7u8; MAX_PIECE];
        let mut out = Vec::new();
        assert_eq!(encode(&mut out, 3, &payload), 5);
        assert_eq!(out.len(), MAX_PIECE + 2 * HEADER_LEN);
        assert_eq!(&out[MAX_PIECE + HEADER_LEN..], &[0, 0, 0, 4]);
        let (packet, used) = decode(&out, 1 << 25).expect("ok").expect("whole");
        assert_eq!((packet.seq, packet.last_seq, used), (3, 4, out.len()));
        assert_eq!(packet.payload, payload);
        assert_eq!(packet.next_seq(), 5);
        assert_eq!(Packet::new(3, payload).last_seq, 4);
    }

    #[test]
    fn oversized_and_disordered_packets_are_refused_from_their_headers() {
        // The header alone says 1000 bytes: refused before they arrive.
        let head = [0xe8, 0x03, 0, 0];
        assert!(matches!(
            decode(&head, 999),
            Err(PacketError::TooLarge { limit: 999 })
        ));
        assert!(matches!(decode(&head, 1000), Ok(None)));
        // A first piece of MAX_PIECE, then a piece with the wrong sequence id.
        let mut buf = vec![0xff, 0xff, 0xff, 0];
        buf.resize(HEADER_LEN + MAX_PIECE, 1);
        buf.extend_from_slice(&[1, 0, 0, 7, 9]);
        assert!(matches!(
            decode(&buf, usize::MAX),
            Err(PacketError::OutOfOrder {
                expected: 1,
                got: 7
            })
        ));
    }

    #[tokio::test]
    async fn the_reader_keeps_what_follows_a_packet() {
        let mut wire = Vec::new();
        encode(&mut wire, 0, b"\x03SELECT 1");
        encode(&mut wire, 0, b"\x0e");
        let mut reader = PacketReader::default();
        let mut r = &wire[..];
        let first = reader.next(&mut r, 100).await.expect("first");
        assert_eq!(first.payload, b"\x03SELECT 1");
        let second = reader.next(&mut r, 100).await.expect("second");
        assert_eq!(second.payload, b"\x0e");
        assert!(matches!(
            reader.next(&mut r, 100).await,
            Err(PacketError::Closed)
        ));
    }

    proptest! {
        #[test]
        fn packets_round_trip(seq in any::<u8>(), payload in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let mut out = Vec::new();
            encode(&mut out, seq, &payload);
            let (packet, used) = decode(&out, 4096).expect("ok").expect("whole");
            prop_assert_eq!(used, out.len());
            prop_assert_eq!(packet.seq, seq);
            prop_assert_eq!(packet.payload, payload);
            // Any prefix is incomplete, never an error or a wrong packet.
            for cut in 0..out.len() {
                prop_assert!(matches!(decode(&out[..cut], 4096), Ok(None)));
            }
        }

        #[test]
        fn decoding_never_panics(data in proptest::collection::vec(any::<u8>(), 0..64), limit in 0usize..100) {
            let _ = decode(&data, limit);
        }
    }
}
