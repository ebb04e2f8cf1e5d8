//! `tdb provision create|list|delete`: PostgreSQL databases provisioned on the shared server,
//! each a schema and login role of its own, reachable through tdb's PostgreSQL proxy.

use tdb_client::wire_time;

use super::Context;
use crate::output;

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
            let d = &reply.data;
            ctx.print(&reply.raw, || {
                println!("database '{}' is {}", d.item.name, d.item.status);
                output::fields(&[
                    ("id", &d.item.id),
                    ("connection_id", &d.item.connection_id),
                    ("schema", &d.item.schema_name),
                    ("created", &wire_time(&d.item.created_at)),
                ]);
                println!("\n  {}", d.connection_string);
                println!("\nSave the connection string: it is shown once, and never again.");
            });
        }
        ProvisionCommand::List => {
            let reply = c.list_provisioned().await?;
            let d = &reply.data;
            ctx.print(&reply.raw, || {
                let rows = d
                    .databases
                    .iter()
                    .map(|db| {
                        vec![
                            db.id.clone(),
                            db.name.clone(),
                            db.schema_name.clone(),
                            db.status.to_string(),
                            db.connection_id.clone(),
                            wire_time(&db.created_at),
                        ]
                    })
                    .collect();
                output::table(
                    &["ID", "NAME", "SCHEMA", "STATUS", "CONNECTION", "CREATED"],
                    rows,
                );
                println!("{} of {} databases", d.count, d.limit);
            });
        }
        ProvisionCommand::Delete { id } => {
            let reply = c.delete_provisioned(&id).await?;
            let d = &reply.data;
            ctx.print(&reply.raw, || {
                println!("database {} is {}", d.id, d.status);
            });
        }
    }
    Ok(())
}
