//! API keys: stored as SHA-256 digests with a display prefix, a role and a scope. A revoked key
//! keeps its row (for audit) but never authenticates again. A key minted by a login or a project
//! switch has an expiry: past it the key is refused, and its row is pruned when the project gets
//! its next key.

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgConnection};
use tdb_core::{KeyRole, ScopeType, Tier};

use crate::{Catalog, CatalogError, Result};

pub struct NewApiKey<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub prefix: &'a str,
    pub digest: &'a [u8],
    pub role: KeyRole,
    pub scope_type: ScopeType,
    pub scope_values: &'a [String],
    /// When the key stops working; `None` for a key that lasts until revoked.
    pub expires_at: Option<DateTime<Utc>>,
}

/// What a live key is: unrevoked and, if it has an expiry, not past it (`k` is `api_keys`).
pub(crate) const LIVE: &str =
    "k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > now())";

#[derive(Debug, Clone, FromRow)]
pub struct ApiKey {
    pub id: String,
    pub name: String,
    pub prefix: String,
    #[sqlx(try_from = "String")]
    pub role: KeyRole,
    #[sqlx(try_from = "String")]
    pub scope_type: ScopeType,
    pub scope_values: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// Who a request is: the key, its project and account, and what the key may do.
#[derive(Debug, Clone, FromRow)]
pub struct KeyOwner {
    pub key_id: String,
    pub project_id: String,
    pub account_id: String,
    #[sqlx(try_from = "String")]
    pub role: KeyRole,
    #[sqlx(try_from = "String")]
    pub scope_type: ScopeType,
    pub scope_values: Vec<String>,
    #[sqlx(try_from = "String")]
    pub tier: Tier,
}

pub(crate) async fn insert(
    conn: &mut PgConnection,
    project_id: &str,
    key: &NewApiKey<'_>,
) -> Result<()> {
    sqlx::query("DELETE FROM api_keys WHERE project_id = $1 AND expires_at <= now()")
        .bind(project_id)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "INSERT INTO api_keys
                (id, project_id, name, prefix, digest, role, scope_type, scope_values, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(key.id)
    .bind(project_id)
    .bind(key.name)
    .bind(key.prefix)
    .bind(key.digest)
    .bind(key.role.as_str())
    .bind(key.scope_type.as_str())
    .bind(key.scope_values)
    .bind(key.expires_at)
    .execute(conn)
    .await?;
    Ok(())
}

impl Catalog {
    pub async fn create_api_key(&self, project_id: &str, key: &NewApiKey<'_>) -> Result<()> {
        let mut conn = self.pool().acquire().await?;
        insert(&mut conn, project_id, key).await
    }

    /// The live (unrevoked, unexpired) keys of a project, oldest first.
    pub async fn list_api_keys(&self, project_id: &str) -> Result<Vec<ApiKey>> {
        let sql = format!(
            "SELECT id, name, prefix, role, scope_type, scope_values, created_at, last_used_at,
                    expires_at
               FROM api_keys k WHERE project_id = $1 AND {LIVE}
              ORDER BY created_at, id"
        );
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(project_id)
            .fetch_all(self.pool())
            .await?)
    }

    /// Revokes a live key of the project; another project's key, or a revoked one, is absent.
    pub async fn revoke_api_key(&self, project_id: &str, key_id: &str) -> Result<()> {
        let done = sqlx::query(
            "UPDATE api_keys SET revoked_at = now()
              WHERE project_id = $1 AND id = $2 AND revoked_at IS NULL",
        )
        .bind(project_id)
        .bind(key_id)
        .execute(self.pool())
        .await?;
        if done.rows_affected() == 0 {
            return Err(CatalogError::NotFound);
        }
        Ok(())
    }

    /// Resolves a key digest to its owner and notes the use (at most once a minute per key,
    /// so authentication does not turn every request into a write).
    pub async fn authenticate_key(&self, digest: &[u8]) -> Result<Option<KeyOwner>> {
        let sql = format!(
            "SELECT k.id AS key_id, k.project_id, p.account_id, k.role, k.scope_type,
                    k.scope_values, a.tier
               FROM api_keys k
               JOIN projects p ON p.id = k.project_id
               JOIN accounts a ON a.id = p.account_id
              WHERE k.digest = $1 AND {LIVE}"
        );
        let owner: Option<KeyOwner> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(digest)
            .fetch_optional(self.pool())
            .await?;
        if let Some(owner) = &owner {
            sqlx::query(
                "UPDATE api_keys SET last_used_at = now()
                  WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')",
            )
            .bind(&owner.key_id)
            .execute(self.pool())
            .await?;
        }
        Ok(owner)
    }
}
