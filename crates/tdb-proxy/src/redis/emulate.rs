//! The commands the proxy answers for the tenant alone: DBSIZE and INFO keyspace count the
//! prefix's keys with SCAN, FLUSHDB unlinks them in batches (SCAN + UNLINK, never one long
//! command that would stall the shared server). The SCANs go over the session's walker (see
//! [`super::walker`]); the UNLINKs over the session's own connection, as the tenant's user,
//! whose ACL holds them to the prefix.

use bytes::Bytes;
use tdb_resp::frame::Frame;
use tdb_resp::policy::Emulation;
use tdb_resp::prefix::Prefix;

use super::backend::{Backend, BackendError};
use super::link::Link;
use super::walker::Walker;

/// Keys SCAN is asked to look at per call.
const SCAN_COUNT: &[u8] = b"1000";

/// The answer to `emulation`; pub/sub pushes that arrive meanwhile are collected in `pushes`.
pub async fn run(
    emulation: &Emulation,
    link: &mut Link<'_>,
    walker: &mut Walker<'_>,
    prefix: &Prefix,
    resp3: bool,
    pushes: &mut Vec<Frame>,
) -> Result<Frame, BackendError> {
    Ok(match emulation {
        Emulation::Answer(frame) => frame.clone(),
        Emulation::Quit => Frame::Simple(Bytes::from_static(b"OK")),
        Emulation::DbSize => Frame::Integer(count(walker, prefix).await?),
        Emulation::FlushDb => {
            let backend = link.own_connection().await?;
            flush(backend, walker, prefix, pushes).await?;
            Frame::Simple(Bytes::from_static(b"OK"))
        }
        Emulation::InfoKeyspace => {
            let keys = count(walker, prefix).await?;
            let mut text = String::from("# Keyspace\r\n");
            if keys > 0 {
                // Expiring keys are not counted (it would take a PTTL per key).
                text.push_str(&format!("db0:keys={keys},expires=0,avg_ttl=0\r\n"));
            }
            if resp3 {
                Frame::Verbatim {
                    format: *b"txt",
                    text: text.into(),
                }
            } else {
                Frame::Bulk(text.into())
            }
        }
    })
}

/// The prefix's keys, counted through SCAN.
pub(super) async fn count(walker: &mut Walker<'_>, prefix: &Prefix) -> Result<i64, BackendError> {
    let mut keys = 0i64;
    let mut cursor = Bytes::from_static(b"0");
    loop {
        let (next, names) = scan_step(walker, prefix, &cursor).await?;
        keys = keys.saturating_add(i64::try_from(names.len()).unwrap_or(i64::MAX));
        if &next[..] == b"0" {
            return Ok(keys);
        }
        cursor = next;
    }
}

/// Every key of the prefix unlinked, one SCAN batch at a time: the walker lists them, the
/// tenant's own connection unlinks them.
async fn flush(
    backend: &mut Backend,
    walker: &mut Walker<'_>,
    prefix: &Prefix,
    pushes: &mut Vec<Frame>,
) -> Result<(), BackendError> {
    let mut cursor = Bytes::from_static(b"0");
    loop {
        let (next, names) = scan_step(walker, prefix, &cursor).await?;
        if !names.is_empty() {
            let mut unlink: Vec<&[u8]> = vec![b"UNLINK"];
            unlink.extend(names.iter().map(|n| &n[..]));
            if let Frame::Error(e) = backend.call(&unlink, pushes).await? {
                return Err(BackendError::Refused(
                    String::from_utf8_lossy(&e).into_owned(),
                ));
            }
        }
        if &next[..] == b"0" {
            return Ok(());
        }
        cursor = next;
    }
}

/// One SCAN step over the prefix on the walker: the next cursor and the names in the prefix.
async fn scan_step(
    walker: &mut Walker<'_>,
    prefix: &Prefix,
    cursor: &[u8],
) -> Result<(Bytes, Vec<Bytes>), BackendError> {
    scan_matching(walker, prefix, &prefix.match_all(), cursor).await
}

/// One SCAN step over the keys matching `pattern` (already anchored in the prefix).
async fn scan_matching(
    walker: &mut Walker<'_>,
    prefix: &Prefix,
    pattern: &[u8],
    cursor: &[u8],
) -> Result<(Bytes, Vec<Bytes>), BackendError> {
    let request: [&[u8]; 6] = [b"SCAN", cursor, b"MATCH", pattern, b"COUNT", SCAN_COUNT];
    let reply = walker.call(&request).await?;
    scan_reply(&reply, prefix)
}

/// `KEYS <pattern>` (anchored in the prefix) answered with SCAN steps, so the shared server
/// answers other clients between them instead of walking its whole keyspace in one command.
/// A name SCAN meets twice (a rehash between steps) is listed once, as KEYS would.
pub(super) async fn keys(
    walker: &mut Walker<'_>,
    prefix: &Prefix,
    pattern: &[u8],
) -> Result<Frame, BackendError> {
    let mut seen = std::collections::HashSet::new();
    let mut names = Vec::new();
    let mut cursor = Bytes::from_static(b"0");
    loop {
        let (next, found) = scan_matching(walker, prefix, pattern, &cursor).await?;
        for name in found {
            if seen.insert(name.clone()) {
                names.push(Frame::Bulk(name));
            }
        }
        if &next[..] == b"0" {
            return Ok(Frame::Array(names));
        }
        cursor = next;
    }
}

/// SCAN's cursor and the names in the prefix (the pattern keeps others out; the check is the
/// second wall).
fn scan_reply(reply: &Frame, prefix: &Prefix) -> Result<(Bytes, Vec<Bytes>), BackendError> {
    let bad = || BackendError::Refused(format!("unexpected SCAN reply: {reply:?}"));
    let items = reply.as_items().ok_or_else(bad)?;
    let cursor = items.first().and_then(Frame::as_bytes).ok_or_else(bad)?;
    let names = items.get(1).and_then(Frame::as_items).ok_or_else(bad)?;
    let names = names
        .iter()
        .filter_map(Frame::as_bytes)
        .filter(|n| prefix.strip(n).is_some())
        .cloned()
        .collect();
    Ok((cursor.clone(), names))
}
