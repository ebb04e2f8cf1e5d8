//! `tdb projects list|create|switch|delete|rotate-password`.

use super::Context;
use crate::output;

#[derive(Debug, clap::Subcommand)]
pub enum ProjectsCommand {
    /// List the account's projects
    List,
    /// Create a project (prints its API key and proxy password once)
    Create { name: String },
    /// Switch to a project (id or name): mints a key for it and saves it
    Switch { project: String },
    /// Delete a project and everything in it
    Delete { project: String },
    /// Rotate a project's proxy password (prints the new one once)
    RotatePassword { project: String },
}

pub async fn run(ctx: &Context, command: ProjectsCommand) -> anyhow::Result<()> {
    let c = &ctx.client;
    match command {
        ProjectsCommand::List => {
            let reply = c.list_projects().await?;
            ctx.print(&reply.raw, || {
                let rows = reply
                    .data
                    .projects
                    .iter()
                    .map(|p| {
                        vec![
                            p.project_id.clone(),
                            p.name.clone(),
                            p.api_key_count.to_string(),
                            p.created_at.clone(),
                        ]
                    })
                    .collect();
                output::table(&["PROJECT ID", "NAME", "KEYS", "CREATED"], rows);
            });
        }
        ProjectsCommand::Create { name } => {
            let reply = c.create_project(&name).await?;
            let d = &reply.data;
            ctx.print(&reply.raw, || {
                output::fields(&[
                    ("project_id", &d.project_id),
                    ("name", &d.name),
                    ("api_key", &d.api_key),
                    ("proxy_password", &d.proxy_password),
                ]);
                println!("\nSave the API key and proxy password: they are not shown again.");
                println!("Use it with `tdb projects switch {}`.", d.project_id);
            });
        }
        ProjectsCommand::Switch { project } => {
            let reply = c.switch_project(&project).await?;
            let saved = ctx.save_key(&reply.data.api_key)?;
            ctx.print(&reply.raw, || {
                println!(
                    "Switched to '{}' ({}); its new key is saved in {}.",
                    reply.data.name,
                    reply.data.project_id,
                    saved.display()
                );
            });
        }
        ProjectsCommand::Delete { project } => {
            let reply = c.delete_project(&project).await?;
            ctx.print(&reply.raw, || println!("{}", reply.data.message));
        }
        ProjectsCommand::RotatePassword { project } => {
            let reply = c.rotate_proxy_password(&project).await?;
            ctx.print(&reply.raw, || {
                output::fields(&[
                    ("project_id", &reply.data.project_id),
                    ("proxy_password", &reply.data.proxy_password),
                ]);
                println!("\nSave the proxy password: it is not shown again.");
            });
        }
    }
    Ok(())
}
