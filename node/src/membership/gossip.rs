//! Membership by gossip: twice a second each node publishes a
//! [`NodeStatus`] (capacity, images, allocation statuses, Raft view) and
//! folds the statuses it receives into its [`Membership`] table and status
//! board. Silence is judged by [`Membership::check_health`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use skein_protocol::api::{AllocStatus, Event};
use tracing::{debug, warn};

use super::{Membership, NodeRecord};
use crate::events::EventLog;
use crate::executor::StatusBoard;
use crate::state::{node_id_str, NodeId};
use crate::wire::{NodeStatus, RaftRole};
use skein_protocol::api::NodeHealth;

/// How often a node publishes its status: several per `--suspect-after`,
/// so one late message under load does not make a node suspect.
pub const PUBLISH_INTERVAL: Duration = Duration::from_millis(500);
/// At most this many images are gossiped; the rest are not advertised.
const MAX_IMAGES: usize = 256;
/// At most this many listening ports are gossiped.
const MAX_LISTENERS: usize = 16;
/// At most this many image fetches in progress are gossiped.
const MAX_FETCHING: usize = 64;
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
        publish_range: (*record.publish_range.start(), *record.publish_range.end()),
        listeners: record
            .listeners
            .iter()
            .take(MAX_LISTENERS)
            .cloned()
            .collect(),
        images: record.images.iter().take(MAX_IMAGES).cloned().collect(),
        fetching: record.fetching.iter().take(MAX_FETCHING).cloned().collect(),
        allocated: record.allocated,
        allocation_count: record.allocation_count,
        endpoints: record.endpoints.iter().take(MAX_ALLOCS).cloned().collect(),
        usage: record.usage.iter().take(MAX_ALLOCS).cloned().collect(),
        events: events.into_iter().take(MAX_EVENTS).collect(),
        allocs,
        raft,
        version: record.version.clone(),
        seq,
        storage: Box::new(record.storage.clone()),
        host_access: record.host_access.clone(),
        schema: record.schema,
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
    } else if status.publish_range.0 == 0 || status.publish_range.0 > status.publish_range.1 {
        Some("bad publish range")
    } else if status.images.len() > MAX_IMAGES
        || status.fetching.len() > MAX_FETCHING
        || status.listeners.len() > MAX_LISTENERS
        || status.images.iter().any(|i| i.tags.len() > MAX_IMAGES)
        || status.allocs.len() > MAX_ALLOCS
        || status.endpoints.len() > MAX_ALLOCS
        || status.usage.len() > MAX_ALLOCS
        || status.events.len() > MAX_EVENTS
        || status.host_access.host_paths.len() > skein_protocol::spec::MAX_HOST_PATHS
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
        publish_range: status.publish_range.0..=status.publish_range.1,
        listeners: status.listeners,
        images: status.images,
        fetching: status.fetching,
        allocated: status.allocated,
        allocation_count: status.allocation_count,
        endpoints: status.endpoints,
        usage: status.usage,
        raft: status.raft,
        health: NodeHealth::Ready,
        last_seen: tokio::time::Instant::now(),
        dead_since: None,
        version: status.version,
        storage: *status.storage,
        host_access: status.host_access,
        schema: status.schema,
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

/// What [`fit`] had to leave out of a status, least important first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Trimmed {
    /// Container usage samples.
    Usage,
    /// Recent events.
    Events,
    /// Per-allocation messages, container ids and pull progress.
    Details,
    /// Images beyond what fits (peers copy them from other holders, the
    /// scheduler loses a preference).
    Images,
    /// Allocation statuses and endpoints beyond what fits.
    Allocations,
}

/// Makes `status` fit in `max` encoded bytes by dropping what matters
/// least first: a node whose status does not fit would fall silent and be
/// declared dead, which is far worse than a partial report. Returns the
/// deepest cut made, if any.
pub fn fit(status: &mut NodeStatus, max: usize) -> Option<Trimmed> {
    let size = |s: &NodeStatus| skein_protocol::codec::encode(s).map_or(usize::MAX, |b| b.len());
    if size(status) <= max {
        return None;
    }
    status.usage.clear();
    if size(status) <= max {
        return Some(Trimmed::Usage);
    }
    status.events.clear();
    if size(status) <= max {
        return Some(Trimmed::Events);
    }
    for (_, a) in &mut status.allocs {
        a.message = None;
        a.container_id = None;
        a.pull = None;
    }
    status.fetching.clear();
    if size(status) <= max {
        return Some(Trimmed::Details);
    }
    let images = std::mem::take(&mut status.images);
    if size(status) <= max {
        let n = longest_prefix(images.len(), |n| {
            status.images = images.iter().take(n).cloned().collect();
            size(status) <= max
        });
        status.images = images.into_iter().take(n).collect();
        return Some(Trimmed::Images);
    }
    let (allocs, endpoints) = (status.allocs.clone(), status.endpoints.clone());
    let n = longest_prefix(allocs.len().max(endpoints.len()), |n| {
        status.allocs = allocs.iter().take(n).cloned().collect();
        status.endpoints = endpoints.iter().take(n).cloned().collect();
        size(status) <= max
    });
    status.allocs = allocs.into_iter().take(n).collect();
    status.endpoints = endpoints.into_iter().take(n).collect();
    Some(Trimmed::Allocations)
}

