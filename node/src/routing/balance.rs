//! Picking an endpoint: the balancing policies and the open-connection
//! counts they read.
//!
//! [`Load`] counts the proxied connections currently open to each endpoint,
//! across all published ports. A connection *claims* its endpoint before it
//! even connects, so a burst of new connections under `LeastConnections`
//! spreads instead of piling onto the endpoint that looked idlest.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use skein_protocol::spec::Balance;

/// The order in which to try `endpoints` for one new connection: the
/// balanced choice first, then every other endpoint at most once.
///
/// `turn` is a per-port counter that increases with every connection: it
/// rotates `RoundRobin` and breaks `LeastConnections` ties. `open` tells how
/// many proxied connections an endpoint currently has.
pub(crate) fn order(
    balance: Balance,
    endpoints: &[SocketAddr],
    open: impl Fn(&SocketAddr) -> usize,
    turn: usize,
) -> Vec<SocketAddr> {
    let n = endpoints.len();
    if n == 0 {
        return Vec::new();
    }
    let start = match balance {
        Balance::RoundRobin => turn % n,
        Balance::LeastConnections => {
            let counts: Vec<usize> = endpoints.iter().map(&open).collect();
            let fewest = counts.iter().copied().min().unwrap_or(0);
            let tied: Vec<usize> = (0..n).filter(|&i| counts[i] == fewest).collect();
            tied.get(turn % tied.len().max(1)).copied().unwrap_or(0)
        }
    };
    let mut seen = HashSet::with_capacity(n);
    let mut order: Vec<SocketAddr> = (0..n)
        .map(|k| endpoints[(start + k) % n])
        .filter(|addr| seen.insert(*addr))
        .collect();
    if balance == Balance::LeastConnections && order.len() > 2 {
        // Fall back to the next least loaded (stable: ties keep rotation).
        order[1..].sort_by_key(|addr| open(addr));
    }
    order
}

/// Open proxied connections per endpoint, shared by every listener.
#[derive(Debug, Default)]
pub(crate) struct Load {
    open: Mutex<HashMap<SocketAddr, usize>>,
}

impl Load {
    fn lock(&self) -> MutexGuard<'_, HashMap<SocketAddr, usize>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Computes the try order for a new connection and claims its first
    /// endpoint, atomically. `None` when there is no endpoint.
    pub(crate) fn plan(
        self: &Arc<Self>,
        balance: Balance,
        endpoints: &[SocketAddr],
        turn: usize,
    ) -> Option<(Claim, Vec<SocketAddr>)> {
        let mut open = self.lock();
        let order = order(
            balance,
            endpoints,
            |addr| open.get(addr).copied().unwrap_or(0),
            turn,
        );
        let first = *order.first()?;
        *open.entry(first).or_insert(0) += 1;
        drop(open);
        let claim = Claim {
            load: Arc::clone(self),
            addr: first,
        };
        Some((claim, order))
    }

    /// Counts one more open connection to `addr` until the claim drops.
    pub(crate) fn claim(self: &Arc<Self>, addr: SocketAddr) -> Claim {
        *self.lock().entry(addr).or_insert(0) += 1;
        Claim {
            load: Arc::clone(self),
            addr,
        }
    }

    /// Endpoints with at least one open proxied connection.
    pub(crate) fn snapshot(&self) -> BTreeMap<SocketAddr, usize> {
        self.lock()
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(a, n)| (*a, *n))
            .collect()
    }
}

/// One open (or opening) connection to an endpoint; uncounted on drop.
#[derive(Debug)]
pub(crate) struct Claim {
    load: Arc<Load>,
    addr: SocketAddr,
}

impl Claim {
    /// The claimed endpoint.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        let mut open = self.load.lock();
        if let Some(n) = open.get_mut(&self.addr) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.addr);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(n: u16) -> Vec<SocketAddr> {
        (1..=n)
            .map(|p| SocketAddr::from(([127, 0, 0, 1], p)))
            .collect()
    }

    #[test]
    fn round_robin_rotates_and_tries_all_once() {
        let eps = addrs(3);
        assert_eq!(
            order(Balance::RoundRobin, &eps, |_| 0, 0),
            vec![eps[0], eps[1], eps[2]]
        );
        assert_eq!(
            order(Balance::RoundRobin, &eps, |_| 0, 4),
            vec![eps[1], eps[2], eps[0]]
        );
        assert!(order(Balance::RoundRobin, &[], |_| 0, 7).is_empty());
    }

    #[test]
    fn least_connections_picks_fewest_and_rotates_ties() {
        let eps = addrs(3);
        let open = |a: &SocketAddr| if *a == eps[0] { 2 } else { 0 };
        assert_eq!(order(Balance::LeastConnections, &eps, open, 0)[0], eps[1]);
        assert_eq!(order(Balance::LeastConnections, &eps, open, 1)[0], eps[2]);
        // The busiest endpoint is the last resort.
        assert_eq!(order(Balance::LeastConnections, &eps, open, 0)[2], eps[0]);
    }

    #[test]
    fn duplicates_are_tried_once() {
        let eps = addrs(2);
        let dup = vec![eps[0], eps[1], eps[0]];
        assert_eq!(
            order(Balance::RoundRobin, &dup, |_| 0, 2),
            vec![eps[0], eps[1]]
        );
    }

    #[test]
    fn claims_count_until_dropped() {
        let load = Arc::new(Load::default());
        let eps = addrs(2);
        let (first, _) = load
            .plan(Balance::LeastConnections, &eps, 0)
            .expect("endpoints");
        let (second, _) = load
            .plan(Balance::LeastConnections, &eps, 0)
            .expect("endpoints");
        assert_ne!(first.addr(), second.addr());
        assert_eq!(load.snapshot().len(), 2);
        drop(first);
        drop(second);
        assert!(load.snapshot().is_empty());
    }
}
