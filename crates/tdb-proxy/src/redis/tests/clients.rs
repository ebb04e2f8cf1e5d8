//! Real clients through the proxy: `redis-cli` over TLS (with the proxy's CA) and in
//! plaintext, and redis-py in RESP2 and RESP3 (pipelines, pub/sub, MULTI/EXEC, EVAL).

use std::path::PathBuf;
use std::process::Output;

use anyhow::Context;
use tokio::process::Command;

use super::*;

async fn redis_cli(
    f: &Fixture,
    tls: bool,
    tenant: &Tenant,
    args: &[&str],
) -> anyhow::Result<String> {
    let out = f
        .redis_cli(tls, tenant)
        .args(args)
        .output()
        .await
        .context("redis-cli is installed")?;
    anyhow::ensure!(out.status.success(), "redis-cli failed: {out:?}");
    Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cli_over_tls_and_in_plaintext() -> anyhow::Result<()> {
    let redis = server().await?;
    let f = Fixture::start(&redis, PlaintextPolicy::Loopback).await?;
    for tls in [true, false] {
        assert_eq!(
            redis_cli(&f, tls, &A, &["SET", "greeting", "hello"]).await?,
            "OK"
        );
        assert_eq!(redis_cli(&f, tls, &A, &["GET", "greeting"]).await?, "hello");
        assert_eq!(redis_cli(&f, tls, &A, &["DBSIZE"]).await?, "1");
        assert_eq!(redis_cli(&f, tls, &A, &["KEYS", "*"]).await?, "greeting");
        assert_eq!(redis_cli(&f, tls, &B, &["GET", "greeting"]).await?, "");
    }
    let refused = redis_cli(&f, true, &A, &["CONFIG", "GET", "*"]).await?;
    assert!(
        refused.contains("'CONFIG GET' is not allowed through tdb"),
        "{refused}"
    );
    // The key sits in A's prefix on the server.
    let mut admin = redis.admin().await?;
    assert_eq!(text(&admin.call(&["GET", "ta:greeting"]).await?), "hello");
    f.finish().await
}

/// Where `scripts/test-clients.sh` put the Python clients (`TDB_TEST_CLIENTS`, else the
/// workspace's `target/test-clients`, whatever `CARGO_TARGET_DIR` says, as the script does).
fn python_clients() -> PathBuf {
    if let Some(dir) = std::env::var_os("TDB_TEST_CLIENTS") {
        return PathBuf::from(dir).join("python");
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/test-clients/python")
}

async fn python(script: &str, args: &[String]) -> anyhow::Result<Output> {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .env("PYTHONPATH", python_clients())
        .output()
        .await?;
    anyhow::ensure!(
        out.status.success(),
        "redis-py script failed (run scripts/test-clients.sh?):\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(out)
}

/// redis-py against the proxy, for one protocol, over TLS or not. Every check is an assert in
/// the script; it prints `ok` at the end.
const REDIS_PY: &str = r#"
import sys, ssl, threading, redis
port, proto, tls, ca, user, key, other_user, other_key = sys.argv[1:9]
proto = int(proto); tls = tls == "1"
def connect(u, k):
    kw = dict(host="127.0.0.1", port=int(port), username=u, password=k, protocol=proto)
    if tls:
        kw.update(ssl=True, ssl_ca_certs=ca)
    return redis.Redis(**kw)
r = connect(user, key)
other = connect(other_user, other_key)
tag = f"p{proto}t{int(tls)}"
# Round trips of every type.
assert r.set(f"{tag}:s", "v") is True
assert r.get(f"{tag}:s") == b"v"
r.hset(f"{tag}:h", mapping={"a": "1", "b": "2"})
assert r.hgetall(f"{tag}:h") == {b"a": b"1", b"b": b"2"}
r.rpush(f"{tag}:l", "x", "y")
assert r.lrange(f"{tag}:l", 0, -1) == [b"x", b"y"]
r.zadd(f"{tag}:z", {"m": 1.5})
assert r.zscore(f"{tag}:z", "m") == 1.5
r.sadd(f"{tag}:set", "q")
assert r.smembers(f"{tag}:set") == {b"q"}
popped = r.blpop([f"{tag}:l"], timeout=1)
assert list(popped) == [f"{tag}:l".encode(), b"x"], popped
names = set(r.keys(f"{tag}:*"))
assert f"{tag}:s".encode() in names and all(n.startswith(tag.encode()) for n in names), names
assert set(r.scan_iter(match=f"{tag}:*")) == names
assert other.get(f"{tag}:s") is None
# A pipeline, and a transaction.
p = r.pipeline(transaction=False)
for i in range(100):
    p.set(f"{tag}:n{i}", i)
    p.incr(f"{tag}:n{i}")
out = p.execute()
assert out[1::2] == list(range(1, 101)), out[:6]
t = r.pipeline(transaction=True)
t.set(f"{tag}:tx", "1").incr(f"{tag}:tx").exists(f"{tag}:tx")
assert t.execute() == [True, 2, 1]
# KEYS and SCAN list keys as tdb's walker, never as the tenant's user: not inside MULTI.
t = r.pipeline(transaction=True)
t.set(f"{tag}:tx2", "1").keys(f"{tag}:tx*")
try:
    t.execute()
    raise AssertionError("KEYS was queued in a transaction")
except redis.exceptions.ResponseError as e:
    assert "cannot be queued in a transaction" in str(e), e
assert r.get(f"{tag}:tx2") is None
# WATCH: a change from elsewhere aborts the transaction.
with r.pipeline() as w:
    w.watch(f"{tag}:tx")
    r.set(f"{tag}:tx", "changed")
    w.multi(); w.set(f"{tag}:tx", "mine")
    try:
        w.execute(); raise AssertionError("watched transaction ran")
    except redis.WatchError:
        pass
# A refused command inside MULTI aborts EXEC.
bad = r.pipeline(transaction=True)
bad.set(f"{tag}:never", "1").execute_command("FLUSHALL")
try:
    bad.execute(); raise AssertionError("EXEC ran")
except redis.ResponseError as e:
    assert "EXECABORT" in str(e) or "not allowed" in str(e), e
assert r.get(f"{tag}:never") is None
# Scripts: declared keys are prefixed; a script that builds names is stopped by the server.
assert r.eval("return redis.call('GET', KEYS[1])", 1, f"{tag}:s") == b"v"
sha = r.script_load("return redis.call('INCR', KEYS[1])")
assert r.evalsha(sha, 1, f"{tag}:counter") == 1
assert r.script_exists(sha) == [True]
try:
    r.eval("return redis.call('GET', ARGV[1])", 0, "tb:secret"); raise AssertionError("escaped")
except redis.ResponseError as e:
    assert "NOPERM" in str(e) or "can't access" in str(e), e
# Pub/sub: the channel names the subscriber sees are its own; another tenant's publish on the
# same name does not reach it.
ps = r.pubsub()
# Pattern subscriptions are kept by the proxy (the ACL user may only hold its whole prefix).
ps.subscribe(f"{tag}:news"); ps.psubscribe("*", f"{tag}:n*", "nothing.*")
def wait(kind):
    while True:
        m = ps.get_message(timeout=5)
        assert m is not None, f"no {kind}"
        if m["type"] == kind:
            return m
assert wait("subscribe")["channel"] == f"{tag}:news".encode()
assert wait("psubscribe")["channel"] == b"*"
assert wait("psubscribe")["channel"] == f"{tag}:n*".encode()
assert wait("psubscribe")["channel"] == b"nothing.*"
assert other.publish(f"{tag}:news", "from the other tenant") == 0
assert r.publish(f"{tag}:news", "hello") == 2
m = wait("message"); assert (m["channel"], m["data"]) == (f"{tag}:news".encode(), b"hello"), m
got = {(m["pattern"], m["channel"], m["data"]) for m in (wait("pmessage"), wait("pmessage"))}
assert got == {(b"*", f"{tag}:news".encode(), b"hello"), (f"{tag}:n*".encode(), f"{tag}:news".encode(), b"hello")}, got
ps.punsubscribe(f"{tag}:n*")
assert wait("punsubscribe")["channel"] == f"{tag}:n*".encode()
r.publish(f"{tag}:other", "x")
m = wait("pmessage"); assert (m["pattern"], m["channel"]) == (b"*", f"{tag}:other".encode()), m
assert r.pubsub_numsub(f"{tag}:news") == [(f"{tag}:news".encode(), 1)]
# PUBSUB CHANNELS is anchored by the proxy, and the ACL user does not have it (yet).
try:
    assert f"{tag}:news".encode() in r.pubsub_channels()
except redis.exceptions.NoPermissionError:
    pass
ps.unsubscribe(); ps.punsubscribe(); ps.close()
assert r.dbsize() >= 100
print("ok")
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_py_resp2_and_resp3_over_tls_and_plaintext() -> anyhow::Result<()> {
    let redis = server().await?;
    let f = Fixture::start(&redis, PlaintextPolicy::Loopback).await?;
    for (proto, tls) in [("2", "0"), ("3", "1"), ("2", "1"), ("3", "0")] {
        let args: Vec<String> = [
            &f.addr.port().to_string(),
            proto,
            tls,
            &f.ca.display().to_string(),
            A.id,
            A.key,
            B.id,
            B.key,
        ]
        .iter()
        .map(|a| a.to_string())
        .collect();
        let out = python(REDIS_PY, &args).await?;
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");
    }
    // Nothing of A's reached B's prefix.
    let mut admin = redis.admin().await?;
    let Frame::Array(names) = admin.call(&["KEYS", "tb:*"]).await? else {
        anyhow::bail!("KEYS is not a list");
    };
    assert!(names.is_empty(), "{names:?}");
    f.finish().await
}

use tdb_resp::frame::Frame;
