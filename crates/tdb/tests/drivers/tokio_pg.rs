//! The driver checks of `proxy_drivers.rs` with tokio-postgres, in the test's own runtime: the
//! same checks, printed the same way (`name: value`), as the Python and Node scripts beside
//! this file.

use chrono::{DateTime, TimeZone, Utc};
use tokio_postgres::{Client, Config, NoTls, SimpleQueryMessage};

use crate::Target;

/// One check's line: its value, or the error it met (`FAILED …`, which the direct run must
/// never print).
fn line<T: std::fmt::Display, E: std::fmt::Display>(name: &str, r: Result<T, E>) -> String {
    match r {
        Ok(v) => format!("{name}: {v}"),
        Err(e) => format!("{name}: FAILED {e}"),
    }
}

fn config(t: &Target) -> Config {
    let mut config = Config::new();
    if t.host.starts_with('/') {
        config.host_path(&t.host);
    } else {
        config.host(&t.host);
    }
    config
        .port(t.port)
        .user(&t.user)
        .password(&t.password)
        .dbname(&t.database);
    config
}

/// A connection, its connection task spawned (it ends when the client is dropped).
async fn connect(t: &Target) -> Result<(Client, tokio::task::JoinHandle<()>), String> {
    let (client, connection) = config(t).connect(NoTls).await.map_err(|e| e.to_string())?;
    let task = tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok((client, task))
}

/// SQLSTATE and message of a server error.
fn sqlstate(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} {}", db.code().code(), db.message()),
        None => format!("not a server error: {e}"),
    }
}

/// The text of the first column of the first row of a simple query.
async fn simple_value(c: &Client, sql: &str) -> Result<String, String> {
    let messages = c.simple_query(sql).await.map_err(|e| sqlstate(&e))?;
    messages
        .iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(row.get(0).unwrap_or("NULL").to_string()),
            _ => None,
        })
        .ok_or_else(|| "no row".to_string())
}

async fn count(c: &Client) -> Result<i64, String> {
    let row = c
        .query_one("SELECT count(*) FROM items", &[])
        .await
        .map_err(|e| sqlstate(&e))?;
    Ok(row.get(0))
}

fn moment() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 1, 2, 3, 4, 5)
        .single()
        .expect("a moment")
}

async fn params(c: &Client) -> Result<String, String> {
    let bytes: Vec<u8> = vec![0, 1, 255];
    let array: Vec<i32> = vec![1, 2, 3];
    let none: Option<i32> = None;
    let row = c
        .query_one(
            "SELECT $1::int + 1, $2::text || '!', $3::timestamptz + interval '1 hour', \
             (($4::text)::numeric * 2)::text, $5::bytea, $6::int IS NULL, $7::int[] || 4",
            &[
                &41i32,
                &"héllo",
                &moment(),
                &"12.345",
                &bytes,
                &none,
                &array,
            ],
        )
        .await
        .map_err(|e| sqlstate(&e))?;
    let (a, b, t, n, y, z, arr): (i32, String, DateTime<Utc>, String, Vec<u8>, bool, Vec<i32>) = (
        row.get(0),
        row.get(1),
        row.get(2),
        row.get(3),
        row.get(4),
        row.get(5),
        row.get(6),
    );
    Ok(format!("{a} {b:?} {t:?} {n} {y:?} {z} {arr:?}"))
}

async fn cached(c: &Client, sql: &str, n: i32) -> Result<String, String> {
    let statement = c.prepare(sql).await.map_err(|e| sqlstate(&e))?;
    let mut seen = Vec::new();
    for i in 0..n {
        let row = c
            .query_one(&statement, &[&i])
            .await
            .map_err(|e| sqlstate(&e))?;
        seen.push(row.get::<_, i32>(0));
    }
    Ok(format!("{seen:?}"))
}

async fn commit(a: &mut Client, b: &Client) -> Result<String, String> {
    let tx = a.transaction().await.map_err(|e| sqlstate(&e))?;
    tx.execute("INSERT INTO items VALUES (1), (2)", &[])
        .await
        .map_err(|e| sqlstate(&e))?;
    tx.commit().await.map_err(|e| sqlstate(&e))?;
    Ok(format!("{} rows seen by the other", count(b).await?))
}

async fn rollback(a: &mut Client, b: &Client) -> Result<String, String> {
    let tx = a.transaction().await.map_err(|e| sqlstate(&e))?;
    tx.execute("INSERT INTO items VALUES (3)", &[])
        .await
        .map_err(|e| sqlstate(&e))?;
    let inside = tx
        .query_one("SELECT count(*) FROM items", &[])
        .await
        .map_err(|e| sqlstate(&e))?
        .get::<_, i64>(0);
    tx.rollback().await.map_err(|e| sqlstate(&e))?;
    Ok(format!(
        "{inside} inside, {} after, {} seen by the other",
        count(a).await?,
        count(b).await?
    ))
}

/// Three statements sent at once on one client (tokio-postgres pipelines concurrent calls),
/// then the other client.
async fn pipelined(a: &Client, b: &Client) -> Result<String, String> {
    let (x, y, z) = tokio::join!(
        a.query_one("SELECT $1::int", &[&1i32]),
        a.query_one("SELECT $1::text", &[&"2"]),
        a.query_one("SELECT 3", &[]),
    );
    let x: i32 = x.map_err(|e| sqlstate(&e))?.get(0);
    let y: String = y.map_err(|e| sqlstate(&e))?.get(0);
    let z: i32 = z.map_err(|e| sqlstate(&e))?.get(0);
    Ok(format!(
        "{x} {y} {z}, then {} rows seen by the other",
        count(b).await?
    ))
}

