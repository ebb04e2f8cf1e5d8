//! The plain-PostgreSQL floor for tdb's tenant benchmarks (see benches/README.md):
//!
//!   pg_floor create ADMIN_URL TEMPLATE_DB COUNT PREFIX
//!       CREATE DATABASE <PREFIX><i> TEMPLATE <TEMPLATE_DB>, one after another; prints each
//!       latency in milliseconds, one per line.
//!   pg_floor fanout ADMIN_URL PARALLELISM DDL < database names
//!       connects to each database and runs DDL in one transaction, PARALLELISM at a time;
//!       prints `seconds databases`.

use std::str::FromStr;
use std::time::Instant;

use futures_util::StreamExt;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{Connection, Executor};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("create") if args.len() == 6 => {
            create(&args[2], &args[3], args[4].parse()?, &args[5]).await
        }
        Some("fanout") if args.len() == 5 => fanout(&args[2], args[3].parse()?, &args[4]).await,
        _ => anyhow::bail!(
            "usage: pg_floor create ADMIN_URL TEMPLATE COUNT PREFIX | fanout ADMIN_URL PARALLELISM DDL"
        ),
    }
}

async fn create(url: &str, template: &str, count: usize, prefix: &str) -> anyhow::Result<()> {
    let mut conn = PgConnection::connect(url).await?;
    for i in 0..count {
        let sql = format!("CREATE DATABASE \"{prefix}{i}\" TEMPLATE \"{template}\"");
        let started = Instant::now();
        conn.execute(sqlx::AssertSqlSafe(sql)).await?;
        println!("{:.3}", started.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(())
}

async fn fanout(url: &str, parallelism: usize, ddl: &str) -> anyhow::Result<()> {
    let base = PgConnectOptions::from_str(url)?;
    let names: Vec<String> = std::io::stdin()
        .lines()
        .map_while(Result::ok)
        .filter(|l| !l.is_empty())
        .collect();
    let started = Instant::now();
    let results: Vec<anyhow::Result<()>> = futures_util::stream::iter(names.iter())
        .map(|db| {
            let opts = base.clone().database(db);
            async move {
                let mut conn = PgConnection::connect_with(&opts).await?;
                let mut tx = conn.begin().await?;
                tx.execute(sqlx::raw_sql(sqlx::AssertSqlSafe(ddl.to_string())))
                    .await?;
                tx.commit().await?;
                conn.close().await?;
                Ok(())
            }
        })
        .buffer_unordered(parallelism)
        .collect()
        .await;
    let failed = results.iter().filter(|r| r.is_err()).count();
    anyhow::ensure!(failed == 0, "{failed} databases failed");
    println!("{:.3} {}", started.elapsed().as_secs_f64(), names.len());
    Ok(())
}
