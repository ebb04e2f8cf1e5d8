//! Reads a database's schema from pg_catalog: ordinary and partitioned tables outside the system
//! schemas, with their columns, indexes, foreign keys and check constraints, all in a stable
//! order so two databases built from the same DDL compare equal.

use sqlx::postgres::PgConnection;

use super::from_sqlx;
use crate::engine::Result;
use crate::schema::{Check, Column, ForeignKey, Index, Schema, Table};

const TABLES: &str = "
    SELECT c.oid::int8, n.nspname, c.relname
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.relkind IN ('r', 'p')
       AND n.nspname NOT IN ('pg_catalog', 'information_schema')
       AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'
     ORDER BY n.nspname, c.relname";

const COLUMNS: &str = "
    SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), NOT a.attnotnull,
           pg_get_expr(d.adbin, d.adrelid), a.attidentity::text
      FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
     WHERE a.attrelid = $1::int8::oid AND a.attnum > 0 AND NOT a.attisdropped
     ORDER BY a.attnum";

const INDEXES: &str = "
    SELECT i.relname::text, pg_get_indexdef(x.indexrelid), x.indisprimary, x.indisunique
      FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
     WHERE x.indrelid = $1::int8::oid
     ORDER BY i.relname";

const CONSTRAINTS: &str = "
    SELECT c.conname::text, c.contype::text, pg_get_constraintdef(c.oid),
           COALESCE(c.confrelid::regclass::text, ''),
           COALESCE((SELECT array_agg(a.attname::text ORDER BY k.n)
                       FROM unnest(c.conkey) WITH ORDINALITY k(attnum, n)
                       JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum),
                    '{}'),
           COALESCE((SELECT array_agg(a.attname::text ORDER BY k.n)
                       FROM unnest(c.confkey) WITH ORDINALITY k(attnum, n)
                       JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.attnum),
                    '{}')
      FROM pg_constraint c
     WHERE c.conrelid = $1::int8::oid AND c.contype IN ('f', 'c')
     ORDER BY c.conname";

type ConstraintRow = (String, String, String, String, Vec<String>, Vec<String>);

pub async fn read(conn: &mut PgConnection) -> Result<Schema> {
    let tables: Vec<(i64, String, String)> = sqlx::query_as(TABLES)
        .fetch_all(&mut *conn)
        .await
        .map_err(from_sqlx)?;
    let mut out = Schema::default();
    for (oid, schema, name) in tables {
        let columns: Vec<(String, String, bool, Option<String>, String)> = sqlx::query_as(COLUMNS)
            .bind(oid)
            .fetch_all(&mut *conn)
            .await
            .map_err(from_sqlx)?;
        let indexes: Vec<(String, String, bool, bool)> = sqlx::query_as(INDEXES)
            .bind(oid)
            .fetch_all(&mut *conn)
            .await
            .map_err(from_sqlx)?;
        let constraints: Vec<ConstraintRow> = sqlx::query_as(CONSTRAINTS)
            .bind(oid)
            .fetch_all(&mut *conn)
            .await
            .map_err(from_sqlx)?;
        out.tables
            .push(build_table(&schema, name, columns, indexes, constraints));
    }
    Ok(out)
}

fn build_table(
    schema: &str,
    name: String,
    columns: Vec<(String, String, bool, Option<String>, String)>,
    indexes: Vec<(String, String, bool, bool)>,
    constraints: Vec<ConstraintRow>,
) -> Table {
    let columns = columns
        .into_iter()
        .map(|(name, data_type, nullable, default, identity)| Column {
            name,
            data_type,
            nullable,
            default,
            identity: match identity.as_str() {
                "a" => Some("always".into()),
                "d" => Some("by default".into()),
                _ => None,
            },
        })
        .collect();
    let indexes = indexes
        .into_iter()
        .map(|(name, definition, primary, unique)| Index {
            name,
            definition,
            primary,
            unique,
        })
        .collect();
    let mut foreign_keys = Vec::new();
    let mut checks = Vec::new();
    for (name, kind, definition, referenced, cols, ref_cols) in constraints {
        if kind == "f" {
            foreign_keys.push(ForeignKey {
                name,
                columns: cols,
                references_table: referenced,
                references_columns: ref_cols,
                definition,
            });
        } else {
            checks.push(Check { name, definition });
        }
    }
    Table {
        name: if schema == "public" {
            name
        } else {
            format!("{schema}.{name}")
        },
        columns,
        indexes,
        foreign_keys,
        checks,
    }
}
