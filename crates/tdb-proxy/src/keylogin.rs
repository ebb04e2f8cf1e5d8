//! Logins of the Redis proxy. Redis sends a user and a password (`AUTH user key`, `HELLO 3 AUTH
//! user key`); the reference's user is the tenant's id and its password an API key. tdb's key is
//! one of its proxy credentials written as `<credential>.<password>` (credential names hold no
//! `.`), so the credential is found by its name and the password checked against its SCRAM
//! verifier, as the PostgreSQL proxy checks it. The user picks the database: a routing name
//! (`<blueprint>__<tenant>`, `<workspace>_workspace`), or a tenant's id alone when the tenant
//! has one Redis database.

use tdb_catalog::Catalog;
use tdb_catalog::routing::Login;
use tdb_core::routing::RoutingName;

use crate::pg::scram::Verifier;

/// Why a login is not taken, as far as the client may know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyLoginError {
    /// Wrong user, key or password: the client hears only that the pair is invalid.
    Invalid,
    /// The user names a tenant with several Redis databases: the routing name is needed.
    Ambiguous(Vec<String>),
    /// The catalog could not be asked.
    Unavailable(String),
}

/// A SCRAM verifier of a random password nobody holds, made once.
fn unmatchable() -> &'static str {
    static VERIFIER: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    VERIFIER.get_or_init(|| {
        tdb_core::secrets::scram_verifier(&tdb_core::secrets::new_password("unmatchable"))
    })
}

/// The credential and the routing database `AUTH user key` opens.
pub async fn redis_login(
    catalog: &Catalog,
    user: &str,
    key: &str,
) -> Result<(Login, String), KeyLoginError> {
    // A key without its credential's name is malformed: that says nothing of any name.
    let (name, password) = key.split_once('.').ok_or(KeyLoginError::Invalid)?;
    let login = catalog
        .proxy_login(name)
        .await
        .map_err(|e| KeyLoginError::Unavailable(e.to_string()))?;
    // PBKDF2 takes a few milliseconds: off the proxy's workers. An unknown credential is
    // checked against a verifier no password matches, so the time taken does not tell which
    // credential names exist.
    let verifier = login
        .as_ref()
        .map_or_else(|| unmatchable().to_string(), |l| l.verifier.clone());
    let password = password.to_string();
    let accepted = tokio::task::spawn_blocking(move || {
        Verifier::parse(&verifier).is_some_and(|v| v.accepts_password(&password))
    })
    .await
    .unwrap_or(false);
    let login = login.ok_or(KeyLoginError::Invalid)?;
    if !accepted {
        return Err(KeyLoginError::Invalid);
    }
    let database = match RoutingName::parse(user) {
        Some(_) => user.to_string(),
        None => {
            let blueprints = catalog
                .tenant_redis_blueprints(&login.project_id, user)
                .await
                .map_err(|e| KeyLoginError::Unavailable(e.to_string()))?;
            match blueprints.as_slice() {
                [] => return Err(KeyLoginError::Invalid),
                [one] => RoutingName::tenant(one, user).to_string(),
                _ => {
                    return Err(KeyLoginError::Ambiguous(
                        blueprints
                            .iter()
                            .map(|bp| RoutingName::tenant(bp, user).to_string())
                            .collect(),
                    ));
                }
            }
        }
    };
    Ok((login, database))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_unmatchable_verifier_parses_and_matches_nothing() {
        let verifier = Verifier::parse(unmatchable()).expect("a SCRAM verifier");
        assert!(!verifier.accepts_password(""));
        assert!(!verifier.accepts_password("unmatchable"));
    }

    #[test]
    fn a_key_without_its_credential_is_invalid_before_the_catalog_is_asked() {
        // No catalog is reachable here: a key with no `.` must fail without asking one.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let options = sqlx::postgres::PgConnectOptions::new()
            .host("127.0.0.1")
            .port(1);
        let catalog = runtime.block_on(async { Catalog::lazy(options) });
        let refused = runtime.block_on(redis_login(&catalog, "acme", "no-dot-here"));
        assert_eq!(refused.err(), Some(KeyLoginError::Invalid));
    }
}
