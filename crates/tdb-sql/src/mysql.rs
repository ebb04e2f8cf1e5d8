//! MySQL (MariaDB) statements, understood with sqlparser's MySQL dialect: splitting a batch,
//! classifying each statement (the same [`Kind`]s as PostgreSQL's), the statements a tenant or
//! workspace connection may not run whatever its grants, and the reverse of simple DDL.
//!
//! As with PostgreSQL, classification reads the parse tree, never keywords in the text. What
//! the parser cannot read is an error, so a statement it does not understand is refused rather
//! than guessed at. MariaDB runs the text of `/*M! … */` comments, which no parser here reads:
//! a statement holding one is refused. (`/*! … */` is read: the dialect expands it.)

use sqlparser::ast::{self, ObjectType, Statement as Ast};
use sqlparser::dialect::MySqlDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Location, Token, TokenWithSpan, Tokenizer, Whitespace};

use crate::{Kind, SqlError, Statement, TxOp};

/// Splits a batch into statements at the semicolons between them (strings, quoted names and
/// comments are read as the server reads them). Each piece is trimmed, without its semicolon.
/// A semicolon inside a version comment (`/*!50000 …; … */`) is refused: where the server would
/// end a statement there is not something this reading can be sure of.
pub fn split(sql: &str) -> Result<Vec<&str>, SqlError> {
    let tokens = tokenize(sql)?;
    let offsets = LineOffsets::new(sql);
    let mut pieces = Vec::new();
    let mut start = 0;
    for t in &tokens {
        if t.token == Token::SemiColon {
            let at = offsets.byte(sql, t.span.start);
            // The tokens of a version comment carry positions inside the comment, not their
            // own: a semicolon that is not at its position came from one.
            if at < start || sql.as_bytes().get(at) != Some(&b';') {
                return Err(SqlError {
                    message: "a semicolon inside a version comment (/*! … */) is not accepted"
                        .into(),
                });
            }
            pieces.push(&sql[start..at]);
            start = at + 1;
        }
    }
    pieces.push(&sql[start..]);
    Ok(pieces
        .into_iter()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect())
}

/// Splits and classifies a batch.
pub fn classify_all(sql: &str) -> Result<Vec<Statement<'_>>, SqlError> {
    split(sql)?
        .into_iter()
        .map(|text| {
            let (kind, tag) = classify(text)?;
            Ok(Statement { text, kind, tag })
        })
        .collect()
}

/// Classifies one statement.
pub fn classify(text: &str) -> Result<(Kind, String), SqlError> {
    let ast = parse_one(text)?;
    Ok((kind_of(&ast), tag_of(text)))
}

/// Why a tenant's or workspace's connection may not run `statement`, whatever its grants allow
/// (the server's privileges are the wall; this is the first one, with a clearer message):
/// choosing or naming databases, files on the server, accounts and privileges, server-wide
/// settings, and the SQL modes under which the server would read a statement differently
/// from this parser. `own_database` is the session's database.
pub fn refusal(statement: &Statement<'_>, own_database: &str) -> Option<String> {
    let Ok(ast) = parse_one(statement.text) else {
        return Some(format!(
            "tdb could not parse this statement, so it is not run: {}",
            statement.text.chars().take(80).collect::<String>()
        ));
    };
    match &ast {
        Ast::Use(target) => use_refusal(target, own_database),
        Ast::LoadData { .. } | Ast::Load { .. } => {
            Some("LOAD DATA is not allowed: insert the rows with INSERT".into())
        }
        Ast::Query(q) if writes_file(q) => {
            Some("SELECT … INTO OUTFILE and INTO DUMPFILE are not allowed".into())
        }
        Ast::Grant(_) | Ast::Revoke(_) | Ast::GrantRole { .. } | Ast::RevokeRole { .. } => {
            Some("privileges are managed by tdb: GRANT and REVOKE are not allowed".into())
        }
        Ast::CreateUser(_) | Ast::AlterUser(_) | Ast::CreateRole(_) | Ast::AlterRole { .. } => {
            Some("accounts are managed by tdb: CREATE, ALTER and DROP USER are not allowed".into())
        }
        Ast::Drop {
            object_type: ObjectType::User | ObjectType::Role,
            ..
        } => {
            Some("accounts are managed by tdb: CREATE, ALTER and DROP USER are not allowed".into())
        }
        Ast::CreateDatabase { .. } | Ast::CreateSchema { .. } | Ast::AlterSchema(_) => {
            Some(DATABASE_REFUSAL.into())
        }
        Ast::Drop {
            object_type: ObjectType::Database | ObjectType::Schema,
            ..
        } => Some(DATABASE_REFUSAL.into()),
        Ast::Set(_) => set_refusal(statement.text),
        Ast::Install { .. } | Ast::Flush { .. } => {
            Some(format!("{} is not allowed", tag_of(statement.text)))
        }
        Ast::Kill { .. } => None,
        _ => None,
    }
}

