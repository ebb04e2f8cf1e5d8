//! The statements a session may not run, checked before the server sees them: DDL on tenant
//! databases (schema comes from blueprints), what no tdb connection may run whatever its grants
//! ([`tdb_sql::mysql::refusal`]: other databases, files on the server, accounts and privileges,
//! server-wide settings, SQL modes that change how text is read), `KILL` of another connection,
//! and SQL whose text cannot be checked (`EXECUTE IMMEDIATE @variable`). MariaDB's grants stay
//! the real boundary; this gives clear errors, and a second wall.
//!
//! A batch is read with `tdb_sql::mysql`'s parser. Its MySQL grammar lacks much of MariaDB's
//! (`SET NAMES … COLLATE` in a list, as sqlx sends at connect, `CREATE USER … IDENTIFIED BY`,
//! `LOAD DATA LOCAL`, `KILL HARD`, `XA`, `HANDLER`, `DO`, mysqldump's `DISABLE KEYS`), so what
//! it cannot read is judged by its leading keywords instead, and goes to the server (whose
//! syntax errors are its own) unless they name a refusal. Where a string ends also depends on
//! the session's `sql_mode`, which an operator may have set server-wide, or an unparsed
//! statement may have changed: every reading of the batch ([`sqltext::readings`]) is checked by
//! its keywords, so a string that ends differently under another mode cannot hide a statement.
//!
//! The parser is the slow part of a check (a full parse costs more than relaying the query).
//! One plain statement of data (`SELECT`, `INSERT`, `UPDATE`, `DELETE`, `REPLACE`) that reads
//! the same under every mode, with no comment and no word that writes a file, is judged by its
//! tokens alone ([`plain_data`]): the parser refuses nothing else in such a statement, and the
//! keyword checks below still run on it.

use tdb_sql::{Kind, TxOp};

use crate::mysql::errno;
use crate::mysql::handshake;
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
    let readings = sqltext::readings(sql);
    if let Some((stmt, tokens)) = plain_data(sql, &readings) {
        // The batch's one reading is this one statement: its keyword checks are the loop's
        // below, on the tokens already read.
        return match refuse(&stmt, &tokens, guard) {
            Some(refusal) => Err(refusal),
            None => Ok(vec![stmt]),
        };
    }
    let stmts = match tdb_sql::mysql::classify_all(sql) {
        Ok(parsed) => parsed_checks(&parsed, guard)?,
        Err(_) => readings
            .first()
            .map(|reading| reading.iter().map(|text| classify(text)).collect())
            .unwrap_or_default(),
    };
    for reading in &readings {
        for text in reading {
            let tokens = sqltext::tokens(text);
            if let Some(refusal) = refuse(&classify(text), &tokens, guard) {
                return Err(refusal);
            }
        }
    }
    if guard.workspace && stmts.len() > 1 {
        let ddl = stmts.iter().any(|s| s.kind == Kind::Ddl);
        if ddl && stmts.iter().any(|s| s.tag == "CALL") {
            return Err(reply::Err::new(
                errno::NOT_SUPPORTED_YET,
                "CALL and DDL in one batch on a workspace: send them apart, so the DDL can be \
                 recorded for the blueprint",
            ));
        }
    }
    Ok(stmts)
}

/// `sql` classified without the parser, when it is one plain statement of data (see the
/// module's note): one reading of one statement, no comment of any kind (an executable one may
/// read differently to the parser), led by a data keyword, and no `OUTFILE` or `DUMPFILE`.
fn plain_data(sql: &str, readings: &[Vec<String>]) -> Option<(Stmt, Vec<Token>)> {
    let [reading] = readings else { return None };
    let [text] = reading.as_slice() else {
        return None;
    };
    if sql.contains("/*") || sql.contains('#') || sql.contains("--") {
        return None;
    }
    let tokens = sqltext::tokens(text);
    let leads = matches!(tokens.first(), Some(Token::Word(w))
        if matches!(w.as_str(), "SELECT" | "INSERT" | "UPDATE" | "DELETE" | "REPLACE"));
    let writes_file = tokens
        .iter()
        .any(|t| matches!(t, Token::Word(w) if w == "OUTFILE" || w == "DUMPFILE"));
    (leads && !writes_file).then(|| (classify(text), tokens))
}

