//! Fuzzes the reading of a client's run-time parameters (`tdb_proxy::pg::params`): the startup
//! packet's pairs and libpq's `options`. Nothing panics; whatever is accepted has valid,
//! lower-case names, none of them refused (a role), one value per name; the statement timeout given to
//! the server never exceeds the database's limit.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tdb_proxy::pg::params::{REFUSED, duration_ms, for_route, requested};

fuzz_target!(|data: &[u8]| {
    // The first 4 bytes are the limit in ms; the rest are NUL-separated names and values, as
    // in a startup packet (which the codec has already checked to be text).
    let (limit, rest) = data.split_at(data.len().min(4));
    let mut bytes = [0u8; 4];
    bytes[..limit.len()].copy_from_slice(limit);
    let limit_ms = u64::from(u32::from_le_bytes(bytes));
    let text = String::from_utf8_lossy(rest);
    let mut fields = text.split('\0');
    let mut startup = Vec::new();
    while let (Some(k), Some(v)) = (fields.next(), fields.next()) {
        startup.push((k.to_string(), v.to_string()));
    }
    let Ok(asked) = requested(&startup) else {
        return;
    };
    for (i, (name, _)) in asked.iter().enumerate() {
        assert!(!name.is_empty());
        assert!(
            name.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.'),
            "{name}"
        );
        assert!(REFUSED.iter().all(|(refused, _)| refused != name), "{name}");
        assert!(asked[..i].iter().all(|(n, _)| n != name), "{name} twice");
    }
    let Ok(params) = for_route(&asked, limit_ms) else {
        return;
    };
    let timeouts: Vec<&String> = params
        .iter()
        .filter(|(n, _)| n == "statement_timeout")
        .map(|(_, v)| v)
        .collect();
    assert_eq!(timeouts.len(), 1, "{params:?}");
    let ms = duration_ms(timeouts[0]).expect("a timeout in ms");
    if limit_ms > 0 {
        assert!(ms > 0 && ms <= limit_ms, "{ms} ms under a limit of {limit_ms}");
    }
});
