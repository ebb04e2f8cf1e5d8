//! Decoding server replies: every RESP2 and RESP3 type. Scalars are taken off the buffer as
//! soon as they are complete and aggregates are assembled on a stack kept between calls, so a
//! reply arriving in pieces is read once, not re-scanned, and an aggregate grows only with the
//! elements actually received.

use bytes::{Buf, Bytes, BytesMut};

use super::error::{ByteName, ProtocolError};
use super::limits::Limits;
use super::types::{BigNumber, Double, Frame};
use super::wire::{self, Header};

/// Elements reserved up front for an aggregate, whatever count it announces.
const PREALLOC: usize = 16;

/// An incremental reply decoder; keep one per connection and feed it the same buffer.
#[derive(Debug)]
pub struct ReplyDecoder {
    limits: Limits,
    /// Aggregates begun but not yet complete, outermost first.
    open: Vec<Partial>,
    /// Bytes taken off the buffer for the reply being assembled in `open`.
    pending: usize,
}

#[derive(Debug, Clone, Copy)]
enum Aggregate {
    Array,
    Map,
    Set,
    Push,
    Attribute,
}

#[derive(Debug)]
struct Partial {
    kind: Aggregate,
    expected: usize,
    items: Vec<Frame>,
}

/// What one header (and its payload) at the front of the buffer turned out to be.
enum Item {
    Frame(Frame),
    Open(Partial),
}

impl ReplyDecoder {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            open: Vec::new(),
            pending: 0,
        }
    }

    /// Bytes of the reply being decoded that the decoder has taken off the buffer and holds
    /// (the complete elements of an aggregate still open); 0 between replies. A reply's size
    /// on the wire is this, read before the call that returns it, plus what that call takes.
    pub fn pending_bytes(&self) -> usize {
        self.pending
    }

    /// Decodes the next reply from the front of `buf`, consuming exactly its bytes; `Ok(None)`
    /// when more bytes are needed (whatever was complete so far is kept in the decoder).
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, ProtocolError> {
        let start = buf.len();
        let decoded = self.next(buf);
        match &decoded {
            Ok(Some(_)) => self.pending = 0,
            _ => self.pending += start - buf.len(),
        }
        decoded
    }

    fn next(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, ProtocolError> {
        loop {
            let Some(item) = self.item(buf)? else {
                return Ok(None);
            };
            let frame = match item {
                Item::Frame(frame) => frame,
                Item::Open(partial) => {
                    self.open.push(partial);
                    continue;
                }
            };
            if let Some(done) = self.complete(frame) {
                return Ok(Some(done));
            }
        }
    }

    /// Adds a finished frame to the innermost open aggregate, closing every aggregate it
    /// fills; returns the top-level frame once there is one.
    fn complete(&mut self, mut frame: Frame) -> Option<Frame> {
        while let Some(mut top) = self.open.pop() {
            top.items.push(frame);
            if top.items.len() < top.expected {
                self.open.push(top);
                return None;
            }
            frame = top.finish();
        }
        Some(frame)
    }

    fn item(&self, buf: &mut BytesMut) -> Result<Option<Item>, ProtocolError> {
        let Some(header) = wire::header(buf, self.limits.max_line_len)? else {
            return Ok(None);
        };
        match header.kind {
            b'$' | b'!' | b'=' => self.blob(buf, &header),
            b'*' | b'%' | b'~' | b'|' | b'>' => self.aggregate(buf, &header).map(Some),
            _ => line(buf, &header).map(|frame| Some(Item::Frame(frame))),
        }
    }

    fn blob(&self, buf: &mut BytesMut, header: &Header) -> Result<Option<Item>, ProtocolError> {
        let len = wire::length(header.content(buf), "bulk")?;
        if len == -1 && header.kind == b'$' {
            buf.advance(header.len());
            return Ok(Some(Item::Frame(Frame::NullBulk)));
        }
        let len = wire::bulk_len(len, self.limits.max_bulk_len)?;
        let Some(data) = wire::payload(buf, header.len(), len)? else {
            return Ok(None);
        };
        let frame = match header.kind {
            b'$' => Frame::Bulk(data),
            b'!' => Frame::BlobError(data),
            _ => verbatim(data)?,
        };
        Ok(Some(Item::Frame(frame)))
    }

    fn aggregate(&self, buf: &mut BytesMut, header: &Header) -> Result<Item, ProtocolError> {
        let count = wire::length(header.content(buf), "aggregate")?;
        if count == -1 && header.kind == b'*' {
            buf.advance(header.len());
            return Ok(Item::Frame(Frame::NullArray));
        }
        let count = wire::element_count(count, self.limits.max_elements)?;
        if self.open.len() >= self.limits.max_depth {
            return Err(ProtocolError::TooDeep {
                max: self.limits.max_depth,
            });
        }
        buf.advance(header.len());
        let (kind, expected) = match header.kind {
            b'*' => (Aggregate::Array, count),
            b'%' => (Aggregate::Map, count.saturating_mul(2)),
            b'~' => (Aggregate::Set, count),
            b'>' => (Aggregate::Push, count),
            _ => (
                Aggregate::Attribute,
                count.saturating_mul(2).saturating_add(1),
            ),
        };
        let partial = Partial {
            kind,
            expected,
            items: Vec::with_capacity(expected.min(PREALLOC)),
        };
        Ok(if expected == 0 {
            Item::Frame(partial.finish())
        } else {
            Item::Open(partial)
        })
    }
}

