//! Proxy credentials: a user name and a SCRAM-SHA-256 verifier, scoped to a project, a workspace
//! or a tenant, with a role. The password itself is shown once, when minted.

use tdb_core::{KeyRole, ScopeType};

use crate::{Catalog, Result};

pub struct NewCredential<'a> {
    pub id: &'a str,
    pub project_id: &'a str,
    pub username: &'a str,
    pub verifier: &'a str,
    /// See `tdb_core::secrets::mysql_verifier`.
    pub mysql_verifier: &'a str,
    pub scope_type: ScopeType,
    pub scope_value: Option<&'a str>,
    pub role: KeyRole,
}

impl Catalog {
    pub async fn create_credential(&self, c: &NewCredential<'_>) -> Result<()> {
        sqlx::query(
            "INSERT INTO credentials
               (id, project_id, username, verifier, scope_type, scope_value, role, mysql_verifier)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(c.id)
        .bind(c.project_id)
        .bind(c.username)
        .bind(c.verifier)
        .bind(c.scope_type.as_str())
        .bind(c.scope_value)
        .bind(c.role.as_str())
        .bind(c.mysql_verifier)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The newest live credential's user name for a scope (shown, masked, in connection info).
    pub async fn credential_username(
        &self,
        project_id: &str,
        scope_type: ScopeType,
        scope_value: &str,
    ) -> Result<Option<String>> {
        Ok(sqlx::query_scalar(
            "SELECT username FROM credentials
              WHERE project_id = $1 AND scope_type = $2 AND scope_value = $3 AND revoked_at IS NULL
              ORDER BY created_at DESC LIMIT 1",
        )
        .bind(project_id)
        .bind(scope_type.as_str())
        .bind(scope_value)
        .fetch_optional(self.pool())
        .await?)
    }
}

impl Catalog {
    /// Removes every credential of a scope (a hard-deleted tenant, a deleted workspace).
    pub async fn delete_scope_credentials(
        &self,
        project_id: &str,
        scope_type: ScopeType,
        scope_value: &str,
    ) -> Result<()> {
        sqlx::query(
            "DELETE FROM credentials WHERE project_id = $1 AND scope_type = $2 AND scope_value = $3",
        )
        .bind(project_id)
        .bind(scope_type.as_str())
        .bind(scope_value)
        .execute(self.pool())
        .await?;
        Ok(())
    }
}
