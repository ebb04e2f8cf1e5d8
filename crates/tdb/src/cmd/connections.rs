//! `tdb connections add|list|get|delete|introspect|query`: databases registered with tdb by
//! connection string (stored encrypted; never printed back), their structure, and SQL run on
//! them.

use serde_json::Value;
use tdb_client::autodb::{ConnectionItem, ConnectionRows, Introspection};
use tdb_client::schema::TableOverview;
use tdb_client::wire_time;

use super::Context;
use crate::output;

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
                println!("registered connection '{}'", reply.data.name);
                print_connection(&reply.data);
            });
        }
        ConnectionsCommand::List => {
            let reply = c.list_connections().await?;
            ctx.print(&redacted(&reply.raw), || {
                print_list(&reply.data.connections)
            });
        }
        ConnectionsCommand::Get { id } => {
            let reply = c.get_connection(&id).await?;
            ctx.print(&redacted(&reply.raw), || print_connection(&reply.data));
        }
        ConnectionsCommand::Delete { id } => {
            let reply = c.delete_connection(&id).await?;
            ctx.print(&reply.raw, || {
                println!("connection {} is no longer active", reply.data.id);
            });
        }
        ConnectionsCommand::Introspect { id } => {
            let reply = c.introspect_connection(&id).await?;
            ctx.print(&reply.raw, || print_tree(&reply.data));
        }
        ConnectionsCommand::Query { id, sql } => {
            let sql = if sql == "-" {
                std::io::read_to_string(std::io::stdin())?
            } else {
                sql
            };
            let reply = c.query_connection(&id, &sql).await?;
            ctx.print(&reply.raw, || print_rows(&reply.data));
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

fn print_rows(d: &ConnectionRows) {
    if !d.columns.is_empty() {
        let headers: Vec<&str> = d.columns.iter().map(String::as_str).collect();
        let rows = d
            .rows
            .iter()
            .map(|r| r.iter().map(output::cell).collect())
            .collect();
        output::table(&headers, rows);
    }
    let more = if d.truncated { " (truncated)" } else { "" };
    println!("{} row(s){more}, {}", d.row_count, d.execution_time);
}

fn print_list(list: &[ConnectionItem]) {
    let rows = list
        .iter()
        .map(|c| {
            vec![
                c.id.clone(),
                c.name.clone(),
                c.db_type.clone(),
                format!("{}:{}", c.host, c.port),
                c.database_name.clone(),
                c.is_active.to_string(),
                wire_time(&c.created_at),
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

fn print_connection(c: &ConnectionItem) {
    output::fields(&[
        ("id", &c.id),
        ("name", &c.name),
        ("type", &c.db_type),
        ("host", &format!("{}:{}", c.host, c.port)),
        ("database", &c.database_name),
        ("excluded schemas", &c.excluded_schemas.join(", ")),
        ("active", &c.is_active.to_string()),
        ("created", &wire_time(&c.created_at)),
        (
            "introspected",
            &c.last_introspected_at
                .as_ref()
                .map_or_else(|| "never".into(), wire_time),
        ),
    ]);
}

/// `schema / table (kind, ~rows) / columns, keys and indexes`, indented.
fn print_tree(d: &Introspection) {
    println!(
        "{}: {} tables (introspected {})",
        d.database_name,
        d.table_count,
        wire_time(&d.introspected_at)
    );
    for schema in &d.schemas {
        println!("{}", schema.name);
        for table in &schema.tables {
            print_table(table);
        }
    }
}

fn print_table(t: &TableOverview) {
    // PostgreSQL has no estimate for a table it has not analyzed yet.
    let rows = match t.row_estimate {
        Some(n) if n >= 0 => format!(", ~{n} rows"),
        _ => String::new(),
    };
    println!("  {} ({}{rows})", t.name, t.kind);
    let width = t.columns.iter().map(|c| c.name.len()).max().unwrap_or(0);
    for col in &t.columns {
        let mut line = format!("    {:width$}  {}", col.name, col.data_type);
        if !col.nullable {
            line.push_str(" not null");
        }
        if let Some(default) = &col.default {
            line.push_str(&format!(" default {default}"));
        }
        if t.primary_key.contains(&col.name) {
            line.push_str(" [pk]");
        }
        println!("{line}");
    }
    for ix in t.indexes.iter().filter(|ix| !ix.primary) {
        let unique = if ix.unique { "unique " } else { "" };
        println!("    {unique}index {} ({})", ix.name, ix.columns.join(", "));
    }
    for fk in &t.foreign_keys {
        println!(
            "    fk {} ({}) -> {}.{} ({})",
            fk.name,
            fk.columns.join(", "),
            fk.ref_schema,
            fk.ref_table,
            fk.ref_columns.join(", ")
        );
    }
}
