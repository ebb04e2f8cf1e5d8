//! The isolation corpus: tenant A attacks tenant B's keys and channels through the proxy with
//! every command class the policy knows, key names spelled with B's prefix, glob tricks,
//! scripts that build B's key names, pattern subscriptions, CLIENT LIST/KILL, logins as B, and
//! malformed or huge frames. After each attack B's keys, values and TTLs are what they were,
//! nothing of B's came back to A, and the server still answers.
//!
//! Scripts that call SCAN or KEYS are in it: redis-server does not hold those to the ACL user's
//! key patterns (redis/redis#8152), so the tenant's users may not run them at all, and the
//! proxy walks the keyspace for KEYS, SCAN and its emulations as the administrator, over a
//! connection of its own (`super::super::walker`).

use std::collections::BTreeMap;

use tdb_resp::frame::Frame;

use super::*;

/// Values only B has; none may ever reach A.
const B_VALUES: [&str; 4] = ["B-VALUE-1", "B-VALUE-2", "B-VALUE-3", "B-VALUE-4"];

/// What an attack sends: requests, or raw bytes.
enum Step {
    Cmd(&'static [&'static str]),
    Bytes(Vec<u8>),
}

struct Attack {
    name: &'static str,
    steps: Vec<Step>,
}

fn cmd(name: &'static str, args: &'static [&'static str]) -> Attack {
    Attack {
        name,
        steps: vec![Step::Cmd(args)],
    }
}

fn cmds(name: &'static str, steps: &[&'static [&'static str]]) -> Attack {
    Attack {
        name,
        steps: steps.iter().map(|s| Step::Cmd(s)).collect(),
    }
}

fn raw(name: &'static str, bytes: &[u8]) -> Attack {
    Attack {
        name,
        steps: vec![Step::Bytes(bytes.to_vec())],
    }
}

fn corpus() -> Vec<Attack> {
    let mut huge_inline = b"GET ".to_vec();
    huge_inline.extend(std::iter::repeat_n(b'a', 70 * 1024));
    vec![
        cmd("read B's key by its full name", &["GET", "tb:secret"]),
        // Key specs find the first STORE; redis-server writes (or, with no source, deletes)
        // the last one's key.
        cmd(
            "GEORADIUS with a second STORE deletes B's key",
            &[
                "GEORADIUS",
                "nokey",
                "0",
                "0",
                "1",
                "km",
                "STORE",
                "a",
                "STORE",
                "tb:secret",
            ],
        ),
        cmds(
            "GEORADIUS with STORE then STOREDIST overwrites B's key",
            &[
                &["GEOADD", "g", "0", "0", "m"],
                &[
                    "GEORADIUS",
                    "g",
                    "0",
                    "0",
                    "9",
                    "km",
                    "STORE",
                    "a",
                    "STOREDIST",
                    "tb:hash",
                ],
            ],
        ),
        cmd(
            "GEORADIUSBYMEMBER with a second STORE",
            &[
                "GEORADIUSBYMEMBER",
                "g",
                "m",
                "9",
                "km",
                "STORE",
                "a",
                "STORE",
                "tb:list",
            ],
        ),
        cmd(
            "SORT whose STORE is read as an option",
            &["SORT", "k", "STORE", "limit", "STORE", "tb:secret"],
        ),
        cmd("read many", &["MGET", "secret", "tb:secret", "tb:hash"]),
        cmd("overwrite B's key", &["SET", "tb:secret", "A was here"]),
        cmd(
            "delete B's keys",
            &["DEL", "tb:secret", "tb:list", "tb:hash"],
        ),
        cmd("unlink B's key", &["UNLINK", "tb:secret"]),
        cmd("rename B's key", &["RENAME", "tb:secret", "stolen"]),
        cmd("copy B's key", &["COPY", "tb:secret", "stolen"]),
        cmd(
            "copy into another database",
            &["COPY", "mine", "mine2", "DB", "1"],
        ),
        cmd("move to another database", &["MOVE", "tb:secret", "1"]),
        cmds(
            "select another database",
            &[&["SELECT", "1"], &["KEYS", "*"]],
        ),
        cmd("swap databases", &["SWAPDB", "0", "1"]),
        cmd("flush everything", &["FLUSHALL"]),
        cmd("flush the database", &["FLUSHDB"]),
        cmd("keys *", &["KEYS", "*"]),
        cmd("keys with B's prefix", &["KEYS", "tb:*"]),
        cmd("keys glob *tb*", &["KEYS", "*tb*"]),
        cmd("keys glob class [t]b", &["KEYS", "[t]b:*"]),
        cmd("keys glob ?b", &["KEYS", "?b:*"]),
        cmd("keys glob negated class", &["KEYS", "[^a]*"]),
        cmd("keys backslash tricks", &["KEYS", "\\*"]),
        cmd("scan without match", &["SCAN", "0", "COUNT", "1000"]),
        cmd(
            "scan match *",
            &["SCAN", "0", "MATCH", "*", "COUNT", "1000"],
        ),
        cmd(
            "scan match B's prefix",
            &["SCAN", "0", "MATCH", "tb:*", "COUNT", "1000"],
        ),
        cmd(
            "scan with a dangling match",
            &["SCAN", "0", "COUNT", "1000", "MATCH"],
        ),
        cmd(
            "scan with two matches",
            &["SCAN", "0", "MATCH", "x", "COUNT", "1000", "MATCH", "*"],
        ),
        cmd(
            "scan by type",
            &["SCAN", "0", "TYPE", "string", "COUNT", "1000"],
        ),
        cmd("random key", &["RANDOMKEY"]),
        cmd("dbsize", &["DBSIZE"]),
        cmd("info", &["INFO"]),
        cmd("info everything", &["INFO", "all"]),
        cmds(
            "sort by B's keys",
            &[&["RPUSH", "al", "1", "2"], &["SORT", "al", "BY", "tb:*"]],
        ),
        cmd("sort get B's keys", &["SORT", "al", "GET", "tb:*"]),
        cmd(
            "sort get a constant",
            &["SORT", "al", "BY", "nosort", "GET", "tb:secret"],
        ),
        cmd(
            "sort store into B's key",
            &["SORT", "al", "STORE", "tb:secret"],
        ),
        cmd(
            "script reads a name it builds",
            &["EVAL", "return redis.call('GET', 't' .. 'b:secret')", "0"],
        ),
        cmd(
            "script writes a name it builds",
            &[
                "EVAL",
                "return redis.call('SET', ARGV[1], 'x')",
                "0",
                "tb:secret",
            ],
        ),
        cmd(
            "script deletes by a declared key",
            &[
                "EVAL",
                "return redis.call('DEL', KEYS[1])",
                "1",
                "tb:secret",
            ],
        ),
        cmd(
            "script calls KEYS",
            &["EVAL", "return redis.call('KEYS', '*')", "0"],
        ),
        cmd(
            "script calls SCAN",
            &[
                "EVAL",
                "return redis.call('SCAN', '0', 'COUNT', '1000')",
                "0",
            ],
        ),
        cmd(
            "script calls RANDOMKEY",
            &["EVAL", "return redis.call('RANDOMKEY')", "0"],
        ),
        cmd(
            "script flushes",
            &["EVAL", "return redis.call('FLUSHALL')", "0"],
        ),
        cmd(
            "script escalates",
            &[
                "EVAL",
                "return redis.call('ACL', 'SETUSER', 'ta_app', '~*')",
                "0",
            ],
        ),
        cmd("flush scripts", &["SCRIPT", "FLUSH"]),
        cmd("kill scripts", &["SCRIPT", "KILL"]),
        cmd("flush functions", &["FUNCTION", "FLUSH"]),
        cmd(
            "load a function",
            &[
                "FUNCTION",
                "LOAD",
                "#!lua name=x\nredis.register_function('f', function() return redis.call('GET','tb:secret') end)",
            ],
        ),
        cmd("call a function", &["FCALL", "f", "0"]),
        cmd("object of B's key", &["OBJECT", "ENCODING", "tb:secret"]),
        cmd("memory usage of B's key", &["MEMORY", "USAGE", "tb:secret"]),
        cmd("dump B's key", &["DUMP", "tb:secret"]),
        cmd(
            "migrate B's key",
            &["MIGRATE", "127.0.0.1", "1", "tb:secret", "0", "100"],
        ),
        cmd("read B's stream", &["XREAD", "STREAMS", "tb:stream", "0"]),
        cmd("pop B's list", &["BLPOP", "tb:list", "0.1"]),
        cmd("multi-pop B's list", &["LMPOP", "1", "tb:list", "LEFT"]),
        cmds(
            "watch and transact on B's key",
            &[
                &["WATCH", "tb:secret"],
                &["MULTI"],
                &["GET", "tb:secret"],
                &["DEL", "tb:list"],
                &["EXEC"],
            ],
        ),
        cmds(
            "a refused command inside MULTI",
            &[&["MULTI"], &["DEL", "tb:secret"], &["FLUSHALL"], &["EXEC"]],
        ),
        cmd("list clients", &["CLIENT", "LIST"]),
        cmd(
            "kill B's connections",
            &["CLIENT", "KILL", "USER", "tb_app"],
        ),
        cmd("kill by id", &["CLIENT", "KILL", "ID", "3"]),
        cmd("pause the server", &["CLIENT", "PAUSE", "10000"]),
        cmd("monitor", &["MONITOR"]),
        cmd("read the configuration", &["CONFIG", "GET", "*"]),
        cmd(
            "change the configuration",
            &["CONFIG", "SET", "dir", "/tmp"],
        ),
        cmd(
            "escalate the ACL user",
            &["ACL", "SETUSER", "ta_app", "~*", "&*"],
        ),
        cmd("read B's ACL user", &["ACL", "GETUSER", "tb_app"]),
        cmd("debug", &["DEBUG", "SLEEP", "0"]),
        cmd("shut the server down", &["SHUTDOWN", "NOSAVE"]),
        cmd("save", &["SAVE"]),
        cmd("replicate elsewhere", &["REPLICAOF", "127.0.0.1", "1"]),
        cmd("sync", &["SYNC"]),
        cmd("cluster", &["CLUSTER", "NODES"]),
        cmd("module", &["MODULE", "LOAD", "/tmp/x.so"]),
        cmd("slowlog", &["SLOWLOG", "GET"]),
        cmd("latency", &["LATENCY", "DOCTOR"]),
        cmd("reset the connection", &["RESET"]),
        cmd("log in as B", &["AUTH", "beta", "key-beta-456"]),
        cmd(
            "hello as B",
            &["HELLO", "3", "AUTH", "beta", "key-beta-456"],
        ),
        cmd(
            "keyspace notifications",
            &["SUBSCRIBE", "__keyspace@0__:tb:secret"],
        ),
        cmd("pubsub channels", &["PUBSUB", "CHANNELS", "*"]),
        cmd(
            "pubsub numsub of B's channel",
            &["PUBSUB", "NUMSUB", "tb:news", "news"],
        ),
        cmd("pubsub numpat", &["PUBSUB", "NUMPAT"]),
        raw("too many elements", b"*999999999\r\n"),
        raw("a bulk past the limit", b"*1\r\n$99999999999\r\n"),
        raw("a negative bulk", b"*1\r\n$-5\r\n"),
        raw("a non-bulk argument", b"*2\r\n$3\r\nGET\r\n:1\r\n"),
        raw("unbalanced quotes", b"GET \"tb:secret\r\n"),
        raw("an inline line past 64 KiB", &huge_inline),
        raw("binary garbage", b"\x00\xff\x16\x03\x01garbage\r\n"),
        raw(
            "a frame cut in the middle",
            b"*2\r\n$3\r\nGET\r\n$10\r\ntb:",
        ),
    ]
}

/// B's keys on the server: name → (DUMP, PTTL).
async fn snapshot(
    admin: &mut Raw<tokio::net::TcpStream>,
) -> anyhow::Result<BTreeMap<String, (Frame, Frame)>> {
    let Frame::Array(names) = admin.call(&["KEYS", "tb:*"]).await? else {
        anyhow::bail!("KEYS is not a list");
    };
    let mut out = BTreeMap::new();
    for name in names {
        let name = text(&name);
        let dump = admin.call(&["DUMP", &name]).await?;
        let ttl = admin.call(&["PTTL", &name]).await?;
        let ttl = match ttl {
            // A TTL runs down; that it has one is what matters.
            Frame::Integer(n) if n > 0 => Frame::Integer(1),
            other => other,
        };
        out.insert(name, (dump, ttl));
    }
    Ok(out)
}

async fn seed_b(f: &Fixture) -> anyhow::Result<()> {
    let mut b = f.login(&B).await?;
    for line in [
        &["SET", "secret", B_VALUES[0]][..],
        &["RPUSH", "list", B_VALUES[1], "more"],
        &["HSET", "hash", "f", B_VALUES[2]],
        &["XADD", "stream", "*", "f", B_VALUES[3]],
        &["ZADD", "zset", "1", "m"],
        &["SET", "ttl", "x", "EX", "1000"],
    ] {
        let answer = b.call(line).await?;
        anyhow::ensure!(!answer.is_error(), "{line:?}: {answer:?}");
    }
    Ok(())
}

/// Runs one attack on a fresh connection of A's; every frame A got back, as text.
async fn run(f: &Fixture, attack: &Attack) -> anyhow::Result<String> {
    let mut a = f.login(&A).await?;
    a.call(&["SET", "mine", "A's own"]).await?;
    let mut got = String::new();
    for step in &attack.steps {
        match step {
            Step::Cmd(args) => {
                a.send(&args.iter().map(|s| s.as_bytes()).collect::<Vec<_>>())
                    .await?;
            }
            Step::Bytes(bytes) => a.send_raw(bytes).await?,
        }
        // One reply per request; malformed frames get an error and the connection closes.
        match tokio::time::timeout(std::time::Duration::from_secs(3), a.read()).await {
            Ok(Ok(frame)) => got.push_str(&format!("{frame:?}\n")),
            Ok(Err(_)) => break,
            // Cut frames are waited for; MONITOR-like silence is fine.
            Err(_) => break,
        }
    }
    Ok(got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_a_cannot_reach_tenant_b() -> anyhow::Result<()> {
    let redis = server().await?;
    let f = Fixture::start(&redis, PlaintextPolicy::Loopback).await?;
    seed_b(&f).await?;
    let mut admin = redis.admin().await?;
    let before = snapshot(&mut admin).await?;
    assert_eq!(before.len(), 6, "{before:?}");
    let corpus = corpus();
    let mut failures = Vec::new();
    for attack in &corpus {
        let got = run(&f, attack).await?;
        let after = snapshot(&mut admin).await?;
        if after != before {
            failures.push(format!("{}: B's keys changed", attack.name));
        }
        if B_VALUES.iter().any(|v| got.contains(v)) {
            failures.push(format!("{}: B's value returned: {got}", attack.name));
        }
        let names_b = after.keys().any(|k| got.contains(k.as_str()));
        let spelled_b = attack.steps.iter().any(|s| match s {
            Step::Cmd(args) => args.iter().any(|a| a.contains("tb")),
            Step::Bytes(b) => b.windows(2).any(|w| w == b"tb"),
        });
        if names_b && !spelled_b {
            failures.push(format!("{}: B's key names returned: {got}", attack.name));
        }
        if admin.call(&["PING"]).await? != Frame::Simple("PONG".into()) {
            failures.push(format!("{}: the server stopped answering", attack.name));
        }
    }
    eprintln!("{} attacks", corpus.len());
    assert!(corpus.len() >= 40);
    assert!(failures.is_empty(), "{failures:#?}");
    f.finish().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channels_do_not_cross_tenants() -> anyhow::Result<()> {
    let redis = server().await?;
    let f = Fixture::start(&redis, PlaintextPolicy::Loopback).await?;
    // B listens on its channel and on every pattern it may have; A does the same.
    let mut b_sub = f.login(&B).await?;
    b_sub.call(&["SUBSCRIBE", "news"]).await?;
    b_sub.call(&["PSUBSCRIBE", "*"]).await?;
    let mut a_sub = f.login(&A).await?;
    a_sub.call(&["PSUBSCRIBE", "*"]).await?;
    // A pattern spelled with B's prefix is A's own: it matches A's channels named `tb:...`.
    let own = a_sub.call(&["PSUBSCRIBE", "tb:*"]).await?;
    let confirmed = ["psubscribe", "tb:*"].map(|t| Frame::Bulk(t.into()));
    assert_eq!(
        own,
        Frame::Array(vec![
            confirmed[0].clone(),
            confirmed[1].clone(),
            Frame::Integer(2)
        ])
    );
    // A counts the subscribers of its own channels, never B's: not through the proxy, which
    // answers for A's prefix, nor from a script, which the server refuses.
    let mut a = f.login(&A).await?;
    let numsub = |channel: &str| {
        Frame::Array(vec![
            Frame::Bulk(channel.to_string().into()),
            Frame::Integer(0),
        ])
    };
    assert_eq!(a.call(&["PUBSUB", "NUMSUB", "news"]).await?, numsub("news"));
    assert_eq!(
        a.call(&["PUBSUB", "NUMSUB", "tb:news"]).await?,
        numsub("tb:news")
    );
    let script = [
        "EVAL",
        "return redis.call('PUBSUB', 'NUMSUB', 'tb:news')",
        "0",
    ];
    let counted = a.call(&script).await?;
    assert!(
        counted.is_error() && text(&counted).contains("can't run this command"),
        "{counted:?}"
    );
    let mut b_count = f.login(&B).await?;
    let b_news = Frame::Array(vec![Frame::Bulk("news".into()), Frame::Integer(1)]);
    assert_eq!(b_count.call(&["PUBSUB", "NUMSUB", "news"]).await?, b_news);
    drop(b_count);
    // A publishes on every spelling of B's channel; B publishes on its own.
    for channel in ["news", "tb:news", "*", "__keyspace@0__:tb:secret"] {
        a.call(&["PUBLISH", channel, "from A"]).await?;
    }
    let mut b = f.login(&B).await?;
    assert_eq!(
        b.call(&["PUBLISH", "news", B_VALUES[0]]).await?,
        Frame::Integer(2)
    );
    // B gets its own message twice (channel and pattern) and nothing of A's.
    for _ in 0..2 {
        let got = format!("{:?}", b_sub.read().await?);
        assert!(
            got.contains(B_VALUES[0]) && !got.contains("from A"),
            "{got}"
        );
    }
    // A's pattern subscription saw only A's own publishes.
    let mut seen = Vec::new();
    while let Ok(Ok(frame)) =
        tokio::time::timeout(std::time::Duration::from_millis(300), a_sub.read()).await
    {
        seen.push(format!("{frame:?}"));
    }
    assert!(seen.iter().all(|m| !m.contains("B-VALUE")), "{seen:?}");
    // Four through `*`, and A's own `tb:news` once more through `tb:*`.
    assert_eq!(
        seen.iter().filter(|m| m.contains("from A")).count(),
        5,
        "{seen:?}"
    );
    drop((a, b, a_sub, b_sub));
    f.finish().await
}
