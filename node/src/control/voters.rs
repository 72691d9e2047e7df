//! Keeps the Raft voter set healthy without anyone's help.
//!
//! Target: 1 voter until 3 nodes are up, then 3, and 5 once 7 or more are.
//! A voter that gossip has seen dead for longer than the grace period is
//! swapped for a healthy non-voter (preferring a zone not yet holding a
//! voter), through openraft's joint consensus. A dead voter is never
//! dropped without a replacement: 3 voters with one dead still have a
//! quorum; 2 voters would not.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use skein_protocol::api::NodeHealth;
use tracing::{info, warn};

use super::Control;
use crate::peers::Peers;
use crate::raft::StateHandle;
use crate::state::{node_id_str, NodeId};

/// What the decision needs to know about one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Health by gossip.
    pub health: NodeHealth,
    /// How long it has been dead, if it is.
    pub dead_for: Option<Duration>,
    /// Zone label, for spreading voters across failure domains.
    pub zone: Option<String>,
}

/// Voter count wanted for `ready` healthy nodes.
pub fn target(ready: usize) -> usize {
    match ready {
        0..=2 => 1,
        3..=6 => 3,
        _ => 5,
    }
}

/// The voter set to move to, or `None` when the current one is right.
pub fn plan(
    current: &BTreeSet<NodeId>,
    nodes: &BTreeMap<NodeId, Candidate>,
    grace: Duration,
) -> Option<BTreeSet<NodeId>> {
    let ready = |id: &NodeId| nodes.get(id).is_some_and(|c| c.health == NodeHealth::Ready);
    let gone = |id: &NodeId| match nodes.get(id) {
        None => false,
        Some(c) => c.health == NodeHealth::Dead && c.dead_for.is_some_and(|d| d >= grace),
    };
    let mut spares: Vec<NodeId> = nodes
        .keys()
        .filter(|id| ready(id) && !current.contains(id))
        .copied()
        .collect();
    let zone = |id: &NodeId| nodes.get(id).and_then(|c| c.zone.clone());
    let mut next: BTreeSet<NodeId> = current.clone();
    let take_spare = |next: &BTreeSet<NodeId>, spares: &mut Vec<NodeId>| -> Option<NodeId> {
        let used: BTreeSet<Option<String>> = next.iter().map(&zone).collect();
        let pos = spares
            .iter()
            .position(|s| !used.contains(&zone(s)))
            .or(if spares.is_empty() { None } else { Some(0) })?;
        Some(spares.remove(pos))
    };
    for dead in current.iter().filter(|id| gone(id)) {
        if let Some(s) = take_spare(&next, &mut spares) {
            next.remove(dead);
            next.insert(s);
        }
    }
    let want = target(
        nodes
            .values()
            .filter(|c| c.health == NodeHealth::Ready)
            .count(),
    );
    // Grow only to an odd size we can fill completely.
    if next.len() < want && next.len() + spares.len() >= want {
        while next.len() < want {
            match take_spare(&next, &mut spares) {
                Some(s) => {
                    next.insert(s);
                }
                None => break,
            }
        }
    }
    (next != *current).then_some(next)
}

/// On the leader: re-plans the voter set whenever membership changes (and
/// every few seconds) and applies the plan; raises the cluster's schema
/// (through `control`, from the applied `state`) on the same cadence.
pub async fn run(peers: Peers, state: Arc<StateHandle>, control: Arc<Control>, grace: Duration) {
    let mut changes = peers.membership.subscribe();
    loop {
        tokio::select! {
            _ = changes.changed() => {},
            _ = tokio::time::sleep(Duration::from_secs(1)) => {},
        }
        if !peers.is_leader() {
            continue;
        }
        if let Err(e) = step(&peers, grace).await {
            warn!(error = %e, "voter change failed; will retry");
        }
        // The same cadence and trigger suit the cluster's schema: it moves
        // when a node's build does, which is a membership change.
        super::schema::raise(&state, &peers.membership, &control).await;
    }
}

