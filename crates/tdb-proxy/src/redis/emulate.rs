//! The commands the proxy answers for the tenant alone, over the session's own server
//! connection: DBSIZE and INFO keyspace count the prefix's keys with SCAN, FLUSHDB unlinks them
//! in batches (SCAN + UNLINK, never one long command that would stall the shared server).

use bytes::Bytes;
use tdb_resp::frame::Frame;
use tdb_resp::policy::Emulation;
use tdb_resp::prefix::Prefix;

use super::backend::{Backend, BackendError};

/// Keys SCAN is asked to look at per call.
const SCAN_COUNT: &[u8] = b"1000";

/// The answer to `emulation`; pub/sub pushes that arrive meanwhile are collected in `pushes`.
pub async fn run(
    emulation: &Emulation,
    backend: &mut Backend,
    prefix: &Prefix,
    resp3: bool,
    pushes: &mut Vec<Frame>,
) -> Result<Frame, BackendError> {
    Ok(match emulation {
        Emulation::Answer(frame) => frame.clone(),
        Emulation::Quit => Frame::Simple(Bytes::from_static(b"OK")),
        Emulation::DbSize => Frame::Integer(count(backend, prefix, pushes).await?),
        Emulation::FlushDb => {
            flush(backend, prefix, pushes).await?;
            Frame::Simple(Bytes::from_static(b"OK"))
        }
        Emulation::InfoKeyspace => {
            let keys = count(backend, prefix, pushes).await?;
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
pub(super) async fn count(
    backend: &mut Backend,
    prefix: &Prefix,
    pushes: &mut Vec<Frame>,
) -> Result<i64, BackendError> {
    let mut keys = 0i64;
    scan(backend, prefix, pushes, |names| {
        keys += i64::try_from(names.len()).unwrap_or(i64::MAX);
        None
    })
    .await?;
    Ok(keys)
}

/// Every key of the prefix unlinked, one SCAN batch at a time.
async fn flush(
    backend: &mut Backend,
    prefix: &Prefix,
    pushes: &mut Vec<Frame>,
) -> Result<(), BackendError> {
    scan(backend, prefix, pushes, |names| {
        if names.is_empty() {
            return None;
        }
        let mut unlink = vec![Bytes::from_static(b"UNLINK")];
        unlink.extend(names);
        Some(unlink)
    })
    .await
}

/// Walks SCAN over the prefix; `each` gets every batch's names (all inside the prefix) and may
/// return a request to run before the next batch.
async fn scan(
    backend: &mut Backend,
    prefix: &Prefix,
    pushes: &mut Vec<Frame>,
    mut each: impl FnMut(Vec<Bytes>) -> Option<Vec<Bytes>>,
) -> Result<(), BackendError> {
    let pattern = prefix.match_all();
    let mut cursor = Bytes::from_static(b"0");
    loop {
        let request: [&[u8]; 6] = [b"SCAN", &cursor, b"MATCH", &pattern, b"COUNT", SCAN_COUNT];
        let reply = backend.call(&request, pushes).await?;
        let (next, names) = scan_reply(&reply, prefix)?;
        if let Some(then) = each(names) {
            let args: Vec<&[u8]> = then.iter().map(|a| &a[..]).collect();
            let answer = backend.call(&args, pushes).await?;
            if let Frame::Error(e) = answer {
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
