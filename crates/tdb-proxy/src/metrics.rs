//! The proxy's Prometheus instruments, taken from the process's recorder once, so the relay's
//! hot path only adds to atomics.

use metrics::{Counter, Gauge, counter, gauge};

#[derive(Clone)]
pub struct ProxyMetrics {
    /// Connections accepted.
    pub connections: Counter,
    /// Sessions past authentication, now.
    pub sessions: Gauge,
    /// Statements relayed, and those that failed.
    pub queries: Counter,
    pub failed: Counter,
    pub bytes_from_clients: Counter,
    pub bytes_to_clients: Counter,
    /// Connections refused by the address rate limit.
    pub refused: Counter,
    /// Addresses banned on a connection to this proxy.
    pub bans: Counter,
    /// Failed logins.
    pub auth_failures: Counter,
}

impl ProxyMetrics {
    pub fn new(engine: &'static str) -> Self {
        Self {
            connections: counter!("tdb_proxy_connections_total", "engine" => engine),
            sessions: gauge!("tdb_proxy_sessions", "engine" => engine),
            queries: counter!("tdb_proxy_queries_total", "engine" => engine),
            failed: counter!("tdb_proxy_queries_failed_total", "engine" => engine),
            bytes_from_clients: counter!("tdb_proxy_bytes_total", "engine" => engine, "direction" => "from_client"),
            bytes_to_clients: counter!("tdb_proxy_bytes_total", "engine" => engine, "direction" => "to_client"),
            refused: counter!("tdb_rate_limited_total", "surface" => "proxy", "kind" => "refused"),
            bans: counter!("tdb_address_bans_total", "surface" => "proxy"),
            auth_failures: counter!("tdb_proxy_auth_failures_total", "engine" => engine),
        }
    }
}
