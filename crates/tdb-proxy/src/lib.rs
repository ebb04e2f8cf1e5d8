//! The data plane: one proxy per wire protocol: PostgreSQL, MySQL and Redis. A client connects with a
//! routing name (`<blueprint>__<tenant>` or `<workspace>_workspace`) and a credential; the proxy
//! authenticates it against the catalog, connects to the right server database as the right
//! role, relays, enforces the tenant's state and limits, and logs every statement.

pub mod mysql;
pub mod pg;
#[cfg(feature = "server")]
pub mod redis;

#[cfg(feature = "server")]
pub mod admission;
#[cfg(feature = "server")]
pub mod refusal;
#[cfg(feature = "server")]
pub mod tenancy;

#[cfg(feature = "server")]
pub mod budget;
#[cfg(feature = "server")]
pub mod cancel;
#[cfg(feature = "server")]
pub mod ddl;
#[cfg(feature = "server")]
pub mod gate;
#[cfg(feature = "server")]
pub mod keylogin;
#[cfg(feature = "server")]
pub mod metrics;
#[cfg(feature = "server")]
pub mod pool;
#[cfg(feature = "server")]
pub mod querylog;
#[cfg(feature = "server")]
pub mod route;
#[cfg(feature = "server")]
mod server;
#[cfg(feature = "server")]
pub mod tls;
#[cfg(feature = "server")]
pub mod workers;

#[cfg(feature = "server")]
pub use server::{
    Listener, PlaintextPolicy, Proxy, ProxyConfig, ProxyState, UNIX_PEER, serve_pg, serve_redis,
};
