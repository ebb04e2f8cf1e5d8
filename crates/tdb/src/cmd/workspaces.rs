//! `tdb workspaces …`: create and inspect workspaces, run SQL in them, import schemas, and work
//! the queue of pending DDL.

use std::io::Read;
use std::str::FromStr;

use anyhow::Context as _;
use serde_json::{Value, json};

use super::Context;
use crate::output;

#[derive(Debug, clap::Subcommand)]
pub enum WorkspacesCommand {
    /// List workspaces
    List,
    /// Create a workspace (prints its proxy credential once)
    Create {
        name: String,
        /// PostgreSQL (MySQL, MongoDB and Redis come later)
        #[arg(long, default_value = "postgresql")]
        database: String,
        /// tenant (schema captured into a blueprint) or control (standalone)
        #[arg(long, default_value = "tenant")]
        mode: String,
    },
    /// Show a workspace: schema history, pending changes, connection, settings
    Get { name: String },
    /// Delete a workspace and its database
    Delete { name: String },
    /// Run SQL in a workspace ("-" reads it from stdin)
    Query { name: String, sql: String },
    /// Show the tables, columns, indexes and foreign keys
    Schema { name: String },
    /// Import a schema: one of --template, --json-file, --url, --from-db
    Import {
        name: String,
        /// ecommerce, saas, blog or fintech
        #[arg(long, group = "source")]
        template: Option<String>,
        /// A file holding {"tables": [...]}
        #[arg(long, group = "source")]
        json_file: Option<std::path::PathBuf>,
        /// A URL serving {"tables": [...]}
        #[arg(long, group = "source")]
        url: Option<String>,
        /// A PostgreSQL URL to copy the schema from: postgresql://user@host:port/db (the password
        /// from TDB_IMPORT_PASSWORD, which keeps it off the command line, or in the URL)
        #[arg(long, group = "source")]
        from_db: Option<String>,
    },
    /// The workspace's own query metrics (proxy and API), with sparklines
    Metrics {
        name: String,
        /// 1h, 24h, 7d or 30d
        #[arg(long, default_value = "24h")]
        window: String,
    },
    /// List pending DDL changes
    Diff { name: String },
    /// Remove a pending change from the deploy queue
    DiffSkip { name: String, id: String },
    /// Undo a pending change in the workspace and remove it
    DiffRevert { name: String, id: String },
    /// Show settings, or change them with the flags
    Settings {
        name: String,
        #[arg(long)]
        query_timeout_ms: Option<u64>,
        #[arg(long)]
        max_rows_per_query: Option<u64>,
        #[arg(long)]
        max_connections: Option<u32>,
        /// session or transaction: how the proxy shares server connections
        #[arg(long)]
        pool_mode: Option<String>,
    },
}

