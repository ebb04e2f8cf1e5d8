//! The query log's chunked store against a real PostgreSQL: batches of records for several
//! targets, written the way the proxy's writer writes them, come back through
//! `Catalog::query_logs` exactly as a plain sort and filter of the same records says, for every
//! filter and for pages deep enough to need many chunks; the aggregates and retention count the
//! same records.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use sqlx::postgres::PgConnectOptions;
use tdb_catalog::Catalog;
use tdb_catalog::logs::{LogFilter, LogTarget};
use tdb_catalog::routing::{LogBatch, LoggedStatement, QueryOrigin};
use tdb_testkit::TestPostgres;

/// One record as the test keeps it, to compute what the store must answer.
struct Rec {
    origin: Arc<QueryOrigin>,
    statement: String,
    duration_us: i64,
    success: bool,
    sqlstate: Option<String>,
    rows: Option<i64>,
    started_at: DateTime<Utc>,
}

/// Writes records as one batch of the proxy's writer would.
async fn append(catalog: &Catalog, records: &[Rec]) {
    let mut batch = LogBatch::default();
    for r in records {
        batch.push(
            &r.origin,
            &LoggedStatement {
                text: &r.statement,
                duration_us: r.duration_us,
                success: r.success,
                sqlstate: r.sqlstate.as_deref(),
                rows: r.rows,
                started_at: r.started_at,
            },
        );
    }
    catalog.append_log_batch(&batch).await.expect("append");
}

/// The statements a page of `limit` after `offset` must hold, as the store keeps their text
/// (without NUL).
fn window<'a>(newest_first: impl Iterator<Item = &'a Rec>, offset: i64, limit: i64) -> Vec<String> {
    newest_first
        .skip(offset as usize)
        .take(limit as usize)
        .map(|r| r.statement.replace('\0', ""))
        .collect()
}

/// Which records a filter keeps, as the test computes it.
type Keep = Box<dyn Fn(&Rec) -> bool>;

/// A small deterministic generator (no test depends on a seed it cannot show).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn record(
    tenant: Option<&str>,
    workspace: Option<&str>,
    source: &'static str,
    n: u64,
    at: DateTime<Utc>,
    rng: &mut Lcg,
) -> Rec {
    let failed = rng.below(7) == 0;
    Rec {
        origin: Arc::new(QueryOrigin {
            project_id: Arc::from("p_logs"),
            tenant: tenant.map(Arc::from),
            workspace: workspace.map(Arc::from),
            database: Arc::from(format!("app__{}", tenant.or(workspace).unwrap_or("-"))),
            source,
            username: Arc::from(if source == "api" { "key_1" } else { "u_app" }),
        }),
        // Every statement is unique, so a page is compared by its statements; some carry a
        // word to search for, one a NUL the store drops.
        statement: match n % 10 {
            3 => format!("SELECT * FROM orders WHERE Needle_{n} = 1"),
            9 => format!("SELECT 'x\0y', {n}"),
            _ => format!("SELECT {n}"),
        },
        duration_us: rng.below(50_000) as i64,
        success: !failed,
        sqlstate: failed.then(|| "42P01".to_string()),
        rows: (!failed).then(|| rng.below(100) as i64),
        started_at: at,
    }
}

