//! `tdb tenants …`: create tenants from blueprints, inspect them, and move them through the
//! trash, suspension and restore.

use std::time::Duration;

use serde_json::{Value, json};

use tdb_client::backups::BackupItem;
use tdb_client::isolation::IsolationLevel;
use tdb_client::logs::{LogItem, Metrics};
use tdb_client::tenants::{Behind, DatabaseRequest, MoveRequest, RecoverRequest};
use tdb_client::wire_time;
use tdb_core::{BackupStatus, RecoveryStep, RollbackStep, TenantStatus};

use super::Context;
use crate::output;

#[derive(Debug, clap::Subcommand)]
pub enum TenantsCommand {
    /// List tenants
    List,
    /// Create a tenant with one database per --blueprint (prints its credentials once). A
    /// dedicated (level 2) tenant is answered `provisioning` and followed until it is ready
    Create {
        name: String,
        /// Blueprint to create a database from (repeat for several)
        #[arg(long = "blueprint", required = true)]
        blueprints: Vec<String>,
        /// 1 (shared) or 2 (dedicated: a server of its own)
        #[arg(long, default_value_t = 1)]
        isolation_level: u8,
        /// Region zone (see `GET /regions`) [default: the default region]
        #[arg(long)]
        region: Option<String>,
        /// Return at once while a dedicated server is being made
        #[arg(long)]
        no_wait: bool,
    },
    /// Show a tenant and its databases
    Get { name: String },
    /// Move one database of a tenant to another server while it serves (L1 <-> L2, another
    /// region, another shared server) and follow the move to its end
    Move {
        name: String,
        /// The blueprint whose database moves
        #[arg(long)]
        blueprint: String,
        /// 1 (a shared server) or 2 (a server of its own)
        #[arg(long)]
        isolation_level: u8,
        /// Region zone to move to [default: where it is]
        #[arg(long)]
        region: Option<String>,
        /// With --isolation-level 1: the shared server to move to (see `tdb servers list`)
        #[arg(long)]
        server: Option<String>,
        /// Return at once instead of following the move
        #[arg(long)]
        no_wait: bool,
    },
    /// Recover one database of a tenant to a moment of its past (inside the window `tdb
    /// tenants get` shows as `pitr`) from its server's WAL archive, and follow the recovery to
    /// its end; the original is kept for `recover-undo`
    Recover {
        name: String,
        /// The moment, ISO 8601 with a time zone (e.g. 2026-12-05T10:11:12Z)
        #[arg(long = "to")]
        to: String,
        /// The blueprint whose database goes back (needed when the tenant has several)
        #[arg(long)]
        blueprint: Option<String>,
        /// Return at once instead of following the recovery
        #[arg(long)]
        no_wait: bool,
    },
    /// Undo a tenant's last recovery while its original is kept: the original serves again
    #[command(name = "recover-undo")]
    RecoverUndo {
        name: String,
        /// Return at once instead of following the undo
        #[arg(long)]
        no_wait: bool,
    },
    /// Move a tenant to the trash, or drop it for good with --hard
    Delete {
        name: String,
        #[arg(long)]
        hard: bool,
    },
    /// Restore a tenant from the trash, bringing its databases to their blueprints' current
    /// versions (deployments skip the trash)
    Restore { name: String },
    /// Suspend a tenant (its connections are refused)
    Suspend { name: String },
    /// Resume a suspended tenant
    Resume { name: String },
    /// The deployments that touched a tenant
    Deployments { name: String },
    /// Back up every database of a tenant to the backup store
    Backup {
        name: String,
        /// Return at once instead of waiting for the backup to finish
        #[arg(long)]
        no_wait: bool,
    },
    /// List a tenant's backups, newest first
    Backups { name: String },
    /// A tenant's query log, newest first (oldest first with --follow)
    Logs {
        name: String,
        /// error or slow
        #[arg(long = "type")]
        kind: Option<String>,
        /// 1h, 24h, 7d or 30d
        #[arg(long)]
        since: Option<String>,
        /// Only statements containing this text (case-insensitive)
        #[arg(long)]
        search: Option<String>,
        /// proxy or api
        #[arg(long)]
        source: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Keep printing new statements as they arrive (Ctrl-C to stop)
        #[arg(long)]
        follow: bool,
    },
    /// Totals over a tenant's whole query log: outcomes, sources, mean duration, slow statements
    Stats { name: String },
    /// A tenant's query statistics and latency metrics, with a sparkline
    Metrics {
        name: String,
        /// 1h, 24h, 7d or 30d
        #[arg(long, default_value = "24h")]
        window: String,
        /// hour, day or week [default: hour up to 24h, else day]
        #[arg(long)]
        bucket: Option<String>,
    },
    /// Restore a tenant database from a backup (a safety backup is taken first)
    Rollback {
        name: String,
        /// The exact storage_path from `tdb tenants backups`
        storage_path: String,
        /// Return at once instead of following the restore
        #[arg(long)]
        no_wait: bool,
    },
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
        TenantsCommand::List => list(ctx).await?,
        TenantsCommand::Create {
            name,
            blueprints,
            isolation_level,
            region,
            no_wait,
        } => {
            let level = IsolationLevel::from_number(i64::from(isolation_level))
                .ok_or_else(|| anyhow::anyhow!("--isolation-level must be 1 or 2"))?;
            create(ctx, &name, &blueprints, (level, region), no_wait).await?
        }
        TenantsCommand::Get { name } => get(ctx, &name).await?,
        TenantsCommand::Move {
            name,
            blueprint,
            isolation_level,
            region,
            server,
            no_wait,
        } => {
            let isolation_level = IsolationLevel::from_number(i64::from(isolation_level))
                .ok_or_else(|| anyhow::anyhow!("--isolation-level must be 1 or 2"))?;
            let request = MoveRequest {
                isolation_level,
                blueprint,
                region,
                server,
            };
            move_tenant(ctx, &name, &request, no_wait).await?
        }
        TenantsCommand::Recover {
            name,
            to,
            blueprint,
            no_wait,
        } => {
            let request = RecoverRequest {
                timestamp: to,
                blueprint,
            };
            recover(ctx, &name, &request, no_wait).await?
        }
        TenantsCommand::RecoverUndo { name, no_wait } => recover_undo(ctx, &name, no_wait).await?,
        TenantsCommand::Delete { name, hard } => {
            let reply = c.delete_tenant(&name, hard).await?;
            let message = crate::hints::for_cli(&reply.data.message);
            ctx.print(&reply.raw, || println!("{message}"));
        }
        TenantsCommand::Credential {
            name,
            role,
            blueprint,
        } => {
            let reply = c
                .create_tenant_credential(&name, &role, blueprint.as_deref())
                .await?;
            let r = &reply.data;
            ctx.print(&reply.raw, || {
                println!(
                    "{} credential {} for tenant '{}':",
                    r.role, r.username, r.tenant_id
                );
                println!("  {}", r.connection.connection_string);
                println!("\nSave the connection string: its password is not shown again.");
            });
        }
        TenantsCommand::Backup { name, no_wait } => backup(ctx, &name, no_wait).await?,
        TenantsCommand::Backups { name } => backups(ctx, &name).await?,
        TenantsCommand::Rollback {
            name,
            storage_path,
            no_wait,
        } => rollback(ctx, &name, &storage_path, no_wait).await?,
        TenantsCommand::Logs {
            name,
            kind,
            since,
            search,
            source,
            limit,
            follow,
        } => {
            let mut query = vec![("limit", limit.to_string())];
            for (k, v) in [
                ("type", kind),
                ("since", since),
                ("search", search),
                ("source", source),
            ] {
                if let Some(v) = v {
                    query.push((k, v));
                }
            }
            logs(ctx, &name, &query, follow).await?;
        }
        TenantsCommand::Stats { name } => stats(ctx, &name).await?,
        TenantsCommand::Metrics {
            name,
            window,
            bucket,
        } => {
            let reply = c.tenant_metrics(&name, &window, bucket.as_deref()).await?;
            ctx.print(&reply.raw, || show_metrics(&reply.data));
        }
        TenantsCommand::Restore { name } => {
            let reply = c.restore_tenant(&name).await?;
            let r = &reply.data;
            ctx.print(&reply.raw, || {
                println!("{}", r.message);
                for d in &r.databases {
                    println!("  {} v{}", d.blueprint, d.version);
                    print_behind(d.version, d.blueprint_version, d.behind.as_ref());
                }
            });
        }
        TenantsCommand::Suspend { name } => run_action(ctx, &name, "suspend").await?,
        TenantsCommand::Resume { name } => run_action(ctx, &name, "resume").await?,
        TenantsCommand::Deployments { name } => history(ctx, &name).await?,
    }
    Ok(())
}

