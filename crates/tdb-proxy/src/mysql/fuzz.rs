//! What the `mysql_packets` fuzz target runs (here so that proptest runs it too, without
//! cargo-fuzz): every parser of bytes a client or server sends, on arbitrary bytes. Nothing may
//! panic; what decodes must encode to something that decodes to the same; the limits hold.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use super::auth::{self, AuthSwitch, Verifiers};
use super::capability::Caps;
use super::command::Command;
use super::handshake::{ClientHello, Handshake};
use super::login::{Exchange, Next, Stored};
use super::packet::{self, PacketReader};
use super::reply;
use super::response::{Expect, Response, Seen};
use super::sqltext;

/// The pre-authentication limit the session reads handshake packets with.
const LIMIT: usize = 64 * 1024;

#[doc(hidden)]
pub fn fuzz_packets(data: &[u8]) {
    // The bytes as packets, and as one payload.
    for payload in packets(data).iter().map(Vec::as_slice).chain([data]) {
        hello(payload);
        greeting(payload);
        command(payload);
    }
    answers(data);
    login(data);
    let text = String::from_utf8_lossy(data);
    for reading in sqltext::readings(&text) {
        for statement in reading {
            let _ = sqltext::tokens(&statement);
            let _ = sqltext::leading_words(&statement, 3);
        }
    }
    let _ = AuthSwitch::decode(data);
    let _ = reply::Ok::decode(data);
    let _ = reply::Err::decode(data);
    let _ = reply::Eof::decode(data);
}

/// Framing: `decode` and the async reader agree, and what decodes re-encodes to its bytes.
/// Returns the payloads.
fn packets(data: &[u8]) -> Vec<Vec<u8>> {
    let mut payloads = Vec::new();
    let mut rest = data;
    let mut reader = PacketReader::default();
    let mut stream = data;
    while let Ok(Some((packet, used))) = packet::decode(rest, LIMIT) {
        assert!(packet.payload.len() <= LIMIT, "over the limit");
        let mut again = Vec::new();
        let next = packet::encode(&mut again, packet.seq, &packet.payload);
        assert_eq!(&again[..], &rest[..used], "re-encoding a packet");
        assert_eq!(next, packet.next_seq());
        match poll_once(reader.next(&mut stream, LIMIT)) {
            Poll::Ready(Ok(read)) => assert_eq!(read, packet, "the reader disagrees"),
            other => panic!("the reader disagrees: {other:?}"),
        }
        rest = &rest[used..];
        payloads.push(packet.payload);
    }
    payloads
}

/// `SSLRequest` or `HandshakeResponse41`: what decodes with length-encoded auth data (the form
/// every client of protocol 4.1 uses) round-trips.
fn hello(payload: &[u8]) {
    let Ok(ClientHello::Response(response)) = ClientHello::decode(payload) else {
        return;
    };
    if !response.caps.has(Caps::PLUGIN_AUTH_LENENC_DATA) {
        return;
    }
    let mut encoded = Vec::new();
    response.encode(&mut encoded);
    match ClientHello::decode(&encoded) {
        Ok(ClientHello::Response(again)) => assert_eq!(again, response, "response round trip"),
        other => panic!("a response re-encoded as {other:?}"),
    }
}

fn greeting(payload: &[u8]) {
    let Ok(greeting) = Handshake::decode(payload) else {
        return;
    };
    let mut encoded = Vec::new();
    greeting.encode(&mut encoded);
    assert_eq!(
        Handshake::decode(&encoded),
        Ok(greeting),
        "greeting round trip"
    );
}

fn command(payload: &[u8]) {
    let Ok(command) = Command::decode(payload) else {
        return;
    };
    let mut encoded = Vec::new();
    command.encode(&mut encoded);
    assert_eq!(Command::decode(&encoded), Ok(command), "command round trip");
}

/// Every kind of answer, fed the packets framed from `data`, and each as a long packet; with
/// and without MariaDB's metadata caching.
fn answers(data: &[u8]) {
    let expects = [
        Expect::Results,
        Expect::Prepare,
        Expect::FieldList,
        Expect::Rows,
        Expect::One,
    ];
    for (expect, cached) in expects.into_iter().flat_map(|e| [(e, false), (e, true)]) {
        let mut response = Response::new(expect).caching_metadata(cached);
        let mut rest = data;
        while let Ok(Some((packet, used))) = packet::decode(rest, LIMIT) {
            let seen = match packet.payload.first() {
                Some(0x80..=0x8f) => Seen::Large,
                _ => Seen::Whole(&packet.payload),
            };
            if response.step(seen).is_err() {
                break;
            }
            rest = &rest[used..];
        }
    }
}

/// A password exchange against fake digests never lets anyone in, whatever is sent.
fn login(data: &[u8]) {
    let (first, more) = data.split_at(data.len() / 2);
    let plugin = match data.first().map(|b| b % 4) {
        Some(0) => Some(auth::NATIVE),
        Some(1) => Some(auth::CACHING_SHA2),
        Some(2) => Some(auth::CLEAR),
        _ => None,
    };
    for tls in [false, true] {
        let fake = Stored::Mysql(Verifiers::fake(&[1; 32], "fuzz"));
        let mut exchange = Exchange::new(fake, *b"abcdefghijklmnopqrst", tls);
        let mut next = exchange.first(plugin, first);
        for answer in [more, first, more] {
            match next {
                Next::Accept { .. } => panic!("a fake user logged in"),
                Next::Reject(_) => break,
                Next::Ask(_) => next = exchange.more(answer),
            }
        }
        assert!(
            !matches!(next, Next::Accept { .. }),
            "a fake user logged in"
        );
    }
}

fn poll_once<F: Future>(future: F) -> Poll<F::Output> {
    let mut cx = Context::from_waker(Waker::noop());
    pin!(future).poll(&mut cx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The seeds of `fuzz/corpus/mysql_packets`, as the fuzz target reads them.
    #[test]
    fn the_seeds_pass() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../fuzz/corpus/mysql_packets");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).expect("the corpus").flatten() {
            fuzz_packets(&std::fs::read(entry.path()).expect("a seed"));
            seen += 1;
        }
        assert!(seen >= 5, "{seen} seeds in {}", dir.display());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn arbitrary_bytes(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            fuzz_packets(&data);
        }

        #[test]
        fn framed_payloads(payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..80), 1..5)) {
            let mut data = Vec::new();
            for (i, p) in payloads.iter().enumerate() {
                packet::encode(&mut data, i as u8, p);
            }
            fuzz_packets(&data);
        }
    }
}
