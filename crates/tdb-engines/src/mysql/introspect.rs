//! Reads a database's schema from `information_schema`: its base tables with their columns,
//! indexes, foreign keys and check constraints, in a stable order so two databases built from
//! the same DDL compare equal. Index, foreign key and check definitions are spelled as `SHOW
//! CREATE TABLE` spells them.

use std::collections::BTreeMap;

use sqlx::mysql::MySqlConnection;

use super::from_sqlx;
use super::quote::ident;
use crate::engine::Result;
use crate::schema::{Check, Column, ForeignKey, Index, Schema, Table};

const TABLES: &str = "
    SELECT TABLE_NAME FROM information_schema.TABLES
     WHERE TABLE_SCHEMA = ? AND TABLE_TYPE = 'BASE TABLE' ORDER BY TABLE_NAME";

const COLUMNS: &str = "
    SELECT COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE = 'YES', COLUMN_DEFAULT, EXTRA
      FROM information_schema.COLUMNS
     WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION";

const INDEXES: &str = "
    SELECT INDEX_NAME, NON_UNIQUE = 0, COLUMN_NAME, CAST(SUB_PART AS SIGNED), INDEX_TYPE
      FROM information_schema.STATISTICS
     WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY INDEX_NAME, SEQ_IN_INDEX";

const FOREIGN_KEYS: &str = "
    SELECT k.CONSTRAINT_NAME, k.COLUMN_NAME, k.REFERENCED_TABLE_SCHEMA, k.REFERENCED_TABLE_NAME,
           k.REFERENCED_COLUMN_NAME, r.UPDATE_RULE, r.DELETE_RULE
      FROM information_schema.KEY_COLUMN_USAGE k
      JOIN information_schema.REFERENTIAL_CONSTRAINTS r
        ON r.CONSTRAINT_SCHEMA = k.CONSTRAINT_SCHEMA AND r.CONSTRAINT_NAME = k.CONSTRAINT_NAME
       AND r.TABLE_NAME = k.TABLE_NAME
     WHERE k.TABLE_SCHEMA = ? AND k.TABLE_NAME = ?
     ORDER BY k.CONSTRAINT_NAME, k.ORDINAL_POSITION";

const CHECKS: &str = "
    SELECT CONSTRAINT_NAME, CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS
     WHERE CONSTRAINT_SCHEMA = ? AND TABLE_NAME = ? ORDER BY CONSTRAINT_NAME";

type ColumnRow = (String, String, bool, Option<String>, String);
type IndexRow = (String, bool, Option<String>, Option<i64>, String);
type ForeignKeyRow = (String, String, String, String, String, String, String);

/// The schema of database `db`.
pub async fn read(conn: &mut MySqlConnection, db: &str) -> Result<Schema> {
    let tables: Vec<String> = sqlx::query_scalar(TABLES)
        .bind(db)
        .fetch_all(&mut *conn)
        .await
        .map_err(from_sqlx)?;
    let mut out = Schema::default();
    for name in tables {
        let columns: Vec<ColumnRow> = fetch(conn, COLUMNS, db, &name).await?;
        let indexes: Vec<IndexRow> = fetch(conn, INDEXES, db, &name).await?;
        let foreign_keys: Vec<ForeignKeyRow> = fetch(conn, FOREIGN_KEYS, db, &name).await?;
        let checks: Vec<(String, String)> = fetch(conn, CHECKS, db, &name).await?;
        out.tables.push(Table {
            columns: columns.into_iter().map(column).collect(),
            indexes: build_indexes(indexes),
            foreign_keys: build_foreign_keys(db, foreign_keys),
            checks: checks
                .into_iter()
                .map(|(name, clause)| Check {
                    definition: format!("CHECK ({clause})"),
                    name,
                })
                .collect(),
            name,
        });
    }
    Ok(out)
}

async fn fetch<T>(
    conn: &mut MySqlConnection,
    sql: &'static str,
    db: &str,
    table: &str,
) -> Result<Vec<T>>
where
    T: for<'r> sqlx::FromRow<'r, sqlx::mysql::MySqlRow> + Send + Unpin,
{
    sqlx::query_as(sql)
        .bind(db)
        .bind(table)
        .fetch_all(&mut *conn)
        .await
        .map_err(from_sqlx)
}

/// A column. MariaDB spells a column without a default, or defaulting to NULL, as `NULL`; both
/// are no default here. `AUTO_INCREMENT` is a value generated unless one is given: PostgreSQL's
/// identity `by default`.
fn column((name, data_type, nullable, default, extra): ColumnRow) -> Column {
    Column {
        name,
        data_type,
        nullable,
        default: default.filter(|d| d != "NULL"),
        identity: extra
            .to_ascii_lowercase()
            .contains("auto_increment")
            .then(|| "by default".to_string()),
    }
}

