//! Transaction pooling's prepared statements: a client's statement names stand for shared
//! names (`tdb_` and a digest of the statement), so any server connection can serve them, and a
//! `DEALLOCATE` concerns only the client that sent it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::refusals::refusal;
use super::state::{Shared, StandIn, lock};
use crate::pg::frame::{self, field};
use crate::pg::message::{self, Frontend, Target, front};
use crate::pg::sqlstate;

/// PostgreSQL keeps the first 63 bytes of a statement or portal name; so does the relay.
pub(super) const MAX_NAME: usize = 63;

/// A client's statement names and what each stands for.
pub(super) type Names = HashMap<Vec<u8>, Arc<SharedStatement>>;

/// A client's statement name and what it stood for when the client dropped it: forgotten only
/// if the client has not prepared the name again since.
pub(super) type NamedStatement = (Vec<u8>, Arc<SharedStatement>);

/// A named statement under the name every client shares for it on a server connection.
pub(super) struct SharedStatement {
    server_name: String,
    /// The Parse message after its name: query, parameter count and types.
    tail: Vec<u8>,
}

impl SharedStatement {
    fn new(tail: &[u8], epoch: u64) -> Self {
        use sha2::Digest;
        let mut hasher = sha2::Sha256::new();
        hasher.update(epoch.to_be_bytes());
        hasher.update(tail);
        let digest = hasher.finalize();
        let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
        Self {
            server_name: format!("tdb_{hex}"),
            tail: tail.to_vec(),
        }
    }
}

pub(super) fn name_key(name: &[u8]) -> Vec<u8> {
    name[..name.len().min(MAX_NAME)].to_vec()
}

/// Rewrites the client's named statements to their shared names, so any server connection
/// serves them (preparing them first where needed). Returns false when the message goes
/// through as it is. Every Parse sent is recorded, so ParseComplete messages can be matched to
/// it.
pub(super) fn rewrite_for_sharing(
    msg: &Frontend<'_>,
    named: &mut Names,
    shared: &Mutex<Shared>,
    epoch: u64,
    out: &mut Vec<u8>,
) -> bool {
    match *msg {
        Frontend::Parse { name, tail, .. } => {
            share_parse(name, tail, named, shared, epoch, out);
            !name.is_empty()
        }
        Frontend::Bind {
            portal,
            statement,
            params,
        } => {
            let Some(st) = known(named, statement) else {
                return false;
            };
            ensure_prepared(shared, st, out);
            message::encode_bind(out, portal, &st.server_name, params);
            true
        }
        Frontend::Close {
            target: Target::Statement,
            name,
        } if !name.is_empty() => {
            // Other clients may share the statement: forget the client's name only. Closing a
            // statement that does not exist still answers CloseComplete.
            named.remove(&name_key(name));
            message::encode_statement_target(out, front::CLOSE, "tdb_closed_by_client");
            true
        }
        Frontend::Describe {
            target: Target::Statement,
            name,
        } => {
            let Some(st) = known(named, name) else {
                return false;
            };
            ensure_prepared(shared, st, out);
            message::encode_statement_target(out, front::DESCRIBE, &st.server_name);
            true
        }
        _ => false,
    }
}

/// What the client's statement `name` stands for; `None` for the unnamed statement.
fn known<'n>(named: &'n Names, name: &[u8]) -> Option<&'n Arc<SharedStatement>> {
    if name.is_empty() {
        return None;
    }
    named.get(&name_key(name))
}

/// A Parse: an unnamed one goes through (recorded); a named one is prepared under its shared
/// name, or, when the connection has it already, answered by an unnamed Parse of the same text
/// (so the client still gets its ParseComplete).
fn share_parse(
    name: &[u8],
    tail: &[u8],
    named: &mut Names,
    shared: &Mutex<Shared>,
    epoch: u64,
    out: &mut Vec<u8>,
) {
    if name.is_empty() {
        lock(shared).parses.push_back((None, false));
        return;
    }
    let st = Arc::new(SharedStatement::new(tail, epoch));
    named.insert(name_key(name), st.clone());
    let mut s = lock(shared);
    if s.has_statement(&st.server_name) {
        message::encode_parse(out, "", &st.tail);
        s.parses.push_back((None, false));
    } else {
        message::encode_parse(out, &st.server_name, &st.tail);
        s.parses.push_back((Some(st.server_name.clone()), false));
    }
}

/// Prepares `st` on the connection unless it is there or on its way.
fn ensure_prepared(shared: &Mutex<Shared>, st: &SharedStatement, out: &mut Vec<u8>) {
    let mut s = lock(shared);
    if !s.has_statement(&st.server_name) {
        message::encode_parse(out, &st.server_name, &st.tail);
        s.parses.push_back((Some(st.server_name.clone()), true));
    }
}

/// A `DEALLOCATE` concerns the client's own statements, which other clients may share on the
/// server under one name. The server gets a stand-in that changes nothing, answered with the
/// command tag the client is owed; once it completes, the client's names (the one, or all) are
/// forgotten. A name the client never prepared gets the server's error.
pub(super) fn deallocate(
    statement: Option<&[u8]>,
    d: &tdb_sql::Deallocation,
    named: &Names,
) -> (Vec<u8>, StandIn) {
    let stand_in = |answer: &'static str, names: Vec<NamedStatement>| {
        (
            message::encode_statement(statement, "DO $tdb$BEGIN END$tdb$"),
            StandIn::Deallocate(answer, Arc::new(names)),
        )
    };
    let name = match d {
        tdb_sql::Deallocation::All => {
            let all = named
                .iter()
                .map(|(n, st)| (n.clone(), st.clone()))
                .collect();
            return stand_in("DEALLOCATE ALL", all);
        }
        tdb_sql::Deallocation::Named(name) => name,
    };
    let key = name_key(name.as_bytes());
    if let Some(st) = named.get(&key) {
        return stand_in("DEALLOCATE", vec![(key, st.clone())]);
    }
    let why = format!("prepared statement \"{name}\" does not exist");
    let refused = refusal(statement, sqlstate::INVALID_SQL_STATEMENT_NAME, &why);
    (refused, StandIn::Refusal)
}

/// Drops the client's names that `DEALLOCATE`s have dropped (`all`: every one), each only if
/// the client has not prepared the name again since.
pub(super) fn forget(named: &mut Names, all: bool, dropped: &mut Vec<NamedStatement>) {
    if all {
        named.clear();
    }
    for (name, st) in dropped.drain(..) {
        if named.get(&name).is_some_and(|now| Arc::ptr_eq(now, &st)) {
            named.remove(&name);
        }
    }
}

/// Whether an error is the server's "cached plan must not change result type": a table under a
/// prepared statement changed, and the statement must be prepared again.
pub(super) fn stale_plan(code: &str, body: &[u8]) -> bool {
    code == sqlstate::FEATURE_NOT_SUPPORTED
        && frame::error_field(body, field::MESSAGE)
            .is_some_and(|message| message.starts_with(b"cached plan must not"))
        // The server's own, not one a function raised with the same words.
        && frame::error_field(body, field::CONTEXT).is_none()
}

/// The shared statement an error says does not exist (`prepared statement "tdb_…" does not
/// exist`): something dropped it behind the proxy's back.
pub(super) fn missing_shared_statement(code: &str, body: &[u8]) -> Option<String> {
    if code != sqlstate::INVALID_SQL_STATEMENT_NAME {
        return None;
    }
    let message = std::str::from_utf8(frame::error_field(body, field::MESSAGE)?).ok()?;
    let name = message.split('"').nth(1)?;
    name.starts_with("tdb_").then(|| name.to_string())
}
