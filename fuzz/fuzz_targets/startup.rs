//! Fuzzes the PostgreSQL startup-packet codec (`tdb_proxy::pg::startup`): `decode` never
//! panics, whatever it accepts re-encodes to the same bytes and decodes back to itself, and the
//! async `read` agrees with `decode` on every input.

#![no_main]

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use libfuzzer_sys::fuzz_target;
use tdb_proxy::pg::startup::{self, StartupError, StartupRequest};

type Decoded = Result<Option<(StartupRequest, usize)>, StartupError>;

fuzz_target!(|data: &[u8]| {
    let decoded = StartupRequest::decode(data);
    if let Ok(Some((req, used))) = &decoded {
        check_round_trip(req, &data[..*used]);
    }
    check_read_agrees(data, &decoded);
});

fn check_round_trip(req: &StartupRequest, packet: &[u8]) {
    let mut encoded = Vec::new();
    req.encode(&mut encoded);
    // The wire form has one spelling per request, so an accepted packet re-encodes exactly.
    assert_eq!(encoded, packet, "re-encoding {req:?}");
    let again = StartupRequest::decode(&encoded);
    assert_eq!(again, Ok(Some((req.clone(), encoded.len()))));
}

fn check_read_agrees(data: &[u8], decoded: &Decoded) {
    let mut reader = data;
    let read = poll_once(startup::read(&mut reader));
    match decoded {
        Ok(Some((req, used))) => {
            assert_eq!(read.as_ref(), Ok(req));
            assert_eq!(
                reader.len(),
                data.len() - used,
                "read took other than one packet"
            );
        }
        // `decode` wants more bytes where `read` meets the end of its input.
        Ok(None) => assert_eq!(read, Err(StartupError::Closed)),
        Err(err) => assert_eq!(read.as_ref(), Err(err)),
    }
}

/// A `&[u8]` reader is always ready, so the future completes on its first poll and no runtime
/// is needed.
fn poll_once<F: Future>(future: F) -> F::Output {
    let mut cx = Context::from_waker(Waker::noop());
    match pin!(future).poll(&mut cx) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("startup::read pended on an in-memory reader"),
    }
}
