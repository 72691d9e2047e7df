//! The feasible nodes of one [`super::place`] call, ordered by score, so
//! that each replica takes the best node in O(log N) instead of scoring
//! every node again.
//!
//! Placing a replica changes the score of only the node it lands on and,
//! under spread, the zone count shared by the nodes of its zone; and it
//! only ever takes capacity and ports, so no node becomes feasible again.
//! Hence one heap per zone (its nodes ordered by everything but the zone
//! count, which they share) and one heap of the zones' best nodes: a
//! placement pops the best node of the best zone and pushes back that
//! node and that zone, and everything else keeps its place. The order is
//! exactly the exhaustive scan's, down to its tie-break (the lowest index
//! among equal keys), so the choices are the same.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use skein_protocol::spec::PlacementStrategy;

use super::place::{utilisation_ppm, Need, Static};
use super::{NodeCandidate, PlacementRequest};

/// A node's order within its group, smaller first; the node's index last.
///
/// Spread: replicas of the job on the node, image fetch needed (0/1),
/// utilisation after placing, node id. Bin-pack: the complement of the
/// utilisation after placing (fuller first), fetch, node id, 0.
type Rank = [u64; 5];

/// A group's best node in the order across groups: [`Rank`] with the
/// zone's replica count of the job inserted second (spread), which is
/// what the exhaustive scan's key is.
type Top = [u64; 6];

/// Group 0 holds the nodes without a zone: each is its own failure
/// domain, its zone count its own replica count.
const NO_ZONE: usize = 0;

struct Group {
    nodes: BinaryHeap<Reverse<Rank>>,
    /// Replicas of the job on all the zone's nodes, feasible or not.
    zone_replicas: u64,
}

/// See the module documentation.
pub(super) struct Ranking {
    strategy: PlacementStrategy,
    groups: Vec<Group>,
    /// One entry per group with a feasible node: its best, as [`Top`].
    top: BinaryHeap<Reverse<(Top, usize)>>,
}

impl Ranking {
    /// Ranks the nodes that pass every filter for one more replica, in one
    /// pass over `nodes` (memory, not arithmetic, is what a pass costs),
    /// and returns with it every node's static filters' outcome.
    pub(super) fn new(
        nodes: &[NodeCandidate],
        req: &PlacementRequest<'_>,
        need: &Need,
    ) -> (Self, Vec<Static>) {
        let spread = req.strategy == PlacementStrategy::Spread;
        let mut statics = Vec::with_capacity(nodes.len());
        let mut zone_ids: BTreeMap<&str, usize> = BTreeMap::new();
        let mut members: Vec<Vec<Reverse<Rank>>> = vec![Vec::new()];
        let mut zone_replicas = vec![0u64];
        for (idx, n) in nodes.iter().enumerate() {
            let st = need.static_filter(n, req);
            statics.push(st);
            // Bin-pack needs neither: no zones, no count of the job.
            let (group, on_node) = if spread {
                let on_node = job_replicas(n, req);
                let group = match n.zone() {
                    None => NO_ZONE,
                    Some(z) => {
                        let next = members.len();
                        let g = *zone_ids.entry(z).or_insert(next);
                        if g == next {
                            members.push(Vec::new());
                            zone_replicas.push(0);
                        }
                        if let Some(c) = zone_replicas.get_mut(g) {
                            *c = c.saturating_add(on_node);
                        }
                        g
                    }
                };
                (group, on_node)
            } else {
                (NO_ZONE, 0)
            };
            if let Some(rank) = rank(idx, n, st, on_node, req, need) {
                if let Some(m) = members.get_mut(group) {
                    m.push(Reverse(rank));
                }
            }
        }
        let groups: Vec<Group> = members
            .into_iter()
            .zip(zone_replicas)
            .map(|(m, zone_replicas)| Group {
                nodes: BinaryHeap::from(m),
                zone_replicas,
            })
            .collect();
        let mut ranking = Self {
            strategy: req.strategy,
            groups,
            top: BinaryHeap::new(),
        };
        for g in 0..ranking.groups.len() {
            ranking.push_group(g);
        }
        (ranking, statics)
    }

    /// Removes and returns the best node (its index and group), if any.
    pub(super) fn take(&mut self) -> Option<(usize, usize)> {
        let Reverse((_, group)) = self.top.pop()?;
        let Reverse(rank) = self.groups.get_mut(group)?.nodes.pop()?;
        Some((usize::try_from(rank[4]).ok()?, group))
    }

    /// Puts back node `idx` of `group`, taken by [`Ranking::take`], after a
    /// replica was placed on it (`n` is its new state, `st` its static
    /// filters' outcome).
    pub(super) fn placed(
        &mut self,
        idx: usize,
        group: usize,
        n: &NodeCandidate,
        st: Static,
        req: &PlacementRequest<'_>,
        need: &Need,
    ) {
        let Some(g) = self.groups.get_mut(group) else {
            return;
        };
        if group != NO_ZONE {
            g.zone_replicas = g.zone_replicas.saturating_add(1);
        }
        if let Some(rank) = rank(idx, n, st, job_replicas(n, req), req, need) {
            g.nodes.push(Reverse(rank));
        }
        self.push_group(group);
    }

    fn push_group(&mut self, group: usize) {
        let Some(g) = self.groups.get(group) else {
            return;
        };
        let Some(Reverse(best)) = g.nodes.peek() else {
            return;
        };
        let zone = match self.strategy {
            PlacementStrategy::Binpack => 0,
            PlacementStrategy::Spread if group == NO_ZONE => best[0],
            PlacementStrategy::Spread => g.zone_replicas,
        };
        let top = [best[0], zone, best[1], best[2], best[3], best[4]];
        self.top.push(Reverse((top, group)));
    }
}

fn job_replicas(n: &NodeCandidate, req: &PlacementRequest<'_>) -> u64 {
    n.job_replicas.get(req.job).map_or(0, |&c| u64::from(c))
}

/// `n`'s [`Rank`] (`on_node`: the job's replicas on it, for spread), or
/// `None` when a filter excludes it.
fn rank(
    idx: usize,
    n: &NodeCandidate,
    st: Static,
    on_node: u64,
    req: &PlacementRequest<'_>,
    need: &Need,
) -> Option<Rank> {
    let eligible = st == Static::Ok || (st == Static::Image && !req.image_required);
    if !eligible || !need.fits(n, req) {
        return None;
    }
    let fetch = u64::from(st != Static::Ok);
    let util = utilisation_ppm(n.allocated.saturating_add(req.resources), n.capacity);
    let idx = u64::try_from(idx).ok()?;
    Some(match req.strategy {
        PlacementStrategy::Spread => [on_node, fetch, util, n.id, idx],
        PlacementStrategy::Binpack => [u64::MAX - util, fetch, n.id, 0, idx],
    })
}
