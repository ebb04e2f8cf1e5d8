//! The MySQL proxy, for tenants on MariaDB: codecs for packets and the typed messages of the
//! connection and command phases, password checks, the per-connection session, the server
//! connection and the relay.

pub mod auth;
pub mod capability;
pub mod command;
pub mod errno;
pub mod handshake;
pub mod packet;
pub mod reply;
pub mod response;
pub mod sqltext;
pub mod wire;
