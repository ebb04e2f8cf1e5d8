//! `GET /workspaces/{id}/schema` as the reference shows it: a table's `indexes` is the list of
//! its index names. What tdb knows besides (each index's definition, and whether it is primary
//! or unique) is under `index_details`.

use serde::Serialize;
use tdb_engines::schema::{Check, Column, ForeignKey, Index, Schema, Table};
use utoipa::ToSchema;

/// A workspace's tables, read from the database itself.
#[derive(Debug, Serialize, ToSchema)]
pub struct WorkspaceSchema {
    pub tables: Vec<TableSchema>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TableSchema {
    /// `name`, or `schema.name` outside `public`.
    pub name: String,
    pub columns: Vec<Column>,
    /// The index names, as the reference lists them.
    pub indexes: Vec<String>,
    /// The same indexes with their definitions.
    pub index_details: Vec<Index>,
    pub foreign_keys: Vec<ForeignKey>,
    pub checks: Vec<Check>,
}

impl From<Schema> for WorkspaceSchema {
    fn from(schema: Schema) -> Self {
        Self {
            tables: schema.tables.into_iter().map(TableSchema::from).collect(),
        }
    }
}

impl From<Table> for TableSchema {
    fn from(t: Table) -> Self {
        Self {
            name: t.name,
            columns: t.columns,
            indexes: t.indexes.iter().map(|i| i.name.clone()).collect(),
            index_details: t.indexes,
            foreign_keys: t.foreign_keys,
            checks: t.checks,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_are_names_and_details_keep_the_rest() {
        let index = |name: &str, primary: bool| Index {
            name: name.into(),
            definition: format!("CREATE INDEX {name} ON t (id)"),
            primary,
            unique: primary,
        };
        let table = Table {
            name: "t".into(),
            columns: Vec::new(),
            indexes: vec![index("t_id_idx", false), index("t_pkey", true)],
            foreign_keys: Vec::new(),
            checks: Vec::new(),
        };
        let answer = serde_json::to_value(WorkspaceSchema::from(Schema {
            tables: vec![table],
        }))
        .expect("serialize");
        let t = &answer["tables"][0];
        assert_eq!(t["indexes"], serde_json::json!(["t_id_idx", "t_pkey"]));
        assert_eq!(t["index_details"][1]["primary"], true);
        assert_eq!(
            t["index_details"][0]["definition"],
            "CREATE INDEX t_id_idx ON t (id)"
        );
    }
}
