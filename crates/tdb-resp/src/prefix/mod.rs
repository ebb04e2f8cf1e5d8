//! Keeping a tenant inside its key prefix: prefixing the key arguments of a request, stripping
//! the prefix from key names in replies, and turning a client's glob pattern (KEYS, SCAN MATCH,
//! PSUBSCRIBE) into one anchored in the prefix.
//!
//! A prefix must not be a prefix of another tenant's prefix (with `a:` and `a:b:`, tenant `a`'s
//! key `b:x` is tenant `a:b:`'s key `x`): choose fixed-width or delimiter-free tenant ids.

mod glob;
mod tenant;

pub use glob::escape_glob;
pub use tenant::{Prefix, PrefixError};
