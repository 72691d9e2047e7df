//! Who may use a node's DNS server as a recursive resolver, and how fast.
//!
//! Names inside `skein.` are answered for anyone who can reach the server
//! (other hosts look services up too), but relaying the rest of the world
//! is for this node's own containers and the host itself: an open resolver
//! on an edge box's public address is an amplifier for anyone's attacks. A
//! relayed client also gets a token bucket, so a runaway container cannot
//! flood the upstream resolvers either.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

/// Relay rules: the networks whose clients may relay, and their rate.
#[derive(Debug, Clone)]
pub struct RelayPolicy {
    /// Networks (address, prefix length) whose clients may relay;
    /// loopback is always allowed.
    pub networks: Vec<(IpAddr, u8)>,
    /// Relayed questions per second one client may ask on average.
    pub per_client_qps: u32,
    /// Questions one client may ask in a burst.
    pub per_client_burst: u32,
    /// Loopback clients (the host itself) may relay.
    pub loopback: bool,
}

impl Default for RelayPolicy {
    fn default() -> Self {
        Self {
            networks: Vec::new(),
            per_client_qps: 100,
            per_client_burst: 200,
            loopback: true,
        }
    }
}

/// Clients tracked at most; beyond this the oldest bucket is forgotten
/// (a forgotten client starts with a full bucket again, harmlessly).
const MAX_CLIENTS: usize = 4096;

/// Applies a [`RelayPolicy`].
#[derive(Debug)]
pub(super) struct RelayClients {
    policy: RelayPolicy,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Why a question is not relayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refusal {
    /// The client is not on a network allowed to relay.
    Outsider,
    /// The client asks faster than its rate.
    TooFast,
}

impl RelayClients {
    pub(super) fn new(policy: RelayPolicy) -> Self {
        Self {
            policy,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `client` may have one question relayed now.
    pub(super) fn admit(&self, client: IpAddr) -> Result<(), Refusal> {
        let allowed = (self.policy.loopback && client.is_loopback())
            || self
                .policy
                .networks
                .iter()
                .any(|(net, len)| contains(*net, *len, client));
        if !allowed {
            return Err(Refusal::Outsider);
        }
        let now = Instant::now();
        let burst = f64::from(self.policy.per_client_burst.max(1));
        let rate = f64::from(self.policy.per_client_qps.max(1));
        // A std lock: nothing is awaited while it is held.
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= MAX_CLIENTS && !buckets.contains_key(&client) {
            if let Some(oldest) = buckets.iter().min_by_key(|(_, b)| b.at).map(|(ip, _)| *ip) {
                buckets.remove(&oldest);
            }
        }
        let b = buckets.entry(client).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * rate).min(burst);
        b.at = now;
        if b.tokens < 1.0 {
            return Err(Refusal::TooFast);
        }
        b.tokens -= 1.0;
        Ok(())
    }
}

/// Whether `ip` is inside `net`/`len` (same address family only).
fn contains(net: IpAddr, len: u8, ip: IpAddr) -> bool {
    match (net, ip) {
        (IpAddr::V4(n), IpAddr::V4(a)) => {
            let len = u32::from(len.min(32));
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            u32::from(n) & mask == u32::from(a) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(a)) => {
            let len = u32::from(len.min(128));
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - len)
            };
            u128::from(n) & mask == u128::from(a) & mask
        }
        _ => false,
    }
}

/// Parses `ADDR/LEN` (a network in CIDR notation).
pub fn parse_network(s: &str) -> Option<(IpAddr, u8)> {
    let (addr, len) = s.split_once('/')?;
    let addr: IpAddr = addr.trim().parse().ok()?;
    let len: u8 = len.trim().parse().ok()?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    (len <= max).then_some((addr, len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_and_listed_networks_relay() {
        let c = RelayClients::new(RelayPolicy {
            networks: vec![parse_network("172.17.0.0/16").unwrap()],
            ..RelayPolicy::default()
        });
        assert_eq!(c.admit("127.0.0.1".parse().unwrap()), Ok(()));
        assert_eq!(c.admit("::1".parse().unwrap()), Ok(()));
        assert_eq!(c.admit("172.17.3.4".parse().unwrap()), Ok(()));
        assert_eq!(
            c.admit("172.18.0.1".parse().unwrap()),
            Err(Refusal::Outsider)
        );
        assert_eq!(
            c.admit("203.0.113.9".parse().unwrap()),
            Err(Refusal::Outsider)
        );
        assert_eq!(parse_network("10.0.0.0/33"), None);
        assert_eq!(parse_network("10.0.0.0"), None);
    }

    #[test]
    fn a_client_asking_too_fast_is_refused_others_are_not() {
        let c = RelayClients::new(RelayPolicy {
            networks: vec![],
            per_client_qps: 1,
            per_client_burst: 5,
            loopback: true,
        });
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        for _ in 0..5 {
            assert_eq!(c.admit(a), Ok(()));
        }
        assert_eq!(c.admit(a), Err(Refusal::TooFast));
        assert_eq!(c.admit(b), Ok(()));
    }
}
