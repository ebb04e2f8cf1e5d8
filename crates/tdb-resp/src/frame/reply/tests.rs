use super::*;

fn decode_one(wire: &[u8]) -> Result<Option<Frame>, ProtocolError> {
    ReplyDecoder::new(Limits::default()).decode(&mut BytesMut::from(wire))
}

fn reencoded(frame: &Frame) -> Vec<u8> {
    let mut out = BytesMut::new();
    frame.encode(&mut out);
    out.to_vec()
}

#[test]
fn every_resp3_type_decodes_and_re_encodes_byte_exact() {
    let wires: [&[u8]; 18] = [
        b"+OK\r\n",
        b"-ERR unknown command\r\n",
        b":-12\r\n",
        b"$5\r\nhe\r\no\r\n",
        b"$-1\r\n",
        b"*-1\r\n",
        b"*3\r\n:1\r\n$0\r\n\r\n*0\r\n",
        b"_\r\n",
        b",1e+300\r\n",
        b",-inf\r\n",
        b"#t\r\n",
        b"!21\r\nSYNTAX invalid syntax\r\n",
        b"=15\r\ntxt:Some string\r\n",
        b"(3492890328409238509324850943850943825024385\r\n",
        b"%2\r\n+first\r\n:1\r\n$6\r\nsecond\r\n#f\r\n",
        b"~2\r\n+a\r\n,2.5\r\n",
        b"|1\r\n+key-popularity\r\n%1\r\n$1\r\na\r\n,0.1923\r\n*2\r\n:2039123\r\n:9543892\r\n",
        b">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n",
    ];
    for wire in wires {
        let frame = decode_one(wire)
            .unwrap_or_else(|e| panic!("{e}: {:?}", String::from_utf8_lossy(wire)))
            .expect("complete");
        assert_eq!(reencoded(&frame), wire, "{frame:?}");
    }
}

#[test]
fn attributes_wrap_the_frame_they_describe_even_nested() {
    let frame = decode_one(b"*2\r\n|1\r\n+ttl\r\n:3\r\n$1\r\nv\r\n:2\r\n")
        .expect("valid")
        .expect("complete");
    assert_eq!(
        frame,
        Frame::Array(vec![
            Frame::Attribute {
                attributes: vec![(Frame::Simple("ttl".into()), Frame::Integer(3))],
                frame: Box::new(Frame::Bulk("v".into())),
            },
            Frame::Integer(2),
        ])
    );
}

#[test]
fn replies_arriving_byte_by_byte_are_assembled_once() {
    let wire = b"*2\r\n%1\r\n+k\r\n$3\r\nabc\r\n:7\r\n+NEXT\r\n";
    let mut decoder = ReplyDecoder::new(Limits::default());
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    for &b in wire {
        buf.extend_from_slice(&[b]);
        while let Some(frame) = decoder.decode(&mut buf).expect("valid") {
            frames.push(frame);
        }
    }
    assert_eq!(frames.len(), 2);
    assert_eq!(frames[1], Frame::Simple("NEXT".into()));
    assert!(buf.is_empty());
}

#[test]
fn a_claimed_512_mib_bulk_is_not_allocated_before_it_arrives() {
    let mut buf = BytesMut::from(&b"*1000000000\r\n$536870912\r\nabc"[..]);
    let capacity = buf.capacity();
    let limits = Limits {
        max_elements: usize::MAX,
        ..Limits::default()
    };
    let mut decoder = ReplyDecoder::new(limits);
    assert_eq!(decoder.decode(&mut buf), Ok(None));
    assert_eq!(decoder.decode(&mut buf), Ok(None));
    assert!(buf.capacity() <= capacity);
    assert_eq!(&buf[..], b"$536870912\r\nabc");
    assert!(decoder.open[0].items.capacity() <= PREALLOC);
}

#[test]
fn limits_and_malformed_replies_are_refused() {
    let limits = Limits {
        max_bulk_len: 4,
        max_elements: 2,
        max_depth: 2,
        max_line_len: 8,
        ..Limits::default()
    };
    let cases: [(&[u8], ProtocolError); 14] = [
        (b"$5\r\n", ProtocolError::BulkTooLong { len: 5, max: 4 }),
        (
            b"~3\r\n",
            ProtocolError::TooManyElements { count: 3, max: 2 },
        ),
        (
            b"%3\r\n",
            ProtocolError::TooManyElements { count: 3, max: 2 },
        ),
        (b"*1\r\n*1\r\n*1\r\n", ProtocolError::TooDeep { max: 2 }),
        (b"+123456789", ProtocolError::LineTooLong { max: 8 }),
        (b"$?\r\n", ProtocolError::Streamed),
        (b"!-1\r\n", ProtocolError::InvalidLength("bulk")),
        (b"~-1\r\n", ProtocolError::InvalidLength("aggregate")),
        (b":01\r\n", ProtocolError::Malformed("integer")),
        (b"#x\r\n", ProtocolError::Malformed("boolean")),
        (b",1.5.x\r\n", ProtocolError::Malformed("double")),
        (b"=2\r\nab\r\n", ProtocolError::Malformed("verbatim string")),
        (b"_x\r\n", ProtocolError::Malformed("null")),
        (b"PING\r\n", ProtocolError::UnknownType(ByteName(b'P'))),
    ];
    for (wire, err) in cases {
        let got = ReplyDecoder::new(limits).decode(&mut BytesMut::from(wire));
        assert_eq!(got, Err(err), "{:?}", String::from_utf8_lossy(wire));
    }
}

#[test]
fn the_bytes_of_an_open_aggregate_are_counted_until_it_completes() {
    let wire: &[u8] = b"*3\r\n$5\r\nfirst\r\n$6\r\nsecond\r\n:3\r\n+next\r\n";
    let mut decoder = ReplyDecoder::new(Limits::default());
    let mut buf = BytesMut::new();
    let (mut sizes, mut most) = (Vec::new(), 0);
    for piece in wire.chunks(7) {
        buf.extend_from_slice(piece);
        loop {
            let before = decoder.pending_bytes() + buf.len();
            let Some(_) = decoder.decode(&mut buf).expect("valid") else {
                most = most.max(decoder.pending_bytes());
                break;
            };
            sizes.push(before - buf.len());
            assert_eq!(decoder.pending_bytes(), 0, "nothing held between replies");
        }
    }
    // The array's complete elements were held in the decoder, not in the buffer.
    assert!(most >= 4 + 11 + 12, "held {most}");
    assert_eq!(sizes, [wire.len() - 7, 7]);
}
