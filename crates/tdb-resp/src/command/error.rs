//! Why a command table could not be loaded, and why a request's keys could not be placed.

/// The `COMMAND` reply did not have the shape Redis 7 documents.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed COMMAND reply: {0}")]
pub struct LoadError(pub String);

/// A request whose key arguments cannot be placed; a proxy refuses it. The messages are safe to
/// show the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("unknown command '{0}'")]
    UnknownCommand(String),
    #[error("unknown subcommand '{subcommand}' of '{command}'")]
    UnknownSubcommand { command: String, subcommand: String },
    #[error("wrong number of arguments for '{0}' command")]
    Arity(String),
    /// The key specs say they cannot find every key (`incomplete`, or an `unknown` search).
    #[error("the keys of '{0}' cannot be determined from its arguments")]
    Incomplete(String),
    /// A numkeys argument that is not a count or claims more keys than were given.
    #[error("invalid number of keys for '{0}' command")]
    BadNumkeys(String),
    /// SORT with BY or GET patterns, which name keys too: use `sort_positions`.
    #[error("SORT with BY or GET patterns needs its patterns rewritten too")]
    SortPatterns,
    /// A destination option given twice (`STORE a STORE b`): the key specs find the first,
    /// redis-server writes the last.
    #[error("'{command}' names its {option} destination more than once")]
    RepeatedDestination { command: String, option: String },
}
