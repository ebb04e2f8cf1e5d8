//! Query logs, statistics and metrics against a real `tdb serve`: traffic through the proxy and
//! the API is found statement by statement in the logs with the right source, duration and
//! outcome, and the stats and metrics equal what the raw log says. Rate limits: one address
//! over its rate is limited, then banned on the API and the proxy alike, while another address is
//! not; the tiers' quotas; failed proxy logins are throttled.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection, Row};
use tdb_testkit::TdbServer;

struct Fixture {
    key: String,
    project_id: String,
    /// The tenant's and the workspace's connection strings (plaintext on loopback).
    acme: String,
    workspace: String,
}

async fn fixture(s: &TdbServer, email: &str) -> Fixture {
    tdb_testkit::init();
    let account = signup(s, email, "Observed").await;
    let key = str_of(&account, "api_key").to_string();
    let project_id = str_of(&account, "project_id").to_string();
    let (st, ws) = post(
        s,
        "/workspaces",
        Some(&key),
        json!({"name": "app", "database": "postgresql", "mode": "tenant"}),
    )
    .await;
    assert_eq!(st, 201, "{ws}");
    let workspace = str_of(&ws, "connection_string").replace("sslmode=require", "sslmode=disable");
    let (st, q) = post(
        s,
        "/workspaces/app/queries",
        Some(&key),
        json!({"query": "CREATE TABLE items (id serial PRIMARY KEY, name text NOT NULL)"}),
    )
    .await;
    assert_eq!(st, 200, "{q}");
    let (st, dep) = post(
        s,
        "/deployments",
        Some(&key),
        json!({"blueprint_name": "app"}),
    )
    .await;
    assert_eq!(st, 201, "{dep}");
    let id = str_of(&dep, "id").to_string();
    for _ in 0..300 {
        let (_, d) = get(s, &format!("/deployments/{id}"), &key).await;
        if d["status"] == "completed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (st, t) = post(
        s,
        "/tenants",
        Some(&key),
        json!({"tenant_id": "acme", "databases": [{"blueprint": "app"}]}),
    )
    .await;
    assert_eq!(st, 201, "{t}");
    let acme = t["databases"][0]["connection"]["connection_string"]
        .as_str()
        .expect("connection string")
        .replace("sslmode=require", "sslmode=disable");
    Fixture {
        key,
        project_id,
        acme,
        workspace,
    }
}

/// One row of the raw log, as the catalog holds it.
struct Raw {
    statement: String,
    source: String,
    success: bool,
    duration_us: i64,
}

async fn raw_log(s: &TdbServer, project: &str, tenant: Option<&str>) -> Vec<Raw> {
    let url = s.managed_admin_url("tdb_catalog").expect("catalog url");
    let mut c = PgConnection::connect(&url).await.expect("catalog");
    let rows = sqlx::query(
        "SELECT statement, source, success, duration_us FROM query_log
          WHERE project_id = $1 AND tenant IS NOT DISTINCT FROM $2 ORDER BY id",
    )
    .bind(project)
    .bind(tenant)
    .fetch_all(&mut c)
    .await
    .expect("raw log");
    let _ = c.close().await;
    rows.iter()
        .map(|r| Raw {
            statement: r.get(0),
            source: r.get(1),
            success: r.get(2),
            duration_us: r.get(3),
        })
        .collect()
}

/// PostgreSQL's percentile_cont: linear interpolation between the two nearest ranks.
fn percentile(sorted: &[i64], p: f64) -> f64 {
    let pos = p * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] as f64 + (sorted[hi] - sorted[lo]) as f64 * (pos - lo as f64)
}

fn ms(us: f64) -> f64 {
    (us / 10.0).round() / 100.0
}

fn close(a: &Value, b: f64) -> bool {
    a.as_f64().is_some_and(|a| (a - b).abs() < 0.011)
}

