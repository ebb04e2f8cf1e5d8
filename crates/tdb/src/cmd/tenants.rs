//! `tdb tenants …`: create tenants from blueprints, inspect them, and move them through the
//! trash, suspension and restore.

use std::time::Duration;

use serde_json::{Value, json};

use super::Context;
use crate::output::{self, text};

#[derive(Debug, clap::Subcommand)]
pub enum TenantsCommand {
    /// List tenants
    List,
    /// Create a tenant with one database per --blueprint (prints its credentials once)
    Create {
        name: String,
        /// Blueprint to create a database from (repeat for several)
        #[arg(long = "blueprint", required = true)]
        blueprints: Vec<String>,
        /// 1 (shared) or 2 (dedicated)
        #[arg(long, default_value_t = 1)]
        isolation_level: u8,
    },
    /// Show a tenant and its databases
    Get { name: String },
    /// Move a tenant to the trash, or drop it for good with --hard
    Delete {
        name: String,
        #[arg(long)]
        hard: bool,
    },
    /// Restore a tenant from the trash, bringing its databases to their blueprints' current
    /// versions (deployments skip the trash)
    Restore { name: String },
    /// Suspend a tenant (its connections are refused)
    Suspend { name: String },
    /// Resume a suspended tenant
    Resume { name: String },
    /// The deployments that touched a tenant
    Deployments { name: String },
    /// Back up every database of a tenant to the backup store
    Backup {
        name: String,
        /// Return at once instead of waiting for the backup to finish
        #[arg(long)]
        no_wait: bool,
    },
    /// List a tenant's backups, newest first
    Backups { name: String },
    /// A tenant's query log, newest first (oldest first with --follow)
    Logs {
        name: String,
        /// error or slow
        #[arg(long = "type")]
        kind: Option<String>,
        /// 1h, 24h, 7d or 30d
        #[arg(long)]
        since: Option<String>,
        /// Only statements containing this text (case-insensitive)
        #[arg(long)]
        search: Option<String>,
        /// proxy or api
        #[arg(long)]
        source: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Keep printing new statements as they arrive (Ctrl-C to stop)
        #[arg(long)]
        follow: bool,
    },
    /// Totals over a tenant's whole query log: outcomes, sources, mean duration, slow statements
    Stats { name: String },
    /// A tenant's query statistics and latency metrics, with a sparkline
    Metrics {
        name: String,
        /// 1h, 24h, 7d or 30d
        #[arg(long, default_value = "24h")]
        window: String,
        /// hour, day or week [default: hour up to 24h, else day]
        #[arg(long)]
        bucket: Option<String>,
    },
    /// Restore a tenant database from a backup (a safety backup is taken first)
    Rollback {
        name: String,
        /// The exact storage_path from `tdb tenants backups`
        storage_path: String,
        /// Return at once instead of following the restore
        #[arg(long)]
        no_wait: bool,
    },
    /// Mint another proxy login for a tenant (prints its connection string once)
    Credential {
        name: String,
        /// read (SELECT only) or write (rows)
        #[arg(long, default_value = "read")]
        role: String,
        /// The blueprint whose database the connection string names [default: the first]
        #[arg(long)]
        blueprint: Option<String>,
    },
}

