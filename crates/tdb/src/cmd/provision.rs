//! `tdb provision create|list|delete`: PostgreSQL databases provisioned on the shared server,
//! each a schema and login role of its own, reachable through tdb's PostgreSQL proxy.

use super::Context;
use crate::output::{self, text};

#[derive(Debug, clap::Subcommand)]
pub enum ProvisionCommand {
    /// Provision a database (prints its connection string, once)
    Create {
        /// A display name, 1 to 200 characters
        name: String,
    },
    /// List provisioned databases and the account's limit
    List,
    /// Drop a provisioned database: its schema, all its data and its role (cannot be undone)
    Delete {
        /// The id from `tdb provision list`
        id: String,
    },
}

pub async fn run(ctx: &Context, command: ProvisionCommand) -> anyhow::Result<()> {
    let c = &ctx.client;
    match command {
        ProvisionCommand::Create { name } => {
            let reply = c.provision(&name).await?;
            let d = &reply.raw["data"];
            ctx.print(&reply.raw, || {
                println!("database '{}' is {}", text(&d["name"]), text(&d["status"]));
                output::fields(&[
                    ("id", &text(&d["id"])),
                    ("connection_id", &text(&d["connection_id"])),
                    ("schema", &text(&d["schema_name"])),
                    ("created", &text(&d["created_at"])),
                ]);
                println!("\n  {}", text(&d["connection_string"]));
                println!("\nSave the connection string: it is shown once, and never again.");
            });
        }
        ProvisionCommand::List => {
            let reply = c.list_provisioned().await?;
            let d = &reply.raw["data"];
            ctx.print(&reply.raw, || {
                let rows = d["databases"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|db| {
                        vec![
                            text(&db["id"]),
                            text(&db["name"]),
                            text(&db["schema_name"]),
                            text(&db["status"]),
                            text(&db["connection_id"]),
                            text(&db["created_at"]),
                        ]
                    })
                    .collect();
                output::table(
                    &["ID", "NAME", "SCHEMA", "STATUS", "CONNECTION", "CREATED"],
                    rows,
                );
                println!("{} of {} databases", d["count"], d["limit"]);
            });
        }
        ProvisionCommand::Delete { id } => {
            let reply = c.delete_provisioned(&id).await?;
            let d = &reply.raw["data"];
            ctx.print(&reply.raw, || {
                println!("database {} is {}", text(&d["id"]), text(&d["status"]));
            });
        }
    }
    Ok(())
}