const DATABASE_REFUSAL: &str =
    "databases are managed by tdb: CREATE, ALTER and DROP DATABASE are not allowed";

fn use_refusal(target: &ast::Use, own_database: &str) -> Option<String> {
    let name = match target {
        ast::Use::Object(name) | ast::Use::Database(name) | ast::Use::Schema(name) => name,
        _ => return Some("only USE <database> is allowed".into()),
    };
    let named = object_name(name);
    (named != own_database).then(|| {
        format!(
            "access denied to database '{named}': this connection may use '{own_database}' only"
        )
    })
}

/// `SET GLOBAL`/`PERSIST`, `SET PASSWORD`, and SQL modes that change how the server reads
/// quotes and backslashes (the split and the checks above would read the text otherwise). Read
/// from the statement's tokens, so a string that holds these words is only a string.
fn set_refusal(text: &str) -> Option<String> {
    let tokens = tokenize(text).ok()?;
    let words: Vec<String> = tokens
        .iter()
        .filter_map(|t| match &t.token {
            Token::Word(w) if w.quote_style.is_none() => Some(w.value.to_ascii_uppercase()),
            _ => None,
        })
        .collect();
    let server_wide = words.iter().any(|w| {
        matches!(
            w.trim_start_matches("@@"),
            "GLOBAL" | "PERSIST" | "PERSIST_ONLY"
        )
    });
    if server_wide {
        return Some("server-wide settings are not allowed: use SET SESSION".into());
    }
    if words.get(1).is_some_and(|w| w == "PASSWORD") {
        return Some("passwords are managed by tdb: SET PASSWORD is not allowed".into());
    }
    if !words
        .iter()
        .any(|w| w == "SQL_MODE" || w.ends_with(".SQL_MODE"))
    {
        return None;
    }
    let literals: Vec<&str> = tokens
        .iter()
        .filter_map(|t| match &t.token {
            Token::SingleQuotedString(s) => Some(s.as_str()),
            _ => None,
        })
        .collect();
    let unsafe_mode = literals.iter().any(|s| {
        s.split(',').any(|mode| {
            let mode = mode.trim().to_ascii_uppercase();
            matches!(
                mode.as_str(),
                "NO_BACKSLASH_ESCAPES" | "ANSI_QUOTES" | "ANSI"
            )
        })
    });
    (literals.is_empty() || unsafe_mode).then(|| {
        "sql_mode may be set only to a quoted list of modes without NO_BACKSLASH_ESCAPES, \
         ANSI_QUOTES or ANSI"
            .into()
    })
}

/// Whether a query writes a file on the server (`INTO OUTFILE`, `INTO DUMPFILE`).
fn writes_file(query: &ast::Query) -> bool {
    let rendered = query.to_string().to_ascii_uppercase();
    rendered.contains("INTO OUTFILE") || rendered.contains("INTO DUMPFILE")
}

fn object_name(name: &ast::ObjectName) -> String {
    name.0
        .iter()
        .filter_map(|part| part.as_ident().map(|i| i.value.clone()))
        .collect::<Vec<_>>()
        .join(".")
}

