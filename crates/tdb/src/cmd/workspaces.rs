//! `tdb workspaces …`: create and inspect workspaces, run SQL in them, import schemas, and work
//! the queue of pending DDL.

use std::io::Read;
use std::str::FromStr;

use anyhow::Context as _;
use serde_json::Value;
use tdb_client::schema::WorkspaceSchema;
use tdb_client::workspaces::{
    ExternalConnection, ImportRequest, SettingsPatch, TableDef, WorkspaceSettings,
};
use tdb_core::keyrules::{KeyRules, PatternRule};
use tdb_core::settings::PoolMode;

use super::Context;
use crate::output;

#[derive(Debug, clap::Subcommand)]
pub enum WorkspacesCommand {
    /// List workspaces
    List,
    /// Create a workspace (prints its proxy credential once)
    Create {
        name: String,
        /// PostgreSQL, MySQL or Redis (MongoDB comes later)
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
    /// Run SQL in a workspace, or Redis commands one per line ("-" reads it from stdin)
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
        /// A database of the workspace's engine to copy the schema from:
        /// postgresql://user@host:port/db or mysql://user@host:port/db (the password from
        /// TDB_IMPORT_PASSWORD, which keeps it off the command line, or in the URL)
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
        #[arg(long, value_parser = ["session", "transaction"])]
        pool_mode: Option<String>,
        /// transaction pooling: client sessions at once (max_connections then counts server
        /// connections)
        #[arg(long)]
        max_client_connections: Option<u32>,
        /// Redis: seconds a key written without a TTL lives, or `none`
        #[arg(long, value_parser = parse_optional_u64)]
        default_ttl: Option<Option<u64>>,
        /// Redis: keys one tenant may hold, or `none`
        #[arg(long, value_parser = parse_optional_u64)]
        max_keys: Option<Option<u64>>,
        /// Redis: `GLOB=SECONDS`, the TTL of keys a pattern matches (repeat it; replaces the
        /// patterns there were)
        #[arg(long = "pattern", value_parser = parse_pattern)]
        patterns: Vec<(String, u64)>,
        /// Redis: remove every pattern
        #[arg(long, conflicts_with = "patterns")]
        clear_patterns: bool,
    },
}

/// A number, or `none` for "no value".
fn parse_optional_u64(text: &str) -> Result<Option<u64>, String> {
    match text {
        "none" => Ok(None),
        n => n
            .parse()
            .map(Some)
            .map_err(|_| format!("a whole number or none, not '{n}'")),
    }
}

