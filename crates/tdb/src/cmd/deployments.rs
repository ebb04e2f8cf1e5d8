//! `tdb deployments list|create|status` and `tdb query`: roll blueprint versions out to tenants
//! (with a live progress bar), and run data queries on them.

use std::time::Duration;

use serde_json::{Value, json};

use super::Context;
use crate::output::{self, text};

#[derive(Debug, clap::Subcommand)]
pub enum DeploymentsCommand {
    /// List deployments
    List,
    /// Deploy a blueprint's pending changes (or --version) to its tenants and follow progress
    Create {
        blueprint: String,
        #[arg(long)]
        version: Option<i32>,
        /// Only these tenants (comma-separated)
        #[arg(long, value_delimiter = ',')]
        tenants: Option<Vec<String>>,
        /// Apply and roll back on every tenant; report what would fail
        #[arg(long)]
        dry_run: bool,
        /// Return at once instead of following progress
        #[arg(long)]
        no_wait: bool,
    },
    /// Show a deployment with per-tenant results
    Status { id: String },
}

const FINAL: [&str; 3] = ["completed", "completed_with_errors", "failed"];

pub async fn run(ctx: &Context, command: DeploymentsCommand) -> anyhow::Result<()> {
    let c = &ctx.client;
    match command {
        DeploymentsCommand::List => {
            let reply = c.list_deployments().await?;
            ctx.print(&reply.raw, || {
                let rows = reply.raw["deployments"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|d| {
                        vec![
                            text(&d["id"]),
                            text(&d["blueprint_name"]),
                            d["version"].to_string(),
                            status_text(d),
                            format!("{}/{}", d["tenants_completed"], d["tenants_total"]),
                            d["tenants_failed"].to_string(),
                        ]
                    })
                    .collect();
                output::table(
                    &["ID", "BLUEPRINT", "VERSION", "STATUS", "DONE", "FAILED"],
                    rows,
                );
            });
        }
        DeploymentsCommand::Create {
            blueprint,
            version,
            tenants,
            dry_run,
            no_wait,
        } => {
            let mut body = json!({"blueprint_name": blueprint, "dry_run": dry_run});
            if let Some(v) = version {
                body["version"] = v.into();
            }
            if let Some(t) = tenants {
                body["tenant_ids"] = t.into();
            }
            let created = c.create_deployment(&body).await?;
            let id = text(&created.raw["id"]);
            if no_wait {
                let what = if dry_run { "dry run" } else { "deployment" };
                ctx.print(&created.raw, || {
                    println!("{what} {id} started (version {})", created.raw["version"])
                });
                return Ok(());
            }
            let finished =
                follow(ctx, &id, created.raw["tenants_total"].as_u64().unwrap_or(0)).await?;
            ctx.print(&finished, || print_results(&finished));
            if finished["status"] != "completed" {
                anyhow::bail!("deployment {id} finished {}", text(&finished["status"]));
            }
        }
        DeploymentsCommand::Status { id } => {
            let reply = c.get_deployment(&id).await?;
            ctx.print(&reply.raw, || print_results(&reply.raw));
        }
    }
    Ok(())
}

/// Polls until the deployment ends, drawing a progress bar on a terminal.
async fn follow(ctx: &Context, id: &str, total: u64) -> anyhow::Result<Value> {
    let bar = (!ctx.json).then(|| {
        let bar = indicatif::ProgressBar::new(total);
        if let Ok(style) =
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} tenants {msg}")
        {
            bar.set_style(style);
        }
        bar
    });
    loop {
        let d = ctx.client.get_deployment(id).await?.raw;
        let done = d["tenants_completed"].as_u64().unwrap_or(0)
            + d["tenants_failed"].as_u64().unwrap_or(0);
        if let Some(bar) = &bar {
            bar.set_position(done);
            bar.set_message(format!("({} failed)", d["tenants_failed"]));
        }
        if FINAL.contains(&d["status"].as_str().unwrap_or("")) {
            if let Some(bar) = bar {
                bar.finish_and_clear();
            }
            return Ok(d);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A deployment's status, marked when it was a dry run (tried, rolled back, nothing changed).
pub fn status_text(d: &Value) -> String {
    if d["dry_run"] == true {
        format!("{} (dry run)", text(&d["status"]))
    } else {
        text(&d["status"])
    }
}

fn print_results(d: &Value) {
    output::fields(&[
        ("deployment", &text(&d["id"])),
        ("blueprint", &text(&d["blueprint_name"])),
        ("version", &d["version"].to_string()),
        ("status", &status_text(d)),
        (
            "tenants",
            &format!(
                "{} done, {} failed of {}",
                d["tenants_completed"], d["tenants_failed"], d["tenants_total"]
            ),
        ),
    ]);
    let rows: Vec<Vec<String>> = d["results"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["status"] == "failed")
        .map(|r| vec![text(&r["tenant_id"]), text(&r["error"])])
        .collect();
    if !rows.is_empty() {
        output::table(&["FAILED TENANT", "ERROR"], rows);
    }
}

#[derive(Debug, clap::Args)]
pub struct QueryArgs {
    /// The blueprint whose tenants to query
    #[arg(long)]
    blueprint: String,
    /// One tenant
    #[arg(long, conflicts_with = "all")]
    tenant: Option<String>,
    /// Every tenant of the blueprint
    #[arg(long)]
    all: bool,
    /// Data statements only (DDL is refused)
    sql: String,
}

pub async fn query(ctx: &Context, args: QueryArgs) -> anyhow::Result<()> {
    let mut body = json!({"blueprint": args.blueprint, "query": args.sql});
    match (args.tenant, args.all) {
        (Some(t), false) => body["tenant_id"] = t.into(),
        (None, true) => body["all_tenants"] = true.into(),
        _ => anyhow::bail!("give --tenant NAME or --all"),
    }
    let reply = ctx.client.admin_query(&body).await?;
    let r = &reply.raw;
    ctx.print(r, || {
        let results: Vec<Value> = match r["results"].as_array() {
            Some(all) => all.clone(),
            None => vec![r.clone()],
        };
        for res in results {
            println!("{}", text(&res["tenant_id"]));
            if let Some(e) = res["error"].as_str() {
                println!("  error: {}", crate::hints::for_cli(e));
                continue;
            }
            let headers: Vec<String> = res["columns"]
                .as_array()
                .into_iter()
                .flatten()
                .map(text)
                .collect();
            let rows = res["rows"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|row| {
                    row.as_array()
                        .into_iter()
                        .flatten()
                        .map(|v| if v.is_null() { "NULL".into() } else { text(v) })
                        .collect()
                })
                .collect();
            if !headers.is_empty() {
                output::table(
                    &headers.iter().map(String::as_str).collect::<Vec<_>>(),
                    rows,
                );
            }
            println!("  {} row(s)", res["row_count"]);
        }
    });
    Ok(())
}
