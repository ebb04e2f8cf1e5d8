//! The classifier against a corpus of real statements: DDL of every kind, and DML that looks
//! like DDL (keywords in strings, comments, dollar quotes, identifiers), CTEs, SELECT INTO.

use proptest::prelude::*;
use tdb_sql::{Kind, TxOp, classify, classify_all, split};

const DDL: &[&str] = &[
    "CREATE TABLE users (id serial PRIMARY KEY, email text NOT NULL UNIQUE)",
    "CREATE TABLE IF NOT EXISTS t (a int)",
    "CREATE TEMP TABLE scratch (a int)",
    "CREATE UNLOGGED TABLE fast (a int)",
    "CREATE TABLE measurements (ts timestamptz, v float8) PARTITION BY RANGE (ts)",
    "CREATE TABLE m_2026 PARTITION OF measurements FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')",
    "CREATE TABLE child () INHERITS (users)",
    "CREATE TABLE copy_of AS SELECT * FROM users",
    "CREATE TABLE IF NOT EXISTS copy2 AS SELECT 1 AS x",
    "SELECT * INTO archived_users FROM users",
    "SELECT id INTO TEMP tmp_ids FROM users WHERE id > 3",
    "CREATE MATERIALIZED VIEW mv AS SELECT count(*) FROM users",
    "ALTER TABLE users ADD COLUMN age int",
    "ALTER TABLE users DROP COLUMN age",
    "ALTER TABLE users ALTER COLUMN email SET NOT NULL",
    "ALTER TABLE users ALTER COLUMN email TYPE varchar(320)",
    "ALTER TABLE users RENAME COLUMN email TO mail",
    "ALTER TABLE users RENAME TO people",
    "ALTER TABLE users ADD CONSTRAINT age_positive CHECK (age > 0)",
    "ALTER TABLE orders ADD CONSTRAINT fk FOREIGN KEY (user_id) REFERENCES users (id)",
    "ALTER TABLE users ENABLE ROW LEVEL SECURITY",
    "ALTER TABLE users OWNER TO someone",
    "ALTER TABLE users SET SCHEMA archive",
    "ALTER TABLE IF EXISTS users DROP CONSTRAINT IF EXISTS age_positive",
    "DROP TABLE users",
    "DROP TABLE IF EXISTS a, b CASCADE",
    "CREATE INDEX users_email_idx ON users (email)",
    "CREATE UNIQUE INDEX CONCURRENTLY ix ON users (lower(email))",
    "CREATE INDEX ON users USING gin (tags)",
    "CREATE INDEX partial_idx ON users (id) WHERE active",
    "DROP INDEX users_email_idx",
    "DROP INDEX CONCURRENTLY IF EXISTS ix",
    "ALTER INDEX ix RENAME TO ix2",
    "CREATE VIEW active_users AS SELECT * FROM users WHERE active",
    "CREATE OR REPLACE VIEW v AS SELECT 1",
    "CREATE RECURSIVE VIEW nums (n) AS VALUES (1) UNION ALL SELECT n + 1 FROM nums WHERE n < 5",
    "DROP VIEW active_users",
    "ALTER VIEW v RENAME TO v2",
    "DROP MATERIALIZED VIEW mv",
    "CREATE FUNCTION add(a int, b int) RETURNS int LANGUAGE sql AS 'SELECT a + b'",
    "CREATE OR REPLACE FUNCTION f() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$",
    "CREATE FUNCTION g() RETURNS void AS $body$ DELETE FROM users; $body$ LANGUAGE sql",
    "CREATE PROCEDURE p() LANGUAGE sql AS $$ INSERT INTO t VALUES (1) $$",
    "ALTER FUNCTION add(int, int) RENAME TO plus",
    "ALTER FUNCTION f() SECURITY DEFINER",
    "DROP FUNCTION add(int, int)",
    "DROP PROCEDURE p()",
    "CREATE AGGREGATE mysum (int) (sfunc = int4pl, stype = int)",
    "CREATE OPERATOR === (leftarg = int, rightarg = int, procedure = int4eq)",
    "CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy')",
    "CREATE TYPE pair AS (a int, b text)",
    "CREATE TYPE floatrange AS RANGE (subtype = float8)",
    "ALTER TYPE mood ADD VALUE 'ecstatic'",
    "ALTER TYPE pair RENAME ATTRIBUTE a TO x",
    "DROP TYPE mood",
    "CREATE DOMAIN email AS text CHECK (VALUE LIKE '%@%')",
    "ALTER DOMAIN email SET NOT NULL",
    "DROP DOMAIN email",
    "CREATE EXTENSION IF NOT EXISTS pgcrypto",
    "CREATE EXTENSION hstore WITH SCHEMA public",
    "ALTER EXTENSION hstore UPDATE",
    "DROP EXTENSION pgcrypto",
    "CREATE SCHEMA archive",
    "CREATE SCHEMA IF NOT EXISTS app AUTHORIZATION someone",
    "ALTER SCHEMA archive RENAME TO old",
    "DROP SCHEMA archive CASCADE",
    "CREATE SEQUENCE order_seq START 100",
    "ALTER SEQUENCE order_seq RESTART WITH 1",
    "ALTER SEQUENCE order_seq OWNED BY orders.id",
    "DROP SEQUENCE order_seq",
    "CREATE TRIGGER trg BEFORE INSERT ON users FOR EACH ROW EXECUTE FUNCTION f()",
    "CREATE OR REPLACE TRIGGER trg AFTER UPDATE ON users FOR EACH ROW EXECUTE FUNCTION f()",
    "ALTER TRIGGER trg ON users RENAME TO trg2",
    "DROP TRIGGER trg ON users",
    "ALTER TABLE users DISABLE TRIGGER ALL",
    "CREATE POLICY own_rows ON users USING (owner = current_user)",
    "CREATE POLICY p2 ON users FOR INSERT WITH CHECK (true)",
    "ALTER POLICY own_rows ON users RENAME TO mine",
    "DROP POLICY own_rows ON users",
    "COMMENT ON TABLE users IS 'people'",
    "COMMENT ON COLUMN users.email IS 'where to write'",
    "GRANT SELECT ON users TO reporting",
    "GRANT ALL ON ALL TABLES IN SCHEMA public TO app",
    "REVOKE INSERT ON users FROM PUBLIC",
    "GRANT reporting TO alice",
    "REVOKE reporting FROM alice",
    "ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO reporting",
    "CREATE ROLE reporting NOLOGIN",
    "ALTER ROLE reporting SET search_path = public",
    "DROP ROLE reporting",
    "CREATE DATABASE other",
    "DROP DATABASE other",
    "CREATE RULE r AS ON DELETE TO users DO INSTEAD NOTHING",
    "CREATE COLLATION german (provider = icu, locale = 'de')",
    "CREATE CAST (text AS int) WITH INOUT",
    "CREATE STATISTICS s ON a, b FROM t",
    "CREATE TEXT SEARCH CONFIGURATION cfg (COPY = english)",
    "CREATE EVENT TRIGGER et ON ddl_command_start EXECUTE FUNCTION f()",
    "CREATE PUBLICATION pub FOR TABLE users",
    "CREATE FOREIGN TABLE ft (a int) SERVER s",
    "SECURITY LABEL ON TABLE users IS 'x'",
    "REASSIGN OWNED BY a TO b",
    "DROP OWNED BY a",
    "ALTER SYSTEM SET work_mem = '64MB'",
    "DO $$ BEGIN EXECUTE 'CREATE TABLE sneaky (a int)'; END $$",
    "DO LANGUAGE plpgsql $x$ BEGIN PERFORM 1; END $x$",
    "EXPLAIN ANALYZE CREATE TABLE e AS SELECT 1",
    "EXPLAIN CREATE TABLE e2 AS SELECT 1",
    "PREPARE mk AS SELECT * INTO made_by_prepare FROM users",
    "/* leading comment */ CREATE TABLE c1 (a int)",
    "-- line comment\nCREATE TABLE c2 (a int)",
    "create table lower_case (a int)",
];

