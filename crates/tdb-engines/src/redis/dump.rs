//! Logical dumps of one namespace, and restores of them, as a stream of RESP frames:
//!
//! - a header `[ "tdb-redis-dump", 1 ]` (format and version);
//! - one record per key, `[ key without the prefix, expires_at, payload ]`: `payload` is the
//!   key's `DUMP`, `expires_at` its `PEXPIRETIME` (Unix time in milliseconds, `-1` for no
//!   expiry). An absolute time rather than `PTTL`: a key restored from an old backup keeps its
//!   real deadline, and one whose deadline passed meanwhile is not brought back;
//! - an end `[ "end", records ]`, so a stream cut short is never taken for a whole dump.
//!
//! Keys are walked with `SCAN … MATCH <prefix>*` as the namespace's own user, 100 at a time
//! in a `MULTI` of `DUMP` and `PEXPIRETIME` each, so a key's payload and expiry agree. The dump
//! is consistent per key, not as a whole (Redis has no snapshot a client can read); a key that
//! vanishes mid-dump is skipped, and SCAN may hand a key twice (both records restore the same
//! key, the later wins).

use bytes::{Bytes, BytesMut};
use futures_util::FutureExt;
use tdb_resp::frame::{Frame, Limits, ReplyDecoder};
use tdb_resp::prefix::Prefix;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::conn::{self, RedisConn};
use super::namespace::{KeyScan, prefix_of, unlink_all};
use crate::engine::{DatabaseAccess, Dump, EngineError, Result};

pub const FORMAT: &str = "tdb-redis-dump";
pub const VERSION: i64 = 1;
const END: &str = "end";
/// Keys per `MULTI` of a dump, and `RESTORE`s per pipelined batch of a restore.
const BATCH: usize = 100;
/// The pipe between the dump's task and its reader.
const PIPE: usize = 256 * 1024;

/// Starts dumping `source.database` as `source.user`.
pub async fn dump(source: &DatabaseAccess) -> Result<Dump> {
    super::check_name(&source.database)?;
    let prefix = prefix_of(&source.database);
    let conn = conn::connect(source).await?;
    let (reader, writer) = tokio::io::duplex(PIPE);
    let task = AbortOnDrop(tokio::spawn(write_dump(conn, prefix, writer)));
    let finish = async move {
        let mut task = task;
        match (&mut task.0).await {
            Ok(result) => result,
            Err(e) => Err(EngineError::Internal(format!("the dump stopped: {e}"))),
        }
    };
    Ok(Dump {
        output: Box::new(reader),
        finish: finish.boxed(),
    })
}

/// Ends the dump's task when its `finish` is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<Result<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn bulk(b: impl Into<Bytes>) -> Frame {
    Frame::Bulk(b.into())
}

async fn write_dump(
    mut conn: RedisConn,
    prefix: Prefix,
    mut out: impl AsyncWrite + Unpin,
) -> Result<()> {
    let broken = |e: std::io::Error| EngineError::Internal(format!("the dump's reader left: {e}"));
    let mut buf = BytesMut::new();
    Item::Header { version: VERSION }.encode(&mut buf);
    let mut records = 0i64;
    let mut scan = KeyScan::new(&prefix);
    while let Some(keys) = scan.next(&mut conn).await? {
        for chunk in keys.chunks(BATCH) {
            for record in dump_keys(&mut conn, &prefix, chunk).await? {
                record.encode(&mut buf);
                records += 1;
            }
            out.write_all(&buf).await.map_err(broken)?;
            buf.clear();
        }
    }
    Item::End { records }.encode(&mut buf);
    out.write_all(&buf).await.map_err(broken)?;
    out.shutdown().await.map_err(broken)
}