/// The parser's statements, with what `tdb_sql::mysql::refusal` and this session refuse.
fn parsed_checks(
    parsed: &[tdb_sql::Statement<'_>],
    guard: &Guard,
) -> Result<Vec<Stmt>, reply::Err> {
    let mut stmts = Vec::with_capacity(parsed.len());
    for statement in parsed {
        let tokens = sqltext::tokens(statement.text);
        if let Some(why) = tdb_sql::mysql::refusal(statement, &guard.own_database) {
            return Err(match use_of_other(statement.text, &tokens, guard) {
                Some(database) => db_access_denied(guard, &database),
                None => reply::Err::new(errno::SPECIFIC_ACCESS_DENIED, why),
            });
        }
        let stmt = Stmt {
            text: statement.text.to_string(),
            kind: statement.kind.clone(),
            tag: statement.tag.clone(),
        };
        if let Some(refusal) = session_refusal(&stmt, &tokens, guard) {
            return Err(refusal);
        }
        stmts.push(stmt);
    }
    Ok(stmts)
}

/// What this session may not run though another might: `KILL` of another connection, SQL from
/// a variable, DDL on a tenant.
fn session_refusal(stmt: &Stmt, tokens: &[Token], guard: &Guard) -> Option<reply::Err> {
    if let Some(e) = kill_refusal(tokens, guard) {
        return Some(e);
    }
    if let Some(why) = dynamic_sql(tokens, guard) {
        return Some(reply::Err::new(errno::SPECIFIC_ACCESS_DENIED, why));
    }
    if guard.tenant && stmt.kind == Kind::Ddl {
        return Some(reply::Err::new(errno::TABLEACCESS_DENIED, DDL_ON_TENANT));
    }
    None
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

/// Why the session may not run `stmt` (read by its leading keywords, `tokens` its text's), as
/// the client is told.
fn refuse(stmt: &Stmt, tokens: &[Token], guard: &Guard) -> Option<reply::Err> {
    if let Some(charset) = unsafe_charset(tokens) {
        return Some(reply::Err::new(
            errno::UNKNOWN_CHARACTER_SET,
            format!(
                "the character set {charset} is not supported through tdb (a quote or backslash \
                 byte may end a character in it): use utf8mb4"
            ),
        ));
    }
    if let Some(database) = use_of_other(&stmt.text, tokens, guard) {
        return Some(db_access_denied(guard, &database));
    }
    if let Some(why) = platform_refusal(stmt, tokens) {
        return Some(reply::Err::new(errno::SPECIFIC_ACCESS_DENIED, why));
    }
    session_refusal(stmt, tokens, guard)
}

/// A statement's kind and tag (`CREATE TABLE`, `SELECT`, …), from its leading keywords (for
/// the readings the parser does not see).
fn classify(text: &str) -> Stmt {
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

/// A `SET` of the client's character set (`NAMES`, `CHARACTER SET`, `character_set_client`)
/// that names one statements cannot be checked in ([`handshake::UNSAFE_CHARSETS`]), as a name,
/// a string or a collation's prefix.
fn unsafe_charset(tokens: &[Token]) -> Option<&'static str> {
    if !matches!(tokens.first(), Some(Token::Word(w)) if w == "SET") {
        return None;
    }
    let sets_client_charset = tokens.iter().any(|t| {
        matches!(t, Token::Word(w) if matches!(w.as_str(), "NAMES" | "CHARACTER" | "CHARSET" | "CHARACTER_SET_CLIENT"))
    });
    if !sets_client_charset {
        return None;
    }
    tokens.iter().find_map(|t| {
        let value = match t {
            Token::Word(w) => w.to_ascii_lowercase(),
            Token::Str(s) | Token::Name(s) => s.to_ascii_lowercase(),
            Token::Symbol(_) => return None,
        };
        handshake::UNSAFE_CHARSETS
            .into_iter()
            .find(|c| value == *c || value.starts_with(&format!("{c}_")))
    })
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
    if !matches!(tokens.first(), Some(Token::Word(w)) if w == "USE") {
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

/// Why no tdb connection may run `stmt`, whatever its grants, by its leading keywords.
fn platform_refusal(stmt: &Stmt, tokens: &[Token]) -> Option<String> {
    let word = |i: usize| match tokens.get(i) {
        Some(Token::Word(w)) => w.as_str(),
        _ => "",
    };
    let has = |w: &str| tokens.iter().any(|t| matches!(t, Token::Word(x) if x == w));
    let into_file = tokens.windows(2).any(|w| {
        matches!(w, [Token::Word(i), Token::Word(f)] if i == "INTO" && (f == "OUTFILE" || f == "DUMPFILE"))
    });
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
        _ if into_file => "SELECT … INTO OUTFILE or DUMPFILE",
        ("INSTALL" | "UNINSTALL" | "SHUTDOWN" | "FLUSH" | "PURGE" | "BINLOG" | "RESET", _) => {
            "server administration"
        }
        ("CHANGE", "MASTER" | "REPLICATION") => "server administration",
        ("START" | "STOP", "SLAVE" | "REPLICA" | "ALL") => "server administration",
        ("CREATE", _) if has("SONAME") => "loading server plugins",
        _ => return None,
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
                "EXECUTE IMMEDIATE 'DROP DATABASE shop__acme'",
                "EXECUTE IMMEDIATE @sql",
                "PREPARE s FROM @sql",
                "PREPARE s FROM 'DROP DATABASE shop__acme'",
            ] {
                assert_eq!(code(sql, tenant), Some(1227), "{sql}");
            }
            // Not in the parser's grammar, and nothing its keywords refuse: the server's.
            assert_eq!(code("PREPARE s FROM 'SELECT ?'", tenant), None);
            assert_eq!(code("SELEC 1", tenant), None);
            let sqlx = "SET NAMES utf8mb4 COLLATE utf8mb4_unicode_ci, time_zone = '+00:00'";
            assert_eq!(code(sqlx, tenant), None);
            assert_eq!(code("EXECUTE IMMEDIATE 'SELECT 1'", tenant), None);
            assert_eq!(code("SELECT outfile FROM t", tenant), None);
        }
    }

    #[test]
    fn character_sets_that_hide_quotes_are_refused() {
        for sql in [
            "SET NAMES gbk",
            "set names 'sjis'",
            "SET CHARACTER SET big5",
            "SET character_set_client = cp932",
            "SET @@session.character_set_client = 'gbk'",
            "SET NAMES utf8mb4 COLLATE utf8mb4_bin, character_set_client = gbk_bin",
        ] {
            assert_eq!(code(sql, true), Some(1115), "{sql}");
        }
        assert_eq!(code("SET NAMES utf8mb4", true), None);
        assert_eq!(code("SELECT 'gbk'", true), None);
        assert_eq!(code("SET @label = 'big5'", true), None);
    }

    #[test]
    fn a_session_kills_only_its_own_connection() {
        assert_eq!(code("KILL QUERY 42", true), None);
        assert_eq!(code("kill 42", true), None);
        assert_eq!(code("KILL CONNECTION 42", true), None);
        assert_eq!(code("KILL QUERY 7", true), Some(1095));
        // Not in the parser's grammar, and named by the keywords.
        assert_eq!(code("KILL QUERY ID 42", true), Some(1095));
        assert_eq!(code("KILL USER u", true), Some(1095));
        assert_eq!(code("KILL HARD 7", true), Some(1095));
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
    fn plain_data_statements_skip_the_parser_and_read_as_it_reads_them() {
        for sql in [
            "SELECT c FROM sbtest1 WHERE id=4242",
            "select * from t where a = 'x' for update",
            "INSERT INTO t (a, b) VALUES (1, 'two'), (3, \"four\")",
            "UPDATE t SET a = a + 1 WHERE id IN (1, 2)",
            "DELETE FROM t WHERE id = 7",
            "REPLACE INTO t VALUES (1)",
            "SELECT a INTO @v FROM t LIMIT 1",
        ] {
            let (fast, _) = plain_data(sql, &sqltext::readings(sql)).expect(sql);
            let parsed = tdb_sql::mysql::classify_all(sql).expect(sql);
            assert_eq!(
                (&fast.kind, fast.tag.as_str()),
                (&parsed[0].kind, parsed[0].tag.as_str()),
                "{sql}"
            );
        }
        // Everything else takes the parser: several statements, comments, readings that differ
        // by sql_mode, other leading keywords, files.
        for sql in [
            "SELECT 1; SELECT 2",
            "SELECT /*!50000 1 */",
            "SELECT 1 -- x",
            "SELECT 1 # x",
            r"SELECT 'a\'; SELECT 'b'",
            "WITH x AS (SELECT 1) SELECT * FROM x",
            "SET @a = 1",
            "SELECT * FROM t INTO OUTFILE '/tmp/x'",
            "SELECT 1 INTO DUMPFILE '/tmp/x'",
        ] {
            assert!(plain_data(sql, &sqltext::readings(sql)).is_none(), "{sql}");
        }
        // The keyword checks still run on what skips the parser.
        assert_eq!(
            code("SELECT 1 FROM t INTO outfile '/tmp/x'", true),
            Some(1227)
        );
        assert_eq!(code("SELECT 1", true), None);
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