/// The statement that reverses a simple DDL statement: `CREATE TABLE` (→ `DROP TABLE`),
/// `CREATE INDEX` (→ `DROP INDEX … ON …`), `ALTER TABLE … ADD COLUMN` (→ `DROP COLUMN`).
pub fn reverse(statement: &str) -> Result<String, String> {
    let ast = parse_one(statement).map_err(|e| e.message)?;
    match &ast {
        Ast::CreateTable(t) => Ok(format!("DROP TABLE {}", quote_name(&t.name))),
        Ast::CreateIndex(ix) => {
            let name = ix
                .name
                .as_ref()
                .ok_or("CREATE INDEX without a name cannot be reversed")?;
            Ok(format!(
                "DROP INDEX {} ON {}",
                quote_name(name),
                quote_name(&ix.table_name)
            ))
        }
        Ast::AlterTable(alter) => reverse_add_columns(alter),
        _ => Err(format!(
            "only CREATE TABLE, CREATE INDEX and ADD COLUMN can be reverted, not {}",
            tag_of(statement)
        )),
    }
}

fn reverse_add_columns(alter: &ast::AlterTable) -> Result<String, String> {
    let mut drops = Vec::new();
    for op in &alter.operations {
        match op {
            ast::AlterTableOperation::AddColumn { column_def, .. } => {
                drops.push(format!(
                    "DROP COLUMN {}",
                    quote_ident(&column_def.name.value)
                ));
            }
            _ => return Err("only ALTER TABLE … ADD COLUMN can be reverted".into()),
        }
    }
    if drops.is_empty() {
        return Err("only ALTER TABLE … ADD COLUMN can be reverted".into());
    }
    Ok(format!(
        "ALTER TABLE {} {}",
        quote_name(&alter.name),
        drops.join(", ")
    ))
}

/// The table a `CREATE TABLE` statement makes, as `(database, name)` (database empty when not
/// given); `None` for any other statement.
pub fn created_table(statement: &str) -> Option<(String, String)> {
    let Ast::CreateTable(t) = parse_one(statement).ok()? else {
        return None;
    };
    let parts: Vec<String> = t
        .name
        .0
        .iter()
        .filter_map(|p| p.as_ident().map(|i| i.value.clone()))
        .collect();
    match parts.as_slice() {
        [name] => Some((String::new(), name.clone())),
        [database, name] => Some((database.clone(), name.clone())),
        _ => None,
    }
}

/// A MySQL identifier in backticks (a backtick inside is doubled).
pub fn quote_ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

fn quote_name(name: &ast::ObjectName) -> String {
    name.0
        .iter()
        .filter_map(|part| part.as_ident().map(|i| quote_ident(&i.value)))
        .collect::<Vec<_>>()
        .join(".")
}

fn tokenize(sql: &str) -> Result<Vec<TokenWithSpan>, SqlError> {
    let tokens = Tokenizer::new(&MySqlDialect {}, sql)
        .tokenize_with_location()
        .map_err(|e| SqlError {
            message: e.to_string(),
        })?;
    let executable = tokens.iter().any(|t| {
        matches!(&t.token, Token::Whitespace(Whitespace::MultiLineComment(c)) if c.starts_with("M!"))
    });
    if executable {
        return Err(SqlError {
            message: "MariaDB executable comments (/*M! … */) are not accepted".into(),
        });
    }
    Ok(tokens)
}

fn parse_one(text: &str) -> Result<Ast, SqlError> {
    tokenize(text)?;
    let mut parsed = Parser::parse_sql(&MySqlDialect {}, text).map_err(|e| SqlError {
        message: e.to_string(),
    })?;
    match (parsed.pop(), parsed.is_empty()) {
        (Some(ast), true) => Ok(ast),
        (None, _) => Err(SqlError {
            message: "empty statement".into(),
        }),
        (Some(_), false) => Err(SqlError {
            message: "one statement expected".into(),
        }),
    }
}

