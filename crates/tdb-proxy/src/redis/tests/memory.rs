//! Large requests and replies take from the proxy's budget for large frames (4 MiB here): one
//! that would pass it ends its own session with an error that says so, and everyone else goes
//! on; the memory comes back once the frame is gone.

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
