//! Admission: what every connection passes before its protocol reads a byte, whatever the
//! protocol. The address's rate and bans (shared with the REST API), then the caps on
//! connections that have not authenticated yet: per client address (an IPv6 client's /64 as
//! one, loopback included) and in all.

use std::net::SocketAddr;

use tokio::sync::OwnedSemaphorePermit;

use crate::ProxyState;
use crate::refusal::{Reason, Refusal};

/// The caps' places a connection holds until it has authenticated (or been told why not).
pub struct Unauthenticated {
    _per_address: tdb_core::slots::AddressSlot,
    _in_all: OwnedSemaphorePermit,
}

/// What becomes of a new connection.
pub enum Admission {
    /// Its protocol may go on; drop the places once the client has authenticated.
    Admitted(Unauthenticated),
    /// Over its address's rate, or banned: the protocol tells the client why (holding the
    /// places while it does, so refusals cannot pile up), then closes.
    Refused(Unauthenticated, Refusal),
    /// Over a cap on unauthenticated connections: closed at once, nothing said.
    Closed,
}

/// Admits, refuses or closes a connection from `peer`. `protocol` names the surface in logs
/// and labels its metrics.
pub fn admit(proxy: &ProxyState, peer: SocketAddr, protocol: &'static str) -> Admission {
    let metrics = proxy.metrics(protocol);
    metrics.connections.increment(1);
    // The address's rate first: a banned address gets nothing else from the proxy.
    let refusal = address_refusal(proxy, peer, protocol, &metrics);
    let Some(per_address) = proxy.peers.enter(peer.ip()) else {
        if refusal.is_none() {
            tracing::warn!(%peer, "too many unauthenticated connections from one address");
        }
        return Admission::Closed;
    };
    let Ok(in_all) = proxy.unauthenticated.clone().try_acquire_owned() else {
        tracing::warn!(%peer, "too many unauthenticated connections; closing one");
        return Admission::Closed;
    };
    let places = Unauthenticated {
        _per_address: per_address,
        _in_all: in_all,
    };
    match refusal {
        None => Admission::Admitted(places),
        Some(refusal) => {
            metrics.refused.increment(1);
            tracing::debug!(%peer, "connection refused by the address rate limit");
            Admission::Refused(places, refusal)
        }
    }
}

/// Why a connection from `peer` is refused when its address is over its rate or banned.
fn address_refusal(
    proxy: &ProxyState,
    peer: SocketAddr,
    protocol: &str,
    metrics: &crate::metrics::ProxyMetrics,
) -> Option<Refusal> {
    use tdb_core::ratelimit::Verdict;
    match proxy.config.ip_guard.check(peer.ip()) {
        Verdict::Allowed => None,
        Verdict::Limited { retry_after } => Some(Refusal::new(
            Reason::TooMany,
            format!(
                "too many connection attempts from {}: max {} per second; retry in {retry_after} s",
                peer.ip(),
                proxy.config.ip_guard.limits().per_second
            ),
        )),
        Verdict::Banned { retry_after, fresh } => {
            if fresh {
                metrics.bans.increment(1);
                tracing::warn!(
                    address = %peer.ip(),
                    ban_secs = retry_after,
                    surface = %format_args!("{protocol} proxy"),
                    "address banned: over the connection rate too often"
                );
            }
            Some(Refusal::new(
                Reason::TooMany,
                format!(
                    "too many requests from {}: the address is banned for {retry_after} s",
                    peer.ip()
                ),
            ))
        }
    }
}

/// Refuses a login, before any catalog or authentication work, while `peer`'s address or
/// `user` from that address has failed too often in the last minute (known user or not, so
/// the refusal says nothing about which users exist; per address, so nobody can lock a user
/// out from elsewhere).
pub fn login_throttle(proxy: &ProxyState, user: &str, peer: SocketAddr) -> Result<(), Refusal> {
    proxy
        .failures_by_ip
        .check(&peer.ip())
        .and_then(|()| proxy.failures_by_user.check(&(user.to_string(), peer.ip())))
        .map_err(|wait| {
            Refusal::new(
                Reason::LoginsThrottled,
                format!("too many failed logins; try again in {wait} s"),
            )
        })
}

/// Counts a failed login of `user` from `peer` on `protocol`.
pub fn login_failed(proxy: &ProxyState, protocol: &'static str, user: &str, peer: SocketAddr) {
    proxy.metrics(protocol).auth_failures.increment(1);
    proxy.failures_by_ip.failed(&peer.ip());
    proxy
        .failures_by_user
        .failed(&(user.to_string(), peer.ip()));
}
