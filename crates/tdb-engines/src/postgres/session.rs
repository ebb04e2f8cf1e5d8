//! A PostgreSQL session for statements tdb runs for users (the API's queries): one connection of
//! tdb's own client, each statement sent with the simple protocol (so any statement runs as
//! written), rows decoded to JSON, capped at `max_rows` and at the request's memory.
//!
//! The server enforces the timeout (`statement_timeout`); the session enforces it too, since a
//! statement may lift the setting: when a statement outlives the timeout it is cancelled with the
//! backend's cancel key and the connection is closed, and tdb's administrator ends the backend
//! in case it ignores both. None of that needs the session role's password, which the role could
//! have changed.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::Connection as _;

use super::wire::{self, CancelKey, SslMode};
use super::{admin_access, connect};
use crate::AdminEndpoint;
use crate::engine::{DatabaseAccess, EngineError, Limits, QueryOutput, Result, Session};

/// How long past its timeout a statement may run before tdb stops it itself (the server's own
/// timeout, when in force, fires first).
const GRACE: Duration = Duration::from_secs(1);

pub struct PgSession {
    conn: Option<wire::Connection>,
    limits: Limits,
    cancel: CancelKey,
    /// Who ends a backend that ignores a cancel, and the backend's role and database (so only
    /// that backend is ended, even if its pid was given to another meanwhile).
    stopper: Option<(AdminEndpoint, String, String)>,
    /// Its place among the sessions tdb allows at once.
    _place: super::SessionPlace,
}

impl PgSession {
    pub async fn open(
        target: &DatabaseAccess,
        limits: Limits,
        admin: Option<&AdminEndpoint>,
        place: super::SessionPlace,
    ) -> Result<Self> {
        let wire_target = wire::Target {
            host: target.host.clone(),
            port: target.port,
            pin: None,
            user: target.user.clone(),
            password: target.password.clone(),
            database: target.database.clone(),
            application_name: "tdb".into(),
            options: None,
            ssl: SslMode::Prefer,
        };
        let stopper = admin.map(|a| (a.clone(), target.user.clone(), target.database.clone()));
        Self::open_with(wire_target, limits, stopper, place).await
    }

    /// A session on the database a connection URL names, as its user; `pin` is the address to
    /// connect to instead of resolving the URL's host again.
    pub async fn open_url(
        url: &str,
        pin: Option<std::net::IpAddr>,
        limits: Limits,
        place: super::SessionPlace,
    ) -> Result<Self> {
        Self::open_with(url_target(url, pin)?, limits, None, place).await
    }

    async fn open_with(
        target: wire::Target,
        limits: Limits,
        stopper: Option<(AdminEndpoint, String, String)>,
        place: super::SessionPlace,
    ) -> Result<Self> {
        let mut conn = wire::Connection::connect(&target).await?;
        let ms = limits.timeout.as_millis().max(1);
        conn.execute(&format!("SET statement_timeout = {ms}"))
            .await?;
        Ok(Self {
            cancel: conn.cancel_key(),
            conn: Some(conn),
            limits,
            stopper,
            _place: place,
        })
    }

    /// Stops what the connection runs and gives it up: a cancel, the connection closed, and
    /// the administrator ending the backend should it still be there.
    fn abandon(&mut self) {
        let conn = self.conn.take();
        let cancel = self.cancel.clone();
        let stopper = self.stopper.clone();
        tokio::spawn(async move {
            let _ = cancel.cancel().await;
            drop(conn);
            if let Some((admin, role, database)) = stopper {
                tokio::time::sleep(Duration::from_secs(2)).await;
                terminate(&admin, cancel.pid, &role, &database).await;
            }
        });
    }
}

/// Ends the backend `pid` of `role` on `database`, as the administrator.
async fn terminate(admin: &AdminEndpoint, pid: u32, role: &str, database: &str) {
    let Ok(mut conn) = connect(&admin_access(admin, "postgres")).await else {
        tracing::warn!(pid, "cannot reach the server to end a stuck statement");
        return;
    };
    let ended = sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
          WHERE pid = $1 AND usename = $2 AND datname = $3",
    )
    .bind(i32::try_from(pid).unwrap_or(-1))
    .bind(role)
    .bind(database)
    .execute(&mut conn)
    .await;
    if let Ok(done) = ended
        && done.rows_affected() > 0
    {
        tracing::warn!(
            pid,
            "ended a statement that outlived its timeout and its cancel"
        );
    }
    let _ = conn.close().await;
}