fn kind_of(ast: &Ast) -> Kind {
    match ast {
        Ast::Query(q) if writes_file(q) => Kind::Other,
        Ast::Query(q) if creates_table(q) => Kind::Ddl,
        Ast::Query(_)
        | Ast::ShowFunctions { .. }
        | Ast::ShowVariable { .. }
        | Ast::ShowStatus { .. }
        | Ast::ShowVariables { .. }
        | Ast::ShowCreate { .. }
        | Ast::ShowColumns { .. }
        | Ast::ShowDatabases { .. }
        | Ast::ShowSchemas { .. }
        | Ast::ShowTables { .. }
        | Ast::ShowViews { .. }
        | Ast::ShowCollation { .. }
        | Ast::ShowCharset(_)
        | Ast::ShowProcessList { .. }
        | Ast::ExplainTable { .. } => Kind::Query,
        Ast::Explain { analyze, .. } => {
            if *analyze {
                Kind::Dml
            } else {
                Kind::Query
            }
        }
        Ast::Insert(_) | Ast::Update(_) | Ast::Delete(_) | Ast::Call(_) | Ast::Merge(_) => {
            Kind::Dml
        }
        Ast::StartTransaction { .. } => Kind::Transaction(TxOp::Begin),
        Ast::Commit { chain, .. } => Kind::Transaction(if *chain {
            TxOp::CommitAndChain
        } else {
            TxOp::Commit
        }),
        Ast::Rollback { chain, savepoint } => Kind::Transaction(match (savepoint, chain) {
            (Some(name), _) => TxOp::RollbackTo(name.value.clone()),
            (None, true) => TxOp::RollbackAndChain,
            (None, false) => TxOp::Rollback,
        }),
        Ast::Savepoint { name } => Kind::Transaction(TxOp::Savepoint(name.value.clone())),
        Ast::ReleaseSavepoint { name } => Kind::Transaction(TxOp::Release(name.value.clone())),
        Ast::Set(_)
        | Ast::Use(_)
        | Ast::Kill { .. }
        | Ast::LockTables { .. }
        | Ast::UnlockTables
        | Ast::Prepare { .. }
        | Ast::Execute { .. }
        | Ast::Deallocate { .. }
        | Ast::LoadData { .. }
        | Ast::Load { .. }
        | Ast::Flush { .. }
        | Ast::Analyze(_)
        | Ast::OptimizeTable { .. } => Kind::Other,
        // Everything else changes structure, privileges or the server: DDL, so a workspace
        // captures it and a tenant refuses it.
        _ => Kind::Ddl,
    }
}

/// `SELECT … INTO <table>` forms that create a table (not MySQL's own `INTO @var`).
fn creates_table(query: &ast::Query) -> bool {
    matches!(&*query.body, ast::SetExpr::Select(s) if s.into.as_ref().is_some_and(|i| i.table))
}

/// A command tag such as `CREATE TABLE`, from the statement's first keywords.
fn tag_of(text: &str) -> String {
    let Ok(tokens) = tokenize(text) else {
        return String::new();
    };
    // Modifiers are left out, as PostgreSQL's tags leave them: `CREATE UNIQUE INDEX` is a
    // `CREATE INDEX`, `CREATE OR REPLACE VIEW` a `CREATE VIEW`.
    let words: Vec<String> = tokens
        .iter()
        .filter(|t| !matches!(t.token, Token::Whitespace(_)))
        .map_while(|t| match &t.token {
            Token::Word(w) if w.quote_style.is_none() => Some(w.value.to_ascii_uppercase()),
            _ => None,
        })
        .enumerate()
        .filter(|(i, w)| {
            *i == 0
                || !matches!(
                    w.as_str(),
                    "UNIQUE" | "FULLTEXT" | "SPATIAL" | "TEMPORARY" | "OR" | "REPLACE"
                )
        })
        .map(|(_, w)| w)
        .take(2)
        .collect();
    let take = match words.first().map(String::as_str) {
        Some("CREATE" | "DROP" | "ALTER" | "START" | "SET" | "RENAME" | "LOAD") => 2,
        _ => 1,
    };
    words.into_iter().take(take).collect::<Vec<_>>().join(" ")
}

/// Byte offsets of sqlparser's line and column (counted in characters) positions.
struct LineOffsets(Vec<usize>);

