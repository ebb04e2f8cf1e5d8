//! A database's schema as the DDL that recreates it, in the server's own words (`SHOW CREATE
//! …`), one statement per object in an order that replays: sequences, then tables with every
//! table a foreign key points to before the table that points (circular references are left
//! in name order), routines, views after the views they read, triggers last. Table options
//! that describe data rather than schema (`AUTO_INCREMENT=n`) are left out.
//!
//! Read on a connection whose default database is the one exported, so names inside are
//! unqualified and the DDL replays into a database of any name.

use std::collections::{BTreeMap, BTreeSet};

use sqlx::Row;
use sqlx::mysql::MySqlConnection;

use super::from_sqlx;
use super::quote::ident;
use crate::engine::Result;

/// Who a replayed object's `DEFINER` clause names.
#[derive(Debug, Clone, Copy)]
pub enum Definer<'a> {
    /// No clause: the object is defined by whoever replays it.
    Drop,
    /// This account (`'user'@'host'` as [`super::quote::account`] spells it).
    As(&'a str),
}

/// The DDL of database `db` (the connection's default database) in replay order.
pub async fn schema_ddl(
    conn: &mut MySqlConnection,
    db: &str,
    definer: Definer<'_>,
) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for table in ordered_tables(conn, db).await? {
        let sql = show_create(conn, &format!("SHOW CREATE TABLE {}", ident(&table)), 1).await?;
        out.push(without_auto_increment(&sql));
    }
    let routines: Vec<(String, String)> = sqlx::query_as(
        "SELECT ROUTINE_TYPE, ROUTINE_NAME FROM information_schema.ROUTINES
          WHERE ROUTINE_SCHEMA = ? ORDER BY ROUTINE_TYPE, ROUTINE_NAME",
    )
    .bind(db)
    .fetch_all(&mut *conn)
    .await
    .map_err(from_sqlx)?;
    for (kind, name) in routines {
        let show = format!("SHOW CREATE {kind} {}", ident(&name));
        out.push(with_definer(&show_create(conn, &show, 2).await?, definer));
    }
    for view in ordered_views(conn, db).await? {
        let sql = show_create(conn, &format!("SHOW CREATE VIEW {}", ident(&view)), 1).await?;
        out.push(with_definer(&sql, definer));
    }
    let triggers: Vec<String> = sqlx::query_scalar(
        "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS
          WHERE TRIGGER_SCHEMA = ? ORDER BY EVENT_OBJECT_TABLE, ACTION_ORDER, TRIGGER_NAME",
    )
    .bind(db)
    .fetch_all(&mut *conn)
    .await
    .map_err(from_sqlx)?;
    for trigger in triggers {
        let show = format!("SHOW CREATE TRIGGER {}", ident(&trigger));
        out.push(with_definer(&show_create(conn, &show, 2).await?, definer));
    }
    Ok(out)
}

/// Column `column` of the one row a `SHOW CREATE …` answers.
async fn show_create(conn: &mut MySqlConnection, show: &str, column: usize) -> Result<String> {
    let row = sqlx::raw_sql(sqlx::AssertSqlSafe(show.to_string()))
        .fetch_one(&mut *conn)
        .await
        .map_err(from_sqlx)?;
    row.try_get::<String, _>(column).map_err(from_sqlx)
}

/// Sequences, then base tables, each after the tables its foreign keys point to.
async fn ordered_tables(conn: &mut MySqlConnection, db: &str) -> Result<Vec<String>> {
    let tables: Vec<(String, String)> = sqlx::query_as(
        "SELECT TABLE_NAME, TABLE_TYPE FROM information_schema.TABLES
          WHERE TABLE_SCHEMA = ? AND TABLE_TYPE IN ('BASE TABLE', 'SEQUENCE')
          ORDER BY TABLE_NAME",
    )
    .bind(db)
    .fetch_all(&mut *conn)
    .await
    .map_err(from_sqlx)?;
    let references: Vec<(String, String)> = sqlx::query_as(
        "SELECT TABLE_NAME, REFERENCED_TABLE_NAME FROM information_schema.REFERENTIAL_CONSTRAINTS
          WHERE CONSTRAINT_SCHEMA = ? AND UNIQUE_CONSTRAINT_SCHEMA = ?",
    )
    .bind(db)
    .bind(db)
    .fetch_all(&mut *conn)
    .await
    .map_err(from_sqlx)?;
    let (sequences, tables): (Vec<_>, Vec<_>) =
        tables.into_iter().partition(|(_, kind)| kind == "SEQUENCE");
    let mut out: Vec<String> = sequences.into_iter().map(|(name, _)| name).collect();
    out.extend(dependency_order(
        tables.into_iter().map(|(name, _)| name).collect(),
        &references,
    ));
    Ok(out)
}

/// Views, each after the views its definition names.
async fn ordered_views(conn: &mut MySqlConnection, db: &str) -> Result<Vec<String>> {
    let views: Vec<(String, String)> = sqlx::query_as(
        "SELECT TABLE_NAME, VIEW_DEFINITION FROM information_schema.VIEWS
          WHERE TABLE_SCHEMA = ? ORDER BY TABLE_NAME",
    )
    .bind(db)
    .fetch_all(&mut *conn)
    .await
    .map_err(from_sqlx)?;
    let mut uses = Vec::new();
    for (view, definition) in &views {
        for (other, _) in &views {
            if other != view && definition.contains(&ident(other)) {
                uses.push((view.clone(), other.clone()));
            }
        }
    }
    Ok(dependency_order(
        views.into_iter().map(|(name, _)| name).collect(),
        &uses,
    ))
}