#[async_trait]
impl Session for PgSession {
    async fn run(&mut self, statement: &str) -> Result<QueryOutput> {
        let Some(conn) = self.conn.as_mut() else {
            return Err(EngineError::Internal(
                "the session ended after an earlier statement".into(),
            ));
        };
        let work = conn.query(statement, self.limits.max_rows, &self.limits.answer);
        match tokio::time::timeout(self.limits.timeout + GRACE, work).await {
            Ok(Ok(out)) => Ok(out),
            Ok(Err(e)) => {
                if matches!(
                    e,
                    EngineError::TooLarge(_) | EngineError::Connect(_) | EngineError::Internal(_)
                ) {
                    // Mid-answer or broken: the connection is of no further use.
                    self.abandon();
                }
                Err(e)
            }
            Err(_) => {
                self.abandon();
                Err(EngineError::Timeout(self.limits.timeout))
            }
        }
    }

    async fn close(mut self: Box<Self>) {
        if let Some(conn) = self.conn.take() {
            conn.close().await;
        }
    }
}

/// Where a `postgres://` or `postgresql://` URL points, for tdb's client: user, password, host
/// (or `?host=/socket/dir`), port, database (default: the user), `sslmode` (default `prefer`),
/// `application_name` and `options`. The error never repeats the URL, which holds a password.
pub fn url_target(text: &str, pin: Option<std::net::IpAddr>) -> Result<wire::Target> {
    let bad = || EngineError::Connect("the connection string is not a valid PostgreSQL URL".into());
    let url = url::Url::parse(text).map_err(|_| bad())?;
    if !matches!(url.scheme(), "postgres" | "postgresql") {
        return Err(bad());
    }
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8()
            .map(|c| c.into_owned())
            .map_err(|_| bad())
    };
    let user = decode(url.username())?;
    let password = decode(url.password().unwrap_or(""))?;
    let mut host = url
        .host_str()
        .unwrap_or("localhost")
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let database = decode(url.path().trim_start_matches('/'))?;
    let mut target = wire::Target {
        database: if database.is_empty() {
            user.clone()
        } else {
            database
        },
        user,
        password,
        port: url.port().unwrap_or(5432),
        pin,
        application_name: "tdb".into(),
        options: None,
        ssl: SslMode::Prefer,
        host: String::new(),
    };
    for (key, value) in url.query_pairs() {
        match key.as_ref() {
            "sslmode" => target.ssl = SslMode::parse(&value).ok_or_else(bad)?,
            "application_name" => target.application_name = value.into_owned(),
            "options" => target.options = Some(value.into_owned()),
            "host" => host = value.into_owned(),
            _ => {}
        }
    }
    target.host = host;
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_become_targets() {
        let t = url_target(
            "postgresql://u%40x:p%2Fw@db.example.com:6543/app?sslmode=verify-full&options=-c%20a%3Db",
            None,
        )
        .expect("valid");
        assert_eq!(
            (t.user.as_str(), t.password.as_str(), t.host.as_str()),
            ("u@x", "p/w", "db.example.com")
        );
        assert_eq!((t.port, t.database.as_str()), (6543, "app"));
        assert_eq!(t.ssl, SslMode::VerifyFull);
        assert_eq!(t.options.as_deref(), Some("-c a=b"));
        let t = url_target("postgres://u:p@[::1]/", None).expect("valid");
        assert_eq!((t.host.as_str(), t.database.as_str()), ("::1", "u"));
        let t = url_target("postgresql://u:p@localhost:7/d?host=%2Ftmp%2Fs", None).expect("valid");
        assert_eq!(t.host, "/tmp/s");
        let err = url_target("mysql://u:secret@h/d", None).expect_err("not postgres");
        assert!(!err.to_string().contains("secret"));
    }
}
