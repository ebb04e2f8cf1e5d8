//! DDL captured from a workspace connection. The server tells what happened: each statement's
//! `CommandComplete` says it ran (and whether a `COMMIT` really committed), and `ReadyForQuery`
//! says whether a transaction is still open. DDL waits in a buffer until it is known to be
//! committed; a failed implicit transaction (a multi-statement query, or extended-protocol
//! messages up to `Sync`) drops what it ran, as the server does.

use tdb_sql::{Kind, TxOp};

/// One statement of a query, classified.
#[derive(Debug, Clone)]
pub struct Stmt {
    pub text: String,
    pub kind: Kind,
    pub tag: String,
}

/// Splits and classifies a query; empty when it does not parse (the server will refuse it too).
pub fn statements(sql: &str) -> Vec<Stmt> {
    tdb_sql::classify_all(sql)
        .map(|all| {
            all.into_iter()
                .map(|s| Stmt {
                    text: s.text.to_string(),
                    kind: s.kind,
                    tag: s.tag,
                })
                .collect()
        })
        .unwrap_or_default()
}

#[derive(Default, Debug)]
pub struct DdlCapture {
    /// DDL that ran in the open transaction (explicit or implicit).
    buffer: Vec<(String, String)>,
    savepoints: Vec<(String, usize)>,
    committed: Vec<(String, String)>,
    failed: bool,
}

impl DdlCapture {
    /// A statement finished; `command_tag` is what the server's `CommandComplete` said.
    pub fn completed(&mut self, stmt: &Stmt, command_tag: &str) {
        match &stmt.kind {
            Kind::Ddl => self.buffer.push((stmt.text.clone(), stmt.tag.clone())),
            Kind::Transaction(op) => self.transaction(op, command_tag),
            _ => {}
        }
    }

    fn transaction(&mut self, op: &TxOp, command_tag: &str) {
        match op {
            // COMMIT of a failed transaction completes as ROLLBACK.
            TxOp::Commit | TxOp::CommitAndChain if command_tag == "COMMIT" => {
                self.committed.append(&mut self.buffer);
                self.savepoints.clear();
            }
            TxOp::Commit
            | TxOp::CommitAndChain
            | TxOp::Rollback
            | TxOp::RollbackAndChain
            | TxOp::TwoPhase => {
                self.buffer.clear();
                self.savepoints.clear();
            }
            TxOp::Savepoint(name) => self.savepoints.push((name.clone(), self.buffer.len())),
            TxOp::RollbackTo(name) => {
                if let Some(i) = self.savepoints.iter().rposition(|(n, _)| n == name) {
                    self.buffer.truncate(self.savepoints[i].1);
                    self.savepoints.truncate(i + 1);
                }
            }
            TxOp::Release(name) => {
                if let Some(i) = self.savepoints.iter().rposition(|(n, _)| n == name) {
                    self.savepoints.truncate(i);
                }
            }
            TxOp::Begin => {}
        }
    }

    /// The server reported an error.
    pub fn failed(&mut self) {
        self.failed = true;
    }

