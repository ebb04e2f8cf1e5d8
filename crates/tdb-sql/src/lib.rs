//! SQL understood with PostgreSQL's own parser (libpg_query): splitting a batch into statements,
//! classifying each (query, DML, DDL, transaction control, other), and deriving the statement
//! that reverses simple DDL. Unknown statement types count as DDL, so anything new in the
//! grammar is captured (in workspaces) or refused (on tenants) rather than slipping through.

mod classify;
mod reverse;
mod session;

pub use classify::{
    Kind, Statement, TxOp, classify, classify_all, may_be_refused_when_pooled,
    pinned_session_refusal, transaction_pooling_refusal,
};
pub use reverse::{created_table, reverse};
pub use session::{Deallocation, custom_settings, deallocation, may_change_settings};

/// The parser refused the input; the message is PostgreSQL's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SqlError {
    pub message: String,
}

impl From<pg_query::Error> for SqlError {
    fn from(e: pg_query::Error) -> Self {
        let message = match e {
            pg_query::Error::Parse(m) | pg_query::Error::Split(m) => m,
            other => other.to_string(),
        };
        Self { message }
    }
}

/// Splits a batch into statements with the real parser (an invalid statement is an error,
/// never silently dropped). Each piece is trimmed and carries no trailing semicolon.
pub fn split(sql: &str) -> Result<Vec<&str>, SqlError> {
    Ok(pg_query::split_with_parser(sql)?
        .into_iter()
        .map(|s| s.trim().trim_end_matches(';').trim_end())
        .filter(|s| !s.is_empty())
        .collect())
}

/// Double-quotes an identifier when PostgreSQL would need it.
pub fn quote_ident(name: &str) -> String {
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain && !is_reserved(name) {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

fn is_reserved(word: &str) -> bool {
    // Words that cannot stand as bare identifiers; quoting a few more than needed is harmless.
    const RESERVED: &[&str] = &[
        "all",
        "analyse",
        "analyze",
        "and",
        "any",
        "array",
        "as",
        "asc",
        "asymmetric",
        "both",
        "case",
        "cast",
        "check",
        "collate",
        "column",
        "constraint",
        "create",
        "current_catalog",
        "current_date",
        "current_role",
        "current_time",
        "current_timestamp",
        "current_user",
        "default",
        "deferrable",
        "desc",
        "distinct",
        "do",
        "else",
        "end",
        "except",
        "false",
        "fetch",
        "for",
        "foreign",
        "from",
        "grant",
        "group",
        "having",
        "in",
        "initially",
        "intersect",
        "into",
        "lateral",
        "leading",
        "limit",
        "localtime",
        "localtimestamp",
        "not",
        "null",
        "offset",
        "on",
        "only",
        "or",
        "order",
        "placing",
        "primary",
        "references",
        "returning",
        "select",
        "session_user",
        "some",
        "symmetric",
        "table",
        "then",
        "to",
        "trailing",
        "true",
        "union",
        "unique",
        "user",
        "using",
        "variadic",
        "when",
        "where",
        "window",
        "with",
    ];
    RESERVED.contains(&word)
}
