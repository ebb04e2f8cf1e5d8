//! Rate limits, in memory (no IO): per client address in front of authentication, shared by
//! the REST API and every proxy listener, so a ban earned on one is enforced on all; per
//! project after authentication; and a throttle on failed logins.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::network::IpNetwork;

/// What a limiter says about one more request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// Over the rate: try again in `retry_after` seconds.
    Limited {
        retry_after: u64,
    },
    /// Banned: every request is refused for `retry_after` more seconds. `fresh` is true only
    /// for the request that earned the ban, so that each ban is reported once.
    Banned {
        retry_after: u64,
        fresh: bool,
    },
}

/// Settings of [`IpGuard`].
#[derive(Debug, Clone)]
pub struct IpLimits {
    /// Requests (or connection attempts) per second per address.
    pub per_second: u32,
    /// Refused requests after which the address is banned.
    pub ban_after: u32,
    pub ban_for: Duration,
    /// Networks never limited nor banned (the operator's own: by default loopback).
    pub trusted: Vec<IpNetwork>,
}

/// The networks trusted by default: loopback, IPv4 and IPv6.
pub fn default_trusted() -> Vec<IpNetwork> {
    [
        IpNetwork::from(([127, 0, 0, 0].into(), 8)),
        IpNetwork::from((std::net::Ipv6Addr::LOCALHOST.into(), 128)),
    ]
    .to_vec()
}

impl Default for IpLimits {
    fn default() -> Self {
        Self {
            per_second: 100,
            ban_after: 5,
            ban_for: Duration::from_secs(300),
            trusted: default_trusted(),
        }
    }
}

#[derive(Debug)]
struct IpState {
    window: Instant,
    count: u32,
    violations: u32,
    first_violation: Instant,
    banned_until: Option<Instant>,
    seen: Instant,
}

/// Requests per second per address, with bans for repeat offenders. An IPv6 client is counted
/// by its /64 (one subscriber's network), so rotating addresses inside it gains nothing; an
/// IPv4-mapped IPv6 address counts as its IPv4 address.
#[derive(Debug)]
pub struct IpGuard {
    limits: IpLimits,
    state: Mutex<(HashMap<IpAddr, IpState>, Instant)>,
    /// The most addresses kept in memory at once.
    capacity: usize,
}

/// Addresses tracked at most (some 100 bytes each).
const CAPACITY: usize = 200_000;
/// When full, addresses unseen for this long and not banned make room.
const FULL_IDLE: Duration = Duration::from_secs(2);

/// The key an address is counted under: an IPv6 address's /64, an IPv4-mapped address's IPv4
/// address. Every per-address limit counts by it.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(bits.into())
            }
        },
        v4 => v4,
    }
}

/// Violations older than this are forgotten.
const VIOLATION_MEMORY: Duration = Duration::from_secs(60);
/// Addresses unseen for this long are dropped from memory.
const IDLE: Duration = Duration::from_secs(600);

impl IpGuard {
    pub fn new(limits: IpLimits) -> Self {
        Self::with_capacity(limits, CAPACITY)
    }

    fn with_capacity(limits: IpLimits, capacity: usize) -> Self {
        Self {
            limits,
            state: Mutex::new((HashMap::new(), Instant::now())),
            capacity,
        }
    }

    pub fn limits(&self) -> &IpLimits {
        &self.limits
    }

