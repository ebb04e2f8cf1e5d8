//! What the relay does with each client command: forward it (as it came, or with the one field
//! it must change), answer it itself with an error, or end the session. Every command byte the
//! proxy does not name here is refused with 1047: never an OK for something that was not done.

use std::collections::HashMap;
use std::sync::Arc;

use super::RelayEnd;
use super::statements::{self, Guard, Stmt};
use crate::mysql::command::{Command, LAST_PREPARED};
use crate::mysql::errno;
use crate::mysql::reply;
use crate::mysql::response::Expect;
use crate::querylog::MAX_STATEMENT_LEN;

/// Statements longer than this are parsed on the blocking pool.
const PARSE_INLINE_LIMIT: usize = 8 * 1024;
/// Prepared statements remembered per session (for the log and capture); past it, executes
/// are logged without their text.
const MAX_STATEMENTS: usize = 10_000;

pub(super) enum Action {
    /// The client gets this error; the session goes on. A refused statement keeps its text for
    /// the query log.
    Refuse(reply::Err, Option<Arc<str>>),
    /// The client gets this error, and the session ends.
    End(reply::Err, RelayEnd),
    /// `COM_QUIT`.
    Quit,
    Forward(Unit),
}

/// A command on its way to the server, and what to do with its answer.
#[derive(Default)]
pub(super) struct Unit {
    /// The command as the server gets it, when not as the client sent it.
    pub rewritten: Option<Vec<u8>>,
    /// `None`: the server does not answer (`COM_STMT_CLOSE`, `COM_STMT_SEND_LONG_DATA`).
    pub expect: Option<Expect>,
    /// Its text for the query log (statements only).
    pub text: Option<Arc<str>>,
    /// Its statements, for DDL capture on workspaces.
    pub stmts: Arc<Vec<Stmt>>,
    /// `COM_STMT_PREPARE`: the statement to remember under the id the server gives.
    pub prepares: bool,
    /// `COM_RESET_CONNECTION`.
    pub resets: bool,
}

/// A prepared statement's text and statements.
#[derive(Clone)]
pub(super) struct Prepared {
    pub text: Arc<str>,
    pub stmts: Arc<Vec<Stmt>>,
}

/// The session's prepared statements, by the server's ids.
#[derive(Default)]
pub(super) struct Book {
    statements: HashMap<u32, Prepared>,
    last: Option<u32>,
}

impl Book {
    pub fn prepared(&mut self, id: u32, statement: Prepared) {
        self.last = Some(id);
        if self.statements.len() < MAX_STATEMENTS || self.statements.contains_key(&id) {
            self.statements.insert(id, statement);
        }
    }

    fn get(&self, id: u32) -> Option<&Prepared> {
        let id = if id == LAST_PREPARED { self.last? } else { id };
        self.statements.get(&id)
    }

    fn close(&mut self, id: u32) {
        self.statements.remove(&id);
    }

    /// `COM_RESET_CONNECTION` dropped them all on the server.
    pub fn clear(&mut self) {
        self.statements.clear();
        self.last = None;
    }
}

