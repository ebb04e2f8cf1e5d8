//! The statements a session may not run, checked before the server sees them: DDL on tenant
//! databases (schema comes from blueprints), what no tdb connection may run whatever its grants
//! (another database, files on the server, accounts and privileges, the server's own
//! settings), `KILL` of another connection, and SQL whose text cannot be checked (`PREPARE …
//! FROM @variable`). MariaDB's grants stay the real boundary; this gives clear errors, and a
//! second wall.
//!
//! Every reading of a batch is checked (see [`sqltext::readings`]), so a string that ends
//! differently under another `sql_mode` cannot hide a statement.
//!
//! Classification is lexical for now (leading keywords). [`classify`] and [`platform_refusal`]
//! are where `tdb_sql::mysql`'s parser takes over once it lands.

use tdb_sql::{Kind, TxOp};

use crate::mysql::errno;
use crate::mysql::reply;
use crate::mysql::sqltext::{self, Token};

/// The message the spec gives for DDL attempted on a tenant database.
pub const DDL_ON_TENANT: &str =
    "DDL not allowed on tenant databases. Deploy schema through blueprints.";

/// Who is asking, for the checks and their messages.
#[derive(Debug, Clone)]
pub struct Guard {
    /// A tenant database: DDL is refused.
    pub tenant: bool,
    /// A workspace: DDL is captured.
    pub workspace: bool,
    /// The database the session is in.
    pub own_database: String,
    /// The name the client connected to (the same as `own_database` for tenants).
    pub connected_as: String,
    pub user: String,
    pub host: String,
    /// The server's id of the session's connection.
    pub thread_id: u32,
}

/// One statement of a batch, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stmt {
    pub text: String,
    pub kind: Kind,
    pub tag: String,
}

/// The statements of `sql`, or the error the client gets when one is refused.
pub fn check(sql: &str, guard: &Guard) -> Result<Vec<Stmt>, reply::Err> {
    let mut first = None;
    for reading in sqltext::readings(sql) {
        let stmts: Vec<Stmt> = reading.iter().map(|text| classify(text)).collect();
        for stmt in &stmts {
            if let Some(refusal) = refuse(stmt, guard) {
                return Err(refusal);
            }
        }
        if guard.workspace && stmts.len() > 1 {
            let ddl = stmts.iter().any(|s| s.kind == Kind::Ddl);
            if ddl && stmts.iter().any(|s| s.tag == "CALL") {
                return Err(reply::Err::new(
                    errno::NOT_SUPPORTED_YET,
                    "CALL and DDL in one batch on a workspace: send them apart, so the DDL \
                     can be recorded for the blueprint",
                ));
            }
        }
        first.get_or_insert(stmts);
    }
    Ok(first.unwrap_or_default())
}

/// Whether the one statement of a `COM_INIT_DB` may go: only to the session's own database.
pub fn init_db(database: &str, guard: &Guard) -> Result<(), reply::Err> {
    if database == guard.own_database || database == guard.connected_as {
        Ok(())
    } else {
        Err(db_access_denied(guard, database))
    }
}

fn db_access_denied(guard: &Guard, database: &str) -> reply::Err {
    reply::Err::new(
        errno::DBACCESS_DENIED,
        format!(
            "Access denied for user '{}'@'{}' to database '{database}'",
            guard.user, guard.host
        ),
    )
}

/// Why the session may not run `stmt`, as the client is told.
fn refuse(stmt: &Stmt, guard: &Guard) -> Option<reply::Err> {
    let tokens = sqltext::tokens(&stmt.text);
    if let Some(e) = kill_refusal(&tokens, guard) {
        return Some(e);
    }
    if let Some(database) = use_of_other(&stmt.text, &tokens, guard) {
        return Some(db_access_denied(guard, &database));
    }
    if let Some(why) = platform_refusal(stmt, &tokens, guard) {
        return Some(reply::Err::new(errno::SPECIFIC_ACCESS_DENIED, why));
    }
    if guard.tenant && stmt.kind == Kind::Ddl {
        return Some(reply::Err::new(errno::TABLEACCESS_DENIED, DDL_ON_TENANT));
    }
    None
}

