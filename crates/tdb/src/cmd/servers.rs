//! `tdb servers list|drain|activate`: the database servers tdb places databases on, for the
//! accounts that operate it.

use tdb_core::ServerStatus;

use super::Context;
use crate::output;

#[derive(Debug, clap::Subcommand)]
pub enum ServersCommand {
    /// List every server: role, region, status, tenants, databases and size
    List,
    /// Take a shared server out of placement: it keeps what it holds, new databases go elsewhere
    Drain { name: String },
    /// Put a drained shared server back into placement
    Activate { name: String },
    /// Take a full base backup of a server's WAL archive now (point-in-time recovery)
    Backup { name: String },
}

pub async fn run(ctx: &Context, command: ServersCommand) -> anyhow::Result<()> {
    let reply = match command {
        ServersCommand::Backup { name } => {
            let reply = ctx.client.request_server_backup(&name).await?;
            ctx.print(&reply.raw, || println!("{}", reply.data.message));
            return Ok(());
        }
        ServersCommand::List => ctx.client.list_servers().await?,
        ServersCommand::Drain { name } => {
            ctx.client
                .update_server(&name, ServerStatus::Draining)
                .await?
        }
        ServersCommand::Activate { name } => {
            ctx.client
                .update_server(&name, ServerStatus::Active)
                .await?
        }
    };
    ctx.print(&reply.raw, || {
        let rows = reply
            .data
            .servers
            .iter()
            .map(|s| {
                vec![
                    s.name.clone(),
                    s.role.to_string(),
                    s.region.clone(),
                    s.status.to_string(),
                    s.tenants.to_string(),
                    match s.max_databases {
                        Some(max) => format!("{}/{max}", s.databases),
                        None => s.databases.to_string(),
                    },
                    s.size_bytes.map_or_else(|| "-".into(), human_bytes),
                ]
            })
            .collect();
        output::table(
            &[
                "SERVER",
                "ROLE",
                "REGION",
                "STATUS",
                "TENANTS",
                "DATABASES",
                "SIZE",
            ],
            rows,
        );
    });
    Ok(())
}

fn human_bytes(bytes: i64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(super::human_bytes(512), "512 B");
        assert_eq!(super::human_bytes(7_500_000), "7.2 MiB");
        assert_eq!(super::human_bytes(3 << 30), "3.0 GiB");
    }
}
