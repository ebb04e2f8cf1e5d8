//! Large requests and replies take from the proxy's budget for large frames (4 MiB here): one
//! that would pass it ends its own session with an error that says so, and everyone else goes
//! on; the memory comes back once the frame is gone. A lane holds a bounded share of what a
//! session pipelines, and of the replies its client has not read.

use std::time::Duration;

use tdb_resp::frame::Frame;

use super::*;

/// `SET <key> <bytes of x>`.
fn set(key: &str, bytes: usize) -> Vec<u8> {
    let mut out =
        format!("*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n${bytes}\r\n", key.len()).into_bytes();
    out.extend(std::iter::repeat_n(b'x', bytes));
    out.extend_from_slice(b"\r\n");
    out
}

fn says_too_large(frame: &Frame) -> bool {
    text(frame).contains("memory for large frames")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_past_the_budget_ends_its_session_alone() -> anyhow::Result<()> {
    let redis = server().await?;
    let f = Fixture::start(&redis, PlaintextPolicy::Loopback).await?;
    let mut other = f.login(&A).await?;
    assert_eq!(text(&other.call(&["SET", "small", "1"]).await?), "OK");

    // A request of 32 MiB does not fit: its session hears why and is closed. The client is
    // still writing when the proxy gives up on it; its write must still complete (the proxy
    // reads and drops the rest) and the error must reach it.
    let mut big = f.login(&B).await?;
    big.send_raw(&set("big", 32 << 20)).await?;
    let answer = big.read().await?;
    assert!(says_too_large(&answer), "{answer:?}");
    assert!(big.closed().await);
    assert_eq!(text(&other.call(&["GET", "small"]).await?), "1");

    // 3 MiB fits, and again from another session once the first is done with it.
    for _ in 0..2 {
        let mut fits = f.login(&B).await?;
        fits.send_raw(&set("three", 3 << 20)).await?;
        assert_eq!(text(&fits.read().await?), "OK");
        let value = fits.call(&["STRLEN", "three"]).await?;
        assert_eq!(value, Frame::Integer(3 << 20));
    }

    // A reply past the budget: a 6 MiB value put on the server directly.
    let mut admin = redis.admin().await?;
    let value = "y".repeat(6 << 20);
    assert_eq!(text(&admin.call(&["SET", "tb:huge", &value]).await?), "OK");
    // Over the shared lane, and over a connection of the session's own (a HELLO login).
    let mut on_lane = f.login(&B).await?;
    let answer = on_lane.call(&["GET", "huge"]).await?;
    assert!(says_too_large(&answer), "{answer:?}");
    assert!(on_lane.closed().await);
    let mut own = f.raw().await?;
    let hello = own.call(&["HELLO", "2", "AUTH", B.id, B.key]).await?;
    assert!(hello.as_items().is_some(), "{hello:?}");
    let answer = own.call(&["GET", "huge"]).await?;
    assert!(says_too_large(&answer), "{answer:?}");
    assert!(own.closed().await);

    // The budget is whole again and the proxy serves as before.
    let mut after = f.login(&B).await?;
    after.send_raw(&set("three", 3 << 20)).await?;
    assert_eq!(text(&after.read().await?), "OK");
    assert_eq!(text(&other.call(&["GET", "small"]).await?), "1");
    drop((other, big, after, on_lane, own));
    f.finish().await
}

/// `N` sessions of B, each answered once over the lane they share.
async fn on_one_lane<const N: usize>(
    f: &Fixture,
) -> anyhow::Result<[Raw<tokio::net::TcpStream>; N]> {
    let mut sessions = Vec::new();
    for _ in 0..N {
        let mut session = f.login(&B).await?;
        anyhow::ensure!(text(&session.call(&["PING"]).await?) == "PONG");
        sessions.push(session);
    }
    anyhow::ensure!(
        f.proxy.redis_lanes.open() == 1,
        "the sessions share one lane"
    );
    sessions
        .try_into()
        .map_err(|_| anyhow::anyhow!("{N} sessions"))
}

/// B's key `key` set to `value` on the server directly.
async fn put(redis: &TestRedis, key: &str, value: &str) -> anyhow::Result<()> {
    let answer = redis
        .admin()
        .await?
        .call(&["SET", &format!("tb:{key}"), value])
        .await?;
    anyhow::ensure!(text(&answer) == "OK", "SET answered {answer:?}");
    Ok(())
}

/// Waits until the server has run `command` `calls` times.
async fn wait_for_calls(redis: &TestRedis, command: &str, calls: u64) -> anyhow::Result<()> {
    let mut admin = redis.admin().await?;
    let needle = format!("cmdstat_{command}:calls=");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let stats = text(&admin.call(&["INFO", "commandstats"]).await?);
        let now: u64 = stats
            .lines()
            .find_map(|line| line.strip_prefix(&needle))
            .and_then(|rest| rest.split(',').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        if now >= calls {
            return Ok(());
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "the server ran {command} {now} times, not {calls}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Samples what the lanes hold until `done` is set, and returns the most seen.
fn watch_lanes(
    f: &Fixture,
    done: Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<usize> {
    let proxy = f.proxy.clone();
    tokio::spawn(async move {
        let mut most = 0;
        while !done.load(std::sync::atomic::Ordering::Relaxed) {
            most = most.max(proxy.redis_lanes.held());
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        most.max(proxy.redis_lanes.held())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_pipelining_faster_than_the_server_reads_waits_for_its_lane() -> anyhow::Result<()>
{
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let redis = server().await?;
    let f = Fixture::without_timeout(&redis).await?;
    let mut flood = f.login(&B).await?;
    assert_eq!(text(&flood.call(&["SET", "flood:first", "1"]).await?), "OK");
    assert_eq!(f.proxy.redis_lanes.open(), 1, "the session is on its lane");

    // 64 MiB of SETs, sent while the server reads nothing. Without a bound the lane takes all
    // the kernel's buffers do not.
    const SETS: usize = 16 * 1024;
    let mut bytes = Vec::with_capacity(SETS * 4200);
    for i in 0..SETS {
        bytes.extend(set(&format!("flood:{i}"), 4096));
    }
    let total = bytes.len();
    redis.pause()?;
    let done = Arc::new(AtomicBool::new(false));
    let most = watch_lanes(&f, done.clone());
    let written = Arc::new(AtomicUsize::new(0));
    let writer = {
        let written = written.clone();
        tokio::spawn(async move {
            for chunk in bytes.chunks(64 * 1024) {
                flood.send_raw(chunk).await?;
                written.fetch_add(chunk.len(), Ordering::Relaxed);
            }
            for i in 0..SETS {
                let answer = flood.read().await?;
                anyhow::ensure!(text(&answer) == "OK", "SET {i}: {answer:?}");
            }
            anyhow::Ok(flood)
        })
    };
    // Until the client has finished writing, or has written nothing for 2 s: it is held back.
    let mut last = (0, std::time::Instant::now());
    while !writer.is_finished() {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let now = written.load(Ordering::Relaxed);
        if now != last.0 {
            last = (now, std::time::Instant::now());
        } else if last.1.elapsed() > std::time::Duration::from_secs(2) {
            break;
        }
    }
    let stalled_at = written.load(Ordering::Relaxed);
    redis.resume()?;
    let mut flood = writer.await??;
    done.store(true, Ordering::Relaxed);
    let most = most.await?;
    // The session's share of the lane (what it sent unanswered, at most one read of its client
    // past `FREE`), with what it read of its client's pipeline.
    assert!(
        most <= 3 * crate::redis::memory::FREE,
        "the lane held {most} bytes of a {total}-byte pipeline"
    );
    assert!(
        stalled_at < total,
        "the client wrote all {total} bytes while the server read nothing"
    );
    // Nothing was lost.
    let last = flood
        .call(&["STRLEN", &format!("flood:{}", SETS - 1)])
        .await?;
    assert_eq!(last, Frame::Integer(4096));
    drop(flood);
    f.finish().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_a_client_does_not_read_end_its_session_past_the_budget_and_the_lane_goes_on()
-> anyhow::Result<()> {
    let redis = server().await?;
    // No query timeout: the replies wait for the client, not the server.
    let f = Fixture::without_timeout(&redis).await?;
    let value = "z".repeat(512 << 10);
    put(&redis, "half", &value).await?;
    let [mut other, mut slow] = on_one_lane(&f).await?;

    // 256 GETs of 512 KiB: 128 MiB of replies, which the client does not read.
    let mut gets = Vec::new();
    for _ in 0..256 {
        gets.extend_from_slice(b"*2\r\n$3\r\nGET\r\n$4\r\nhalf\r\n");
    }
    slow.send_raw(&gets).await?;
    // Once the server has run them all, the other session's PING is answered after every
    // GET's reply has come over the lane.
    wait_for_calls(&redis, "get", 256).await?;
    assert_eq!(text(&other.call(&["PING"]).await?), "PONG");

    // The slow client gets the replies that were written or kept for it, then the reason.
    let mut values = 0;
    let last = loop {
        match slow.read().await? {
            Frame::Bulk(b) if b.len() == value.len() => values += 1,
            frame => break frame,
        }
        assert!(values < 256, "every reply came");
    };
    assert!(
        text(&last).contains("wait for this client to read them") && says_too_large(&last),
        "{last:?}"
    );
    assert!(slow.closed().await);
    // The lane and the tenant's other session go on.
    assert_eq!(
        other.call(&["STRLEN", "half"]).await?,
        Frame::Integer(512 << 10)
    );
    assert_eq!(f.proxy.redis_lanes.open(), 1);
    assert_eq!(f.proxy.redis_lanes.held(), 0);
    drop((other, slow));
    f.finish().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_of_many_elements_counts_whole_while_it_waits_in_its_seat() -> anyhow::Result<()> {
    let redis = server().await?;
    let f = Fixture::without_timeout(&redis).await?;
    // A list of 200,000 one-byte elements: each LRANGE of it is a 1.4 MB reply, which the lane
    // reads over many reads, its elements taken into the decoder as they come.
    const ELEMENTS: usize = 200_000;
    let mut admin = redis.admin().await?;
    let mut rpush = vec!["RPUSH", "tb:list"];
    rpush.extend(std::iter::repeat_n("x", 10_000));
    for _ in 0..ELEMENTS / 10_000 {
        admin.call(&rpush).await?;
    }
    let [mut other, mut slow] = on_one_lane(&f).await?;

    // 24 of them, 34 MB, which the client does not read: more than the socket buffers, the
    // relay's share and the seat's limit (1 MiB here) hold, counted in full.
    const RANGES: usize = 24;
    let mut ranges = Vec::new();
    for _ in 0..RANGES {
        ranges.extend_from_slice(b"*4\r\n$6\r\nLRANGE\r\n$4\r\nlist\r\n$1\r\n0\r\n$2\r\n-1\r\n");
    }
    slow.send_raw(&ranges).await?;
    wait_for_calls(&redis, "lrange", RANGES as u64).await?;
    assert_eq!(text(&other.call(&["PING"]).await?), "PONG");

    let mut whole = 0;
    let last = loop {
        match slow.read().await? {
            Frame::Array(items) if items.len() == ELEMENTS => whole += 1,
            frame => break frame,
        }
        assert!(
            whole < RANGES,
            "every reply came: its elements were not counted"
        );
    };
    assert!(
        text(&last).contains("wait for this client to read them"),
        "{last:?}"
    );
    assert!(slow.closed().await);
    assert_eq!(
        other.call(&["LLEN", "list"]).await?,
        Frame::Integer(ELEMENTS as i64)
    );
    drop((other, slow));
    f.finish().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_parked_by_a_hold_on_a_lane_still_takes_the_replies_it_is_owed()
-> anyhow::Result<()> {
    let redis = server().await?;
    let f = Fixture::without_timeout(&redis).await?;
    let value = "h".repeat(32 << 10);
    put(&redis, "half", &value).await?;
    let [mut c] = on_one_lane(&f).await?;

    // 16 GETs reach the lane and wait at the stopped server; then the tenant is held, and the
    // client's next command parks at the gate.
    redis.pause()?;
    let mut gets = Vec::new();
    for _ in 0..16 {
        gets.extend_from_slice(b"*2\r\n$3\r\nGET\r\n$4\r\nhalf\r\n");
    }
    c.send_raw(&gets).await?;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while f.proxy.redis_lanes.waiting() < 16 {
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "the GETs did not reach the lane"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    f.proxy
        .gates
        .hold(B.id, tokio::time::Instant::now() + Duration::from_secs(60));
    c.send(&[b"PING"]).await?;
    let parked = tokio::time::timeout(Duration::from_millis(300), c.read()).await;
    assert!(parked.is_err(), "answered while the server was stopped");
    redis.resume()?;

    // While the hold lasts, the client gets every reply it was owed (they would otherwise
    // wait in its seat, counted against the budget), and nothing more.
    for i in 0..16 {
        let reply = c.read().await?;
        assert!(
            matches!(&reply, Frame::Bulk(b) if b.len() == value.len()),
            "GET {i}: {}",
            text(&reply).chars().take(200).collect::<String>()
        );
    }
    let parked = tokio::time::timeout(Duration::from_millis(300), c.read()).await;
    assert!(parked.is_err(), "a held tenant's command ran");
    f.proxy.gates.release(B.id);
    assert_eq!(text(&c.read().await?), "PONG");
    drop(c);
    f.finish().await
}
