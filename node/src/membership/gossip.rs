//! Membership by gossip: twice a second each node publishes a
//! [`NodeStatus`] (capacity, images, allocation statuses, Raft view) and
//! folds the statuses it receives into its [`Membership`] table and status
//! board. Silence is judged by [`Membership::check_health`].

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use skein_protocol::api::{AllocStatus, Event};
use tracing::{debug, warn};

use super::{Membership, NodeRecord};
use crate::events::EventLog;
use crate::executor::StatusBoard;
use crate::mesh::wire::{NodeStatus, RaftRole};
use crate::state::{node_id_str, NodeId};
use skein_protocol::api::NodeHealth;

/// How often a node publishes its status: several per `--suspect-after`,
/// so one late message under load does not make a node suspect.
pub const PUBLISH_INTERVAL: Duration = Duration::from_millis(500);
/// At most this many images are gossiped; the rest are not advertised.
const MAX_IMAGES: usize = 256;
/// At most this many allocation statuses per message.
const MAX_ALLOCS: usize = 512;
/// At most this many events per message.
const MAX_EVENTS: usize = crate::events::MAX_GOSSIP_EVENTS;

/// The status message for `record`.
pub fn status_of(
    record: &NodeRecord,
    allocs: HashMap<String, AllocStatus>,
    raft: RaftRole,
    events: Vec<Event>,
    seq: u64,
) -> NodeStatus {
    let mut allocs: Vec<(String, AllocStatus)> = allocs.into_iter().collect();
    allocs.sort_by(|a, b| a.0.cmp(&b.0));
    allocs.truncate(MAX_ALLOCS);
    NodeStatus {
        node_id: record.id,
        peer_id: record.peer_id.clone(),
        name: record.name.clone(),
        api_addr: record.addr.clone(),
        mesh_addrs: record.mesh_addrs.clone(),
        labels: record.labels.clone(),
        capacity: record.capacity,
        port_range: (*record.port_range.start(), *record.port_range.end()),
        images: record.images.iter().take(MAX_IMAGES).cloned().collect(),
        allocated: record.allocated,
        allocation_count: record.allocation_count,
        endpoints: record.endpoints.iter().take(MAX_ALLOCS).cloned().collect(),
        usage: record.usage.iter().take(MAX_ALLOCS).cloned().collect(),
        events: events.into_iter().take(MAX_EVENTS).collect(),
        allocs,
        raft,
        version: record.version.clone(),
        seq,
    }
}

/// Checks a received status and turns it into a record; `None` (with a
/// log line) for nonsense, which is dropped.
pub fn record_from(status: NodeStatus, local: NodeId) -> Option<NodeRecord> {
    let problem = if status.node_id == 0 {
        Some("node id 0")
    } else if status.node_id == local {
        Some("a peer claims our own node id")
    } else if status.port_range.0 == 0 || status.port_range.0 > status.port_range.1 {
        Some("bad port range")
    } else if status.images.len() > MAX_IMAGES
        || status.allocs.len() > MAX_ALLOCS
        || status.endpoints.len() > MAX_ALLOCS
        || status.usage.len() > MAX_ALLOCS
        || status.events.len() > MAX_EVENTS
    {
        Some("too many entries")
    } else {
        None
    };
    if let Some(p) = problem {
        warn!(node = %node_id_str(status.node_id), peer = %status.peer_id, problem = p, "dropping invalid status");
        return None;
    }
    Some(NodeRecord {
        id: status.node_id,
        peer_id: status.peer_id,
        name: status.name,
        addr: status.api_addr,
        mesh_addrs: status.mesh_addrs,
        labels: status.labels,
        capacity: status.capacity,
        port_range: status.port_range.0..=status.port_range.1,
        images: status.images.into_iter().collect::<BTreeSet<_>>(),
        allocated: status.allocated,
        allocation_count: status.allocation_count,
        endpoints: status.endpoints,
        usage: status.usage,
        raft: status.raft,
        health: NodeHealth::Ready,
        last_seen: tokio::time::Instant::now(),
        dead_since: None,
        version: status.version,
    })
}

/// Folds a received status into the table, the status board and the
/// event journal.
pub async fn receive(
    mut status: NodeStatus,
    membership: &Arc<Membership>,
    board: &StatusBoard,
    events: &EventLog,
) {
    let allocs: HashMap<String, AllocStatus> = status.allocs.iter().cloned().collect();
    let heard = std::mem::take(&mut status.events);
    let Some(record) = record_from(status, membership.local_id()) else {
        return;
    };
    debug!(node = %node_id_str(record.id), "status received");
    let id = record.id;
    membership.observe(record).await;
    board.set_node(id, allocs).await;
    events.merge(&node_id_str(id), heard);
}
