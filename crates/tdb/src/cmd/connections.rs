//! `tdb connections add|list|get|delete|introspect|query`: databases registered with tdb by
//! connection string (stored encrypted; never printed back), their structure, and SQL run on
//! them.

use serde_json::Value;

use super::Context;
use crate::output::{self, text};

#[derive(Debug, clap::Subcommand)]
pub enum ConnectionsCommand {
    /// Register a database; its connection string is stored encrypted and never shown again
    Add {
        #[arg(long)]
        name: String,
        /// postgresql, postgresql_local, postgresql_aws, postgres_gcp or supabase
        #[arg(long)]
        db_type: String,
        /// e.g. postgresql://user:password@host:5432/db
        #[arg(long, env = "TDB_CONNECTION_STRING", hide_env_values = true)]
        connection_string: String,
        /// A schema for introspection to leave out (repeat for several) [default: Supabase's
        /// own schemas]
        #[arg(long = "exclude-schema")]
        excluded_schemas: Vec<String>,
    },
    /// List connections (provisioned databases included)
    List,
    /// Show a connection
    Get { id: String },
    /// Deactivate a connection (the database itself is left alone)
    Delete { id: String },
    /// Show a connection's schemas, tables, columns, keys and indexes as a tree
    Introspect { id: String },
    /// Run SQL on a connection's database as its own user (`-` reads it from stdin)
    Query { id: String, sql: String },
}

