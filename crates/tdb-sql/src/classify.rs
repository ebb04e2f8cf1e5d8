//! Statement classification from the parse tree, never from keywords in the text, so strings,
//! comments and dollar quotes cannot disguise or fake a statement.

use pg_query::NodeEnum;
use pg_query::protobuf::{Node, TransactionStmtKind};

use crate::{SqlError, split};

/// What a statement does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// Reads only (SELECT, VALUES, SHOW, EXPLAIN without ANALYZE of a write).
    Query,
    /// Changes rows, not structure (INSERT, UPDATE, DELETE, MERGE, COPY, CALL, EXECUTE, ...).
    Dml,
    /// Changes structure or privileges: everything the schema history must record. Also DO
    /// blocks and SELECT INTO, which can create objects.
    Ddl,
    /// Transaction control.
    Transaction(TxOp),
    /// Session and maintenance statements (SET, LISTEN, VACUUM, ...).
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxOp {
    Begin,
    Commit,
    Rollback,
    /// `COMMIT AND CHAIN`: commits and at once opens a new transaction.
    CommitAndChain,
    /// `ROLLBACK AND CHAIN`: rolls back and at once opens a new transaction.
    RollbackAndChain,
    Savepoint(String),
    Release(String),
    RollbackTo(String),
    /// Two-phase commit statements.
    TwoPhase,
}

/// One statement of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement<'a> {
    /// The statement as written (trimmed, without its semicolon).
    pub text: &'a str,
    pub kind: Kind,
    /// A command tag such as `CREATE TABLE`.
    pub tag: String,
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
    let parsed = pg_query::parse(text, pg_query::ParserOptions::DEFAULT)?;
    let node = parsed
        .protobuf
        .stmts
        .first()
        .and_then(|s| s.stmt.as_ref())
        .and_then(|s| s.node.as_ref());
    Ok(match node {
        Some(node) => {
            let tag = tag_of(node)
                .map(str::to_string)
                .or_else(|| parsed.statement_types().first().map(|t| t.to_string()))
                .unwrap_or_else(|| "STATEMENT".into());
            (kind_of(node), tag)
        }
        None => (Kind::Other, String::new()),
    })
}

fn inner_kind(node: Option<&Node>) -> Kind {
    node.and_then(|n| n.node.as_ref())
        .map_or(Kind::Query, kind_of)
}

fn kind_of(node: &NodeEnum) -> Kind {
    use NodeEnum as N;
    match node {
        N::SelectStmt(s) if s.into_clause.is_some() => Kind::Ddl,
        N::SelectStmt(s) if writes_in_with(s.with_clause.as_ref()) => Kind::Dml,
        N::SelectStmt(_) | N::VariableShowStmt(_) => Kind::Query,
        N::InsertStmt(_) | N::UpdateStmt(_) | N::DeleteStmt(_) | N::MergeStmt(_) => Kind::Dml,
        N::CopyStmt(_) | N::CallStmt(_) | N::ExecuteStmt(_) | N::RefreshMatViewStmt(_) => Kind::Dml,
        N::TruncateStmt(_) | N::LockStmt(_) => Kind::Dml,
        N::ExplainStmt(e) => match inner_kind(e.query.as_deref()) {
            Kind::Query if !explain_analyzes(e) => Kind::Query,
            Kind::Query | Kind::Dml => Kind::Dml,
            _ => Kind::Ddl,
        },
        N::PrepareStmt(p) => match inner_kind(p.query.as_deref()) {
            Kind::Ddl => Kind::Ddl,
            _ => Kind::Other,
        },
        N::DeclareCursorStmt(d) => match inner_kind(d.query.as_deref()) {
            Kind::Query => Kind::Query,
            _ => Kind::Dml,
        },
        N::FetchStmt(_) | N::ClosePortalStmt(_) => Kind::Query,
        N::TransactionStmt(t) => Kind::Transaction(tx_op(t)),
        N::VariableSetStmt(_)
        | N::DeallocateStmt(_)
        | N::ListenStmt(_)
        | N::UnlistenStmt(_)
        | N::NotifyStmt(_)
        | N::DiscardStmt(_)
        | N::CheckPointStmt(_)
        | N::VacuumStmt(_)
        | N::ClusterStmt(_)
        | N::ReindexStmt(_)
        | N::ConstraintsSetStmt(_) => Kind::Other,
        _ => Kind::Ddl,
    }
}