/// The records of `keys`, read in one transaction; keys gone meanwhile are left out.
async fn dump_keys(conn: &mut RedisConn, prefix: &Prefix, keys: &[Bytes]) -> Result<Vec<Item>> {
    conn.send(&["MULTI"]);
    for key in keys {
        conn.send(&[&b"DUMP"[..], &key[..]]);
        conn.send(&[&b"PEXPIRETIME"[..], &key[..]]);
    }
    conn.send(&["EXEC"]);
    for _ in 0..=keys.len() * 2 {
        conn::check(conn.read().await?)?;
    }
    let replies = conn::items(conn.read().await?, "EXEC")?;
    let mut records = Vec::with_capacity(keys.len());
    for (key, pair) in keys.iter().zip(replies.chunks_exact(2)) {
        let (Frame::Bulk(payload), Frame::Integer(expires_at)) = (&pair[0], &pair[1]) else {
            continue; // vanished between SCAN and DUMP (a nil payload, or -2)
        };
        let Some(name) = prefix.strip(key) else {
            continue;
        };
        records.push(Item::Record(Record {
            key: name,
            expires_at: *expires_at,
            payload: payload.clone(),
        }));
    }
    Ok(records)
}

/// One record of a dump.
#[derive(Debug)]
struct Record {
    key: Bytes,
    expires_at: i64,
    payload: Bytes,
}

/// One frame of a dump: the header, a record, or the end.
#[derive(Debug)]
enum Item {
    Header { version: i64 },
    Record(Record),
    End { records: i64 },
}

impl Item {
    fn encode(self, buf: &mut BytesMut) {
        let parts = match self {
            Self::Header { version } => vec![bulk(FORMAT), Frame::Integer(version)],
            Self::Record(r) => vec![
                Frame::Bulk(r.key),
                Frame::Integer(r.expires_at),
                Frame::Bulk(r.payload),
            ],
            Self::End { records } => vec![bulk(END), Frame::Integer(records)],
        };
        Frame::Array(parts).encode(buf);
    }

    fn decode(frame: Frame) -> Result<Self> {
        let Frame::Array(parts) = frame else {
            return Err(malformed("a frame is not a list"));
        };
        match <[Frame; 3]>::try_from(parts) {
            Ok(
                [
                    Frame::Bulk(key),
                    Frame::Integer(expires_at),
                    Frame::Bulk(payload),
                ],
            ) => Ok(Self::Record(Record {
                key,
                expires_at,
                payload,
            })),
            Ok(_) => Err(malformed("a record has the wrong shape")),
            Err(parts) => match &parts[..] {
                [Frame::Bulk(tag), Frame::Integer(n)] if tag == END => {
                    Ok(Self::End { records: *n })
                }
                [Frame::Bulk(tag), Frame::Integer(n)] if tag == FORMAT => {
                    Ok(Self::Header { version: *n })
                }
                _ => Err(malformed("a frame has the wrong shape")),
            },
        }
    }
}

fn malformed(what: &str) -> EngineError {
    EngineError::Internal(format!("not a tdb Redis dump: {what}"))
}

/// Reads a dump's frames from an input stream.
struct Frames<R> {
    input: R,
    buf: BytesMut,
    decoder: ReplyDecoder,
}

impl<R: AsyncRead + Unpin> Frames<R> {
    fn new(input: R) -> Self {
        Self {
            input,
            buf: BytesMut::with_capacity(PIPE),
            decoder: ReplyDecoder::new(Limits::default()),
        }
    }

    /// The next frame; `None` at the end of the input.
    async fn next(&mut self) -> Result<Option<Frame>> {
        loop {
            if let Some(frame) = self
                .decoder
                .decode(&mut self.buf)
                .map_err(|e| malformed(&e.to_string()))?
            {
                return Ok(Some(frame));
            }
            let n =
                self.input.read_buf(&mut self.buf).await.map_err(|e| {
                    EngineError::Internal(format!("the backup cannot be read: {e}"))
                })?;
            if n == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(malformed("it ends inside a frame"))
                };
            }
        }
    }
}

