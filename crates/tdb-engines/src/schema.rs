//! A database's schema as introspection reports it: comparable between databases, so two
//! databases with the same DDL report equal schemas. The parts of a table carry OpenAPI schemas,
//! as the API answers them.

use serde::Serialize;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Schema {
    pub tables: Vec<Table>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Table {
    /// `name`, or `schema.name` outside `public`.
    pub name: String,
    pub columns: Vec<Column>,
    pub indexes: Vec<Index>,
    pub foreign_keys: Vec<ForeignKey>,
    pub checks: Vec<Check>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Index {
    pub name: String,
    pub definition: String,
    pub primary: bool,
    pub unique: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ForeignKey {
    pub name: String,
    pub columns: Vec<String>,
    pub references_table: String,
    pub references_columns: Vec<String>,
    pub definition: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Check {
    pub name: String,
    pub definition: String,
}

/// What a role sees of a database it connects to: the schemas it may use and their tables and
/// views (a connection's introspection).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DatabaseOverview {
    pub schemas: Vec<SchemaOverview>,
}

impl DatabaseOverview {
    pub fn table_count(&self) -> usize {
        self.schemas.iter().map(|s| s.tables.len()).sum()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SchemaOverview {
    pub name: String,
    pub tables: Vec<TableOverview>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
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

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ColumnOverview {
    pub name: String,
    #[serde(rename = "type")]
    pub data_type: String,
    pub nullable: bool,
    pub default: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IndexOverview {
    pub name: String,
    /// Key columns; an expression appears as its text.
    pub columns: Vec<String>,
    pub unique: bool,
    pub primary: bool,
    pub definition: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ForeignKeyOverview {
    pub name: String,
    pub columns: Vec<String>,
    pub ref_schema: String,
    pub ref_table: String,
    pub ref_columns: Vec<String>,
    pub on_update: String,
    pub on_delete: String,
}