/// `GLOB=SECONDS`; the glob may itself hold `=` (the last one separates).
fn parse_pattern(text: &str) -> Result<(String, u64), String> {
    let (glob, ttl) = text
        .rsplit_once('=')
        .ok_or_else(|| format!("GLOB=SECONDS, not '{text}'"))?;
    let ttl = ttl
        .parse()
        .map_err(|_| format!("the TTL of '{glob}' is seconds, not '{ttl}'"))?;
    Ok((glob.to_string(), ttl))
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
            let w = &reply.data;
            ctx.print(&reply.raw, || {
                let or_dash = |v: Option<String>| v.unwrap_or_else(|| "-".into());
                output::fields(&[
                    ("workspace", &w.name),
                    ("mode", w.mode.as_str()),
                    ("database", w.database.as_str()),
                    ("version", &or_dash(w.version.map(|v| v.to_string()))),
                    (
                        "pending",
                        &or_dash(w.undeployed_changes.map(|n| n.to_string())),
                    ),
                    ("connection", &w.connection_string),
                ]);
                print_settings(&w.settings);
                if let Some(e) = &w.schema_error {
                    println!("the schema could not be read: {e}");
                }
                for statement in &w.schema {
                    println!("{statement};");
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
            ctx.print(&reply.raw, || print_schema(&reply.data));
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
            let r = &reply.data;
            ctx.print(&reply.raw, || {
                println!("{}", r.message);
                output::fields(&[
                    ("created", &r.created.join(", ")),
                    ("skipped", &r.skipped.join(", ")),
                    ("errors", &r.errors.len().to_string()),
                ]);
                for e in &r.errors {
                    println!("  {}: {}", e.statement, e.error);
                }
            });
        }
        WorkspacesCommand::Metrics { name, window } => {
            let reply = c.workspace_metrics(&name, &window).await?;
            ctx.print(&reply.raw, || super::tenants::show_metrics(&reply.data));
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
            max_client_connections,
            default_ttl,
            max_keys,
            patterns,
            clear_patterns,
        } => {
            let pool_mode = pool_mode.map(|m| match m.as_str() {
                "transaction" => PoolMode::Transaction,
                _ => PoolMode::Session,
            });
            let patch = SettingsPatch {
                query_timeout_ms,
                max_rows_per_query,
                max_connections,
                pool_mode,
                max_client_connections,
                default_ttl,
                max_keys,
                patterns: (clear_patterns || !patterns.is_empty()).then(|| {
                    Some(
                        patterns
                            .into_iter()
                            .map(|(glob, ttl)| (glob, PatternRule { ttl }))
                            .collect(),
                    )
                }),
            };
            let changes_nothing = query_timeout_ms.is_none()
                && max_rows_per_query.is_none()
                && max_connections.is_none()
                && pool_mode.is_none()
                && max_client_connections.is_none()
                && !patch.changes_key_rules();
            if changes_nothing {
                let reply = c.workspace_settings(&name).await?;
                ctx.print(&reply.raw, || print_settings(&reply.data.settings));
            } else {
                let reply = c.update_settings(&name, &patch).await?;
                ctx.print(&reply.raw, || {
                    print_settings(&reply.data.settings);
                    println!("{}", reply.data.message);
                });
            }
        }
    }
    Ok(())
}

fn print_settings(settings: &WorkspaceSettings) {
    let s = &settings.limits;
    output::fields(&[
        ("query_timeout_ms", &s.query_timeout_ms.to_string()),
        ("max_rows_per_query", &s.max_rows_per_query.to_string()),
        ("max_connections", &s.max_connections.to_string()),
        (
            "pool_mode",
            match s.pool_mode {
                PoolMode::Session => "session",
                PoolMode::Transaction => "transaction",
            },
        ),
        (
            "max_client_connections",
            &s.max_client_connections.to_string(),
        ),
    ]);
    let keys = &settings.keys;
    if *keys != KeyRules::default() {
        let none = || "none".to_string();
        output::fields(&[
            (
                "default_ttl",
                &keys.default_ttl.map_or_else(none, |t| format!("{t}s")),
            ),
            (
                "max_keys",
                &keys.max_keys.map_or_else(none, |n| n.to_string()),
            ),
        ]);
        for (pattern, rule) in &keys.patterns {
            println!("pattern {pattern}: ttl {}s", rule.ttl);
        }
    }
}

fn print_schema(schema: &WorkspaceSchema) {
    for t in &schema.tables {
        println!("{}", t.name);
        let rows = t
            .columns
            .iter()
            .map(|c| {
                vec![
                    c.name.clone(),
                    c.data_type.clone(),
                    if c.nullable { "yes" } else { "no" }.to_string(),
                    c.default.clone().unwrap_or_default(),
                ]
            })
            .collect();
        output::table(&["COLUMN", "TYPE", "NULLABLE", "DEFAULT"], rows);
        for ix in &t.index_details {
            println!("  {}", ix.definition);
        }
        for fk in &t.foreign_keys {
            println!("  {}: {}", fk.name, fk.definition);
        }
    }
}

fn import_body(
    template: Option<String>,
    json_file: Option<std::path::PathBuf>,
    url: Option<String>,
    from_db: Option<String>,
) -> anyhow::Result<ImportRequest> {
    let mut body = ImportRequest {
        source: String::new(),
        template: None,
        tables: None,
        collections: None,
        connection: None,
        url: None,
    };
    if let Some(t) = template {
        body.source = "template".into();
        body.template = Some(t);
    } else if let Some(path) = json_file {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let doc: Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not JSON", path.display()))?;
        /// `{"tables": [...]}`; the list may also stand on its own.
        #[derive(serde::Deserialize)]
        struct TablesDoc {
            tables: Vec<TableDef>,
        }
        let tables = if doc.is_object() {
            serde_json::from_value::<TablesDoc>(doc).map(|d| d.tables)
        } else {
            serde_json::from_value::<Vec<TableDef>>(doc)
        };
        let tables = tables.with_context(|| {
            format!(
                "{} is not a list of tables ({{\"name\", \"columns\": [{{\"name\", \"type\"}}]}})",
                path.display()
            )
        })?;
        body.source = "json".into();
        body.tables = Some(tables);
    } else if let Some(u) = url {
        body.source = "url".into();
        body.url = Some(u);
    } else if let Some(db) = from_db {
        let password = match crate::serve::password_of(&db) {
            p if p.is_empty() => std::env::var("TDB_IMPORT_PASSWORD").unwrap_or_default(),
            p => p,
        };
        body.source = "database".into();
        body.connection = Some(external_connection(&db, password)?);
    } else {
        anyhow::bail!("give one of --template, --json-file, --url or --from-db");
    }
    Ok(body)
}

/// The source database of `--from-db`: a `postgresql://` or a `mysql://` URL.
fn external_connection(url: &str, password: String) -> anyhow::Result<ExternalConnection> {
    if url.starts_with("mysql://") || url.starts_with("mariadb://") {
        let opts =
            sqlx::mysql::MySqlConnectOptions::from_str(&url.replacen("mariadb://", "mysql://", 1))
                .context("--from-db: not a valid mysql:// URL")?;
        return Ok(ExternalConnection {
            kind: Some("mysql".into()),
            host: opts.get_host().to_string(),
            port: Some(opts.get_port()),
            database: opts.get_database().unwrap_or_default().to_string(),
            user: opts.get_username().to_string(),
            password: Some(password),
        });
    }
    let opts = sqlx::postgres::PgConnectOptions::from_str(url)
        .context("--from-db must be a postgresql:// or mysql:// URL")?;
    Ok(ExternalConnection {
        kind: Some("postgresql".into()),
        host: opts.get_host().to_string(),
        port: Some(opts.get_port()),
        database: opts.get_database().unwrap_or("postgres").to_string(),
        user: opts.get_username().to_string(),
        password: Some(password),
    })
}
