//! A tenant's rules for its keys through the proxy: TTLs on keys written without one (SET gets
//! `EX`, other writes an `EXPIRE NX` whose reply the client never sees, in or out of MULTI),
//! and `max_keys`: at the limit no key is created, overwriting and deleting still work.

use tdb_resp::frame::Frame;

use super::*;

async fn ttl(admin: &mut Raw<tokio::net::TcpStream>, key: &str) -> anyhow::Result<i64> {
    match admin.call(&["TTL", key]).await? {
        Frame::Integer(n) => Ok(n),
        other => anyhow::bail!("TTL answered {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_written_without_a_ttl_get_the_rules() -> anyhow::Result<()> {
    let redis = server().await?;
    let f = Fixture::start(&redis, PlaintextPolicy::Loopback).await?;
    let mut c = f.login(&C).await?;
    let mut admin = redis.admin().await?;
    let default = C_DEFAULT_TTL as i64;
    let cache = C_CACHE_TTL as i64;
    assert_eq!(text(&c.call(&["SET", "plain", "v"]).await?), "OK");
    assert!((default - 2..=default).contains(&ttl(&mut admin, "tg:plain").await?));
    c.call(&["SET", "cache:page", "v"]).await?;
    assert!((1..=cache).contains(&ttl(&mut admin, "tg:cache:page").await?));
    // The client's own expiry, or its keeping one, wins.
    c.call(&["SET", "mine", "v", "EX", "1000"]).await?;
    assert!(ttl(&mut admin, "tg:mine").await? > default);
    c.call(&["SET", "kept", "v", "KEEPTTL"]).await?;
    assert_eq!(ttl(&mut admin, "tg:kept").await?, -1);
    c.call(&["SET", "forever", "v"]).await?;
    assert_eq!(c.call(&["PERSIST", "forever"]).await?, Frame::Integer(1));
    assert_eq!(ttl(&mut admin, "tg:forever").await?, -1);
    // Other writes: their reply is the client's, the EXPIRE's is not.
    assert_eq!(
        c.call(&["LPUSH", "list", "a", "b"]).await?,
        Frame::Integer(2)
    );
    assert_eq!(
        c.call(&["HSET", "cache:h", "f", "v"]).await?,
        Frame::Integer(1)
    );
    assert_eq!(c.call(&["PING"]).await?, Frame::Simple("PONG".into()));
    assert!((default - 2..=default).contains(&ttl(&mut admin, "tg:list").await?));
    assert!((1..=cache).contains(&ttl(&mut admin, "tg:cache:h").await?));
    // Inside MULTI the EXPIREs are queued too and taken out of EXEC's array.
    c.call(&["MULTI"]).await?;
    c.call(&["SADD", "set", "x"]).await?;
    c.call(&["INCR", "counter"]).await?;
    let exec = c.call(&["EXEC"]).await?;
    assert_eq!(
        exec,
        Frame::Array(vec![Frame::Integer(1), Frame::Integer(1)])
    );
    assert!((default - 2..=default).contains(&ttl(&mut admin, "tg:set").await?));
    assert!((default - 2..=default).contains(&ttl(&mut admin, "tg:counter").await?));
    drop(c);
    f.finish().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_keys_holds_and_overwriting_works() -> anyhow::Result<()> {
    let redis = server().await?;
    let f = Fixture::start(&redis, PlaintextPolicy::Loopback).await?;
    let mut d = f.login(&D).await?;
    for key in ["a", "b", "c"] {
        assert_eq!(text(&d.call(&["SET", key, "1"]).await?), "OK");
    }
    let refused = d.call(&["SET", "d", "1"]).await?;
    assert!(
        text(&refused).contains("max_keys reached") && text(&refused).contains("max_keys is 3"),
        "{refused:?}"
    );
    assert!(text(&d.call(&["LPUSH", "list", "x"]).await?).contains("max_keys"));
    assert!(text(&d.call(&["MSET", "a", "2", "new", "2"]).await?).contains("max_keys"));
    // Overwrites and writes to existing keys go through.
    assert_eq!(text(&d.call(&["SET", "a", "2"]).await?), "OK");
    assert_eq!(d.call(&["INCR", "b"]).await?, Frame::Integer(2));
    assert_eq!(text(&d.call(&["MSET", "a", "3", "c", "3"]).await?), "OK");
    // Another session of the tenant is held to the same limit.
    let mut other = f.login(&D).await?;
    assert!(text(&other.call(&["SET", "e", "1"]).await?).contains("max_keys"));
    // Deleting makes room again (the count is taken afresh before a refusal).
    assert_eq!(d.call(&["DEL", "c"]).await?, Frame::Integer(1));
    assert_eq!(text(&other.call(&["SET", "e", "1"]).await?), "OK");
    assert!(text(&d.call(&["SET", "f", "1"]).await?).contains("max_keys"));
    // In a transaction a refused creation aborts EXEC.
    d.call(&["MULTI"]).await?;
    d.call(&["SET", "a", "4"]).await?;
    let queued = d.call(&["SET", "g", "1"]).await?;
    assert!(text(&queued).contains("max_keys"), "{queued:?}");
    assert!(text(&d.call(&["EXEC"]).await?).starts_with("EXECABORT"));
    let mut admin = redis.admin().await?;
    assert_eq!(text(&admin.call(&["GET", "td:a"]).await?), "3");
    assert_eq!(d.call(&["DBSIZE"]).await?, Frame::Integer(3));
    drop((d, other));
    f.finish().await
}
