//! Sessions: commands typed as redis-cli takes them, keys prefixed, `KEYS`/`SCAN` anchored and
//! stripped, `DBSIZE` counted in the namespace, keyless and unknown commands refused, replies
//! as rows, and the timeout.

use std::time::Duration;

use serde_json::{Value, json};
use tdb_engines::{EngineError, QueryOutput, Session};

use super::support::{Ctx, admin, bulk, is_query_error, limits, ok};

async fn run(session: &mut Box<dyn Session>, line: &str) -> QueryOutput {
    session
        .run(line)
        .await
        .unwrap_or_else(|e| panic!("{line}: {e}"))
}

fn column(out: &QueryOutput) -> Vec<Value> {
    out.rows.iter().map(|r| r[0].clone()).collect()
}

fn sorted(out: &QueryOutput) -> Vec<String> {
    let mut all: Vec<String> = column(out)
        .iter()
        .map(|v| v.as_str().expect("a string").to_string())
        .collect();
    all.sort();
    all
}

/// The `KEYS` calls the server has counted (`INFO commandstats`).
async fn keys_calls(root: &mut tdb_engines::redis::conn::RedisConn) -> u64 {
    let info = ok(root, &["INFO", "commandstats"]).await;
    let info = String::from_utf8_lossy(info.as_bytes().expect("text")).into_owned();
    info.lines()
        .find_map(|l| l.strip_prefix("cmdstat_keys:calls="))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |n| n.parse().expect("a count"))
}