async fn step(peers: &Peers, grace: Duration) -> Result<(), String> {
    let metrics = peers.raft.metrics().borrow().clone();
    let config = metrics.membership_config.membership().clone();
    // A joint configuration is still in flight: wait for it to settle.
    if config.get_joint_config().len() > 1 {
        return Ok(());
    }
    let current: BTreeSet<NodeId> = config.voter_ids().collect();
    let now = tokio::time::Instant::now();
    let nodes: BTreeMap<NodeId, Candidate> = peers
        .membership
        .all()
        .await
        .into_iter()
        .map(|r| {
            (
                r.id,
                Candidate {
                    health: r.health,
                    dead_for: r.dead_since.map(|d| now.duration_since(d)),
                    zone: r.labels.get("zone").cloned(),
                },
            )
        })
        .collect();
    let Some(next) = plan(&current, &nodes, grace) else {
        return Ok(());
    };
    for id in next.difference(&current) {
        if config.get_node(id).is_some() {
            continue;
        }
        let peer = peers
            .raft_peer(*id)
            .await
            .ok_or_else(|| format!("no record of node {}", node_id_str(*id)))?;
        info!(node = %node_id_str(*id), name = %peer.name, "adding raft learner");
        tokio::time::timeout(
            Duration::from_secs(15),
            peers.raft.add_learner(*id, peer, true),
        )
        .await
        .map_err(|_| format!("learner {} did not catch up in 15s", node_id_str(*id)))?
        .map_err(|e| e.to_string())?;
    }
    let show = |s: &BTreeSet<NodeId>| {
        s.iter()
            .map(|i| node_id_str(*i))
            .collect::<Vec<_>>()
            .join(",")
    };
    let to = show(&next);
    info!(from = %show(&current), to = %to, "changing raft voters");
    tokio::time::timeout(
        Duration::from_secs(15),
        peers.raft.change_membership(next, false),
    )
    .await
    .map_err(|_| "membership change did not commit in 15s".to_string())?
    .map_err(|e| e.to_string())?;
    // Both phases (joint, then the new set alone) are committed now.
    info!(voters = %to, "raft voters changed");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(health: NodeHealth, dead_for: u64, zone: &str) -> Candidate {
        Candidate {
            health,
            dead_for: (health == NodeHealth::Dead).then(|| Duration::from_secs(dead_for)),
            zone: (!zone.is_empty()).then(|| zone.to_string()),
        }
    }

    fn ready(ids: &[NodeId]) -> BTreeMap<NodeId, Candidate> {
        ids.iter()
            .map(|&i| (i, node(NodeHealth::Ready, 0, "")))
            .collect()
    }

    const GRACE: Duration = Duration::from_secs(5);

    #[test]
    fn grows_one_to_three_to_five() {
        let one: BTreeSet<NodeId> = [1].into();
        assert_eq!(plan(&one, &ready(&[1]), GRACE), None);
        assert_eq!(plan(&one, &ready(&[1, 2]), GRACE), None, "never two voters");
        assert_eq!(
            plan(&one, &ready(&[1, 2, 3]), GRACE),
            Some([1, 2, 3].into())
        );
        let three: BTreeSet<NodeId> = [1, 2, 3].into();
        assert_eq!(plan(&three, &ready(&[1, 2, 3, 4, 5, 6]), GRACE), None);
        assert_eq!(
            plan(&three, &ready(&[1, 2, 3, 4, 5, 6, 7]), GRACE).map(|s| s.len()),
            Some(5)
        );
    }

    #[test]
    fn replaces_a_dead_voter_only_after_grace_and_only_with_a_spare() {
        let three: BTreeSet<NodeId> = [1, 2, 3].into();
        let mut nodes = ready(&[1, 2, 3, 4, 5]);
        nodes.insert(3, node(NodeHealth::Dead, 2, ""));
        assert_eq!(plan(&three, &nodes, GRACE), None, "within grace");
        nodes.insert(3, node(NodeHealth::Dead, 6, ""));
        let next = plan(&three, &nodes, GRACE).unwrap();
        assert_eq!(next.len(), 3);
        assert!(!next.contains(&3));
        // No spare: keep the dead voter rather than shrink to two.
        let mut small = ready(&[1, 2, 3]);
        small.insert(3, node(NodeHealth::Dead, 60, ""));
        assert_eq!(plan(&three, &small, GRACE), None);
        // Suspect voters are not replaced.
        let mut suspect = ready(&[1, 2, 3, 4]);
        suspect.insert(2, node(NodeHealth::Suspect, 0, ""));
        assert_eq!(plan(&three, &suspect, GRACE), None);
    }

    #[test]
    fn prefers_spares_from_other_zones() {
        let one: BTreeSet<NodeId> = [1].into();
        let nodes: BTreeMap<NodeId, Candidate> = [
            (1, node(NodeHealth::Ready, 0, "a")),
            (2, node(NodeHealth::Ready, 0, "a")),
            (3, node(NodeHealth::Ready, 0, "a")),
            (4, node(NodeHealth::Ready, 0, "b")),
            (5, node(NodeHealth::Ready, 0, "c")),
        ]
        .into();
        assert_eq!(plan(&one, &nodes, GRACE), Some([1, 4, 5].into()));
    }
}
