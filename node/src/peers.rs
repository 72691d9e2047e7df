//! Who leads, whether this node is a Raft member, and how to reach a node:
//! the questions several loops ask, answered from Raft's metrics and the
//! gossiped node table alone.
//!
//! [`Peers`] is a cheap-clone handle (Raft and the node table) that a loop
//! takes instead of the whole node context; the free functions answer the
//! same questions from borrowed parts, for callers that hold them already.

use std::sync::Arc;

use libp2p::PeerId;

use crate::membership::Membership;
use crate::raft::{RaftPeer, SkeinRaft};
use crate::state::NodeId;

/// Raft and the node table of one node, and its id.
#[derive(Clone)]
pub struct Peers {
    /// This node's id.
    pub id: NodeId,
    /// Raft (this node may or may not be a member).
    pub raft: SkeinRaft,
    /// Node table.
    pub membership: Arc<Membership>,
}

impl Peers {
    /// Whether this node currently leads.
    pub fn is_leader(&self) -> bool {
        leads(&self.raft, self.id)
    }

    /// Whether this node is in the Raft membership (voter or learner).
    pub fn is_member(&self) -> bool {
        is_member(&self.raft, self.id)
    }

    /// The leader: from Raft if this node is a member, else from gossip.
    pub async fn leader(&self) -> Option<NodeId> {
        leader(&self.raft, &self.membership).await
    }

    /// The mesh peer id of `node`.
    pub async fn peer_of(&self, node: NodeId) -> Option<PeerId> {
        peer_of(&self.raft, &self.membership, node).await
    }

    /// What Raft needs to reach `node`, from its gossiped record.
    pub async fn raft_peer(&self, node: NodeId) -> Option<RaftPeer> {
        raft_peer(&self.membership, node).await
    }
}

/// Whether `id` currently leads, as this node's Raft sees it.
pub fn leads(raft: &SkeinRaft, id: NodeId) -> bool {
    raft.metrics().borrow().current_leader == Some(id)
}

/// Whether `id` is in the Raft membership (voter or learner), so that its
/// applied state is a full replica.
pub fn is_member(raft: &SkeinRaft, id: NodeId) -> bool {
    let m = raft.metrics().borrow().membership_config.clone();
    m.membership().get_node(&id).is_some()
}

/// The leader: from Raft if this node is a member, else from gossip.
pub async fn leader(raft: &SkeinRaft, membership: &Membership) -> Option<NodeId> {
    let from_raft = raft.metrics().borrow().current_leader;
    match from_raft {
        Some(l) => Some(l),
        None => membership.leader_hint().await,
    }
}

/// The mesh peer id of `node`: from its gossiped record, else from the
/// Raft membership.
pub async fn peer_of(raft: &SkeinRaft, membership: &Membership, node: NodeId) -> Option<PeerId> {
    if let Some(r) = membership.get(node).await {
        if let Ok(p) = r.peer_id.parse() {
            return Some(p);
        }
    }
    let m = raft.metrics().borrow().membership_config.clone();
    m.membership()
        .get_node(&node)
        .and_then(|n| n.peer_id.parse().ok())
}

/// What Raft needs to reach `node`, from its gossiped record.
pub async fn raft_peer(membership: &Membership, node: NodeId) -> Option<RaftPeer> {
    let r = membership.get(node).await?;
    Some(RaftPeer {
        name: r.name,
        addr: r.addr,
        peer_id: r.peer_id,
        mesh_addrs: r.mesh_addrs,
    })
}
