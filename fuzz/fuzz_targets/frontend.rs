//! Fuzzes what the proxy parses from a client after the startup packet: authentication message
//! framing, the SASL initial response, both SCRAM client messages, and the error/command-tag
//! parsers the relay uses. Nothing may panic, and size limits must hold.

#![no_main]

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use libfuzzer_sys::fuzz_target;
use tdb_proxy::pg::frame::{self, MAX_AUTH_MESSAGE};
use tdb_proxy::pg::scram::{ScramServer, Verifier};

fuzz_target!(|data: &[u8]| {
    // Authentication messages as the session reads them.
    let mut reader = data;
    if let Poll::Ready(Ok(body)) = poll_once(frame::read_auth_message(&mut reader, b'p')) {
        assert!(body.len() + 5 <= MAX_AUTH_MESSAGE + 1);
        if let Some((mechanism, first)) = frame::parse_sasl_initial(&body) {
            let verifier = Verifier::fake(&[7; 32], "fuzz");
            // Over TLS, with channel binding offered, for whichever mechanism the client named.
            let mut server = ScramServer::new(verifier, false).with_binding([5u8; 32].into());
            if server.client_first_for(mechanism, first).is_ok() {
                // No password matches a fake verifier, whatever the client sends.
                assert!(server.client_final(reader).is_err());
            }
        }
    }
    // A real verifier against arbitrary client messages split at the first NUL.
    let (first, last) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    // The verifier of the password `pencil`.
    if let Some(v) = Verifier::parse(
        "SCRAM-SHA-256$4096:c2FsdHNhbHRzYWx0c2FsdA==$Y7KMtnzzL+zDqi0RtBNdAPJekq+PCg4eCcAMKDtLILQ=:c1MMj1kLUJb96FIM7IjzQUXiW2pIi8LDbQl55vL1oRo=",
    ) {
        let mut server = ScramServer::new(v, true);
        if server.client_first(first).is_ok() {
            let _ = server.client_final(last);
        }
    }
    // What the relay reads from server messages.
    let _ = frame::error_fields(data);
    let _ = frame::error_code(data);
    let _ = frame::command_rows(data);
    let mut out = Vec::new();
    frame::rewrite_error(data, "rewritten", &mut out);
    let len = u32::from_be_bytes([out[1], out[2], out[3], out[4]]) as usize;
    assert_eq!(len + 1, out.len());
    let mut out = Vec::new();
    frame::without_context(data, &mut out);
    let len = u32::from_be_bytes([out[1], out[2], out[3], out[4]]) as usize;
    assert_eq!(len + 1, out.len());
});

fn poll_once<F: Future>(future: F) -> Poll<F::Output> {
    let mut cx = Context::from_waker(Waker::noop());
    pin!(future).poll(&mut cx)
}