/// The largest `n` in `0..=len` for which `fits(n)` holds, given that it
/// holds for 0 and is monotone (binary search).
fn longest_prefix(len: usize, mut fits: impl FnMut(usize) -> bool) -> usize {
    let (mut lo, mut hi) = (0usize, len);
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        if fits(mid) {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    lo
}

#[cfg(test)]
mod tests {
    use skein_protocol::api::{AllocState, ContainerUsage, Event, EventKind};

    use super::*;

    fn status(allocs: usize) -> NodeStatus {
        NodeStatus {
            node_id: 7,
            peer_id: "p".into(),
            name: "n".into(),
            api_addr: "127.0.0.1:7420".into(),
            mesh_addrs: vec![],
            labels: Default::default(),
            capacity: Default::default(),
            port_range: (20000, 30000),
            publish_range: (30000, 32767),
            listeners: vec![],
            images: vec![],
            fetching: vec![],
            allocated: Default::default(),
            allocation_count: 0,
            allocs: (0..allocs)
                .map(|i| {
                    (
                        format!("job-{i}-abcdef"),
                        AllocStatus {
                            state: AllocState::Running,
                            container_id: Some("c".repeat(64)),
                            message: Some("m".repeat(100)),
                            ..AllocStatus::default()
                        },
                    )
                })
                .collect(),
            endpoints: vec![],
            usage: (0..allocs)
                .map(|i| ContainerUsage {
                    alloc: format!("job-{i}-abcdef"),
                    job: "job".into(),
                    cpu_total_ns: u64::MAX,
                    ..ContainerUsage::default()
                })
                .collect(),
            events: (0..MAX_EVENTS as u64)
                .map(|seq| Event {
                    origin: "o".into(),
                    seq,
                    time_ms: 0,
                    kind: EventKind::Started,
                    node: None,
                    job: None,
                    alloc: None,
                    exit_code: None,
                    message: "e".repeat(200),
                })
                .collect(),
            raft: RaftRole::default(),
            version: "test".into(),
            seq: 1,
            storage: Default::default(),
            host_access: Default::default(),
            schema: Default::default(),
        }
    }

    fn size(s: &NodeStatus) -> usize {
        skein_protocol::codec::encode(s)
            .map(|b| b.len())
            .unwrap_or(usize::MAX)
    }

    #[test]
    fn a_small_status_is_left_alone() {
        let mut s = status(10);
        let before = s.clone();
        assert_eq!(fit(&mut s, 64 * 1024), None);
        assert_eq!(s, before);
    }

    #[test]
    fn cuts_least_important_parts_first() {
        let full = status(100);
        let without_usage = {
            let mut s = full.clone();
            s.usage.clear();
            size(&s)
        };
        let mut s = full.clone();
        assert_eq!(fit(&mut s, without_usage), Some(Trimmed::Usage));
        assert_eq!(s.allocs, full.allocs);
        assert_eq!(s.events, full.events);
    }

    #[test]
    fn a_build_box_with_many_images_keeps_its_allocations() {
        let mut s = status(50);
        s.images = (0..256)
            .map(|i| crate::wire::ImageInfo {
                id: format!("sha256:{i:064x}"),
                tags: vec![format!("registry.example.com/team/app-{i}:1.2.3-build-{i}")],
                size: 1 << 20,
            })
            .collect();
        let allocs = s.allocs.clone();
        assert_eq!(fit(&mut s, 16 * 1024), Some(Trimmed::Images));
        assert!(size(&s) <= 16 * 1024);
        assert!(!s.images.is_empty() && s.images.len() < 256);
        assert_eq!(s.allocs.len(), allocs.len(), "every allocation status kept");
    }

    #[test]
    fn a_huge_node_still_publishes_as_many_allocations_as_fit() {
        let mut s = status(5000);
        assert_eq!(fit(&mut s, 64 * 1024), Some(Trimmed::Allocations));
        assert!(size(&s) <= 64 * 1024);
        // Named fields (the versioned codec) cost a third of the room.
        assert!(s.allocs.len() > 600, "{}", s.allocs.len());
        assert!(s.allocs.len() < 5000);
        assert!(s.allocs.iter().all(|(_, a)| a.message.is_none()));
        assert_eq!(s.name, "n");
    }
}
