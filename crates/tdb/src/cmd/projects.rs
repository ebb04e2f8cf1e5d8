//! `tdb projects list|create|switch|delete|rotate-password|backup-policy`.

use super::Context;
use crate::output;

#[derive(Debug, clap::Subcommand)]
pub enum ProjectsCommand {
    /// List the account's projects
    List,
    /// Create a project (prints its API key and proxy password once)
    Create { name: String },
    /// Switch to a project (id or name): mints a key for it (it expires, 30 days by default) and
    /// saves it
    Switch { project: String },
    /// Delete a project and everything in it
    Delete { project: String },
    /// Rotate a project's proxy password (prints the new one once)
    RotatePassword { project: String },
    /// Show a project's backup policy, or change it with any of the flags
    BackupPolicy {
        project: String,
        /// Daily scheduled backups on or off
        #[arg(long)]
        schedule_enabled: Option<bool>,
        /// When the daily backups run, UTC: HH:MM or HH:MM:SS
        #[arg(long)]
        daily_at: Option<String>,
        /// Backups kept per tenant database
        #[arg(long)]
        keep_count: Option<i64>,
        /// Backups older than this many days are deleted
        #[arg(long)]
        keep_days: Option<i64>,
        /// Manual backup requests per hour
        #[arg(long)]
        hourly_limit: Option<i64>,
    },
}

pub async fn run(ctx: &Context, command: ProjectsCommand) -> anyhow::Result<()> {
    let c = &ctx.client;
    match command {
        ProjectsCommand::BackupPolicy {
            project,
            schedule_enabled,
            daily_at,
            keep_count,
            keep_days,
            hourly_limit,
        } => {
            let patch = tdb_client::backups::PolicyPatch {
                schedule_enabled,
                daily_at,
                keep_count,
                keep_days,
                hourly_limit,
            };
            let reply = if is_empty(&patch) {
                c.backup_policy(&project).await?
            } else {
                c.update_backup_policy(&project, &patch).await?
            };
            let p = &reply.data;
            ctx.print(&reply.raw, || {
                output::fields(&[
                    ("project", &p.project_id),
                    ("daily backups", &p.schedule_enabled.to_string()),
                    ("daily at (UTC)", &p.daily_at),
                    (
                        "keep",
                        &format!("{} backups, {} days", p.keep_count, p.keep_days),
                    ),
                    ("manual backups per hour", &p.hourly_limit.to_string()),
                ]);
            });
        }
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
                            tdb_client::wire_time(&p.created_at),
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
                    "Switched to '{}' ({}); its new key is saved in {} and expires {}.",
                    reply.data.name,
                    reply.data.project_id,
                    saved.display(),
                    reply
                        .data
                        .expires_at
                        .as_ref()
                        .map_or_else(|| "never".into(), tdb_client::wire_time)
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

/// True when the patch changes nothing (then the command shows the policy instead).
fn is_empty(patch: &tdb_client::backups::PolicyPatch) -> bool {
    let tdb_client::backups::PolicyPatch {
        schedule_enabled,
        daily_at,
        keep_count,
        keep_days,
        hourly_limit,
    } = patch;
    schedule_enabled.is_none()
        && daily_at.is_none()
        && keep_count.is_none()
        && keep_days.is_none()
        && hourly_limit.is_none()
}