/// What to do with `payload`, a command from the client.
pub(super) async fn decide(
    payload: &[u8],
    guard: &Guard,
    book: &mut Book,
    proxy_id: u32,
) -> Action {
    let command = match Command::decode(payload) {
        Ok(c) => c,
        Err(e) => {
            return Action::Refuse(
                reply::Err::new(errno::MALFORMED_PACKET, e.to_string()),
                None,
            );
        }
    };
    let forward = |expect| {
        Action::Forward(Unit {
            expect: Some(expect),
            ..Unit::default()
        })
    };
    match command {
        Command::Quit => Action::Quit,
        Command::Query(sql) => statement(sql, guard, false).await,
        Command::StmtPrepare(sql) => statement(sql, guard, true).await,
        Command::StmtExecute { id, .. } => {
            let (text, stmts) = match book.get(id) {
                Some(p) => (Some(p.text.clone()), p.stmts.clone()),
                None => (None, Arc::default()),
            };
            Action::Forward(Unit {
                expect: Some(Expect::Results),
                text: text.or_else(|| Some(Arc::from("(a prepared statement)"))),
                stmts,
                ..Unit::default()
            })
        }
        Command::InitDb(db) => match statements::init_db(&String::from_utf8_lossy(db), guard) {
            Ok(()) => {
                let mut rewritten = Vec::new();
                Command::InitDb(guard.own_database.as_bytes()).encode(&mut rewritten);
                Action::Forward(Unit {
                    rewritten: Some(rewritten),
                    expect: Some(Expect::One),
                    ..Unit::default()
                })
            }
            Err(e) => Action::Refuse(e, None),
        },
        Command::ProcessKill(id) => kill(id, guard, proxy_id),
        Command::FieldList { .. } => forward(Expect::FieldList),
        Command::Ping | Command::StmtReset { .. } | Command::SetOption(_) => forward(Expect::One),
        Command::StmtFetch { .. } => forward(Expect::Rows),
        Command::ResetConnection => Action::Forward(Unit {
            expect: Some(Expect::One),
            resets: true,
            ..Unit::default()
        }),
        Command::StmtClose { id } => {
            book.close(id);
            Action::Forward(Unit::default())
        }
        Command::StmtSendLongData { .. } => Action::Forward(Unit::default()),
        Command::ChangeUser => Action::End(
            reply::Err::new(
                errno::UNKNOWN_COM,
                "COM_CHANGE_USER is not supported through tdb: open a new connection as the \
                 other user",
            ),
            RelayEnd::Refused,
        ),
        // The whole server's counters: other tenants' activity.
        Command::Statistics => Action::Refuse(
            reply::Err::new(
                errno::SPECIFIC_ACCESS_DENIED,
                "COM_STATISTICS shows the whole server's counters; it is not available through tdb",
            ),
            None,
        ),
        Command::Other(_) => {
            Action::Refuse(reply::Err::new(errno::UNKNOWN_COM, "Unknown command"), None)
        }
    }
}

/// `COM_QUERY` or `COM_STMT_PREPARE`: checked, then forwarded with its text for the log.
async fn statement(sql: &[u8], guard: &Guard, prepares: bool) -> Action {
    let text = String::from_utf8_lossy(sql);
    // The log keeps the statement's start; only workspaces need its statements whole (DDL
    // capture), so a long statement is not held twice.
    let logged = Arc::from(bounded(&text));
    let checked = check(&text, guard).await;
    let checked = checked.map(|stmts| match guard.workspace {
        true => stmts,
        false => Arc::default(),
    });
    match checked {
        Ok(stmts) => Action::Forward(Unit {
            expect: Some(if prepares {
                Expect::Prepare
            } else {
                Expect::Results
            }),
            text: Some(logged),
            stmts,
            prepares,
            ..Unit::default()
        }),
        Err(e) => Action::Refuse(e, Some(logged)),
    }
}

/// The start of a statement that the query log keeps, cut at a character boundary.
fn bounded(text: &str) -> &str {
    let mut end = text.len().min(MAX_STATEMENT_LEN);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Checks a statement: here when it is short, on the blocking pool when it is long (a copy
/// goes there), so parsing a long statement never stalls the other sessions on the proxy's
/// thread.
async fn check(text: &str, guard: &Guard) -> Result<Arc<Vec<Stmt>>, reply::Err> {
    if text.len() <= PARSE_INLINE_LIMIT {
        return statements::check(text, guard).map(Arc::new);
    }
    // As many long parses at once as there are cores: each holds a copy of its statement.
    static PARSERS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    let parsers = PARSERS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        tokio::sync::Semaphore::new(cores)
    });
    let unanalysed = || reply::Err::new(errno::UNKNOWN, "the statement could not be analysed");
    let _permit = parsers.acquire().await.map_err(|_| unanalysed())?;
    let (text, guard) = (text.to_string(), guard.clone());
    tokio::task::spawn_blocking(move || statements::check(&text, &guard).map(Arc::new))
        .await
        .map_err(|_| unanalysed())?
}

