//! Sessions of the web console: a cookie's digest, the API key the session acts with, and its
//! expiry. A session is as live as its key: revoking or expiring the key ends it.

use chrono::{DateTime, Utc};
use sqlx::FromRow;

use crate::api_keys::KeyOwner;
use crate::{Catalog, Result};

pub struct NewSession<'a> {
    pub digest: &'a [u8],
    pub key_id: &'a str,
    pub by_password: bool,
    pub expires_at: DateTime<Utc>,
}

/// A live session and who it acts as.
#[derive(Debug, Clone, FromRow)]
pub struct ConsoleSession {
    #[sqlx(flatten)]
    pub owner: KeyOwner,
    pub minted: bool,
    pub by_password: bool,
    pub expires_at: DateTime<Utc>,
}

impl Catalog {
    /// Stores a new session, with the key minted for it (`(project id, key)`) in the same
    /// transaction; expired sessions are pruned on the way.
    pub async fn create_console_session(
        &self,
        session: &NewSession<'_>,
        minted: Option<(&str, &crate::api_keys::NewApiKey<'_>)>,
    ) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        if let Some((project_id, key)) = minted {
            crate::api_keys::insert(&mut tx, project_id, key).await?;
        }
        sqlx::query("DELETE FROM console_sessions WHERE expires_at <= now()")
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO console_sessions (digest, key_id, minted, by_password, expires_at)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(session.digest)
        .bind(session.key_id)
        .bind(minted.is_some())
        .bind(session.by_password)
        .bind(session.expires_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The live session with this cookie digest: unexpired, and its key live.
    pub async fn console_session(&self, digest: &[u8]) -> Result<Option<ConsoleSession>> {
        let sql = format!(
            "SELECT k.id AS key_id, k.project_id, p.account_id, k.role, k.scope_type,
                    k.scope_values, a.tier, s.minted, s.by_password, s.expires_at
               FROM console_sessions s
               JOIN api_keys k ON k.id = s.key_id
               JOIN projects p ON p.id = k.project_id
               JOIN accounts a ON a.id = p.account_id
              WHERE s.digest = $1 AND s.expires_at > now() AND {}",
            crate::api_keys::LIVE
        );
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(digest)
            .fetch_optional(self.pool())
            .await?)
    }

    /// Points a session at another key (a project switch); the key it held is revoked when it
    /// was minted for the session.
    pub async fn switch_console_session(
        &self,
        digest: &[u8],
        project_id: &str,
        key: &crate::api_keys::NewApiKey<'_>,
    ) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        if !revoke_minted(&mut tx, digest).await? {
            return Err(crate::CatalogError::NotFound);
        }
        crate::api_keys::insert(&mut tx, project_id, key).await?;
        let done = sqlx::query(
            "UPDATE console_sessions SET key_id = $2, minted = true
              WHERE digest = $1 AND expires_at > now()",
        )
        .bind(digest)
        .bind(key.id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(crate::CatalogError::NotFound);
        }
        tx.commit().await?;
        Ok(())
    }

    /// Ends a session; the key minted for it is revoked with it.
    pub async fn end_console_session(&self, digest: &[u8]) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        revoke_minted(&mut tx, digest).await?;
        sqlx::query("DELETE FROM console_sessions WHERE digest = $1")
            .bind(digest)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}

/// Locks the session's row (so a switch and a sign-out at once take turns, and neither leaves a
/// minted key live) and revokes the key minted for it. False when there is no such session.
async fn revoke_minted(conn: &mut sqlx::PgConnection, digest: &[u8]) -> Result<bool> {
    let held: Option<(String, bool)> =
        sqlx::query_as("SELECT key_id, minted FROM console_sessions WHERE digest = $1 FOR UPDATE")
            .bind(digest)
            .fetch_optional(&mut *conn)
            .await?;
    let Some((key_id, minted)) = held else {
        return Ok(false);
    };
    if minted {
        sqlx::query("UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL")
            .bind(key_id)
            .execute(conn)
            .await?;
    }
    Ok(true)
}
