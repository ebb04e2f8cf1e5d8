//! `tdb invitations create`: a single-use code with which someone may sign up on a server whose
//! sign-up is by invitation.

use tdb_client::CreateInvitation;

use super::Context;
use crate::output;

#[derive(Debug, clap::Subcommand)]
pub enum InvitationsCommand {
    /// Make an invitation (its code is printed once); needs a project-wide admin key
    Create {
        /// Hours until the code expires, 1 to 720 [default: 168]
        #[arg(long)]
        expires_in_hours: Option<i64>,
    },
}

pub async fn run(ctx: &Context, command: InvitationsCommand) -> anyhow::Result<()> {
    match command {
        InvitationsCommand::Create { expires_in_hours } => {
            let reply = ctx
                .client
                .create_invitation(&CreateInvitation { expires_in_hours })
                .await?;
            let d = &reply.data;
            ctx.print(&reply.raw, || {
                output::fields(&[
                    ("id", &d.id),
                    ("invite_code", &d.invite_code),
                    ("expires_at", &tdb_client::wire_time(&d.expires_at)),
                ]);
                println!(
                    "\nGive the code to the person you invite (tdb signup --invite-code ...): \
                     it works once and is not shown again."
                );
            });
        }
    }
    Ok(())
}