#[tokio::test]
async fn every_statement_is_logged_and_the_numbers_add_up() {
    let metrics_port = tdb_testkit::free_port().expect("port");
    let metrics_listen = format!("127.0.0.1:{metrics_port}");
    let s = start_with_env(&[
        ("TDB_SLOW_QUERY_MS", "200"),
        ("TDB_METRICS_LISTEN", &metrics_listen),
    ])
    .await;
    let f = fixture(&s, "logs@example.com").await;

    // Through the proxy: reads, a write, an error and a slow statement.
    let mut conn = PgConnection::connect(&f.acme).await.expect("proxy");
    for sql in [
        "INSERT INTO items (name) VALUES ('bolt'), ('nut')",
        "SELECT count(*) FROM items",
        "SELECT pg_sleep(0.3)",
    ] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    sqlx::raw_sql("SELECT * FROM no_such_table")
        .execute(&mut conn)
        .await
        .expect_err("no such table");
    let _ = conn.close().await;
    // Through the API: an admin query that works and one that fails.
    for (query, ok) in [
        ("SELECT name FROM items ORDER BY id", true),
        ("SELECT 1 / 0 AS api_fails", false),
    ] {
        let (st, body) = post(
            &s,
            "/admin/query",
            Some(&f.key),
            json!({"blueprint": "app", "tenant_id": "acme", "query": query}),
        )
        .await;
        assert_eq!(st < 300, ok, "{body}");
    }
    // And in the workspace, through both.
    let (st, body) = post(
        &s,
        "/workspaces/app/queries",
        Some(&f.key),
        json!({"query": "SELECT 'from the api' AS w"}),
    )
    .await;
    assert_eq!(st, 200, "{body}");
    let mut ws = PgConnection::connect(&f.workspace)
        .await
        .expect("workspace");
    sqlx::raw_sql("SELECT 'from the proxy' AS w")
        .execute(&mut ws)
        .await
        .expect("workspace query");
    let _ = ws.close().await;

    // Every statement arrives (the proxy's writer batches for a moment).
    let wanted = [
        (
            "INSERT INTO items (name) VALUES ('bolt'), ('nut')",
            "proxy",
            true,
        ),
        ("SELECT count(*) FROM items", "proxy", true),
        ("SELECT pg_sleep(0.3)", "proxy", true),
        ("SELECT * FROM no_such_table", "proxy", false),
        ("SELECT name FROM items ORDER BY id", "api", true),
        ("SELECT 1 / 0 AS api_fails", "api", false),
    ];
    let started = Instant::now();
    let logs = loop {
        let (st, body) = get(&s, "/tenants/acme/logs?limit=1000", &f.key).await;
        assert_eq!(st, 200, "{body}");
        let logs = body["logs"].as_array().cloned().unwrap_or_default();
        let all_there = wanted
            .iter()
            .all(|(q, _, _)| logs.iter().any(|l| l["query"] == *q));
        if all_there {
            assert_eq!(body["has_more"], false);
            break logs;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "{body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for (query, source, success) in wanted {
        let entry = logs.iter().find(|l| l["query"] == query).expect("logged");
        assert_eq!(entry["source"], source, "{entry}");
        assert_eq!(entry["success"], success, "{entry}");
        assert!(entry["duration_ms"].as_f64().is_some_and(|d| d >= 0.0));
    }
    let slow = logs
        .iter()
        .find(|l| l["query"] == "SELECT pg_sleep(0.3)")
        .expect("slow one");
    assert!(
        slow["duration_ms"].as_f64().unwrap_or(0.0) >= 300.0,
        "{slow}"
    );
    let failed = logs
        .iter()
        .find(|l| l["query"] == "SELECT * FROM no_such_table")
        .expect("failed one");
    assert_eq!(failed["error_code"], "42P01");
    // Newest first.
    let times: Vec<&str> = logs
        .iter()
        .filter_map(|l| l["created_at"].as_str())
        .collect();
    let mut sorted = times.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(times, sorted);

    // Filters.
    let only = |path: &str| {
        let s = &s;
        let key = f.key.clone();
        let path = path.to_string();
        async move {
            let (st, body) = get(s, &path, &key).await;
            assert_eq!(st, 200, "{body}");
            body["logs"].as_array().cloned().unwrap_or_default()
        }
    };
    let errors = only("/tenants/acme/logs?type=error&limit=1000").await;
    assert!(!errors.is_empty() && errors.iter().all(|l| l["success"] == false));
    assert!(
        errors
            .iter()
            .any(|l| l["query"] == "SELECT 1 / 0 AS api_fails")
    );
    let slow_only = only("/tenants/acme/logs?type=slow").await;
    assert!(
        !slow_only.is_empty()
            && slow_only
                .iter()
                .all(|l| l["duration_ms"].as_f64().unwrap_or(0.0) >= 200.0),
        "{slow_only:?}"
    );
    let api = only("/tenants/acme/logs?source=api&limit=1000").await;
    assert_eq!(api.len(), 2, "{api:?}");
    let found = only("/tenants/acme/logs?search=NO_SUCH").await;
    assert_eq!(found.len(), 1, "search is case-insensitive: {found:?}");
    assert!(only("/tenants/acme/logs?search=50%25_off").await.is_empty());
    assert_eq!(
        only("/tenants/acme/logs?since=1h&limit=1000").await.len(),
        logs.len()
    );
    let (_, page) = get(&s, "/tenants/acme/logs?limit=2&offset=1", &f.key).await;
    assert_eq!(page["count"], 2);
    assert_eq!(page["has_more"], true);
    assert_eq!(page["logs"][0]["id"], logs[1]["id"]);
    for bad in [
        "?limit=0",
        "?limit=1001",
        "?type=fast",
        "?source=cli",
        "?since=2h",
        "?offset=-1",
    ] {
        let (st, body) = get(&s, &format!("/tenants/acme/logs{bad}"), &f.key).await;
        assert_eq!(st, 400, "{bad}: {body}");
    }

    // Stats and metrics equal what the raw log says.
    let raw = raw_log(&s, &f.project_id, Some("acme")).await;
    assert_eq!(raw.len(), logs.len());
    let (st, stats) = get(&s, "/tenants/acme/logs/stats", &f.key).await;
    assert_eq!(st, 200, "{stats}");
    let failed_n = raw.iter().filter(|r| !r.success).count() as i64;
    let api_n = raw.iter().filter(|r| r.source == "api").count() as i64;
    let slow_n = raw.iter().filter(|r| r.duration_us >= 200_000).count() as i64;
    let sum: i64 = raw.iter().map(|r| r.duration_us).sum();
    assert_eq!(stats["total_queries"], raw.len() as i64);
    assert_eq!(stats["successful"], raw.len() as i64 - failed_n);
    assert_eq!(stats["failed"], failed_n);
    assert_eq!(stats["by_source"]["api"], api_n);
    assert_eq!(stats["by_source"]["proxy"], raw.len() as i64 - api_n);
    assert_eq!(stats["slow_queries"], slow_n);
    assert!(
        close(&stats["avg_duration_ms"], ms(sum as f64 / raw.len() as f64)),
        "{stats}"
    );

    let (st, m) = get(&s, "/tenants/acme/metrics?window=1h", &f.key).await;
    assert_eq!(st, 200, "{m}");
    let mut durations: Vec<i64> = raw.iter().map(|r| r.duration_us).collect();
    durations.sort_unstable();
    assert_eq!(m["queries"], raw.len() as i64);
    assert_eq!(m["failed"], failed_n);
    assert_eq!(m["slow"], slow_n);
    let rate = ((raw.len() as i64 - failed_n) as f64 / raw.len() as f64 * 10_000.0).round() / 100.0;
    assert!(close(&m["success_rate"], rate), "{m}");
    for (name, p) in [("p50", 0.5), ("p95", 0.95), ("p99", 0.99)] {
        assert!(
            close(&m["latency_ms"][name], ms(percentile(&durations, p))),
            "{name}: {m}"
        );
    }
    assert!(
        close(
            &m["latency_ms"]["max"],
            ms(*durations.last().unwrap_or(&0) as f64)
        ),
        "{m}"
    );
    let series = m["series"].as_array().cloned().unwrap_or_default();
    let in_series: i64 = series
        .iter()
        .map(|b| b["queries"].as_i64().unwrap_or(0))
        .sum();
    assert_eq!(in_series, raw.len() as i64, "{m}");
    assert_eq!(m["bucket"], "hour");

    // The workspace has its own log and metrics: both statements, nothing of the tenant's.
    let ws_raw = raw_log(&s, &f.project_id, None).await;
    assert!(
        ws_raw
            .iter()
            .any(|r| r.statement == "SELECT 'from the api' AS w" && r.source == "api")
    );
    assert!(
        ws_raw
            .iter()
            .any(|r| r.statement == "SELECT 'from the proxy' AS w" && r.source == "proxy")
    );
    let (st, wm) = get(&s, "/workspaces/app/metrics?window=24h&bucket=day", &f.key).await;
    assert_eq!(st, 200, "{wm}");
    assert_eq!(wm["queries"], ws_raw.len() as i64, "{wm}");
    let (st, wl) = get(&s, "/workspaces/app/logs?source=api&limit=1000", &f.key).await;
    assert_eq!(st, 200, "{wl}");
    assert!(
        wl["logs"]
            .as_array()
            .into_iter()
            .flatten()
            .all(|l| l["source"] == "api")
    );
    let (st, missing) = get(&s, "/tenants/nobody/logs", &f.key).await;
    assert_eq!(st, 404, "{missing}");

    // The operator's Prometheus metrics, on their own address.
    let text = metrics_text(&metrics_listen).await;
    for needle in [
        "tdb_http_requests_total{route=\"/tenants/{id}/logs\",method=\"GET\",status=\"200\"}",
        "tdb_http_request_duration_seconds",
        "tdb_proxy_connections_total{engine=\"postgresql\"}",
        "tdb_proxy_queries_total{engine=\"postgresql\"}",
        "tdb_proxy_bytes_total{engine=\"postgresql\",direction=\"to_client\"}",
        "tdb_jobs_total{kind=\"deployment\",outcome=\"ok\"} 1",
        "tdb_job_duration_seconds",
        "tdb_query_log_dropped_total 0",
        "tdb_server_up{server=\"postgresql-shared\",engine=\"postgresql\",managed=\"true\"} 1",
        "tdb_jobs_open{kind=\"backup\",status=\"queued\"} 0",
    ] {
        assert!(text.contains(needle), "no {needle} in:\n{text}");
    }
    let queries: f64 = text
        .lines()
        .find(|l| l.starts_with("tdb_proxy_queries_total{"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    let proxied = raw.iter().filter(|r| r.source == "proxy").count()
        + ws_raw.iter().filter(|r| r.source == "proxy").count();
    assert_eq!(
        queries as usize, proxied,
        "every relayed statement is counted"
    );
    // The public API does not serve them.
    let (st, _) = get(&s, "/metrics", &f.key).await;
    assert_eq!(st, 404);
}

/// An HTTP client whose requests leave from `local`.
fn client_from(local: [u8; 4]) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(IpAddr::from(local))
        .build()
        .expect("client")
}

#[tokio::test]
async fn one_address_is_limited_then_banned_everywhere_and_another_is_not() {
    // Loopback is trusted by default: the addresses flooded here (127.0.0.2, 127.0.0.3) are
    // left out of the trusted networks.
    let s = TdbServer::start_with(
        bin(),
        tdb_testkit::ServeOptions {
            config_toml: Some("trusted_networks = [\"127.0.0.1/32\", \"::1/128\"]\n".into()),
            ..Default::default()
        },
    )
    .await
    .expect("tdb serve starts");
    let health = format!("{}/health", s.api_url);

    // 1,000 requests from 127.0.0.2, fifty at a time.
    let client = client_from([127, 0, 0, 2]);
    let mut statuses = Vec::new();
    let mut retry_afters = Vec::new();
    let mut bodies = Vec::new();
    for _ in 0..20 {
        let batch: Vec<_> = (0..50).map(|_| client.get(&health).send()).collect();
        for resp in futures_util::future::join_all(batch).await {
            let resp = resp.expect("response");
            statuses.push(resp.status().as_u16());
            retry_afters.push(
                resp.headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string),
            );
            bodies.push(resp.text().await.unwrap_or_default());
        }
    }
    let ok = statuses.iter().filter(|s| **s == 200).count();
    let limited: Vec<usize> = (0..statuses.len())
        .filter(|i| statuses[*i] == 429 && retry_afters[*i].as_deref() == Some("1"))
        .collect();
    let banned: Vec<usize> = (0..statuses.len())
        .filter(|i| statuses[*i] == 429 && retry_afters[*i].as_deref() == Some("300"))
        .collect();
    assert!((1..=200).contains(&ok), "{ok} passed");
    assert_eq!(limited.len(), 4, "four refusals before the ban");
    assert!(banned.len() > 500, "{} banned", banned.len());
    assert!(
        bodies[banned[0]].contains("banned"),
        "{}",
        bodies[banned[0]]
    );
    let body: Value = serde_json::from_str(&bodies[limited[0]]).expect("json");
    assert_envelope(429, &body);
    assert_eq!(body["code"], "rate_limited");
    // The last requests, seconds later, are still refused: a ban, not a rate.
    assert_eq!(statuses.last(), Some(&429));

    // The ban bars the proxy too.
    let greeting = proxy_greeting(s.pg_port, [127, 0, 0, 2]).await;
    assert!(
        greeting.contains("53300") && greeting.contains("banned"),
        "{greeting:?}"
    );

    // Another address is untouched, on the API and the proxy.
    let other = client_from([127, 0, 0, 1]);
    assert_eq!(
        other
            .get(&health)
            .send()
            .await
            .expect("ok")
            .status()
            .as_u16(),
        200
    );
    let greeting = proxy_greeting(s.pg_port, [127, 0, 0, 1]).await;
    assert!(
        greeting.starts_with('R'),
        "asked for a password: {greeting:?}"
    );

    // And the other way round: a flood of connection attempts to the proxy from 127.0.0.3 bans
    // the address on the API. The attempts go a hundred at a time and are followed by one more
    // that reads the greeting, so a batch that lands in one window overruns it (150 attempts
    // one after another spanned two windows on a loaded CI machine and earned no ban). The
    // greeting says when the ban has come; twenty batches without one fail the test.
    let mut batches = 0;
    loop {
        let flood: Vec<_> = (0..100)
            .map(|_| proxy_greeting_quick(s.pg_port, [127, 0, 0, 3]))
            .collect();
        futures_util::future::join_all(flood).await;
        batches += 1;
        let greeting = proxy_greeting(s.pg_port, [127, 0, 0, 3]).await;
        if greeting.contains("banned") {
            break;
        }
        assert!(batches < 20, "no ban after {batches} batches: {greeting:?}");
    }
    let resp = client_from([127, 0, 0, 3])
        .get(&health)
        .send()
        .await
        .expect("response");
    assert_eq!(resp.status().as_u16(), 429);
    assert_eq!(
        resp.headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("300")
    );
}

/// libpq with `sslmode=require` does not show an error answered to its TLS request ("error
/// during SSL exchange"): a banned client that asks for TLS gets the handshake, then the ban.
#[tokio::test]
async fn a_banned_client_reads_its_ban_over_tls_and_in_plain_text() {
    // Nothing on IPv4 is trusted here: the test's own address earns the ban.
    let metrics_port = tdb_testkit::free_port().expect("port");
    let metrics_listen = format!("127.0.0.1:{metrics_port}");
    let s = TdbServer::start_with(
        bin(),
        tdb_testkit::ServeOptions {
            config_toml: Some("trusted_networks = [\"::1/128\"]\n".into()),
            env: vec![("TDB_METRICS_LISTEN".into(), metrics_listen.clone())],
            ..Default::default()
        },
    )
    .await
    .expect("tdb serve starts");
    let mut batches = 0;
    while !proxy_greeting(s.pg_port, [127, 0, 0, 1])
        .await
        .contains("banned")
    {
        let flood: Vec<_> = (0..100)
            .map(|_| proxy_greeting_quick(s.pg_port, [127, 0, 0, 1]))
            .collect();
        futures_util::future::join_all(flood).await;
        batches += 1;
        assert!(batches < 20, "no ban after {batches} batches");
    }
    for sslmode in ["require", "disable"] {
        let url = format!(
            "postgresql://nobody@127.0.0.1:{}/nothing?sslmode={sslmode}",
            s.pg_port
        );
        let out = std::process::Command::new("psql")
            .args(["-X", "-w", &url, "-c", "SELECT 1"])
            .stdin(std::process::Stdio::null())
            .output()
            .expect("psql runs");
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        let told = said
            .split("the address is banned for ")
            .nth(1)
            .and_then(|rest| rest.split(" s").next())
            .and_then(|secs| secs.parse::<u64>().ok());
        assert!(
            told.is_some_and(|secs| (250..=300).contains(&secs)),
            "sslmode={sslmode}: {said}"
        );
    }
    let text = metrics_text(&metrics_listen).await;
    assert!(
        text.lines()
            .any(|l| l == "tdb_address_bans_total{surface=\"proxy\"} 1"),
        "one ban counted:\n{text}"
    );
}

/// Opens and drops a connection (one attempt).
async fn proxy_greeting_quick(port: u16, local: [u8; 4]) {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::from((local, 0)))
        .expect("bind source address");
    let _ = socket
        .connect(SocketAddr::from(([127, 0, 0, 1], port)))
        .await;
}