async fn list(ctx: &Context) -> anyhow::Result<()> {
    let reply = ctx.client.list_tenants().await?;
    ctx.print(&reply.raw, || {
        let rows = reply
            .data
            .tenants
            .iter()
            .map(|t| {
                let dbs: Vec<String> = t
                    .databases
                    .iter()
                    .map(|d| match d.behind {
                        Some(_) => format!(
                            "{} v{} (behind v{})",
                            d.blueprint, d.version, d.blueprint_version
                        ),
                        None => format!("{} v{}", d.blueprint, d.version),
                    })
                    .collect();
                vec![
                    t.tenant_id.clone(),
                    t.status.to_string(),
                    dbs.join(", "),
                    wire_time(&t.created_at),
                ]
            })
            .collect();
        output::table(&["TENANT", "STATUS", "DATABASES", "CREATED"], rows);
    });
    Ok(())
}

async fn create(
    ctx: &Context,
    name: &str,
    blueprints: &[String],
    (level, region): (IsolationLevel, Option<String>),
    no_wait: bool,
) -> anyhow::Result<()> {
    let databases: Vec<DatabaseRequest> = blueprints
        .iter()
        .map(|b| DatabaseRequest {
            blueprint: b.clone(),
            isolation_level: Some(level),
            region: region.clone(),
        })
        .collect();
    let reply = ctx.client.create_tenant(name, &databases).await?;
    let r = &reply.data;
    ctx.print(&reply.raw, || {
        println!("tenant '{}' is {}", r.tenant_id, r.status);
        for d in &r.databases {
            match &d.connection {
                Some(c) => println!(
                    "  {} (v{}): {}",
                    d.blueprint, d.version, c.connection_string
                ),
                None => println!(
                    "  {} (L{}, {}): its server is being made",
                    d.blueprint, d.isolation_level, d.region
                ),
            }
        }
        if r.databases.iter().any(|d| d.connection.is_some()) {
            println!("\nSave the connection strings: their passwords are not shown again.");
        }
    });
    if r.status == TenantStatus::Provisioning && !no_wait {
        wait_until_ready(ctx, name).await?;
    }
    Ok(())
}