fn writes_in_with(with: Option<&pg_query::protobuf::WithClause>) -> bool {
    with.is_some_and(|w| {
        w.ctes.iter().any(|cte| match cte.node.as_ref() {
            Some(NodeEnum::CommonTableExpr(c)) => {
                !matches!(inner_kind(c.ctequery.as_deref()), Kind::Query)
            }
            _ => false,
        })
    })
}

fn explain_analyzes(e: &pg_query::protobuf::ExplainStmt) -> bool {
    e.options.iter().any(|o| match o.node.as_ref() {
        Some(NodeEnum::DefElem(d)) => d.defname.eq_ignore_ascii_case("analyze"),
        _ => false,
    })
}

fn tx_op(t: &pg_query::protobuf::TransactionStmt) -> TxOp {
    let name = t.savepoint_name.clone();
    match TransactionStmtKind::try_from(t.kind).unwrap_or(TransactionStmtKind::Undefined) {
        TransactionStmtKind::TransStmtBegin | TransactionStmtKind::TransStmtStart => TxOp::Begin,
        TransactionStmtKind::TransStmtCommit if t.chain => TxOp::CommitAndChain,
        TransactionStmtKind::TransStmtCommit => TxOp::Commit,
        TransactionStmtKind::TransStmtRollback if t.chain => TxOp::RollbackAndChain,
        TransactionStmtKind::TransStmtRollback => TxOp::Rollback,
        TransactionStmtKind::TransStmtSavepoint => TxOp::Savepoint(name),
        TransactionStmtKind::TransStmtRelease => TxOp::Release(name),
        TransactionStmtKind::TransStmtRollbackTo => TxOp::RollbackTo(name),
        _ => TxOp::TwoPhase,
    }
}

/// A readable command tag for the statement (`CREATE TABLE`, `ALTER TABLE`, …).
fn tag_of(node: &NodeEnum) -> Option<&'static str> {
    use NodeEnum as N;
    let tag = match node {
        N::SelectStmt(s) if s.into_clause.is_some() => "SELECT INTO",
        N::SelectStmt(_) => "SELECT",
        N::InsertStmt(_) => "INSERT",
        N::UpdateStmt(_) => "UPDATE",
        N::DeleteStmt(_) => "DELETE",
        N::MergeStmt(_) => "MERGE",
        N::CreateStmt(_) => "CREATE TABLE",
        N::CreateTableAsStmt(_) => "CREATE TABLE AS",
        N::AlterTableStmt(_) => "ALTER TABLE",
        N::IndexStmt(_) => "CREATE INDEX",
        N::ViewStmt(_) => "CREATE VIEW",
        N::DropStmt(_) => "DROP",
        N::CreateFunctionStmt(_) => "CREATE FUNCTION",
        N::AlterFunctionStmt(_) => "ALTER FUNCTION",
        N::CompositeTypeStmt(_) | N::CreateEnumStmt(_) | N::CreateRangeStmt(_) => "CREATE TYPE",
        N::AlterEnumStmt(_) => "ALTER TYPE",
        N::CreateDomainStmt(_) => "CREATE DOMAIN",
        N::AlterDomainStmt(_) => "ALTER DOMAIN",
        N::DefineStmt(_) => "CREATE",
        N::CreateExtensionStmt(_) => "CREATE EXTENSION",
        N::AlterExtensionStmt(_) => "ALTER EXTENSION",
        N::CreateSchemaStmt(_) => "CREATE SCHEMA",
        N::CreateSeqStmt(_) => "CREATE SEQUENCE",
        N::AlterSeqStmt(_) => "ALTER SEQUENCE",
        N::CreateTrigStmt(_) => "CREATE TRIGGER",
        N::CreatePolicyStmt(_) => "CREATE POLICY",
        N::AlterPolicyStmt(_) => "ALTER POLICY",
        N::CommentStmt(_) => "COMMENT",
        N::GrantStmt(g) if g.is_grant => "GRANT",
        N::GrantStmt(_) => "REVOKE",
        N::GrantRoleStmt(_) => "GRANT ROLE",
        N::RenameStmt(_) => "RENAME",
        N::AlterObjectSchemaStmt(_) => "ALTER SET SCHEMA",
        N::AlterOwnerStmt(_) => "ALTER OWNER",
        N::RuleStmt(_) => "CREATE RULE",
        N::DoStmt(_) => "DO",
        N::TruncateStmt(_) => "TRUNCATE",
        N::CopyStmt(_) => "COPY",
        N::ExplainStmt(_) => "EXPLAIN",
        N::TransactionStmt(_) => "TRANSACTION",
        N::VariableSetStmt(_) => "SET",
        N::VariableShowStmt(_) => "SHOW",
        N::CallStmt(_) => "CALL",
        N::PrepareStmt(_) => "PREPARE",
        N::ExecuteStmt(_) => "EXECUTE",
        _ => return None,
    };
    Some(tag)
}

