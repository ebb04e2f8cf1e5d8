//! The vocabulary every other crate shares: ids, validated names, domain enums, error codes and
//! the secret primitives (hashing, verifiers, sealing). Nothing here performs IO.

pub mod codes;
pub mod domain;
pub mod ids;
pub mod names;
pub mod network;
pub mod ratelimit;
pub mod secrets;
pub mod settings;
pub mod slots;

pub use codes::ErrorCode;
pub use domain::{Engine, KeyRole, ScopeType, ServerRole, SignupMode};
pub use names::{Email, NameError, ProjectName, ResourceName};