const DML: &[&str] = &[
    "INSERT INTO users (email) VALUES ('a@example.com')",
    "INSERT INTO logs (msg) VALUES ('CREATE TABLE users (id int)')",
    "INSERT INTO logs (msg) VALUES ($$DROP TABLE users$$)",
    "INSERT INTO logs (msg) VALUES ($tag$ALTER TABLE x ADD COLUMN y int$tag$)",
    "INSERT INTO logs (msg) VALUES (E'GRANT ALL\\n')",
    "INSERT INTO t SELECT * FROM s ON CONFLICT DO NOTHING",
    "INSERT INTO t (a) VALUES (1) ON CONFLICT (a) DO UPDATE SET a = EXCLUDED.a RETURNING *",
    "UPDATE users SET email = 'drop table users' WHERE id = 1",
    "UPDATE users SET age = age + 1 /* CREATE INDEX */",
    "UPDATE t SET a = s.a FROM s WHERE t.id = s.id",
    "DELETE FROM users WHERE email LIKE '%create%'",
    "DELETE FROM users -- ; DROP TABLE users",
    "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN UPDATE SET a = s.a",
    "WITH gone AS (DELETE FROM users WHERE id = 1 RETURNING *) SELECT * FROM gone",
    "WITH moved AS (INSERT INTO b SELECT * FROM a RETURNING id) SELECT count(*) FROM moved",
    "COPY users FROM STDIN",
    "COPY users TO STDOUT WITH (FORMAT csv)",
    "COPY (SELECT * FROM users) TO STDOUT",
    "TRUNCATE users",
    "TRUNCATE TABLE a, b RESTART IDENTITY",
    "CALL refresh_things()",
    "EXECUTE stmt(1)",
    "EXPLAIN ANALYZE DELETE FROM users",
    "EXPLAIN (ANALYZE, BUFFERS) SELECT 1",
    "REFRESH MATERIALIZED VIEW mv",
    "LOCK TABLE users IN ACCESS EXCLUSIVE MODE",
];

