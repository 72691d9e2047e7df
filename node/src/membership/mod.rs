//! Who is in the cluster, what each node offers, and whether it is alive.
//!
//! The [`Membership`] table is the scheduler's view of the world. A node
//! writes its own record from Docker (capacity, local images); records of
//! other nodes arrive by gossip. The planner only ever reads
//! [`Membership::candidates`], so placement does not care where a record
//! came from.

pub mod local;

use std::collections::{BTreeMap, BTreeSet};
use std::ops::RangeInclusive;
use std::time::Instant;

use skein_protocol::api::NodeHealth;
use skein_protocol::spec::ResourceVec;
use tokio::sync::RwLock;

use crate::scheduler::NodeCandidate;
use crate::state::{ClusterState, NodeId};

/// What the cluster knows about one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRecord {
    /// Node id.
    pub id: NodeId,
    /// Human name.
    pub name: String,
    /// Address of the node's API.
    pub addr: String,
    /// Labels such as region/zone, matched by job constraints.
    pub labels: BTreeMap<String, String>,
    /// Schedulable resources.
    pub capacity: ResourceVec,
    /// Range dynamic host ports are taken from.
    pub port_range: RangeInclusive<u16>,
    /// Image references present in the node's Docker.
    pub images: BTreeSet<String>,
    /// Health as last judged.
    pub health: NodeHealth,
    /// When the record was last refreshed.
    pub last_seen: Instant,
    /// Skein version the node runs.
    pub version: String,
}

/// The membership table.
#[derive(Debug, Default)]
pub struct Membership {
    nodes: RwLock<BTreeMap<NodeId, NodeRecord>>,
}

impl Membership {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Inserts or replaces a node's record.
    pub async fn upsert(&self, record: NodeRecord) {
        self.nodes.write().await.insert(record.id, record);
    }

    /// Updates a node's record in place, if present.
    pub async fn update(&self, id: NodeId, f: impl FnOnce(&mut NodeRecord)) {
        if let Some(r) = self.nodes.write().await.get_mut(&id) {
            f(r);
        }
    }

    /// All records, by id.
    pub async fn all(&self) -> Vec<NodeRecord> {
        self.nodes.read().await.values().cloned().collect()
    }

    /// One record.
    pub async fn get(&self, id: NodeId) -> Option<NodeRecord> {
        self.nodes.read().await.get(&id).cloned()
    }

    /// Ready nodes as scheduler candidates, with reservations taken from
    /// the committed `state` (not from gossip) so the leader never counts
    /// on a report that lags its own placements.
    pub async fn candidates(&self, state: &ClusterState) -> Vec<NodeCandidate> {
        let nodes = self.nodes.read().await;
        nodes
            .values()
            .filter(|n| n.health == NodeHealth::Ready)
            .map(|n| candidate(n, state))
            .collect()
    }

    /// Ids of nodes that are ready.
    pub async fn ready_ids(&self) -> BTreeSet<NodeId> {
        let nodes = self.nodes.read().await;
        nodes
            .values()
            .filter(|n| n.health == NodeHealth::Ready)
            .map(|n| n.id)
            .collect()
    }
}

fn candidate(n: &NodeRecord, state: &ClusterState) -> NodeCandidate {
    let mut used_ports = BTreeSet::new();
    let mut job_replicas = BTreeMap::new();
    for a in state.allocs_on(n.id) {
        *job_replicas.entry(a.job.clone()).or_insert(0) += 1;
        used_ports.extend(a.ports.iter().map(|p| (p.host_port, p.protocol)));
    }
    NodeCandidate {
        id: n.id,
        name: n.name.clone(),
        labels: n.labels.clone(),
        capacity: n.capacity,
        allocated: state.allocated_on(n.id),
        used_ports,
        port_range: n.port_range.clone(),
        images: Some(n.images.clone()),
        job_replicas,
    }
}
