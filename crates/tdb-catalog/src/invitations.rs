//! Invitations to sign up: a single-use code (kept as its SHA-256 digest) with an expiry, made
//! by an existing account. Sign-up by invitation spends the code in the transaction that
//! creates the account, so a code opens at most one account.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use crate::{Catalog, CatalogError, Result};

pub struct NewInvitation<'a> {
    pub id: &'a str,
    pub digest: &'a [u8],
    /// The account that invites.
    pub created_by: &'a str,
    pub expires_at: DateTime<Utc>,
}

impl Catalog {
    pub async fn create_invitation(&self, invitation: &NewInvitation<'_>) -> Result<()> {
        sqlx::query(
            "INSERT INTO invitations (id, digest, created_by, expires_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(invitation.id)
        .bind(invitation.digest)
        .bind(invitation.created_by)
        .bind(invitation.expires_at)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// True when a code with `digest` may be used now (unused, unexpired). A hint only: the
    /// sign-up that spends it checks again.
    pub async fn invitation_usable(&self, digest: &[u8]) -> Result<bool> {
        Ok(sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM invitations
                             WHERE digest = $1 AND used_at IS NULL AND expires_at > now())",
        )
        .bind(digest)
        .fetch_one(self.pool())
        .await?)
    }
}

/// Spends the usable invitation with `digest` inside the caller's transaction; `NotFound` when
/// there is none (unknown, used, expired, or spent by a concurrent sign-up). Returns its id.
pub(crate) async fn spend(conn: &mut PgConnection, digest: &[u8]) -> Result<String> {
    sqlx::query_scalar(
        "UPDATE invitations SET used_at = now()
          WHERE digest = $1 AND used_at IS NULL AND expires_at > now()
         RETURNING id",
    )
    .bind(digest)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or(CatalogError::NotFound)
}

/// Records which account the spent invitation `id` opened.
pub(crate) async fn record_use(conn: &mut PgConnection, id: &str, account_id: &str) -> Result<()> {
    sqlx::query("UPDATE invitations SET used_by = $2 WHERE id = $1")
        .bind(id)
        .bind(account_id)
        .execute(conn)
        .await?;
    Ok(())
}