    /// `ReadyForQuery` with its transaction status; returns the DDL now known to be committed.
    pub fn ready(&mut self, status: u8) -> Vec<(String, String)> {
        let failed = std::mem::take(&mut self.failed);
        if status == b'I' {
            // Outside a transaction block: what ran since the last one is committed, unless an
            // error rolled the implicit transaction back.
            if failed {
                self.buffer.clear();
            } else {
                self.committed.append(&mut self.buffer);
            }
            self.savepoints.clear();
        }
        std::mem::take(&mut self.committed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds a simple query as the server would answer it: every statement completes with its
    /// tag until `fail_at`, then an error; then ReadyForQuery with `status`.
    fn run(
        capture: &mut DdlCapture,
        sql: &str,
        fail_at: Option<usize>,
        status: u8,
        tags: &[(&str, &str)],
    ) -> Vec<String> {
        for (i, stmt) in statements(sql).iter().enumerate() {
            if fail_at == Some(i) {
                capture.failed();
                break;
            }
            let tag = server_tag(stmt);
            let tag = tags
                .iter()
                .find(|(t, _)| *t == tag)
                .map_or(tag, |(_, real)| real);
            capture.completed(stmt, tag);
        }
        capture
            .ready(status)
            .into_iter()
            .map(|(text, _)| text)
            .collect()
    }

    /// The command tag the server sends when a statement completes.
    fn server_tag(stmt: &Stmt) -> &str {
        match &stmt.kind {
            Kind::Transaction(op) => match op {
                TxOp::Begin => "BEGIN",
                TxOp::Commit | TxOp::CommitAndChain => "COMMIT",
                TxOp::Rollback | TxOp::RollbackAndChain | TxOp::RollbackTo(_) => "ROLLBACK",
                TxOp::Savepoint(_) => "SAVEPOINT",
                TxOp::Release(_) => "RELEASE",
                TxOp::TwoPhase => "PREPARE TRANSACTION",
            },
            _ => &stmt.tag,
        }
    }

    #[test]
    fn autocommit_ddl_is_captured_at_once() {
        let mut c = DdlCapture::default();
        assert_eq!(
            run(&mut c, "CREATE TABLE a (id int)", None, b'I', &[]),
            ["CREATE TABLE a (id int)"]
        );
        assert!(run(&mut c, "SELECT 1", None, b'I', &[]).is_empty());
    }

    #[test]
    fn a_failed_multi_statement_query_keeps_nothing() {
        let mut c = DdlCapture::default();
        let got = run(
            &mut c,
            "CREATE TABLE a (id int); CREATE TABLE b (id int); SELECT 1/0",
            Some(2),
            b'I',
            &[],
        );
        assert!(got.is_empty(), "{got:?}");
    }

    #[test]
    fn explicit_transactions_wait_for_commit() {
        let mut c = DdlCapture::default();
        assert!(run(&mut c, "BEGIN; CREATE TABLE a (id int)", None, b'T', &[]).is_empty());
        assert!(run(&mut c, "CREATE INDEX ai ON a (id)", None, b'T', &[]).is_empty());
        assert_eq!(
            run(&mut c, "COMMIT", None, b'I', &[]),
            ["CREATE TABLE a (id int)", "CREATE INDEX ai ON a (id)"]
        );
        assert!(run(&mut c, "BEGIN; CREATE TABLE b (id int)", None, b'T', &[]).is_empty());
        assert!(run(&mut c, "ROLLBACK", None, b'I', &[]).is_empty());
    }

    #[test]
    fn commit_of_a_failed_transaction_is_a_rollback() {
        let mut c = DdlCapture::default();
        assert!(run(&mut c, "BEGIN; CREATE TABLE a (id int)", None, b'T', &[]).is_empty());
        assert!(run(&mut c, "SELECT 1/0", Some(0), b'E', &[]).is_empty());
        assert!(run(&mut c, "COMMIT", None, b'I', &[("COMMIT", "ROLLBACK")]).is_empty());
    }

    #[test]
    fn savepoints_undo_part_of_a_transaction() {
        let mut c = DdlCapture::default();
        run(
            &mut c,
            "BEGIN; CREATE TABLE a (id int); SAVEPOINT s; CREATE TABLE b (id int)",
            None,
            b'T',
            &[],
        );
        assert!(run(&mut c, "SELECT 1/0", Some(0), b'E', &[]).is_empty());
        assert!(run(&mut c, "ROLLBACK TO SAVEPOINT s", None, b'T', &[]).is_empty());
        assert_eq!(
            run(&mut c, "COMMIT", None, b'I', &[]),
            ["CREATE TABLE a (id int)"]
        );
    }

    #[test]
    fn an_explicit_commit_inside_a_failing_query_keeps_what_came_before() {
        let mut c = DdlCapture::default();
        let got = run(
            &mut c,
            "CREATE TABLE a (id int); COMMIT; CREATE TABLE b (id int); SELECT 1/0",
            Some(3),
            b'I',
            &[],
        );
        assert_eq!(got, ["CREATE TABLE a (id int)"]);
    }
}