/// A frame that is only a header line: `+ - : _ , # (`.
fn line(buf: &mut BytesMut, header: &Header) -> Result<Frame, ProtocolError> {
    let content = header.content(buf);
    let frame = match header.kind {
        b':' => {
            Frame::Integer(wire::parse_int(content).ok_or(ProtocolError::Malformed("integer"))?)
        }
        b'_' if content.is_empty() => Frame::Null,
        b'_' => return Err(ProtocolError::Malformed("null")),
        b'#' => match content {
            b"t" => Frame::Boolean(true),
            b"f" => Frame::Boolean(false),
            _ => return Err(ProtocolError::Malformed("boolean")),
        },
        b'+' | b'-' | b',' | b'(' => {
            let kind = header.kind;
            let text = take_line(buf, header);
            return match kind {
                b'+' => Ok(Frame::Simple(text)),
                b'-' => Ok(Frame::Error(text)),
                b',' => Double::parse(text)
                    .map(Frame::Double)
                    .ok_or(ProtocolError::Malformed("double")),
                _ => BigNumber::parse(text)
                    .map(Frame::BigNumber)
                    .ok_or(ProtocolError::Malformed("big number")),
            };
        }
        other => return Err(ProtocolError::UnknownType(ByteName(other))),
    };
    buf.advance(header.len());
    Ok(frame)
}

/// Takes the header off the buffer and returns its line as shared bytes.
fn take_line(buf: &mut BytesMut, header: &Header) -> Bytes {
    let taken = buf.split_to(header.len()).freeze();
    taken.slice(1..header.len() - 2)
}

fn verbatim(data: Bytes) -> Result<Frame, ProtocolError> {
    match &data[..] {
        [a, b, c, b':', ..] => Ok(Frame::Verbatim {
            format: [*a, *b, *c],
            text: data.slice(4..),
        }),
        _ => Err(ProtocolError::Malformed("verbatim string")),
    }
}

impl Partial {
    fn finish(self) -> Frame {
        match self.kind {
            Aggregate::Array => Frame::Array(self.items),
            Aggregate::Set => Frame::Set(self.items),
            Aggregate::Push => Frame::Push(self.items),
            Aggregate::Map => Frame::Map(pairs(self.items.into_iter())),
            Aggregate::Attribute => {
                let mut items = self.items;
                // `expected` is odd, so the described frame is there.
                let frame = Box::new(items.pop().unwrap_or(Frame::Null));
                Frame::Attribute {
                    attributes: pairs(items.into_iter()),
                    frame,
                }
            }
        }
    }
}

fn pairs(mut items: impl Iterator<Item = Frame>) -> Vec<(Frame, Frame)> {
    let mut pairs = Vec::new();
    while let (Some(key), Some(value)) = (items.next(), items.next()) {
        pairs.push((key, value));
    }
    pairs
}

#[cfg(test)]
mod tests;
