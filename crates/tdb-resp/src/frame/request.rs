//! Client requests: an array of bulk strings (what client libraries send) or an inline command
//! line (what redis-cli and telnet send when a command is typed). Empty arrays and blank lines
//! are skipped, as redis-server skips them. A request always has a command name.

use bytes::{Buf, Bytes, BytesMut};

use super::encode::{blob, len_i64, number};
use super::error::ProtocolError;
use super::inline::{self, Inline};
use super::limits::Limits;
use super::wire;

/// Arguments reserved up front, whatever count a request announces.
const PREALLOC: usize = 16;

/// One command: its name and arguments, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    args: Vec<Bytes>,
}

impl Request {
    /// A request from its arguments; `None` when there is no command name.
    pub fn new(args: Vec<Bytes>) -> Option<Self> {
        (!args.is_empty()).then_some(Self { args })
    }

    /// The command name as sent (any case).
    pub fn name(&self) -> &Bytes {
        &self.args[0]
    }

    /// The command name and its arguments.
    pub fn args(&self) -> &[Bytes] {
        &self.args
    }

    pub fn into_args(self) -> Vec<Bytes> {
        self.args
    }

    /// Appends the request as an array of bulk strings (inline requests too, so the server
    /// always gets the unambiguous form).
    pub fn encode(&self, dst: &mut BytesMut) {
        number(dst, b'*', len_i64(self.args.len()));
        for arg in &self.args {
            blob(dst, b'$', &[arg]);
        }
    }
}

/// An incremental request decoder; keep one per connection and feed it the same buffer.
#[derive(Debug)]
pub struct RequestDecoder {
    limits: Limits,
    /// An array whose header has been read, with the arguments received so far.
    pending: Option<Pending>,
    /// Bytes taken off the buffer for `pending`.
    pending_bytes: usize,
}

#[derive(Debug)]
struct Pending {
    expected: usize,
    args: Vec<Bytes>,
}

enum Begin {
    Incomplete,
    Skipped,
    Inline(Request),
    Array(Pending),
}

