//! Logical dumps and restores with the installed `pg_dump` and `psql`, streamed: the dump is read
//! from `pg_dump`'s standard output as it is produced, and a restore feeds `psql`'s standard
//! input, so neither is ever held whole in memory or on local disk.
//!
//! Dumps are plain SQL without ownership or privilege statements: they are made and restored as
//! the tenant's owner role, so every object is recreated by (and owned by) that role, and the
//! target database's default privileges give the application and read roles their grants, as
//! in the original.

use std::path::Path;
use std::process::Stdio;

use futures_util::FutureExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

use crate::engine::{DatabaseAccess, Dump, EngineError, Result};

/// Bytes of a tool's standard error kept for its error message.
const STDERR_LIMIT: usize = 16 * 1024;

fn command(tool: &Path, target: &DatabaseAccess) -> Command {
    let mut command = Command::new(tool);
    command
        .arg("--host")
        .arg(&target.host)
        .arg("--port")
        .arg(target.port.to_string())
        .arg("--username")
        .arg(&target.user)
        .arg("--dbname")
        .arg(&target.database)
        // Nothing of tdb's own environment or files may stand in for the role's credentials.
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("PGPASSWORD", &target.password)
        .env("PGPASSFILE", "/dev/null")
        .env("PGSERVICEFILE", "/dev/null")
        .env("PGCONNECT_TIMEOUT", "10")
        .env("PGSSLMODE", "prefer")
        .env("PGAPPNAME", "tdb")
        .kill_on_drop(true);
    command
}

/// Drains a child's standard error (keeping the first bytes) so it never blocks on a full pipe.
fn drain_stderr(child: &mut Child) -> tokio::task::JoinHandle<String> {
    let errors = child.stderr.take();
    tokio::spawn(async move {
        let mut kept = Vec::new();
        if let Some(errors) = errors {
            let mut errors = errors;
            let _ = (&mut errors)
                .take(STDERR_LIMIT as u64)
                .read_to_end(&mut kept)
                .await;
            // Whatever is past the limit is read and dropped.
            let _ = tokio::io::copy(&mut errors, &mut tokio::io::sink()).await;
        }
        String::from_utf8_lossy(&kept).into_owned()
    })
}

/// The first line of a tool's complaint, without its `pg_dump: error:` prefixes.
fn first_error(tool: &str, stderr: &str) -> String {
    let line = stderr
        .lines()
        .find(|l| l.contains("ERROR") || l.contains("error:") || l.contains("FATAL"))
        .or_else(|| stderr.lines().find(|l| !l.trim().is_empty()))
        .unwrap_or("failed without a message")
        .trim();
    let line = line
        .strip_prefix(&format!("{tool}: "))
        .unwrap_or(line)
        .trim_start_matches("error: ");
    format!("{tool}: {line}")
}

pub fn dump(pg_dump: &Path, source: &DatabaseAccess) -> Result<Dump> {
    spawn_dump(pg_dump, source, &["--no-owner", "--no-privileges"])
}

/// A dump of one schema with its ownership and privileges, made and restored by the server's
/// administrator (moving a provisioned database's schema to a database of its own).
pub fn dump_schema(pg_dump: &Path, admin: &DatabaseAccess, schema: &str) -> Result<Dump> {
    spawn_dump(pg_dump, admin, &[&format!("--schema={schema}")])
}

fn spawn_dump(pg_dump: &Path, source: &DatabaseAccess, extra: &[&str]) -> Result<Dump> {
    let mut child = command(pg_dump, source)
        .args([
            "--format=plain",
            "--no-publications",
            "--no-subscriptions",
            "--no-security-labels",
            "--no-tablespaces",
            "--quote-all-identifiers",
        ])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| EngineError::Internal(format!("running {}: {e}", pg_dump.display())))?;
    let output = child
        .stdout
        .take()
        .ok_or_else(|| EngineError::Internal("pg_dump has no standard output".into()))?;
    let stderr = drain_stderr(&mut child);
    let finish = async move {
        let status = child
            .wait()
            .await
            .map_err(|e| EngineError::Internal(format!("waiting for pg_dump: {e}")))?;
        let stderr = stderr.await.unwrap_or_default();
        if status.success() {
            Ok(())
        } else {
            Err(EngineError::Internal(first_error("pg_dump", &stderr)))
        }
    };
    Ok(Dump {
        output: Box::new(output),
        finish: finish.boxed(),
    })
}

/// Feeds `input` to `psql` as the target's owner in a single transaction that stops at the
/// first error, so a failed restore leaves the target as empty as it was.
pub async fn restore(
    psql: &Path,
    target: &DatabaseAccess,
    mut input: Box<dyn AsyncRead + Send + Unpin>,
) -> Result<()> {
    let mut child = command(psql, target)
        .args([
            "--no-psqlrc",
            "--quiet",
            "--set=ON_ERROR_STOP=1",
            "--single-transaction",
            "--file=-",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| EngineError::Internal(format!("running {}: {e}", psql.display())))?;
    let mut stdin = child
        .stdin
        .take()
        .ok_or_else(|| EngineError::Internal("psql has no standard input".into()))?;
    let stderr = drain_stderr(&mut child);
    let mut buf = vec![0u8; 256 * 1024];
    let mut read_error = None;
    loop {
        let n = match input.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                read_error = Some(e);
                break;
            }
        };
        // psql stopped reading: it failed, and its status and message say why.
        if stdin.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    if let Some(e) = read_error {
        // The transaction must not commit a partial restore: end psql before it sees EOF.
        let _ = child.start_kill();
        let _ = child.wait().await;
        stderr.abort();
        return Err(EngineError::Internal(format!(
            "the backup cannot be read: {e}"
        )));
    }
    drop(stdin);
    let status = child
        .wait()
        .await
        .map_err(|e| EngineError::Internal(format!("waiting for psql: {e}")))?;
    let stderr = stderr.await.unwrap_or_default();
    if status.success() {
        Ok(())
    } else {
        Err(EngineError::Internal(first_error("psql", &stderr)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_reduced_to_their_first_line() {
        let stderr =
            "pg_dump: error: connection to server failed: FATAL:  password authentication failed\n";
        assert_eq!(
            first_error("pg_dump", stderr),
            "pg_dump: connection to server failed: FATAL:  password authentication failed"
        );
        let psql =
            "psql:<stdin>:12: ERROR:  syntax error at or near \"garbage\"\nLINE 1: garbage\n";
        assert_eq!(
            first_error("psql", psql),
            "psql: psql:<stdin>:12: ERROR:  syntax error at or near \"garbage\""
        );
        assert_eq!(first_error("psql", ""), "psql: failed without a message");
    }
}