/// Restores a dump into `target.database` as `target.user` (its owner): the namespace's keys
/// are unlinked first, then each record is `RESTORE <prefix+key> <expires_at> <payload>
/// REPLACE ABSTTL` (`0` and no `ABSTTL` for a key without expiry), in pipelined batches. The
/// server skips a key whose deadline has passed. A restore is not atomic: one that fails (a
/// refused payload, a dump cut short, a lost connection) leaves the keys restored before the
/// failure, and the caller empties the target again (`create_restore_target`) or drops it.
pub async fn restore(
    target: &DatabaseAccess,
    input: Box<dyn AsyncRead + Send + Unpin>,
) -> Result<()> {
    super::check_name(&target.database)?;
    let prefix = prefix_of(&target.database);
    let mut frames = Frames::new(input);
    let header = match frames.next().await? {
        Some(frame) => Item::decode(frame)?,
        None => return Err(malformed("it is empty")),
    };
    match header {
        Item::Header { version: VERSION } => {}
        Item::Header { version } => return Err(malformed(&format!("version {version}"))),
        _ => return Err(malformed("no header")),
    }
    let mut conn = conn::connect(target).await?;
    unlink_all(&mut conn, &prefix).await?;
    let mut restored = 0i64;
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let Some(frame) = frames.next().await? else {
            return Err(malformed("it ends before its last record (cut short?)"));
        };
        match Item::decode(frame)? {
            Item::Record(record) => {
                batch.push(record);
                if batch.len() == BATCH {
                    restore_batch(&mut conn, &prefix, &mut batch).await?;
                }
                restored += 1;
            }
            Item::End { records } if records == restored => break,
            Item::End { records } => {
                return Err(malformed(&format!(
                    "{records} records announced, {restored} read"
                )));
            }
            Item::Header { .. } => return Err(malformed("a second header")),
        }
    }
    restore_batch(&mut conn, &prefix, &mut batch).await
}

async fn restore_batch(
    conn: &mut RedisConn,
    prefix: &Prefix,
    batch: &mut Vec<Record>,
) -> Result<()> {
    for record in batch.iter() {
        let key = prefix.key(&record.key);
        if record.expires_at > 0 {
            let at = record.expires_at.to_string();
            let args: [&[u8]; 6] = [
                b"RESTORE",
                &key,
                at.as_bytes(),
                &record.payload,
                b"REPLACE",
                b"ABSTTL",
            ];
            conn.send(&args);
        } else {
            let args: [&[u8]; 5] = [b"RESTORE", &key, b"0", &record.payload, b"REPLACE"];
            conn.send(&args);
        }
    }
    let mut first_error = None;
    for _ in 0..batch.len() {
        if let Err(e) = conn::check(conn.read().await?) {
            first_error.get_or_insert(e);
        }
    }
    batch.clear();
    first_error.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_the_end_are_told_apart_and_anything_else_refused() {
        let record = Frame::Array(vec![bulk("k"), Frame::Integer(-1), bulk("p")]);
        assert!(
            matches!(Item::decode(record), Ok(Item::Record(r)) if r.key == "k" && r.expires_at == -1)
        );
        let end = Frame::Array(vec![bulk(END), Frame::Integer(3)]);
        assert!(matches!(Item::decode(end), Ok(Item::End { records: 3 })));
        let mut buf = BytesMut::new();
        Item::Header { version: VERSION }.encode(&mut buf);
        assert_eq!(&buf[..], b"*2\r\n$14\r\ntdb-redis-dump\r\n:1\r\n");
        for bad in [
            Frame::Integer(1),
            Frame::Array(vec![bulk("k"), bulk("p")]),
            Frame::Array(vec![bulk("k"), bulk("-1"), bulk("p")]),
        ] {
            assert!(Item::decode(bad).is_err());
        }
    }

    #[tokio::test]
    async fn a_stream_cut_inside_a_frame_is_an_error() {
        let mut frames = Frames::new(&b"*2\r\n$3\r\nabc\r\n:1\r\n*3\r\n$1"[..]);
        assert!(matches!(frames.next().await, Ok(Some(Frame::Array(_)))));
        assert!(frames.next().await.is_err());
    }
}
