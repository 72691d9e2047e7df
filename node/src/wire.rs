//! What nodes tell each other about themselves and their work: the
//! gossiped [`NodeStatus`] (one per node twice a second) and the
//! [`Assignments`] a node long-polls from the leader. Node-only types, so
//! they live here rather than in `protocol`; the requests that carry them
//! are in [`crate::rpc`]. Everything is encoded with
//! [`skein_protocol::codec`] and decoded with size limits, so a peer can
//! never make a node panic or allocate without bound.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use skein_protocol::api::{AllocStatus, ContainerUsage, Event};
use skein_protocol::spec::ResourceVec;

use crate::state::{
    Allocation, ApiToken, Job, NodeId, SecretCredentials, StoredCredential, TokenHash,
};

/// What one node must run: its allocations and their jobs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignments {
    /// State version these were read at.
    pub version: u64,
    /// Jobs referenced by `allocs`.
    pub jobs: Vec<Job>,
    /// Allocations placed on the node.
    pub allocs: Vec<Allocation>,
    /// Drained nodes, so that every node can show them in `node ls`.
    pub drained: BTreeSet<NodeId>,
    /// Cluster-wide registry credentials (sealed), so the node can pull.
    pub registries: BTreeMap<String, StoredCredential>,
    /// The pull secrets its jobs name (sealed).
    pub pull_secrets: BTreeMap<String, SecretCredentials>,
    /// The cluster's API tokens (hashes), so that every node, Raft member
    /// or not, enforces the same set.
    pub tokens: BTreeMap<String, ApiToken>,
    /// Revoked bootstrap tokens (hashes).
    pub revoked_tokens: BTreeSet<TokenHash>,
    /// The cluster's schema, so that a node of an older build learns it
    /// should not run.
    #[serde(default)]
    pub schema: skein_protocol::codec::Schema,
}

/// A node's role in Raft, as it sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaftRole {
    /// Current term.
    pub term: u64,
    /// Leader it follows, if any.
    pub leader: Option<NodeId>,
    /// Current voter set, as this node knows it.
    pub voters: Vec<NodeId>,
}

/// A replica of a service, as the node running it reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointReport {
    /// Service name.
    pub service: String,
    /// Job name.
    pub job: String,
    /// Allocation id.
    pub alloc: String,
    /// Address the replica is reachable at.
    pub ip: std::net::IpAddr,
    /// Host port of the service's container port.
    pub port: u16,
    /// Routing-mesh port of the service, if published.
    pub publish: Option<u16>,
    /// Routing-mesh balancing policy.
    pub balance: skein_protocol::spec::Balance,
    /// Running and passing readiness checks.
    pub ready: bool,
}

/// An image a node holds: peers lacking it may copy it from there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageInfo {
    /// Docker image id (`sha256:…`): what a copy is verified against.
    pub id: String,
    /// Its tags, canonical ([`skein_protocol::image::canonical`]).
    pub tags: Vec<String>,
    /// Size in bytes as Docker reports it.
    pub size: u64,
}

/// What every node gossips about itself twice a second.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// Node id.
    pub node_id: NodeId,
    /// libp2p peer id (base58).
    pub peer_id: String,
    /// Human name.
    pub name: String,
    /// HTTP API address.
    pub api_addr: String,
    /// Mesh multiaddrs others can dial.
    pub mesh_addrs: Vec<String>,
    /// Node labels.
    pub labels: BTreeMap<String, String>,
    /// Schedulable resources.
    pub capacity: ResourceVec,
    /// Dynamic host port range (first, last).
    pub port_range: (u16, u16),
    /// Ports services may publish on it (first, last).
    pub publish_range: (u16, u16),
    /// Its own listening ports (API, mesh, DNS), with what each is.
    pub listeners: Vec<(u16, String)>,
    /// Images present locally.
    pub images: Vec<ImageInfo>,
    /// Images it is fetching now (registry pulls, copies from peers).
    pub fetching: Vec<skein_protocol::api::PullProgress>,
    /// Sum of the requests of the allocations assigned to this node.
    pub allocated: ResourceVec,
    /// Number of allocations assigned to this node.
    pub allocation_count: u32,
    /// Statuses of the allocations this node runs.
    pub allocs: Vec<(String, AllocStatus)>,
    /// Service endpoints this node offers (ready or not).
    pub endpoints: Vec<EndpointReport>,
    /// Measured usage of its containers (Docker stats, sampled every few
    /// seconds).
    pub usage: Vec<ContainerUsage>,
    /// Its own recent events, repeated for a few seconds so that one lost
    /// message does not lose them (`crate::events`).
    pub events: Vec<Event>,
    /// Raft view.
    pub raft: RaftRole,
    /// Skein version.
    pub version: String,
    /// Increases with every message, so gossip never sees two equal ones.
    pub seq: u64,
    /// Health of its Raft storage (degraded: it takes no writes). Boxed,
    /// so a status stays cheap to move around.
    pub storage: Box<skein_protocol::api::StorageView>,
    /// What the node lets containers reach of itself (`--allow-privileged`,
    /// `--allow-host-path`): the scheduler places such jobs only there.
    #[serde(default)]
    pub host_access: skein_protocol::spec::HostAccess,
    /// The schema its build reads and writes
    /// ([`skein_protocol::codec::Schema::CURRENT`]): the leader raises
    /// the cluster's schema once every node is there.
    #[serde(default)]
    pub schema: skein_protocol::codec::Schema,
}
