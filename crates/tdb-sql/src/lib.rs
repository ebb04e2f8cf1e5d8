//! SQL understood with PostgreSQL's own parser (libpg_query): splitting a batch into statements,
//! classifying each (query, DML, DDL, transaction control, other), and deriving the statement
//! that reverses simple DDL. Unknown statement types count as DDL, so anything new in the
//! grammar is captured (in workspaces) or refused (on tenants) rather than slipping through.

mod classify;
pub mod mysql;
pub mod redis;
mod reverse;
mod session;

pub use classify::{
    Kind, Statement, TxOp, classify, classify_all, may_be_refused_when_pooled,
    pinned_session_refusal, transaction_pooling_refusal,
};
pub use reverse::{created_table, reverse};
pub use session::{Deallocation, custom_settings, deallocation, may_change_settings};

/// The SQL dialect of an engine: which parser splits, classifies and reverses its statements
/// (for Redis, its command lines: see [`redis`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Postgres,
    Mysql,
    Redis,
}

impl Dialect {
    /// Splits and classifies a batch (see [`classify_all`] and [`mysql::classify_all`]).
    pub fn classify_all(self, sql: &str) -> Result<Vec<Statement<'_>>, SqlError> {
        match self {
            Self::Postgres => classify_all(sql),
            Self::Mysql => mysql::classify_all(sql),
            Self::Redis => redis::classify_all(sql),
        }
    }

    /// Splits a batch into statements.
    pub fn split(self, sql: &str) -> Result<Vec<&str>, SqlError> {
        match self {
            Self::Postgres => split(sql),
            Self::Mysql => mysql::split(sql),
            Self::Redis => redis::split(sql),
        }
    }

    /// The statement that reverses a simple DDL statement.
    pub fn reverse(self, statement: &str) -> Result<String, String> {
        match self {
            Self::Postgres => reverse(statement),
            Self::Mysql => mysql::reverse(statement),
            Self::Redis => Err("Redis has no DDL to reverse".into()),
        }
    }

    /// The `(schema, name)` a `CREATE TABLE` makes.
    pub fn created_table(self, statement: &str) -> Option<(String, String)> {
        match self {
            Self::Postgres => created_table(statement),
            Self::Mysql => mysql::created_table(statement),
            Self::Redis => None,
        }
    }

    /// An identifier, quoted where the dialect needs it.
    pub fn quote_ident(self, name: &str) -> String {
        match self {
            Self::Postgres => quote_ident(name),
            Self::Mysql => mysql::quote_ident(name),
            Self::Redis => name.to_string(),
        }
    }

    /// Whether DDL commits the open transaction at once (MySQL), so a later `ROLLBACK` cannot
    /// undo it; in PostgreSQL DDL is transactional.
    pub fn ddl_commits(self) -> bool {
        self == Self::Mysql
    }
}

/// The parser refused the input; the message is PostgreSQL's (or sqlparser's, for MySQL).
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