    /// True when `ip` is in a trusted network.
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        self.limits.trusted.iter().any(|n| n.contains(ip))
    }

    /// Counts one request from `ip` and says whether it may go on.
    pub fn check(&self, ip: IpAddr) -> Verdict {
        self.check_at(ip, Instant::now())
    }

    fn check_at(&self, ip: IpAddr, now: Instant) -> Verdict {
        if self.is_trusted(ip) {
            return Verdict::Allowed;
        }
        let ip = client_key(ip);
        let mut guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (map, swept) = &mut *guard;
        let forget = |map: &mut HashMap<IpAddr, IpState>, idle: Duration| {
            map.retain(|_, s| {
                now.duration_since(s.seen) < idle || s.banned_until.is_some_and(|b| b > now)
            });
        };
        if now.duration_since(*swept) > IDLE {
            forget(map, IDLE);
            *swept = now;
        }
        if map.len() >= self.capacity && !map.contains_key(&ip) {
            // A flood from more addresses than memory allows: make room from the quiet ones,
            // at most once a second; when none can go, the newcomer is let through uncounted
            // (a per-address limit cannot stop a flood that wide anyway).
            if now.duration_since(*swept) >= Duration::from_secs(1) {
                forget(map, FULL_IDLE);
                *swept = now;
            }
            if map.len() >= self.capacity {
                return Verdict::Allowed;
            }
        }
        let s = map.entry(ip).or_insert(IpState {
            window: now,
            count: 0,
            violations: 0,
            first_violation: now,
            banned_until: None,
            seen: now,
        });
        s.seen = now;
        if let Some(until) = s.banned_until {
            if until > now {
                return Verdict::Banned {
                    retry_after: ceil_secs(until - now),
                    fresh: false,
                };
            }
            s.banned_until = None;
            s.violations = 0;
        }
        if now.duration_since(s.window) >= Duration::from_secs(1) {
            s.window = now;
            s.count = 0;
        }
        s.count += 1;
        if s.count <= self.limits.per_second {
            return Verdict::Allowed;
        }
        if s.violations == 0 || now.duration_since(s.first_violation) > VIOLATION_MEMORY {
            s.violations = 0;
            s.first_violation = now;
        }
        s.violations += 1;
        if s.violations >= self.limits.ban_after {
            s.banned_until = Some(now + self.limits.ban_for);
            return Verdict::Banned {
                retry_after: self.limits.ban_for.as_secs().max(1),
                fresh: true,
            };
        }
        Verdict::Limited { retry_after: 1 }
    }

    /// Addresses banned now (for metrics).
    pub fn banned(&self) -> usize {
        let now = Instant::now();
        let guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        guard
            .0
            .values()
            .filter(|s| s.banned_until.is_some_and(|b| b > now))
            .count()
    }
}

fn ceil_secs(d: Duration) -> u64 {
    let s = d.as_secs();
    if d.subsec_nanos() > 0 {
        s + 1
    } else {
        s.max(1)
    }
}

/// At most `limit` events per key per fixed minute window (the tier quotas).
#[derive(Debug)]
pub struct MinuteQuota<K> {
    state: Mutex<HashMap<K, (Instant, u32)>>,
}