pub async fn run(ctx: &Context, command: TenantsCommand) -> anyhow::Result<()> {
    let c = &ctx.client;
    match command {
        TenantsCommand::List => {
            let reply = c.list_tenants().await?;
            ctx.print(&reply.raw, || {
                let rows = reply.raw["tenants"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|t| {
                        let dbs: Vec<String> = t["databases"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .map(|d| match d["behind"].is_object() {
                                true => format!(
                                    "{} v{} (behind v{})",
                                    text(&d["blueprint"]),
                                    d["version"],
                                    d["blueprint_version"]
                                ),
                                false => format!("{} v{}", text(&d["blueprint"]), d["version"]),
                            })
                            .collect();
                        vec![
                            text(&t["tenant_id"]),
                            text(&t["status"]),
                            dbs.join(", "),
                            text(&t["created_at"]),
                        ]
                    })
                    .collect();
                output::table(&["TENANT", "STATUS", "DATABASES", "CREATED"], rows);
            });
        }
        TenantsCommand::Create {
            name,
            blueprints,
            isolation_level,
        } => {
            let databases: Vec<Value> = blueprints
                .iter()
                .map(|b| json!({"blueprint": b, "isolation_level": isolation_level}))
                .collect();
            let reply = c.create_tenant(&name, &Value::from(databases)).await?;
            let r = &reply.raw;
            ctx.print(r, || {
                println!(
                    "tenant '{}' is {}",
                    text(&r["tenant_id"]),
                    text(&r["status"])
                );
                for d in r["databases"].as_array().into_iter().flatten() {
                    println!(
                        "  {} (v{}): {}",
                        text(&d["blueprint"]),
                        d["version"],
                        text(&d["connection"]["connection_string"])
                    );
                }
                println!("\nSave the connection strings: their passwords are not shown again.");
            });
        }
        TenantsCommand::Get { name } => {
            let reply = c.get_tenant(&name).await?;
            let r = &reply.raw;
            ctx.print(r, || {
                output::fields(&[
                    ("tenant", &text(&r["tenant_id"])),
                    ("status", &text(&r["status"])),
                    ("created", &text(&r["created_at"])),
                ]);
                for d in r["databases"].as_array().into_iter().flatten() {
                    println!(
                        "  {} v{} {}: {}",
                        text(&d["blueprint"]),
                        d["version"],
                        level(&d["isolation_level"]),
                        text(&d["connection_string"])
                    );
                    print_behind(d);
                }
            });
        }
        TenantsCommand::Delete { name, hard } => {
            let reply = c.delete_tenant(&name, hard).await?;
            let message = crate::hints::for_cli(&text(&reply.raw["message"]));
            ctx.print(&reply.raw, || println!("{message}"));
        }
        TenantsCommand::Credential {
            name,
            role,
            blueprint,
        } => {
            let reply = c
                .create_tenant_credential(&name, &role, blueprint.as_deref())
                .await?;
            let r = &reply.raw;
            ctx.print(r, || {
                println!(
                    "{} credential {} for tenant '{}':",
                    text(&r["role"]),
                    text(&r["username"]),
                    text(&r["tenant_id"])
                );
                println!("  {}", text(&r["connection"]["connection_string"]));
                println!("\nSave the connection string: its password is not shown again.");
            });
        }
        TenantsCommand::Backup { name, no_wait } => backup(ctx, &name, no_wait).await?,
        TenantsCommand::Backups { name } => {
            let reply = c.tenant_backups(&name).await?;
            ctx.print(&reply.raw, || {
                let rows = reply.raw["backups"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|b| {
                        vec![
                            text(&b["type"]),
                            text(&b["date"]),
                            text(&b["status"]),
                            b["size_bytes"]
                                .as_u64()
                                .map_or_else(|| "-".into(), human_bytes),
                            text(&b["storage_path"]),
                        ]
                    })
                    .collect();
                output::table(&["TYPE", "DATE", "STATUS", "SIZE", "STORAGE PATH"], rows);
            });
        }
        TenantsCommand::Rollback {
            name,
            storage_path,
            no_wait,
        } => rollback(ctx, &name, &storage_path, no_wait).await?,
        TenantsCommand::Logs {
            name,
            kind,
            since,
            search,
            source,
            limit,
            follow,
        } => {
            let mut query = vec![("limit", limit.to_string())];
            for (k, v) in [
                ("type", kind),
                ("since", since),
                ("search", search),
                ("source", source),
            ] {
                if let Some(v) = v {
                    query.push((k, v));
                }
            }
            logs(ctx, &name, &query, follow).await?;
        }
        TenantsCommand::Stats { name } => {
            let reply = c.tenant_log_stats(&name).await?;
            let r = &reply.raw;
            ctx.print(r, || {
                output::fields(&[
                    ("tenant", &text(&r["tenant_id"])),
                    ("queries", &r["total_queries"].to_string()),
                    ("successful", &r["successful"].to_string()),
                    ("failed", &r["failed"].to_string()),
                    (
                        "by source",
                        &format!(
                            "proxy {}, api {}",
                            r["by_source"]["proxy"], r["by_source"]["api"]
                        ),
                    ),
                    ("mean duration", &format!("{} ms", r["avg_duration_ms"])),
                    (
                        "slow",
                        &format!("{} (>= {} ms)", r["slow_queries"], r["slow_threshold_ms"]),
                    ),
                ]);
            });
        }
        TenantsCommand::Metrics {
            name,
            window,
            bucket,
        } => {
            let reply = c.tenant_metrics(&name, &window, bucket.as_deref()).await?;
            let m = &reply.raw;
            ctx.print(m, || print_metrics(m));
        }
        TenantsCommand::Restore { name } => {
            let reply = c.tenant_action(&name, "restore").await?;
            let r = &reply.raw;
            ctx.print(r, || {
                println!("{}", text(&r["message"]));
                for d in r["databases"].as_array().into_iter().flatten() {
                    println!("  {} v{}", text(&d["blueprint"]), d["version"]);
                    print_behind(d);
                }
            });
        }
        TenantsCommand::Suspend { name } => run_action(ctx, &name, "suspend").await?,
        TenantsCommand::Resume { name } => run_action(ctx, &name, "resume").await?,
        TenantsCommand::Deployments { name } => {
            let reply = c.tenant_deployments(&name).await?;
            ctx.print(&reply.raw, || {
                let rows = reply.raw["deployments"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|d| {
                        vec![
                            text(&d["deployment_id"]),
                            text(&d["blueprint_name"]),
                            d["version"].to_string(),
                            super::deployments::status_text(d),
                            d["duration"].as_str().unwrap_or("-").to_string(),
                            d["error"].as_str().unwrap_or("").to_string(),
                        ]
                    })
                    .collect();
                output::table(
                    &[
                        "DEPLOYMENT",
                        "BLUEPRINT",
                        "VERSION",
                        "STATUS",
                        "DURATION",
                        "ERROR",
                    ],
                    rows,
                );
            });
        }
    }
    Ok(())
}

/// Restore, suspend and resume share one shape.
/// For a database behind its blueprint: where it is, why, and the command that brings it
/// forward.
fn print_behind(d: &Value) {
    let behind = &d["behind"];
    if !behind.is_object() {
        return;
    }
    println!(
        "    behind: version {} of {}{}",
        d["version"],
        d["blueprint_version"],
        behind["error"]
            .as_str()
            .map(|e| format!(" (last deployment failed: {e})"))
            .unwrap_or_default()
    );
    println!("    bring it forward: {}", text(&behind["cli"]));
}

async fn run_action(ctx: &Context, name: &str, action: &str) -> anyhow::Result<()> {
    let reply = ctx.client.tenant_action(name, action).await?;
    ctx.print(&reply.raw, || println!("{}", text(&reply.raw["message"])));
    Ok(())
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Starts a backup and, unless told not to, waits until every path is completed or failed.
async fn backup(ctx: &Context, name: &str, no_wait: bool) -> anyhow::Result<()> {
    let started = ctx.client.backup_tenant(name).await?;
    let paths: Vec<String> = started.raw["paths"]
        .as_array()
        .into_iter()
        .flatten()
        .map(text)
        .collect();
    if no_wait {
        ctx.print(&started.raw, || {
            println!("{}", text(&started.raw["message"]));
            for p in &paths {
                println!("  {p}");
            }
        });
        return Ok(());
    }
    let spinner = (!ctx.json).then(|| {
        let s = indicatif::ProgressBar::new_spinner();
        s.set_message(format!("backing up tenant '{name}'"));
        s.enable_steady_tick(Duration::from_millis(120));
        s
    });
    let mine = loop {
        let list = ctx.client.tenant_backups(name).await?.raw;
        let mine: Vec<Value> = list["backups"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|b| paths.iter().any(|p| b["storage_path"] == p.as_str()))
            .cloned()
            .collect();
        if mine.iter().all(|b| b["status"] != "pending") {
            break mine;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    if let Some(s) = spinner {
        s.finish_and_clear();
    }
    let out = json!({"tenant_id": name, "backups": mine});
    ctx.print(&out, || {
        for b in &mine {
            match b["status"].as_str() {
                Some("completed") => println!(
                    "{} ({})",
                    text(&b["storage_path"]),
                    human_bytes(b["size_bytes"].as_u64().unwrap_or(0))
                ),
                _ => println!("{} failed: {}", text(&b["storage_path"]), text(&b["error"])),
            }
        }
    });
    if let Some(failed) = mine.iter().find(|b| b["status"] != "completed") {
        anyhow::bail!("backup {} failed", text(&failed["storage_path"]));
    }
    Ok(())
}

/// Starts a rollback and, unless told not to, follows it with a progress bar over the bytes
/// restored until the tenant is ready again.
async fn rollback(ctx: &Context, name: &str, path: &str, no_wait: bool) -> anyhow::Result<()> {
    let started = ctx.client.rollback_tenant(name, path).await?;
    let id = text(&started.raw["rollback_id"]);
    if no_wait {
        ctx.print(&started.raw, || {
            println!("{}", text(&started.raw["message"]))
        });
        return Ok(());
    }
    let bar = (!ctx.json).then(|| {
        let bar = indicatif::ProgressBar::new(0);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{msg:12} {bar:40} {bytes}/{total_bytes} {bytes_per_sec}",
        ) {
            bar.set_style(style);
        }
        bar
    });
    let last = loop {
        let t = ctx.client.get_tenant(name).await?.raw;
        let r = t["last_rollback"].clone();
        if r["rollback_id"] != id.as_str() {
            anyhow::bail!("tenant '{name}' no longer shows rollback {id}");
        }
        if let Some(bar) = &bar {
            bar.set_length(r["bytes_total"].as_u64().unwrap_or(0));
            bar.set_position(r["bytes_done"].as_u64().unwrap_or(0));
            bar.set_message(text(&r["step"]));
        }
        if matches!(r["step"].as_str(), Some("completed" | "failed")) {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    ctx.print(&last, || {
        if last["step"] == "completed" {
            println!("tenant '{name}' rolled back to {path}");
        } else {
            println!(
                "rollback of tenant '{name}' failed; it keeps its data: {}",
                text(&last["error"])
            );
        }
    });
    if last["step"] != "completed" {
        anyhow::bail!("rollback failed: {}", text(&last["error"]));
    }
    Ok(())
}

fn log_rows(logs: &[Value]) -> Vec<Vec<String>> {
    logs.iter()
        .map(|l| {
            let query: String = text(&l["query"])
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            let query = match query.char_indices().nth(80) {
                Some((i, _)) => format!("{}…", &query[..i]),
                None => query,
            };
            vec![
                text(&l["created_at"]),
                text(&l["source"]),
                if l["success"] == true {
                    "ok".into()
                } else {
                    format!("error {}", text(&l["error_code"]))
                },
                format!("{:.2}", l["duration_ms"].as_f64().unwrap_or(0.0)),
                query,
            ]
        })
        .collect()
}

const LOG_HEADERS: [&str; 5] = ["TIME", "SOURCE", "RESULT", "MS", "QUERY"];

/// Prints a page of the log; with `follow`, then polls for newer statements every second.
async fn logs(
    ctx: &Context,
    name: &str,
    query: &[(&str, String)],
    follow: bool,
) -> anyhow::Result<()> {
    let reply = ctx.client.tenant_logs(name, query).await?;
    let mut page: Vec<Value> = reply.raw["logs"].as_array().cloned().unwrap_or_default();
    if !follow {
        ctx.print(&reply.raw, || {
            output::table(&LOG_HEADERS, log_rows(&page));
            if reply.raw["has_more"] == true {
                println!("(more: raise --limit or narrow the filters)");
            }
        });
        return Ok(());
    }
    page.reverse();
    // Ids grow in the order records were written, which is not quite the order they started
    // in (a long statement is written when it ends): the newest id seen marks what is shown.
    let newest_id = |entries: &[Value]| entries.iter().filter_map(|l| l["id"].as_i64()).max();
    let mut last = newest_id(&page).unwrap_or(0);
    let emit = |entries: &[Value]| {
        if ctx.json {
            for e in entries {
                println!("{e}");
            }
        } else {
            for row in log_rows(entries) {
                println!("{}", row.join("  "));
            }
        }
    };
    emit(&page);
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut q: Vec<(&str, String)> = query
            .iter()
            .filter(|(k, _)| *k != "limit")
            .cloned()
            .collect();
        q.push(("limit", "1000".into()));
        let reply = ctx.client.tenant_logs(name, &q).await?;
        let mut fresh: Vec<Value> = reply.raw["logs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|l| l["id"].as_i64().unwrap_or(0) > last)
            .cloned()
            .collect();
        fresh.reverse();
        if let Some(id) = newest_id(&fresh) {
            last = last.max(id);
        }
        emit(&fresh);
    }
}

/// Eight levels of a bar, lowest to highest.
const SPARKS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// A one-line chart of `values` (empty for no values).
pub fn sparkline(values: &[f64]) -> String {
    let max = values.iter().copied().fold(0.0_f64, f64::max);
    values
        .iter()
        .map(|v| {
            if max <= 0.0 {
                SPARKS[0]
            } else {
                let level = ((v / max) * (SPARKS.len() - 1) as f64).round() as usize;
                SPARKS[level.min(SPARKS.len() - 1)]
            }
        })
        .collect()
}

pub fn print_metrics(m: &Value) {
    let num = |v: &Value| {
        v.as_f64()
            .map_or_else(|| "-".to_string(), |f| format!("{f:.2}"))
    };
    output::fields(&[
        (
            if m["workspace_id"].is_string() {
                "workspace"
            } else {
                "tenant"
            },
            &text(if m["workspace_id"].is_string() {
                &m["workspace_id"]
            } else {
                &m["tenant_id"]
            }),
        ),
        (
            "window",
            &format!("{} (per {})", text(&m["window"]), text(&m["bucket"])),
        ),
        ("queries", &m["queries"].to_string()),
        ("failed", &m["failed"].to_string()),
        (
            "slow",
            &format!("{} (>= {} ms)", m["slow"], m["slow_threshold_ms"]),
        ),
        ("success rate", &format!("{} %", num(&m["success_rate"]))),
    ]);
    let l = &m["latency_ms"];
    output::table(
        &["LATENCY MS", "AVG", "P50", "P95", "P99", "MAX"],
        vec![vec![
            String::new(),
            num(&l["avg"]),
            num(&l["p50"]),
            num(&l["p95"]),
            num(&l["p99"]),
            num(&l["max"]),
        ]],
    );
    let series = m["series"].as_array().cloned().unwrap_or_default();
    if !series.is_empty() {
        let counts: Vec<f64> = series
            .iter()
            .map(|b| b["queries"].as_f64().unwrap_or(0.0))
            .collect();
        let p95: Vec<f64> = series
            .iter()
            .map(|b| b["p95_ms"].as_f64().unwrap_or(0.0))
            .collect();
        println!("queries  {}", sparkline(&counts));
        println!("p95 ms   {}", sparkline(&p95));
    }
}

/// An isolation level as the reference labels it: `L1` whether the API says `"L1"` or `1`.
fn level(v: &Value) -> String {
    match v.as_i64() {
        Some(n) => format!("L{n}"),
        None => text(v),
    }
}

#[cfg(test)]
mod tests {
    use super::sparkline;

    #[test]
    fn sparklines_scale_to_the_largest_value() {
        assert_eq!(sparkline(&[0.0, 1.0, 2.0, 4.0]), "▁▃▅█");
        assert_eq!(sparkline(&[0.0, 0.0]), "▁▁");
        assert_eq!(sparkline(&[]), "");
    }
}
