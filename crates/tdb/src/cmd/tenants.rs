//! `tdb tenants …`: create tenants from blueprints, inspect them, and move them through the
//! trash, suspension and restore.

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
    /// Restore a tenant from the trash
    Restore { name: String },
    /// Suspend a tenant (its connections are refused)
    Suspend { name: String },
    /// Resume a suspended tenant
    Resume { name: String },
    /// The deployments that touched a tenant
    Deployments { name: String },
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
                            .map(|d| format!("{} v{}", text(&d["blueprint"]), d["version"]))
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
                        "  {} v{} L{}: {}",
                        text(&d["blueprint"]),
                        d["version"],
                        d["isolation_level"],
                        text(&d["connection_string"])
                    );
                }
            });
        }
        TenantsCommand::Delete { name, hard } => {
            let reply = c.delete_tenant(&name, hard).await?;
            ctx.print(&reply.raw, || println!("{}", text(&reply.raw["message"])));
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
        TenantsCommand::Restore { name } => run_action(ctx, &name, "restore").await?,
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
                            text(&d["status"]),
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
async fn run_action(ctx: &Context, name: &str, action: &str) -> anyhow::Result<()> {
    let reply = ctx.client.tenant_action(name, action).await?;
    ctx.print(&reply.raw, || println!("{}", text(&reply.raw["message"])));
    Ok(())
}
