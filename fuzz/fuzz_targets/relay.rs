//! Fuzzes what the relay parses from a client's stream after authentication: message framing
//! (including lengths that run past the end), the statement of a `Query` or `Parse`, the
//! refusals of pinned sessions and of transaction pooling, `DEALLOCATE`, and the renaming of
//! named statements for transaction pooling. Nothing may panic; refusals must be framed right.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tdb_proxy::pg::relay::fuzz_client_messages(data);
});