/// A statement's kind and tag (`CREATE TABLE`, `SELECT`, …), from its leading keywords.
pub fn classify(text: &str) -> Stmt {
    let words = sqltext::leading_words(text, 3);
    let word = |i: usize| words.get(i).map_or("", String::as_str);
    let kind = match word(0) {
        "SELECT" | "SHOW" | "DESCRIBE" | "DESC" | "EXPLAIN" | "WITH" | "VALUES" | "TABLE"
        | "HELP" => Kind::Query,
        "INSERT" | "UPDATE" | "DELETE" | "REPLACE" | "CALL" | "DO" | "HANDLER" | "LOAD"
        | "EXECUTE" | "PREPARE" | "DEALLOCATE" => Kind::Dml,
        "CREATE" | "ALTER" | "DROP" | "RENAME" | "TRUNCATE" | "GRANT" | "REVOKE" => Kind::Ddl,
        "BEGIN" | "START" if word(0) == "BEGIN" || word(1) == "TRANSACTION" => {
            Kind::Transaction(TxOp::Begin)
        }
        "COMMIT" => Kind::Transaction(TxOp::Commit),
        "ROLLBACK" if word(1) == "TO" => Kind::Transaction(TxOp::RollbackTo(String::new())),
        "ROLLBACK" => Kind::Transaction(TxOp::Rollback),
        "SAVEPOINT" => Kind::Transaction(TxOp::Savepoint(word(1).to_string())),
        "RELEASE" => Kind::Transaction(TxOp::Release(String::new())),
        "XA" => Kind::Transaction(TxOp::TwoPhase),
        _ => Kind::Other,
    };
    let tag = match kind {
        Kind::Ddl => format!("{} {}", word(0), word(1)).trim().to_string(),
        _ => word(0).to_string(),
    };
    Stmt {
        text: text.to_string(),
        kind,
        tag,
    }
}

/// `KILL [HARD|SOFT] [CONNECTION|QUERY] n` of another connection than the session's own, and
/// `KILL … USER` / `KILL QUERY ID` (which reach other connections).
fn kill_refusal(tokens: &[Token], guard: &Guard) -> Option<reply::Err> {
    let mut words = tokens.iter().map(|t| match t {
        Token::Word(w) => w.as_str(),
        _ => "",
    });
    if words.next() != Some("KILL") {
        return None;
    }
    let target = words
        .find(|w| !matches!(*w, "HARD" | "SOFT" | "CONNECTION" | "QUERY"))
        .unwrap_or("");
    if target.parse::<u64>().ok() == Some(u64::from(guard.thread_id)) {
        return None;
    }
    Some(reply::Err::new(
        errno::KILL_DENIED,
        format!("You are not owner of thread {target}"),
    ))
}

/// `USE other` (or `USE` of any database but the session's own).
fn use_of_other(text: &str, tokens: &[Token], guard: &Guard) -> Option<String> {
    if tokens.first() != Some(&Token::Word("USE".into())) {
        return None;
    }
    let name = match tokens.get(1) {
        Some(Token::Name(n)) => n.clone(),
        // A bare name keeps its case (the tokens are upper-cased): read it from the text.
        Some(Token::Word(_)) => text
            .split_whitespace()
            .nth(1)
            .unwrap_or("")
            .trim_end_matches(';')
            .to_string(),
        _ => String::new(),
    };
    (name != guard.own_database && name != guard.connected_as).then_some(name)
}

/// Why no tdb connection may run `stmt`, whatever its grants.
fn platform_refusal(stmt: &Stmt, tokens: &[Token], guard: &Guard) -> Option<String> {
    let word = |i: usize| match tokens.get(i) {
        Some(Token::Word(w)) => w.as_str(),
        _ => "",
    };
    let has = |w: &str| tokens.iter().any(|t| matches!(t, Token::Word(x) if x == w));
    let what = match (word(0), word(1)) {
        ("GRANT" | "REVOKE", _) => "GRANT and REVOKE",
        ("CREATE" | "ALTER" | "DROP" | "RENAME", "USER" | "ROLE") => "managing users and roles",
        ("CREATE" | "ALTER" | "DROP", "DATABASE" | "SCHEMA" | "SERVER") => {
            "creating, altering or dropping databases"
        }
        ("SET", "PASSWORD" | "ROLE" | "DEFAULT" | "GLOBAL" | "PERSIST") => {
            "changing passwords, roles or global settings"
        }
        ("SET", _) if stmt.text.to_ascii_uppercase().contains("@@GLOBAL.") => {
            "changing global settings"
        }
        ("LOAD", _) => "LOAD DATA and LOAD XML",
        ("SELECT", _) if has("OUTFILE") || has("DUMPFILE") => "SELECT … INTO OUTFILE or DUMPFILE",
        ("INSTALL" | "UNINSTALL" | "SHUTDOWN" | "FLUSH" | "PURGE" | "BINLOG" | "RESET", _) => {
            "server administration"
        }
        ("CHANGE", "MASTER" | "REPLICATION") => "server administration",
        ("START" | "STOP", "SLAVE" | "REPLICA" | "ALL") => "server administration",
        ("CREATE", _) if has("SONAME") => "loading server plugins",
        _ => return dynamic_sql(tokens, guard),
    };
    Some(format!("{what} is not allowed through tdb"))
}

