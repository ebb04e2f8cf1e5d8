//! The PostgreSQL proxy: codecs for the startup packet and the typed messages, SCRAM, server
//! connections, the per-connection session and the relay.

#[cfg(feature = "server")]
pub mod backend;
pub mod frame;
pub mod message;
pub mod params;
#[cfg(feature = "server")]
pub mod relay;
pub mod scram;
#[cfg(feature = "server")]
pub mod session;
pub mod sqlstate;
pub mod startup;
#[cfg(feature = "server")]
pub mod stop;
#[cfg(feature = "server")]
pub mod watchdog;