async fn move_tenant(
    ctx: &Context,
    name: &str,
    request: &MoveRequest,
    no_wait: bool,
) -> anyhow::Result<()> {
    let reply = ctx.client.move_tenant(name, request).await?;
    let started = &reply.data;
    if no_wait {
        ctx.print(&reply.raw, || {
            println!("{} (move {})", started.message, started.move_id)
        });
        return Ok(());
    }
    if !ctx.json {
        println!(
            "moving '{}' of tenant '{name}': L{} -> L{}{}",
            started.blueprint,
            started.from,
            started.to,
            started
                .to_server
                .as_ref()
                .map(|s| format!(" (onto {s})"))
                .unwrap_or_default()
        );
    }
    let mut shown = 0;
    loop {
        let t = ctx.client.get_tenant(name).await?;
        let Some(m) = t.data.last_move.filter(|m| m.move_id == started.move_id) else {
            anyhow::bail!("the move of tenant '{name}' is no longer recorded");
        };
        if !ctx.json {
            for line in m.history.iter().skip(shown) {
                println!("  {line}");
            }
        }
        shown = m.history.len();
        match m.step {
            tdb_core::MoveStep::Completed => {
                let value = serde_json::to_value(&m)?;
                ctx.print(&value, || {
                    println!(
                        "moved by {}; queries held {} ms",
                        m.method.map_or("-".into(), |x| x.to_string()),
                        m.held_ms.unwrap_or(0)
                    )
                });
                return Ok(());
            }
            tdb_core::MoveStep::Failed => anyhow::bail!(
                "the move failed and tenant '{name}' stays where it was: {}",
                m.error.unwrap_or_default()
            ),
            _ => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

async fn recover(
    ctx: &Context,
    name: &str,
    request: &RecoverRequest,
    no_wait: bool,
) -> anyhow::Result<()> {
    let reply = ctx.client.recover_tenant(name, request).await?;
    let started = &reply.data;
    if no_wait {
        ctx.print(&reply.raw, || {
            println!("{} (recovery {})", started.message, started.recovery_id)
        });
        return Ok(());
    }
    if !ctx.json {
        println!("{}", started.message);
    }
    follow_recovery(ctx, name, &started.recovery_id, &[RecoveryStep::Completed]).await
}

async fn recover_undo(ctx: &Context, name: &str, no_wait: bool) -> anyhow::Result<()> {
    let reply = ctx.client.recover_undo(name).await?;
    if no_wait {
        ctx.print(&reply.raw, || println!("{}", reply.data.message));
        return Ok(());
    }
    if !ctx.json {
        println!("{}", reply.data.message);
    }
    let t = ctx.client.get_tenant(name).await?;
    let id = t
        .data
        .last_recovery
        .map(|r| r.recovery_id)
        .ok_or_else(|| anyhow::anyhow!("tenant '{name}' has no recovery recorded"))?;
    follow_recovery(ctx, name, &id, &[RecoveryStep::Undone]).await
}

/// Prints a recovery's history as it grows until it reaches one of `end` with its tenant
/// ready; fails when it failed (or its undo did not happen).
async fn follow_recovery(
    ctx: &Context,
    name: &str,
    id: &str,
    end: &[RecoveryStep],
) -> anyhow::Result<()> {
    let mut shown = 0;
    loop {
        let t = ctx.client.get_tenant(name).await?;
        let status = t.data.status;
        let Some(r) = t.data.last_recovery.filter(|r| r.recovery_id == id) else {
            anyhow::bail!("the recovery of tenant '{name}' is no longer recorded");
        };
        if !ctx.json {
            for line in r.history.iter().skip(shown) {
                println!("  {line}");
            }
        }
        shown = r.history.len();
        if r.step == RecoveryStep::Failed {
            anyhow::bail!(
                "the recovery failed and tenant '{name}' keeps its data: {}",
                r.error.unwrap_or_default()
            );
        }
        if status == TenantStatus::Ready {
            if end.contains(&r.step) {
                let value = serde_json::to_value(&r)?;
                ctx.print(&value, || match r.step {
                    RecoveryStep::Undone => println!("tenant '{name}' is back on its original"),
                    _ => println!(
                        "tenant '{name}' is at {}; queries held {} ms",
                        wire_time(&r.target_timestamp),
                        r.held_ms.unwrap_or(0)
                    ),
                });
                return Ok(());
            }
            if r.step == RecoveryStep::Completed && end.contains(&RecoveryStep::Undone) {
                anyhow::bail!(
                    "the undo did not happen: {}",
                    r.history.last().cloned().unwrap_or_default()
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Follows a tenant being made until it is ready (or its creation was undone).
async fn wait_until_ready(ctx: &Context, name: &str) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        match ctx.client.get_tenant(name).await {
            Ok(reply) if reply.data.status == TenantStatus::Provisioning => {
                if !ctx.json {
                    eprint!("\rprovisioning … {}s", started.elapsed().as_secs());
                }
            }
            Ok(reply) => {
                if !ctx.json {
                    eprintln!();
                    println!(
                        "tenant '{name}' is {}; mint a login with `tdb tenants credential \
                         {name} --role write`",
                        reply.data.status
                    );
                }
                return Ok(());
            }
            Err(tdb_client::ClientError::Api { status: 404, .. }) => {
                anyhow::bail!(
                    "tenant '{name}' was not created: its server could not be made (see the \
                     server's log)"
                )
            }
            Err(e) => return Err(e.into()),
        }
    }
}

async fn get(ctx: &Context, name: &str) -> anyhow::Result<()> {
    let reply = ctx.client.get_tenant(name).await?;
    let r = &reply.data;
    ctx.print(&reply.raw, || {
        output::fields(&[
            ("tenant", &r.tenant_id),
            ("status", &r.status.to_string()),
            ("created", &wire_time(&r.created_at)),
        ]);
        for d in &r.databases {
            println!(
                "  {} v{} {}: {}",
                d.blueprint, d.version, d.isolation_level, d.connection_string
            );
            print_behind(d.version, d.blueprint_version, d.behind.as_ref());
        }
        match (&r.pitr, &r.pitr_unavailable) {
            (Some(p), _) => println!(
                "pitr: recoverable from {} to {}",
                wire_time(&p.from),
                wire_time(&p.to)
            ),
            (None, Some(why)) => println!("pitr: nothing recoverable yet ({why})"),
            (None, None) => {}
        }
        if let Some(u) = &r.recovery_undo {
            println!(
                "recovery undo: possible for {} (until {}): {}",
                u.expires_in,
                wire_time(&u.expires_at),
                u.command
            );
        }
    });
    Ok(())
}

async fn backups(ctx: &Context, name: &str) -> anyhow::Result<()> {
    let reply = ctx.client.tenant_backups(name).await?;
    ctx.print(&reply.raw, || {
        let rows = reply
            .data
            .backups
            .iter()
            .map(|b| {
                vec![
                    b.kind.to_string(),
                    b.date.clone(),
                    b.status.to_string(),
                    size(b).map_or_else(|| "-".into(), human_bytes),
                    b.storage_path.clone(),
                ]
            })
            .collect();
        output::table(&["TYPE", "DATE", "STATUS", "SIZE", "STORAGE PATH"], rows);
    });
    Ok(())
}

/// A backup's size in bytes, when it has one.
fn size(b: &BackupItem) -> Option<u64> {
    b.size_bytes.and_then(|n| u64::try_from(n).ok())
}

async fn stats(ctx: &Context, name: &str) -> anyhow::Result<()> {
    let reply = ctx.client.tenant_log_stats(name).await?;
    let r = &reply.data;
    ctx.print(&reply.raw, || {
        output::fields(&[
            ("tenant", &r.tenant_id),
            ("queries", &r.total_queries.to_string()),
            ("successful", &r.successful.to_string()),
            ("failed", &r.failed.to_string()),
            (
                "by source",
                &format!("proxy {}, api {}", r.by_source.proxy, r.by_source.api),
            ),
            (
                "mean duration",
                &format!("{} ms", json_number(r.avg_duration_ms)),
            ),
            (
                "slow",
                &format!("{} (>= {} ms)", r.slow_queries, r.slow_threshold_ms),
            ),
        ]);
    });
    Ok(())
}

/// A number as the API's JSON wrote it (`2.0` stays `2.0`).
fn json_number(n: f64) -> String {
    Value::from(n).to_string()
}

async fn history(ctx: &Context, name: &str) -> anyhow::Result<()> {
    let reply = ctx.client.tenant_deployments(name).await?;
    ctx.print(&reply.raw, || {
        let rows = reply
            .data
            .deployments
            .iter()
            .map(|d| {
                vec![
                    d.deployment_id.clone(),
                    d.blueprint_name.clone(),
                    d.version.to_string(),
                    super::deployments::status_text(d.status, d.dry_run),
                    d.duration.clone().unwrap_or_else(|| "-".into()),
                    d.error.clone().unwrap_or_default(),
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
    Ok(())
}

/// For a database behind its blueprint: where it is, why, and the command that brings it
/// forward.
fn print_behind(version: i32, blueprint_version: i32, behind: Option<&Behind>) {
    let Some(behind) = behind else {
        return;
    };
    println!(
        "    behind: version {version} of {blueprint_version}{}",
        behind
            .error
            .as_deref()
            .map(|e| format!(" (last deployment failed: {e})"))
            .unwrap_or_default()
    );
    println!("    bring it forward: {}", behind.cli);
}

/// Suspend and resume share one shape.
async fn run_action(ctx: &Context, name: &str, action: &str) -> anyhow::Result<()> {
    let reply = ctx.client.tenant_action(name, action).await?;
    ctx.print(&reply.raw, || println!("{}", reply.data.message));
    Ok(())
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Starts a backup and, unless told not to, waits until every path is completed or failed.
async fn backup(ctx: &Context, name: &str, no_wait: bool) -> anyhow::Result<()> {
    let started = ctx.client.backup_tenant(name).await?;
    let paths = &started.data.paths;
    if no_wait {
        ctx.print(&started.raw, || {
            println!("{}", started.data.message);
            for p in paths {
                println!("  {p}");
            }
        });
        return Ok(());
    }
    let spinner = (!ctx.json).then(|| {
        let s = indicatif::ProgressBar::new_spinner();
        s.set_message(format!("backing up tenant '{name}'"));
        s.enable_steady_tick(Duration::from_millis(120));
        s
    });
    let mine = loop {
        let list = ctx.client.tenant_backups(name).await?.data;
        let mine: Vec<BackupItem> = list
            .backups
            .into_iter()
            .filter(|b| paths.contains(&b.storage_path))
            .collect();
        if mine.iter().all(|b| b.status != BackupStatus::Pending) {
            break mine;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    if let Some(s) = spinner {
        s.finish_and_clear();
    }
    let out = json!({"tenant_id": name, "backups": mine});
    ctx.print(&out, || {
        for b in &mine {
            match b.status {
                BackupStatus::Completed => {
                    println!("{} ({})", b.storage_path, human_bytes(size(b).unwrap_or(0)))
                }
                _ => println!(
                    "{} failed: {}",
                    b.storage_path,
                    b.error.as_deref().unwrap_or("")
                ),
            }
        }
    });
    if let Some(failed) = mine.iter().find(|b| b.status != BackupStatus::Completed) {
        anyhow::bail!("backup {} failed", failed.storage_path);
    }
    Ok(())
}

/// Starts a rollback and, unless told not to, follows it with a progress bar over the bytes
/// restored until the tenant is ready again.
async fn rollback(ctx: &Context, name: &str, path: &str, no_wait: bool) -> anyhow::Result<()> {
    let started = ctx.client.rollback_tenant(name, path).await?;
    let id = &started.data.rollback_id;
    if no_wait {
        ctx.print(&started.raw, || println!("{}", started.data.message));
        return Ok(());
    }
    let bar = (!ctx.json).then(|| {
        let bar = indicatif::ProgressBar::new(0);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{msg:12} {bar:40} {bytes}/{total_bytes} {bytes_per_sec}",
        ) {
            bar.set_style(style);
        }
        bar
    });
    let last = loop {
        let t = ctx.client.get_tenant(name).await?.data;
        let Some(r) = t.last_rollback.filter(|r| &r.rollback_id == id) else {
            anyhow::bail!("tenant '{name}' no longer shows rollback {id}");
        };
        if let Some(bar) = &bar {
            bar.set_length(u64::try_from(r.bytes_total).unwrap_or(0));
            bar.set_position(u64::try_from(r.bytes_done).unwrap_or(0));
            bar.set_message(r.step.to_string());
        }
        if matches!(r.step, RollbackStep::Completed | RollbackStep::Failed) {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let error = last.error.as_deref().unwrap_or("");
    ctx.print(&serde_json::to_value(&last)?, || {
        if last.step == RollbackStep::Completed {
            println!("tenant '{name}' rolled back to {path}");
        } else {
            println!("rollback of tenant '{name}' failed; it keeps its data: {error}");
        }
    });
    if last.step != RollbackStep::Completed {
        anyhow::bail!("rollback failed: {error}");
    }
    Ok(())
}

fn log_rows(logs: &[LogItem]) -> Vec<Vec<String>> {
    logs.iter()
        .map(|l| {
            let query: String = l.query.split_whitespace().collect::<Vec<_>>().join(" ");
            let query = match query.char_indices().nth(80) {
                Some((i, _)) => format!("{}…", &query[..i]),
                None => query,
            };
            vec![
                wire_time(&l.created_at),
                l.source.clone(),
                if l.success {
                    "ok".into()
                } else {
                    format!("error {}", l.error_code.as_deref().unwrap_or(""))
                },
                format!("{:.2}", l.duration_ms),
                query,
            ]
        })
        .collect()
}

const LOG_HEADERS: [&str; 5] = ["TIME", "SOURCE", "RESULT", "MS", "QUERY"];

/// Prints statements as they arrive: one JSON object a line with `--json`, else table rows.
fn emit(json: bool, entries: &[LogItem]) -> anyhow::Result<()> {
    if json {
        for e in entries {
            println!("{}", serde_json::to_string(e)?);
        }
    } else {
        for row in log_rows(entries) {
            println!("{}", row.join("  "));
        }
    }
    Ok(())
}

/// Prints a page of the log; with `follow`, then polls for newer statements every second.
async fn logs(
    ctx: &Context,
    name: &str,
    query: &[(&str, String)],
    follow: bool,
) -> anyhow::Result<()> {
    let reply = ctx.client.tenant_logs(name, query).await?;
    if !follow {
        ctx.print(&reply.raw, || {
            output::table(&LOG_HEADERS, log_rows(&reply.data.logs));
            if reply.data.has_more {
                println!("(more: raise --limit or narrow the filters)");
            }
        });
        return Ok(());
    }
    let mut page = reply.data.logs;
    page.reverse();
    // Ids grow in the order records were written, which is not quite the order they started
    // in (a long statement is written when it ends): the newest id seen marks what is shown.
    let newest_id = |entries: &[LogItem]| entries.iter().map(|l| l.id).max();
    let mut last = newest_id(&page).unwrap_or(0);
    emit(ctx.json, &page)?;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut q: Vec<(&str, String)> = query
            .iter()
            .filter(|(k, _)| *k != "limit")
            .cloned()
            .collect();
        q.push(("limit", "1000".into()));
        let reply = ctx.client.tenant_logs(name, &q).await?;
        let mut fresh: Vec<LogItem> = reply
            .data
            .logs
            .into_iter()
            .filter(|l| l.id > last)
            .collect();
        fresh.reverse();
        if let Some(id) = newest_id(&fresh) {
            last = last.max(id);
        }
        emit(ctx.json, &fresh)?;
    }
}

/// Eight levels of a bar, lowest to highest.
const SPARKS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// A one-line chart of `values` (empty for no values).
pub fn sparkline(values: &[f64]) -> String {
    let max = values.iter().copied().fold(0.0_f64, f64::max);
    values
        .iter()
        .map(|v| {
            if max <= 0.0 {
                SPARKS[0]
            } else {
                let level = ((v / max) * (SPARKS.len() - 1) as f64).round() as usize;
                SPARKS[level.min(SPARKS.len() - 1)]
            }
        })
        .collect()
}

pub fn show_metrics(m: &Metrics) {
    let num = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |f| format!("{f:.2}"));
    let (label, who) = match (&m.workspace_id, &m.tenant_id) {
        (Some(w), _) => ("workspace", w.as_str()),
        (None, t) => ("tenant", t.as_deref().unwrap_or("")),
    };
    output::fields(&[
        (label, who),
        ("window", &format!("{} (per {})", m.window, m.bucket)),
        ("queries", &m.queries.to_string()),
        ("failed", &m.failed.to_string()),
        (
            "slow",
            &format!("{} (>= {} ms)", m.slow, m.slow_threshold_ms),
        ),
        ("success rate", &format!("{} %", num(m.success_rate))),
    ]);
    let l = &m.latency_ms;
    output::table(
        &["LATENCY MS", "AVG", "P50", "P95", "P99", "MAX"],
        vec![vec![
            String::new(),
            num(l.avg),
            num(l.p50),
            num(l.p95),
            num(l.p99),
            num(l.max),
        ]],
    );
    if !m.series.is_empty() {
        let counts: Vec<f64> = m.series.iter().map(|b| b.queries as f64).collect();
        let p95: Vec<f64> = m.series.iter().map(|b| b.p95_ms.unwrap_or(0.0)).collect();
        println!("queries  {}", sparkline(&counts));
        println!("p95 ms   {}", sparkline(&p95));
    }
}

#[cfg(test)]
mod tests {
    use super::sparkline;

    #[test]
    fn sparklines_scale_to_the_largest_value() {
        assert_eq!(sparkline(&[0.0, 1.0, 2.0, 4.0]), "▁▃▅█");
        assert_eq!(sparkline(&[0.0, 0.0]), "▁▁");
        assert_eq!(sparkline(&[]), "");
    }
}
