//! Placement: which node runs each new replica.
//!
//! Pure and synchronous: the caller (the leader's planner) snapshots the
//! nodes' capacities and current reservations into [`NodeCandidate`]s, and
//! [`place`] picks a node and host ports per replica, updating the
//! candidates as it goes so that one call never over-commits a node.

pub mod exhaustive;
mod place;
#[cfg(test)]
mod quality;
mod rank;

pub use place::place;

use std::collections::{BTreeMap, BTreeSet};
use std::ops::RangeInclusive;

use skein_protocol::api::PortMapping;
use skein_protocol::spec::{
    ContainerSpec, HostAccess, PlacementStrategy, PortProtocol, PortSpec, ResourceVec,
};

use crate::state::NodeId;

/// A node as the scheduler sees it at planning time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeCandidate {
    /// Node id.
    pub id: NodeId,
    /// Name, for messages.
    pub name: String,
    /// Node labels (`region`, `zone`, …) matched against constraints.
    pub labels: BTreeMap<String, String>,
    /// Total schedulable resources.
    pub capacity: ResourceVec,
    /// Sum of requests of allocations already placed here.
    pub allocated: ResourceVec,
    /// Host ports already reserved here.
    pub used_ports: BTreeSet<(u16, PortProtocol)>,
    /// Range dynamic host ports are taken from.
    pub port_range: RangeInclusive<u16>,
    /// Image references present on the node (canonical); `None` = unknown
    /// (assume present).
    pub images: Option<BTreeSet<String>>,
    /// Replicas per job already placed here (for spreading).
    pub job_replicas: BTreeMap<String, u32>,
    /// Privileges and host paths the node lets containers use.
    pub host_access: HostAccess,
}

impl NodeCandidate {
    /// Resources still free.
    pub fn free(&self) -> ResourceVec {
        self.capacity.saturating_sub(self.allocated)
    }

    /// The node's zone label, used to spread across failure domains.
    pub fn zone(&self) -> Option<&str> {
        self.labels.get("zone").map(String::as_str)
    }
}

/// What one replica needs.
#[derive(Debug, Clone)]
pub struct PlacementRequest<'a> {
    /// Job name (for spreading and messages).
    pub job: &'a str,
    /// Image reference: nodes that hold it are preferred.
    pub image: &'a str,
    /// With `true` (pull policy `Never`) only nodes that hold the image
    /// are eligible; otherwise any node can fetch it.
    pub image_required: bool,
    /// Resources to reserve.
    pub resources: ResourceVec,
    /// Ports to publish; fixed `host_port`s must be free on the node.
    pub ports: &'a [PortSpec],
    /// Node labels the node must carry (all must match exactly).
    pub constraints: &'a BTreeMap<String, String>,
    /// Spread or bin-pack.
    pub strategy: PlacementStrategy,
    /// How the container runs: one needing privileges or host paths goes
    /// only to nodes that allow them.
    pub container: &'a ContainerSpec,
}

/// Where one replica goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// Chosen node.
    pub node: NodeId,
    /// Host ports reserved for the replica, in spec order.
    pub ports: Vec<PortMapping>,
}

/// Why a replica could not be placed; the message is shown to users as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PlacementError(pub String);