const QUERIES: &[&str] = &[
    "SELECT 1",
    "SELECT * FROM users",
    "SELECT 'CREATE TABLE x (a int)' AS looks_like_ddl",
    "SELECT $$DROP DATABASE prod$$",
    "SELECT $a$ ALTER TABLE $a$",
    "SELECT 1 -- DROP TABLE users",
    "SELECT /* GRANT ALL */ 2",
    "SELECT \"create\", \"table\" FROM \"drop\"",
    "SELECT create_date, drop_reason FROM events",
    "WITH t AS (SELECT 1 AS a) SELECT * FROM t",
    "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3) SELECT * FROM r",
    "VALUES (1, 'a'), (2, 'b')",
    "SELECT * FROM users UNION SELECT * FROM admins",
    "TABLE users",
    "SELECT count(*) FILTER (WHERE active) FROM users",
    "SELECT row_number() OVER (ORDER BY id) FROM users",
    "SELECT jsonb_build_object('create', 1)",
    "SELECT * FROM users WHERE id IN (SELECT user_id FROM orders)",
    "SELECT * FROM users FOR UPDATE",
    "SHOW search_path",
    "SHOW ALL",
    "EXPLAIN SELECT * FROM users",
    "EXPLAIN (FORMAT json) SELECT 1",
    "FETCH 10 FROM c",
    "CLOSE c",
    "DECLARE c CURSOR FOR SELECT * FROM users",
    "select e'\\'' as quote",
];

const OTHER: &[&str] = &[
    "SET search_path = public",
    "SET LOCAL statement_timeout = 1000",
    "RESET ALL",
    "SET ROLE someone",
    "SET SESSION AUTHORIZATION someone",
    "DEALLOCATE ALL",
    "LISTEN events",
    "NOTIFY events, 'hello'",
    "UNLISTEN *",
    "DISCARD ALL",
    "CHECKPOINT",
    "VACUUM users",
    "VACUUM (ANALYZE) users",
    "ANALYZE users",
    "REINDEX TABLE users",
    "CLUSTER users USING users_pkey",
    "SET CONSTRAINTS ALL DEFERRED",
    "PREPARE q(int) AS SELECT * FROM users WHERE id = $1",
];

const TRANSACTIONS: &[(&str, TxOp)] = &[];

