//! Open connections per client address, up to a cap: what one source may hold at once of a
//! listener's scarce resources (file descriptors, pre-authentication slots). Addresses are
//! counted by [`client_key`], so an IPv6 client's whole /64 shares one count.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use crate::ratelimit::client_key;

/// Counts what each address holds; [`AddressSlots::enter`] hands out one slot at a time.
#[derive(Debug)]
pub struct AddressSlots {
    max: usize,
    counts: Mutex<HashMap<IpAddr, usize>>,
}

/// One slot of an address; released on drop.
#[derive(Debug)]
pub struct AddressSlot {
    slots: Arc<AddressSlots>,
    key: IpAddr,
}

impl AddressSlots {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max,
            counts: Mutex::new(HashMap::new()),
        })
    }

    /// The most slots one address may hold.
    pub fn max(&self) -> usize {
        self.max
    }

    /// A slot for `ip`, or `None` when its address (its /64 for IPv6) holds `max` already.
    pub fn enter(self: &Arc<Self>, ip: IpAddr) -> Option<AddressSlot> {
        let key = client_key(ip);
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let n = counts.entry(key).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(AddressSlot {
            slots: self.clone(),
            key,
        })
    }

    /// Slots `ip`'s address holds now.
    pub fn held(&self, ip: IpAddr) -> usize {
        let counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        counts.get(&client_key(ip)).copied().unwrap_or(0)
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut counts = self.slots.counts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = counts.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))
    }

    #[test]
    fn every_address_is_capped_loopback_too_and_slots_come_back() {
        let slots = AddressSlots::new(2);
        let a = slots.enter(ip("127.0.0.1")).expect("first");
        let _b = slots.enter(ip("127.0.0.1")).expect("second");
        assert!(slots.enter(ip("127.0.0.1")).is_none(), "loopback is capped");
        assert!(
            slots.enter(ip("::ffff:127.0.0.1")).is_none(),
            "mapped is IPv4"
        );
        assert!(slots.enter(ip("127.0.0.2")).is_some(), "another address");
        drop(a);
        assert_eq!(slots.held(ip("127.0.0.1")), 1);
        assert!(
            slots.enter(ip("127.0.0.1")).is_some(),
            "a released slot is free"
        );
    }

    #[test]
    fn an_ipv6_client_counts_by_its_64() {
        let slots = AddressSlots::new(2);
        let _a = slots.enter(ip("2001:db8:1:2::1")).expect("first");
        let _b = slots.enter(ip("2001:db8:1:2:ffff::9")).expect("second");
        assert!(
            slots.enter(ip("2001:db8:1:2:abcd::7")).is_none(),
            "a third address of the same /64"
        );
        assert!(slots.enter(ip("2001:db8:1:3::1")).is_some());
        assert_eq!(slots.held(ip("2001:db8:1:2::42")), 2);
    }
}