/// `COM_PROCESS_KILL` of the session's own connection, by the server's id or by the id the
/// proxy gave the client in its greeting.
fn kill(id: u32, guard: &Guard, proxy_id: u32) -> Action {
    if id != guard.thread_id && id != proxy_id {
        return Action::Refuse(
            reply::Err::new(
                errno::KILL_DENIED,
                format!("You are not owner of thread {id}"),
            ),
            None,
        );
    }
    let mut rewritten = Vec::new();
    Command::ProcessKill(guard.thread_id).encode(&mut rewritten);
    Action::Forward(Unit {
        rewritten: Some(rewritten),
        expect: Some(Expect::One),
        ..Unit::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mysql::command::code;

    fn guard() -> Guard {
        Guard {
            tenant: true,
            workspace: false,
            own_database: "shop__acme".into(),
            connected_as: "shop__acme".into(),
            user: "u".into(),
            host: "h".into(),
            thread_id: 42,
        }
    }

    fn decide_now(payload: &[u8], book: &mut Book) -> Action {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime");
        runtime.block_on(decide(payload, &guard(), book, 7))
    }

    fn refused(payload: &[u8]) -> Option<u16> {
        match decide_now(payload, &mut Book::default()) {
            Action::Refuse(e, _) | Action::End(e, _) => Some(e.code),
            _ => None,
        }
    }

    #[test]
    fn unknown_and_dangerous_commands_are_refused_never_ok() {
        // COM_CREATE_DB, COM_DROP_DB, COM_SHUTDOWN, COM_PROCESS_INFO, COM_BINLOG_DUMP,
        // MariaDB's COM_STMT_BULK_EXECUTE.
        for byte in [0x05, 0x06, 0x08, 0x0a, 0x12, 0xfa] {
            assert_eq!(refused(&[byte, 1, 2, 3]), Some(1047), "{byte:#x}");
        }
        assert_eq!(refused(&[code::CHANGE_USER, b'x', 0]), Some(1047));
        assert_eq!(refused(&[code::STATISTICS]), Some(1227));
        assert_eq!(refused(&[code::STMT_EXECUTE, 1]), Some(1835), "malformed");
        assert_eq!(refused(&[]), Some(1047));
    }

    #[test]
    fn kills_and_init_db_are_rewritten_or_refused() {
        assert_eq!(refused(&[code::PROCESS_KILL, 9, 0, 0, 0]), Some(1095));
        for id in [42u32, 7] {
            let mut cmd = vec![code::PROCESS_KILL];
            cmd.extend_from_slice(&id.to_le_bytes());
            let Action::Forward(unit) = decide_now(&cmd, &mut Book::default()) else {
                panic!("own kill refused");
            };
            assert_eq!(
                unit.rewritten.as_deref(),
                Some(&[code::PROCESS_KILL, 42, 0, 0, 0][..])
            );
        }
        assert_eq!(refused(b"\x02mysql"), Some(1044));
        assert_eq!(refused(b"\x02shop__acme"), None);
    }

    #[test]
    fn executes_are_logged_with_their_statement() {
        let mut book = Book::default();
        book.prepared(
            5,
            Prepared {
                text: Arc::from("SELECT ?"),
                stmts: Arc::default(),
            },
        );
        let execute = [code::STMT_EXECUTE, 0xff, 0xff, 0xff, 0xff, 0, 1, 0, 0, 0];
        let Action::Forward(unit) = decide_now(&execute, &mut book) else {
            panic!("not forwarded");
        };
        assert_eq!(unit.text.as_deref(), Some("SELECT ?"), "the last prepared");
        assert_eq!(unit.expect, Some(Expect::Results));
        let Action::Forward(unit) = decide_now(&[code::STMT_CLOSE, 5, 0, 0, 0], &mut book) else {
            panic!("not forwarded");
        };
        assert_eq!(unit.expect, None, "no answer to a close");
        assert!(book.get(5).is_none());
    }
}
