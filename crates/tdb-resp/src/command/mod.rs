//! The command table: every command the deployed redis-server knows, loaded from its own
//! `COMMAND` / `COMMAND INFO` reply rather than maintained by hand, with arity, flags, ACL
//! categories and Redis 7 key specifications. `CommandTable::key_positions` finds the key
//! arguments of a request; what it cannot place exactly is an error, so a proxy built on it
//! denies by default.

mod error;
mod flags;
mod keyspec;
mod load;
mod sort;
mod table;

pub use error::{KeyError, LoadError};
pub use flags::{AclCategory, CommandFlag, KeySpecFlag};
pub use keyspec::{BeginSearch, FindKeys, KeySpec, LegacyRange};
pub use sort::{SortPositions, sort_positions};
pub use table::{Command, CommandTable};
