//! `tdb blueprints list|get|versions`.

use super::Context;
use crate::output;

#[derive(Debug, clap::Subcommand)]
pub enum BlueprintsCommand {
    /// List blueprints
    List,
    /// Show a blueprint and the DDL of its current version
    Get { name: String },
    /// List a blueprint's deployed versions
    Versions { name: String },
}

pub async fn run(ctx: &Context, command: BlueprintsCommand) -> anyhow::Result<()> {
    let c = &ctx.client;
    match command {
        BlueprintsCommand::List => {
            let reply = c.list_blueprints().await?;
            ctx.print(&reply.raw, || {
                let rows = reply
                    .data
                    .blueprints
                    .iter()
                    .map(|b| {
                        vec![
                            b.name.clone(),
                            b.database.to_string(),
                            b.current_version.to_string(),
                            b.tenant_count.to_string(),
                        ]
                    })
                    .collect();
                output::table(&["NAME", "DATABASE", "VERSION", "TENANTS"], rows);
            });
        }
        BlueprintsCommand::Get { name } => {
            let reply = c.get_blueprint(&name).await?;
            let b = &reply.data;
            ctx.print(&reply.raw, || {
                output::fields(&[
                    ("blueprint", &b.item.name),
                    ("database", b.item.database.as_str()),
                    ("version", &b.item.current_version.to_string()),
                    ("tenants", &b.item.tenant_count.to_string()),
                ]);
                for statement in &b.schema {
                    println!("{statement};");
                }
            });
        }
        BlueprintsCommand::Versions { name } => {
            let reply = c.blueprint_versions(&name).await?;
            ctx.print(&reply.raw, || {
                let rows = reply
                    .data
                    .versions
                    .iter()
                    .map(|v| {
                        vec![
                            v.version.to_string(),
                            v.ddl_count.to_string(),
                            tdb_client::wire_time(&v.deployed_at),
                        ]
                    })
                    .collect();
                output::table(&["VERSION", "DDL", "DEPLOYED"], rows);
            });
        }
    }
    Ok(())
}