impl RequestDecoder {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            pending: None,
            pending_bytes: 0,
        }
    }

    /// Bytes of the request being decoded that the decoder has taken off the buffer and holds
    /// (its complete arguments); 0 between requests.
    pub fn pending_bytes(&self) -> usize {
        self.pending_bytes
    }

    /// Changes the limits from the next argument on (a proxy loosens them once the client has
    /// authenticated); a request already begun keeps its arguments.
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// Decodes the next request from the front of `buf`, consuming exactly its bytes;
    /// `Ok(None)` when more bytes are needed.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Request>, ProtocolError> {
        let start = buf.len();
        let decoded = self.next(buf);
        match &decoded {
            Ok(Some(_)) => self.pending_bytes = 0,
            _ => self.pending_bytes += start - buf.len(),
        }
        decoded
    }

    fn next(&mut self, buf: &mut BytesMut) -> Result<Option<Request>, ProtocolError> {
        loop {
            let mut pending = match self.pending.take() {
                Some(pending) => pending,
                None => match self.begin(buf)? {
                    Begin::Incomplete => return Ok(None),
                    Begin::Skipped => continue,
                    Begin::Inline(request) => return Ok(Some(request)),
                    Begin::Array(pending) => pending,
                },
            };
            while pending.args.len() < pending.expected {
                match self.argument(buf)? {
                    Some(arg) => pending.args.push(arg),
                    None => {
                        self.pending = Some(pending);
                        return Ok(None);
                    }
                }
            }
            return Ok(Some(Request { args: pending.args }));
        }
    }

    fn begin(&self, buf: &mut BytesMut) -> Result<Begin, ProtocolError> {
        let Some(&first) = buf.first() else {
            return Ok(Begin::Incomplete);
        };
        if first != b'*' {
            return Ok(match inline::decode(buf, self.limits.max_inline_len)? {
                Inline::Incomplete => Begin::Incomplete,
                Inline::Blank => Begin::Skipped,
                Inline::Args(args) => Begin::Inline(self.checked(args)?),
            });
        }
        let Some(header) = wire::header(buf, self.limits.max_inline_len)? else {
            return Ok(Begin::Incomplete);
        };
        let count = wire::length(header.content(buf), "multibulk")?;
        if count <= 0 {
            buf.advance(header.len());
            return Ok(Begin::Skipped);
        }
        let expected = wire::element_count(count, self.limits.max_elements)?;
        buf.advance(header.len());
        Ok(Begin::Array(Pending {
            expected,
            args: Vec::with_capacity(expected.min(PREALLOC)),
        }))
    }

    /// An inline request held to the limits of an array request, so its encoding decodes.
    fn checked(&self, args: Vec<Bytes>) -> Result<Request, ProtocolError> {
        wire::element_count(len_i64(args.len()), self.limits.max_elements)?;
        for arg in &args {
            wire::bulk_len(len_i64(arg.len()), self.limits.max_bulk_len)?;
        }
        Ok(Request { args })
    }

    fn argument(&self, buf: &mut BytesMut) -> Result<Option<Bytes>, ProtocolError> {
        let Some(&kind) = buf.first() else {
            return Ok(None);
        };
        wire::expect_kind(kind, b'$')?;
        let Some(header) = wire::header(buf, self.limits.max_inline_len)? else {
            return Ok(None);
        };
        let len = wire::length(header.content(buf), "bulk")?;
        let len = wire::bulk_len(len, self.limits.max_bulk_len)?;
        wire::payload(buf, header.len(), len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(decoder: &mut RequestDecoder, buf: &mut BytesMut) -> Vec<Vec<Bytes>> {
        let mut out = Vec::new();
        while let Some(req) = decoder.decode(buf).expect("valid") {
            out.push(req.into_args());
        }
        out
    }

    #[test]
    fn arrays_inline_lines_and_skipped_blanks() {
        let mut buf = BytesMut::from(
            &b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*0\r\n\r\nPING\r\n*-1\r\nECHO 'a b'\n"[..],
        );
        let mut decoder = RequestDecoder::new(Limits::default());
        assert_eq!(
            decode_all(&mut decoder, &mut buf),
            [vec!["GET", "k"], vec!["PING"], vec!["ECHO", "a b"]]
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn the_arguments_of_a_request_begun_are_counted_until_it_completes() {
        let wire = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nvalue\r\n";
        let mut decoder = RequestDecoder::new(Limits::default());
        let mut buf = BytesMut::from(&wire[..wire.len() - 4]);
        assert!(decoder.decode(&mut buf).expect("valid").is_none());
        assert_eq!(decoder.pending_bytes() + buf.len(), wire.len() - 4);
        assert!(
            decoder.pending_bytes() >= 4 + 9 + 7,
            "the array header, SET and k"
        );
        buf.extend_from_slice(&wire[wire.len() - 4..]);
        assert!(decoder.decode(&mut buf).expect("valid").is_some());
        assert_eq!((decoder.pending_bytes(), buf.len()), (0, 0));
    }

    #[test]
    fn a_request_arriving_byte_by_byte() {
        let wire = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nva\r\nl\r\n";
        let mut decoder = RequestDecoder::new(Limits::default());
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for &b in wire {
            buf.extend_from_slice(&[b]);
            got.extend(decode_all(&mut decoder, &mut buf));
        }
        assert_eq!(got, [vec!["SET", "k", "va\r\nl"]]);
    }

    #[test]
    fn array_requests_re_encode_byte_exact() {
        let wire = b"*2\r\n$4\r\nECHO\r\n$0\r\n\r\n";
        let mut buf = BytesMut::from(&wire[..]);
        let req = RequestDecoder::new(Limits::default())
            .decode(&mut buf)
            .expect("valid")
            .expect("complete");
        let mut out = BytesMut::new();
        req.encode(&mut out);
        assert_eq!(&out[..], wire);
        assert_eq!(req.name(), "ECHO");
    }

    #[test]
    fn a_claimed_512_mib_argument_is_not_allocated_before_it_arrives() {
        let mut buf = BytesMut::from(&b"*1\r\n$536870912\r\nabc"[..]);
        let capacity = buf.capacity();
        let mut decoder = RequestDecoder::new(Limits::default());
        assert_eq!(decoder.decode(&mut buf), Ok(None));
        assert_eq!(decoder.decode(&mut buf), Ok(None));
        assert!(buf.capacity() <= capacity);
        let pending = decoder.pending.as_ref().expect("array begun");
        assert!(pending.args.capacity() <= PREALLOC);
    }

    #[test]
    fn limits_and_malformed_requests_are_refused() {
        let limits = Limits {
            max_bulk_len: 4,
            max_elements: 2,
            max_inline_len: 8,
            ..Limits::default()
        };
        let cases: [(&[u8], ProtocolError); 9] = [
            (
                b"*3\r\n",
                ProtocolError::TooManyElements { count: 3, max: 2 },
            ),
            (
                b"*1\r\n$5\r\n",
                ProtocolError::BulkTooLong { len: 5, max: 4 },
            ),
            (b"*1\r\n$-1\r\n", ProtocolError::InvalidLength("bulk")),
            (b"*x\r\n", ProtocolError::InvalidLength("multibulk")),
            (
                b"*1\r\n:1\r\n",
                ProtocolError::UnexpectedType {
                    expected: super::super::error::ByteName(b'$'),
                    got: super::super::error::ByteName(b':'),
                },
            ),
            (
                b"PING PING PING\r\n",
                ProtocolError::InlineTooLong { max: 8 },
            ),
            (b"*1\r\n$2\r\nabcd", ProtocolError::MissingCrlf),
            (
                b"a b c\r\n",
                ProtocolError::TooManyElements { count: 3, max: 2 },
            ),
            (b"abcde\r\n", ProtocolError::BulkTooLong { len: 5, max: 4 }),
        ];
        for (wire, err) in cases {
            let mut buf = BytesMut::from(wire);
            let got = RequestDecoder::new(limits).decode(&mut buf);
            assert_eq!(got, Err(err), "{:?}", String::from_utf8_lossy(wire));
        }
    }
}
