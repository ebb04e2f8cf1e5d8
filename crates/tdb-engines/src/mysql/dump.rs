//! Logical dumps and restores with the installed `mariadb-dump` and `mariadb`, streamed: the
//! dump is read from the tool's standard output as it is produced, and a restore feeds the
//! client's standard input, so neither is ever held whole in memory or on local disk.
//!
//! Both run as the database's owner. Its password reaches the tools in an option file of tdb's
//! own (mode 0600, removed when the tool is done), never on a command line or in the
//! environment; `--defaults-file` keeps every other option file (`/etc/mysql`, `~/.my.cnf`)
//! out. A dump is the database alone (no `CREATE DATABASE`, no `USE`), so it restores into a
//! database of any name, with tdb's record of the schema version on its first line.

use std::io::Write as _;
use std::path::Path;
use std::process::Stdio;

use futures_util::FutureExt;
use sqlx::Connection;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

use super::{connect, errno, error_number, meta};
use crate::engine::{DatabaseAccess, Dump, EngineError, Result};

/// Bytes of a tool's standard error kept for its error message.
const STDERR_LIMIT: usize = 16 * 1024;
/// The longest first line a restore looks at for the dump's header.
const HEADER_LIMIT: u64 = 4096;

/// An option file holding `password` for the `[client]` group, readable by tdb's user alone;
/// removed when dropped.
fn password_file(password: &str) -> Result<tempfile::NamedTempFile> {
    let mut escaped = String::with_capacity(password.len() + 2);
    for c in password.chars() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            '"' => escaped.push_str("\\\""),
            '\n' => escaped.push_str("\\n"),
            '\r' => escaped.push_str("\\r"),
            c => escaped.push(c),
        }
    }
    let mut file = tempfile::Builder::new()
        .prefix("tdb-mysql-")
        .suffix(".cnf")
        .tempfile()
        .map_err(|e| EngineError::Internal(format!("writing an option file: {e}")))?;
    writeln!(file, "[client]\npassword=\"{escaped}\"")
        .and_then(|_| file.flush())
        .map_err(|e| EngineError::Internal(format!("writing an option file: {e}")))?;
    Ok(file)
}

/// `tool` reaching `target` as its user, with the password from `options`.
fn command(tool: &Path, target: &DatabaseAccess, options: &Path) -> Command {
    let mut command = Command::new(tool);
    // --defaults-file must come first.
    command.arg(format!("--defaults-file={}", options.display()));
    if target.host.starts_with('/') {
        command
            .arg("--protocol=SOCKET")
            .arg(format!("--socket={}", target.host));
    } else {
        command
            .arg("--protocol=TCP")
            .arg(format!("--host={}", target.host))
            .arg(format!("--port={}", target.port));
    }
    command
        .arg(format!("--user={}", target.user))
        .arg("--default-character-set=utf8mb4")
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .kill_on_drop(true);
    command
}

/// Drains a child's standard error (keeping the first bytes) so it never blocks on a full pipe.
fn drain_stderr(child: &mut Child) -> tokio::task::JoinHandle<String> {
    let errors = child.stderr.take();
    tokio::spawn(async move {
        let mut kept = Vec::new();
        if let Some(mut errors) = errors {
            let _ = (&mut errors)
                .take(STDERR_LIMIT as u64)
                .read_to_end(&mut kept)
                .await;
            let _ = tokio::io::copy(&mut errors, &mut tokio::io::sink()).await;
        }
        String::from_utf8_lossy(&kept).into_owned()
    })
}

/// The line of a tool's complaint that says what went wrong.
fn first_error(tool: &str, stderr: &str) -> String {
    let line = stderr
        .lines()
        .find(|l| l.contains("ERROR") || l.contains("error") || l.contains("Got "))
        .or_else(|| stderr.lines().find(|l| !l.trim().is_empty()))
        .unwrap_or("failed without a message")
        .trim();
    let line = line.strip_prefix(&format!("{tool}: ")).unwrap_or(line);
    format!("{tool}: {line}")
}

