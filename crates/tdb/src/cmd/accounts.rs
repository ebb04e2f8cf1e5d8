//! `tdb signup` and `tdb login`: both save a key so later commands need no flags.

use tdb_client::SignupRequest;

use super::{Context, read_password};
use crate::output;

#[derive(Debug, clap::Args)]
pub struct SignupArgs {
    #[arg(long)]
    email: String,
    /// At least 8 characters
    #[arg(long, env = "TDB_PASSWORD", hide_env_values = true)]
    password: Option<String>,
    /// Read the password from the first line of stdin
    #[arg(long, conflicts_with = "password")]
    password_stdin: bool,
    /// Name of the first project [default: My Project]
    #[arg(long)]
    project_name: Option<String>,
    /// Invitation code from an existing account (servers where sign-up is by invitation)
    #[arg(long)]
    invite_code: Option<String>,
}

pub async fn signup(ctx: &Context, args: SignupArgs) -> anyhow::Result<()> {
    let req = SignupRequest {
        email: args.email,
        password: read_password(args.password, args.password_stdin)?,
        project_name: args.project_name,
        invite_code: args.invite_code,
    };
    let reply = ctx.client.signup(&req).await?;
    let saved = ctx.save_key(&reply.data.api_key)?;
    ctx.print(&reply.raw, || {
        output::fields(&[
            ("project_id", &reply.data.project_id),
            ("api_key", &reply.data.api_key),
            ("proxy_password", &reply.data.proxy_password),
        ]);
        println!("\nSave the API key and proxy password: they are not shown again.");
        println!("The API key is saved in {}.", saved.display());
    });
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct LoginArgs {
    #[arg(long)]
    email: String,
    #[arg(long, env = "TDB_PASSWORD", hide_env_values = true)]
    password: Option<String>,
    /// Read the password from the first line of stdin
    #[arg(long, conflicts_with = "password")]
    password_stdin: bool,
    /// Project (id or name) whose key to mint and save [default: keys for every project, the
    /// first one's saved]
    #[arg(long)]
    project: Option<String>,
}

pub async fn login(ctx: &Context, args: LoginArgs) -> anyhow::Result<()> {
    let password = read_password(args.password, args.password_stdin)?;
    // With --project the server mints that project's key alone, and none when it is unknown.
    let reply = ctx
        .client
        .login(&args.email, &password, args.project.as_deref())
        .await?;
    let chosen = reply
        .data
        .projects
        .first()
        .ok_or_else(|| anyhow::anyhow!("this account has no projects"))?;
    let saved = ctx.save_key(&chosen.api_key)?;
    if ctx.json {
        output::json(&reply.raw);
        return Ok(());
    }
    // Every project of the account, read with the new key: the others got no key with --project.
    let all = ctx.client.with_key(&chosen.api_key).list_projects().await?;
    let rows = all
        .data
        .projects
        .iter()
        .map(|p| {
            let mark = if p.project_id == chosen.project_id {
                "*"
            } else {
                ""
            };
            vec![mark.to_string(), p.project_id.clone(), p.name.clone()]
        })
        .collect();
    output::table(&["", "PROJECT ID", "NAME"], rows);
    println!(
        "Logged in; the key of '{}' is saved in {} and expires {}.",
        chosen.name,
        saved.display(),
        chosen
            .expires_at
            .as_ref()
            .map_or_else(|| "never".into(), tdb_client::wire_time)
    );
    Ok(())
}