/// An error in a transaction: the next statement is refused until the rollback.
async fn failed_transaction(a: &mut Client) -> Result<String, String> {
    let tx = a.transaction().await.map_err(|e| sqlstate(&e))?;
    let first = tx
        .query_one("SELECT 1 / $1::int", &[&0i32])
        .await
        .map(|_| "no error".to_string())
        .unwrap_or_else(|e| sqlstate(&e));
    let next = tx
        .query_one("SELECT 1", &[])
        .await
        .map(|_| "no error".to_string())
        .unwrap_or_else(|e| sqlstate(&e));
    tx.rollback().await.map_err(|e| sqlstate(&e))?;
    Ok(format!(
        "{first} | {next} | then {}",
        simple_value(a, "SELECT 4").await?
    ))
}

async fn rendered(c: &Client) -> Result<String, String> {
    let row = c
        .query_one(
            "SELECT $1::timestamptz::text, $1::timestamptz",
            &[&moment()],
        )
        .await
        .map_err(|e| sqlstate(&e))?;
    let (text, parsed): (String, DateTime<Utc>) = (row.get(0), row.get(1));
    Ok(format!("{text} {parsed:?}"))
}

/// Every check, in order, one line each.
pub async fn checks(t: &Target) -> Vec<String> {
    let mut out = Vec::new();
    let (mut a, a_task) = match connect(t).await {
        Ok(c) => c,
        Err(e) => return vec![format!("connect: FAILED {e}")],
    };
    let (b, b_task) = match connect(t).await {
        Ok(c) => c,
        Err(e) => return vec![format!("connect: FAILED {e}")],
    };
    out.push("connect: ok".to_string());
    let r = a.batch_execute("DELETE FROM items").await;
    out.push(line("cleanup", r.map(|_| "ok").map_err(|e| sqlstate(&e))));
    let r = a.simple_query("SELECT 1, 'two'").await.map(|m| {
        m.iter()
            .filter_map(|m| match m {
                SimpleQueryMessage::Row(r) => Some(format!("{:?} {:?}", r.get(0), r.get(1))),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join(",")
    });
    out.push(line("simple", r.map_err(|e| sqlstate(&e))));
    out.push(line("params", params(&a).await));
    out.push(line("cached", cached(&a, "SELECT $1::int * 10", 6).await));
    out.push(line("commit", commit(&mut a, &b).await));
    out.push(line("rollback", rollback(&mut a, &b).await));
    out.push(line("pipelined", pipelined(&a, &b).await));
    let r = a.query_one("SELECT 1 / $1::int", &[&0i32]).await;
    out.push(line::<_, String>(
        "error",
        Ok(r.map(|_| "no error".to_string())
            .unwrap_or_else(|e| sqlstate(&e))),
    ));
    out.push(line("after error", simple_value(&a, "SELECT 2").await));
    out.push(line(
        "error in transaction",
        failed_transaction(&mut a).await,
    ));
    let r = a.batch_execute("SET TIME ZONE 'Asia/Tokyo'").await;
    out.push(line(
        "set timezone",
        r.map(|_| "ok").map_err(|e| sqlstate(&e)),
    ));
    out.push(line("timezone", simple_value(&a, "SHOW TimeZone").await));
    out.push(line("timezone rendered", rendered(&a).await));
    interleave(&a, &b, &mut out).await;
    drop(a);
    drop(b);
    let ended = a_task.await.is_ok() && b_task.await.is_ok();
    out.push(format!("close: {ended}"));
    out.push(line("after close", after_close(t).await));
    out
}

/// Two clients taking turns: each keeps its own time zone and its own prepared statements
/// (tokio-postgres names them s0, s1… in each client alike).
async fn interleave(a: &Client, b: &Client, out: &mut Vec<String>) {
    for round in 1..=3 {
        if round == 2 {
            let r = b.batch_execute("SET TIME ZONE 'America/New_York'").await;
            out.push(line("b sets", r.map(|_| "ok").map_err(|e| sqlstate(&e))));
        }
        let (za, zb) = (
            simple_value(a, "SHOW TimeZone").await,
            simple_value(b, "SHOW TimeZone").await,
        );
        out.push(format!(
            "interleave {round}: a={} b={}",
            za.unwrap_or_else(|e| format!("FAILED {e}")),
            zb.unwrap_or_else(|e| format!("FAILED {e}"))
        ));
    }
    let (sa, sb) = (
        a.prepare("SELECT $1::int + 100").await,
        b.prepare("SELECT $1::int - 100").await,
    );
    let mut seen = Vec::new();
    if let (Ok(sa), Ok(sb)) = (&sa, &sb) {
        for i in 0..4i32 {
            for (c, s) in [(a, sa), (b, sb)] {
                seen.push(match c.query_one(s, &[&i]).await {
                    Ok(row) => row.get::<_, i32>(0).to_string(),
                    Err(e) => format!("FAILED {}", sqlstate(&e)),
                });
            }
        }
    } else {
        seen.push(format!("FAILED prepare {sa:?} {sb:?}"));
    }
    out.push(format!("interleave statements: {}", seen.join(" ")));
    out.push(line("interleave rendered a", rendered(a).await));
    out.push(line("interleave rendered b", rendered(b).await));
}

/// A new session after both closed (in transaction pooling, on the server connection they
/// used): the server's defaults.
async fn after_close(t: &Target) -> Result<String, String> {
    let (c, task) = connect(t).await?;
    let zone = simple_value(&c, "SHOW TimeZone").await?;
    drop(c);
    let _ = task.await;
    Ok(zone)
}