/// The schema version tdb recorded for `source`; `None` for a database without a record (a
/// workspace's).
async fn recorded_version(source: &DatabaseAccess) -> Result<Option<i32>> {
    let mut conn = connect(source).await?;
    let record = meta::read(&mut conn, &source.database).await;
    let _ = conn.close().await;
    match record {
        Ok(record) => Ok(Some(record.version)),
        Err(e)
            if matches!(
                error_number(&e),
                Some(errno::NO_SUCH_TABLE | errno::TABLE_ACCESS_DENIED)
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

pub async fn dump(tool: &Path, source: &DatabaseAccess) -> Result<Dump> {
    let version = recorded_version(source).await?;
    let options = password_file(&source.password)?;
    let mut child = command(tool, source, options.path())
        .args([
            "--single-transaction",
            "--routines",
            "--triggers",
            "--skip-events",
            "--no-create-db",
            "--no-tablespaces",
            "--hex-blob",
            "--quote-names",
        ])
        .arg(&source.database)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| EngineError::Internal(format!("running {}: {e}", tool.display())))?;
    let output = child
        .stdout
        .take()
        .ok_or_else(|| EngineError::Internal("mariadb-dump has no standard output".into()))?;
    let stderr = drain_stderr(&mut child);
    let finish = async move {
        let status = child
            .wait()
            .await
            .map_err(|e| EngineError::Internal(format!("waiting for mariadb-dump: {e}")));
        drop(options);
        let stderr = stderr.await.unwrap_or_default();
        match status? {
            s if s.success() => Ok(()),
            _ => Err(EngineError::Internal(first_error("mariadb-dump", &stderr))),
        }
    };
    let header = version.map(meta::header).unwrap_or_default();
    Ok(Dump {
        output: Box::new(std::io::Cursor::new(header.into_bytes()).chain(output)),
        finish: finish.boxed(),
    })
}

/// Feeds `input` to the `mariadb` client as the target's owner, stopping at the first error,
/// then records the schema version the dump names. The client runs in `--binary-mode` and
/// `--sandbox`: of its own commands, a dump can use `DELIMITER` (routines, triggers) and none
/// that reach a shell or a file.
pub async fn restore(
    tool: &Path,
    target: &DatabaseAccess,
    input: Box<dyn AsyncRead + Send + Unpin>,
) -> Result<()> {
    let mut input = BufReader::with_capacity(256 * 1024, input);
    let mut first = Vec::new();
    (&mut input)
        .take(HEADER_LIMIT)
        .read_until(b'\n', &mut first)
        .await
        .map_err(|e| EngineError::Internal(format!("the backup cannot be read: {e}")))?;
    let version = std::str::from_utf8(&first)
        .ok()
        .and_then(meta::parse_header);
    let options = password_file(&target.password)?;
    let mut child = command(tool, target, options.path())
        .arg(format!("--database={}", target.database))
        .args([
            "--batch",
            "--binary-mode",
            "--sandbox",
            "--local-infile=0",
            "--connect-timeout=10",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| EngineError::Internal(format!("running {}: {e}", tool.display())))?;
    let stderr = drain_stderr(&mut child);
    let fed = feed(&mut child, &first, &mut input).await;
    let status = child.wait().await;
    drop(options);
    if let Err(e) = fed {
        stderr.abort();
        return Err(e);
    }
    let status = status.map_err(|e| EngineError::Internal(format!("waiting for mariadb: {e}")))?;
    let stderr = stderr.await.unwrap_or_default();
    if !status.success() {
        return Err(EngineError::Internal(first_error("mariadb", &stderr)));
    }
    if let Some(version) = version {
        let mut conn = connect(target).await?;
        meta::set_version(&mut conn, &target.database, version).await?;
        let _ = conn.close().await;
    }
    Ok(())
}

/// Writes `first` and then the rest of `input` to the child's standard input and closes it. A
/// backup that cannot be read ends the child before it sees the end of its input, so nothing
/// past the failure is run as if it were whole.
async fn feed(child: &mut Child, first: &[u8], input: &mut (impl AsyncRead + Unpin)) -> Result<()> {
    let mut stdin = child
        .stdin
        .take()
        .ok_or_else(|| EngineError::Internal("mariadb has no standard input".into()))?;
    if stdin.write_all(first).await.is_err() {
        return Ok(()); // The client stopped reading: its status and message say why.
    }
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = match input.read(&mut buf).await {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) => {
                let _ = child.start_kill();
                return Err(EngineError::Internal(format!(
                    "the backup cannot be read: {e}"
                )));
            }
        };
        if stdin.write_all(&buf[..n]).await.is_err() {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_reduced_to_their_line() {
        let stderr = "ERROR 1064 (42000) at line 3: You have an error in your SQL syntax\n";
        assert_eq!(
            first_error("mariadb", stderr),
            "mariadb: ERROR 1064 (42000) at line 3: You have an error in your SQL syntax"
        );
        assert_eq!(
            first_error(
                "mariadb-dump",
                "mariadb-dump: Got error: 1045: Access denied\n"
            ),
            "mariadb-dump: Got error: 1045: Access denied"
        );
        assert_eq!(first_error("x", ""), "x: failed without a message");
    }

    #[test]
    fn option_files_hold_the_password_quoted_and_private() {
        use std::os::unix::fs::PermissionsExt;
        let file = password_file("a\"b\\c").expect("written");
        let text = std::fs::read_to_string(file.path()).expect("read");
        assert_eq!(text, "[client]\npassword=\"a\\\"b\\\\c\"\n");
        let mode = std::fs::metadata(file.path())
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let path = file.path().to_path_buf();
        drop(file);
        assert!(!path.exists());
    }
}
