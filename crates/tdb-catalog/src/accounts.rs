//! Accounts: an e-mail, an argon2id password hash and a tier. Sign-up creates the account, its
//! first project and that project's first API key in one transaction, which also spends the
//! invitation when sign-up is by invitation.

use chrono::{DateTime, Utc};
use sqlx::FromRow;
use tdb_core::Tier;

use crate::api_keys::{self, NewApiKey};
use crate::invitations;
use crate::projects::{self, NewProject};
use crate::{Catalog, Result};

#[derive(Debug, Clone, FromRow)]
pub struct Account {
    pub id: String,
    pub email: String,
    pub password_hash: String,
    #[sqlx(try_from = "String")]
    pub tier: Tier,
    pub created_at: DateTime<Utc>,
}

pub struct NewAccount<'a> {
    pub id: &'a str,
    pub email: &'a str,
    pub password_hash: &'a str,
    pub tier: Tier,
}

impl Catalog {
    /// Creates the account with its first project and key, spending the invitation whose code
    /// has `invitation` as digest when one is given. A taken e-mail is
    /// `Conflict("accounts_email_key")` (the invitation stays unspent); an invitation that
    /// cannot be spent is `NotFound`.
    pub async fn sign_up(
        &self,
        account: &NewAccount<'_>,
        project: &NewProject<'_>,
        key: &NewApiKey<'_>,
        invitation: Option<&[u8]>,
    ) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        // Spent first: two sign-ups with one code queue on its row, and the second finds it used.
        let spent = match invitation {
            Some(digest) => Some(invitations::spend(&mut tx, digest).await?),
            None => None,
        };
        sqlx::query(
            "INSERT INTO accounts (id, email, password_hash, tier) VALUES ($1, $2, $3, $4)",
        )
        .bind(account.id)
        .bind(account.email)
        .bind(account.password_hash)
        .bind(account.tier.as_str())
        .execute(&mut *tx)
        .await?;
        projects::insert(&mut tx, account.id, project).await?;
        api_keys::insert(&mut tx, project.id, key).await?;
        if let Some(id) = spent {
            invitations::record_use(&mut tx, &id, account.id).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The e-mail address of account `id`, if it exists.
    pub async fn account_email(&self, id: &str) -> Result<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT email FROM accounts WHERE id = $1")
                .bind(id)
                .fetch_optional(self.pool())
                .await?,
        )
    }

    pub async fn account_by_email(&self, email: &str) -> Result<Option<Account>> {
        Ok(sqlx::query_as("SELECT * FROM accounts WHERE email = $1")
            .bind(email)
            .fetch_optional(self.pool())
            .await?)
    }
}
