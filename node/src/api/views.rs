//! Read models: joins the committed state with observed statuses and
//! node records into the shapes the API returns.

use std::collections::HashMap;

use skein_protocol::api::{AllocState, AllocStatus, AllocView, JobView, NodeView};

use crate::membership::NodeRecord;
use crate::state::{node_id_str, Allocation, ClusterState, Job, NodeId};

/// Observed statuses, per node then allocation.
pub type Statuses = HashMap<NodeId, HashMap<String, AllocStatus>>;

/// A node's name, or its id when no record of it is known.
pub fn node_name(nodes: &[NodeRecord], id: NodeId) -> String {
    nodes
        .iter()
        .find(|n| n.id == id)
        .map_or_else(|| node_id_str(id), |n| n.name.clone())
}

/// The view of one allocation.
pub fn alloc_view(a: &Allocation, nodes: &[NodeRecord], statuses: &Statuses) -> AllocView {
    let status = statuses
        .get(&a.node)
        .and_then(|m| m.get(&a.id))
        .cloned()
        .unwrap_or_default();
    AllocView {
        id: a.id.clone(),
        job: a.job.clone(),
        index: a.index,
        job_version: a.job_version,
        node_id: node_id_str(a.node),
        node_name: node_name(nodes, a.node),
        ports: a.ports.clone(),
        status,
    }
}

/// The view of one job with its allocations.
pub fn job_view(
    job: &Job,
    state: &ClusterState,
    nodes: &[NodeRecord],
    statuses: &Statuses,
) -> JobView {
    let allocations: Vec<AllocView> = state
        .allocs_of(&job.spec.name)
        .map(|a| alloc_view(a, nodes, statuses))
        .collect();
    let running = allocations
        .iter()
        .filter(|a| a.status.state == AllocState::Running)
        .count();
    JobView {
        spec: job.spec.clone(),
        version: job.version,
        stopped: job.stopped,
        desired: if job.stopped { 0 } else { job.spec.replicas },
        running: u32::try_from(running).unwrap_or(u32::MAX),
        allocations,
        rollout: crate::control::rollout::view(job, state, statuses),
    }
}

/// The view of one node. Usage comes from what the node itself reports
/// (gossip, ~1 s old), so every node can answer, even cut off.
pub fn node_view(n: &NodeRecord, role: &str) -> NodeView {
    NodeView {
        id: node_id_str(n.id),
        name: n.name.clone(),
        address: n.addr.clone(),
        health: n.health,
        role: role.to_string(),
        capacity: n.capacity,
        allocated: n.allocated,
        allocations: n.allocation_count,
        labels: n.labels.clone(),
        version: n.version.clone(),
        // Set by the caller from the replicated drained set.
        drained: false,
        storage: n.storage.clone(),
    }
}