/// Indexes from their key parts, in name order.
fn build_indexes(rows: Vec<IndexRow>) -> Vec<Index> {
    let mut by_name: BTreeMap<String, (bool, String, Vec<String>)> = BTreeMap::new();
    for (name, unique, column, sub_part, kind) in rows {
        let part = match (column, sub_part) {
            (Some(c), Some(n)) => format!("{}({n})", ident(&c)),
            (Some(c), None) => ident(&c),
            // An expression part (MariaDB 10.11 has none; later versions may).
            (None, _) => "?".to_string(),
        };
        by_name
            .entry(name)
            .or_insert_with(|| (unique, kind, Vec::new()))
            .2
            .push(part);
    }
    by_name
        .into_iter()
        .map(|(name, (unique, kind, parts))| {
            let primary = name == "PRIMARY";
            let head = match (primary, unique, kind.as_str()) {
                (true, ..) => "PRIMARY KEY".to_string(),
                (_, _, "FULLTEXT") => format!("FULLTEXT KEY {}", ident(&name)),
                (_, _, "SPATIAL") => format!("SPATIAL KEY {}", ident(&name)),
                (_, true, _) => format!("UNIQUE KEY {}", ident(&name)),
                _ => format!("KEY {}", ident(&name)),
            };
            Index {
                definition: format!("{head} ({})", parts.join(",")),
                name,
                primary,
                unique: unique || primary,
            }
        })
        .collect()
}

/// Foreign keys from their column pairs, in name order. A referenced table in another
/// database is named `db.table`.
fn build_foreign_keys(db: &str, rows: Vec<ForeignKeyRow>) -> Vec<ForeignKey> {
    let mut out: Vec<ForeignKey> = Vec::new();
    let mut rules: Vec<(String, String)> = Vec::new();
    for (name, column, ref_db, ref_table, ref_column, on_update, on_delete) in rows {
        if out.last().is_none_or(|fk| fk.name != name) {
            let references_table = if ref_db == db {
                ref_table
            } else {
                format!("{ref_db}.{ref_table}")
            };
            out.push(ForeignKey {
                name,
                columns: Vec::new(),
                references_table,
                references_columns: Vec::new(),
                definition: String::new(),
            });
            rules.push((on_update, on_delete));
        }
        if let Some(fk) = out.last_mut() {
            fk.columns.push(column);
            fk.references_columns.push(ref_column);
        }
    }
    for (fk, (on_update, on_delete)) in out.iter_mut().zip(rules) {
        let list = |names: &[String]| {
            names
                .iter()
                .map(|n| ident(n))
                .collect::<Vec<_>>()
                .join(", ")
        };
        fk.definition = format!(
            "FOREIGN KEY ({}) REFERENCES {} ({}) ON DELETE {on_delete} ON UPDATE {on_update}",
            list(&fk.columns),
            fk.references_table
                .split('.')
                .map(ident)
                .collect::<Vec<_>>()
                .join("."),
            list(&fk.references_columns),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_parts_become_definitions() {
        let rows = vec![
            (
                "PRIMARY".into(),
                true,
                Some("id".into()),
                None,
                "BTREE".into(),
            ),
            (
                "by_name".into(),
                false,
                Some("last".into()),
                None,
                "BTREE".into(),
            ),
            (
                "by_name".into(),
                false,
                Some("first".into()),
                Some(10),
                "BTREE".into(),
            ),
            (
                "uq".into(),
                true,
                Some("email".into()),
                None,
                "BTREE".into(),
            ),
        ];
        let indexes = build_indexes(rows);
        let defs: Vec<&str> = indexes.iter().map(|i| i.definition.as_str()).collect();
        assert_eq!(
            defs,
            vec![
                "PRIMARY KEY (`id`)",
                "KEY `by_name` (`last`,`first`(10))",
                "UNIQUE KEY `uq` (`email`)"
            ]
        );
        assert!(indexes[0].primary && indexes[0].unique && !indexes[1].unique);
    }

    #[test]
    fn foreign_keys_gather_their_columns() {
        let row = |c: &str, r: &str| {
            (
                "fk".to_string(),
                c.to_string(),
                "db".to_string(),
                "parent".to_string(),
                r.to_string(),
                "RESTRICT".to_string(),
                "CASCADE".to_string(),
            )
        };
        let fks = build_foreign_keys("db", vec![row("a", "x"), row("b", "y")]);
        assert_eq!(fks.len(), 1);
        assert_eq!(fks[0].columns, vec!["a", "b"]);
        assert_eq!(
            fks[0].definition,
            "FOREIGN KEY (`a`, `b`) REFERENCES `parent` (`x`, `y`) ON DELETE CASCADE ON UPDATE RESTRICT"
        );
    }
}