/// Schemas a provisioned session may name in `SET search_path` besides its own: they hold
/// nothing of another tenant's (`"$user"` names a schema that does not exist).
const HARMLESS_SCHEMAS: [&str; 4] = ["pg_catalog", "pg_temp", "public", "$user"];

/// Why a batch sent to a provisioned (schema-per-tenant) database is refused, or `None`.
/// Refused: changing the role (`SET ROLE`, `SET SESSION AUTHORIZATION`, in any form but
/// `RESET`), `ALTER ROLE`/`ALTER USER`, `ALTER DATABASE … SET`, a `SET search_path` naming a
/// schema other than `own_schema` (and the harmless ones), and `LISTEN`, `UNLISTEN` and
/// `NOTIFY`, whose channels every database on the server shares. A batch that does not parse
/// is left to the server. This guards against mistakes; the database's privileges are the wall.
pub fn pinned_session_refusal(sql: &str, own_schema: &str) -> Option<String> {
    if !names_a_refused_keyword(sql) {
        return None;
    }
    // Fail closed: a statement that names a refused keyword and cannot be parsed (too deeply
    // nested, say) might be hiding one of them.
    parsed_refusal(sql, own_schema).unwrap_or_else(|()| {
        Some(
            "this statement could not be analysed, and it names SET, ALTER, LISTEN or NOTIFY; \
             on a provisioned database such statements must be checked before they run"
                .to_string(),
        )
    })
}

/// Whether `sql` may hold what transaction pooling refuses (`LISTEN`, `PREPARE`): a cheap scan
/// for the words, before any parsing.
pub fn may_be_refused_when_pooled(sql: &[u8]) -> bool {
    sql.windows(6).any(|w| w.eq_ignore_ascii_case(b"listen"))
        || sql.windows(7).any(|w| w.eq_ignore_ascii_case(b"prepare"))
}

/// Why a batch is refused under transaction pooling, or `None`. Each would stay on a server
/// connection that other clients' transactions use next: `LISTEN` subscribes it, and its
/// notifications would never reach the client that asked; SQL `PREPARE` leaves a statement
/// there (the protocol's prepared statements, which drivers use, are carried per client). A
/// batch that does not parse goes on to the server, whose syntax error the client then sees.
pub fn transaction_pooling_refusal(sql: &str) -> Option<String> {
    if !may_be_refused_when_pooled(sql.as_bytes()) {
        return None;
    }
    let parsed = pg_query::parse(sql, pg_query::ParserOptions::DEFAULT).ok()?;
    parsed.protobuf.stmts.iter().find_map(|raw| {
        match raw.stmt.as_ref()?.node.as_ref()? {
            NodeEnum::ListenStmt(_) => Some(
                "LISTEN is not available under transaction pooling: notifications would go to \
                 a server connection other clients share; set the workspace's pool_mode to \
                 session for clients that listen",
            ),
            NodeEnum::PrepareStmt(_) => Some(
                "PREPARE is not available under transaction pooling: the statement would stay \
                 on a server connection other clients share; use the protocol's prepared \
                 statements (drivers do), or set the workspace's pool_mode to session",
            ),
            _ => None,
        }
        .map(str::to_string)
    })
}