pub async fn run(ctx: &Context, command: ConnectionsCommand) -> anyhow::Result<()> {
    let c = &ctx.client;
    match command {
        ConnectionsCommand::Add {
            name,
            db_type,
            connection_string,
            excluded_schemas,
        } => {
            let conn = tdb_client::autodb::CreateConnection {
                name,
                db_type,
                connection_string,
                excluded_schemas: (!excluded_schemas.is_empty()).then_some(excluded_schemas),
            };
            let reply = c.create_connection(&conn).await?;
            ctx.print(&redacted(&reply.raw), || {
                println!(
                    "registered connection '{}'",
                    text(&reply.raw["data"]["name"])
                );
                print_connection(&reply.raw["data"]);
            });
        }
        ConnectionsCommand::List => {
            let reply = c.list_connections().await?;
            ctx.print(&redacted(&reply.raw), || {
                let list = reply.raw["data"]["connections"].as_array();
                print_list(list.map_or(&[][..], Vec::as_slice));
            });
        }
        ConnectionsCommand::Get { id } => {
            let reply = c.get_connection(&id).await?;
            ctx.print(&redacted(&reply.raw), || {
                print_connection(&reply.raw["data"])
            });
        }
        ConnectionsCommand::Delete { id } => {
            let reply = c.delete_connection(&id).await?;
            ctx.print(&reply.raw, || {
                println!(
                    "connection {} is no longer active",
                    text(&reply.raw["data"]["id"])
                );
            });
        }
        ConnectionsCommand::Introspect { id } => {
            let reply = c.introspect_connection(&id).await?;
            ctx.print(&reply.raw, || print_tree(&reply.raw["data"]));
        }
        ConnectionsCommand::Query { id, sql } => {
            let sql = if sql == "-" {
                std::io::read_to_string(std::io::stdin())?
            } else {
                sql
            };
            let reply = c.query_connection(&id, &sql).await?;
            let d = &reply.raw["data"];
            ctx.print(&reply.raw, || {
                let columns: Vec<&str> = d["columns"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                if !columns.is_empty() {
                    let rows = d["rows"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|r| {
                            r.as_array()
                                .into_iter()
                                .flatten()
                                .map(output::cell)
                                .collect()
                        })
                        .collect();
                    output::table(&columns, rows);
                }
                let more = if d["truncated"] == true {
                    " (truncated)"
                } else {
                    ""
                };
                println!(
                    "{} row(s){more}, {}",
                    d["row_count"],
                    text(&d["execution_time"])
                );
            });
        }
    }
    Ok(())
}

/// The body without any `connection_string`, however deep: the API never returns one for a
/// connection, and the CLI does not print one should it ever do.
fn redacted(body: &Value) -> Value {
    match body {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, _)| k.as_str() != "connection_string")
                .map(|(k, v)| (k.clone(), redacted(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(redacted).collect()),
        other => other.clone(),
    }
}

fn print_list(list: &[Value]) {
    let rows = list
        .iter()
        .map(|c| {
            vec![
                text(&c["id"]),
                text(&c["name"]),
                text(&c["db_type"]),
                format!("{}:{}", text(&c["host"]), text(&c["port"])),
                text(&c["database_name"]),
                text(&c["is_active"]),
                text(&c["created_at"]),
            ]
        })
        .collect();
    output::table(
        &[
            "ID", "NAME", "TYPE", "HOST", "DATABASE", "ACTIVE", "CREATED",
        ],
        rows,
    );
}

fn print_connection(c: &Value) {
    let excluded: Vec<String> = c["excluded_schemas"]
        .as_array()
        .into_iter()
        .flatten()
        .map(text)
        .collect();
    output::fields(&[
        ("id", &text(&c["id"])),
        ("name", &text(&c["name"])),
        ("type", &text(&c["db_type"])),
        (
            "host",
            &format!("{}:{}", text(&c["host"]), text(&c["port"])),
        ),
        ("database", &text(&c["database_name"])),
        ("excluded schemas", &excluded.join(", ")),
        ("active", &text(&c["is_active"])),
        ("created", &text(&c["created_at"])),
        ("introspected", &text(&c["last_introspected_at"])),
    ]);
}

/// `schema / table (kind, ~rows) / columns, keys and indexes`, indented.
fn print_tree(d: &Value) {
    println!(
        "{}: {} tables (introspected {})",
        text(&d["database_name"]),
        d["table_count"],
        text(&d["introspected_at"])
    );
    for schema in d["schemas"].as_array().into_iter().flatten() {
        println!("{}", text(&schema["name"]));
        for table in schema["tables"].as_array().into_iter().flatten() {
            print_table(table);
        }
    }
}

fn print_table(t: &Value) {
    // PostgreSQL has no estimate for a table it has not analyzed yet.
    let rows = match t["row_estimate"].as_i64() {
        Some(n) if n >= 0 => format!(", ~{n} rows"),
        _ => String::new(),
    };
    println!("  {} ({}{rows})", text(&t["name"]), text(&t["kind"]));
    let pk = names(&t["primary_key"]);
    let width = t["columns"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| text(&c["name"]).len())
        .max()
        .unwrap_or(0);
    for col in t["columns"].as_array().into_iter().flatten() {
        let name = text(&col["name"]);
        let mut line = format!("    {name:width$}  {}", text(&col["type"]));
        if col["nullable"] == Value::Bool(false) {
            line.push_str(" not null");
        }
        if let Some(default) = col["default"].as_str() {
            line.push_str(&format!(" default {default}"));
        }
        if pk.contains(&name) {
            line.push_str(" [pk]");
        }
        println!("{line}");
    }
    for ix in t["indexes"].as_array().into_iter().flatten() {
        if ix["primary"] == Value::Bool(true) {
            continue;
        }
        let unique = if ix["unique"] == Value::Bool(true) {
            "unique "
        } else {
            ""
        };
        let cols = names(&ix["columns"]).join(", ");
        println!("    {unique}index {} ({cols})", text(&ix["name"]));
    }
    for fk in t["foreign_keys"].as_array().into_iter().flatten() {
        println!(
            "    fk {} ({}) -> {}.{} ({})",
            text(&fk["name"]),
            names(&fk["columns"]).join(", "),
            text(&fk["ref_schema"]),
            text(&fk["ref_table"]),
            names(&fk["ref_columns"]).join(", ")
        );
    }
}

fn names(list: &Value) -> Vec<String> {
    list.as_array().into_iter().flatten().map(text).collect()
}
