//! Property tests of the codec: what is encoded decodes to itself, any split of the input
//! yields the same frames, and no input makes a decoder panic.

use bytes::{Bytes, BytesMut};
use proptest::collection::vec;
use proptest::prelude::*;

use super::{BigNumber, Double, Frame, Limits, ReplyDecoder, Request, RequestDecoder};

fn line_text() -> impl Strategy<Value = Bytes> {
    vec(
        any::<u8>().prop_filter("no line end", |b| *b != b'\r' && *b != b'\n'),
        0..12,
    )
    .prop_map(Bytes::from)
}

fn blob() -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..24).prop_map(Bytes::from)
}

fn scalar() -> impl Strategy<Value = Frame> {
    prop_oneof![
        line_text().prop_map(Frame::Simple),
        line_text().prop_map(Frame::Error),
        any::<i64>().prop_map(Frame::Integer),
        blob().prop_map(Frame::Bulk),
        Just(Frame::NullBulk),
        Just(Frame::NullArray),
        Just(Frame::Null),
        any::<f64>().prop_map(|d| Frame::Double(Double::from_f64(d))),
        any::<bool>().prop_map(Frame::Boolean),
        blob().prop_map(Frame::BlobError),
        (any::<[u8; 3]>(), blob()).prop_map(|(format, text)| Frame::Verbatim { format, text }),
        "-?[0-9]{1,40}"
            .prop_filter_map("a big number", |s: String| BigNumber::parse(Bytes::from(s))
                .map(Frame::BigNumber)),
    ]
}

fn frame() -> impl Strategy<Value = Frame> {
    scalar().prop_recursive(4, 48, 6, |inner| {
        let pairs = vec((inner.clone(), inner.clone()), 0..4);
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Frame::Array),
            pairs.clone().prop_map(Frame::Map),
            vec(inner.clone(), 0..6).prop_map(Frame::Set),
            vec(inner.clone(), 0..6).prop_map(Frame::Push),
            (pairs, inner).prop_map(|(attributes, frame)| Frame::Attribute {
                attributes,
                frame: Box::new(frame)
            }),
        ]
    })
}

fn encode_all(frames: &[Frame]) -> Vec<u8> {
    let mut out = BytesMut::new();
    for frame in frames {
        frame.encode(&mut out);
    }
    out.to_vec()
}

/// Feeds `wire` in the given pieces, decoding after each, until an error or the end.
fn decode_in_pieces(wire: &[u8], cuts: &[usize]) -> Result<Vec<Frame>, super::ProtocolError> {
    let mut decoder = ReplyDecoder::new(Limits::default());
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let mut from = 0;
    for &cut in cuts.iter().chain(std::iter::once(&wire.len())) {
        let cut = cut.clamp(from, wire.len());
        buf.extend_from_slice(&wire[from..cut]);
        from = cut;
        while let Some(frame) = decoder.decode(&mut buf)? {
            frames.push(frame);
        }
    }
    Ok(frames)
}

proptest! {
    #[test]
    fn encoded_frames_decode_to_themselves(frames in vec(frame(), 1..4)) {
        let wire = encode_all(&frames);
        prop_assert_eq!(decode_in_pieces(&wire, &[]), Ok(frames));
    }

    #[test]
    fn any_split_gives_the_same_frames(frames in vec(frame(), 1..3), mut cuts in vec(any::<prop::sample::Index>(), 0..6)) {
        let wire = encode_all(&frames);
        let mut cuts: Vec<usize> = cuts.drain(..).map(|i| i.index(wire.len() + 1)).collect();
        cuts.sort_unstable();
        prop_assert_eq!(decode_in_pieces(&wire, &cuts), Ok(frames));
    }

    #[test]
    fn decoded_replies_re_encode_to_their_bytes(wire in vec(any::<u8>(), 0..64)) {
        let mut buf = BytesMut::from(&wire[..]);
        let mut decoder = ReplyDecoder::new(Limits::default());
        let mut consumed = 0;
        while let Ok(Some(frame)) = decoder.decode(&mut buf) {
            let used = wire.len() - buf.len() - consumed;
            prop_assert_eq!(encode_all(&[frame]), &wire[consumed..consumed + used]);
            consumed += used;
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(wire in vec(any::<u8>(), 0..256), max in 1usize..16) {
        let limits = Limits { max_bulk_len: max, max_elements: max, max_depth: max, max_inline_len: max, max_line_len: max };
        let mut buf = BytesMut::from(&wire[..]);
        let mut replies = ReplyDecoder::new(limits);
        while let Ok(Some(_)) = replies.decode(&mut buf) {}
        let mut buf = BytesMut::from(&wire[..]);
        let mut requests = RequestDecoder::new(limits);
        while let Ok(Some(_)) = requests.decode(&mut buf) {}
    }

    #[test]
    fn requests_round_trip_in_any_split(args in vec(vec(blob(), 1..5), 1..4), cut in any::<prop::sample::Index>()) {
        let requests: Vec<Request> = args.into_iter().filter_map(Request::new).collect();
        let mut wire = BytesMut::new();
        for req in &requests {
            req.encode(&mut wire);
        }
        let cut = cut.index(wire.len() + 1);
        let mut decoder = RequestDecoder::new(Limits::default());
        let mut buf = BytesMut::from(&wire[..cut]);
        let mut got = Vec::new();
        while let Some(req) = decoder.decode(&mut buf).map_err(|e| TestCaseError::fail(e.to_string()))? {
            got.push(req);
        }
        buf.extend_from_slice(&wire[cut..]);
        while let Some(req) = decoder.decode(&mut buf).map_err(|e| TestCaseError::fail(e.to_string()))? {
            got.push(req);
        }
        prop_assert_eq!(got, requests);
    }
}