impl<K: Hash + Eq + Clone> Default for MinuteQuota<K> {
    fn default() -> Self {
        Self {
            state: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Hash + Eq + Clone> MinuteQuota<K> {
    /// Counts one event for `key`; `Err(seconds)` until its window ends when over `limit`.
    pub fn take(&self, key: &K, limit: u32) -> Result<(), u64> {
        self.take_at(key, limit, Instant::now())
    }

    fn take_at(&self, key: &K, limit: u32, now: Instant) -> Result<(), u64> {
        let mut map = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() > 100_000 {
            map.retain(|_, (start, _)| now.duration_since(*start) < Duration::from_secs(60));
        }
        let entry = map.entry(key.clone()).or_insert((now, 0));
        if now.duration_since(entry.0) >= Duration::from_secs(60) {
            *entry = (now, 0);
        }
        if entry.1 >= limit {
            return Err(ceil_secs(
                Duration::from_secs(60) - now.duration_since(entry.0),
            ));
        }
        entry.1 += 1;
        Ok(())
    }
}

/// At most `limit` events a second for the whole process, whoever asks: a budget for work that
/// must stay cheap under a flood from many addresses.
#[derive(Debug)]
pub struct PerSecond {
    limit: u32,
    /// The current second's start and the events counted in it.
    state: Mutex<(Instant, u32)>,
}

impl PerSecond {
    pub fn new(limit: u32) -> Self {
        Self {
            limit,
            state: Mutex::new((Instant::now(), 0)),
        }
    }

    /// Whether one more event fits in the current second (and counts it if so).
    pub fn allow(&self) -> bool {
        self.allow_at(Instant::now())
    }

    fn allow_at(&self, now: Instant) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if now.duration_since(state.0) >= Duration::from_secs(1) {
            *state = (now, 0);
        }
        if state.1 < self.limit {
            state.1 += 1;
            true
        } else {
            false
        }
    }
}

/// Failed logins per key (an address, a user name) in a sliding window; past `limit`, attempts
/// are refused before any password work is done.
#[derive(Debug)]
pub struct FailureThrottle<K> {
    limit: usize,
    window: Duration,
    state: Mutex<HashMap<K, Vec<Instant>>>,
}

impl<K: Hash + Eq + Clone> FailureThrottle<K> {
    pub fn new(limit: usize, window: Duration) -> Self {
        Self {
            limit,
            window,
            state: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(seconds)` while `key` has `limit` failures within the window.
    pub fn check(&self, key: &K) -> Result<(), u64> {
        let now = Instant::now();
        let mut map = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let Some(times) = map.get_mut(key) else {
            return Ok(());
        };
        times.retain(|t| now.duration_since(*t) < self.window);
        if times.len() >= self.limit {
            let oldest = times.first().copied().unwrap_or(now);
            return Err(ceil_secs(
                self.window.saturating_sub(now.duration_since(oldest)),
            ));
        }
        Ok(())
    }

    pub fn failed(&self, key: &K) {
        let now = Instant::now();
        let mut map = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() > 100_000 {
            let window = self.window;
            map.retain(|_, t| t.last().is_some_and(|l| now.duration_since(*l) < window));
        }
        let times = map.entry(key.clone()).or_default();
        times.retain(|t| now.duration_since(*t) < self.window);
        times.push(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_per_second_refills_each_second() {
        let budget = PerSecond::new(2);
        let t0 = Instant::now();
        assert!(budget.allow_at(t0));
        assert!(budget.allow_at(t0 + Duration::from_millis(10)));
        assert!(!budget.allow_at(t0 + Duration::from_millis(900)));
        assert!(budget.allow_at(t0 + Duration::from_millis(1000)));
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))
    }

    #[test]
    fn an_address_over_its_rate_is_limited_then_banned() {
        let guard = IpGuard::new(IpLimits {
            per_second: 3,
            ..IpLimits::default()
        });
        let t0 = Instant::now();
        let a = ip("10.0.0.1");
        for _ in 0..3 {
            assert_eq!(guard.check_at(a, t0), Verdict::Allowed);
        }
        for _ in 0..4 {
            assert_eq!(guard.check_at(a, t0), Verdict::Limited { retry_after: 1 });
        }
        assert_eq!(
            guard.check_at(a, t0),
            Verdict::Banned {
                retry_after: 300,
                fresh: true
            },
            "the fifth violation bans"
        );
        // Banned even in a new second (no longer a fresh ban), and another address is
        // untouched.
        let later = t0 + Duration::from_secs(10);
        assert_eq!(
            guard.check_at(a, later),
            Verdict::Banned {
                retry_after: 290,
                fresh: false
            }
        );
        assert_eq!(guard.check_at(ip("10.0.0.2"), later), Verdict::Allowed);
        assert_eq!(guard.banned(), 1);
        // The ban ends.
        let after = t0 + Duration::from_secs(301);
        assert_eq!(guard.check_at(a, after), Verdict::Allowed);
    }

    #[test]
    fn ipv6_clients_count_by_their_64_and_mapped_addresses_as_ipv4() {
        let guard = IpGuard::new(IpLimits {
            per_second: 2,
            ..IpLimits::default()
        });
        let t0 = Instant::now();
        assert_eq!(guard.check_at(ip("2001:db8:1:2::1"), t0), Verdict::Allowed);
        assert_eq!(
            guard.check_at(ip("2001:db8:1:2::ffff:9"), t0),
            Verdict::Allowed
        );
        assert!(
            matches!(
                guard.check_at(ip("2001:db8:1:2:aaaa::7"), t0),
                Verdict::Limited { .. }
            ),
            "a third address of the same /64 is the same client"
        );
        assert_eq!(guard.check_at(ip("2001:db8:1:3::1"), t0), Verdict::Allowed);
        assert_eq!(guard.check_at(ip("192.0.2.9"), t0), Verdict::Allowed);
        assert_eq!(guard.check_at(ip("::ffff:192.0.2.9"), t0), Verdict::Allowed);
        assert!(matches!(
            guard.check_at(ip("192.0.2.9"), t0),
            Verdict::Limited { .. }
        ));
    }

    #[test]
    fn memory_is_bounded_and_bans_survive_a_flood() {
        let guard = IpGuard::with_capacity(
            IpLimits {
                per_second: 1,
                ban_after: 1,
                ..IpLimits::default()
            },
            100,
        );
        let t0 = Instant::now();
        let banned = ip("198.51.100.1");
        assert_eq!(guard.check_at(banned, t0), Verdict::Allowed);
        assert!(matches!(guard.check_at(banned, t0), Verdict::Banned { .. }));
        for round in 0..3u64 {
            let at = t0 + Duration::from_secs(5 * round + 5);
            for i in 0..1000u32 {
                let a = IpAddr::from([10, (round as u8) + 1, (i >> 8) as u8, i as u8]);
                guard.check_at(a, at);
            }
            let len = guard.state.lock().expect("lock").0.len();
            assert!(len <= 100, "{len} addresses kept");
            assert!(
                matches!(guard.check_at(banned, at), Verdict::Banned { .. }),
                "the ban outlives the flood"
            );
        }
    }

    #[test]
    fn the_rate_resets_each_second_and_trusted_networks_are_never_limited() {
        let guard = IpGuard::new(IpLimits {
            per_second: 2,
            trusted: Vec::new(),
            ..IpLimits::default()
        });
        let t0 = Instant::now();
        let a = ip("::1");
        assert_eq!(guard.check_at(a, t0), Verdict::Allowed);
        assert_eq!(guard.check_at(a, t0), Verdict::Allowed);
        assert!(matches!(guard.check_at(a, t0), Verdict::Limited { .. }));
        assert_eq!(
            guard.check_at(a, t0 + Duration::from_millis(1001)),
            Verdict::Allowed
        );
        // The defaults trust loopback; a configured network replaces them.
        let defaults = IpGuard::new(IpLimits {
            per_second: 1,
            ban_after: 1,
            ..IpLimits::default()
        });
        for a in ["127.0.0.1", "127.0.0.2", "::1", "::ffff:127.0.0.1"] {
            for _ in 0..10 {
                assert_eq!(defaults.check_at(ip(a), t0), Verdict::Allowed, "{a}");
            }
        }
        assert_eq!(defaults.check_at(ip("192.0.2.1"), t0), Verdict::Allowed);
        assert!(matches!(
            defaults.check_at(ip("192.0.2.1"), t0),
            Verdict::Banned { fresh: true, .. }
        ));
        let office = IpGuard::new(IpLimits {
            per_second: 1,
            trusted: vec!["192.0.2.0/24".parse().expect("network")],
            ..IpLimits::default()
        });
        for _ in 0..10 {
            assert_eq!(office.check_at(ip("192.0.2.77"), t0), Verdict::Allowed);
        }
        assert_eq!(office.check_at(ip("127.0.0.1"), t0), Verdict::Allowed);
        assert!(matches!(
            office.check_at(ip("127.0.0.1"), t0),
            Verdict::Limited { .. }
        ));
    }

    #[test]
    fn quotas_count_per_minute() {
        let q = MinuteQuota::default();
        let t0 = Instant::now();
        assert!(q.take_at(&"p1", 2, t0).is_ok());
        assert!(q.take_at(&"p1", 2, t0).is_ok());
        assert_eq!(q.take_at(&"p1", 2, t0 + Duration::from_secs(20)), Err(40));
        assert!(q.take_at(&"p2", 2, t0).is_ok());
        assert!(q.take_at(&"p1", 2, t0 + Duration::from_secs(60)).is_ok());
    }

    #[test]
    fn failures_throttle_until_they_age_out() {
        let t = FailureThrottle::new(2, Duration::from_secs(60));
        assert!(t.check(&"u").is_ok());
        t.failed(&"u");
        assert!(t.check(&"u").is_ok());
        t.failed(&"u");
        assert!(t.check(&"u").is_err_and(|s| (59..=60).contains(&s)));
        assert!(t.check(&"v").is_ok());
    }
}