/// [`pinned_session_refusal`] by the parse tree alone; `Err` when `sql` does not parse.
fn parsed_refusal(sql: &str, own_schema: &str) -> Result<Option<String>, ()> {
    use pg_query::protobuf::VariableSetKind;
    let parsed = pg_query::parse(sql, pg_query::ParserOptions::DEFAULT).map_err(|_| ())?;
    let fixed = |what: &str| {
        format!("{what} is not allowed on a provisioned database: its role and schema are fixed")
    };
    Ok(parsed.protobuf.stmts.iter().find_map(|raw| {
        let node = raw.stmt.as_ref()?.node.as_ref()?;
        match node {
            NodeEnum::VariableSetStmt(v) => {
                if matches!(
                    VariableSetKind::try_from(v.kind),
                    Ok(VariableSetKind::VarReset | VariableSetKind::VarResetAll)
                ) {
                    return None;
                }
                match v.name.to_ascii_lowercase().as_str() {
                    "search_path" => {
                        let names: Vec<Option<String>> = v.args.iter().map(const_text).collect();
                        let stays = !names.is_empty()
                            && names.iter().all(|n| {
                                n.as_deref().is_some_and(|n| {
                                    n == own_schema || HARMLESS_SCHEMAS.contains(&n)
                                })
                            });
                        (!stays).then(|| {
                            format!(
                                "SET search_path may name only this database's schema \
                                 ({own_schema}) on a provisioned database"
                            )
                        })
                    }
                    "role" => Some(fixed("SET ROLE")),
                    "session_authorization" => Some(fixed("SET SESSION AUTHORIZATION")),
                    _ => None,
                }
            }
            NodeEnum::AlterRoleStmt(_) | NodeEnum::AlterRoleSetStmt(_) => Some(fixed("ALTER ROLE")),
            NodeEnum::AlterDatabaseSetStmt(_) => Some(fixed("ALTER DATABASE … SET")),
            NodeEnum::ListenStmt(_) | NodeEnum::UnlistenStmt(_) | NodeEnum::NotifyStmt(_) => {
                Some("LISTEN and NOTIFY are not allowed on a provisioned database".to_string())
            }
            _ => None,
        }
    }))
}

/// Whether `sql` holds one of the keywords every refused statement starts with or contains
/// (`SET`, `ALTER`, `LISTEN`/`UNLISTEN`, `NOTIFY`), in any case, anywhere. A keyword is always
/// written as those plain letters (a comment or quotes would make it something else), so a batch
/// without any of them cannot be refused and is not parsed: most statements, and all the long
/// ones that are only data, pass with a scan of their bytes.
fn names_a_refused_keyword(sql: &str) -> bool {
    const KEYWORDS: [&[u8]; 4] = [b"set", b"alter", b"listen", b"notify"];
    let bytes = sql.as_bytes();
    (0..bytes.len()).any(|i| {
        KEYWORDS.iter().any(|k| {
            bytes
                .get(i..i + k.len())
                .is_some_and(|w| w.eq_ignore_ascii_case(k))
        })
    })
}

