//! `tdb deployments list|create|status` and `tdb query`: roll blueprint versions out to tenants
//! (with a live progress bar), and run data queries on them.

use std::time::Duration;

use serde_json::Value;

use tdb_client::Reply;
use tdb_client::admin::{AdminAnswer, AdminQuery, Rows};
use tdb_client::deployments::{CreateDeployment, DeploymentDetail};
use tdb_client::version::VersionNumber;
use tdb_core::{DeploymentStatus, TargetStatus};

use super::Context;
use crate::output;

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

pub async fn run(ctx: &Context, command: DeploymentsCommand) -> anyhow::Result<()> {
    let c = &ctx.client;
    match command {
        DeploymentsCommand::List => {
            let reply = c.list_deployments().await?;
            ctx.print(&reply.raw, || {
                let rows = reply
                    .data
                    .deployments
                    .iter()
                    .map(|d| {
                        vec![
                            d.id.clone(),
                            d.blueprint_name.clone(),
                            d.version.to_string(),
                            status_text(d.status, d.dry_run),
                            format!("{}/{}", d.tenants_completed, d.tenants_total),
                            d.tenants_failed.to_string(),
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
        } => create(ctx, blueprint, version, tenants, dry_run, no_wait).await?,
        DeploymentsCommand::Status { id } => {
            let reply = c.get_deployment(&id).await?;
            ctx.print(&reply.raw, || print_results(&reply.data));
        }
    }
    Ok(())
}

/// Starts a deployment and, unless told not to, follows it to its end.
async fn create(
    ctx: &Context,
    blueprint: String,
    version: Option<i32>,
    tenants: Option<Vec<String>>,
    dry_run: bool,
    no_wait: bool,
) -> anyhow::Result<()> {
    let body = CreateDeployment {
        blueprint_name: blueprint,
        version: version.map(VersionNumber),
        deploy_all: None,
        tenant_ids: tenants,
        dry_run: Some(dry_run),
    };
    let created = ctx.client.create_deployment(&body).await?;
    let id = &created.data.id;
    if no_wait {
        let what = if dry_run { "dry run" } else { "deployment" };
        ctx.print(&created.raw, || {
            println!("{what} {id} started (version {})", created.data.version)
        });
        return Ok(());
    }
    let total = u64::try_from(created.data.tenants_total).unwrap_or(0);
    let finished = follow(ctx, id, total).await?;
    ctx.print(&finished.raw, || print_results(&finished.data));
    let status = finished.data.summary.status;
    if status != DeploymentStatus::Completed {
        anyhow::bail!("deployment {id} finished {status}");
    }
    Ok(())
}

/// Polls until the deployment ends, drawing a progress bar on a terminal.
async fn follow(ctx: &Context, id: &str, total: u64) -> anyhow::Result<Reply<DeploymentDetail>> {
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
        let reply = ctx.client.get_deployment(id).await?;
        let d = &reply.data.summary;
        let done = d.tenants_completed + d.tenants_failed;
        if let Some(bar) = &bar {
            bar.set_position(u64::try_from(done).unwrap_or(0));
            bar.set_message(format!("({} failed)", d.tenants_failed));
        }
        if d.status.is_final() {
            if let Some(bar) = bar {
                bar.finish_and_clear();
            }
            return Ok(reply);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A deployment's status, marked when it was a dry run (tried, rolled back, nothing changed).
pub fn status_text(status: impl std::fmt::Display, dry_run: bool) -> String {
    if dry_run {
        format!("{status} (dry run)")
    } else {
        status.to_string()
    }
}

fn print_results(detail: &DeploymentDetail) {
    let d = &detail.summary;
    output::fields(&[
        ("deployment", &d.id),
        ("blueprint", &d.blueprint_name),
        ("version", &d.version.to_string()),
        ("status", &status_text(d.status, d.dry_run)),
        (
            "tenants",
            &format!(
                "{} done, {} failed of {}",
                d.tenants_completed, d.tenants_failed, d.tenants_total
            ),
        ),
    ]);
    let rows: Vec<Vec<String>> = detail
        .results
        .iter()
        .filter(|r| r.status == TargetStatus::Failed)
        .map(|r| vec![r.tenant_id.clone(), r.error.clone().unwrap_or_default()])
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
    let (tenant_id, all_tenants) = match (args.tenant, args.all) {
        (Some(t), false) => (Some(t), None),
        (None, true) => (None, Some(true)),
        _ => anyhow::bail!("give --tenant NAME or --all"),
    };
    let body = AdminQuery {
        blueprint: args.blueprint,
        query: args.sql.into(),
        tenant_id,
        all_tenants,
    };
    let reply = ctx.client.admin_query(&body).await?;
    ctx.print(&reply.raw, || match &reply.data {
        AdminAnswer::One(one) => print_rows(&one.tenant_id, None, &one.rows),
        AdminAnswer::All(all) => {
            for o in &all.results {
                let rows = Rows {
                    columns: o.columns.clone().unwrap_or_default(),
                    rows: o.rows.clone().unwrap_or_default(),
                    row_count: o.row_count.unwrap_or(0),
                    truncated: o.truncated.unwrap_or(false),
                };
                print_rows(&o.tenant_id, o.error.as_deref(), &rows);
            }
        }
    });
    Ok(())
}

/// One tenant's answer: its error, or its rows as a table and their count.
fn print_rows(tenant_id: &str, error: Option<&str>, r: &Rows) {
    println!("{tenant_id}");
    if let Some(e) = error {
        println!("  error: {}", crate::hints::for_cli(e));
        return;
    }
    let table = r
        .rows
        .iter()
        .map(|row| {
            row.iter()
                .map(|v| match v {
                    Value::Null => "NULL".into(),
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect()
        })
        .collect();
    if !r.columns.is_empty() {
        output::table(
            &r.columns.iter().map(String::as_str).collect::<Vec<_>>(),
            table,
        );
    }
    println!("  {} row(s)", r.row_count);
}
