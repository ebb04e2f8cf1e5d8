//! What a job's failure means for the job: whether running it again can help. A statement a
//! tenant database refused fails the same way every time, so it is recorded as failed at once;
//! a catalog, server or store that could not be reached may answer on the next try, so the job
//! runs again after a back-off.

use std::time::Duration;

use tdb_catalog::CatalogError;
use tdb_core::secrets::SecretError;
use tdb_engines::EngineError;

use crate::store::StoreError;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    /// Something the job relies on could not be reached or was busy (the catalog, a database
    /// server, the backup store): running the job again later may succeed.
    #[error("{0}")]
    Transient(String),
    /// The work itself was refused (a statement failed on a tenant database, a backup is
    /// corrupt, a secret does not open): running it again fails the same way.
    #[error("{0}")]
    Permanent(String),
}

impl JobError {
    pub fn transient(message: impl std::fmt::Display) -> Self {
        Self::Transient(message.to_string())
    }

    pub fn permanent(message: impl std::fmt::Display) -> Self {
        Self::Permanent(message.to_string())
    }

    /// Whether running the job again may help.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Transient(_))
    }

    /// The same kind of failure, its message after `context` ("dropping x: …").
    pub fn context(self, context: impl std::fmt::Display) -> Self {
        match self {
            Self::Transient(m) => Self::Transient(format!("{context}: {m}")),
            Self::Permanent(m) => Self::Permanent(format!("{context}: {m}")),
        }
    }

    /// The message alone.
    pub fn message(&self) -> &str {
        match self {
            Self::Transient(m) | Self::Permanent(m) => m,
        }
    }
}

/// A catalog that could not be reached, or ran out of connections, may answer on the next try;
/// a record that is gone, a conflict or a query the catalog refused will not change.
impl From<CatalogError> for JobError {
    fn from(e: CatalogError) -> Self {
        let transient = match &e {
            CatalogError::Db(sqlx::Error::Database(db)) => db
                .code()
                .is_some_and(|code| tdb_engines::engine::transient_sqlstate(&code)),
            CatalogError::Db(
                sqlx::Error::Io(_)
                | sqlx::Error::Tls(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::WorkerCrashed
                | sqlx::Error::Protocol(_),
            ) => true,
            CatalogError::Db(_)
            | CatalogError::NotFound
            | CatalogError::Conflict(_)
            | CatalogError::Unknown(_)
            | CatalogError::Migrate(_) => false,
        };
        if transient {
            Self::Transient(e.to_string())
        } else {
            Self::Permanent(e.to_string())
        }
    }
}

impl From<EngineError> for JobError {
    fn from(e: EngineError) -> Self {
        if e.is_transient() {
            Self::Transient(e.to_string())
        } else {
            Self::Permanent(e.to_string())
        }
    }
}

/// The store could not be written or read (a network store, a full disk) may work later; a
/// missing object or a store that is configured wrong will not.
impl From<StoreError> for JobError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Store(_) => Self::Transient(e.to_string()),
            StoreError::Missing(_) | StoreError::Config(_) => Self::Permanent(e.to_string()),
        }
    }
}

/// A server that did not start in time, or an I/O error on its directory, may do better next
/// time; a setup that is wrong (missing binaries, a state file that does not open) will not.
impl From<tdb_engines::ManagedError> for JobError {
    fn from(e: tdb_engines::ManagedError) -> Self {
        use tdb_engines::ManagedError as M;
        match e {
            M::NotReady { .. } | M::Io { .. } | M::Command { .. } => Self::Transient(e.to_string()),
            M::Setup(_) | M::State { .. } => Self::Permanent(e.to_string()),
        }
    }
}

/// A sealed secret that does not open under the master key never will.
impl From<SecretError> for JobError {
    fn from(e: SecretError) -> Self {
        Self::Permanent(e.to_string())
    }
}

/// How long a job that failed on something unreachable waits before its next run: 2 s after the
/// first attempt, doubling each time, at most a minute.
pub fn backoff(attempts: i32) -> Duration {
    const FIRST: u64 = 2;
    const CAP: u64 = 60;
    let doublings = u32::try_from(attempts.saturating_sub(1).clamp(0, 16)).unwrap_or(0);
    Duration::from_secs(FIRST.saturating_mul(1 << doublings).min(CAP))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_statements_are_permanent_and_blips_transient() {
        let refused = EngineError::Query {
            message: "column \"note\" of relation \"accounts\" already exists".into(),
            sqlstate: "42701".into(),
            detail: None,
            position: None,
        };
        assert!(!JobError::from(refused).is_transient());
        let refused_conn = EngineError::Connect("Connection refused (os error 111)".into());
        assert!(JobError::from(refused_conn).is_transient());
        let shutting_down = EngineError::Query {
            message: "terminating connection due to administrator command".into(),
            sqlstate: "57P01".into(),
            detail: None,
            position: None,
        };
        assert!(JobError::from(shutting_down).is_transient());
        let catalog_down = CatalogError::Db(sqlx::Error::Io(std::io::Error::from(
            std::io::ErrorKind::ConnectionRefused,
        )));
        assert!(JobError::from(catalog_down).is_transient());
        assert!(JobError::from(CatalogError::Db(sqlx::Error::PoolTimedOut)).is_transient());
        assert!(!JobError::from(CatalogError::NotFound).is_transient());
        assert!(!JobError::from(CatalogError::Conflict("x".into())).is_transient());
        assert!(JobError::from(StoreError::Store("timed out".into())).is_transient());
        assert!(!JobError::from(StoreError::Missing("a.sql.gz".into())).is_transient());
    }

    #[test]
    fn context_keeps_the_kind() {
        let e = JobError::transient("refused").context("dropping tdb_t_1");
        assert_eq!(e, JobError::Transient("dropping tdb_t_1: refused".into()));
        let e = JobError::permanent("syntax").context("migrating");
        assert!(!e.is_transient());
        assert_eq!(e.message(), "migrating: syntax");
    }

    #[test]
    fn backoff_doubles_from_a_few_seconds_to_its_cap() {
        let secs: Vec<u64> = (1..=8).map(|a| backoff(a).as_secs()).collect();
        assert_eq!(secs, [2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(backoff(0).as_secs(), 2);
        assert_eq!(backoff(i32::MAX).as_secs(), 60);
    }
}