/// The text of a string or identifier constant (`SET x = foo`, `'foo'`, `"Foo"`).
fn const_text(node: &pg_query::protobuf::Node) -> Option<String> {
    match node.node.as_ref()? {
        NodeEnum::AConst(c) => match c.val.as_ref()? {
            pg_query::protobuf::a_const::Val::Sval(s) => Some(s.sval.clone()),
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod pinned_tests {
    use super::pinned_session_refusal;

    const OWN: &str = "tenant_a1b2c3d4e5f6_7890abcd";

    #[test]
    fn identity_changes_and_shared_channels_are_refused() {
        for sql in [
            "SET search_path TO other",
            "set SEARCH_PATH = tenant_a1b2c3d4e5f6_7890abcd, other",
            "SELECT 1; SET LOCAL search_path = x",
            "SET search_path TO DEFAULT",
            "SET ROLE postgres",
            "SET SESSION AUTHORIZATION postgres",
            "ALTER ROLE CURRENT_USER SET search_path = other",
            "ALTER USER someone WITH PASSWORD 'x'",
            "ALTER DATABASE db SET search_path = other",
            "LISTEN jobs",
            "NOTIFY jobs, 'payload'",
            "UNLISTEN *",
        ] {
            assert!(pinned_session_refusal(sql, OWN).is_some(), "{sql}");
        }
    }

    #[test]
    fn everything_else_passes() {
        for sql in [
            "SET search_path TO tenant_a1b2c3d4e5f6_7890abcd",
            "SET search_path = 'tenant_a1b2c3d4e5f6_7890abcd', public, pg_catalog",
            "SET search_path TO \"$user\", tenant_a1b2c3d4e5f6_7890abcd",
            "SELECT 'SET search_path TO other'",
            "RESET search_path",
            "RESET ALL",
            "SET statement_timeout = 5",
            "SHOW search_path",
            "CREATE TABLE t (id int)",
            "not sql at all",
        ] {
            assert_eq!(pinned_session_refusal(sql, OWN), None, "{sql}");
        }
    }

    #[test]
    fn a_statement_the_parser_cannot_take_is_refused_when_it_names_a_keyword() {
        // Finding 6 of the hardening review: a statement nested too deeply for the parser was
        // let through, and with it whatever it carried.
        let deep = format!(
            "SELECT {}true; SET search_path TO other",
            "NOT ".repeat(2000)
        );
        assert!(
            pg_query::parse(&deep, pg_query::ParserOptions::DEFAULT).is_err(),
            "the parser took it; the test needs a deeper statement"
        );
        assert!(pinned_session_refusal(&deep, OWN).is_some());
        // Without a refused keyword there is nothing to hide, and nothing is parsed.
        let harmless = format!("SELECT {}true", "NOT ".repeat(2000));
        assert_eq!(pinned_session_refusal(&harmless, OWN), None);
    }

    #[test]
    fn the_keyword_scan_never_skips_a_refusal() {
        // Mixed case, keywords glued to punctuation, and keywords inside longer batches still
        // reach the parser.
        for sql in [
            "sEt RoLe postgres",
            "select 1;SET\tsearch_path=other",
            "/* c */ALTER\nrole current_user set search_path = x",
            "Listen jobs",
            "unlisten *",
            "NoTiFy jobs",
            "SET SCHEMA 'other'",
        ] {
            assert!(super::names_a_refused_keyword(sql), "{sql}");
            assert!(pinned_session_refusal(sql, OWN).is_some(), "{sql}");
        }
        for sql in ["SELECT 1", "INSERT INTO t VALUES (1, 'x')", "DELETE FROM t"] {
            assert!(!super::names_a_refused_keyword(sql), "{sql}");
        }
    }

    /// Statements every provisioned session is refused, as tokens.
    const REFUSED: [&[&str]; 11] = [
        &["SET", "ROLE", "postgres"],
        &["SET", "SESSION", "AUTHORIZATION", "postgres"],
        &["SET", "search_path", "TO", "other"],
        &["SET", "LOCAL", "search_path", "=", "other"],
        &["SET", "SCHEMA", "'other'"],
        &[
            "ALTER",
            "ROLE",
            "CURRENT_USER",
            "SET",
            "search_path",
            "=",
            "other",
        ],
        &["ALTER", "USER", "someone", "WITH", "PASSWORD", "'x'"],
        &[
            "ALTER",
            "DATABASE",
            "db",
            "SET",
            "search_path",
            "=",
            "other",
        ],
        &["LISTEN", "jobs"],
        &["UNLISTEN", "*"],
        &["NOTIFY", "jobs"],
    ];

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2048))]

        /// A refused statement in any letter case, with any separators between its tokens
        /// (comments included) and behind another statement, is still refused: the scan that
        /// lets batches skip the parser sees its keyword.
        #[test]
        fn refusals_survive_case_and_separators(
            which in 0..REFUSED.len(),
            flips in proptest::collection::vec(proptest::bool::ANY, 64),
            seps in proptest::collection::vec(
                proptest::sample::select(vec![" ", "\t", "\n", "  ", "/* c */", " /**/ "]), 8),
            behind in proptest::bool::ANY,
        ) {
            let mut sql = String::from(if behind { "SELECT 1;" } else { "" });
            let mut flip = flips.iter().cycle();
            for (i, token) in REFUSED[which].iter().enumerate() {
                if i > 0 {
                    sql.push_str(seps[i % seps.len()]);
                }
                for c in token.chars() {
                    let upper = *flip.next().unwrap_or(&false);
                    sql.push(if upper { c.to_ascii_uppercase() } else { c.to_ascii_lowercase() });
                }
            }
            proptest::prop_assert!(super::names_a_refused_keyword(&sql), "{}", sql);
            proptest::prop_assert!(pinned_session_refusal(&sql, OWN).is_some(), "{}", sql);
        }

        /// Refused statements with a few characters deleted, replaced or inserted (quotes,
        /// escapes, comment marks, non-ASCII letters among them): whenever the parser still
        /// refuses the result, the scan finds a keyword in it.
        #[test]
        fn near_misses_the_parser_refuses_are_never_skipped(
            which in 0..REFUSED.len(),
            edits in proptest::collection::vec((0usize..200, 0u8..3, proptest::sample::select(vec![
                'x', ' ', '\'', '"', '\\', '/', '*', '-', ';', 'U', '&', '$', 'é', 'ſ', 'K', '0',
            ])), 1..4),
        ) {
            let mut sql: Vec<char> = REFUSED[which].join(" ").chars().collect();
            for (at, op, c) in edits {
                let at = at % (sql.len() + 1);
                match op {
                    0 if at < sql.len() => { sql.remove(at); }
                    1 if at < sql.len() => sql[at] = c,
                    _ => sql.insert(at, c),
                }
            }
            let sql: String = sql.into_iter().collect();
            if let Ok(Some(_)) = super::parsed_refusal(&sql, OWN) {
                proptest::prop_assert!(super::names_a_refused_keyword(&sql), "{}", sql);
            }
        }
    }
}

#[cfg(test)]
mod transaction_pooling_tests {
    use super::{may_be_refused_when_pooled, transaction_pooling_refusal};

    #[test]
    fn listen_and_prepare_are_refused_and_everything_else_passes() {
        for sql in [
            "LISTEN jobs",
            "select 1; listen \"Jobs\"",
            "BEGIN; LiStEn x; COMMIT",
            "PREPARE q AS SELECT 1",
            "prepare q(int) as select $1",
        ] {
            assert!(transaction_pooling_refusal(sql).is_some(), "{sql}");
        }
        for sql in [
            "SELECT 'listen'",
            "NOTIFY jobs",
            "UNLISTEN *",
            "SELECT listener FROM t",
            "SELEC listen",
            "PREPARE TRANSACTION 'x'",
            "EXECUTE q",
            "SELECT prepared_at FROM t",
        ] {
            assert_eq!(transaction_pooling_refusal(sql), None, "{sql}");
        }
        assert!(!may_be_refused_when_pooled(b"SELECT 1"));
    }
}