/// SQL run from text the proxy cannot see (`PREPARE s FROM @v`, `EXECUTE IMMEDIATE @v`) is
/// refused; from a literal, the literal is checked as a statement of its own.
fn dynamic_sql(tokens: &[Token], guard: &Guard) -> Option<String> {
    let source = match tokens {
        [Token::Word(p), _, Token::Word(f), rest @ ..] if p == "PREPARE" && f == "FROM" => rest,
        [Token::Word(e), Token::Word(i), rest @ ..] if e == "EXECUTE" && i == "IMMEDIATE" => rest,
        _ => return None,
    };
    match source {
        [Token::Str(sql)] => match check(sql, guard) {
            Ok(_) => None,
            Err(e) => Some(format!("the prepared statement is refused: {}", e.message)),
        },
        _ => Some(
            "preparing SQL from a variable is not allowed through tdb (its text cannot be \
             checked): prepare a literal, or use the protocol's prepared statements"
                .to_string(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(tenant: bool) -> Guard {
        Guard {
            tenant,
            workspace: !tenant,
            own_database: "shop__acme".into(),
            connected_as: "shop__acme".into(),
            user: "u".into(),
            host: "127.0.0.1".into(),
            thread_id: 42,
        }
    }

    fn code(sql: &str, tenant: bool) -> Option<u16> {
        check(sql, &guard(tenant)).err().map(|e| e.code)
    }

    #[test]
    fn tenants_may_not_run_ddl_but_workspaces_may() {
        let e = check("select 1; create table t (id int)", &guard(true)).expect_err("refused");
        assert_eq!((e.code, e.message.as_str()), (1142, DDL_ON_TENANT));
        assert_eq!(
            code("/*!40000 ALTER TABLE t DISABLE KEYS */", true),
            Some(1142)
        );
        let stmts = check(
            "CREATE TABLE t (id int); INSERT INTO t VALUES (1)",
            &guard(false),
        )
        .expect("a workspace runs DDL");
        assert_eq!(stmts[0].kind, Kind::Ddl);
        assert_eq!(stmts[0].tag, "CREATE TABLE");
        assert_eq!(stmts[1].kind, Kind::Dml);
        assert_eq!(code("SELECT 1; INSERT INTO t VALUES (1)", true), None);
    }

    #[test]
    fn nobody_leaves_their_database_or_touches_the_server() {
        for tenant in [true, false] {
            assert_eq!(code("USE other", tenant), Some(1044));
            assert_eq!(code("use `shop__acme`", tenant), None);
            assert_eq!(code("USE shop__acme", tenant), None);
            for sql in [
                "GRANT ALL ON *.* TO x",
                "create user x identified by 'y'",
                "DROP DATABASE shop__acme",
                "CREATE SCHEMA s",
                "SET GLOBAL max_connections = 1",
                "SET @@global.max_connections = 1",
                "SET PASSWORD = PASSWORD('x')",
                "LOAD DATA LOCAL INFILE '/etc/passwd' INTO TABLE t",
                "SELECT * FROM t INTO OUTFILE '/tmp/x'",
                "select 1 into dumpfile '/tmp/y'",
                "INSTALL SONAME 'auth_ed25519'",
                "PREPARE s FROM @sql",
                "EXECUTE IMMEDIATE CONCAT('DROP ', 'DATABASE x')",
                "PREPARE s FROM 'DROP DATABASE shop__acme'",
            ] {
                assert_eq!(code(sql, tenant), Some(1227), "{sql}");
            }
            assert_eq!(code("PREPARE s FROM 'SELECT ?'", tenant), None);
            assert_eq!(code("SET @x = 'SET GLOBAL'", tenant), None, "a string");
        }
    }

    #[test]
    fn a_session_kills_only_its_own_connection() {
        assert_eq!(code("KILL QUERY 42", true), None);
        assert_eq!(code("kill 42", true), None);
        assert_eq!(code("KILL HARD CONNECTION 42", true), None);
        assert_eq!(code("KILL QUERY 7", true), Some(1095));
        assert_eq!(code("KILL QUERY ID 42", true), Some(1095));
        assert_eq!(code("KILL USER u", true), Some(1095));
    }

    #[test]
    fn a_hidden_statement_is_found_under_another_sql_mode() {
        let sql = r"SELECT 'x\'; DROP DATABASE other; -- '";
        assert_eq!(code(sql, false), Some(1227));
        assert_eq!(
            code(r"SELECT 'x\'; CREATE TABLE t (i int); -- '", true),
            Some(1142)
        );
    }

    #[test]
    fn workspaces_keep_call_apart_from_ddl() {
        assert_eq!(code("CALL p(); CREATE TABLE t (i int)", false), Some(1235));
        assert_eq!(code("CALL p()", false), None);
    }

    #[test]
    fn init_db_stays_home() {
        let g = guard(true);
        assert!(init_db("shop__acme", &g).is_ok());
        assert_eq!(init_db("mysql", &g).map_err(|e| e.code), Err(1044));
    }
}