pub async fn sessions_stay_in_their_namespace(ctx: &Ctx) {
    let (acme, other) = (&ctx.acme, &ctx.other);
    let mut root = admin(&ctx.e).await;
    for key in ["a", "b", "shared"] {
        ok(&mut root, &["SET", &other.key(key), "theirs"]).await;
    }
    ok(
        &mut root,
        &[
            "UNLINK",
            &acme.key("k"),
            &acme.key("h"),
            &acme.key("l"),
            &acme.key("z"),
            &acme.key("s"),
            &acme.key("n"),
        ],
    )
    .await;
    let mut s = ctx
        .engine
        .open(
            &acme.app(&ctx.e),
            limits(Duration::from_millis(500), 3),
            Some(&ctx.e),
        )
        .await
        .expect("open");

    let set = run(&mut s, r#"SET greeting "hello world""#).await;
    assert_eq!(set.columns, ["reply"]);
    assert_eq!(column(&set), [json!("OK")]);
    assert_eq!(
        column(&run(&mut s, "GET greeting").await),
        [json!("hello world")]
    );
    assert_eq!(
        ok(&mut root, &["GET", &acme.key("greeting")]).await,
        bulk("hello world")
    );
    // Another tenant's key name is only a name inside this namespace.
    assert_eq!(column(&run(&mut s, "GET t_other:a").await), [Value::Null]);
    run(&mut s, "SET shared mine").await;
    assert_eq!(
        ok(&mut root, &["GET", &other.key("shared")]).await,
        bulk("theirs")
    );

    // KEYS and SCAN see this namespace alone, whatever the pattern, and answer bare names.
    // KEYS is answered with SCAN steps: no KEYS reaches the shared server.
    let before = keys_calls(&mut root).await;
    assert_eq!(sorted(&run(&mut s, "KEYS *").await), ["greeting", "shared"]);
    assert_eq!(keys_calls(&mut root).await, before);
    for pattern in [
        "t_other:*",
        "*t_other*",
        "[t]_other:*",
        "\\t_other:*",
        "?_other:*",
    ] {
        let out = run(&mut s, &format!("KEYS {pattern}")).await;
        assert!(out.rows.is_empty(), "KEYS {pattern}: {out:?}");
    }
    let scan = run(&mut s, "SCAN 0 MATCH * COUNT 1000").await;
    assert_eq!(scan.rows.len(), 2);
    let mut names: Vec<String> = scan.rows[1][0]
        .as_array()
        .expect("names")
        .iter()
        .map(|v| v.as_str().expect("name").to_string())
        .collect();
    names.sort();
    if scan.rows[0][0] == json!("0") {
        assert_eq!(names, ["greeting", "shared"]);
    }
    assert!(names.iter().all(|n| !n.starts_with("t_")), "{names:?}");
    assert_eq!(column(&run(&mut s, "DBSIZE").await), [json!(2)]);

    // Replies that name keys lose the prefix; arrays are rows, cut at max_rows.
    run(&mut s, "RPUSH list a b c d e").await;
    let popped = run(&mut s, "BLPOP list 1").await;
    assert_eq!(column(&popped), [json!("list"), json!("a")]);
    let range = run(&mut s, "LRANGE list 0 -1").await;
    assert_eq!(
        (range.rows.len(), range.row_count, range.truncated),
        (3, 4, true)
    );
    run(&mut s, "XADD stream 1-1 f v").await;
    let read = run(&mut s, "XREAD STREAMS stream 0").await;
    assert_eq!(read.rows[0][0][0], json!("stream"));
    run(&mut s, "MULTI").await;
    run(&mut s, "SET counter 1").await;
    run(&mut s, "INCR counter").await;
    assert_eq!(column(&run(&mut s, "EXEC").await), [json!("OK"), json!(2)]);
    // Channels take the prefix too.
    let mut listener = admin(&ctx.e).await;
    ok(&mut listener, &["SUBSCRIBE", &acme.key("news")]).await;
    assert_eq!(column(&run(&mut s, "PUBLISH news hello").await), [json!(1)]);
    let message = listener.read().await.expect("message");
    assert_eq!(
        message,
        tdb_resp::frame::Frame::Array(vec![
            bulk("message"),
            bulk(&acme.key("news")),
            bulk("hello")
        ])
    );
    let script = r#"EVAL "return redis.call('GET', KEYS[1])" 1 greeting"#;
    assert_eq!(column(&run(&mut s, script).await), [json!("hello world")]);

    // Refused before they are sent: keyless, unknown, wrong arity, keys that cannot be placed.
    for line in [
        "FLUSHALL",
        "FLUSHDB",
        "CONFIG GET maxmemory",
        "SELECT 1",
        "CLIENT LIST",
        "RANDOMKEY",
        "INFO keyspace",
        "FUNCTION FLUSH",
        "SWAPDB 0 1",
        "MONITOR",
        "ACL SETUSER x on",
        "MIGRATE 127.0.0.1 1 k 0 1",
        "NOSUCHCOMMAND x",
        "GET",
        "GET a\nFLUSHALL",
        "",
    ] {
        let err = s.run(line).await.expect_err(line);
        assert!(is_query_error(&err, "ERR"), "{line}: {err}");
    }
    // What the session lets through, the ACL user still checks.
    let escape = r#"EVAL "return redis.call('GET', 't_other:a')" 0"#;
    let err = s.run(escape).await.expect_err("script escape");
    assert!(matches!(err, EngineError::Query { .. }), "{err}");
    assert_eq!(
        ok(&mut root, &["GET", &other.key("a")]).await,
        bulk("theirs")
    );

    // A command past its timeout ends the session.
    let err = s.run("BLPOP nothing 0").await.expect_err("timeout");
    assert!(matches!(err, EngineError::Timeout(_)), "{err}");
    assert!(s.run("PING").await.is_err());
    s.close().await;

    // The read user's session reads and writes nothing.
    let mut r = ctx
        .engine
        .open(
            &acme.read(&ctx.e),
            limits(Duration::from_secs(5), 100),
            None,
        )
        .await
        .expect("open read");
    assert_eq!(
        column(&run(&mut r, "GET greeting").await),
        [json!("hello world")]
    );
    let err = r.run("SET greeting x").await.expect_err("read only");
    assert!(is_query_error(&err, "NOPERM"), "{err}");
    r.close().await;
    ok(
        &mut root,
        &[
            "UNLINK",
            &acme.key("greeting"),
            &acme.key("shared"),
            &acme.key("list"),
            &acme.key("stream"),
            &acme.key("counter"),
        ],
    )
    .await;
}