#[tokio::test]
async fn pages_and_aggregates_equal_a_plain_sort_of_the_records() {
    let pg = TestPostgres::start().await.expect("postgres");
    let admin = sqlx::PgPool::connect(&pg.url("postgres"))
        .await
        .expect("admin");
    sqlx::query("CREATE DATABASE logstore")
        .execute(&admin)
        .await
        .expect("database");
    admin.close().await;
    let options: PgConnectOptions = pg.url("logstore").parse().expect("url");
    let catalog = Catalog::open(options, 4).await.expect("catalog");

    // 60 batches of 0-120 records for `busy`, a few for `quiet`, some for the workspace; start
    // times mostly rise, but a batch also holds statements that started long before (a long
    // query finishing), so chunks' time spans overlap and a page's records come from chunks
    // far apart.
    let mut rng = Lcg(0x5eed);
    // Six days ago, to the second (the store keeps microseconds).
    let base = DateTime::from_timestamp(Utc::now().timestamp() - 6 * 86_400, 0).expect("time");
    let mut clock = 0i64;
    let mut n = 0u64;
    let mut all: Vec<Rec> = Vec::new();
    for _ in 0..60 {
        let mut batch = Vec::new();
        for _ in 0..rng.below(121) {
            clock += 1 + rng.below(2_000) as i64;
            // One statement in five ran for up to 0.4 s, several batches' worth.
            let at = if rng.below(5) == 0 {
                base + Duration::microseconds(clock - rng.below(400_000) as i64)
            } else {
                base + Duration::microseconds(clock)
            };
            let (tenant, workspace, source) = match rng.below(20) {
                0 => (Some("quiet"), None, "proxy"),
                1 => (None, Some("app"), "api"),
                2 => (Some("busy"), None, "api"),
                _ => (Some("busy"), None, "proxy"),
            };
            n += 1;
            batch.push(record(tenant, workspace, source, n, at, &mut rng));
        }
        append(&catalog, &batch).await;
        all.extend(batch);
    }
    let busy: Vec<&Rec> = all
        .iter()
        .filter(|r| r.origin.tenant.as_deref() == Some("busy"))
        .collect();
    assert!(busy.len() > 2_000, "{} records", busy.len());
    let chunks: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM query_log_chunk WHERE tenant = 'busy' AND source = 'proxy'",
    )
    .fetch_one(catalog.pool())
    .await
    .expect("chunks");
    assert!(
        (50..=60).contains(&chunks),
        "one chunk per batch and target: {chunks}"
    );

    let since = base + Duration::microseconds(clock / 2);
    let filters: Vec<(&str, LogFilter, Keep)> = vec![
        ("none", LogFilter::default(), Box::new(|_| true)),
        (
            "errors",
            LogFilter {
                errors_only: true,
                ..Default::default()
            },
            Box::new(|r| !r.success),
        ),
        (
            "slow",
            LogFilter {
                slower_than_us: Some(45_000),
                ..Default::default()
            },
            Box::new(|r| r.duration_us >= 45_000),
        ),
        (
            "search",
            LogFilter {
                search: Some("needle_1".into()),
                ..Default::default()
            },
            Box::new(|r| r.statement.to_lowercase().contains("needle_1")),
        ),
        (
            "source",
            LogFilter {
                source: Some("api".into()),
                ..Default::default()
            },
            Box::new(|r| r.origin.source == "api"),
        ),
        (
            "since",
            LogFilter {
                since: Some(since),
                ..Default::default()
            },
            Box::new(move |r| r.started_at >= since),
        ),
    ];
    for (name, filter, keep) in &filters {
        let mut expected: Vec<&Rec> = busy.iter().copied().filter(|r| keep(r)).collect();
        // Newest first; equal starts keep the order they were written in, newest first too.
        expected.reverse();
        expected.sort_by_key(|r| std::cmp::Reverse(r.started_at));
        assert!(!expected.is_empty(), "{name}: no records to find");
        for (limit, offset) in [
            (50, 0),
            (7, 3),
            (1000, 0),
            (50, 900),
            (50, 2_000),
            (3, 10_000),
        ] {
            let filter = LogFilter {
                limit,
                offset,
                ..filter.clone()
            };
            let (page, more) = catalog
                .query_logs("p_logs", LogTarget::Tenant("busy"), &filter)
                .await
                .expect("page");
            let want = window(expected.iter().copied(), offset, limit);
            let got: Vec<String> = page.iter().map(|e| e.statement.clone()).collect();
            assert_eq!(got, want, "{name}, limit {limit}, offset {offset}");
            assert_eq!(
                more,
                expected.len() > (offset + limit) as usize,
                "{name}, limit {limit}, offset {offset}: has_more"
            );
            for (e, r) in page.iter().zip(expected.iter().skip(offset as usize)) {
                assert_eq!(
                    (e.started_at, e.duration_us, e.success, &e.sqlstate, e.rows),
                    (r.started_at, r.duration_us, r.success, &r.sqlstate, r.rows),
                    "{name}: {}",
                    e.statement
                );
                assert_eq!(
                    (e.source.as_str(), &*e.username),
                    (r.origin.source, &*r.origin.username)
                );
            }
        }
    }
    // Ids are unique across the whole log.
    let (records, ids): (i64, i64) =
        sqlx::query_as("SELECT count(*), count(DISTINCT id) FROM query_log")
            .fetch_one(catalog.pool())
            .await
            .expect("ids");
    assert_eq!((records, ids), (all.len() as i64, all.len() as i64));

    // The workspace's records are its own.
    let (page, _) = catalog
        .query_logs(
            "p_logs",
            LogTarget::Workspace("app"),
            &LogFilter {
                limit: 1000,
                ..Default::default()
            },
        )
        .await
        .expect("workspace page");
    let workspace_n = all.iter().filter(|r| r.origin.workspace.is_some()).count();
    assert_eq!(page.len(), workspace_n);

    // A page whose records are spread over chunks that overlap in time: each of 16 chunks holds
    // one new statement and ten that started long before (so the first 16 chunks read give 176
    // records, most of them old), while 10 chunks that ended earlier hold statements newer
    // than those old ones. The page must come from both.
    let mut skew: Vec<Rec> = Vec::new();
    for i in 0..16i64 {
        let mut batch = vec![record(
            Some("skew"),
            None,
            "proxy",
            10_000 + i as u64,
            base + Duration::seconds(1000 + i),
            &mut rng,
        )];
        for j in 0..10i64 {
            batch.push(record(
                Some("skew"),
                None,
                "proxy",
                20_000 + (i * 10 + j) as u64,
                base + Duration::milliseconds(i * 10 + j),
                &mut rng,
            ));
        }
        append(&catalog, &batch).await;
        skew.extend(batch);
    }
    for i in 0..10i64 {
        let batch: Vec<Rec> = (0..5i64)
            .map(|j| {
                record(
                    Some("skew"),
                    None,
                    "proxy",
                    30_000 + (i * 5 + j) as u64,
                    base + Duration::seconds(500 + i) + Duration::milliseconds(j),
                    &mut rng,
                )
            })
            .collect();
        append(&catalog, &batch).await;
        skew.extend(batch);
    }
    skew.sort_by_key(|r| std::cmp::Reverse(r.started_at));
    for (limit, offset) in [(20, 0), (30, 10), (60, 0)] {
        let (page, _) = catalog
            .query_logs(
                "p_logs",
                LogTarget::Tenant("skew"),
                &LogFilter {
                    limit,
                    offset,
                    ..Default::default()
                },
            )
            .await
            .expect("skewed page");
        let want = window(skew.iter(), offset, limit);
        let got: Vec<String> = page.iter().map(|e| e.statement.clone()).collect();
        assert_eq!(
            got, want,
            "overlapping chunks, limit {limit}, offset {offset}"
        );
    }
    let skew_n = skew.len();

    // Aggregates count the same records.
    let stats = catalog
        .query_log_stats("p_logs", LogTarget::Tenant("busy"), 45_000)
        .await
        .expect("stats");
    assert_eq!(stats.total, busy.len() as i64);
    assert_eq!(
        stats.failed,
        busy.iter().filter(|r| !r.success).count() as i64
    );
    assert_eq!(
        stats.api,
        busy.iter().filter(|r| r.origin.source == "api").count() as i64
    );
    assert_eq!(
        stats.slow,
        busy.iter().filter(|r| r.duration_us >= 45_000).count() as i64
    );
    let latency = catalog
        .query_log_latency("p_logs", LogTarget::Tenant("busy"), since, 45_000)
        .await
        .expect("latency");
    let recent: Vec<i64> = busy
        .iter()
        .filter(|r| r.started_at >= since)
        .map(|r| r.duration_us)
        .collect();
    assert_eq!(latency.total, recent.len() as i64);
    assert_eq!(latency.max_us, recent.iter().copied().max());
    let buckets = catalog
        .query_log_buckets("p_logs", LogTarget::Tenant("busy"), since, "hour", 45_000)
        .await
        .expect("buckets");
    assert_eq!(
        buckets.iter().map(|b| b.total).sum::<i64>(),
        recent.len() as i64
    );

    // Retention: the records are six days old, so a five-day limit takes every one, and the
    // count it reports is of records.
    let gone = catalog.expire_query_log(5).await.expect("expire");
    assert_eq!(gone, (all.len() + skew_n) as u64);
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM query_log")
        .fetch_one(catalog.pool())
        .await
        .expect("left");
    assert_eq!(left, 0);
    catalog.close().await;
    pg.stop().await;
}
