//! The Redis proxy: tenants are key prefixes on a shared redis-server. The codec, the command
//! table and the command policy are `tdb_resp`'s (protocol-pure); this module owns the login
//! phase ([`hello`], [`session`]), the server connections ([`backend`], shared ones in
//! [`lane`], the session's choice between them in [`link`]), the relay ([`relay`])
//! the commands the proxy answers for a tenant itself ([`emulate`]) and the tenant's rules for
//! its keys: TTLs and `max_keys` ([`keyrules`]); keyspace walks go over a connection of their
//! own ([`walker`]); a session moves to its lane's worker with its client socket ([`moving`]).

pub mod backend;
mod emulate;
pub mod hello;
pub mod keyrules;
pub mod lane;
mod link;
pub mod memory;
mod moving;
mod patterns;
mod relay;
pub mod session;
mod walker;

pub use session::{RedisLogins, handle};

#[cfg(test)]
mod tests;
