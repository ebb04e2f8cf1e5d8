//! IP networks in CIDR notation (`127.0.0.0/8`, `::1/128`, or a bare address), parsed once from
//! configuration, so that membership tests cannot meet a malformed network.

use std::net::IpAddr;
use std::str::FromStr;

/// A network: an address and a prefix length; the address's host bits are ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNetwork {
    addr: IpAddr,
    prefix: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{input}' is not a network: {reason} (write it as 10.0.0.0/8, fd00::/8 or one address)")]
pub struct NetworkError {
    input: String,
    reason: &'static str,
}

impl IpNetwork {
    /// True when `ip` is inside. An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) is judged as
    /// its IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl From<(IpAddr, u8)> for IpNetwork {
    /// A network from an address and a prefix length, clamped to the address's width.
    fn from((addr, prefix): (IpAddr, u8)) -> Self {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        Self {
            addr,
            prefix: prefix.min(max),
        }
    }
}

impl FromStr for IpNetwork {
    type Err = NetworkError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let error = |reason| NetworkError {
            input: s.to_string(),
            reason,
        };
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (s.trim(), None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| error("not an IP address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| error("the prefix length is out of range"))?,
        };
        Ok(Self { addr, prefix })
    }
}

impl std::fmt::Display for IpNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn net(s: &str) -> IpNetwork {
        s.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))
    }

    #[test]
    fn membership_follows_the_prefix() {
        let loopback = net("127.0.0.0/8");
        assert!(loopback.contains(ip("127.0.0.1")));
        assert!(loopback.contains(ip("127.255.0.9")));
        assert!(loopback.contains(ip("::ffff:127.0.0.2")), "IPv4-mapped");
        assert!(!loopback.contains(ip("128.0.0.1")));
        assert!(!loopback.contains(ip("::1")));
        assert!(net("::1/128").contains(ip("::1")));
        assert!(!net("::1/128").contains(ip("::2")));
        assert!(net("10.1.2.3").contains(ip("10.1.2.3")), "a bare address");
        assert!(!net("10.1.2.3").contains(ip("10.1.2.4")));
        assert!(net("0.0.0.0/0").contains(ip("203.0.113.7")));
        assert!(net("2001:db8::/32").contains(ip("2001:db8:ffff::1")));
        assert!(!net("2001:db8::/32").contains(ip("2001:db9::1")));
        assert!(net("::/0").contains(ip("2001:db8::1")));
        assert_eq!(net("127.0.0.0/8").to_string(), "127.0.0.0/8");
    }

    #[test]
    fn malformed_networks_are_refused_with_the_input() {
        for bad in [
            "",
            "127.0.0.1/33",
            "::1/129",
            "localhost",
            "10.0.0.0/x",
            "10.0.0/8",
        ] {
            let err = bad.parse::<IpNetwork>().expect_err(bad).to_string();
            assert!(err.contains(&format!("'{bad}'")), "{err}");
        }
    }

    proptest! {
        #[test]
        fn an_address_is_in_every_network_built_from_it(a in any::<u32>(), p in 0u8..=32) {
            let n = net(&format!("{}/{p}", std::net::Ipv4Addr::from(a)));
            prop_assert!(n.contains(IpAddr::from(std::net::Ipv4Addr::from(a))));
        }

        #[test]
        fn parsing_never_panics(s in "\\PC{0,48}") {
            let _ = s.parse::<IpNetwork>();
        }
    }
}
