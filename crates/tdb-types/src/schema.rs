//! A database's schema as introspection reports it (`GET /workspaces/{id}/schema` and a
//! connection's introspection): comparable between databases, so two databases with the same
//! DDL report equal schemas.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Schema {
    pub tables: Vec<Table>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Table {
    /// `name`, or `schema.name` outside `public`.
    pub name: String,
    pub columns: Vec<Column>,
    pub indexes: Vec<Index>,
    pub foreign_keys: Vec<ForeignKey>,
    pub checks: Vec<Check>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Column {
    pub name: String,
    #[serde(rename = "type")]
    pub data_type: String,
    pub nullable: bool,
    pub default: Option<String>,
    /// `always` or `by default` for identity columns.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Index {
    pub name: String,
    pub definition: String,
    pub primary: bool,
    pub unique: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ForeignKey {
    pub name: String,
    pub columns: Vec<String>,
    pub references_table: String,
    pub references_columns: Vec<String>,
    pub definition: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Check {
    pub name: String,
    pub definition: String,
}

/// What a role sees of a database it connects to: the schemas it may use and their tables and
/// views (a connection's introspection).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DatabaseOverview {
    pub schemas: Vec<SchemaOverview>,
}

impl DatabaseOverview {
    pub fn table_count(&self) -> usize {
        self.schemas.iter().map(|s| s.tables.len()).sum()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SchemaOverview {
    pub name: String,
    pub tables: Vec<TableOverview>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TableOverview {
    pub name: String,
    /// `table`, `partitioned_table`, `view`, `materialized_view` or `foreign_table`.
    pub kind: String,
    /// The planner's estimate; `None` before the table was first analyzed.
    pub row_estimate: Option<i64>,
    pub columns: Vec<ColumnOverview>,
    pub primary_key: Vec<String>,
    pub indexes: Vec<IndexOverview>,
    pub foreign_keys: Vec<ForeignKeyOverview>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ColumnOverview {
    pub name: String,
    #[serde(rename = "type")]
    pub data_type: String,
    pub nullable: bool,
    pub default: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct IndexOverview {
    pub name: String,
    /// Key columns; an expression appears as its text.
    pub columns: Vec<String>,
    pub unique: bool,
    pub primary: bool,
    pub definition: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ForeignKeyOverview {
    pub name: String,
    pub columns: Vec<String>,
    pub ref_schema: String,
    pub ref_table: String,
    pub ref_columns: Vec<String>,
    pub on_update: String,
    pub on_delete: String,
}

// `GET /workspaces/{id}/schema` as the reference shows it: a table's `indexes` is the list of
// its index names. What tdb knows besides (each index's definition, and whether it is primary
// or unique) is under `index_details`.

/// A workspace's tables, read from the database itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WorkspaceSchema {
    pub tables: Vec<TableSchema>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
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