/// `names` ordered so each comes after those it `needs` (pairs of (name, needed)); ties and
/// whatever a cycle holds stay in name order.
fn dependency_order(names: Vec<String>, needs: &[(String, String)]) -> Vec<String> {
    let known: BTreeSet<&str> = names.iter().map(String::as_str).collect();
    let mut waiting: BTreeMap<&str, BTreeSet<&str>> =
        known.iter().map(|n| (*n, BTreeSet::new())).collect();
    for (name, needed) in needs {
        if name != needed
            && known.contains(needed.as_str())
            && let Some(set) = waiting.get_mut(name.as_str())
        {
            set.insert(needed.as_str());
        }
    }
    let mut out: Vec<String> = Vec::with_capacity(names.len());
    while !waiting.is_empty() {
        let ready: Vec<&str> = waiting
            .iter()
            .filter(|(_, needs)| needs.is_empty())
            .map(|(name, _)| *name)
            .collect();
        // A cycle: take the first in name order and go on.
        let ready = if ready.is_empty() {
            waiting.keys().take(1).copied().collect()
        } else {
            ready
        };
        for name in ready {
            waiting.remove(name);
            for needs in waiting.values_mut() {
                needs.remove(name);
            }
            out.push(name.to_string());
        }
    }
    out
}

/// `CREATE TABLE … AUTO_INCREMENT=n …` without the counter.
fn without_auto_increment(sql: &str) -> String {
    let Some(close) = sql.rfind(')') else {
        return sql.to_string();
    };
    let (body, options) = sql.split_at(close + 1);
    let options: Vec<&str> = options
        .split(' ')
        .filter(|part| !part.starts_with("AUTO_INCREMENT="))
        .collect();
    format!("{body}{}", options.join(" "))
}

/// The statement with its ` DEFINER=`user`@`host`` clause dropped or replaced.
fn with_definer(sql: &str, definer: Definer<'_>) -> String {
    let Some(start) = sql.find(" DEFINER=") else {
        return sql.to_string();
    };
    let rest = &sql[start + " DEFINER=".len()..];
    let Some(len) = account_len(rest) else {
        return sql.to_string();
    };
    let replacement = match definer {
        Definer::Drop => String::new(),
        Definer::As(account) => format!(" DEFINER={account}"),
    };
    format!("{}{replacement}{}", &sql[..start], &rest[len..])
}

/// The length of a `` `user`@`host` `` (or `'user'@'host'`) account name at the start of `s`.
fn account_len(s: &str) -> Option<usize> {
    let user = quoted_len(s)?;
    let after = s[user..].strip_prefix('@')?;
    Some(user + 1 + quoted_len(after)?)
}

/// The length of a quoted name at the start of `s` (a doubled quote stays inside).
fn quoted_len(s: &str) -> Option<usize> {
    let quote = s.chars().next().filter(|c| matches!(c, '`' | '\''))?;
    let mut chars = s.char_indices().skip(1).peekable();
    while let Some((i, c)) = chars.next() {
        if c == quote {
            if chars.peek().map(|(_, n)| *n) == Some(quote) {
                chars.next();
                continue;
            }
            return Some(i + 1);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn referenced_tables_come_first() {
        let needs = vec![
            ("orders".to_string(), "users".to_string()),
            ("lines".to_string(), "orders".to_string()),
            ("users".to_string(), "users".to_string()),
        ];
        assert_eq!(
            dependency_order(names(&["lines", "orders", "users", "zeta"]), &needs),
            names(&["users", "zeta", "orders", "lines"])
        );
        let cycle = vec![
            ("a".to_string(), "b".to_string()),
            ("b".to_string(), "a".to_string()),
        ];
        assert_eq!(
            dependency_order(names(&["b", "a"]), &cycle),
            names(&["a", "b"])
        );
    }

    #[test]
    fn counters_and_definers_are_taken_out() {
        assert_eq!(
            without_auto_increment(
                "CREATE TABLE `t` (\n  `id` int(11) NOT NULL AUTO_INCREMENT\n) ENGINE=InnoDB AUTO_INCREMENT=7 DEFAULT CHARSET=utf8mb4"
            ),
            "CREATE TABLE `t` (\n  `id` int(11) NOT NULL AUTO_INCREMENT\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
        );
        let view = "CREATE ALGORITHM=UNDEFINED DEFINER=`o``x`@`%` SQL SECURITY DEFINER VIEW `v` AS select 1";
        assert_eq!(
            with_definer(view, Definer::Drop),
            "CREATE ALGORITHM=UNDEFINED SQL SECURITY DEFINER VIEW `v` AS select 1"
        );
        assert_eq!(
            with_definer(view, Definer::As("'d'@'%'")),
            "CREATE ALGORITHM=UNDEFINED DEFINER='d'@'%' SQL SECURITY DEFINER VIEW `v` AS select 1"
        );
        let trigger =
            "CREATE DEFINER=`own`@`%` TRIGGER tr BEFORE INSERT ON t FOR EACH ROW SET @x = 1";
        assert_eq!(
            with_definer(trigger, Definer::Drop),
            "CREATE TRIGGER tr BEFORE INSERT ON t FOR EACH ROW SET @x = 1"
        );
    }
}
