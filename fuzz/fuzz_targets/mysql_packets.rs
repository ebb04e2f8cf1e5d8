//! Fuzzes what the MySQL proxy parses from clients and servers (`tdb_proxy::mysql`): packet
//! framing and the packet reader, the greeting, `SSLRequest` and `HandshakeResponse41`,
//! commands, the end of a server's answer for every kind of command, the password exchange
//! against fake digests, and statement text. Nothing may panic; what decodes round-trips; no
//! bytes log a fake user in (see `tdb_proxy::mysql::fuzz`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tdb_proxy::mysql::fuzz::fuzz_packets(data);
});
