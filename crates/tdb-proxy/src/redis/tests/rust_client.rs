//! redis-rs (the `redis` crate) through the proxy: plaintext in RESP2, TLS with the proxy's CA
//! in RESP3; round trips, a pipeline, a transaction, a script, and a refusal.

use redis::AsyncCommands;

use super::*;

async fn round_trips(mut c: redis::aio::MultiplexedConnection, tag: &str) -> anyhow::Result<()> {
    let key = format!("{tag}:k");
    let () = c.set(&key, "v").await?;
    let got: String = c.get(&key).await?;
    assert_eq!(got, "v");
    let (a, b): (i64, i64) = redis::pipe()
        .atomic()
        .incr(format!("{tag}:n"), 1)
        .incr(format!("{tag}:n"), 2)
        .query_async(&mut c)
        .await?;
    assert_eq!((a, b), (1, 3));
    let mut names: Vec<String> = c.keys(format!("{tag}:*")).await?;
    names.sort();
    assert_eq!(names, [format!("{tag}:k"), format!("{tag}:n")]);
    let script = redis::Script::new("return redis.call('GET', KEYS[1])");
    let got: String = script.key(&key).invoke_async(&mut c).await?;
    assert_eq!(got, "v");
    let refused: redis::RedisResult<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("maxmemory")
        .query_async(&mut c)
        .await;
    let e = refused.expect_err("CONFIG is refused");
    assert!(e.to_string().contains("not allowed through tdb"), "{e}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_rs_plaintext_resp2_and_tls_resp3() -> anyhow::Result<()> {
    let redis = server().await?;
    let f = Fixture::start(&redis, PlaintextPolicy::Loopback).await?;
    let port = f.addr.port();
    let plain = redis::Client::open(format!("redis://{}:{}@127.0.0.1:{port}/", A.id, A.key))?;
    round_trips(plain.get_multiplexed_async_connection().await?, "plain").await?;
    let url = format!(
        "rediss://{}:{}@127.0.0.1:{port}/?protocol=resp3",
        A.id, A.key
    );
    let certs = redis::TlsCertificates {
        client_tls: None,
        root_cert: Some(std::fs::read(&f.ca)?),
    };
    let tls = redis::Client::build_with_tls(url, certs)?;
    round_trips(tls.get_multiplexed_async_connection().await?, "tls").await?;
    let mut admin = redis.admin().await?;
    assert_eq!(text(&admin.call(&["GET", "ta:tls:k"]).await?), "v");
    f.finish().await
}
