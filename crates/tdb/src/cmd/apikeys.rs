//! `tdb apikeys list|create|delete` for the current project.

use tdb_client::CreateApiKey;

use super::Context;
use crate::output;

#[derive(Debug, clap::Subcommand)]
pub enum ApikeysCommand {
    /// List the project's keys (never their secrets) and when each expires
    List,
    /// Create a key (printed once)
    Create {
        #[arg(long)]
        name: Option<String>,
        /// admin, write or read [default: admin]
        #[arg(long)]
        role: Option<String>,
        /// project, workspace or tenant [default: project]
        #[arg(long)]
        scope_type: Option<String>,
        /// Comma-separated workspace or tenant names the key is limited to
        #[arg(long, value_delimiter = ',')]
        scope_values: Option<Vec<String>>,
    },
    /// Revoke a key by id
    Delete { id: String },
}

pub async fn run(ctx: &Context, command: ApikeysCommand) -> anyhow::Result<()> {
    let c = &ctx.client;
    match command {
        ApikeysCommand::List => {
            let reply = c.list_api_keys().await?;
            ctx.print(&reply.raw, || {
                let rows = reply
                    .data
                    .api_keys
                    .iter()
                    .map(|k| {
                        vec![
                            k.id.clone(),
                            k.name.clone(),
                            format!("{}…", k.prefix),
                            k.role.to_string(),
                            scope(k.scope_type.as_str(), &k.scope_values),
                            k.last_used_at
                                .as_ref()
                                .map_or_else(|| "never".into(), tdb_client::wire_time),
                            k.expires_at
                                .as_ref()
                                .map_or_else(|| "never".into(), tdb_client::wire_time),
                        ]
                    })
                    .collect();
                output::table(
                    &[
                        "ID",
                        "NAME",
                        "PREFIX",
                        "ROLE",
                        "SCOPE",
                        "LAST USED",
                        "EXPIRES",
                    ],
                    rows,
                );
            });
        }
        ApikeysCommand::Create {
            name,
            role,
            scope_type,
            scope_values,
        } => {
            let req = CreateApiKey {
                name,
                role,
                scope_type,
                scope_values,
            };
            let reply = c.create_api_key(&req).await?;
            let d = &reply.data;
            ctx.print(&reply.raw, || {
                output::fields(&[
                    ("id", &d.key.id),
                    ("role", d.key.role.as_str()),
                    (
                        "scope",
                        &scope(d.key.scope_type.as_str(), &d.key.scope_values),
                    ),
                    ("api_key", &d.api_key),
                ]);
                println!("\nSave the API key: it is not shown again.");
            });
        }
        ApikeysCommand::Delete { id } => {
            let reply = c.revoke_api_key(&id).await?;
            ctx.print(&reply.raw, || println!("{}", reply.data.message));
        }
    }
    Ok(())
}

fn scope(kind: &str, values: &[String]) -> String {
    if values.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}: {}", values.join(","))
    }
}