fn tx_cases() -> Vec<(&'static str, TxOp)> {
    let mut cases = TRANSACTIONS.to_vec();
    cases.extend([
        ("BEGIN", TxOp::Begin),
        ("BEGIN ISOLATION LEVEL SERIALIZABLE", TxOp::Begin),
        ("START TRANSACTION READ ONLY", TxOp::Begin),
        ("COMMIT", TxOp::Commit),
        ("END", TxOp::Commit),
        ("ROLLBACK", TxOp::Rollback),
        ("ABORT", TxOp::Rollback),
        ("COMMIT AND CHAIN", TxOp::CommitAndChain),
        ("ROLLBACK AND CHAIN", TxOp::RollbackAndChain),
        ("SAVEPOINT s1", TxOp::Savepoint("s1".into())),
        ("RELEASE SAVEPOINT s1", TxOp::Release("s1".into())),
        ("ROLLBACK TO SAVEPOINT s1", TxOp::RollbackTo("s1".into())),
        ("PREPARE TRANSACTION 'x'", TxOp::TwoPhase),
        ("COMMIT PREPARED 'x'", TxOp::TwoPhase),
    ]);
    cases
}

fn assert_kind(sql: &str, expected: &Kind) {
    let (kind, tag) = classify(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    assert_eq!(&kind, expected, "{sql} (tag {tag})");
    assert!(!tag.is_empty(), "{sql} has no tag");
}

#[test]
fn corpus_is_large_enough() {
    let total = DDL.len() + DML.len() + QUERIES.len() + OTHER.len() + tx_cases().len();
    assert!(total >= 150, "corpus has {total} statements");
}

#[test]
fn ddl_of_every_kind_is_ddl() {
    for sql in DDL {
        assert_kind(sql, &Kind::Ddl);
    }
}

#[test]
fn dml_that_looks_like_ddl_is_dml() {
    for sql in DML {
        assert_kind(sql, &Kind::Dml);
    }
}

#[test]
fn queries_are_queries() {
    for sql in QUERIES {
        assert_kind(sql, &Kind::Query);
    }
}

#[test]
fn session_and_maintenance_statements_are_other() {
    for sql in OTHER {
        assert_kind(sql, &Kind::Other);
    }
}

#[test]
fn transaction_control_is_recognised() {
    for (sql, op) in tx_cases() {
        assert_kind(sql, &Kind::Transaction(op));
    }
}

#[test]
fn batches_split_on_statement_boundaries_only() {
    let batch = "CREATE TABLE a (x text DEFAULT ';');\n\
                 INSERT INTO a VALUES ('; DROP TABLE a;');\n\
                 -- a comment; with a semicolon\n\
                 DO $$ BEGIN PERFORM ';'; END $$;\n\
                 SELECT 1";
    let statements = classify_all(batch).expect("classify");
    let kinds: Vec<&Kind> = statements.iter().map(|s| &s.kind).collect();
    assert_eq!(kinds, [&Kind::Ddl, &Kind::Dml, &Kind::Ddl, &Kind::Query]);
    assert_eq!(statements[0].text, "CREATE TABLE a (x text DEFAULT ';')");
    assert_eq!(statements[0].tag, "CREATE TABLE");
    // A statement starts at its first token: a comment before it is not part of it.
    assert_eq!(statements[2].text, "DO $$ BEGIN PERFORM ';'; END $$");
}

#[test]
fn invalid_statements_are_errors_not_dropped() {
    for bad in [
        "SELEC 1",
        "SELECT 1; CREAT TABLE x (a int); SELECT 2",
        "CREATE TABLE (",
        "'unterminated",
    ] {
        assert!(
            split(bad).is_err() || classify_all(bad).is_err(),
            "{bad} accepted"
        );
    }
    assert!(split("").expect("empty").is_empty());
    assert!(split(" ;; ").expect("only separators").is_empty());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_text_never_panics(sql in "\\PC{0,120}") {
        let _ = classify_all(&sql);
    }

    #[test]
    fn sql_shaped_text_never_panics(
        parts in prop::collection::vec(
            prop_oneof![
                Just("CREATE"), Just("TABLE"), Just("SELECT"), Just("DROP"), Just("$$"),
                Just("'"), Just(";"), Just("--"), Just("/*"), Just("*/"), Just("("), Just(")"),
                Just("x"), Just("1"), Just("INTO"), Just("WITH"), Just("AS"), Just("DO"),
                Just("\n"), Just("E'\\\\'"), Just("\"q\""),
            ],
            0..24,
        )
    ) {
        let sql = parts.join(" ");
        if let Ok(statements) = classify_all(&sql) {
            for s in statements {
                prop_assert!(!s.text.is_empty());
                prop_assert!(sql.contains(s.text));
            }
        }
    }
}