pub async fn run(ctx: &Context, command: WorkspacesCommand) -> anyhow::Result<()> {
    let c = &ctx.client;
    match command {
        WorkspacesCommand::List => {
            let reply = c.list_workspaces().await?;
            ctx.print(&reply.raw, || {
                let rows = reply
                    .data
                    .workspaces
                    .iter()
                    .map(|w| {
                        let version = w.version.map_or("-".into(), |v| v.to_string());
                        vec![
                            w.name.clone(),
                            w.mode.to_string(),
                            w.database.to_string(),
                            version,
                            tdb_client::wire_time(&w.created_at),
                        ]
                    })
                    .collect();
                output::table(&["NAME", "MODE", "DATABASE", "VERSION", "CREATED"], rows);
            });
        }
        WorkspacesCommand::Create {
            name,
            database,
            mode,
        } => {
            let reply = c.create_workspace(&name, &database, &mode).await?;
            let d = &reply.data;
            ctx.print(&reply.raw, || {
                output::fields(&[
                    ("workspace", &d.id),
                    ("mode", d.mode.as_str()),
                    ("database", &d.database),
                    ("user", &d.connection.user),
                    ("password", &d.connection.password),
                    ("connection", &d.connection_string),
                ]);
                println!("\nSave the password: it is not shown again.");
            });
        }
        WorkspacesCommand::Get { name } => {
            let reply = c.get_workspace(&name).await?;
            let r = &reply.raw;
            ctx.print(r, || {
                let text = |k: &str| {
                    r[k].as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| r[k].to_string())
                };
                output::fields(&[
                    ("workspace", &text("name")),
                    ("mode", &text("mode")),
                    ("database", &text("database")),
                    ("version", &text("version")),
                    ("pending", &text("undeployed_changes")),
                    ("connection", &text("connection_string")),
                    ("settings", &r["settings"].to_string()),
                ]);
                for statement in r["schema"].as_array().into_iter().flatten() {
                    println!("{};", statement.as_str().unwrap_or_default());
                }
            });
        }
        WorkspacesCommand::Delete { name } => {
            let reply = c.delete_workspace(&name).await?;
            ctx.print(&reply.raw, || println!("workspace '{name}' deleted"));
        }
        WorkspacesCommand::Query { name, sql } => {
            let sql = if sql == "-" {
                let mut text = String::new();
                std::io::stdin().read_to_string(&mut text)?;
                text
            } else {
                sql
            };
            let reply = c.query_workspace(&name, &sql).await?;
            let d = &reply.data;
            ctx.print(&reply.raw, || {
                if !d.columns.is_empty() {
                    let rows = d
                        .rows
                        .iter()
                        .map(|r| r.iter().map(output::cell).collect())
                        .collect();
                    let headers: Vec<&str> = d.columns.iter().map(String::as_str).collect();
                    output::table(&headers, rows);
                }
                let more = if d.truncated { " (truncated)" } else { "" };
                println!(
                    "{} row(s){more}, {} statement(s), {}",
                    d.row_count, d.statements_executed, d.execution_time
                );
                if !d.ddl_captured.is_empty() {
                    println!("captured as pending changes: {:?}", d.ddl_captured);
                }
            });
        }
        WorkspacesCommand::Schema { name } => {
            let reply = c.workspace_schema(&name).await?;
            ctx.print(&reply.raw, || print_schema(&reply.raw));
        }
        WorkspacesCommand::Import {
            name,
            template,
            json_file,
            url,
            from_db,
        } => {
            let body = import_body(template, json_file, url, from_db)?;
            let reply = c.import_schema(&name, &body).await?;
            let r = &reply.raw;
            ctx.print(r, || {
                println!("{}", r["message"].as_str().unwrap_or_default());
                output::fields(&[
                    ("created", &r["created"].to_string()),
                    ("skipped", &r["skipped"].to_string()),
                    (
                        "errors",
                        &r["errors"].as_array().map_or(0, Vec::len).to_string(),
                    ),
                ]);
                for e in r["errors"].as_array().into_iter().flatten() {
                    println!(
                        "  {}: {}",
                        e["statement"].as_str().unwrap_or_default(),
                        e["error"].as_str().unwrap_or_default()
                    );
                }
            });
        }
        WorkspacesCommand::Metrics { name, window } => {
            let reply = c.workspace_metrics(&name, &window).await?;
            ctx.print(&reply.raw, || super::tenants::print_metrics(&reply.raw));
        }
        WorkspacesCommand::Diff { name } => {
            let reply = c.workspace_diff(&name).await?;
            ctx.print(&reply.raw, || {
                let rows = reply
                    .data
                    .changes
                    .iter()
                    .map(|ch| vec![ch.id.to_string(), ch.tag.clone(), ch.statement.clone()])
                    .collect();
                output::table(&["ID", "KIND", "STATEMENT"], rows);
            });
        }
        WorkspacesCommand::DiffSkip { name, id } => {
            let reply = c.skip_ddl(&name, &id).await?;
            ctx.print(&reply.raw, || println!("{}", reply.data.message));
        }
        WorkspacesCommand::DiffRevert { name, id } => {
            let reply = c.revert_ddl(&name, &id).await?;
            ctx.print(&reply.raw, || println!("{}", reply.data.message));
        }
        WorkspacesCommand::Settings {
            name,
            query_timeout_ms,
            max_rows_per_query,
            max_connections,
            pool_mode,
        } => {
            let mut patch = serde_json::Map::new();
            if let Some(v) = query_timeout_ms {
                patch.insert("query_timeout_ms".into(), v.into());
            }
            if let Some(v) = max_rows_per_query {
                patch.insert("max_rows_per_query".into(), v.into());
            }
            if let Some(v) = max_connections {
                patch.insert("max_connections".into(), v.into());
            }
            if let Some(v) = pool_mode {
                patch.insert("pool_mode".into(), v.into());
            }
            let raw = if patch.is_empty() {
                c.workspace_settings(&name).await?.raw
            } else {
                c.update_settings(&name, &Value::Object(patch)).await?.raw
            };
            let r = &raw;
            ctx.print(r, || {
                let s = &r["settings"];
                for field in [
                    "query_timeout_ms",
                    "max_rows_per_query",
                    "max_connections",
                    "pool_mode",
                ] {
                    println!("{field:20}  {}", s[field]);
                }
                if let Some(m) = r["message"].as_str() {
                    println!("{m}");
                }
            });
        }
    }
    Ok(())
}

fn print_schema(schema: &Value) {
    for t in schema["tables"].as_array().into_iter().flatten() {
        println!("{}", t["name"].as_str().unwrap_or_default());
        let rows = t["columns"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                vec![
                    c["name"].as_str().unwrap_or_default().to_string(),
                    c["type"].as_str().unwrap_or_default().to_string(),
                    if c["nullable"] == true { "yes" } else { "no" }.to_string(),
                    c["default"].as_str().unwrap_or("").to_string(),
                ]
            })
            .collect();
        output::table(&["COLUMN", "TYPE", "NULLABLE", "DEFAULT"], rows);
        for ix in t["index_details"].as_array().into_iter().flatten() {
            println!("  {}", ix["definition"].as_str().unwrap_or_default());
        }
        for fk in t["foreign_keys"].as_array().into_iter().flatten() {
            println!(
                "  {}: {}",
                fk["name"].as_str().unwrap_or_default(),
                fk["definition"].as_str().unwrap_or_default()
            );
        }
    }
}

fn import_body(
    template: Option<String>,
    json_file: Option<std::path::PathBuf>,
    url: Option<String>,
    from_db: Option<String>,
) -> anyhow::Result<Value> {
    if let Some(t) = template {
        return Ok(json!({ "source": "template", "template": t }));
    }
    if let Some(path) = json_file {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let doc: Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not JSON", path.display()))?;
        let tables = doc.get("tables").cloned().unwrap_or(doc);
        return Ok(json!({ "source": "json", "tables": tables }));
    }
    if let Some(u) = url {
        return Ok(json!({ "source": "url", "url": u }));
    }
    if let Some(db) = from_db {
        let opts = sqlx::postgres::PgConnectOptions::from_str(&db)
            .context("--from-db must be a postgresql:// URL")?;
        let password = match crate::serve::password_of(&db) {
            p if p.is_empty() => std::env::var("TDB_IMPORT_PASSWORD").unwrap_or_default(),
            p => p,
        };
        return Ok(json!({ "source": "database", "connection": {
            "type": "postgresql",
            "host": opts.get_host(),
            "port": opts.get_port(),
            "database": opts.get_database().unwrap_or("postgres"),
            "user": opts.get_username(),
            "password": password,
        }}));
    }
    anyhow::bail!("give one of --template, --json-file, --url or --from-db")
}
