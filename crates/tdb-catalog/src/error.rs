//! Catalog errors: what callers can act on (absent, conflicting) apart from failures to log.

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("not found")]
    NotFound,
    /// A unique constraint refused the write; carries the constraint's name.
    #[error("conflict on {0}")]
    Conflict(String),
    #[error("catalog database error: {0}")]
    Db(sqlx::Error),
    /// A text column holds what no domain enum names (written by another version of tdb).
    #[error("catalog holds {0}")]
    Unknown(#[from] tdb_core::UnknownValue),
    #[error("catalog migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl From<sqlx::Error> for CatalogError {
    fn from(e: sqlx::Error) -> Self {
        if let sqlx::Error::Database(db) = &e
            && db.is_unique_violation()
        {
            return Self::Conflict(db.constraint().unwrap_or("unique").to_string());
        }
        Self::Db(e)
    }
}