impl LineOffsets {
    fn new(sql: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(sql.match_indices('\n').map(|(i, _)| i + 1));
        Self(starts)
    }

    fn byte(&self, sql: &str, at: Location) -> usize {
        let line = usize::try_from(at.line.saturating_sub(1)).unwrap_or(usize::MAX);
        let Some(&start) = self.0.get(line) else {
            return sql.len();
        };
        let column = usize::try_from(at.column.saturating_sub(1)).unwrap_or(usize::MAX);
        sql[start..]
            .char_indices()
            .nth(column)
            .map_or(sql.len(), |(i, _)| start + i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(sql: &str) -> Vec<Kind> {
        classify_all(sql)
            .expect("classifies")
            .into_iter()
            .map(|s| s.kind)
            .collect()
    }

    #[test]
    fn batches_split_where_the_server_would() {
        let sql =
            "SELECT ';' AS a; INSERT INTO t VALUES ('x\\';y'); -- c;\n# h;\nSELECT `a;b` FROM t";
        let parts = split(sql).expect("splits");
        assert_eq!(
            parts,
            [
                "SELECT ';' AS a",
                "INSERT INTO t VALUES ('x\\';y')",
                "-- c;\n# h;\nSELECT `a;b` FROM t"
            ]
        );
        let utf8 = "SELECT 'é;ü' ;\nSELECT 'ß'";
        assert_eq!(split(utf8).expect("splits"), ["SELECT 'é;ü'", "SELECT 'ß'"]);
        assert!(split("SELECT 'unterminated").is_err());
    }

    #[test]
    fn statements_are_classified_from_the_parse_tree() {
        assert_eq!(
            kinds(
                "SELECT 1; SHOW TABLES; INSERT INTO t VALUES (1); UPDATE t SET a = 1; \
                 DELETE FROM t; BEGIN; COMMIT; ROLLBACK; SAVEPOINT s; SET autocommit = 0"
            ),
            [
                Kind::Query,
                Kind::Query,
                Kind::Dml,
                Kind::Dml,
                Kind::Dml,
                Kind::Transaction(TxOp::Begin),
                Kind::Transaction(TxOp::Commit),
                Kind::Transaction(TxOp::Rollback),
                Kind::Transaction(TxOp::Savepoint("s".into())),
                Kind::Other,
            ]
        );
        for ddl in [
            "CREATE TABLE t (id int PRIMARY KEY AUTO_INCREMENT, v varchar(10))",
            "CREATE INDEX ix ON t (v)",
            "ALTER TABLE t ADD COLUMN c int",
            "DROP TABLE t",
            "TRUNCATE TABLE t",
            "RENAME TABLE t TO u",
            "CREATE VIEW v AS SELECT 1",
            "GRANT SELECT ON t TO x",
            "CREATE DATABASE other",
        ] {
            assert_eq!(kinds(ddl), [Kind::Ddl], "{ddl}");
        }
    }

    #[test]
    fn strings_and_comments_cannot_disguise_a_statement() {
        assert_eq!(kinds("SELECT 'DROP TABLE t'"), [Kind::Query]);
        assert_eq!(
            kinds("/* CREATE TABLE x (a int) */ SELECT 1"),
            [Kind::Query]
        );
        // The server runs the text of version comments: so does the parser.
        assert_eq!(kinds("SELECT 1 /*!50000 , (SELECT 2) */"), [Kind::Query]);
        assert_eq!(kinds("/*!50000 CREATE TABLE t (a int) */"), [Kind::Ddl]);
        assert!(classify_all("SELECT 1 /*!50000 ; DROP TABLE t */").is_err());
        assert!(classify_all("SELECT 1 /*!;;;;*/").is_err());
        // MariaDB's own executable comments are refused outright.
        assert!(classify_all("SELECT 1 /*M! ; DROP TABLE t */").is_err());
        assert!(classify_all("SELEKT 1").is_err());
    }

    #[test]
    fn what_a_tenant_may_not_run_is_named() {
        // What the parser cannot read is refused too (the proxy answers a syntax error).
        let refused = |sql: &str| match classify_all(sql) {
            Ok(mut all) => refusal(&all.remove(0), "shop__acme"),
            Err(e) => Some(e.message),
        };
        assert!(refused("USE shop__acme").is_none());
        assert!(refused("USE `shop__acme`").is_none());
        assert!(refused("USE shop__other").is_some_and(|m| m.contains("shop__other")));
        assert!(refused("USE mysql").is_some());
        assert!(refused("LOAD DATA INFILE '/etc/passwd' INTO TABLE t").is_some());
        assert!(refused("SELECT * FROM t INTO OUTFILE '/tmp/x'").is_some());
        assert!(refused("GRANT ALL ON *.* TO 'me'@'%'").is_some());
        assert!(refused("CREATE USER 'x'@'%'").is_some());
        assert!(refused("DROP USER 'x'@'%'").is_some());
        assert!(refused("CREATE DATABASE x").is_some());
        assert!(refused("DROP DATABASE shop__acme").is_some());
        assert!(refused("SET GLOBAL max_connections = 1").is_some());
        assert!(refused("SET @@global.max_connections = 1").is_some());
        assert!(refused("SET sql_mode = 'NO_BACKSLASH_ESCAPES'").is_some());
        assert!(refused("SET SESSION sql_mode = 'STRICT_TRANS_TABLES,ANSI_QUOTES'").is_some());
        assert!(refused("SET sql_mode = 'STRICT_TRANS_TABLES'").is_none());
        assert!(refused("SET PASSWORD = 'x'").is_some());
        assert!(refused("SET PASSWORD FOR 'root'@'localhost' = 'x'").is_some());
        assert!(refused("SELECT 1 INTO DUMPFILE '/tmp/y'").is_some());
        assert!(refused("SET autocommit = 0").is_none());
        // Words inside strings are only strings.
        assert!(refused("SET @x = 'SET GLOBAL'").is_none());
        assert!(refused("SET @y = 'PASSWORD'").is_none());
        assert!(refused("SET @@session.sql_mode = 'TRADITIONAL'").is_none());
        assert!(refused("SET @@session.sql_mode = 'ANSI'").is_some());
        assert!(refused("KILL QUERY 12").is_none());
        assert!(refused("SELECT * FROM t").is_none());
        assert!(refused("INSERT INTO t VALUES (1)").is_none());
    }

    #[test]
    fn tags_name_the_statement_without_its_modifiers() {
        let tag = |sql| classify(sql).expect("classifies").1;
        assert_eq!(tag("CREATE UNIQUE INDEX i ON t (a)"), "CREATE INDEX");
        assert_eq!(tag("create table t (a int)"), "CREATE TABLE");
        assert_eq!(tag("CREATE OR REPLACE VIEW v AS SELECT 1"), "CREATE VIEW");
        assert_eq!(tag("ALTER TABLE t ADD COLUMN b int"), "ALTER TABLE");
        assert_eq!(tag("SELECT 1"), "SELECT");
        // REPLACE leads a statement of its own; it is a modifier only after CREATE OR.
        assert_eq!(tag("REPLACE INTO t VALUES (1)"), "REPLACE");
    }

    #[test]
    fn simple_ddl_is_reversed() {
        assert_eq!(
            reverse("CREATE TABLE shop.users (id int)").as_deref(),
            Ok("DROP TABLE `shop`.`users`")
        );
        assert_eq!(
            reverse("CREATE INDEX ix_v ON t (v)").as_deref(),
            Ok("DROP INDEX `ix_v` ON `t`")
        );
        assert_eq!(
            reverse("ALTER TABLE t ADD COLUMN c int, ADD COLUMN d text").as_deref(),
            Ok("ALTER TABLE `t` DROP COLUMN `c`, DROP COLUMN `d`")
        );
        assert!(reverse("DROP TABLE t").is_err());
        assert!(reverse("ALTER TABLE t DROP COLUMN c").is_err());
        assert_eq!(
            created_table("CREATE TABLE `a``b` (x int)"),
            Some((String::new(), "a`b".into()))
        );
    }
}
