//! Why tdb refuses a connection or a request, said once for every wire protocol. The core
//! (admission, routing, gates, slots) answers with a [`Refusal`]; each protocol renders it in
//! its own form: PostgreSQL as a SQLSTATE and a message (see [`crate::pg::frame::PgError`]),
//! later a MySQL error number, a RESP `-ERR` line, a document error.

/// What kind of refusal, as far as a client can act on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Over a cap on connections, over a rate, or banned: later, or fewer.
    TooMany,
    /// The database cannot be served now (suspended, held, its server starting or the
    /// catalog unreachable): later.
    Unavailable,
    /// No such database, or it is deleted.
    NoSuchDatabase,
    /// The credential may not do this.
    NotAllowed,
    /// Too many failed logins from the address, or for the user from it: later.
    LoginsThrottled,
    /// tdb is shutting down.
    ShuttingDown,
    /// A fault inside tdb.
    Internal,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub reason: Reason,
    pub message: String,
}

impl Refusal {
    pub fn new(reason: Reason, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }

    pub fn no_such_database(database: &str) -> Self {
        Self::new(
            Reason::NoSuchDatabase,
            format!("database \"{database}\" does not exist"),
        )
    }

    pub fn shutting_down() -> Self {
        Self::new(
            Reason::ShuttingDown,
            "terminating connection because tdb is shutting down",
        )
    }
}
