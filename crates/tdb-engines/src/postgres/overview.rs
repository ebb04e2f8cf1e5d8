//! A database as a person exploring it sees it: the schemas the connecting role may use, their
//! tables and views with columns, keys, indexes, foreign keys and the planner's row estimates.
//! Each kind of object is read in one query over every table, so a large database costs a
//! handful of round trips, not several per table.

use std::collections::HashMap;

use sqlx::postgres::PgConnection;

use super::from_sqlx;
use crate::engine::Result;
use crate::schema::{
    ColumnOverview, DatabaseOverview, ForeignKeyOverview, IndexOverview, SchemaOverview,
    TableOverview,
};

const SCHEMAS: &str = r"
    SELECT n.nspname::text FROM pg_namespace n
     WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
       AND n.nspname NOT LIKE 'pg\_toast%' AND n.nspname NOT LIKE 'pg\_temp%'
       AND has_schema_privilege(n.oid, 'USAGE')
       AND NOT (n.nspname = ANY($1))
     ORDER BY 1";

const TABLES: &str = "
    SELECT c.oid::int8, n.nspname::text, c.relname::text,
           CASE c.relkind WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized_view'
                          WHEN 'f' THEN 'foreign_table' WHEN 'p' THEN 'partitioned_table'
                          ELSE 'table' END,
           c.reltuples::float8
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND n.nspname = ANY($1) AND NOT c.relispartition
     ORDER BY n.nspname, c.relname";

const COLUMNS: &str = "
    SELECT a.attrelid::int8, a.attname::text, format_type(a.atttypid, a.atttypmod),
           NOT a.attnotnull, pg_get_expr(d.adbin, d.adrelid)
      FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
     WHERE a.attrelid = ANY($1::int8[]::oid[]) AND a.attnum > 0 AND NOT a.attisdropped
     ORDER BY a.attrelid, a.attnum";

const INDEXES: &str = "
    SELECT x.indrelid::int8, i.relname::text, x.indisunique, x.indisprimary,
           pg_get_indexdef(x.indexrelid),
           ARRAY(SELECT COALESCE(a.attname::text, pg_get_indexdef(x.indexrelid, k.n::int, true))
                   FROM unnest(x.indkey::int2[]) WITH ORDINALITY k(attnum, n)
                   LEFT JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum
                  WHERE k.n <= x.indnkeyatts
                  ORDER BY k.n)
      FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
     WHERE x.indrelid = ANY($1::int8[]::oid[])
     ORDER BY x.indrelid, i.relname";

const CONSTRAINTS: &str = "
    SELECT c.conrelid::int8, c.conname::text, c.contype::text,
           COALESCE(rn.nspname::text, ''), COALESCE(r.relname::text, ''),
           ARRAY(SELECT a.attname::text FROM unnest(c.conkey) WITH ORDINALITY k(attnum, n)
                   JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum
                  ORDER BY k.n),
           ARRAY(SELECT a.attname::text FROM unnest(c.confkey) WITH ORDINALITY k(attnum, n)
                   JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.attnum
                  ORDER BY k.n),
           c.confupdtype::text, c.confdeltype::text
      FROM pg_constraint c
      LEFT JOIN pg_class r ON r.oid = c.confrelid
      LEFT JOIN pg_namespace rn ON rn.oid = r.relnamespace
     WHERE c.conrelid = ANY($1::int8[]::oid[]) AND c.contype IN ('p', 'f')
       AND c.conparentid = 0
     ORDER BY c.conrelid, c.conname";

type ConstraintRow = (
    i64,
    String,
    String,
    String,
    String,
    Vec<String>,
    Vec<String>,
    String,
    String,
);

fn fk_action(code: &str) -> &'static str {
    match code {
        "r" => "RESTRICT",
        "c" => "CASCADE",
        "n" => "SET NULL",
        "d" => "SET DEFAULT",
        _ => "NO ACTION",
    }
}

pub async fn read(conn: &mut PgConnection, excluded: &[String]) -> Result<DatabaseOverview> {
    let schemas: Vec<String> = sqlx::query_scalar(SCHEMAS)
        .bind(excluded)
        .fetch_all(&mut *conn)
        .await
        .map_err(from_sqlx)?;
    let tables: Vec<(i64, String, String, String, f64)> = sqlx::query_as(TABLES)
        .bind(&schemas)
        .fetch_all(&mut *conn)
        .await
        .map_err(from_sqlx)?;
    let oids: Vec<i64> = tables.iter().map(|t| t.0).collect();
    let mut by_oid: HashMap<i64, TableOverview> = tables
        .iter()
        .map(|(oid, _, name, kind, tuples)| {
            let table = TableOverview {
                name: name.clone(),
                kind: kind.clone(),
                // -1 means "never analyzed" (PostgreSQL 14 and later).
                row_estimate: (*tuples >= 0.0).then_some(*tuples as i64),
                columns: Vec::new(),
                primary_key: Vec::new(),
                indexes: Vec::new(),
                foreign_keys: Vec::new(),
            };
            (*oid, table)
        })
        .collect();
    let columns: Vec<(i64, String, String, bool, Option<String>)> = sqlx::query_as(COLUMNS)
        .bind(&oids)
        .fetch_all(&mut *conn)
        .await
        .map_err(from_sqlx)?;
    for (oid, name, data_type, nullable, default) in columns {
        if let Some(t) = by_oid.get_mut(&oid) {
            t.columns.push(ColumnOverview {
                name,
                data_type,
                nullable,
                default,
            });
        }
    }
    let indexes: Vec<(i64, String, bool, bool, String, Vec<String>)> = sqlx::query_as(INDEXES)
        .bind(&oids)
        .fetch_all(&mut *conn)
        .await
        .map_err(from_sqlx)?;
    for (oid, name, unique, primary, definition, columns) in indexes {
        if let Some(t) = by_oid.get_mut(&oid) {
            t.indexes.push(IndexOverview {
                name,
                columns,
                unique,
                primary,
                definition,
            });
        }
    }
    let constraints: Vec<ConstraintRow> = sqlx::query_as(CONSTRAINTS)
        .bind(&oids)
        .fetch_all(&mut *conn)
        .await
        .map_err(from_sqlx)?;
    for (oid, name, kind, ref_schema, ref_table, columns, ref_columns, on_update, on_delete) in
        constraints
    {
        let Some(t) = by_oid.get_mut(&oid) else {
            continue;
        };
        if kind == "p" {
            t.primary_key = columns;
        } else {
            t.foreign_keys.push(ForeignKeyOverview {
                name,
                columns,
                ref_schema,
                ref_table,
                ref_columns,
                on_update: fk_action(&on_update).into(),
                on_delete: fk_action(&on_delete).into(),
            });
        }
    }
    let mut out: Vec<SchemaOverview> = schemas
        .into_iter()
        .map(|name| SchemaOverview {
            name,
            tables: Vec::new(),
        })
        .collect();
    for (oid, schema, ..) in &tables {
        if let (Some(table), Some(s)) = (
            by_oid.remove(oid),
            out.iter_mut().find(|s| &s.name == schema),
        ) {
            s.tables.push(table);
        }
    }
    Ok(DatabaseOverview { schemas: out })
}
