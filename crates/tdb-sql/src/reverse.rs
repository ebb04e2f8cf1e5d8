//! Reverse DDL for the changes a workspace can undo: CREATE TABLE -> DROP TABLE, CREATE INDEX ->
//! DROP INDEX, ALTER TABLE ... ADD COLUMN -> ALTER TABLE ... DROP COLUMN. Anything else has no
//! reverse, and the error says why.

use pg_query::NodeEnum;
use pg_query::protobuf::{AlterTableType, RangeVar};

use crate::quote_ident;

fn qualified(rel: &RangeVar) -> String {
    if rel.schemaname.is_empty() {
        quote_ident(&rel.relname)
    } else {
        format!(
            "{}.{}",
            quote_ident(&rel.schemaname),
            quote_ident(&rel.relname)
        )
    }
}

/// The statement that undoes `statement`, or why there is none.
pub fn reverse(statement: &str) -> Result<String, String> {
    let parsed = pg_query::parse(statement, pg_query::ParserOptions::DEFAULT)
        .map_err(|e| format!("cannot parse the statement: {e}"))?;
    if parsed.protobuf.stmts.len() != 1 {
        return Err("only a single statement can be reverted".into());
    }
    let node = parsed.protobuf.stmts[0]
        .stmt
        .as_ref()
        .and_then(|n| n.node.as_ref());
    match node {
        Some(NodeEnum::CreateStmt(c)) => {
            let rel = c
                .relation
                .as_ref()
                .ok_or("CREATE TABLE without a table name")?;
            Ok(format!("DROP TABLE IF EXISTS {}", qualified(rel)))
        }
        Some(NodeEnum::IndexStmt(i)) => {
            if i.idxname.is_empty() {
                return Err("the index was created without a name; drop it by hand".into());
            }
            let schema = i
                .relation
                .as_ref()
                .map(|r| r.schemaname.as_str())
                .unwrap_or("");
            let name = if schema.is_empty() {
                quote_ident(&i.idxname)
            } else {
                format!("{}.{}", quote_ident(schema), quote_ident(&i.idxname))
            };
            Ok(format!("DROP INDEX IF EXISTS {name}"))
        }
        Some(NodeEnum::AlterTableStmt(a)) => reverse_add_columns(a),
        _ => Err(
            "no automatic reverse for this statement (supported: CREATE TABLE, CREATE INDEX, \
             ALTER TABLE ... ADD COLUMN); write the reverse as a new statement"
                .into(),
        ),
    }
}

fn reverse_add_columns(a: &pg_query::protobuf::AlterTableStmt) -> Result<String, String> {
    let rel = a
        .relation
        .as_ref()
        .ok_or("ALTER TABLE without a table name")?;
    let mut drops = Vec::new();
    for cmd in &a.cmds {
        let Some(NodeEnum::AlterTableCmd(cmd)) = cmd.node.as_ref() else {
            return Err("unexpected ALTER TABLE form".into());
        };
        if cmd.subtype != AlterTableType::AtAddColumn as i32 {
            return Err("only ALTER TABLE ... ADD COLUMN can be reverted automatically".into());
        }
        let Some(NodeEnum::ColumnDef(col)) = cmd.def.as_ref().and_then(|d| d.node.as_ref()) else {
            return Err("ADD COLUMN without a column definition".into());
        };
        drops.push(format!(
            "DROP COLUMN IF EXISTS {}",
            quote_ident(&col.colname)
        ));
    }
    if drops.is_empty() {
        return Err("ALTER TABLE without actions".into());
    }
    Ok(format!(
        "ALTER TABLE {} {}",
        qualified(rel),
        drops.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::reverse;

    #[test]
    fn reverses_the_supported_forms() {
        let cases = [
            ("CREATE TABLE users (id int)", "DROP TABLE IF EXISTS users"),
            (
                "create table public.\"Order\" (id int)",
                "DROP TABLE IF EXISTS public.\"Order\"",
            ),
            (
                "CREATE INDEX users_email_idx ON users (email)",
                "DROP INDEX IF EXISTS users_email_idx",
            ),
            (
                "CREATE UNIQUE INDEX ix ON app.users (email)",
                "DROP INDEX IF EXISTS app.ix",
            ),
            (
                "ALTER TABLE users ADD COLUMN age int",
                "ALTER TABLE users DROP COLUMN IF EXISTS age",
            ),
            (
                "ALTER TABLE users ADD COLUMN a int, ADD COLUMN \"B\" text",
                "ALTER TABLE users DROP COLUMN IF EXISTS a, DROP COLUMN IF EXISTS \"B\"",
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(reverse(input).as_deref(), Ok(expected), "{input}");
        }
    }

    #[test]
    fn refuses_the_rest_with_a_reason() {
        for input in [
            "CREATE INDEX ON users (email)",
            "ALTER TABLE users DROP COLUMN age",
            "ALTER TABLE users ADD COLUMN a int, DROP COLUMN b",
            "DROP TABLE users",
            "CREATE VIEW v AS SELECT 1",
            "SELECT 1; SELECT 2",
        ] {
            let err = reverse(input).expect_err(input);
            assert!(!err.is_empty());
        }
    }
}

/// The table a `CREATE TABLE` statement creates, as `(schema, name)` (schema empty when not
/// given); `None` for any other statement.
pub fn created_table(statement: &str) -> Option<(String, String)> {
    let parsed = pg_query::parse(statement, pg_query::ParserOptions::DEFAULT).ok()?;
    match parsed
        .protobuf
        .stmts
        .first()?
        .stmt
        .as_ref()?
        .node
        .as_ref()?
    {
        NodeEnum::CreateStmt(c) => {
            let rel = c.relation.as_ref()?;
            Some((rel.schemaname.clone(), rel.relname.clone()))
        }
        _ => None,
    }
}

#[cfg(test)]
mod created_tests {
    #[test]
    fn names_the_created_table() {
        assert_eq!(
            super::created_table("CREATE TABLE public.users (id int)"),
            Some(("public".into(), "users".into()))
        );
        assert_eq!(
            super::created_table("CREATE TABLE t (id int)"),
            Some((String::new(), "t".into()))
        );
        assert_eq!(super::created_table("CREATE INDEX i ON t (a)"), None);
    }
}
