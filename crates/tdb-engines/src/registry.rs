//! The engine registry: the engines this process drives, one per kind, keyed by the domain's
//! [`tdb_core::Engine`]. `tdb serve` builds it once and hands the same registry to the API and the
//! job runner, so a new engine is registered in one place.

use std::sync::Arc;

use crate::engine::{Engine, EngineError};

/// The engines available, by kind; cheap to clone (every clone is the same registry).
#[derive(Clone, Default)]
pub struct Engines {
    all: Arc<Vec<Arc<dyn Engine>>>,
}

impl Engines {
    /// A registry of `engines`; of two engines of one kind, the first is kept.
    pub fn new(engines: impl IntoIterator<Item = Arc<dyn Engine>>) -> Self {
        let mut all: Vec<Arc<dyn Engine>> = Vec::new();
        for engine in engines {
            if all.iter().all(|e| e.kind() != engine.kind()) {
                all.push(engine);
            }
        }
        Self { all: Arc::new(all) }
    }

    /// The engine of `kind`, or `None` when this build has no such engine yet.
    pub fn get(&self, kind: tdb_core::Engine) -> Option<Arc<dyn Engine>> {
        self.all.iter().find(|e| e.kind() == kind).cloned()
    }

    /// The engine of `kind`, or `Unsupported` naming it.
    pub fn require(&self, kind: tdb_core::Engine) -> Result<Arc<dyn Engine>, EngineError> {
        self.get(kind).ok_or_else(|| {
            EngineError::Unsupported(format!("the {kind} engine is not available yet"))
        })
    }

    /// The kinds available.
    pub fn kinds(&self) -> impl Iterator<Item = tdb_core::Engine> + '_ {
        self.all.iter().map(|e| e.kind())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PostgresEngine;

    #[test]
    fn engines_are_found_by_kind_and_missing_ones_named() {
        let pg: Arc<dyn Engine> = Arc::new(PostgresEngine::new(None));
        let engines = Engines::new([pg.clone(), Arc::new(PostgresEngine::new(None)) as _]);
        assert_eq!(
            engines.kinds().collect::<Vec<_>>(),
            [tdb_core::Engine::Postgresql]
        );
        let found = engines.get(tdb_core::Engine::Postgresql);
        assert!(found.is_some_and(|e| Arc::ptr_eq(&e, &pg)));
        let missing = engines.require(tdb_core::Engine::Redis).err();
        assert!(
            matches!(&missing, Some(EngineError::Unsupported(m)) if m.contains("redis")),
            "{missing:?}"
        );
    }

    #[test]
    fn postgresql_offers_every_capability_but_key_value_settings() {
        let pg: Arc<dyn Engine> = Arc::new(PostgresEngine::new(None));
        assert!(pg.sql().is_some());
        assert!(pg.schema_tenants().is_some());
        assert!(pg.introspection().is_some());
        assert!(pg.url_sessions().is_some());
        assert!(pg.key_value_settings().is_none());
        assert!(pg.require_sql().is_ok());
    }
}
