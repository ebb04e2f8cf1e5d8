//! Fuzzes the RESP codec (`tdb_resp::frame`) with small limits: neither decoder panics, every
//! reply decoded re-encodes to exactly the bytes it was decoded from and decodes back to
//! itself, feeding the input in two pieces changes nothing, and every request decoded
//! re-encodes to a request that decodes back to itself.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use tdb_resp::frame::{Frame, Limits, ProtocolError, ReplyDecoder, Request, RequestDecoder};

const LIMITS: Limits = Limits {
    max_bulk_len: 64,
    max_elements: 8,
    max_depth: 4,
    max_inline_len: 64,
    max_line_len: 64,
};

fuzz_target!(|data: &[u8]| {
    let whole = replies(data, data.len());
    check_reply_round_trips(data, &whole);
    // The first byte picks where to cut the input in two.
    let cut = data
        .first()
        .map_or(0, |&b| usize::from(b) % (data.len() + 1));
    assert_eq!(replies(data, cut), whole, "cut at {cut}");
    check_requests(data);
});

type Replies = (Vec<(Frame, usize)>, Option<ProtocolError>);

/// The replies decoded from `data` fed as `data[..cut]` then the rest, each with the input
/// offset where it ended, and the error that stopped decoding, if any.
fn replies(data: &[u8], cut: usize) -> Replies {
    let mut decoder = ReplyDecoder::new(LIMITS);
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let mut fed = 0;
    for piece in [&data[..cut], &data[cut..]] {
        buf.extend_from_slice(piece);
        fed += piece.len();
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(frame)) => frames.push((frame, fed - buf.len())),
                Ok(None) => break,
                Err(err) => return (frames, Some(err)),
            }
        }
    }
    (frames, None)
}

fn check_reply_round_trips(data: &[u8], (frames, _): &Replies) {
    let mut start = 0;
    for (frame, end) in frames {
        let mut encoded = BytesMut::new();
        frame.encode(&mut encoded);
        assert_eq!(&encoded[..], &data[start..*end], "re-encoding {frame:?}");
        let again = ReplyDecoder::new(LIMITS).decode(&mut encoded);
        assert_eq!(again.as_ref(), Ok(&Some(frame.clone())));
        assert!(encoded.is_empty());
        start = *end;
    }
}

fn check_requests(data: &[u8]) {
    let mut decoder = RequestDecoder::new(LIMITS);
    let mut buf = BytesMut::from(data);
    while let Ok(Some(request)) = decoder.decode(&mut buf) {
        assert!(!request.args().is_empty());
        let mut encoded = BytesMut::new();
        request.encode(&mut encoded);
        let again: Result<Option<Request>, _> = RequestDecoder::new(LIMITS).decode(&mut encoded);
        assert_eq!(again, Ok(Some(request)));
        assert!(encoded.is_empty());
    }
}
