//! The MySQL proxy, for tenants on MariaDB: codecs for packets and the typed messages of the
//! connection and command phases, password checks, the per-connection session, the server
//! connection and the relay.

pub mod auth;
#[cfg(feature = "server")]
pub mod backend;
pub mod capability;
pub mod command;
pub mod errno;
#[doc(hidden)]
pub mod fuzz;
pub mod handshake;
pub mod login;
pub mod packet;
#[cfg(feature = "server")]
pub mod relay;
pub mod reply;
pub mod response;
#[cfg(feature = "server")]
pub mod session;
pub mod sqltext;
#[cfg(feature = "server")]
pub mod stream;
pub mod wire;

#[cfg(all(test, feature = "server"))]
mod tests;