#[tokio::test]
async fn tier_quotas_and_failed_logins_are_throttled() {
    let s = start_with_env(&[
        ("TDB_QUOTA_FREE_PER_MINUTE", "40"),
        ("TDB_PG_MAX_AUTH_FAILURES_PER_USER", "3"),
    ])
    .await;
    let f = fixture(&s, "quota@example.com").await;
    // The fixture made a few requests; use up the rest of the minute.
    let mut refused = None;
    for i in 0..60 {
        let (st, body) = get(&s, "/tenants", &f.key).await;
        if st == 429 {
            refused = Some((i, body));
            break;
        }
        assert_eq!(st, 200, "{body}");
    }
    let (_, body) = refused.expect("the quota ends");
    assert_eq!(
        body["error"], "rate limit exceeded: max 40 requests per minute",
        "{body}"
    );
    let resp = reqwest::Client::new()
        .get(format!("{}/tenants", s.api_url))
        .bearer_auth(&f.key)
        .send()
        .await
        .expect("response");
    assert_eq!(resp.status().as_u16(), 429);
    let retry: u64 = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After");
    assert!((1..=60).contains(&retry), "{retry}");

    // Three wrong passwords for the tenant's user: the fourth attempt is refused before any
    // password is checked, even with the right one; another user is unaffected.
    let user = f
        .acme
        .split("://")
        .nth(1)
        .and_then(|r| r.split(':').next())
        .expect("user")
        .to_string();
    let wrong = f
        .acme
        .replacen(&format!("{user}:"), &format!("{user}:wrong-"), 1);
    for _ in 0..3 {
        let e = PgConnection::connect(&wrong)
            .await
            .expect_err("wrong password");
        assert!(
            e.to_string().contains("password authentication failed"),
            "{e}"
        );
    }
    let e = PgConnection::connect(&f.acme).await.expect_err("throttled");
    assert!(e.to_string().contains("too many failed logins"), "{e}");
    let ws = PgConnection::connect(&f.workspace)
        .await
        .expect("another user logs in");
    let _ = ws.close().await;
}
