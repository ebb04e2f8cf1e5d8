//! Bringing one tenant database forward to a blueprint version outside a deployment: a tenant
//! restored from the trash (deployments skip the trash), and a rollback's database restored from
//! a backup taken at an older version. The database's own `tdb_meta.schema_version` says where it
//! stands, and the migration applies the versions after it in one transaction that records the
//! new version, as a deployment does.

use std::time::Duration;

use tdb_catalog::Catalog;
use tdb_engines::{AdminEndpoint, DatabaseAccess, Engine, EngineError, Migration, MigrationPlan};

/// Where a database stood and stands after [`bring_forward`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forwarded {
    pub from: i32,
    pub to: i32,
}

#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// A statement of the newer versions failed on this database (its data does not pass a new
    /// constraint, say): nothing was applied, and trying again will fail the same way.
    #[error("bringing it from version {at} to {target} failed: {message}")]
    Refused {
        at: i32,
        target: i32,
        message: String,
    },
    /// The database or the catalog could not be reached or answered oddly; a retry may help.
    #[error("{0}")]
    Unavailable(String),
}

/// One database to bring forward: reached as its `owner`, to the blueprint's version `target`;
/// each migration may take `timeout`, after which `admin` ends it.
pub struct ForwardTarget<'a> {
    pub owner: &'a DatabaseAccess,
    pub admin: &'a AdminEndpoint,
    pub blueprint_id: &'a str,
    pub target: i32,
    pub timeout: Duration,
}

/// Migrates the database to `target` with the blueprint's statements after its own version; a
/// database at `target` or past it is left alone.
pub async fn bring_forward(
    catalog: &Catalog,
    engine: &dyn Engine,
    to: &ForwardTarget<'_>,
) -> Result<Forwarded, ForwardError> {
    let (owner, blueprint_id, target) = (to.owner, to.blueprint_id, to.target);
    let unavailable = |e: &dyn std::fmt::Display| ForwardError::Unavailable(e.to_string());
    if engine.sql().is_none()
        && let Some(rules) = engine.key_value_settings()
    {
        // No schema to migrate: the version's rules for keys are all it brings.
        apply_key_rules(
            catalog,
            rules,
            to.admin,
            &owner.database,
            blueprint_id,
            target,
        )
        .await
        .map_err(|e| unavailable(&e))?;
        return Ok(Forwarded {
            from: target,
            to: target,
        });
    }
    let engine = engine.require_sql().map_err(|e| unavailable(&e))?;
    let mut from = engine
        .schema_version(owner)
        .await
        .map_err(|e| unavailable(&e))?;
    let start = from;
    // A second round only when another migration moved the database in between.
    for _ in 0..2 {
        if from >= target {
            return Ok(Forwarded {
                from: start,
                to: from,
            });
        }
        let statements = catalog
            .statements_between(blueprint_id, from, target)
            .await
            .map_err(|e| unavailable(&e))?;
        let plan = MigrationPlan {
            owner,
            admin: to.admin,
            from,
            statements: &statements,
            version: target,
            dry_run: false,
            timeout: to.timeout,
        };
        match engine.migrate(&plan).await {
            Ok(Migration::Applied { .. }) => {
                return Ok(Forwarded {
                    from: start,
                    to: target,
                });
            }
            Ok(Migration::AlreadyAt(v)) => return Ok(Forwarded { from: start, to: v }),
            Ok(Migration::Mismatch(v)) => from = v,
            Ok(Migration::WouldApply { .. }) => {
                return Err(ForwardError::Unavailable(
                    "the migration ran as a dry run".into(),
                ));
            }
            Err(EngineError::Query { message, .. }) => {
                return Err(ForwardError::Refused {
                    at: from,
                    target,
                    message,
                });
            }
            Err(e) => return Err(unavailable(&e)),
        }
    }
    Err(ForwardError::Unavailable(format!(
        "the database's version kept changing (last seen {from})"
    )))
}

/// Applies the rules for keys of a blueprint's `version` (none before the first) to a key-value
/// engine's namespace. Applying them again is harmless.
pub async fn apply_key_rules(
    catalog: &Catalog,
    engine: &dyn tdb_engines::KeyValueSettings,
    admin: &AdminEndpoint,
    namespace: &str,
    blueprint_id: &str,
    version: i32,
) -> Result<(), String> {
    let stored = catalog
        .version_settings(blueprint_id, version)
        .await
        .map_err(|e| e.to_string())?
        .unwrap_or_default();
    let rules = tdb_core::keyrules::KeyRules::from_json(&stored);
    // The engine applies the first pattern that matches: the most specific first.
    let mut patterns: Vec<(String, Duration)> = rules
        .patterns
        .iter()
        .map(|(glob, rule)| (glob.clone(), Duration::from_secs(rule.ttl)))
        .collect();
    patterns.sort_by(|(a, _), (b, _)| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    let settings = tdb_engines::KeySettings {
        default_ttl: rules.default_ttl.map(Duration::from_secs),
        max_keys: rules.max_keys,
        patterns,
    };
    engine
        .apply_settings(admin, namespace, &settings)
        .await
        .map_err(|e| e.to_string())
}
