//! Statements the proxy refuses before the server runs them: on provisioned databases, those
//! that would change the session's pinned identity (role, schema search path); under
//! transaction pooling, those that cannot work on a shared connection (`LISTEN`, SQL
//! `PREPARE`). The statement is replaced by one that makes the server raise the refusal, so the
//! protocol's answers stay the server's own; the query log keeps what the client sent.

use crate::pg::frame;
use crate::pg::message::{self, Frontend};
use crate::pg::sqlstate;

/// A `Query` or `Parse` that a provisioned database refuses (see
/// [`tdb_sql::pinned_session_refusal`]; its routing name is its schema), replaced as the module
/// says; `None` for anything else.
pub(super) fn refuse_pinned(tag: u8, body: &[u8], own_schema: &str) -> Option<Vec<u8>> {
    let (name, query) = statement_of(tag, body)?;
    let why = tdb_sql::pinned_session_refusal(&query, own_schema)?;
    Some(refusal(name, sqlstate::INSUFFICIENT_PRIVILEGE, &why))
}

/// A `Query` or `Parse` with a `LISTEN` or a `PREPARE`, under transaction pooling (see
/// [`tdb_sql::transaction_pooling_refusal`]), replaced as [`refuse_pinned`] does.
pub(super) fn refuse_when_pooled(tag: u8, body: &[u8]) -> Option<Vec<u8>> {
    let (name, query) = statement_of(tag, body)?;
    let why = tdb_sql::transaction_pooling_refusal(&query)?;
    Some(refusal(name, sqlstate::FEATURE_NOT_SUPPORTED, &why))
}

/// The statement name (`Parse` only) and text of a `Query` or `Parse` body.
fn statement_of(tag: u8, body: &[u8]) -> Option<(Option<&[u8]>, String)> {
    match Frontend::decode(tag, body) {
        Frontend::Query { sql } => Some((None, frame::cstr_prefix(sql, usize::MAX))),
        Frontend::Parse { name, query, .. } => {
            Some((Some(name), String::from_utf8_lossy(query).into_owned()))
        }
        _ => None,
    }
}

/// The `Query` (`name` is `None`) or `Parse` (named `name`) that makes the server raise `why`
/// with SQLSTATE `code`.
pub(super) fn refusal(name: Option<&[u8]>, code: &str, why: &str) -> Vec<u8> {
    let message = quote_literal(why);
    // A dollar quote whose tag the message (which may name what the client sent) cannot close.
    let quote = (0u32..)
        .map(|n| format!("$tdb{n}$"))
        .find(|q| !message.contains(q.as_str()))
        .unwrap_or_default();
    let refusal = format!(
        "DO {quote}BEGIN RAISE EXCEPTION USING ERRCODE = '{code}', MESSAGE = {message}; END{quote}"
    );
    message::encode_statement(name, &refusal)
}

/// A SQL string literal (the message of a refusal, which names a schema).
fn quote_literal(text: &str) -> String {
    // E'…' reads backslashes as escapes whatever standard_conforming_strings says.
    format!("E'{}'", text.replace('\\', "\\\\").replace('\'', "''"))
}
