//! Schema export with the installed `pg_dump --schema-only`: the server's own account of its
//! DDL (tables, sequences and identities, constraints, indexes, foreign keys) in dependency
//! order. Session settings and ownership statements are dropped; the rest is returned one
//! statement each, ready to replay.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

use crate::engine::{DatabaseAccess, EngineError, Result};

const DUMP_TIMEOUT: Duration = Duration::from_secs(120);

pub async fn dump_schema(pg_dump: &Path, source: &DatabaseAccess) -> Result<Vec<String>> {
    let mut command = Command::new(pg_dump);
    command
        .args([
            "--schema-only",
            "--no-owner",
            "--no-privileges",
            "--no-comments",
            "--no-publications",
            "--no-subscriptions",
            "--no-security-labels",
            "--no-tablespaces",
            "--exclude-schema=information_schema",
        ])
        .arg("--host")
        .arg(&source.host)
        .arg("--port")
        .arg(source.port.to_string())
        .arg("--username")
        .arg(&source.user)
        .arg("--dbname")
        .arg(&source.database)
        // Nothing of tdb's own environment or files may stand in for the caller's credentials.
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("PGPASSWORD", &source.password)
        .env("PGPASSFILE", "/dev/null")
        .env("PGSERVICEFILE", "/dev/null")
        .env("PGCONNECT_TIMEOUT", "10")
        .env("PGSSLMODE", "prefer")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(DUMP_TIMEOUT, command.output())
        .await
        .map_err(|_| EngineError::Connect("pg_dump did not finish within 120s".into()))?
        .map_err(|e| EngineError::Internal(format!("running {}: {e}", pg_dump.display())))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let message = stderr
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("pg_dump failed")
            .trim_start_matches("pg_dump: ")
            .trim_start_matches("error: ")
            .to_string();
        return Err(EngineError::Connect(message));
    }
    let text = strip_meta_commands(&String::from_utf8_lossy(&output.stdout));
    let statements = tdb_sql::split(&text).map_err(|e| EngineError::Internal(e.to_string()))?;
    Ok(statements
        .into_iter()
        .filter(|s| keep(s))
        .map(|s| s.to_string())
        .collect())
}

/// Removes the psql meta-commands pg_dump writes on lines of their own (`\restrict KEY` and
/// `\unrestrict KEY` since the 2025 security releases, `\connect`): they are not SQL.
fn strip_meta_commands(dump: &str) -> String {
    dump.lines()
        .filter(|line| {
            let word = line.split_whitespace().next().unwrap_or("");
            !matches!(word, "\\restrict" | "\\unrestrict" | "\\connect")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Drops what configures the dump session rather than describing the schema.
fn keep(statement: &str) -> bool {
    let upper = statement.trim_start().to_ascii_uppercase();
    !(upper.starts_with("SET ")
        || upper.starts_with("SELECT PG_CATALOG.SET_CONFIG")
        || upper.starts_with("ALTER SCHEMA PUBLIC OWNER")
        || upper.starts_with("CREATE SCHEMA PUBLIC")
        || upper.starts_with("COMMENT ON SCHEMA PUBLIC")
        || upper.starts_with("\\"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn meta_commands_are_removed_and_sql_kept() {
        let dump = "SET x = 1;\n\\restrict abc\nCREATE TABLE t (a text DEFAULT '\\restrict');\n\\unrestrict abc\n";
        let out = super::strip_meta_commands(dump);
        assert_eq!(
            out,
            "SET x = 1;\nCREATE TABLE t (a text DEFAULT '\\restrict');"
        );
    }
}
