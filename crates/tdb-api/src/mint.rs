//! Minting credentials: the plaintext goes back to the caller once, the catalog keeps only what
//! verifies it.

use tdb_core::secrets::{self, NewApiKey};
use tdb_core::{KeyRole, ScopeType, ids};

/// An API key ready to insert, with its plaintext to show once.
pub struct MintedKey {
    pub id: String,
    pub name: String,
    pub role: KeyRole,
    pub scope_type: ScopeType,
    pub scope_values: Vec<String>,
    pub secret: NewApiKey,
    /// When the key stops working; `None` for a key that lasts until revoked.
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl MintedKey {
    pub fn new(
        name: &str,
        role: KeyRole,
        scope_type: ScopeType,
        scope_values: Vec<String>,
    ) -> Self {
        Self {
            id: ids::api_key_id(),
            name: name.to_string(),
            role,
            scope_type,
            scope_values,
            secret: secrets::new_api_key(),
            expires_at: None,
        }
    }

    /// A project-wide admin key, as sign-up and project creation hand out.
    pub fn admin(name: &str) -> Self {
        Self::new(name, KeyRole::Admin, ScopeType::Project, Vec::new())
    }

    /// A project-wide admin key that expires after `days`, as login and switch hand out: each
    /// of them mints one, and a key nobody holds any more must not live for good.
    pub fn expiring_admin(name: &str, days: u32) -> Self {
        Self {
            expires_at: Some(chrono::Utc::now() + chrono::Duration::days(i64::from(days))),
            ..Self::admin(name)
        }
    }

    pub fn record(&self) -> tdb_catalog::api_keys::NewApiKey<'_> {
        tdb_catalog::api_keys::NewApiKey {
            id: &self.id,
            name: &self.name,
            prefix: &self.secret.prefix,
            digest: &self.secret.digest,
            role: self.role,
            scope_type: self.scope_type,
            scope_values: &self.scope_values,
            expires_at: self.expires_at,
        }
    }
}

/// A proxy password, its SCRAM-SHA-256 verifier and what the MySQL proxy checks it against.
pub struct MintedPassword {
    pub plaintext: String,
    pub verifier: String,
    pub mysql_verifier: String,
}

pub fn proxy_password() -> MintedPassword {
    let plaintext = secrets::new_password("tdb_pw_");
    MintedPassword {
        verifier: secrets::scram_verifier(&plaintext),
        mysql_verifier: secrets::mysql_verifier(&plaintext),
        plaintext,
    }
}

/// A proxy login scoped to one tenant, workspace or provisioned database (API.md deviation 2):
/// stored as a SCRAM verifier; the user name (`<user_prefix>_<hex>`) and the password come back
/// once.
pub async fn scoped_credential(
    state: &crate::AppState,
    project_id: &str,
    scope_type: ScopeType,
    scope_value: &str,
    role: KeyRole,
    user_prefix: &str,
) -> Result<(String, String), crate::envelope::ApiError> {
    let id = ids::new_id("cred");
    let username = format!("{user_prefix}_{}", &id[5..]);
    let password = secrets::new_password("tdb_pw_");
    state
        .catalog
        .create_credential(&tdb_catalog::credentials::NewCredential {
            id: &id,
            project_id,
            username: &username,
            verifier: &secrets::scram_verifier(&password),
            mysql_verifier: &secrets::mysql_verifier(&password),
            scope_type,
            scope_value: Some(scope_value),
            role,
        })
        .await?;
    Ok((username, password))
}

/// Prefix of invitation codes, so that one is recognised for what it is.
pub const INVITATION_PREFIX: &str = "tdb_inv_";

/// A single-use invitation code (256 random bits) and the digest the catalog keeps.
pub struct MintedCode {
    pub plaintext: String,
    pub digest: Vec<u8>,
}

pub fn invitation_code() -> MintedCode {
    let plaintext = format!("{INVITATION_PREFIX}{}", ids::random_hex(32));
    MintedCode {
        digest: secrets::api_key_digest(&plaintext),
        plaintext,
    }
}
